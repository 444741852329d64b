"""The rotator's own health: what every pass leaves behind for monitoring, and the check that reads it.

- the **status file** (``status_file``, default ``DIR/.metrics-ops.status``): one line of JSON with the time of
  the last pass and of the last successful one, its result, duration and error; the compose and systemd health
  checks (``metrics-ops rotate --check``) and ``metrics-ops status`` read it;
- the **Prometheus textfile** (``health_textfile``, for node_exporter's textfile collector): the same times, the
  files and bytes by state, free bytes, the budget's floor and errors.

Both are written to a temp file in the same directory and renamed, so a reader never sees half of one. A pass
that fails (or finds the lock busy) is written too, and keeps the time of the last successful pass: a rotator
that keeps failing, or that died, goes red after ``2 x interval`` either way. Times are POSIX seconds (no zone
can shift an age); they are shown in METRICS_TZ.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops.archive import replace_atomically
from metrics_ops.diskspace import DiskUsage
from metrics_ops.inventory import Inventory
from metrics_ops.layout import StoreError

STALE_INTERVALS = 2  # the rotator is unhealthy when its last successful pass is older than this many intervals


@dataclass(frozen=True)
class PassStatus:
    """One line of the status file."""

    time: float  # when the pass ended (POSIX seconds)
    result: str  # ok | budget (ok, and the budget deleted data) | failed | busy (another pass held the lock)
    last_success: float | None  # when the last pass that did not fail ended (this one or an earlier one)
    duration: float
    interval: float  # seconds between passes the writer was started with (the loop's, or cron's by the setting)
    errors: int = 0
    message: str = ""  # the first error, one line
    budget_deleted: int = 0  # files the disk budget deleted in this pass
    pid: int = 0
    archive: bool = False  # the pass ran the archive step (archive_url set); then the counts below hold
    archive_waiting_files: int = 0  # closed, compressed files not (yet) safely archived after the pass
    archive_waiting_days: int = 0  # ... the days they belong to
    archive_conflicts: int = 0  # files whose object changed behind our back: kept, a person must look
    archive_oldest_waiting: str | None = None  # the oldest day that waits (YYYY-MM-DD)

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "budget")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


#: the largest status file read: a pass writes one line of a few hundred bytes
MAX_STATUS_BYTES = 1 << 16


class StatusUnreadable(ValueError):
    """The status file exists but does not hold a status line."""


def read_status(path: Path) -> PassStatus | None:
    """The last pass's status, or None when no pass has written one yet."""
    from metrics_ops.layout import NotARegularFile, read_small_file

    try:
        text = read_small_file(path, MAX_STATUS_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None
    except NotARegularFile as exc:  # a FIFO would hang status and the pass, /dev/zero fill the memory
        raise StatusUnreadable(f"cannot read the status file {path}: it is {exc.kind}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StatusUnreadable(f"cannot read the status file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
        known = {f.name for f in fields(PassStatus)}
        return _checked(PassStatus(**{k: v for k, v in doc.items() if k in known}))
    except (ValueError, TypeError, AttributeError, RecursionError):  # RecursionError: [[[... 60,000 deep
        raise StatusUnreadable(f"the status file {path} does not hold a metrics-ops status line") from None


#: the last second of the calendar (9999-12-31T23:59:59Z) but a fortnight: a time past it cannot be shown, nor
#: the next pass after it (``status`` plans it)
LAST_TIME = 253_402_300_799 - 14 * 86_400


def _checked(status: PassStatus) -> PassStatus:
    """A status line whose times, interval and counts are what a pass writes; ValueError otherwise (a hand-edited
    or foreign file must not make ``status`` or ``rotate --check`` overflow the clock)."""
    from metrics_ops.config import MAX_INTERVAL

    def number(value, low: float, high: float) -> bool:
        return type(value) in (int, float) and low <= value <= high  # NaN fails both comparisons

    if not (number(status.time, 0, LAST_TIME) and number(status.duration, 0, LAST_TIME)
            and (status.last_success is None or number(status.last_success, 0, LAST_TIME))
            and number(status.interval, 0, MAX_INTERVAL) and status.interval > 0
            and type(status.result) is str and type(status.message) is str
            and type(status.errors) is int and type(status.budget_deleted) is int and type(status.pid) is int
            and type(status.archive) is bool and all(type(v) is int and v >= 0 for v in (
                status.archive_waiting_files, status.archive_waiting_days, status.archive_conflicts))
            and (status.archive_oldest_waiting is None or type(status.archive_oldest_waiting) is str)):
        raise ValueError("not a status line")
    # its text is shown on terminals and in logs: a line break, an escape sequence or a byte that is no character
    # (a hand-edited or foreign file) is shown escaped, never acted on or a traceback
    from metrics_ops.origins import printable

    return replace(status, result=printable(status.result), message=printable(status.message),
                   archive_oldest_waiting=None if status.archive_oldest_waiting is None
                   else printable(status.archive_oldest_waiting))


def next_status(previous: PassStatus | None, *, started: float, ended: float, result: str, interval: float,
                errors: list[str] = (), budget_deleted: int = 0, archive: dict | None = None) -> PassStatus:
    """This pass's status line; the time of the last success carries over from ``previous`` when this one failed.
    ``archive``: what waits for the archive after the pass (:meth:`metrics_ops.offsite.Archive.backlog`)."""
    ok = result in ("ok", "budget")
    last_success = ended if ok else (previous.last_success if previous is not None else None)
    message = errors[0].splitlines()[0] if errors else ""
    counts = {} if archive is None else {
        "archive": True, "archive_waiting_files": archive["waiting_files"],
        "archive_waiting_days": archive["waiting_days"], "archive_conflicts": archive["conflicts"],
        "archive_oldest_waiting": archive["oldest_waiting_day"]}
    return PassStatus(ended, result, last_success, max(0.0, ended - started), interval, len(errors), message,
                      budget_deleted, os.getpid(), **counts)


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: a reader sees the old file or the new one, whole."""
    data = text.encode("utf-8")
    tmp = f"{path.name}.{os.getpid()}.tmp"
    try:
        try:
            os.unlink(path.parent / tmp)  # left by a killed process with the same pid
        except FileNotFoundError:
            pass
        replace_atomically(path.parent, tmp, path.name, None, lambda fd: os.write(fd, data) and None)
    except OSError as exc:
        raise StoreError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None


def check(status: PassStatus | None, *, now: float, interval: float, zone: ZoneInfo) -> list[str]:
    """Why the rotator is unhealthy (one line each), or nothing: the last successful pass must be at most
    ``STALE_INTERVALS x interval`` seconds old."""
    limit = STALE_INTERVALS * interval
    if status is None:
        return ["no maintenance pass has recorded a status yet (is the rotator running?)"]
    if status.last_success is None:
        return [f"no maintenance pass has succeeded yet; the last one ({when(status.time, zone)}) "
                f"{status.result}: {status.message}"]
    age = now - status.last_success
    if age > limit:
        last = f"; the last pass ({when(status.time, zone)}) {status.result}" + (
            f": {status.message}" if status.message else "")
        return [f"the last successful pass was {age:.0f} s ago ({when(status.last_success, zone)}), more than "
                f"{STALE_INTERVALS} x the interval of {interval:g} s{last if not status.ok else ''}"]
    return []


def expected_interval(settings, status: PassStatus | None) -> float:
    """The interval a check judges by: the one given to the check (flag, environment, TOML), else the one the
    rotator recorded it runs with, else the default."""
    from metrics_ops.config import DEFAULT, origins_of

    if status is not None and origins_of(settings)["interval"].source == DEFAULT:
        return status.interval
    return settings.interval


def when(ts: float, zone: ZoneInfo) -> str:
    """A time as operators read it: ISO-8601 in METRICS_TZ, to the second, with the offset."""
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")


def _metric(lines: list[str], name: str, kind: str, help_: str, samples: list[tuple[str, float | int]]) -> None:
    lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value!r}" for labels, value in samples]  # repr: a float's every digit


def textfile(status: PassStatus, inventory: Inventory | None, usage: DiskUsage | None, *, pruned: tuple[int, int],
             budget_deleted: tuple[int, int], min_free: int | None, max_total: int | None) -> str:
    """The Prometheus text exposition of one pass (node_exporter textfile collector). ``pruned`` and
    ``budget_deleted`` are (files, bytes) deleted by this pass."""
    lines: list[str] = []
    p = "metrics_ops_rotate_"
    _metric(lines, p + "last_pass_timestamp_seconds", "gauge", "When the last maintenance pass ended.",
            [("", status.time)])
    _metric(lines, p + "last_success_timestamp_seconds", "gauge", "When the last successful pass ended (0: never).",
            [("", status.last_success or 0.0)])
    _metric(lines, p + "last_pass_success", "gauge", "1 if the last pass succeeded, else 0.", [("", int(status.ok))])
    _metric(lines, p + "pass_duration_seconds", "gauge", "How long the last pass took.", [("", status.duration)])
    _metric(lines, p + "interval_seconds", "gauge", "Seconds between passes (the healthy age is 2 x this).",
            [("", status.interval)])
    _metric(lines, p + "errors", "gauge", "Errors in the last pass.", [("", status.errors)])
    if inventory is not None:
        _metric(lines, p + "files", "gauge", "Data files by state after the pass (pruned: deleted by this pass).",
                [('{state="plain"}', inventory.plain_files), ('{state="archived"}', inventory.archived_files),
                 ('{state="aside"}', inventory.aside_files), ('{state="rollup"}', inventory.rollup_files),
                 ('{state="pruned"}', pruned[0]), ('{state="budget_deleted"}', budget_deleted[0])])
        _metric(lines, p + "bytes", "gauge", "Bytes of data files by state after the pass (pruned: deleted by it).",
                [('{state="plain"}', inventory.plain_bytes), ('{state="archived"}', inventory.archived_bytes),
                 ('{state="aside"}', inventory.aside_bytes), ('{state="rollup"}', inventory.rollup_bytes),
                 ('{state="pruned"}', pruned[1]), ('{state="budget_deleted"}', budget_deleted[1])])
        _metric(lines, p + "dates_with_data", "gauge", "Days with data files.", [("", len(inventory.days))])
    if usage is not None:
        _metric(lines, p + "free_bytes", "gauge", "Free bytes on the data directory's file system.",
                [("", usage.free)])
        _metric(lines, p + "filesystem_size_bytes", "gauge", "Size of the data directory's file system.",
                [("", usage.total)])
    _metric(lines, p + "archive_enabled", "gauge", "1 if the pass ran the archive step (archive_url set), else 0.",
            [("", int(status.archive))])
    # 0 without an archive, so that the alert rules always have series to read
    _metric(lines, p + "archive_waiting_files", "gauge", "Closed, compressed files not yet safely archived "
            "(prune and the budget keep them).", [("", status.archive_waiting_files)])
    _metric(lines, p + "archive_waiting_dates", "gauge", "Days with files not yet safely archived (a count of days).",
            [("", status.archive_waiting_days)])
    _metric(lines, p + "archive_conflicts", "gauge", "Files whose object changed behind our back (kept; see "
            "docs/operations.md).", [("", status.archive_conflicts)])
    _metric(lines, p + "min_free_bytes", "gauge", "The disk budget's free-space floor (0: none).",
            [("", min_free or 0)])
    _metric(lines, p + "max_total_bytes", "gauge", "The disk budget's ceiling on data files and rollups (0: none).",
            [("", max_total or 0)])
    return "\n".join(lines) + "\n"


def _deleted(result, step: str) -> tuple[int, int]:
    done = [a for a in result.actions
            if a.step == step and a.kind in ("delete", "drop-rollup") and a.status == "done"]
    return len(done), sum(a.bytes_before or 0 for a in done)


def record_pass(store, settings, *, started: float, ended: float, result=None, error: str | None = None
                ) -> PassStatus:
    """Write the status file (and the textfile when ``health_textfile`` is set) for a pass that returned
    ``result`` (a :class:`metrics_ops.maintenance.PassResult`) or failed with ``error``. Raises OSError when a
    file cannot be written (the caller says so: monitoring that cannot be fed needs attention)."""
    from metrics_ops.budget import Budget
    from metrics_ops.diskspace import disk_usage
    from metrics_ops.inventory import take_inventory

    try:
        previous = read_status(settings.status_path)
    except StatusUnreadable:
        previous = None  # replaced by a good line below
    pruned = budget_deleted = (0, 0)
    if result is not None:
        errors = [f"{a.step} {a.kind} {a.file}: {a.error}" for a in result.actions if a.status == "failed"]
        errors += result.errors
        pruned, budget_deleted = _deleted(result, "prune"), _deleted(result, "budget")
        kind = "failed" if not result.ok else ("budget" if budget_deleted[0] else "ok")
    else:
        errors, kind = [error or "the pass failed"], "failed"
    status = next_status(previous, started=started, ended=ended, result=kind, interval=settings.interval,
                         errors=errors, budget_deleted=budget_deleted[0],
                         archive=getattr(result, "archive", None))
    write_atomically(settings.status_path, status.to_json() + "\n")
    if settings.health_textfile is not None:
        inventory = usage = None
        if store.dir.is_dir():
            inventory, usage = take_inventory(store.dir, store.scan()), disk_usage(store.dir)
        budget = Budget.from_settings(settings)
        text = textfile(status, inventory, usage, pruned=pruned, budget_deleted=budget_deleted,
                        min_free=budget.min_free(usage.total) if usage else None, max_total=budget.max_total)
        write_atomically(settings.health_textfile, text)
    return status
