"""The one settings model of every command, and where each value came from.

Precedence, highest first: command-line flag > environment (``METRICS_*``) > ``.env`` > TOML file (``--config``)
> default. The existing system's names (METRICS_DIR, METRICS_JSONL, METRICS_SAMPLE_RATE, METRICS_RING_CAPACITY)
keep their meaning. A bad value becomes a :class:`ConfigError` whose lines name the setting the way the operator
wrote it, the value and its source: ``METRICS_SAMPLE_RATE=1.5 (from the environment): input should be ...``.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from metrics_ops.events import MIN_RATE, usable_rate
from metrics_ops.objectstore import Location, default_host_id, host_id_problem, parse_archive_url
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
    dotenv_file,
    env_name,
    env_values,
    format_errors,
    is_secret_field,
    read_dotenv,
    read_toml,
    warn_env_typos,
)
from metrics_ops.settingvalues import (
    home_path,
    is_path,
    mode_text,
    origin_list,
    printable_host,
    rate_names,
    raw_value_problem,
)


def _json_value(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise PydanticCustomError("json", "not valid JSON: {error}", {"error": str(exc)}) from None


#: bounds of the settings that count days, seconds and sizes: whatever the operator writes, every date, timestamp
#: and byte count derived from them stays inside the calendar and the clock (a day count of 10**6 or an interval of
#: 1e12 s overflows them), and far beyond any sensible value: a century, a week between passes, a day's wait for
#: the lock, a pebibyte.
MAX_DAYS = 36_500
MIN_INTERVAL, MAX_INTERVAL = 0.1, 7 * 86_400
MAX_LOCK_TIMEOUT = 86_400
MAX_MIB = 1 << 30

class Settings(BaseModel):
    """Every setting of every command. Field name = TOML key = env name without METRICS_, lower-cased.

    A plain model: :func:`load_settings` reads the layers (flags, environment, .env, TOML) and validates what they
    give; a value from the environment or .env arrives as its text, and the validators below parse it."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    dir: Path = Field(Path("data"), description="data directory holding the JSONL files")
    jsonl: Path | None = Field(
        None, description="the link to the current file; must be in the data directory (default DIR/metrics.jsonl)"
    )
    tz: str = Field("UTC", description="IANA time zone that decides the day of an event and of a file")
    sample_rate: float = Field(1.0, ge=0, le=1, allow_inf_nan=False,
                               description="server-side sampling rate: 0 (store nothing), or 0.000001 .. 1")
    ring_capacity: int = Field(500, ge=1, le=10_000, description="events kept for the debug snapshot")
    gzip_after: int = Field(3, ge=1, le=MAX_DAYS, description="compress files whose day is at least this many days old")
    retention: int = Field(30, ge=1, le=MAX_DAYS, description="delete files whose day is at least this many days old")
    max_mb: float | None = Field(None, gt=0, le=MAX_MIB, allow_inf_nan=False,
                                 description="start a new shard at this size in MiB (unset: no shards)")
    rollup_retention: int = Field(400, ge=1, le=MAX_DAYS,
                                  description="keep a day's rollup (its counts, no ids) this many days")
    rollup_min_visitors: int = Field(5, ge=2, le=1_000_000, description=(
        "a day's rollup counts an event name or path seen by fewer visitors that day in (other)"))
    interval: float = Field(300, ge=MIN_INTERVAL, le=MAX_INTERVAL, allow_inf_nan=False,
                            description="seconds between passes of rotate's loop (0.1 .. 604800, a week)")
    gzip_level: int = Field(6, ge=1, le=9, description="gzip compression level, 1 (fast) .. 9 (small)")
    lock_timeout: float = Field(10, ge=0, le=MAX_LOCK_TIMEOUT, allow_inf_nan=False,
                                description="seconds a maintenance pass waits for another to finish")
    # disk budget and the rotator's health (metrics_ops.budget, metrics_ops.health)
    max_total_mb: float | None = Field(None, gt=0, le=MAX_MIB, allow_inf_nan=False, description=(
        "ceiling on the data files' and rollups' total size in MiB: a pass deletes the oldest data above it "
        "(unset: none)"))
    min_free_mb: float | None = Field(None, ge=0, le=MAX_MIB, allow_inf_nan=False, description=(
        "free space in MiB a pass keeps on the data directory's file system, deleting the oldest data (unset: none)"))
    min_free_percent: float | None = Field(None, ge=0, lt=100, allow_inf_nan=False, description=(
        "the same floor as a percentage of the file system's size (both hold when both are set)"))
    serve_min_free_mb: float = Field(64, ge=0, le=MAX_MIB, allow_inf_nan=False, description=(
        "serve stores nothing (202 stored: 0, /healthz 503) while less than this many MiB are free; 0: off"))
    status_file: Path | None = Field(
        None, description="one-line status of the last pass, for health checks (default DIR/.metrics-ops.status)")
    health_textfile: Path | None = Field(
        None, description="Prometheus textfile each pass writes (node_exporter textfile collector; unset: none)")
    # the archive (metrics_ops.objectstore): off while archive_url is unset
    archive_url: str | None = Field(None, description=(
        "s3://bucket[/prefix] to archive closed days to (unset: no archive); credentials the standard AWS ways"))
    host_id: str = Field(default_factory=default_host_id, description=(
        "names this host's objects in the archive (default: the host name, lowercased, a-z 0-9 - only)"))
    archive_retention: int = Field(400, ge=1, le=MAX_DAYS,
                                   description="delete archived objects whose day is at least this many days old")
    # serve
    host: str = Field("127.0.0.1", description="address serve listens on")
    port: int = Field(8001, ge=1, le=65535, description="port serve listens on")
    workers: int = Field(2, ge=1, le=64, description="serve's worker processes")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning", description="serve's log level; info adds one access line per request (never an IP)")
    max_body: int = Field(65536, ge=256, le=16 * 1024 * 1024, description="largest request body in bytes")
    max_batch: int = Field(100, ge=1, le=10_000, description="most events in one batch request")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS: comma-separated or a JSON list; * for any")
    state_file: Path | None = Field(
        None, description="shared ring and counters of serve's workers (default DIR/.metrics-ops.state)")
    keep_query: bool = Field(False, description=(
        "serve keeps the query string and fragment of metadata.path (default: cut off, they hide e-mails and tokens)"))
    admin_token: SecretStr | None = Field(None, description=(
        "secret bearer token for the snapshot and /metrics from any address (unset: loopback peers only)"))
    file_mode: str = Field(
        "0640", description="mode of new data files (octal; umask applies); the directory gets the matching x bits")
    # sampling
    sample_mode: Literal["random", "visitor"] = Field(
        "random", description="random: each event on its own; visitor: whole visitors, by a keyed hash")
    sample_rates: dict[str, float] = Field(
        default_factory=dict, description='per-event-name rates over sample_rate: JSON or "name=rate,..."')
    client_sample_rate: float = Field(
        1.0, ge=0, le=1, allow_inf_nan=False,
        description="the browser's sampling rate (VITE_METRICS_SAMPLE_RATE), for sample-test")
    sample_key: str = Field("", description="key of the visitor hash; set the same key wherever visitors are hashed",
                            json_schema_extra={"secret": True})

    @field_validator("*", mode="before")
    @classmethod
    def _raw_value(cls, value, info):  # info: pydantic's ValidationInfo
        annotation = cls.model_fields[info.field_name].annotation
        raw_value_problem(annotation, value)
        return home_path(value) if is_path(annotation) else value

    @field_validator("max_mb", "jsonl", "state_file", "max_total_mb", "min_free_mb", "min_free_percent",
                     "status_file", "health_textfile", "admin_token", "archive_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("log_level", "sample_mode", mode="before")
    @classmethod
    def _choice_in_any_case(cls, value):
        # INFO, Warning, VISITOR: a choice is a word, not its case (most tools write levels in capitals)
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return printable_host(value)

    @field_validator("archive_url")
    @classmethod
    def _archive_url(cls, value: str | None) -> str | None:
        try:
            return None if value is None else parse_archive_url(value).url
        except ValueError as exc:
            raise PydanticCustomError("archive_url", "{why}", {"why": str(exc)}) from None

    @field_validator("host_id", mode="before")
    @classmethod
    def _host_id(cls, value):
        if isinstance(value, str) and (why := host_id_problem(value)):
            raise PydanticCustomError("host_id", "{why}", {"why": why})
        return value

    @field_validator("dir", mode="before")
    @classmethod
    def _dir_given(cls, value):
        if isinstance(value, str) and value.strip() == "":
            raise PydanticCustomError("empty", "the data directory cannot be empty (it would silently be the working "
                                               "directory); give a path")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value):
        if isinstance(value, str):
            text = value.strip()
            value = _json_value(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        return origin_list(value)  # every form: each origin as a browser sends it

    @field_validator("sample_rates", mode="before")
    @classmethod
    def _rate_map(cls, value):
        text = value.strip() if isinstance(value, str) else None
        if text is not None and text.startswith("{"):
            value = _json_value(text)
        elif text is not None:
            value = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, rate = part.partition("=")
                if not sep:
                    raise PydanticCustomError("rate_map", 'want JSON or "event=rate,event=rate"')
                value[name.strip()] = rate.strip()
        return rate_names(value)

    @field_validator("sample_rates")
    @classmethod
    def _rates_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if not (rate == 0 or usable_rate(rate)):
                raise PydanticCustomError("rate_map", "rate of {name} must be 0 or between {floor} and 1",
                                          {"name": name, "floor": f"{MIN_RATE:g}"})
        return value

    @field_validator("sample_rate", "client_sample_rate")
    @classmethod
    def _rate_floor(cls, value: float) -> float:
        if 0 < value < MIN_RATE:  # a line would weigh over 10^12: readers could not use it
            raise PydanticCustomError("rate", "a rate must be 0 or at least {floor} (one in a million)",
                                      {"floor": f"{MIN_RATE:g}"})
        return value

    @field_validator("admin_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            raise PydanticCustomError("token", "the admin token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~ "
                                      "+ / = (what a bearer header carries), e.g. from: openssl rand -hex 32")
        return value

    @field_validator("file_mode", mode="before")
    @classmethod
    def _mode_as_text(cls, value):
        return mode_text(value)

    @field_validator("file_mode")
    @classmethod
    def _octal_mode(cls, value: str) -> str:
        text = value.strip()
        try:
            bits = int(text, 8)
        except ValueError:
            raise PydanticCustomError("mode", "want an octal file mode such as 0640") from None
        if bits & ~0o666 or bits & 0o600 != 0o600:
            raise PydanticCustomError(
                "mode", "a data file mode must give the owner read and write and nobody execute (0600 .. 0666)")
        return f"0{bits:o}"

    @field_validator("rollup_min_visitors", mode="before")
    @classmethod
    def _k_visitors(cls, value):
        try:
            small = int(value) < 2
        except (TypeError, ValueError):
            return value  # the type check words it
        if small:
            raise PydanticCustomError("k_visitors", "want at least 2: a rollup row of one visitor singles them out")
        return value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("zone", "unknown time zone (want an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _relations(self) -> Settings:
        # gzip_after against retention is not checked here: only a command that runs both steps needs it
        # (see require_gzip_before_prune); `prune --retention 2` must not fail on gzip_after's default.
        if self.jsonl is not None and self.jsonl.parent.resolve() != self.dir.resolve():
            raise PydanticCustomError(
                "relation",
                "the link must be a file directly inside the data directory",
                {"fields": ("jsonl", "dir")},
            )
        if self.jsonl is not None and (why := _not_a_link_name(self.jsonl.name)):
            raise PydanticCustomError("relation", "{why}", {"fields": ("jsonl",), "why": why})
        from metrics_ops.layout import STATE_NAME, STATUS_NAME

        # files the tool writes over and over: never the link, a data file or another of the tool's files; and
        # what it writes for monitoring nowhere in the data directory's tree but the status file's own default
        for name, label, own in (("state_file", "the state file", STATE_NAME),
                                 ("status_file", "the status file", STATUS_NAME),
                                 ("health_textfile", "the health textfile", None)):
            path = getattr(self, name)
            if path is None:
                continue
            why = self._own_file_clash(path, label, own)
            if why is None and name != "state_file":
                why = self._inside_data_tree(path, label, own)
            if why is not None:
                raise PydanticCustomError("relation", "{why}", {"fields": (name,), "why": why})
        return self

    def _inside_data_tree(self, path: Path, label: str, own_name: str | None) -> str | None:
        from metrics_ops.layout import inside_tree

        if own_name is not None and path.resolve() == (self.dir / own_name).resolve():
            return None  # the status file's default place, given explicitly
        if inside_tree(path, self.dir):
            return (f"{label} cannot be inside the data directory {self.dir.resolve()} (rollups/ included): passes, "
                    "report and forget read and delete there; put it elsewhere")
        return None

    def _own_file_clash(self, path: Path, label: str, own_name: str | None) -> str | None:
        if path.resolve() == self.link_path.resolve() or path.resolve() == self.link_path.absolute():
            return f"{label} cannot be the link to the current data file"
        if path.parent.resolve() == self.dir.resolve():
            owner = _owner_of(path.name)
            if owner == "data":
                return (f"{label} cannot be a data file or have a data file's name (metrics-...: passes "
                        "would compress, remove or delete it)")
            if owner == "tool" and path.name != own_name:
                return f"{label} cannot be one of the data directory's lock or counter files"
        return None

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


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


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
    for field in Settings.model_fields:
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
    warn_env_typos(Settings.model_fields)
    toml_data = read_toml(config_file, Settings.model_fields, config_spelled) if config_file is not None else {}
    toml_file = str(config_file) if config_file is not None else None
    if env_file is not None:
        env_file = dotenv_file(env_file)  # None: no .env (or a directory: a virtualenv named .env)
    dotenv_found, dotenv_written = read_dotenv(env_file, Settings.model_fields) if env_file is not None else ({}, {})
    env_found = env_values(Settings.model_fields)
    origins = _origins(flags, spelled or {}, env_found, (dotenv_found, dotenv_written), env_file, toml_data, toml_file)
    # each layer over the ones below it; a value from the environment or .env is its text, as the operator wrote it
    values = {**toml_data, **dotenv_found, **env_found, **flags}
    # METRICS_JSONL alone (the existing system's habit) implies the data directory it sits in.
    if origins["dir"].source == DEFAULT and origins["jsonl"].source != DEFAULT and origins["jsonl"].raw:
        values["dir"] = str(Path(str(origins["jsonl"].raw)).parent)
        origins["dir"] = Origin(origins["jsonl"].source, origins["jsonl"].spelled + " (its directory)",
                                values["dir"], origins["jsonl"].file)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origins, {f: i.default for f, i in Settings.model_fields.items()},
                                        secret_fields())) from None
    object.__setattr__(settings, "_origins", origins)
    return settings


def origins_of(settings: Settings) -> dict[str, Origin]:
    return getattr(settings, "_origins", None) or {f: Origin(DEFAULT, env_name(f)) for f in Settings.model_fields}


def secret_fields() -> frozenset[str]:
    """The settings no output may show (:func:`metrics_ops.origins.is_secret_field`)."""
    return frozenset(name for name, field in Settings.model_fields.items() if is_secret_field(field))
