"""Every setting declared once: its type, default, bounds and description (:data:`FIELDS`), and the checks of
:mod:`metrics_ops.settingvalues` each runs (:data:`BEFORE` its type, :data:`AFTER` it). The fast check of
:mod:`metrics_ops.config` and the reference model of :mod:`metrics_ops.settingsmodel` are both built from these
declarations, so that they cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from metrics_ops.objectstore import default_host_id
from metrics_ops.settingvalues import (
    archive_url,
    choice_in_any_case,
    cors_origins,
    dir_given,
    empty_is_unset,
    home_path,
    host_id_given,
    is_path,
    k_visitors,
    known_zone,
    mode_text,
    no_symlink_loop,
    octal_mode,
    printable_host,
    rate_floor,
    rate_map,
    rates_in_range,
    raw_value_problem,
    token_shape,
)

#: bounds of the settings that count days, seconds and sizes: whatever the operator writes, every date, timestamp
#: and byte count derived from them stays inside the calendar and the clock (a day count of 10**6 or an interval of
#: 1e12 s overflows them), and far beyond any sensible value: a century, a week between passes, a day's wait for
#: the lock, a pebibyte.
MAX_DAYS = 36_500
MIN_INTERVAL, MAX_INTERVAL = 0.1, 7 * 86_400
MAX_LOCK_TIMEOUT = 86_400
MAX_MIB = 1 << 30


@dataclass(frozen=True)
class SettingField:
    """One setting's declaration: its type, default, bounds (pydantic's ge/gt/le/lt; ``finite``: no inf or NaN),
    whether it is a secret no output shows, and the description the docs and man pages print."""

    annotation: Any
    default: Any = None
    description: str = ""
    default_factory: Any = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = False
    secret: bool = False

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def bounds(self) -> dict[str, float]:
        return {k: v for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt)) if v is not None}


F = SettingField

#: every setting of every command. Field name = TOML key = env name without METRICS_, lower-cased.
FIELDS: dict[str, SettingField] = {
    "dir": F(Path, Path("data"), "data directory holding the JSONL files"),
    "jsonl": F(Path | None, None, "the link to the current file; must be in the data directory (default "
                                  "DIR/metrics.jsonl)"),
    "tz": F(str, "UTC", "IANA time zone that decides the day of an event and of a file"),
    "sample_rate": F(float, 1.0, "server-side sampling rate: 0 (store nothing), or 0.000001 .. 1", ge=0, le=1,
                     finite=True),
    "ring_capacity": F(int, 500, "events kept for the debug snapshot", ge=1, le=10_000),
    "gzip_after": F(int, 3, "compress files whose day is at least this many days old", ge=1, le=MAX_DAYS),
    "retention": F(int, 30, "delete files whose day is at least this many days old", ge=1, le=MAX_DAYS),
    "max_mb": F(float | None, None, "start a new shard at this size in MiB (unset: no shards)", gt=0, le=MAX_MIB,
                finite=True),
    "rollup_retention": F(int, 400, "keep a day's rollup (its counts, no ids) this many days", ge=1, le=MAX_DAYS),
    "rollup_min_visitors": F(int, 5, "a day's rollup counts an event name or path seen by fewer visitors that day "
                                     "in (other)", ge=2, le=1_000_000),
    "interval": F(float, 300, "seconds between passes of rotate's loop (0.1 .. 604800, a week)", ge=MIN_INTERVAL,
                  le=MAX_INTERVAL, finite=True),
    "gzip_level": F(int, 6, "gzip compression level, 1 (fast) .. 9 (small)", ge=1, le=9),
    "lock_timeout": F(float, 10, "seconds a maintenance pass waits for another to finish", ge=0,
                      le=MAX_LOCK_TIMEOUT, finite=True),
    # disk budget and the rotator's health (metrics_ops.budget, metrics_ops.health)
    "max_total_mb": F(float | None, None, "ceiling on the data files' and rollups' total size in MiB: a pass "
                                          "deletes the oldest data above it (unset: none)", gt=0, le=MAX_MIB,
                      finite=True),
    "min_free_mb": F(float | None, None, "free space in MiB a pass keeps on the data directory's file system, "
                                         "deleting the oldest data (unset: none)", ge=0, le=MAX_MIB, finite=True),
    "min_free_percent": F(float | None, None, "the same floor as a percentage of the file system's size (both "
                                              "hold when both are set)", ge=0, lt=100, finite=True),
    "serve_min_free_mb": F(float, 64, "serve stores nothing (202 stored: 0, /healthz 503) while less than this "
                                      "many MiB are free; 0: off", ge=0, le=MAX_MIB, finite=True),
    "status_file": F(Path | None, None, "one-line status of the last pass, for health checks (default "
                                        "DIR/.metrics-ops.status)"),
    "health_textfile": F(Path | None, None, "Prometheus textfile each pass writes (node_exporter textfile "
                                            "collector; unset: none)"),
    # the archive (metrics_ops.objectstore): off while archive_url is unset
    "archive_url": F(str | None, None, "s3://bucket[/prefix] to archive closed days to (unset: no archive); "
                                       "credentials the standard AWS ways"),
    "host_id": F(str, None, "names this host's objects in the archive (default: the host name, lowercased, "
                            "a-z 0-9 - only)", default_factory=default_host_id),
    "archive_retention": F(int, 400, "delete archived objects whose day is at least this many days old", ge=1,
                           le=MAX_DAYS),
    # serve
    "host": F(str, "127.0.0.1", "address serve listens on"),
    "port": F(int, 8001, "port serve listens on", ge=1, le=65535),
    "workers": F(int, 2, "serve's worker processes", ge=1, le=64),
    "log_level": F(Literal["debug", "info", "warning", "error"], "warning",
                   "serve's log level; info adds one access line per request (never an IP)"),
    "max_body": F(int, 65536, "largest request body in bytes", ge=256, le=16 * 1024 * 1024),
    "max_batch": F(int, 100, "most events in one batch request", ge=1, le=10_000),
    "cors_origins": F(list[str], None, "origins allowed by CORS: comma-separated or a JSON list; * for any",
                      default_factory=list),
    "state_file": F(Path | None, None, "shared ring and counters of serve's workers (default "
                                       "DIR/.metrics-ops.state)"),
    "keep_query": F(bool, False, "serve keeps the query string and fragment of metadata.path (default: cut off, "
                                 "they hide e-mails and tokens)"),
    "admin_token": F(str | None, None, "secret bearer token for the snapshot and /metrics from any address "
                                       "(unset: loopback peers only)", secret=True),
    "file_mode": F(str, "0640", "mode of new data files (octal; umask applies); the directory gets the matching "
                                "x bits"),
    # sampling
    "sample_mode": F(Literal["random", "visitor"], "random",
                     "random: each event on its own; visitor: whole visitors, by a keyed hash"),
    "sample_rates": F(dict[str, float], None, 'per-event-name rates over sample_rate: JSON or "name=rate,..."',
                      default_factory=dict),
    "client_sample_rate": F(float, 1.0, "the browser's sampling rate (VITE_METRICS_SAMPLE_RATE), for sample-test",
                            ge=0, le=1, finite=True),
    "sample_key": F(str, "", "key of the visitor hash; set the same key wherever visitors are hashed", secret=True),
}
del F


# The checks of one value, beyond its type and bounds; each returns the value (maybe changed) or raises a
# SettingProblem. BEFORE runs on the value as a layer gave it (text from the environment), AFTER on the typed one.

def _raw_value(field: str, value: Any) -> Any:
    annotation = FIELDS[field].annotation
    raw_value_problem(annotation, value)
    return home_path(value) if is_path(annotation) else value


_UNSET_WHEN_EMPTY = ("max_mb", "jsonl", "state_file", "max_total_mb", "min_free_mb", "min_free_percent",
                     "status_file", "health_textfile", "admin_token", "archive_url")
_BEFORE_ONE = {"log_level": choice_in_any_case, "sample_mode": choice_in_any_case, "host_id": host_id_given,
               "dir": dir_given, "cors_origins": cors_origins, "sample_rates": rate_map,
               "file_mode": mode_text, "rollup_min_visitors": k_visitors}
#: each field's checks before its type, in the order they run (a field's own check first, the raw-value one last)
BEFORE = {f: [c for c in (_BEFORE_ONE.get(f), empty_is_unset if f in _UNSET_WHEN_EMPTY else None, _raw_value) if c]
          for f in FIELDS}
#: each field's checks after its type and bounds, in the order they run
AFTER = {"host": [printable_host], "archive_url": [archive_url], "sample_rates": [rates_in_range],
         "sample_rate": [rate_floor], "client_sample_rate": [rate_floor], "admin_token": [token_shape],
         "file_mode": [octal_mode], "tz": [known_zone],
         **{f: [no_symlink_loop] for f, spec in FIELDS.items() if is_path(spec.annotation)}}
