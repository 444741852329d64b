"""``metrics-ops status``: one answer to "is everything fine?".

The data directory (days, files and bytes by state), the disk (free space, the budget and how close to it),
the last pass (from the status file the passes write), what the next pass will compress and delete and when (a
dry run of that pass, at its time: the same planning code, nothing changed), and with a URL serve's ``/healthz``
and counters. Every problem found is one line in ``attention``; the command exits 7 when there is any.
Reads names and sizes only (no file is opened), so a year of files takes milliseconds; with archive_url set, the
next pass's prune asks the bucket (a digest and a HEAD per file it would delete), as the pass itself does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from metrics_ops.budget import Budget
from metrics_ops.diskspace import MIB, DiskUsage, disk_usage, readable
from metrics_ops.health import PassStatus, StatusUnreadable, check, expected_interval, read_status, when
from metrics_ops.inventory import Inventory, take_inventory

#: serve's counters shown by status (the Prometheus names without metrics_ops_events_ and _total)
SERVE_COUNTERS = ("received", "stored", "sampled_out", "write_errors", "low_space")


@dataclass
class NextPass:
    at: float  # when it is due (now, if overdue or never run)
    compress: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # by retention
    budget_delete: list[str] = field(default_factory=list)  # by the disk budget


@dataclass
class StatusReport:
    directory: str
    zone: str
    now: float
    inventory: Inventory | None = None
    usage: DiskUsage | None = None
    max_total: int | None = None
    min_free: int | None = None
    serve_floor: int = 0
    last_pass: PassStatus | None = None
    next_pass: NextPass | None = None
    serve: dict | None = None
    attention: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.attention

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "attention": self.attention, "directory": self.directory, "tz": self.zone,
            "now": self.now,
            "data": self.inventory.to_dict() if self.inventory is not None else None,
            "disk": None if self.usage is None else {
                "free_bytes": self.usage.free, "size_bytes": self.usage.total, "max_total_bytes": self.max_total,
                "min_free_bytes": self.min_free, "serve_min_free_bytes": self.serve_floor},
            "last_pass": self.last_pass.__dict__ if self.last_pass is not None else None,
            "next_pass": self.next_pass.__dict__ if self.next_pass is not None else None,
            "serve": self.serve,
        }


def fetch_url(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); an HTTP error status is an answer, not an exception."""
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as r:  # noqa: S310 - http(s) checked by the caller
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serve_status(url: str, fetch: Callable[..., tuple[int, bytes]] = fetch_url,
                 token: str | None = None) -> tuple[dict, list[str]]:
    """serve's /healthz and counters at ``url`` (its base, e.g. http://127.0.0.1:8001): (facts, problems).
    The counters and the details of an unhealthy answer come from the operator routes, which answer this
    machine's loopback, or ``token`` (the admin token, sent as a bearer header)."""
    from metrics_ops.serve.routes import HEALTH_REASONS, ROUTES, SNAPSHOT_PATH

    base = url.rstrip("/")
    for path in sorted(ROUTES, key=len, reverse=True):  # an event URL (what probe and sample-test take) works too
        if base.endswith(path):
            base = base[:-len(path)]
            break
    try:
        code, body = fetch(base + "/healthz", {})
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        reason = getattr(reason, "strerror", None) or str(reason)
        return {"url": base, "reachable": False}, [f"serve at {base}: cannot connect: {reason.lower()}"]
    try:
        health = json.loads(body)
    except ValueError:
        health = {}
    if not isinstance(health, dict) or (code != 200 and not health.get("reason")):
        health = {"ok": False, "reason": f"no serve /healthz there (HTTP {code}); give serve's base URL, "
                                         "e.g. http://127.0.0.1:8001"}
    facts: dict = {"url": base, "reachable": True, "healthz": code, "reason": health.get("reason")}
    admin = {"Authorization": f"Bearer {token}"} if token else {}
    problems = []
    if code != 200:
        facts["detail"] = detail = _health_detail(fetch, base + SNAPSHOT_PATH, admin)
        reason = health.get("reason")
        problems.append(f"serve at {base}: /healthz {code} ({reason}): "
                        f"{detail or HEALTH_REASONS.get(reason, reason)}" if reason in HEALTH_REASONS
                        else f"serve at {base}: /healthz {code}: {reason}")
    try:
        mcode, text = fetch(base + "/metrics", admin)
    except OSError:
        mcode, text = 0, b""
    if mcode in (401, 403):
        problems.append(f"serve at {base}: /metrics answered {mcode}: its counters answer this machine's loopback, "
                        "or the admin token (METRICS_ADMIN_TOKEN) when one is set")
    counters = {}
    for line in text.decode("utf-8", "replace").splitlines() if mcode == 200 else ():
        name, _, value = line.partition(" ")
        short = name.removeprefix("metrics_ops_events_").removesuffix("_total")
        if short in SERVE_COUNTERS and name.startswith("metrics_ops_events_"):
            counters[short] = int(float(value))
    facts["counters"] = counters
    return facts, problems


def _health_detail(fetch, url: str, headers: dict[str, str]) -> str | None:
    """What the snapshot says about serve's health (the path, the setting, the figures /healthz keeps to itself)."""
    try:
        code, body = fetch(url, headers)
        health = json.loads(body).get("health") if code == 200 else None
    except (OSError, ValueError, AttributeError):
        return None
    return health.get("detail") if isinstance(health, dict) else None


def _disk_problems(report: StatusReport) -> list[str]:
    inv, usage, out = report.inventory, report.usage, []
    if report.max_total is not None and inv.total_bytes > report.max_total:
        out.append(f"data files and rollups take {readable(inv.total_bytes)}, over max_total_mb "
                   f"{readable(report.max_total)}")
    if report.min_free is not None and usage.free < report.min_free:
        out.append(f"free space {readable(usage.free)} is under the budget's floor of {readable(report.min_free)}")
    if report.serve_floor and usage.free < report.serve_floor:
        out.append(f"free space {readable(usage.free)} is under serve's floor of {readable(report.serve_floor)}: "
                   "serve stores nothing")
    if inv.aside_files:
        out.append(f"{inv.aside_files} archive(s) set aside as unreadable (.metrics-*.gz.corrupt): "
                   "inspect with gzip -t")
    return out


def _archive_problems(last: PassStatus | None) -> list[str]:
    """What the last pass found waiting for the archive, or in conflict with it (docs/operations.md says what to
    do for each)."""
    if last is None or not last.archive:
        return []
    out = []
    if last.archive_conflicts:
        out.append(f"{last.archive_conflicts} file(s) in conflict with their object in the archive: kept, never "
                   "uploaded over nor deleted (metrics-ops archive --dry-run -v names them)")
    if last.archive_waiting_files:
        out.append(f"{last.archive_waiting_files} file(s) of {last.archive_waiting_days} day(s) wait for the archive "
                   f"(the oldest {last.archive_oldest_waiting}): prune and the budget keep them")
    return out


def _next_pass(store, settings, last: PassStatus | None, now: float) -> NextPass:
    """A dry run of the next pass at the time it is due: what it will compress and delete."""
    from metrics_ops.maintenance import run_pass
    from metrics_ops.offsite import Archive

    due = max(now, last.time + expected_interval(settings, last)) if last is not None else now
    plan = run_pass(store, now=due, gzip_after=settings.gzip_after, retention=settings.retention, dry_run=True,
                    budget=Budget.from_settings(settings), archive=Archive.from_settings(settings, quick=True))
    nxt = NextPass(due)
    for a in plan.actions:
        if a.kind in ("gzip", "reconcile"):
            nxt.compress.append(a.file)
        elif a.kind == "delete" or a.kind == "drop-rollup" and a.step == "budget":
            (nxt.budget_delete if a.step == "budget" else nxt.delete).append(a.file)
    return nxt


def build_status(settings, *, now: float, url: str | None = None,
                 fetch: Callable[[str], tuple[int, bytes]] = fetch_url) -> StatusReport:
    """The status of ``settings``' data directory, which must be usable (else :class:`StoreError` saying why:
    a directory that is not there has no status to show, only that one line)."""
    import errno

    from metrics_ops.store import Store, StoreError

    store = Store.from_settings(settings)
    unusable = store.unusable()
    if unusable is not None:
        raise StoreError(errno.ENOENT if not store.dir.exists() else errno.ENOTDIR, unusable)
    report = StatusReport(str(store.dir.absolute()), settings.tz, now,
                          serve_floor=int(settings.serve_min_free_mb * MIB))
    unreadable = None
    try:
        report.last_pass = read_status(settings.status_path)
    except StatusUnreadable as exc:
        unreadable = str(exc)
        report.attention.append(unreadable)
    report.inventory = take_inventory(store.dir, store.scan())
    report.usage = disk_usage(store.dir)
    budget = Budget.from_settings(settings)
    report.max_total, report.min_free = budget.max_total, budget.min_free(report.usage.total)
    report.attention += _disk_problems(report)
    report.next_pass = _next_pass(store, settings, report.last_pass, now)
    report.attention += _archive_problems(report.last_pass)
    stale = check(report.last_pass, now=now, interval=expected_interval(settings, report.last_pass),
                  zone=settings.zone)
    report.attention += stale if unreadable is None else []  # one line: a file is there, it cannot be read
    last = report.last_pass
    if not stale and last is not None and not last.ok:
        report.attention.append(f"the last pass ({when(last.time, settings.zone)}) {last.result}: {last.message}")
    if url is not None:
        token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        report.serve, problems = serve_status(url, fetch, token)
        report.attention += problems
    return report
