"""``report``: events, distinct visitors and sampling-corrected estimates per group, over a range of days.

Each day of the range comes from its rollup when one exists for the report's zone and the grouping allows it
(:mod:`metrics_ops.rollups`), else from its raw lines (:mod:`metrics_ops.tally`, one day per worker process,
both cores), else it has no data (pruned, or nothing was stored). The result says which days came from where.

Grouping dimensions: ``day`` (the day of the file, i.e. the receive day in METRICS_TZ), ``hour``, ``event``,
``path`` (the top N paths, the rest as ``(other)``). Distinct visitors add up only where no visitor can be counted
twice: across days they are exact from raw lines (one set over the range) and unknown (None) when daily rollups
are summed. Estimates and variances add (a sum over days from rollups treats the days as independent).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops import remote, rollups
from metrics_ops.estimate import Estimate, merge_clusters
from metrics_ops.folding import OTHER, TOP
from metrics_ops.reading import Across, Shard, sources
from metrics_ops.tally import DIMENSIONS, TOO_LONG, DayTally, tally_day

BY_CHOICES = ("day", "hour", "event", "path")
DEFAULT_DAYS = 7


@dataclass(slots=True)
class Row:
    keys: dict[str, str]
    est: Estimate
    partial: bool = False
    approximate: bool = False  # may count too few: on a folded rollup day its value was in (other)

    def to_dict(self) -> dict:
        return {**self.keys, "events": self.est.events, "visitors": self.est.visitors,
                "estimate": round(self.est.estimate, 1), "low": round(self.est.low, 1),
                "high": round(self.est.high, 1), **({"partial": True} if self.partial else {}),
                **({"approximate": True} if self.approximate else {})}


@dataclass
class ReportResult:
    since: date
    until: date
    by: tuple[str, ...]
    event: str | None
    rows: list[Row] = field(default_factory=list)
    raw_days: list[date] = field(default_factory=list)
    rollup_days: list[date] = field(default_factory=list)
    empty_days: list[date] = field(default_factory=list)
    partial_days: list[date] = field(default_factory=list)
    folded_days: list[date] = field(default_factory=list)  # rollup days whose view folded values into (other)
    ranking: str | None = None  # with path: "exact", or "approximate" (a folded value could belong in the top)
    lines: int = 0
    test_lines: int = 0
    unweighted: int = 0
    damage: dict[str, int] = field(default_factory=dict)  # damaged lines left out, by what is wrong
    long_lines: dict[str, int] = field(default_factory=dict)  # file -> lines over the reader's bound
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hosts: list[str] | None = None  # read across hosts (archive_url): the hosts whose lines were read
    mixed_days: list[date] = field(default_factory=list)  # this host's rollup + other hosts' raw lines

    @property
    def damaged(self) -> int:
        return sum(self.damage.values())

    def add_damage(self, damage: dict[str, int]) -> None:
        for why, n in damage.items():
            self.damage[why] = self.damage.get(why, 0) + n

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def approximate(self) -> bool:
        return self.ranking == "approximate" or any(r.approximate for r in self.rows)

    def daily(self) -> list[tuple[date, float, bool]]:
        """(day, estimate, partial) per day of the range, when the rows are grouped by day: the chart."""
        if "day" not in self.by:
            return []
        per: dict[str, float] = {}
        for r in self.rows:
            per[r.keys["day"]] = per.get(r.keys["day"], 0.0) + r.est.estimate
        days = [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]
        return [(d, per.get(d.isoformat(), 0.0), d in self.partial_days) for d in days]

    def to_dict(self, rows: bool = True) -> dict:
        """The --json document (``rows``: False leaves the rows out, for a writer that streams them)."""
        iso = lambda days: [d.isoformat() for d in days]  # noqa: E731
        return {
            "ok": self.ok, "since": self.since.isoformat(), "until": self.until.isoformat(), "by": list(self.by),
            "event": self.event, "rows": [r.to_dict() for r in self.rows] if rows else [],
            "days": {"raw": iso(self.raw_days), "rollup": iso(self.rollup_days), "none": iso(self.empty_days)},
            "partial_days": iso(self.partial_days), "folded_days": iso(self.folded_days),
            "approximate": self.approximate, "ranking": self.ranking, "lines": self.lines,
            "test_lines": self.test_lines, "unweighted": self.unweighted, "damaged": self.damaged,
            "damage": self.damage,
            "problems": self.problems, "notes": self.notes,
            **({"hosts": self.hosts, "mixed_days": iso(self.mixed_days)} if self.hosts is not None else {}),
            "interval": "95 %, Horvitz-Thompson with visitors as the sampled clusters",
        }


def parse_by(text: str) -> tuple[str, ...]:
    """``day,event`` -> ("day", "event"); ValueError naming the bad part."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    for p in parts:
        if p not in BY_CHOICES:
            raise ValueError(f"unknown grouping {p!r} (choose from {', '.join(BY_CHOICES)})")
    if len(set(parts)) != len(parts):
        raise ValueError("a grouping is named twice")
    return parts


class _Cell:
    """One output row being built: exact visitor clusters from raw days, counts from rollup days."""

    __slots__ = ("clusters", "parts")

    def __init__(self):
        self.clusters: dict[str, list] | None = None
        self.parts: list[Estimate] = []

    def add_clusters(self, clusters: dict[str, list]) -> None:
        if self.clusters is None:
            self.clusters = clusters
        else:
            merge_clusters(self.clusters, clusters)

    def events(self) -> int:
        return sum(n for _, n in (self.clusters or {}).values()) + sum(p.events for p in self.parts)

    def finish(self) -> Estimate:
        if self.clusters is None and len(self.parts) == 1:
            return self.parts[0]
        est = Estimate.of_visitors(self.clusters) if self.clusters is not None else None
        for p in self.parts:
            if est is None:
                est = Estimate(p.events, p.visitors, p.estimate, p.variance)
            else:
                est.add(p, disjoint=False)
        return est


def _tally_worker(args) -> DayTally:
    directory, day, day_shards, dims, zone, event, reduce, following = args
    remote.warm(following)  # the objects of this worker's next day are fetched while this one is counted
    # reduce: the day is a row key: the parent needs the day's counts, not its visitors
    return tally_day(directory, day, day_shards, [dims], zone, event, estimates=reduce)


def _tally_days(directory: Path, days: dict[date, list[Shard]], dims: tuple[str, ...], zone: ZoneInfo,
                event: str | None, reduce: bool, workers: int) -> list[DayTally]:
    ordered = sorted(days.items())
    # objects in the bucket: a worker takes runs of `chunk` days (each worker one at least); each day names the next
    # of its run, whose objects it fetches ahead. Local files only: one day at a time, as they come.
    chunk = 1
    if workers > 1 and any(isinstance(s, remote.Remote) for _, found in ordered for s in found):
        chunk = min(max(2, len(ordered) // (4 * workers)), -(-len(ordered) // workers))
    jobs = [(directory, day, s, dims, zone, event, reduce,
             ordered[i + 1][1] if i + 1 < len(ordered) and (i + 1) % chunk else ())
            for i, (day, s) in enumerate(ordered)]
    if workers <= 1 or len(jobs) <= 1:
        return [_tally_worker(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_tally_worker, jobs, chunksize=chunk))


@dataclass
class _Folded:
    """A day from a rollup whose view folded values into (other) (its raw lines are gone): the keys it lists,
    its fold rule, and for a ranking of paths the most events a path it does not list can hide in (other)."""

    day: str
    keys: set[tuple]
    min_visitors: int
    paths: set[str] = field(default_factory=set)
    bound: float = 0.0


def _folded_day(r: rollups.Rollup, dims: tuple[str, ...], by: tuple[str, ...], event: str | None) -> _Folded:
    cells = r.views[dims]
    f = _Folded(r.day.isoformat(), set(cells), r.min_visitors)
    if "path" in by:
        at = dims.index("path")
        if event is not None and not any(k[0] == event for k in cells):  # the event itself is folded
            hiding = [e.events for k, e in cells.items() if k[0] == OTHER]
        else:
            hiding = [e.events for k, e in cells.items() if k[at] == OTHER and (event is None or k[0] == event)]
            f.paths = {k[at] for k in cells if event is None or k[0] == event}
        f.bound = float(sum(hiding))
        residual = r.folded.get(dims)
        if residual is not None and (len(dims) == 1 or event is not None and "event" not in by):
            f.bound = min(f.bound, float(residual))  # one key of the view is all one path can hide
    return f


def _rollup_days(directory: Path, since: date, until: date, tz: str, dims: tuple[str, ...], raw: dict,
                 result: ReportResult, across: Across | None = None) -> dict[date, rollups.Rollup]:
    """The days of the range answered by their rollup: one exists for the zone, and either the raw lines are gone
    or the rollup's view is exact (folds nothing): a day whose raw lines exist is reported as they say. Across
    hosts a rollup is this host's alone: it answers a day with other hosts' raw lines only added to them, where
    this host's raw lines are gone (a mixed day)."""
    own, others = remote.host_days(raw, across)
    out: dict[date, rollups.Rollup] = {}
    try:
        for day in sorted(rollups.existing(directory)):
            if since <= day <= until and (r := rollups.read(directory, day, dims)) is not None:
                if r.tz != tz:
                    result.notes.append(f"the rollup of {day} counts hours in {r.tz}, not {tz}: not used")
                elif day not in raw or r.exact(dims) and day not in others or day not in own:
                    out[day] = r
    except rollups.RollupDirError as exc:
        result.notes.append(f"{exc}; rollups not used")
        return {}
    return out


def run_report(directory: Path, *, since: date, until: date, today: date, zone: ZoneInfo, tz: str,
               by: Sequence[str] = ("day",), event: str | None = None, top: int = 10, use_rollups: bool = True,
               workers: int | None = None, link: Path | None = None, across: Across | None = None) -> ReportResult:
    """The report of [since, until]; ``today`` (the caller's clock, in ``zone``) marks a day still written.
    ``across``: every picked host's lines, from the archive and this host's files (ArchiveError when the bucket
    cannot be read)."""
    by = tuple(by)
    result = ReportResult(since, until, by, event)
    dims = tuple(d for d in DIMENSIONS if d in by or d == "event" and event is not None)
    raw = sources(directory, since, until, link, across, result.notes)
    from_rollup: dict[date, rollups.Rollup] = {}
    if use_rollups and dims in rollups.VIEWS and (across is None or across.picks(across.host_id)):
        from_rollup = _rollup_days(directory, since, until, tz, dims, raw, result, across)
    pruned = sorted(d for d in from_rollup if d not in raw)  # only a rollup is left: --no-rollups cannot help
    result.mixed_days = sorted(d for d in from_rollup if d in raw and d in remote.host_days(raw, across)[1])
    if across is not None:
        result.hosts = remote.hosts_read(raw, across)
    raw = {d: s for d, s in raw.items() if d not in from_rollup or d in result.mixed_days}
    # a day's counts suffice (not its visitors) when no row adds up days: grouped by day, or one day in all
    reduce = ("day" in by or len(raw) == 1 and not from_rollup) and "path" not in by
    tallies = _tally_days(directory, raw, dims, zone, event, reduce, workers or min(2, os.cpu_count() or 1))
    cells: dict[tuple, _Cell] = {}

    def cell(day: date, key: tuple) -> _Cell:
        full = ((day.isoformat(),) if "day" in by else ()) + key
        c = cells.get(full)
        if c is None:
            cells[full] = c = _Cell()
        return c

    for t in tallies:
        for key, part in t.cells[dims].items():
            if reduce:
                cell(t.day, key).parts.append(part)
            else:
                cell(t.day, key).add_clusters(part)
        result.lines += t.lines
        result.test_lines += t.test_lines
        result.unweighted += t.unweighted
        result.add_damage(t.damage)
        for name, n in t.long_lines.items():
            result.long_lines[name] = result.long_lines.get(name, 0) + n
        result.problems.extend(str(p) for p in t.problems)
    folded: list[_Folded] = []
    for day, r in sorted(from_rollup.items()):
        for key, est in r.views[dims].items():
            if event is not None and key[0] != event:
                continue
            cell(day, key).parts.append(Estimate(est.events, est.visitors, est.estimate, est.variance))
        if not r.exact(dims):
            folded.append(_folded_day(r, dims, by, event))
        result.lines += r.lines
        result.test_lines += r.test_lines
        result.unweighted += r.unweighted
        result.add_damage(r.damage)
        result.notes.extend(f"the rollup of {day} was counted from a damaged file: {p}" for p in r.problems)
    result.raw_days = sorted(t.day for t in tallies)
    result.rollup_days = sorted(from_rollup)
    result.notes[:0] = remote.rollup_notes(across, result.hosts or [], pruned, result.mixed_days)
    result.folded_days = [date.fromisoformat(f.day) for f in folded]
    result.empty_days = [d for d in _days(since, until) if d not in raw and d not in from_rollup]
    result.partial_days = [d for d in _days(since, until) if d >= today and d in raw]
    result.rows, result.ranking = _rows(cells, by, dims, top, result.partial_days, folded)
    _notes(result, folded, pruned)
    return result


def _unknown_visitors_hint(pruned: list[date]) -> str:
    """Why visitors are unknown, and what gives them: the raw files (--no-rollups) while they are kept, else
    a count per day."""
    why = "visitors: unknown where daily rollups are summed (a visitor of several days would count once per day)"
    if not pruned:
        return f"{why}; add --no-rollups to count them from the raw files, or group by day"
    return (f"{why}; {len(pruned)} of these days have only their rollup left (raw files pruned), so group by day"
            " (--no-rollups would leave them out)")


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def _rows(cells: dict[tuple, _Cell], by: tuple[str, ...], dims: tuple[str, ...], top: int, partial: list[date],
          folded: list[_Folded]) -> tuple[list[Row], str | None]:
    """Output rows in ``by``'s order of keys, and the ranking's exactness (with path). A filtered-on event that is
    not grouped is dropped from the key; the paths beyond the top ``top`` (by events over the range) fold into
    ``(other)``. A row may count too few (``approximate``) when a folded rollup day does not list its key."""
    names = (("day",) if "day" in by else ()) + dims
    low = _possibly_low(cells, "day" in by, folded)
    ranking = None
    if "path" in by:
        at = names.index("path")
        totals: dict[str, int] = {}
        for key, c in cells.items():
            totals[key[at]] = totals.get(key[at], 0) + c.events()
        ranked = sorted((p for p in totals if p != OTHER), key=lambda p: (-totals[p], p))
        keep = set(ranked[:top])
        ranking = "exact" if _ranking_exact(totals, ranked[:top], ranked[top:], top, folded) else "approximate"
        merged: dict[tuple, _Cell] = {}
        for key, c in cells.items():
            new = key if key[at] in keep else key[:at] + (OTHER,) + key[at + 1:]
            target = merged.setdefault(new, _Cell())
            if c.clusters is not None:
                target.add_clusters(c.clusters)
            target.parts.extend(c.parts)
        cells = merged
    partial_iso = {d.isoformat() for d in partial}
    rows = []
    for key, c in cells.items():
        values = dict(zip(names, key, strict=True))
        keys = {k: values[k] for k in by}
        rows.append(Row(keys, c.finish(), values.get("day") in partial_iso, key in low))
    rows.sort(key=lambda r: (r.keys.get("day", ""), r.keys.get("hour", ""), -r.est.events,
                             r.keys.get("event", ""), r.keys.get("path", "")))
    return rows, ranking


def _possibly_low(cells: dict[tuple, _Cell], by_day: bool, folded: list[_Folded]) -> set[tuple]:
    """The cells whose key a folded rollup day (their own day, when grouped by day) does not list: that day
    counted them in (other)."""
    low = set()
    for key in cells:
        k = key[1:] if by_day else key
        if OTHER in k:
            continue
        if any(k not in f.keys and (not by_day or key[0] == f.day) for f in folded):
            low.add(key)
    return low


def _ranking_exact(totals: dict[str, int], shown: list[str], rest: list[str], top: int,
                   folded: list[_Folded]) -> bool:
    """Whether the top paths are the true top paths with their true counts, although folded rollup days count
    some paths in (other): each path a day does not list may hide at most that day's ``bound`` there, so a shown
    path must hide nothing and no other path (listed or never seen) could reach the smallest shown count."""
    if not folded:
        return True

    def hidden(p: str) -> float:
        return sum(f.bound for f in folded if p not in f.paths)

    if any(hidden(p) for p in shown):
        return False
    floor = min((totals[p] for p in shown), default=0)
    unseen = sum(f.bound for f in folded)
    if unseen and (len(shown) < top or unseen >= floor):
        return False
    return not any((h := hidden(p)) and totals[p] + h >= floor for p in rest)


def _notes(result: ReportResult, folded: list[_Folded], pruned: list[date]) -> None:
    if result.unweighted:
        result.notes.append(f"{result.unweighted} line(s) record no sampling rates: each counted once (weight 1)")
    if result.test_lines:
        result.notes.append(f"{result.test_lines} line(s) of test traffic (metadata.test_run) left out")
    if result.damaged:
        whys = [f"{n} {why}" + (f" ({', '.join(sorted(result.long_lines))})" if why == TOO_LONG else "")
                for why, n in sorted(result.damage.items(), key=lambda item: -item[1])]
        result.notes.append(f"{result.damaged} damaged line(s) left out: {'; '.join(whys)}")
    if any(r.est.visitors is None for r in result.rows) and not result.mixed_days:
        result.notes.append(_unknown_visitors_hint(pruned))
    if result.partial_days:
        result.notes.append(f"partial: {', '.join(d.isoformat() for d in result.partial_days)} is still being "
                            "written")
    if result.empty_days:
        result.notes.append(f"{len(result.empty_days)} day(s) without data files or rollups")
    if folded:
        ks = sorted({f.min_visitors for f in folded})
        result.notes.append(
            f"folded: the rollups of {_span(result.folded_days)} (raw lines gone) count in {OTHER} every event "
            f"and path seen by fewer than {' or '.join(map(str, ks))} visitors that day, and those beyond the "
            f"day's top {TOP}")
    if any(r.approximate for r in result.rows):
        result.notes.append("approximate: rows marked ~ may count too few (on a folded rollup day their event or "
                            f"path was in {OTHER})")
    if result.ranking == "approximate":
        result.notes.append(f"ranking approximate: a path counted in {OTHER} on a folded rollup day could belong "
                            "in the top (raw lines of those days are gone); the shown counts are lower bounds")


def _span(days: list[date]) -> str:
    if len(days) == 1:
        return days[0].isoformat()
    return f"{len(days)} days ({days[0].isoformat()} .. {days[-1].isoformat()})"
