"""Where each setting's value came from, and how to say it: the sources a settings model reads besides the
environment (the TOML file of --config, the .env file, checked before use), the :class:`Origin` of every value,
and the one-line messages that name a bad value as the operator wrote it."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

ENV_PREFIX = "METRICS_"

#: source labels, lowest precedence first
DEFAULT, TOML, DOTENV, ENV, FLAG = "default", "toml", ".env", "environment", "flag"


class ConfigError(Exception):
    """Invalid settings; ``lines`` holds one self-contained message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from, and how the operator spelled it there."""

    source: str
    spelled: str  # e.g. "METRICS_SAMPLE_RATE", "--sample-rate", "sample_rate"
    raw: Any = None
    file: str | None = None

    def describe(self, value: Any = None) -> str:
        shown = self.raw if self.raw is not None else value
        if self.source == FLAG:
            if isinstance(shown, float):  # as typed: --client-rate 2, not 2.0
                shown = f"{shown:g}"
            return f"{self.spelled} {shown} (from the command line)"
        if self.source == ENV:
            return f"{self.spelled}={shown} (from the environment)"
        if self.source == DOTENV:
            return f"{self.spelled}={shown} (from {self.file or '.env'})"
        if self.source == TOML:
            return f"{self.spelled} = {shown!r} (from {self.file})"
        return f"{self.spelled}={shown} (default)"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def read_toml(path: str | os.PathLike, known: Iterable[str]) -> dict[str, Any]:
    """Parse a --config file; unknown keys and syntax errors are ConfigErrors naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"--config {path}: the file does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"--config {path}: is a directory, not a TOML file"]) from None
    except PermissionError:
        raise ConfigError([f"--config {path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"--config {path}: malformed TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"--config {path}: malformed TOML: not UTF-8 text"]) from None
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            [f"--config {path}: unknown setting {key!r} (known: {', '.join(sorted(known))})" for key in unknown]
        )
    base = path.parent
    # paths in a config file are relative to that file, not to the CWD
    for key in ("dir", "jsonl", "state_file", "status_file", "health_textfile"):
        if isinstance(data.get(key), str) and data[key] and not os.path.isabs(data[key]):
            data[key] = str(base / data[key])
    return data


#: METRICS_* variables that are not settings but are read by the tool
OTHER_ENV = frozenset({"METRICS_CONFIG"})


def check_dotenv(path: str | os.PathLike, fields: Iterable[str]) -> None:
    """A .env file must be UTF-8 and may not hold an unknown METRICS_* key (a typo such as METRICS_RETENSION
    would otherwise be ignored in silence, while the same typo in TOML is an error)."""
    import difflib

    from dotenv import dotenv_values

    try:
        raw = Path(path).read_bytes()
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{path} line {line}: not UTF-8 text; save the file as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror}"]) from None
    known = {env_name(f) for f in fields} | OTHER_ENV
    lines = []
    for key in dotenv_values(path):
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{key} (from {path}): unknown setting{hint}")
    if lines:
        raise ConfigError(lines)


def format_errors(exc: ValidationError, origins: dict[str, Origin], defaults: dict[str, Any],
                  secret: frozenset[str] = frozenset()) -> list[str]:
    """A pydantic ValidationError -> one line per problem, naming each setting as the operator spelled it, its
    value and its source (``defaults``: the default of each field, for a default that fails a relation). The
    value of a ``secret`` field is never shown."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        msg = msg[:1].lower() + msg[1:]
        fields = (err.get("ctx") or {}).get("fields") or err["loc"][:1]
        parts = []
        for field in fields:
            origin = origins.get(field) or Origin(DEFAULT, env_name(str(field)))
            value = err.get("input") if len(fields) == 1 else None
            if value is None or isinstance(value, dict):
                value = defaults.get(field) if origin.source == DEFAULT else origin.raw
            if field in secret:
                origin, value = replace(origin, raw="(hidden)"), "(hidden)"
            parts.append(origin.describe(value))
        lines.append(f"{' with '.join(parts)}: {msg}")
    return lines
