"""A maintenance pass: each step (rotate, rollup, gzip, prune, budget) is planned (:mod:`metrics_ops.plans`) and
its actions carried out one by one, under the maintenance lock; a dry run is the plan. The same executor runs
forget's rewrites. Nothing here reads the wall clock: the caller passes ``now`` as a POSIX timestamp.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from metrics_ops import rollups
from metrics_ops.budget import Budget
from metrics_ops.layout import parse_name
from metrics_ops.objectstore import ArchiveError
from metrics_ops.plans import (  # noqa: F401  (re-exported: the pass's vocabulary for its callers)
    ARCHIVE_ROTATE_STEPS,
    ROTATE_STEPS,
    STEPS,
    Action,
    Kind,
    PassResult,
    Status,
    plan_gzip,
    plan_prune,
    plan_rollups,
    plan_rotate,
    plan_step,
    sizes,
)
from metrics_ops.store import (
    LOCK_NAME,
    Listing,
    LockBusy,
    Store,
    StoreError,
    flock_path,
)


def run_pass(
    store: Store,
    *,
    now: float,
    steps: tuple[str, ...] = STEPS,
    gzip_after: int = 3,
    retention: int = 30,
    level: int = 6,
    rollup_retention: int = 400,
    rollup_min_visitors: int = rollups.DEFAULT_MIN_VISITORS,
    dry_run: bool = False,
    budget: Budget | None = None,
    threads: int | None = None,
    stop: threading.Event | None = None,
    on_plan: Callable[[list[Action]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    archive=None,
) -> PassResult:
    """One maintenance pass over ``store``. The caller holds the maintenance lock (see :func:`locked`).

    ``budget`` (:class:`metrics_ops.budget.Budget`) is the budget step's limits (None: the step plans nothing).
    ``stop`` (set by a signal handler) ends the pass after the action in progress. ``on_plan`` sees the
    gzip actions before they run (a progress bar sizes itself from them); ``progress`` gets byte counts.
    ``archive`` (:class:`metrics_ops.offsite.Archive`; None: archive_url unset) is the archive step's bucket and
    what prune and the budget ask before deleting: only what is safely archived goes.
    """
    today = store.today(now)
    result = PassResult(tuple(steps), dry_run, today.isoformat())
    run = _Run(store, today, level, threads or min(2, os.cpu_count() or 1), progress, stop, rollup_min_visitors,
               archive)
    if not store.dir.is_dir():
        if "rotate" not in steps or store.dir.exists():  # a pass makes a missing directory, never replaces a file
            result.errors.append(store.unusable())
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
        try:
            actions, kept = plan_step(step, store, listing, today, link_target=link_target, adopted=adopted,
                                       gzip_after=gzip_after, retention=retention, prune_follows="prune" in steps,
                                       budget=budget, result=result, rollup_retention=rollup_retention,
                                       rollup_min_visitors=rollup_min_visitors, archive=archive)
        except Exception as exc:  # noqa: BLE001  a step that cannot even plan: the other steps still run
            result.errors.append(f"{step}: the step could not run: {failure_reason(exc, '')}")
            continue
        link_target = next((a.target for a in actions if a.kind == Kind.LINK), link_target)
        sizes(store, actions)
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
    if archive is not None and "archive" in steps and store.dir.is_dir():
        result.archive = archive.backlog(store.dir, store.scan().files, today)
    return result


@dataclass(frozen=True)
class _Run:
    """What every action of one pass is carried out with."""

    store: Store
    today: date
    level: int
    threads: int
    progress: Callable[[int], None] | None
    stop: threading.Event | None
    rollup_min_visitors: int = rollups.DEFAULT_MIN_VISITORS
    archive: object = None  # metrics_ops.offsite.Archive, for the archive step's actions


#: how many files the archive step uploads at once
UPLOADS_AT_ONCE = 4


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
    uploads = [a for a in actions if a.kind in (Kind.UPLOAD, Kind.REUPLOAD)]
    if len(uploads) < 2:
        uploads = []
    for action in actions:
        if action not in parallel and action not in uploads:
            one(action, run.threads)
    if parallel or uploads:
        from concurrent.futures import ThreadPoolExecutor

        parallel.sort(key=lambda a: -(a.bytes_before or 0))
        with ThreadPoolExecutor(max_workers=run.threads, thread_name_prefix="gzip") as pool:
            list(pool.map(lambda a: one(a, 1), parallel))
        # Uploads wait on the network and the server more than on this machine: a few at once keep the server
        # busy (bench/archive_bench.py: 4 concurrent puts took half the time of one at a time). Each file is
        # still hashed, uploaded under its condition, verified and recorded on its own.
        with ThreadPoolExecutor(max_workers=UPLOADS_AT_ONCE, thread_name_prefix="upload") as pool:
            list(pool.map(lambda a: one(a, 1), uploads))


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


def _rename(run: _Run, a: Action, threads: int) -> None:
    a.target = run.store.rename_aside(a.file)
    a.detail = f"renamed {a.target}: outside the reading glob metrics-*.jsonl*"


def _delete(run: _Run, a: Action, threads: int) -> None:
    f = parse_name(a.file)
    if f is not None and f.gz:
        # its archive record goes first: a record outliving its file would take a later file of the same name (a
        # writer under a wrong clock, a restore) for this one changed, and upload it over the day's only copy
        from metrics_ops.offsite import drop_record

        drop_record(run.store.dir, a.file)
    a.bytes_before, a.bytes_after = run.store.delete(a.file), 0


def _rollup(run: _Run, a: Action, threads: int) -> None:
    a.bytes_after = rollups.write(run.store.dir, a.file, run.store.zone, run.rollup_min_visitors,
                                  run.store.file_mode)


def _drop_rollup(run: _Run, a: Action, threads: int) -> None:
    a.bytes_before, a.bytes_after = rollups.delete(run.store.dir, a.file), 0


#: how a pass carries out each kind of action (mkdir is only planned; rewrite is forget's)
_HANDLERS: dict[Kind, Callable[[_Run, Action, int], None]] = {
    Kind.ADOPT: _adopt,
    Kind.CREATE: _create,
    Kind.SHARD: _create,
    Kind.LINK: _link,
    Kind.GZIP: _gzip,
    Kind.RECONCILE: _reconcile,
    Kind.REMOVE_TEMP: _remove_temp,
    Kind.RENAME: _rename,
    Kind.DELETE: _delete,
    Kind.ROLLUP: _rollup,
    Kind.DROP_ROLLUP: _drop_rollup,
}


def _execute(run: _Run, a: Action, threads: int) -> None:
    """Carry out one action. Whatever goes wrong in it (a file operation, a lock, a line no reader foresaw) fails
    this action alone, in one line, and the pass goes on with every other action of every step."""
    try:
        if a.step == "archive":
            from metrics_ops.archivestep import HANDLERS

            HANDLERS[a.kind](run, a, threads)
        else:
            _HANDLERS[a.kind](run, a, threads)
        a.status = Status.DONE
    except Exception as exc:  # noqa: BLE001  one day's trouble never stops the rest of the pass
        a.status = Status.FAILED
        a.error = failure_reason(exc, a.file)


def failure_text(exc: OSError, name: str) -> str:
    """An action's error in one line: a StoreError names its file already; a bare OSError gets the name."""
    if isinstance(exc, StoreError):
        return str(exc)
    why = exc.strerror or str(exc)
    return f"{why} ({name})" if name else why


def failure_reason(exc: Exception, name: str) -> str:
    """Why an action (or a step's plan) failed, in one line. File errors and a busy lock are worded as such; any
    other exception is a fault no reader or step foresaw: its type and where it was raised, for a bug report."""
    if isinstance(exc, OSError):
        text = failure_text(exc, name or exc.filename or "")
    elif isinstance(exc, LockBusy | ArchiveError):  # one line naming the lock, or the archive and the key
        text = str(exc)
    else:
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
        text = f"unexpected {type(exc).__name__}{where}: {exc}"
    return " ".join(text.split())  # one line, whatever the message held


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

    Whatever stops one pass (a busy lock, worded by ``describe_busy``; a file error; anything else) is handed to
    ``on_error`` in one line and the loop goes on (the next pass retries); a signal sets ``stop``, the action in
    progress finishes, and the loop ends.
    """
    passes = 0
    while not stop.is_set():
        try:
            on_result(one_pass())
        except LockBusy as exc:
            on_error(describe_busy(exc))
        except Exception as exc:  # noqa: BLE001  the sidecar keeps running: the next pass may succeed
            on_error(f"pass failed: {failure_reason(exc, '')}")
        passes += 1
        stop.wait(interval)
    return passes
