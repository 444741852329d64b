"""The one settings model of every command, and where each value came from.

Precedence, highest first: command-line flag > environment (``METRICS_*``) > ``.env`` > TOML file (``--config``)
> default. The existing system's names (METRICS_DIR, METRICS_JSONL, METRICS_SAMPLE_RATE, METRICS_RING_CAPACITY)
keep their meaning. A bad value becomes a :class:`ConfigError` whose lines name the setting the way the operator
wrote it, the value and its source: ``METRICS_SAMPLE_RATE=1.5 (from the environment): input should be ...``.

Every setting is declared once, in :mod:`metrics_ops.settingfields` (its checks in
:mod:`metrics_ops.settingvalues`). The values a command is given are checked here without pydantic, which
cost a read-only command a third of its start-up (``report`` from rollups: 0.1 s of 0.3 s): plain numbers,
names, paths and defaults. Any value this check does not take, whether wrong or only unusual (``" 5 "``,
``"1_000"``, ``"yes"`` for a flag, a CORS list), goes to the reference model (:mod:`metrics_ops.settingsmodel`,
pydantic, built from the same declarations), which decides it and words every error;
tests/test_settings_fast.py holds the two to the same answers.
"""

from __future__ import annotations

import math
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo

from metrics_ops.objectstore import Location, parse_archive_url
from metrics_ops.origins import (  # noqa: F401  (re-exported: the config layer's names for the commands)
    DEFAULT,
    DOTENV,
    ENV,
    ENV_PREFIX,
    FLAG,
    HIDDEN,
    TOML,
    ConfigError,
    Origin,
    Secret,
    dotenv_file,
    env_name,
    env_values,
    is_secret_field,
    read_dotenv,
    read_toml,
    warn_env_typos,
)
from metrics_ops.settingfields import AFTER, BEFORE, FIELDS, MAX_INTERVAL, SettingField  # noqa: F401 (re-exported)
from metrics_ops.settingvalues import SettingProblem, relation_problems


class _Unsure(Exception):
    """The fast check does not take a value: the reference model decides it."""


_INT = re.compile(r"[0-9]{1,18}")
_FLOAT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?")


def _typed(annotation: Any, value: Any) -> Any:
    """``value`` as pydantic makes it of ``annotation`` in the plain forms (a number, its ASCII digits, a path's
    text, a choice, a list of strings, a map of rates); _Unsure for any other form, right or wrong."""
    args = get_args(annotation)
    if type(None) in args:  # X | None
        return None if value is None else _typed(next(a for a in args if a is not type(None)), value)
    if annotation is str and type(value) is str:
        return value
    if annotation is Path and type(value) is str and value:
        return Path(value)
    if annotation is Path and isinstance(value, Path):
        return value
    if annotation is bool and type(value) is bool:
        return value
    if annotation is int and (type(value) is int or (type(value) is str and _INT.fullmatch(value))):
        return int(value)
    if annotation is float and (type(value) in (int, float) or (type(value) is str and _FLOAT.fullmatch(value))):
        try:
            number = float(value)
        except OverflowError:  # an integer of 400 digits
            raise _Unsure from None
        if math.isfinite(number):
            return number
    if get_origin(annotation) is Literal and type(value) is str and value in args:
        return value
    if get_origin(annotation) is list and type(value) is list:
        return [_typed(args[0], item) for item in value]
    if get_origin(annotation) is dict and type(value) is dict:
        return {_typed(args[0], k): _typed(args[1], v) for k, v in value.items()}
    raise _Unsure


def _within(spec: SettingField, value: Any) -> bool:
    return value is None or not (spec.ge is not None and value < spec.ge or spec.gt is not None and value <= spec.gt
                                 or spec.le is not None and value > spec.le or spec.lt is not None and value >= spec.lt)


def fast_values(values: dict[str, Any]) -> dict[str, Any] | None:
    """Every setting's checked value, or None when one of them is anything but plain and right (the reference
    model then decides them all). Never takes a value the reference model refuses, nor gives another."""
    checked = {}
    try:
        for field, spec in FIELDS.items():
            value = values[field] if field in values else spec.default_value()
            for check in BEFORE[field]:
                value = check(field, value)
            value = _typed(spec.annotation, value)
            if not _within(spec, value):
                return None
            for check in AFTER.get(field, ()):
                value = check(field, value)
            checked[field] = value
    except (_Unsure, SettingProblem):
        return None
    return None if relation_problems(checked) else checked


class Settings:
    """Every setting of every command, checked: one attribute per field of :data:`FIELDS` (``admin_token`` a
    :class:`Secret`). ``Settings(**values)`` checks ``values`` as :func:`load_settings` does (ConfigError)."""

    fields = FIELDS

    def __init__(self, _origins: dict[str, Origin] | None = None, **values: Any):
        checked = fast_values(values)
        if checked is None:
            from metrics_ops.settingsmodel import reference_values

            checked = reference_values(values, _origins or {}, secret_fields())
        if checked["admin_token"] is not None:
            checked["admin_token"] = Secret(checked["admin_token"])
        self.__dict__.update(checked)
        self._origins = _origins

    def __repr__(self) -> str:
        shown = (f"{f}={HIDDEN if is_secret_field(spec) else getattr(self, f)!r}" for f, spec in FIELDS.items())
        return f"Settings({', '.join(shown)})"

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def link_path(self) -> Path:
        return self.jsonl if self.jsonl is not None else self.dir / "metrics.jsonl"

    @property
    def state_path(self) -> Path:
        return self.state_file if self.state_file is not None else self.dir / ".metrics-ops.state"

    @property
    def status_path(self) -> Path:
        return self.status_file if self.status_file is not None else self.dir / ".metrics-ops.status"

    @property
    def file_mode_bits(self) -> int:
        return int(self.file_mode, 8)

    @property
    def archive_location(self) -> Location | None:
        """Where the archive lives, or None when archiving is off."""
        return None if self.archive_url is None else parse_archive_url(self.archive_url)

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_mb is None else max(1, int(self.max_mb * 1024 * 1024))


def require_gzip_before_prune(settings: Settings) -> None:
    """For a command that compresses and deletes in one pass: a file must be compressed before it is deleted."""
    if settings.gzip_after > settings.retention:
        origins = origins_of(settings)
        parts = [origins[f].describe(getattr(settings, f)) for f in ("gzip_after", "retention")]
        raise ConfigError([f"{' with '.join(parts)}: gzip_after is greater than retention: "
                           "files would be deleted before they are compressed"])


def _origins(flags: dict[str, Any], spelled: dict[str, str], env_found: dict[str, str],
             dotenv: tuple[dict[str, str], dict[str, str]], env_file, toml_data: dict[str, Any],
             toml_file: str | None) -> dict[str, Origin]:
    """The layer each setting's value comes from, highest first: flag, environment, .env, TOML, default."""
    dotenv_found, dotenv_written = dotenv
    origins = {}
    for field in FIELDS:
        if field in flags:
            origins[field] = Origin(FLAG, spelled.get(field, field), flags[field])
        elif field in env_found:
            origins[field] = Origin(ENV, env_name(field), env_found[field])
        elif field in dotenv_found:
            origins[field] = Origin(DOTENV, env_name(field), dotenv_found[field], str(env_file),
                                    dotenv_written.get(field))
        elif field in toml_data:
            origins[field] = Origin(TOML, field, toml_data[field], toml_file)
        else:
            origins[field] = Origin(DEFAULT, env_name(field))
    return origins


def load_settings(
    flags: dict[str, Any] | None = None,
    config_file: str | os.PathLike | None = None,
    env_file: str | os.PathLike | None = ".env",
    spelled: dict[str, str] | None = None,
    config_spelled: str = "--config",
) -> Settings:
    """Build the settings from every layer; ``flags`` holds only the options the operator gave, ``spelled`` the
    option each of them came from as the command defines it (``{"gzip_level": "--level"}``), for messages;
    ``config_spelled`` how ``config_file`` was given (``--config`` or ``METRICS_CONFIG``).

    Returns a Settings whose ``origins`` attribute maps each field to its :class:`Origin`.
    Raises :class:`ConfigError` with one line per problem.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    warn_env_typos(FIELDS)
    toml_data = read_toml(config_file, FIELDS, config_spelled) if config_file is not None else {}
    toml_file = str(config_file) if config_file is not None else None
    if env_file is not None:
        env_file = dotenv_file(env_file)  # None: no .env (or a directory: a virtualenv named .env)
    dotenv_found, dotenv_written = read_dotenv(env_file, FIELDS) if env_file is not None else ({}, {})
    env_found = env_values(FIELDS)
    origins = _origins(flags, spelled or {}, env_found, (dotenv_found, dotenv_written), env_file, toml_data, toml_file)
    # each layer over the ones below it; a value from the environment or .env is its text, as the operator wrote it
    values = {**toml_data, **dotenv_found, **env_found, **flags}
    # METRICS_JSONL alone (the existing system's habit) implies the data directory it sits in.
    if origins["dir"].source == DEFAULT and origins["jsonl"].source != DEFAULT and origins["jsonl"].raw:
        values["dir"] = str(Path(str(origins["jsonl"].raw)).parent)
        origins["dir"] = Origin(origins["jsonl"].source, origins["jsonl"].spelled + " (its directory)",
                                values["dir"], origins["jsonl"].file)
    return Settings(_origins=origins, **values)


def origins_of(settings: Settings) -> dict[str, Origin]:
    return getattr(settings, "_origins", None) or {f: Origin(DEFAULT, env_name(f)) for f in FIELDS}


def secret_fields() -> frozenset[str]:
    """The settings no output may show (:func:`metrics_ops.origins.is_secret_field`)."""
    return frozenset(name for name, field in FIELDS.items() if is_secret_field(field))
