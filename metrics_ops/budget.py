"""The disk budget: a ceiling on the data files' total size and a floor of free space on their file system.

A flood of events (a bot, a client stuck in a loop) can fill the disk long before retention is up, and then
nothing can be written or compressed. The last step of a pass (``budget``) therefore plans deletions, like prune,
from the data files alone (layout's grammar: day files, shards, archives, archives set aside; never the link,
the state or status files, nor anything outside the grammar such as rollups or notes), until both hold again:

- the oldest day first, and within a day archives before plain files, lower shards first;
- never the link's target, today's current file, a plain file a writer holds open (serve's current file,
  whatever this pass's clock says), nor what this pass adopted.

The plan is made from sizes on disk, so ``--dry-run`` shows it; when every file it may delete is gone and the
budget still does not hold, the pass reports an error instead of touching anything else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from metrics_ops.diskspace import MIB, DiskUsage, disk_usage, mib
from metrics_ops.inventory import measure
from metrics_ops.layout import Listing, aside_day

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


@dataclass(frozen=True)
class Candidate:
    """A file the budget may delete, in deletion order."""

    day: date
    order: int  # 0: an archive (or one set aside), 1: a plain file
    shard: int
    name: str
    size: int  # bytes it counts towards the total
    frees: int  # bytes its deletion gives back to the file system (its allocated blocks)


@dataclass
class BudgetPlan:
    """What the budget step would delete, why, and whether that is enough."""

    total: int  # bytes of data files before the step
    usage: DiskUsage
    max_total: int | None
    min_free: int | None
    deletions: list[Candidate]
    kept: list[tuple[str, str]]
    shortfall: str | None  # why the budget still does not hold after every allowed deletion

    @property
    def why(self) -> str:
        """The limits crossed, in words (for the actions' detail and the pass output)."""
        parts = []
        if self.max_total is not None and self.total > self.max_total:
            parts.append(f"data files {mib(self.total)} over max_total_mb {mib(self.max_total)}")
        if self.min_free is not None and self.usage.free < self.min_free:
            parts.append(f"free space {mib(self.usage.free)} under min_free {mib(self.min_free)}")
        return "; ".join(parts)


def plan_budget(directory, listing: Listing, budget: Budget, *, keep: dict[str, str],
                in_use: Callable[[str], bool] = lambda name: False, gone: frozenset[str] = frozenset(),
                usage: Callable[[os.PathLike | str], DiskUsage] = disk_usage) -> BudgetPlan:
    """Plan the deletions that bring ``directory`` back within ``budget``.

    ``keep`` maps names that must stay to the reason (the link's target, today's current file, adopted files);
    ``in_use`` asks the kernel whether a writer holds a plain file open; ``gone`` are files an earlier step of a
    dry run plans to delete already (they count as deleted).
    """
    now = usage(directory)
    free = now.free + sum(frees for _size, frees in measure(directory, gone).values())
    now, min_free = DiskUsage(free, now.total), budget.min_free(now.total)
    if budget.max_total is None and (min_free is None or free >= min_free):  # no lstat per file: the common case
        return BudgetPlan(0, now, None, min_free, [], [], None)
    names = [f.name for f in listing.files if f.name not in gone] + [n for n in listing.aside if n not in gone]
    sizes = measure(directory, names)
    total = sum(size for size, _ in sizes.values())
    plan = BudgetPlan(total, now, budget.max_total, min_free, [], [], None)
    if not plan.why:
        return plan
    candidates = []
    for f in listing.files:
        if f.name in sizes:
            candidates.append(Candidate(f.day, 0 if f.gz else 1, f.shard, f.name, *sizes[f.name]))
    for name in listing.aside:
        if name in sizes:
            candidates.append(Candidate(aside_day(name), 0, 0, name, *sizes[name]))
    candidates.sort(key=lambda c: (c.day, c.order, c.shard, c.name))
    target_free = plan.min_free + HEADROOM if plan.min_free is not None else None
    for c in candidates:
        over = plan.max_total is not None and total > plan.max_total
        short = target_free is not None and free < target_free
        if not (over or short):
            break
        if c.name in keep:
            plan.kept.append((c.name, f"{keep[c.name]}; the disk budget never deletes it"))
            continue
        if c.order == 1 and in_use(c.name):
            plan.kept.append((c.name, "a writer holds it open; the disk budget never deletes the file being written"))
            continue
        plan.deletions.append(c)
        total -= c.size
        free += c.frees
    if (plan.max_total is not None and total > plan.max_total) or (plan.min_free is not None and free < plan.min_free):
        plan.shortfall = (f"disk budget not met after deleting every file it may delete: data files {mib(total)}"
                          f" (max_total_mb {mib(plan.max_total)}), free {mib(free)} (min_free {mib(plan.min_free)})")
    return plan


def plan_for_pass(store, listing: Listing, today: date, budget: Budget | None, *, link_target: str | None,
                  adopted: frozenset[str], gone: frozenset[str]) -> BudgetPlan | None:
    """The budget step of a pass over ``store`` (a :class:`metrics_ops.store.Store`): what it never deletes and
    the plan; None when no budget is set."""
    if budget is None or not budget.active or not store.dir.is_dir():
        return None
    keep = {name: "adopted in this pass" for name in adopted}
    keep[store.current_target(today, [f.name for f in listing.files])] = "today's current file"
    if link_target is not None:
        keep[link_target] = "the link points at it"
    return plan_budget(store.dir, listing, budget, keep=keep, in_use=store.held_for_writing, gone=gone)
