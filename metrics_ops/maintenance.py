"""Plans and actions of a maintenance pass: rotate (link and shards), gzip, prune. A dry run is the plan.

Every step scans the directory, plans a list of :class:`Action` from the names alone (the day in the name,
never the mtime), then carries the actions out one by one. Nothing here reads the wall clock: the caller
passes ``now`` as a POSIX timestamp.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from enum import StrEnum

from metrics_ops.budget import Budget, plan_for_pass
from metrics_ops.store import (
    LOCK_NAME,
    Listing,
    LockBusy,
    Store,
    StoreError,
    aside_day,
    file_name,
    flock_path,
    parse_name,
)

STEPS = ("rotate", "gzip", "prune", "budget")


class Kind(StrEnum):
    """What an action does (str-valued: ``--json`` prints ``"kind": "gzip"``)."""

    MKDIR = "mkdir"  # only ever planned: a pass makes the directory before it plans
    ADOPT = "adopt"
    CREATE = "create"
    SHARD = "shard"
    LINK = "link"
    GZIP = "gzip"
    RECONCILE = "reconcile"
    REMOVE_TEMP = "remove-temp"
    DELETE = "delete"
    REWRITE = "rewrite"  # forget


class Status(StrEnum):
    PLANNED = "planned"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Action:
    step: str  # rotate | gzip | prune | forget
    kind: Kind
    file: str
    bytes_before: int | None = None
    bytes_after: int | None = None
    detail: str = ""
    status: Status = Status.PLANNED
    error: str | None = None
    adopted: str | None = None  # adopt: the dated name the legacy file got
    target: str | None = None  # link: the file the link is to point at


@dataclass
class PassResult:
    steps: tuple[str, ...]
    dry_run: bool
    day: str
    actions: list[Action] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # names outside the grammar: reported, never touched
    kept: list[tuple[str, str]] = field(default_factory=list)  # (file, why it was left alone)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and all(a.status != Status.FAILED for a in self.actions)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "steps": list(self.steps),
            "dry_run": self.dry_run,
            "day": self.day,
            "interrupted": self.interrupted,
            "actions": [asdict(a) for a in self.actions],
            "unknown": self.unknown,
            "kept": [{"file": f, "reason": r} for f, r in self.kept],
            "errors": self.errors,
        }


def _age(day: date, today: date) -> int:
    return (today - day).days


def plan_rotate(store: Store, listing: Listing, today: date) -> list[Action]:
    """Adopt a legacy metrics.jsonl, start the next shard when today's current file is full, point the link."""
    actions: list[Action] = []
    names = [f.name for f in listing.files]
    if listing.legacy_link_file:
        size = store.size_of(store.link.name)
        actions.append(Action("rotate", Kind.ADOPT, store.link.name, size, size,
                              "legacy regular file moved into the dated layout"))
    target = store.current_target(today, names)
    size = store.size_of(target) if target in names else None
    if size is not None and store.max_bytes is not None and size >= store.max_bytes:
        full, target = target, file_name(today, parse_name(target).shard + 1)
        actions.append(Action("rotate", Kind.SHARD, target, None, 0, f"{full} reached {size} bytes"))
    elif size is None:
        actions.append(Action("rotate", Kind.CREATE, target, None, 0, "today's file"))
    if listing.link_target != target or listing.legacy_link_file:
        actions.append(Action("rotate", Kind.LINK, store.link.name, detail=f"-> {target}", target=target))
    return actions


def plan_gzip(listing: Listing, today: date, gzip_after: int, *, link_target: str | None,
              retention: int | None = None, protected: frozenset[str] = frozenset()
              ) -> tuple[list[Action], list[tuple[str, str]]]:
    """Compress plain files whose day is at least ``gzip_after`` days old. With ``retention`` (a full pass),
    files that the prune step is about to delete are not compressed first."""
    actions = [Action("gzip", Kind.REMOVE_TEMP, name, detail="left by a killed pass; the source is intact")
               for name in listing.temps]
    kept: list[tuple[str, str]] = []
    names = listing.by_name()
    for f in listing.files:
        if f.gz:
            continue
        age = _age(f.day, today)
        if age < gzip_after:
            continue
        if f.name == link_target:
            kept.append((f.name, "the link points at it"))
            continue
        if f.name in protected:
            kept.append((f.name, "adopted in this pass"))
            continue
        if age <= 0:
            kept.append((f.name, "today's file"))
            continue
        if retention is not None and age >= retention:
            continue
        kind = Kind.RECONCILE if f.name + ".gz" in names else Kind.GZIP
        actions.append(Action("gzip", kind, f.name, detail=f"{age} days old"))
    return actions, kept


def plan_prune(listing: Listing, today: date, retention: int, *, link_target: str | None,
               protected: frozenset[str] = frozenset(), in_use: Callable[[str], bool] = lambda name: False
               ) -> tuple[list[Action], list[tuple[str, str]]]:
    """Delete data files (plain, shards, archives, archives set aside) whose day is at least ``retention`` days
    old; never what this pass adopted (``protected``), never a plain file a writer holds open (``in_use``): that
    is the file being written, whatever this pass's clock says its day is."""
    actions, kept = [], []
    for f in listing.files:
        age = _age(f.day, today)
        if f.name in protected:
            kept.append((f.name, "adopted in this pass"))
            continue
        if age < 0:
            kept.append((f.name, f"dated {-age} days in the future (written under a wrong clock?); "
                                 f"deleted once it is {retention} days old"))
            continue
        if age < retention:
            continue
        if f.name == link_target:
            kept.append((f.name, "the link points at it"))
            continue
        if not f.gz and in_use(f.name):
            kept.append((f.name, f"{age} days old by this pass's clock, but a writer holds it open (serve's current "
                                 "file: is a clock or METRICS_TZ wrong?)"))
            continue
        actions.append(Action("prune", Kind.DELETE, f.name, detail=f"{age} days old"))
    for name in listing.aside:  # unreadable archives set aside by gzip: kept for inspection until retention
        age = _age(aside_day(name), today)
        if age >= retention:
            actions.append(Action("prune", Kind.DELETE, name, detail=f"{age} days old; set aside as unreadable"))
        else:
            kept.append((name, "an unreadable archive set aside by gzip; deleted with its day"))
    return actions, kept


def _sizes(store: Store, actions: list[Action]) -> None:
    for a in actions:
        if a.bytes_before is None and a.kind in (Kind.GZIP, Kind.RECONCILE, Kind.DELETE, Kind.REMOVE_TEMP):
            a.bytes_before = store.size_of(a.file)


def run_pass(
    store: Store,
    *,
    now: float,
    steps: tuple[str, ...] = STEPS,
    gzip_after: int = 3,
    retention: int = 30,
    level: int = 6,
    dry_run: bool = False,
    budget: Budget | None = None,
    threads: int | None = None,
    stop: threading.Event | None = None,
    on_plan: Callable[[list[Action]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> PassResult:
    """One maintenance pass over ``store``. The caller holds the maintenance lock (see :func:`locked`).

    ``budget`` (:class:`metrics_ops.budget.Budget`) is the budget step's limits (None: the step plans nothing).
    ``stop`` (set by a signal handler) ends the pass after the action in progress. ``on_plan`` sees the
    gzip actions before they run (a progress bar sizes itself from them); ``progress`` gets byte counts.
    """
    today = store.today(now)
    result = PassResult(tuple(steps), dry_run, today.isoformat())
    run = _Run(store, today, level, threads or min(2, os.cpu_count() or 1), progress, stop)
    if not store.dir.is_dir():
        if "rotate" not in steps:
            result.errors.append(f"data directory {store.dir} does not exist")
            return result
        if dry_run:
            result.actions.append(Action("rotate", Kind.MKDIR, str(store.dir), detail="the data directory"))
            listing = Listing([], [], [], [], None, False)
        else:
            store.make_dir()
    if store.dir.is_dir():
        listing = store.scan()
    result.unknown = listing.unknown
    link_target = listing.link_target
    adopted: frozenset[str] = frozenset()  # a pass never compresses or deletes what it adopted itself
    for step in steps:
        if stop is not None and stop.is_set():
            result.interrupted = True
            break
        actions, kept = _plan_step(step, store, listing, today, link_target=link_target, adopted=adopted,
                                   gzip_after=gzip_after, retention=retention, prune_follows="prune" in steps,
                                   budget=budget, result=result)
        link_target = next((a.target for a in actions if a.kind == Kind.LINK), link_target)
        _sizes(store, actions)
        result.kept.extend(kept)
        result.actions.extend(actions)
        if dry_run:
            continue
        if on_plan is not None:
            on_plan(actions)
        _execute_all(run, actions)
        adopted |= {a.adopted for a in actions if a.adopted}
        result.interrupted = result.interrupted or any(a.status == Status.SKIPPED for a in actions)
        if actions:  # the next step plans from what is on disk now
            listing = store.scan()
            link_target = listing.link_target
    return result


def _plan_step(step: str, store: Store, listing: Listing, today: date, *, link_target: str | None,
               adopted: frozenset[str], gzip_after: int, retention: int, prune_follows: bool,
               budget: Budget | None, result: PassResult) -> tuple[list[Action], list[tuple[str, str]]]:
    if step == "budget":
        return _plan_budget(store, listing, today, budget, link_target, adopted, result)
    if step == "rotate":
        return plan_rotate(store, listing, today), []
    if step == "gzip":
        return plan_gzip(listing, today, gzip_after, link_target=link_target,
                         retention=retention if prune_follows else None, protected=adopted)
    return plan_prune(listing, today, retention, link_target=link_target, protected=adopted,
                      in_use=store.held_for_writing)


def _plan_budget(store: Store, listing: Listing, today: date, budget: Budget | None, link_target: str | None,
                 adopted: frozenset[str], result: PassResult) -> tuple[list[Action], list[tuple[str, str]]]:
    """The budget step (:func:`metrics_ops.budget.plan_for_pass`): deletions like prune's; a shortfall is an error
    of the pass. In a dry run the files the prune step plans to delete count as gone already."""
    gone = frozenset(a.file for a in result.actions if a.kind == Kind.DELETE) if result.dry_run else frozenset()
    plan = plan_for_pass(store, listing, today, budget, link_target=link_target, adopted=adopted, gone=gone)
    if plan is None:
        return [], []
    result.errors.extend([plan.shortfall] if plan.shortfall else [])
    return [Action("budget", Kind.DELETE, c.name, c.size, detail=f"{_age(c.day, today)} days old; disk budget: "
                   f"{plan.why}") for c in plan.deletions], plan.kept


@dataclass(frozen=True)
class _Run:
    """What every action of one pass is carried out with."""

    store: Store
    today: date
    level: int
    threads: int
    progress: Callable[[int], None] | None
    stop: threading.Event | None


def _execute_all(run: _Run, actions: list[Action]) -> None:
    """Run actions in order; compressions of several files run ``threads`` at a time, largest first.

    Measured on 2 cores (bench/gzip_bench.py): one file per core beats one file on both cores
    (zlib-ng's threaded writer) by ~2x on a directory of 14 MB files; a lone file gets both cores.
    """
    def one(action: Action, file_threads: int) -> None:
        if run.stop is not None and run.stop.is_set():
            action.status = Status.SKIPPED
            return
        _execute(run, action, file_threads)

    parallel = [a for a in actions if a.kind == Kind.GZIP]
    if run.threads < 2 or len(parallel) < 2:
        parallel = []
    for action in actions:
        if action not in parallel:
            one(action, run.threads)
    if parallel:
        from concurrent.futures import ThreadPoolExecutor

        parallel.sort(key=lambda a: -(a.bytes_before or 0))
        with ThreadPoolExecutor(max_workers=run.threads, thread_name_prefix="gzip") as pool:
            list(pool.map(lambda a: one(a, 1), parallel))


def _adopt(run: _Run, a: Action, threads: int) -> None:
    _changed, a.adopted = run.store.point_link(run.store.current_target(run.today), forward_only=False)
    a.detail = f"legacy regular file kept as {a.adopted} (the day of its mtime, or today if later)"


def _create(run: _Run, a: Action, threads: int) -> None:
    run.store.create(a.file)


def _link(run: _Run, a: Action, threads: int) -> None:
    run.store.point_link(a.target, forward_only=False)


def _gzip(run: _Run, a: Action, threads: int) -> None:
    a.bytes_before, a.bytes_after = run.store.compress(a.file, run.level, threads=threads, progress=run.progress)


def _reconcile(run: _Run, a: Action, threads: int) -> None:
    a.detail, a.bytes_before, a.bytes_after = run.store.finish_compress(a.file, run.level)
    if run.progress is not None:
        run.progress(a.bytes_before)


def _remove_temp(run: _Run, a: Action, threads: int) -> None:
    a.bytes_before, a.bytes_after = run.store.remove_temp(a.file), 0


def _delete(run: _Run, a: Action, threads: int) -> None:
    a.bytes_before, a.bytes_after = run.store.delete(a.file), 0


#: how a pass carries out each kind of action (mkdir is only planned; rewrite is forget's)
_HANDLERS: dict[Kind, Callable[[_Run, Action, int], None]] = {
    Kind.ADOPT: _adopt,
    Kind.CREATE: _create,
    Kind.SHARD: _create,
    Kind.LINK: _link,
    Kind.GZIP: _gzip,
    Kind.RECONCILE: _reconcile,
    Kind.REMOVE_TEMP: _remove_temp,
    Kind.DELETE: _delete,
}


def _execute(run: _Run, a: Action, threads: int) -> None:
    try:
        _HANDLERS[a.kind](run, a, threads)
        a.status = Status.DONE
    except LockBusy as exc:  # the link lock: another process swaps the link; this action fails, the pass goes on
        a.status = Status.FAILED
        a.error = str(exc)
    except (OSError, StoreError) as exc:
        a.status = Status.FAILED
        a.error = failure_text(exc, a.file)


def failure_text(exc: OSError, name: str) -> str:
    """An action's error in one line: a StoreError names its file already; a bare OSError gets the name."""
    return str(exc) if isinstance(exc, StoreError) else f"{exc.strerror or exc} ({name})"


def locked(store: Store, timeout: float, dry_run: bool = False):
    """The maintenance lock of ``store``'s directory; raises :class:`LockBusy` after ``timeout`` seconds.
    A dry run only reads: it takes no lock and leaves not even a lock file behind."""
    if dry_run:
        import contextlib

        return contextlib.nullcontext()
    return flock_path(store.dir / LOCK_NAME, timeout)


def run_loop(one_pass: Callable[[], PassResult], interval: float, stop: threading.Event,
             on_result: Callable[[PassResult], None], on_error: Callable[[str], None], *,
             describe_busy: Callable[[LockBusy], str] = str) -> int:
    """rotate --interval: a pass every ``interval`` seconds until ``stop`` is set; returns the passes run.

    An OSError or a busy lock (worded by ``describe_busy``) in one pass is handed to ``on_error`` and the loop
    goes on (the next pass retries); a signal sets ``stop``, the action in progress finishes, and the loop ends.
    """
    passes = 0
    while not stop.is_set():
        try:
            on_result(one_pass())
        except LockBusy as exc:
            on_error(describe_busy(exc))
        except OSError as exc:
            on_error(f"pass failed: {exc}")
        passes += 1
        stop.wait(interval)
    return passes
