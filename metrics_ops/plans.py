"""What a maintenance pass will do: the action types, and each step's plan from the directory's listing.

Every step plans a list of :class:`Action` from the names alone (the day in the name, never the mtime); a dry run
is the plan. :mod:`metrics_ops.maintenance` carries the actions out. Nothing here reads the wall clock: ``today``
is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from enum import StrEnum

from metrics_ops import rollups
from metrics_ops.budget import Budget, plan_for_pass
from metrics_ops.store import DataFile, Listing, Store, aside_day, file_name, is_old_name, parse_name

STEPS = ("rotate", "gzip", "prune", "budget")
#: rotate's pass: the rollups of complete days are written before anything is compressed or deleted
ROTATE_STEPS = ("rotate", "rollup", "gzip", "prune", "budget")
#: rotate's pass with archive_url set: closed, compressed files go to the archive before prune may delete them
ARCHIVE_ROTATE_STEPS = ("rotate", "rollup", "gzip", "archive", "prune", "budget")


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
    RENAME = "rename"  # an archive set aside under an earlier version's name (inside the reading glob)
    DELETE = "delete"
    REWRITE = "rewrite"  # forget
    ROLLUP = "rollup"  # a complete day's counts (metrics_ops.rollups)
    DROP_ROLLUP = "drop-rollup"  # a rollup past rollup_retention
    UPLOAD = "upload"  # archive: a closed, compressed file to its object (metrics_ops.archivestep)
    REUPLOAD = "reupload"  # archive: a file that changed since its upload, over its object (If-Match)
    RECORD = "record"  # archive: the object holds the file's bytes already: recorded, nothing uploaded
    RESTORE = "restore"  # archive: forget on another host rewrote the object: it replaces the local file
    DROP_OBJECT = "drop-object"  # archive: an object past archive_retention (file: its key)
    DROP_RECORD = "drop-record"  # archive: the record of a local file that is gone (deleted by hand)


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
    archive: dict | None = None  # what waits for the archive after the pass (metrics_ops.offsite.Archive.backlog)

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
            **({"archive": self.archive} if self.archive is not None else {}),
        }


def _old(age: int) -> str:
    return f"{age} day old" if age == 1 else f"{age} days old"


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
    actions += [Action("gzip", Kind.RENAME, name, detail="set aside by an earlier version under a name the reading "
                       "glob metrics-*.jsonl* matches: renamed .NAME") for name in listing.aside if is_old_name(name)]
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
        actions.append(Action("gzip", kind, f.name, detail=_old(age)))
    return actions, kept


def plan_prune(listing: Listing, today: date, retention: int, *, link_target: str | None,
               protected: frozenset[str] = frozenset(), in_use: Callable[[str], bool] = lambda name: False,
               unarchived: Callable[[DataFile], str | None] | None = None
               ) -> tuple[list[Action], list[tuple[str, str]]]:
    """Delete data files (plain, shards, archives, archives set aside) whose day is at least ``retention`` days
    old; never what this pass adopted (``protected``), never a plain file a writer holds open (``in_use``): that
    is the file being written, whatever this pass's clock says its day is. With an archive, never a file that
    ``unarchived`` gives a reason to keep (not safely archived: :meth:`metrics_ops.offsite.Archive.why_kept`)."""
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
        if unarchived is not None and (why := unarchived(f)):
            kept.append((f.name, f"{_old(age)}, {why}"))
            continue
        actions.append(Action("prune", Kind.DELETE, f.name, detail=_old(age)))
    for name in listing.aside:  # unreadable archives set aside by gzip: kept for inspection until retention
        age = _age(aside_day(name), today)
        if age >= retention and unarchived is not None and unarchived(DataFile(aside_day(name), 0, False, name)):
            kept.append((name, f"{_old(age)}, an unreadable archive set aside by gzip: never archived (it cannot "
                               "be read whole), so kept until archive_retention; repair it or delete it"))
        elif age >= retention:
            actions.append(Action("prune", Kind.DELETE, name, detail=f"{_old(age)}; set aside as unreadable"))
        else:
            kept.append((name, "an unreadable archive set aside by gzip; deleted with its day"))
    return actions, kept


def sizes(store: Store, actions: list[Action]) -> None:
    for a in actions:
        if a.bytes_before is None and a.kind in (Kind.GZIP, Kind.RECONCILE, Kind.DELETE, Kind.REMOVE_TEMP):
            a.bytes_before = store.size_of(a.file)


def plan_rollups(store: Store, listing: Listing, today: date, rollup_retention: int,
                 min_visitors: int = rollups.DEFAULT_MIN_VISITORS, result: PassResult | None = None
                 ) -> list[Action]:
    """Write the rollup of every complete day that has data files and none yet, rewrite the rollups that fold
    less than ``min_visitors`` asks (or an older format), drop rollups past retention. ``DIR/rollups`` as a link
    (or not a directory) plans nothing and is one error of the pass (``result``): the other steps still run.

    A rollup is written once, so a day whose plain file a writer still holds open (serve's last events of the
    day at midnight, a serve whose clock or zone is behind the rotator's) waits for a later pass: the writer lets
    go of it with its first event of the next day."""
    try:
        due, stale, old = rollups.plan(store.dir, {f.day for f in listing.files}, today, rollup_retention,
                                       min_visitors)
    except OSError as exc:
        if result is None:
            raise
        result.errors.append(f"rollup: {exc}")
        return []
    due_days = {rollups.day_of_rollup(f) for f in due}
    written = {f.day for f in listing.files if f.day in due_days and not f.gz and store.held_for_writing(f.name)}
    due = [f for f in due if rollups.day_of_rollup(f) not in written]
    days = {f.day for f in listing.files}
    return ([Action("rollup", Kind.ROLLUP, f, detail=f"in {rollups.ROLLUP_DIR}/: the day is over") for f in due]
            + [Action("rollup", Kind.ROLLUP, f, detail=(
                "recounted" if rollups.day_of_rollup(f) in days else "folded in place (raw data gone)")
                + f": folds what fewer than {min_visitors} visitors saw") for f in stale]
            + [Action("rollup", Kind.DROP_ROLLUP, f, detail=f"{rollup_retention} days old or more") for f in old])


def plan_step(step: str, store: Store, listing: Listing, today: date, *, link_target: str | None,
               adopted: frozenset[str], gzip_after: int, retention: int, prune_follows: bool,
               budget: Budget | None, result: PassResult, rollup_retention: int = 400,
               rollup_min_visitors: int = rollups.DEFAULT_MIN_VISITORS, archive=None
               ) -> tuple[list[Action], list[tuple[str, str]]]:
    """One step's plan. ``archive`` (:class:`metrics_ops.offsite.Archive`, None: archive_url unset) plans the
    archive step and keeps prune and the budget off what is not safely archived."""
    unarchived = None if archive is None else (lambda f: archive.why_kept(store.dir, f, today))
    if step == "rollup":
        return plan_rollups(store, listing, today, rollup_retention, rollup_min_visitors, result), []
    if step == "budget":
        return _plan_budget(store, listing, today, budget, link_target, adopted, result, unarchived)
    if step == "rotate":
        return plan_rotate(store, listing, today), []
    if step == "gzip":  # with an archive, prune deletes old plain files only once compressed and archived
        doomed = (archive.retention if archive is not None else retention) if prune_follows else None
        return plan_gzip(listing, today, gzip_after, link_target=link_target, retention=doomed, protected=adopted)
    if step == "archive":
        from metrics_ops.archivestep import plan_archive

        if archive is None:
            return [], []
        return plan_archive(store, listing, today, archive, result,
                            lambda kind, file, **fields: Action("archive", Kind(kind), file, **fields))
    return plan_prune(listing, today, retention, link_target=link_target, protected=adopted,
                      in_use=store.held_for_writing, unarchived=unarchived)


def _plan_budget(store: Store, listing: Listing, today: date, budget: Budget | None, link_target: str | None,
                 adopted: frozenset[str], result: PassResult, unarchived=None
                 ) -> tuple[list[Action], list[tuple[str, str]]]:
    """The budget step (:func:`metrics_ops.budget.plan_for_pass`): deletions like prune's; a shortfall is an error
    of the pass. In a dry run the files the prune step plans to delete count as gone already."""
    gone = frozenset(a.file for a in result.actions if a.kind in (Kind.DELETE, Kind.DROP_ROLLUP)
                     ) if result.dry_run else frozenset()
    plan = plan_for_pass(store, listing, today, budget, link_target=link_target, adopted=adopted, gone=gone,
                         unarchived=unarchived)
    if plan is None:
        return [], []
    result.errors.extend([plan.shortfall] if plan.shortfall else [])
    return [Action("budget", Kind.DROP_ROLLUP if c.rollup else Kind.DELETE, c.name, c.size,
                   detail=f"{_old(_age(c.day, today))}; disk budget: {plan.why}") for c in plan.deletions], plan.kept
