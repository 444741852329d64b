"""Counting one day's stored lines into groups: the raw half of ``report`` and what a rollup is made of.

A day's lines (from :mod:`metrics_ops.reading`) are parsed with orjson a block at a time and each kept line is
added to every requested grouping: a grouping is a tuple of dimensions among ``event``, ``hour`` (the local hour
of ``received_at`` in the report's zone, ``00``..``23``) and ``path`` (``metadata.path``; ``(none)`` when
absent). A cell keeps one cluster per visitor, ``{visitor_id: [sum of weights, stored events]}``, which gives
distinct visitors, the estimate and its variance (:mod:`metrics_ops.estimate`).

Test traffic (lines with ``metadata.test_run``, see :mod:`metrics_ops.testrun`) is counted apart and left out.
A line that is not a JSON object with string ``visitor_id`` and ``event`` is counted as damaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops.reading import Problem, Shard, read_day
from metrics_ops.testrun import MARK

DIMENSIONS = ("event", "hour", "path")
NO_PATH = "(none)"
NO_HOUR = "--"
_NUMBER = (int, float)


@dataclass
class DayTally:
    """The cells of each grouping for one day, and what was counted apart."""

    day: date
    cells: dict[tuple[str, ...], dict[tuple, dict[str, list]]]
    lines: int = 0  # every non-empty line read
    test_lines: int = 0
    unweighted: int = 0  # kept lines without recorded rates (weight 1)
    damaged: int = 0
    problems: list[Problem] = field(default_factory=list)


class _Hours:
    """The local hour of a UTC ``received_at`` prefix (``2026-11-25T12``), cached: a day has 24 of them."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.cache: dict[str, str] = {}

    def __call__(self, received_at) -> str:
        if type(received_at) is not str:
            return NO_HOUR
        key = received_at[:13]
        hour = self.cache.get(key)
        if hour is None:
            try:
                utc = datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
                hour = f"{utc.astimezone(self.zone).hour:02d}"
            except ValueError:
                hour = NO_HOUR
            self.cache[key] = hour
        return hour


def tally_day(directory: Path, day: date, day_shards: list[Shard], groupings: list[tuple[str, ...]], zone: ZoneInfo,
              event: str | None = None) -> DayTally:
    """Count the lines of one day into ``groupings`` (only lines of ``event``, when given).

    The loop is the cost of a cold report (about 3M lines a month): one orjson call per line, no function call
    per line on the common path, and the cyclic garbage collector paused (millions of small live lists made it
    rescan them again and again: 2x the time)."""
    import gc

    tally = DayTally(day, {g: {} for g in groupings})
    hours = _Hours(zone)
    targets = [(tally.cells[g], _key_of(g)) for g in groupings]
    needs_hour = any("hour" in g for g in groupings)
    needs_path = any("path" in g for g in groupings)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for block in read_day(directory, day_shards, tally.problems):
            _count_block(block, tally, targets, event, hours if needs_hour else None, needs_path)
    finally:
        if enabled:
            gc.enable()
    for g in groupings:  # a one-dimension key was counted as the bare value
        if len(g) == 1:
            tally.cells[g] = {(k,): v for k, v in tally.cells[g].items()}
    return tally


def _key_of(grouping: tuple[str, ...]):
    """The key of a line in ``grouping`` from (event, hour, path): a bare value for one dimension."""
    from operator import itemgetter

    at = [DIMENSIONS.index(d) for d in grouping]
    return itemgetter(*at) if at else (lambda values: ())


def _count_block(block: bytes, tally: DayTally, targets, event: str | None, hours: _Hours | None,
                 needs_path: bool) -> None:
    """The hot loop, in one function on purpose: a call per line would cost more than the counting."""
    import orjson

    loads, bad_json, lines, test_lines, unweighted, damaged = orjson.loads, orjson.JSONDecodeError, 0, 0, 0, 0
    marked = f'"{MARK}"'.encode()
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
            damaged += 1
            continue
        meta = None
        if needs_path or marked in line:  # the substring test is C speed; most lines need no metadata
            meta = rec.get("metadata")
            if type(meta) is not dict:
                meta = None
            elif MARK in meta:
                test_lines += 1
                continue
        if event is not None and ev != event:
            continue
        c = rec.get("client_rate")
        s = rec.get("server_rate")
        if c is None and s is None:
            w = 1.0
            unweighted += 1
        else:
            c = 1 if c is None else c
            s = 1 if s is None else s
            if type(c) in _NUMBER and type(s) in _NUMBER and 0 < c <= 1 and 0 < s <= 1:
                w = 1.0 / (c * s)
            else:  # rates that cannot be: counted once, like a line without rates
                w = 1.0
                unweighted += 1
        path = meta.get("path", NO_PATH) if meta is not None else NO_PATH
        if type(path) is not str:
            path = NO_PATH
        values = (ev, hours(rec.get("received_at")) if hours is not None else None, path)
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
    tally.damaged += damaged
