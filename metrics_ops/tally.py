"""Counting one day's stored lines into groups: the raw half of ``report`` and what a rollup is made of.

A day's lines (from :mod:`metrics_ops.reading`) are counted a block at a time and each kept line is added to
every requested grouping: a grouping is a tuple of dimensions among ``event``, ``hour`` (the local hour of
``received_at`` in the report's zone, ``00``..``23``) and ``path`` (``metadata.path``; ``(none)`` when absent).
A cell keeps one cluster per visitor, ``{visitor_id: [sum of weights, stored events]}``, which gives distinct
visitors, the estimate and its variance (:mod:`metrics_ops.estimate`); or, when the caller only needs those
(``estimates``), the cell's :class:`~metrics_ops.estimate.Estimate`.

Two ways to count, one answer: for groupings by event (or none), each block is counted in C
(:mod:`metrics_ops.linecount`, any line shape), and the lines the C reader is not sure of are handed back to
the reference: orjson line by line (:func:`_count_block`), which decides every damaged line and all test traffic
(tests/test_records.py and tests/test_lineshape.py hold the C way to it). Every block of an hour or path grouping
(as many distinct entries as lines: counting them first gained nothing) takes the reference.

Test traffic (lines with ``metadata.test_run``, see :mod:`metrics_ops.testrun`) is counted apart and left out.
A *damaged* line is left out and counted by what is wrong with it (:data:`DAMAGE`): not a JSON object with string
``visitor_id`` and ``event``; rates whose weight exceeds :data:`metrics_ops.estimate.MAX_WEIGHT`; a
``received_at`` whose hour does not exist in the report's zone (``9999-12-31T23`` east of UTC: the calendar ends
first); a line over the reader's bound (:data:`metrics_ops.lines.MAX_LINE`). Whether a line is damaged never
depends on the grouping, so a rollup's views and a report from raw lines agree. A ``received_at`` that is no
time at all has no hour (``--``), like a line without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops.estimate import MIN_INCLUSION, Estimate
from metrics_ops.reading import MAX_LINE_TEXT, Problem, Shard, read_day
from metrics_ops.testrun import MARK

DIMENSIONS = ("event", "hour", "path")
NO_PATH = "(none)"
NO_HOUR = "--"
_NUMBER = (int, float)
# what makes a line damaged (the keys of DayTally.damage)
NOT_AN_EVENT = "not a JSON event"
TOO_RARE = "sampling rates too small to weigh"
NO_SUCH_HOUR = "a received_at with no hour in the time zone"
TOO_LONG = f"longer than {MAX_LINE_TEXT}"
DAMAGE = (NOT_AN_EVENT, TOO_RARE, NO_SUCH_HOUR, TOO_LONG)
#: received_at from here up to before "9999" has an hour in every zone; outside, _Hours decides (a string compare
#: per line where the hour is not needed otherwise)
_SAFE_FROM, _SAFE_UNTIL = "0002", "9999"


@dataclass
class DayTally:
    """The cells of each grouping for one day, and what was counted apart."""

    day: date
    cells: dict[tuple[str, ...], dict[tuple, dict[str, list]]]
    lines: int = 0  # every non-empty line read
    test_lines: int = 0
    unweighted: int = 0  # kept lines without recorded rates (weight 1)
    damage: dict[str, int] = field(default_factory=dict)  # damaged lines left out, by what is wrong (DAMAGE)
    long_lines: dict[str, int] = field(default_factory=dict)  # file -> lines over the reader's bound
    problems: list[Problem] = field(default_factory=list)

    @property
    def damaged(self) -> int:
        return sum(self.damage.values())

    def add_damage(self, why: str, n: int) -> None:
        if n:
            self.damage[why] = self.damage.get(why, 0) + n


class _Hours:
    """The local hour of a UTC ``received_at`` prefix (``2026-11-25T12``), cached: a day has 24 of them.
    ``--`` for what is no time; None for a time with no hour in the zone (the line is damaged)."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.cache: dict[str, str | None] = {}

    def __call__(self, received_at) -> str | None:
        if type(received_at) is not str:
            return NO_HOUR
        key = received_at[:13]
        try:
            return self.cache[key]
        except KeyError:
            pass
        try:
            utc = datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        except ValueError:
            hour = NO_HOUR
        else:
            try:
                hour = f"{utc.astimezone(self.zone).hour:02d}"
            except (OverflowError, ValueError):  # 9999-12-31T23 in Europe/Berlin: past the calendar's end
                hour = None
        self.cache[key] = hour
        return hour


def tally_day(directory: Path, day: date, day_shards: list[Shard], groupings: list[tuple[str, ...]], zone: ZoneInfo,
              event: str | None = None, estimates: bool = False,
              fold: Callable[[tuple], tuple] | None = None) -> DayTally:
    """Count the lines of one day into ``groupings`` (only lines of ``event``, when given): each cell the
    visitor clusters, or with ``estimates`` the cell's :class:`~metrics_ops.estimate.Estimate`. ``fold`` maps
    each line's (event, hour, path) before it is counted (a rollup counts the values beyond its top N as
    ``(other)``, in bounded memory: :func:`metrics_ops.folding.folder`).

    The loop is the cost of a cold report (about 3M lines a month). For groupings by event or none, each block
    is counted in C (:mod:`metrics_ops.linecount`) and the lines it is not sure of are handed back to the
    reference (:func:`_count_block`, orjson line by line); hour and path groupings (about as many distinct
    entries as lines: counting them first gains nothing) take the reference for every line. The cyclic garbage
    collector is paused meanwhile (millions of small live lists made it rescan them again and again: 2x the
    time)."""
    import gc

    tally = DayTally(day, {g: {} for g in groupings})
    hours = _Hours(zone)
    targets = [(tally.cells[g], _key_of(g)) for g in groupings]
    needs_hour = any("hour" in g for g in groupings)
    needs_path = any("path" in g for g in groupings)
    counter = None
    if not (needs_hour or needs_path or fold):
        from metrics_ops.linecount import LineCounter  # only here: a report from rollups never needs it

        counter = LineCounter(event)
    estimated: set[tuple[str, ...]] = set()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for block in read_day(directory, day_shards, tally.problems, tally.long_lines):
            if counter is not None:
                block = counter.count(block)
            if block:
                _count_block(block, tally, targets, event, hours, needs_hour, needs_path, fold)
        tally.add_damage(TOO_LONG, sum(tally.long_lines.values()))
        if counter is not None:
            estimated, too_rare = counter.finish(tally, estimates)
            tally.add_damage(TOO_RARE, too_rare)
    finally:
        if enabled:
            gc.enable()
    for g in groupings:  # a one-dimension key was counted as the bare value
        if len(g) == 1:
            tally.cells[g] = {(k,): v for k, v in tally.cells[g].items()}
        if estimates and g not in estimated:
            tally.cells[g] = {k: Estimate.of_visitors(c) for k, c in tally.cells[g].items()}
    return tally


def _key_of(grouping: tuple[str, ...]):
    """The key of a line in ``grouping`` from (event, hour, path): a bare value for one dimension."""
    at = [DIMENSIONS.index(d) for d in grouping]
    return itemgetter(*at) if at else (lambda values: ())


def _count_block(block: bytes, tally: DayTally, targets, event: str | None, hours: _Hours, needs_hour: bool,
                 needs_path: bool, fold: Callable[[tuple], tuple] | None = None) -> None:
    """The hot loop, in one function on purpose: a call per line would cost more than the counting."""
    import orjson

    loads, bad_json, lines, test_lines, unweighted = orjson.loads, orjson.JSONDecodeError, 0, 0, 0
    not_events = too_rare = no_hour = 0
    marked = f'"{MARK}"'.encode()
    hour = None
    for line in block.split(b"\n"):
        if not line:
            continue
        lines += 1
        try:
            rec = loads(line)
            vid = rec["visitor_id"]
            ev = rec["event"]
            if type(vid) is not str or type(ev) is not str:
                raise TypeError
        except (bad_json, KeyError, TypeError, IndexError):
            not_events += 1
            continue
        meta = None
        if needs_path or marked in line:  # the substring test is C speed; most lines need no metadata
            meta = rec.get("metadata")
            if type(meta) is not dict:
                meta = None
            elif MARK in meta:
                test_lines += 1
                continue
        c = rec.get("client_rate")  # the rule of weight(), inline: a call per line costs 5 % here
        s = rec.get("server_rate")
        if c is None and s is None:
            w, unit = 1.0, True
        else:
            c = 1 if c is None else c
            s = 1 if s is None else s
            if type(c) in _NUMBER and type(s) in _NUMBER and 0 < c <= 1 and 0 < s <= 1:
                p = c * s
                if p < MIN_INCLUSION:  # 5e-324 from an older serve: an infinite weight, or 0 to divide by
                    too_rare += 1
                    continue
                w, unit = 1.0 / p, False
            else:  # rates that cannot be: counted once, like a line without rates
                w, unit = 1.0, True
        if needs_hour:
            hour = hours(rec.get("received_at"))
            if hour is None:
                no_hour += 1
                continue
        else:  # whether a line is damaged never depends on the grouping: its hour must exist all the same
            at = rec.get("received_at")
            if type(at) is str and not _SAFE_FROM <= at < _SAFE_UNTIL and hours(at) is None:
                no_hour += 1
                continue
        if event is not None and ev != event:
            continue
        unweighted += unit
        path = meta.get("path", NO_PATH) if meta is not None else NO_PATH
        if type(path) is not str:
            path = NO_PATH
        values = (ev, hour, path)
        if fold is not None:
            values = fold(values)
        for cells, key_of in targets:
            key = key_of(values)
            cell = cells.get(key)
            if cell is None:
                cells[key] = cell = {}
            acc = cell.get(vid)
            if acc is None:
                cell[vid] = [w, 1]
            else:
                acc[0] += w
                acc[1] += 1
    tally.lines += lines
    tally.test_lines += test_lines
    tally.unweighted += unweighted
    tally.add_damage(NOT_AN_EVENT, not_events)
    tally.add_damage(TOO_RARE, too_rare)
    tally.add_damage(NO_SUCH_HOUR, no_hour)
