"""The disk budget: a ceiling on the data files' and rollups' total size and a floor of free space on their file
system.

A flood of events (a bot, a client stuck in a loop) can fill the disk long before retention is up, and then
nothing can be written or compressed. The last step of a pass (``budget``) therefore plans deletions, like prune,
until both hold again. It weighs the data files (layout's grammar: day files, shards, archives, archives set
aside) and the rollups (``DIR/rollups/rollup-DAY.json``); never the link, the state or status files, nor anything
outside the grammar. It deletes:

1. data files, the oldest day first, and within a day archives before plain files, lower shards first;
2. only when no data file it may delete is left: rollups, the oldest day first, and never the rollup of a day
   whose data files are still there (a day's counts outlive its raw lines, never the other way round).

It never deletes a file of today or of a later day (every shard of it: serve may be writing any of them, and the
Troubleshooting table promises it), the link's target, a plain file a writer holds open (serve's current file,
whatever this pass's clock says), nor what this pass adopted, nor (with ``archive_url`` set) a data file that is
not safely archived: its object must exist and match (size and sha256). When that is not enough the pass reports, in one
line, how far off the budget is and what it may not delete, instead of touching anything else; a floor larger
than the file system itself deletes nothing; files that wait for the archive are named as such.

The plan is made from sizes on disk, so ``--dry-run`` shows it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from metrics_ops.diskspace import MIB, DiskUsage, disk_usage, readable
from metrics_ops.inventory import measure, rollup_sizes
from metrics_ops.layout import DataFile, Listing, aside_day, parse_name

#: once under the floor, free this much more: the pass's own status file and textfile, and a new day's first
#: page, must not put the directory back under it (the next pass would delete another day)
HEADROOM = 64 * 1024


@dataclass(frozen=True)
class Budget:
    """The limits; None: that limit is off."""

    max_total_mb: float | None = None
    min_free_mb: float | None = None
    min_free_percent: float | None = None

    @classmethod
    def from_settings(cls, settings) -> Budget:
        return cls(settings.max_total_mb, settings.min_free_mb, settings.min_free_percent)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_total_mb, self.min_free_mb, self.min_free_percent))

    @property
    def max_total(self) -> int | None:
        return None if self.max_total_mb is None else int(self.max_total_mb * MIB)

    def min_free(self, fs_size: int) -> int | None:
        """The free-space floor in bytes on a file system of ``fs_size`` bytes (the larger of the two settings)."""
        floors = [int(self.min_free_mb * MIB)] if self.min_free_mb is not None else []
        if self.min_free_percent is not None:
            floors.append(int(fs_size * self.min_free_percent / 100))
        return max(floors) if floors else None

    def floor_setting(self, fs_size: int) -> str:
        """The setting that makes the floor, as the operator wrote it: ``min_free_mb 0.2`` or ``min_free_percent
        10``."""
        mb = int(self.min_free_mb * MIB) if self.min_free_mb is not None else -1
        pct = int(fs_size * self.min_free_percent / 100) if self.min_free_percent is not None else -1
        return f"min_free_mb {self.min_free_mb:g}" if mb >= pct else f"min_free_percent {self.min_free_percent:g}"


@dataclass(frozen=True)
class Candidate:
    """A file the budget may delete, in deletion order."""

    day: date
    order: int  # 0: an archive (or one set aside), 1: a plain file, 2: a rollup (in DIR/rollups)
    shard: int
    name: str
    size: int  # bytes it counts towards the total
    frees: int  # bytes its deletion gives back to the file system (its allocated blocks)

    @property
    def rollup(self) -> bool:
        return self.order == 2


@dataclass
class BudgetPlan:
    """What the budget step would delete, why, and whether that is enough."""

    total: int  # bytes of data files and rollups before the step
    usage: DiskUsage
    max_total: int | None
    min_free: int | None
    deletions: list[Candidate]
    kept: list[tuple[str, str]]
    shortfall: str | None  # why the budget still does not hold after every allowed deletion
    budget: Budget | None = None

    @property
    def why(self) -> str:
        """The limits crossed, in words (for the actions' detail and the pass output)."""
        parts = []
        if self.max_total is not None and self.total > self.max_total:
            parts.append(f"data files and rollups {readable(self.total)} over {self._ceiling()}")
        if self.min_free is not None and self.usage.free < self.min_free:
            parts.append(f"free space {readable(self.usage.free)} under {self._floor()}")
        return "; ".join(parts)

    def _ceiling(self) -> str:
        setting = f"max_total_mb {self.budget.max_total_mb:g}" if self.budget is not None else "max_total_mb"
        return f"{setting} ({readable(self.max_total)})"

    def _floor(self) -> str:
        setting = self.budget.floor_setting(self.usage.total) if self.budget is not None else "min_free"
        return f"{setting} ({readable(self.min_free)})"


def plan_budget(directory, listing: Listing, budget: Budget, *, keep: dict[str, str],
                in_use: Callable[[str], bool] = lambda name: False, gone: frozenset[str] = frozenset(),
                today: date | None = None,
                usage: Callable[[os.PathLike | str], DiskUsage] = disk_usage,
                unarchived: Callable[[DataFile], str | None] | None = None) -> BudgetPlan:
    """Plan the deletions that bring ``directory`` back within ``budget``.

    ``keep`` maps names that must stay to the reason (the link's target, today's current file, adopted files);
    files of ``today`` or a later day always stay; ``in_use`` asks the kernel whether a writer holds a plain file
    open; ``gone`` are files (and rollups) an earlier step of a dry run plans to delete already (they count as
    deleted); ``unarchived`` says why a data file is not safely archived yet (None: it is), with archive_url set.
    """
    now = usage(directory)
    rollups = rollup_sizes(directory)
    free = now.free + sum(frees for _size, frees in measure(directory, gone).values())
    free += sum(rollups[name][2] for name in gone if name in rollups)
    now, min_free = DiskUsage(free, now.total), budget.min_free(now.total)
    if budget.max_total is None and (min_free is None or free >= min_free):  # no lstat per file: the common case
        return BudgetPlan(0, now, None, min_free, [], [], None, budget)
    names = [f.name for f in listing.files if f.name not in gone] + [n for n in listing.aside if n not in gone]
    sizes = measure(directory, names)
    rollups = {name: v for name, v in rollups.items() if name not in gone}
    total = sum(size for size, _ in sizes.values()) + sum(size for _day, size, _ in rollups.values())
    plan = BudgetPlan(total, now, budget.max_total, min_free, [], [], None, budget)
    if not plan.why:
        return plan
    if min_free is not None and min_free >= now.total:  # no deletion can ever meet it: delete nothing
        plan.shortfall = (f"disk budget cannot be met: {plan._floor()} is more than the whole file system "
                          f"({readable(now.total)}); nothing deleted")
        return plan
    candidates = [Candidate(f.day, 0 if f.gz else 1, f.shard, f.name, *sizes[f.name])
                  for f in listing.files if f.name in sizes]
    candidates += [Candidate(aside_day(name), 0, 0, name, *sizes[name]) for name in listing.aside if name in sizes]
    candidates.sort(key=lambda c: (c.day, c.order, c.shard, c.name))
    candidates += sorted((Candidate(day, 2, 0, name, size, frees) for name, (day, size, frees) in rollups.items()),
                         key=lambda c: c.day)
    target_free = plan.min_free + HEADROOM if plan.min_free is not None else None
    raw_days_left: set[date] = set()  # days whose data files stay: their rollups stay too
    never: list[Candidate] = []  # data files the budget may not delete
    waiting: list[Candidate] = []  # ... of which: not archived yet
    for c in candidates:
        over = plan.max_total is not None and total > plan.max_total
        short = target_free is not None and free < target_free
        if not (over or short):
            break
        why = _kept_why(c, keep, in_use, today, raw_days_left)
        if why is None and unarchived is not None and not c.rollup and (f := parse_name(c.name)) is not None \
                and (not_yet := unarchived(f)):
            why = f"{not_yet}; the disk budget deletes only what is safely archived"
            waiting.append(c)
        if why is not None:
            plan.kept.append((c.name, why))
            if not c.rollup:
                raw_days_left.add(c.day)
                never.append(c)
            continue
        plan.deletions.append(c)
        total -= c.size
        free += c.frees
    if (plan.max_total is not None and total > plan.max_total) or (plan.min_free is not None and free < plan.min_free):
        plan.shortfall = _shortfall(plan, total, free, never, today, waiting)
    return plan


def _kept_why(c: Candidate, keep: dict[str, str], in_use: Callable[[str], bool], today: date | None,
              raw_days_left: set[date]) -> str | None:
    """Why the budget leaves candidate ``c`` alone, or None: it may delete it."""
    if c.rollup:
        if c.day in raw_days_left:
            return "its day's data files are still there; the disk budget deletes a rollup only after them"
        return None
    if today is not None and c.day >= today:
        return ("today's file" if c.day == today else "dated after today") + "; the disk budget never deletes it"
    if c.name in keep:
        return f"{keep[c.name]}; the disk budget never deletes it"
    if c.order == 1 and in_use(c.name):
        return "a writer holds it open; the disk budget never deletes the file being written"
    return None


def _shortfall(plan: BudgetPlan, total: int, free: int, never: list[Candidate], today: date | None,
               waiting: list[Candidate] = ()) -> str:
    """The budget not met, in one line a person can act on: how far off it is, and what it may not delete."""
    parts = []
    if plan.max_total is not None and total > plan.max_total:
        parts.append(f"data files and rollups take {readable(total)}, over {plan._ceiling()}")
    if plan.min_free is not None and free < plan.min_free:
        parts.append(f"free space is {readable(free)}, under {plan._floor()}")
    todays = [c for c in never if today is not None and c.day >= today]
    others = [c for c in never if c not in todays and c not in waiting]
    left = []
    if todays:
        left.append(f"today's files ({_files(todays)}), which it never deletes")
    if waiting:
        left.append(f"{_files(waiting)} not yet archived, which it deletes only once archived")
    if others:
        left.append(f"{_files(others)} it must keep (-v says why)")
    what = f"; left: {' and '.join(left)}" if left else ""
    return f"disk budget not met after deleting every file it may delete: {'; '.join(parts)}{what}"


def _files(cs: list[Candidate]) -> str:
    return f"{readable(sum(c.size for c in cs))} in {len(cs)} file{'s' if len(cs) != 1 else ''}"


def plan_for_pass(store, listing: Listing, today: date, budget: Budget | None, *, link_target: str | None,
                  adopted: frozenset[str], gone: frozenset[str],
                  unarchived: Callable[[DataFile], str | None] | None = None) -> BudgetPlan | None:
    """The budget step of a pass over ``store`` (a :class:`metrics_ops.store.Store`): what it never deletes and
    the plan; None when no budget is set."""
    if budget is None or not budget.active or not store.dir.is_dir():
        return None
    keep = {name: "adopted in this pass" for name in adopted}
    keep[store.current_target(today, [f.name for f in listing.files])] = "today's current file"
    if link_target is not None:
        keep[link_target] = "the link points at it"
    return plan_budget(store.dir, listing, budget, keep=keep, in_use=store.held_for_writing, gone=gone, today=today,
                       unarchived=unarchived)

