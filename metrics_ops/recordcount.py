"""Counting the records msgspec decoded (:func:`metrics_ops.records.runs`) into a day's tally, with the rules of the
reference (:func:`metrics_ops.tally._count_block`), for groupings by event or none.

:mod:`metrics_ops.tally` hands this counter every block that is not of serve's exact shape (those take
:mod:`metrics_ops.lineshape`'s quicker shortcut) and whose lines decode; the lines that do not decode are read the
reference way, which decides what is damaged.
"""

from __future__ import annotations

from collections import Counter
from itertools import compress
from operator import attrgetter, not_

from metrics_ops.estimate import Estimate, add_spread, add_to_cluster, weight


class DecodedCounter:
    """Counting decoded records (:func:`metrics_ops.records.runs`) with the rules of the reference
    (:func:`metrics_ops.tally._count_block`), for groupings by event or none. One Counter (in C) counts the
    day's records themselves (visitor, event and rates: hashable structs); what rates are worth is decided once
    per distinct pair (:func:`weight`), and :meth:`finish` turns the distinct records into the cells. Test traffic
    never decodes (its line is read the reference way); a run whose received_at may have no hour in the zone is
    counted by the tally record by record (:func:`metrics_ops.tally._count_edges`) into :attr:`counts`."""

    def __init__(self, event: str | None):
        self.event = event
        self.counts: Counter = Counter()

    def count(self, records: list) -> None:
        self.counts.update(records)  # in C

    def finish(self, tally, estimates: bool) -> tuple[set[tuple[str, ...]], int]:
        """Turn the day's counts into the cells of ``tally`` (a :class:`metrics_ops.tally.DayTally`): visitor
        clusters, or (``estimates``, grouping by event, when no line counted another way is in the cells yet) a
        cell's :class:`Estimate` straight from the counts. Runs before the other counts of the day are folded in.
        The groupings whose cells hold Estimates, and the lines whose rates are too small to weigh (damaged)."""
        counts, self.counts = self.counts, Counter()
        classes: dict[tuple[float, bool], int] = {}
        kind_of = {}  # (client_rate, server_rate) -> class (index into classes), or -1: too small to weigh
        for rates in set(map(_RATES, counts)):
            found = weight(*rates)
            kind_of[rates] = -1 if found is None else classes.setdefault(found, len(classes))
        too_rare = 0
        if -1 in kind_of.values():
            rare = list(compress(counts, map((-1).__eq__, map(kind_of.__getitem__, map(_RATES, counts)))))
            too_rare = sum(map(counts.pop, rare))
        if self.event is not None:
            for record in list(compress(counts, map(self.event.__ne__, map(_EVENT, counts)))):
                del counts[record]
        weights, units = [1.0] * len(classes), set()
        for (w, unit), kind in classes.items():
            weights[kind] = w
            if unit:
                units.add(kind)
        kinds = list(map(kind_of.__getitem__, map(_RATES, counts)))
        if units:
            tally.unweighted += sum(compress(counts.values(), map(units.__contains__, kinds)))
        done = set()
        for grouping, cells in tally.cells.items():
            if grouping == ("event",) and estimates and not cells:
                _estimate_records(counts, kinds, cells, weights)
                done.add(grouping)
            else:
                _fold_records(counts, kinds, cells, bool(grouping), weights)
        return done, too_rare


_RATES = attrgetter("client_rate", "server_rate")
_VISITOR_EVENT = attrgetter("visitor_id", "event")
_EVENT = attrgetter("event")


def _fold_records(counts: Counter, kinds: list[int], cells: dict, by_event: bool, weights: list[float]) -> None:
    """Add counted records (of class ``kinds``) to the visitor clusters of ``cells``."""
    for record, n, kind in zip(counts, counts.values(), kinds, strict=True):
        key = record.event if by_event else ()
        cell = cells.get(key)
        if cell is None:
            cells[key] = cell = {}
        add_to_cluster(cell, record.visitor_id, n * weights[kind], n)


def _estimate_records(counts: Counter, kinds: list[int], cells: dict, weights: list[float]) -> None:
    """Each event's Estimate from counted records of class ``kinds``, by Counters (in C) instead of a loop over
    visitors: when a visitor has one record for an event (one pair of rates), its cluster is z = n w, so the
    event's visitors, events, estimate and variance (:meth:`Estimate.of_visitors`) are sums over (weight, n) of
    how many visitors stored n events at weight w. The visitors with two records or more for an event (two pairs
    of rates: lines of several shapes) are clustered one by one, and their part added (no visitor is in both)."""
    pairs = list(map(_VISITOR_EVENT, counts))
    per_pair = Counter(pairs)
    parts: dict[str, Estimate] = {}
    records, ns = counts, counts.values()
    if len(per_pair) != len(pairs):
        twice = {pair for pair, m in per_pair.items() if m > 1}
        shared = list(map(twice.__contains__, pairs))
        clusters: dict[str, dict] = {}
        for record, n, kind in zip(compress(counts, shared), compress(ns, shared), compress(kinds, shared),
                                   strict=True):
            add_to_cluster(clusters.setdefault(record.event, {}), record.visitor_id, n * weights[kind], n)
        parts = {ev: Estimate.of_visitors(cluster) for ev, cluster in clusters.items()}
        alone = list(map(not_, shared))
        records, ns, kinds = list(compress(counts, alone)), list(compress(ns, alone)), list(compress(kinds, alone))
    spread = Counter(zip(map(_EVENT, records), kinds, ns, strict=True))
    add_spread(parts, spread, weights)
    cells.update(parts)
