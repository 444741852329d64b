"""Checks of a setting's value as a layer gives it, before its type is parsed (used by the validators of
:class:`metrics_ops.config.Settings`): text that is not UTF-8, true/false where a number is meant, the items of
the CORS origin list and of the per-event rate map, ``~`` in a path, a file mode given as a number. Each problem
is a PydanticCustomError whose message becomes the setting's one error line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, get_args

from pydantic_core import PydanticCustomError


def is_path(annotation: Any) -> bool:
    return annotation is Path or Path in get_args(annotation)


def _is_number(annotation: Any) -> bool:
    return bool({int, float} & {annotation, *get_args(annotation)})


def raw_value_problem(annotation: Any, value: Any) -> None:
    """Refuse what no layer should hand a setting of type ``annotation``:

    - text that is not UTF-8 (bytes of the environment Python could not decode): a path may hold such bytes, as
      a file name may, but any other setting would fail far from here (the sample key when serve's workers hash
      the first visitor, with a traceback);
    - a path that is no string (``dir = 5`` in TOML);
    - true or false (a TOML boolean) for a number: ``retention = true`` would be a retention of one day.
    """
    if isinstance(value, str) and not is_path(annotation) and _undecodable(value):
        raise PydanticCustomError("utf8", "not UTF-8 text: the value holds bytes that are no character; set it "
                                          "again as UTF-8 text")
    if is_path(annotation) and value is not None and not isinstance(value, str | Path):
        raise PydanticCustomError("path", "want a path, as a string")
    if isinstance(value, bool) and _is_number(annotation):
        raise PydanticCustomError("bool_for_number", "want a number, not {value}",
                                  {"value": "true" if value else "false"})


def home_path(value: Any) -> Any:
    """A path setting's ``~`` or ``~user`` at its start is that home directory, whichever layer gave it: the shell
    expands it only in an unquoted word, and a ``~/metrics`` from .env, TOML, quotes or ``--data-dir=~/metrics``
    was a directory named ``~`` in the working directory."""
    if isinstance(value, str) and value.startswith("~"):
        expanded = os.path.expanduser(value)
        if expanded.startswith("~"):
            raise PydanticCustomError("home", "{user} is no user with a home directory",
                                      {"user": value.partition("/")[0]})
        return expanded
    return value


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


#: a CORS origin as a browser sends it: scheme://host[:port], nothing after (no path, not even a lone /)
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#@]+")


def origin_list(items: Any) -> Any:
    """The allowed CORS origins, each as a browser sends it in its Origin header, whichever form they came in
    (a comma list, a JSON or TOML list): trailing ``/`` cut off, blanks around it too. ``*`` allows any origin and
    ``null`` the opaque origin (sandboxed frames, files); anything else must be ``scheme://host[:port]``: a path,
    or a host without its scheme, would never equal an Origin header, and every request from there would get a
    403 with no hint why."""
    if not isinstance(items, list):
        return items  # the type check words it
    origins = []
    for item in items:
        if not isinstance(item, str):
            origins.append(item)  # the type check words it, naming the item
            continue
        origin = item.strip().rstrip("/")
        if origin not in ("*", "null") and not _ORIGIN.fullmatch(origin):
            raise PydanticCustomError("origin", "{item} is not an origin: want scheme://host[:port] (such as "
                                                "https://www.example.com), * or null",
                                      {"item": repr(item)})
        origins.append(origin)
    return origins


def mode_text(value: Any) -> Any:
    """A file mode is text (``"0640"``): a TOML number has lost its spelling (``0o640`` is 416, ``640`` is no octal
    number at all), so it is refused with the form to use, not guessed."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError("mode", 'want the mode as text, such as "0640" (a number loses its octal digits)')
    return value


def printable_host(value: str) -> str:
    """serve's host: no address or host name holds a control or invisible character. A line break or ESC went to
    the bind as it was and its error printed it raw (a forged line, a cleared terminal); the error line shows the
    value escaped."""
    if not value.isprintable():
        raise PydanticCustomError("host", "the host holds a control or other invisible character; give an IP "
                                          "address or a host name")
    return value


def rate_names(rates: Any) -> Any:
    """The per-event rates: every event name a name (not empty), every rate a number (not true or false)."""
    if not isinstance(rates, dict):
        return rates
    for name, rate in rates.items():
        if isinstance(name, str) and not name.strip():
            raise PydanticCustomError("rate_map", "an event name cannot be empty (=rate with no name)")
        if isinstance(rate, bool):
            raise PydanticCustomError("rate_map", "the rate of {name} must be a number, not {value}",
                                      {"name": name, "value": "true" if rate else "false"})
    return rates
