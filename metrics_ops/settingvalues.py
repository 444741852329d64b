"""The checks of every setting's value, beyond its type and bounds, and of the settings that cannot go together
(:func:`relation_problems`); :data:`metrics_ops.config.BEFORE` and ``AFTER`` say which run on which setting.
Before its type is parsed: text that is not UTF-8, true/false where a number is meant, the items of the CORS
origin list and of the per-event rate map, ``~`` in a path, a file mode given as a number; after it: a known time
zone, an octal file mode, a rate's floor, a path that is no symlink loop. Each problem is a
:class:`SettingProblem` whose message becomes the setting's one error line. No pydantic here: the fast check of
:mod:`metrics_ops.config` runs these same checks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_ops.events import MIN_RATE, usable_rate
from metrics_ops.layout import STATE_NAME, STATUS_NAME, inside_tree, real_path
from metrics_ops.objectstore import host_id_problem, parse_archive_url


class SettingProblem(ValueError):
    """What is wrong with one setting's value, as pydantic's PydanticCustomError holds it (an error type, a
    message template, its context), raised without importing pydantic: the checks run in the fast check of
    :mod:`metrics_ops.config` too, which hands any value they refuse to the reference model
    (:mod:`metrics_ops.settingsmodel`) to word."""

    def __init__(self, code: str, template: str, ctx: dict[str, Any] | None = None):
        super().__init__(template.format(**(ctx or {})))
        self.code, self.template, self.ctx = code, template, ctx


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
    - true or false (a TOML boolean) for a number: ``retention = true`` would be a retention of one day;
    - a NUL character in a path (``.env`` and TOML can hold one): every use of the path would fail.
    """
    if isinstance(value, str) and not is_path(annotation) and _undecodable(value):
        raise SettingProblem("utf8", "not UTF-8 text: the value holds bytes that are no character; set it "
                                          "again as UTF-8 text")
    if isinstance(value, list | dict) and any(isinstance(v, str) and _undecodable(v) for v in _texts(value)):
        raise SettingProblem("utf8", "not UTF-8 text: an item holds bytes that are no character; set it again as "
                                     "UTF-8 text")
    if is_path(annotation) and value is not None and not isinstance(value, str | Path):
        raise SettingProblem("path", "want a path, as a string")
    if is_path(annotation) and "\0" in str(value or ""):  # .env and TOML can hold one; no file name can
        raise SettingProblem("path", "a path cannot hold a NUL character")
    if isinstance(value, bool) and _is_number(annotation):
        raise SettingProblem("bool_for_number", "want a number, not {value}",
                                  {"value": "true" if value else "false"})


def home_path(value: Any) -> Any:
    """A path setting's ``~`` or ``~user`` at its start is that home directory, whichever layer gave it: the shell
    expands it only in an unquoted word, and a ``~/metrics`` from .env, TOML, quotes or ``--data-dir=~/metrics``
    was a directory named ``~`` in the working directory."""
    if isinstance(value, str) and value.startswith("~"):
        expanded = os.path.expanduser(value)
        if expanded.startswith("~"):
            raise SettingProblem("home", "{user} is no user with a home directory",
                                      {"user": value.partition("/")[0]})
        return expanded
    return value


def _texts(value: list | dict) -> list:
    """The items of a list, or the names and values of a table (the CORS origins, the per-event rates)."""
    return [*value.keys(), *value.values()] if isinstance(value, dict) else value


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
            raise SettingProblem("origin", "{item} is not an origin: want scheme://host[:port] (such as "
                                                "https://www.example.com), * or null",
                                      {"item": repr(item)})
        origins.append(origin)
    return origins


def mode_text(field: str, value: Any) -> Any:
    """A file mode is text (``"0640"``): a TOML number has lost its spelling (``0o640`` is 416, ``640`` is no octal
    number at all), so it is refused with the form to use, not guessed."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise SettingProblem("mode", 'want the mode as text, such as "0640" (a number loses its octal digits)')
    return value


def printable_host(field: str, value: str) -> str:
    """serve's host: no address or host name holds a control or invisible character. A line break or ESC went to
    the bind as it was and its error printed it raw (a forged line, a cleared terminal); the error line shows the
    value escaped."""
    if not value.isprintable():
        raise SettingProblem("host", "the host holds a control or other invisible character; give an IP "
                                          "address or a host name")
    return value


def rate_names(rates: Any) -> Any:
    """The per-event rates: every event name a name (not empty), every rate a number (not true or false)."""
    if not isinstance(rates, dict):
        return rates
    for name, rate in rates.items():
        if isinstance(name, str) and not name.strip():
            raise SettingProblem("rate_map", "an event name cannot be empty (=rate with no name)")
        if isinstance(rate, bool):
            raise SettingProblem("rate_map", "the rate of {name} must be a number, not {value}",
                                      {"name": name, "value": "true" if rate else "false"})
    return rates


# The checks of one setting, as metrics_ops.config lists them in BEFORE and AFTER: each takes the field's name and
# its value, and returns the value (maybe changed) or raises a SettingProblem.

def empty_is_unset(field: str, value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


def choice_in_any_case(field: str, value: Any) -> Any:
    # INFO, Warning, VISITOR: a choice is a word, not its case (most tools write levels in capitals)
    return value.strip().lower() if isinstance(value, str) else value


def host_id_given(field: str, value: Any) -> Any:
    if isinstance(value, str) and (why := host_id_problem(value)):
        raise SettingProblem("host_id", "{why}", {"why": why})
    return value


def dir_given(field: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip() == "":
        raise SettingProblem("empty", "the data directory cannot be empty (it would silently be the working "
                                      "directory); give a path")
    return value


def _json_value(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise SettingProblem("json", "not valid JSON: {error}", {"error": str(exc)}) from None
    except RecursionError:
        raise SettingProblem("json", "not valid JSON: nested too deep") from None


def cors_origins(field: str, value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        value = _json_value(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
    return origin_list(value)  # every form: each origin as a browser sends it


def rate_map(field: str, value: Any) -> Any:
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.startswith("{"):
        value = _json_value(text)
    elif text is not None:
        value = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, rate = part.partition("=")
            if not sep:
                raise SettingProblem("rate_map", 'want JSON or "event=rate,event=rate"')
            value[name.strip()] = rate.strip()
    return rate_names(value)


def k_visitors(field: str, value: Any) -> Any:
    try:
        small = int(value) < 2
    except (TypeError, ValueError, OverflowError):  # OverflowError: TOML's inf
        return value  # the type check words it
    if small:
        raise SettingProblem("k_visitors", "want at least 2: a rollup row of one visitor singles them out")
    return value


def archive_url(field: str, value: str | None) -> str | None:
    try:
        return None if value is None else parse_archive_url(value).url
    except ValueError as exc:
        raise SettingProblem("archive_url", "{why}", {"why": str(exc)}) from None


def rates_in_range(field: str, value: dict[str, float]) -> dict[str, float]:
    for name, rate in value.items():
        if not (rate == 0 or usable_rate(rate)):
            raise SettingProblem("rate_map", "rate of {name} must be 0 or between {floor} and 1",
                                 {"name": name, "floor": f"{MIN_RATE:g}"})
    return value


def rate_floor(field: str, value: float) -> float:
    if 0 < value < MIN_RATE:  # a line would weigh over 10^12: readers could not use it
        raise SettingProblem("rate", "a rate must be 0 or at least {floor} (one in a million)",
                             {"floor": f"{MIN_RATE:g}"})
    return value


def token_shape(field: str, value: str | None) -> str | None:
    if value is not None and not _TOKEN.fullmatch(value):
        raise SettingProblem("token", "the admin token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~ + / = "
                                      "(what a bearer header carries), e.g. from: openssl rand -hex 32")
    return value


def octal_mode(field: str, value: str) -> str:
    text = value.strip()
    try:
        bits = int(text, 8)
    except ValueError:
        raise SettingProblem("mode", "want an octal file mode such as 0640") from None
    if bits & ~0o666 or bits & 0o600 != 0o600:
        raise SettingProblem(
            "mode", "a data file mode must give the owner read and write and nobody execute (0600 .. 0666)")
    return f"0{bits:o}"


def known_zone(field: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingProblem("zone", "unknown time zone (want an IANA name such as Europe/Berlin)") from None
    return value


def no_symlink_loop(field: str, value: Path | None) -> Path | None:
    import errno

    try:
        if value is not None:
            os.stat(value)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # every use would fail, some with a traceback (Path.resolve)
            raise SettingProblem("path", "the path is a symlink loop, or goes through one") from None
    return value


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def relation_problems(values: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Each group of settings (by name) that cannot go together, and why; ``values`` holds every checked value.
    gzip_after against retention is not checked here: only a command that runs both steps needs it (see
    require_gzip_before_prune); `prune --retention 2` must not fail on gzip_after's default."""
    problems = []
    data_dir, jsonl = values["dir"], values["jsonl"]
    if jsonl is not None and (real_path(jsonl.parent) != real_path(data_dir) or real_path(jsonl) == real_path(data_dir)
                              or jsonl.name in ("", ".", "..")):
        problems.append((("jsonl", "dir"), "the link must be a file directly inside the data directory"))
    elif jsonl is not None and (why := _not_a_link_name(jsonl.name)):
        problems.append((("jsonl",), why))

    # files the tool writes over and over: never the link, a data file or another of the tool's files; and
    # what it writes for monitoring nowhere in the data directory's tree but the status file's own default
    link = jsonl if jsonl is not None else data_dir / "metrics.jsonl"
    for name, label, own in (("state_file", "the state file", STATE_NAME),
                             ("status_file", "the status file", STATUS_NAME),
                             ("health_textfile", "the health textfile", None)):
        path = values[name]
        if path is None:
            continue
        why = _own_file_clash(path, label, own, data_dir, link)
        if why is None and name != "state_file":
            why = _inside_data_tree(path, label, own, data_dir)
        if why is not None:
            problems.append(((name,), why))
    # one file for two of them: serve's state would be overwritten by a pass's status line, or the reverse
    files = [name for name in ("state_file", "status_file", "health_textfile") if values[name] is not None]
    for i, first in enumerate(files):
        for second in files[i + 1:]:
            if real_path(values[first]) == real_path(values[second]):
                problems.append(((first, second), "two of the tool's files cannot be one file"))
    return problems


def _inside_data_tree(path: Path, label: str, own_name: str | None, data_dir: Path) -> str | None:
    if own_name is not None and real_path(path) == real_path(data_dir / own_name):
        return None  # the status file's default place, given explicitly
    if inside_tree(path, data_dir):
        return (f"{label} cannot be inside the data directory {real_path(data_dir)} (rollups/ included): passes, "
                "report and forget read and delete there; put it elsewhere")
    return None


def _own_file_clash(path: Path, label: str, own_name: str | None, data_dir: Path, link: Path) -> str | None:
    if real_path(path) in (real_path(link), real_path(link.parent) / link.name):  # the link, or where it goes
        return f"{label} cannot be the link to the current data file"
    if real_path(path.parent) == real_path(data_dir):
        owner = _owner_of(path.name)
        if owner == "data":
            return (f"{label} cannot be a data file or have a data file's name (metrics-...: passes "
                    "would compress, remove or delete it)")
        if owner == "tool" and path.name != own_name:
            return f"{label} cannot be one of the data directory's lock or counter files"
    return None


def _owner_of(name: str) -> str | None:
    """Who a name in a data directory belongs to: "data" (``metrics-...``: data files; ``.metrics-...``: their
    temporary and set-aside versions), "tool" (``.metrics-ops...``: locks, state, change counter), or None."""
    from metrics_ops.store import PREFIX

    if name.startswith(".metrics-ops"):
        return "tool"
    return "data" if name.startswith(PREFIX) or name.startswith("." + PREFIX) else None


def _not_a_link_name(name: str) -> str | None:
    """Why ``name`` cannot be the link's name, or None. The link is replaced by a symlink on every pass: it must
    never be a name that holds data or belongs to the tool."""
    owner = _owner_of(name)
    if owner == "data":
        return ("the link cannot have a data file's name (metrics-YYYY-MM-DD[.N].jsonl[.gz]): rotate would replace "
                "that file with a symlink")
    if owner == "tool":
        return "the link cannot be the state file or a lock file of the data directory"
    return None
