"""Counting a day's stored lines at C speed (:mod:`metrics_ops._linescan`, built from ``_linescan.c``) into a
day's tally, with the rules of the reference (:func:`metrics_ops.tally._count_block`), for groupings by event or
none: the cold report's hot loop, on any line shape (serve's, the ones from before rates were stored, the seed
system's, keys in any order with other fields).

The C counter reads each line with a strict subset of JSON and counts it by (visitor_id, event) and pair of
rates, or hands it back whole when it is not sure orjson reads it the same way: an escape in a key of the line or
of its metadata, in ``visitor_id``, ``event`` or ``received_at`` (escapes elsewhere are checked, not decoded: an
unknown escape or a lone surrogate is handed back); invalid UTF-8 (surrogates written raw included), a control
character, a number of more than 18 digits or with an exponent of three digits or more, nesting deeper than 64, a
line that is not one object, a ``visitor_id`` or ``event`` that is no string, a rate that is not a number or null,
a ``metadata`` object with a top-level ``test_run`` key (test traffic), a ``received_at`` string outside ["0002",
"9999") (it may have no hour in the zone). Duplicate keys: the last one counts, as in orjson; rates are read by
``strtod``, correctly rounded as orjson reads them.
The lines handed back are read the reference way, which decides every damaged line and all test traffic.

What a pair of rates is worth is decided once per distinct pair (:func:`metrics_ops.estimate.weight`);
:meth:`LineCounter.finish` turns the distinct (visitor, event) counts into the cells: an event's
:class:`~metrics_ops.estimate.Estimate` straight from how many visitors sent n events at one weight
(:func:`metrics_ops.estimate.spread_estimates`), or visitor clusters when the caller needs them.
tests/test_records.py holds this counter to the reference over files of odd lines and generated ones.
"""

from __future__ import annotations

from metrics_ops._linescan import Counter
from metrics_ops.estimate import add_to_cluster, repeated, spread_estimates, weight

__all__ = ["LineCounter"]


class LineCounter:
    """One day's lines counted in C (only lines of ``event``, when given); :meth:`count` returns the lines of a
    block the caller must read the reference way."""

    def __init__(self, event: str | None):
        # surrogatepass: an --event from undecodable argv bytes matches no line (the C reader takes valid UTF-8 only)
        self.counter = Counter(None if event is None else event.encode("utf-8", "surrogatepass"))

    def count(self, block: bytes) -> bytes:
        """Count a block of whole lines; the lines handed back (each ending with a newline), or b""."""
        return self.counter.scan(block)

    def finish(self, tally, estimates: bool) -> tuple[set[tuple[str, ...]], int]:
        """Add the day's counts to ``tally`` (a :class:`metrics_ops.tally.DayTally`): its lines, unweighted lines
        and cells: visitor clusters, or (``estimates``, when no line counted another way is in the cells yet) a
        cell's :class:`Estimate`. The groupings whose cells hold Estimates, and the lines whose
        rates are too small to weigh (damaged)."""
        classes: dict[tuple[float, bool], int] = {}
        kinds, too_rare = [], 0
        for c, s, counted, other in self.counter.pairs():
            found = weight(c, s)
            if found is None:
                kinds.append(-1)
                too_rare += counted + other
                continue
            kinds.append(classes.setdefault(found, len(classes)))
            tally.unweighted += counted if found[1] else 0
        weights = [w for w, _ in classes]
        tally.lines += self.counter.lines
        done, memo = set(), {}
        for grouping, cells in tally.cells.items():
            if estimates and not cells:
                spread, shared = self.counter.spread(kinds, bool(grouping))  # keys: the event, or ()
                clusters: dict = {}
                for vid, key, kind, n in shared:  # a visitor with two weights in a cell: clustered
                    add_to_cluster(clusters.setdefault(key, {}), vid, repeated(weights[kind], n, memo), n)
                cells.update(spread_estimates(clusters, spread, weights))
                done.add(grouping)
            else:
                by_event = bool(grouping)
                for vid, ev, kind, n in self.counter.entries(kinds):
                    key = ev if by_event else ()
                    cell = cells.get(key)
                    if cell is None:
                        cells[key] = cell = {}
                    add_to_cluster(cell, vid, repeated(weights[kind], n, memo), n)
        return done, too_rare
