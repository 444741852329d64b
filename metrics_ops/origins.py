"""Where each setting's value came from, and how to say it: the sources the settings are read from (the process
environment and the .env file by exact name, the TOML file of --config, each checked before use), the
:class:`Origin` of every value, and the one-line messages that name a bad value as the operator wrote it."""

from __future__ import annotations

import io
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is imported only when the reference model words an error
    from pydantic import ValidationError

ENV_PREFIX = "METRICS_"

#: what is shown instead of a secret's value
HIDDEN = "(hidden)"

#: source labels, lowest precedence first
DEFAULT, TOML, DOTENV, ENV, FLAG = "default", "toml", ".env", "environment", "flag"


class ConfigError(Exception):
    """Invalid settings; ``lines`` holds one self-contained message per problem."""

    def __init__(self, lines: list[str]):
        lines = [printable(line) for line in lines]  # a value with a line break must not split its line
        super().__init__("\n".join(lines))
        self.lines = lines


def printable(text: str) -> str:
    """``text`` as one line that shows what it holds: a byte that is not UTF-8 (the environment holds bytes; Python
    keeps such a byte as a lone surrogate) as ``\\xNN``, a line break, tab or other invisible character escaped
    (``\\n``, ``\\u2028``). A value printed back can neither split its error line in two, forge another line,
    nor hide what is wrong with it."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte os.environ could not decode (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from, and how the operator spelled it there."""

    source: str
    spelled: str  # e.g. "METRICS_SAMPLE_RATE", "--sample-rate", "sample_rate"
    raw: Any = None
    file: str | None = None
    written: str | None = None  # a .env value's text before ${VAR} was expanded, when that changed it

    def describe(self, value: Any = None) -> str:
        shown = _redacted(self.raw if self.raw is not None else value)
        if self.source == FLAG and isinstance(shown, float):  # as typed: --client-rate 2, not 2.0
            shown = f"{shown:g}"
        # TOML's values as TOML (its strings quoted and escaped), every other as it is, escaped
        shown = _clipped(toml_text(shown) if self.source == TOML else printable(str(shown)))
        if self.source == FLAG:
            return f"{self.spelled} {shown} (from the command line)"
        if self.source == ENV:
            return f"{self.spelled}={shown} (from the environment)"
        if self.source == DOTENV:
            if self.written is not None and self.raw is not None and self.raw != HIDDEN:
                written = _clipped(printable(self.written))
                return f"{self.spelled}={written} (which gave \"{shown}\"; from {self.file or '.env'})"
            return f"{self.spelled}={shown} (from {self.file or '.env'})"
        if self.source == TOML:
            return f"{self.spelled} = {shown} (from {self.file})"
        return f"{self.spelled}={shown} (default)"


#: the longest value an error line prints whole: a longer one (a variable of 100,000 characters) is cut, its length
#: given, so that the line stays one line where logs split long ones (journald at 48 KiB)
MAX_SHOWN = 1024


def _clipped(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else f"{text[:256]}... ({len(text):,} characters)"


#: the user-info part of a URL (``s3://KEY:SECRET@bucket``, ``KEY:SECRET@bucket`` without a scheme): never shown
_USERINFO = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?)\S*@")  # up to the last @: a secret may hold /
REDACTED = "***"


def redact_userinfo(text: str) -> str:
    """``text`` with the user-info of a URL (a user, a password, an access key and its secret) replaced by
    ``***``: a value that error lines and ``config show`` print back must not leak a credential typed into it."""
    return _USERINFO.sub(lambda m: f"{m[1]}{REDACTED}@", text, count=1)


def toml_text(value: Any, depth: int = 0) -> str:
    """A value of a TOML file written back as TOML (``true``, ``2024-01-01``, ``{ a = 2 }``), not as Python
    (``True``, ``datetime.date(2024, 1, 1)``); a string quoted, its invisible characters escaped; an array or
    table nested deeper than 8 levels as ``[...]`` (hundreds of levels would end the message in a traceback)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[...]" if depth >= 8 else "[" + ", ".join(toml_text(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        if depth >= 8:
            return "{ ... }"
        return "{ " + ", ".join(f"{k} = {toml_text(v, depth + 1)}" for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):  # date, time, datetime
        return value.isoformat()
    return repr(value)


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` with the user-info of every URL in it redacted: a string, or the strings of a TOML array or table
    (``archive_url = ["s3://KEY:SECRET@bucket"]`` is a wrong type, and is printed back); below the 8 levels that
    :func:`toml_text` prints, nothing (it is never shown)."""
    if isinstance(value, str):
        return redact_userinfo(value)
    if depth >= 8 and isinstance(value, list | tuple | dict):
        return type(value)()
    if isinstance(value, list | tuple):
        return type(value)(_redacted(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {_redacted(k, depth + 1): _redacted(v, depth + 1) for k, v in value.items()}
    return value


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def exact_names(fields: Iterable[str], found: Mapping[str, str | None]) -> dict[str, str]:
    """The variables of ``found`` named exactly as a setting (METRICS_DIR, never metrics_dir or Metrics_Dir:
    names are case-sensitive, as on every Unix tool), keyed by the setting's name, their text as it is (an empty
    value is kept: the setting's validators decide what it means). A .env key without ``=`` (value None) sets
    nothing."""
    names = {env_name(field): field for field in fields}
    return {names[key]: value for key, value in found.items() if key in names and value is not None}


def env_values(fields: Iterable[str]) -> dict[str, str]:
    """The settings the process environment gives, by exact name."""
    return exact_names(fields, os.environ)


class Secret:
    """A secret setting's value (the admin token): shown as ``'**********'`` by repr and str, so that a log line
    or a traceback that prints the settings cannot leak it; :meth:`get_secret_value` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


def is_secret_field(field: Any) -> bool:
    """Whether a setting (a :class:`metrics_ops.config.SettingField`) is a secret no output may show (config
    show, error lines)."""
    return bool(field.secret)


def plain_value(value: Any) -> Any:
    """A setting's value for another process of the tool: paths absolute without following a symlink (the link
    must stay the link, not become the data file it points at), secrets revealed."""
    if isinstance(value, Path):
        # absolute() keeps a "..": abspath would drop it by the text, and link/.. is not link's directory's
        # parent when link is a symlink: the worker would use another directory than the process that checked it
        try:
            return str(value.absolute())
        except OSError:  # the working directory was deleted: the worker starts in the same one
            return str(value)
    if isinstance(value, Secret):
        return value.get_secret_value()
    return value




#: the largest settings file read: a TOML file of every setting is a few kB; a far larger one (a log given by
#: mistake, /dev/zero) is none, and would be read into memory whole
MAX_TOML_BYTES = 1 << 20


def _settings_file_bytes(path: str | os.PathLike, named: str, fix: str = "give a TOML file") -> bytes:
    """The bytes of a settings file (--config, or a .env that :func:`dotenv_file` found a file): a regular file (or
    /dev/null, no settings) of at most MAX_TOML_BYTES (:func:`metrics_ops.layout.read_small_file`)."""
    from metrics_ops.layout import NotARegularFile, read_small_file

    try:
        return read_small_file(path, MAX_TOML_BYTES)
    except NotARegularFile as exc:
        if exc.kind.startswith("larger"):
            raise ConfigError([f"{named}: larger than {MAX_TOML_BYTES >> 20} MiB: not a settings file"]) from None
        raise ConfigError([f"{named}: not a regular file (a FIFO, socket or device); {fix}"]) from None


def read_toml(path: str | os.PathLike, known: Iterable[str], spelled: str = "--config") -> dict[str, Any]:
    """Parse a --config file; unknown keys and syntax errors are ConfigErrors naming the file as the operator gave
    it (``spelled``: ``--config`` or ``METRICS_CONFIG``)."""
    named = f"{spelled}={path}" if spelled.startswith(ENV_PREFIX) else f"{spelled} {path}"
    path = Path(os.path.expanduser(path))  # ~/m.toml as every path setting reads it (see settingvalues.home_path)
    try:
        data = tomllib.loads(_settings_file_bytes(path, named).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{named}: the file does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{named}: is a directory, not a TOML file"]) from None
    except PermissionError:
        raise ConfigError([f"{named}: permission denied"]) from None
    except OSError as exc:  # a name over 255 bytes, a path through a file, /proc/self/mem
        raise ConfigError([f"{named}: cannot read it: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{named}: malformed TOML: {exc}"]) from None
    except RecursionError:  # arrays or tables nested hundreds deep
        raise ConfigError([f"{named}: malformed TOML: nested too deep"]) from None
    except ValueError as exc:  # Python's own limit: an integer of over 4,300 digits
        why = "an integer of over 4300 digits" if "int_max_str_digits" in str(exc) else str(exc)
        raise ConfigError([f"{named}: malformed TOML: {why}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{named}: malformed TOML: not UTF-8 text"]) from None
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        lines = []
        for key in unknown:
            # METRICS_RETENTION is the variable's name; in TOML the key is retention
            close = close_name(key[len(ENV_PREFIX):] if key.upper().startswith(ENV_PREFIX) else key, known)
            hint = f"; did you mean {close!r}?" if close else "; see `config show`"
            lines.append(f"{named}: unknown key {key!r}{hint}")
        raise ConfigError(lines)
    base = path.parent
    # paths in a config file are relative to that file, not to the CWD (~ is the home directory: Settings expands it)
    for key in ("dir", "jsonl", "state_file", "status_file", "health_textfile"):
        value = data.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value) and not value.startswith("~"):
            data[key] = str(base / data[key])
    return data


#: METRICS_* variables that are not settings but are read by the tool: the config file, and what serve's main
#: process hands its workers (metrics_ops.serve.worker.PARENT_ENV and SETTINGS_ENV)
OTHER_ENV = frozenset({"METRICS_CONFIG", "METRICS_SERVE_PARENT_PID", "METRICS_SERVE_SETTINGS"})


def dotenv_file(path: str | os.PathLike) -> str | os.PathLike | None:
    """``path`` when it is a .env to read (a regular file, or a symlink to one); None when there is none: nothing
    there, a directory (a virtualenv is often named .env), or /dev/null (the empty file it is for --config). A
    dangling symlink, a symlink loop, a FIFO, a socket or a device is a one-line ConfigError: such a .env was
    skipped in silence, its settings never read; a FIFO is never opened (it would wait for a writer)."""
    import errno
    import stat

    fix = "give it a file or remove it"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.path.islink(path):
            return None
        raise ConfigError([f"{path}: a dangling symlink (to {os.readlink(path)}, which does not exist); {fix}"]
                          ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError([f"{path}: a symlink loop; {fix}"]) from None
        if exc.errno == errno.ENOTDIR:
            return None  # a parent is no directory: there is no such file
        raise ConfigError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    if stat.S_ISREG(st.st_mode):
        return path
    if stat.S_ISDIR(st.st_mode) or os.path.samestat(st, os.stat(os.devnull)):
        return None
    kinds = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
             stat.S_IFBLK: "block device"}
    kind = kinds.get(stat.S_IFMT(st.st_mode), "special file")
    what = f"a symlink to a {kind} ({os.readlink(path)})" if os.path.islink(path) else f"a {kind}"
    raise ConfigError([f"{path}: {what}, not a file of settings; {fix}"])


def read_dotenv(path: str | os.PathLike, fields: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The settings a .env file gives, by exact name (python-dotenv's syntax, ``${VAR}`` expanded), and the text
    written for each whose value a ``${VAR}`` changed (for messages: ``${KEEP_DAYS}`` that gave ""). The file is
    read once; it must be UTF-8 and may not hold an unknown METRICS_* key (a typo such as METRICS_RETENSION would
    otherwise be ignored in silence, while the same typo in TOML is an error). Every problem is a ConfigError."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        raw = _settings_file_bytes(path, str(path), "give it a file or remove it")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{path} line {line}: not UTF-8 text; save the file as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    fields = list(fields)
    # a line python-dotenv cannot parse is skipped with a warning of its own: its setting would be lost in silence
    bad = [b.original.line for b in parse_stream(io.StringIO(text, newline=None)) if b.error]
    if bad:
        raise ConfigError([f"{path} line {n}: cannot read it as NAME=value (nothing on it would be read); fix or "
                           "remove it" for n in bad])
    # newline=None: the line ends of a file opened as text (\r\n and \r read as \n), as dotenv_values(path) reads
    found = dotenv_values(stream=io.StringIO(text, newline=None))
    known = {env_name(f) for f in fields} | OTHER_ENV
    lines = []
    for key in found:
        if key.upper().startswith(ENV_PREFIX) and key not in known:  # metrics_dir is not METRICS_DIR
            close = close_name(key, known, prefix=ENV_PREFIX, cutoff=0.6)
            hint = f"; did you mean {close}?" if close else ""
            lines.append(f"{key} (from {path}): unknown setting{hint}")
        elif key in OTHER_ENV and found[key]:  # known, but no setting: it would be ignored in silence
            why = ("the TOML file is not named in .env: give --config, or set METRICS_CONFIG in the environment"
                   if key == "METRICS_CONFIG" else "serve sets it for its workers; it is not a setting")
            lines.append(f"{key}={found[key]} (from {path}): {why}")
    if lines:
        raise ConfigError(lines)
    values = exact_names(fields, found)
    written = exact_names(fields, dotenv_values(stream=io.StringIO(text, newline=None), interpolate=False))
    return values, {k: v for k, v in written.items() if k in values and v != values[k]}


def close_name(name: str, known: Iterable[str], prefix: str = "", cutoff: float = 0.75) -> str | None:
    """The known name ``name`` most likely misspells (case aside), or None. The common ``prefix`` is left out
    of the comparison: METRICS_API_KEY is not "close" to METRICS_SAMPLE_KEY for the prefix they share."""
    import difflib

    stems = {k[len(prefix):].lower(): k for k in known if k.upper().startswith(prefix.upper())}
    stem = name[len(prefix):].lower() if name.upper().startswith(prefix.upper()) else name.lower()
    close = difflib.get_close_matches(stem, sorted(stems), n=1, cutoff=cutoff)
    return stems[close[0]] if close else None


_warned: set[str] = set()


def warn_env_typos(fields: Iterable[str]) -> None:
    """Say once per process, on stderr, each variable of the environment that looks like a misspelt setting
    (:func:`env_typos`)."""
    import sys

    for line in env_typos(os.environ, fields):
        if line not in _warned:
            _warned.add(line)
            print(f"metrics-ops: {line}", file=sys.stderr)


def env_typos(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """One warning line per variable of ``environ`` that is not a setting but looks like one (METRICS_RETENTON,
    METRICS_CORS_ORIGIN, metrics_dir): a warning, not an error, since other programs may use the prefix."""
    known = {env_name(f) for f in fields} | OTHER_ENV
    lines = []
    for key in sorted(environ):
        if key in known or not key.upper().startswith(ENV_PREFIX):
            continue
        close = close_name(key, known - OTHER_ENV, prefix=ENV_PREFIX)
        if close is not None:
            lines.append(f"ignoring {printable(key)}; did you mean {close}?")
    return lines


def format_errors(exc: ValidationError, origins: dict[str, Origin], defaults: dict[str, Any],
                  secrets: Iterable[str] = ()) -> list[str]:
    """A pydantic ValidationError -> one line per bad setting (or relation), naming each setting as the operator
    spelled it, its value and its source (``defaults``: the default of each field, for a default that fails a
    relation); the problems of one setting's items (``[1, 2]`` for a list of strings) share its line, each named
    by its place. The value of a setting in ``secrets`` is never shown."""
    secrets = set(secrets)
    grouped: dict[tuple, tuple[str, list[str]]] = {}
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        msg = msg[:1].lower() + msg[1:]
        fields = tuple((err.get("ctx") or {}).get("fields") or err["loc"][:1])
        place = [p for p in err["loc"][1:] if p != "[key]"] if len(err["loc"]) > 1 and len(fields) == 1 else []
        if place:  # an item of a list or table: say which
            msg = ", ".join(f"item {p + 1}" if isinstance(p, int) else repr(p) for p in place) + ": " + msg
        if fields in grouped:
            if msg not in grouped[fields][1]:
                grouped[fields][1].append(msg)
            continue
        parts = []
        for field in fields:
            origin = origins.get(field) or Origin(DEFAULT, env_name(str(field)))
            value = err.get("input") if len(fields) == 1 else None
            if value is None or isinstance(value, dict):
                value = defaults.get(field) if origin.source == DEFAULT else origin.raw
            if field in secrets:
                origin, value = Origin(origin.source, origin.spelled, HIDDEN, origin.file), HIDDEN
            parts.append(origin.describe(value))
        grouped[fields] = (" with ".join(parts), [msg])
    return [f"{named}: {'; '.join(msgs)}" for named, msgs in grouped.values()]
