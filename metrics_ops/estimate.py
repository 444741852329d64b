"""How many events really happened, from the sampled ones: a Horvitz-Thompson estimate with a 95 % interval.

Each stored line carries the rates it was sampled at: ``client_rate`` c (what the browser declared) and
``server_rate`` s (serve's rate for that event name then). Its inclusion probability is pi = c x s and its
weight w = 1 / pi; a line without the fields weighs 1 (it was stored before rates were recorded) and is counted
as *unweighted* (so is a line whose rates are not numbers in (0, 1]); a line whose rates are numbers in (0, 1]
but whose weight would exceed :data:`MAX_WEIGHT` (``5e-324`` from an older serve: an infinite weight, or a
product that is 0) is *damaged*, left out and counted, so no sum is ever ``inf`` and no rollup holds
``Infinity``. :mod:`metrics_ops.tally` applies this rule line by line. The estimate of a group is the sum of its
weights.

The sampled units are visitors, not events: in ``visitor`` mode a visitor is kept or dropped whole, so the events
of one visitor are not independent. The variance treats each visitor of a group as one cluster with total
z = sum of its weights and n stored events, kept with probability pi = n / z (the mean inclusion probability of its
lines). The Horvitz-Thompson variance estimate of a sum of Poisson-sampled clusters is

    V = sum over clusters of (1 - pi) / pi^2 x n^2 = sum over visitors of z (z - n)

which is 0 when nothing was sampled away (w = 1). In ``random`` mode (events kept one by one) the same formula
over-covers a little (a visitor's events are counted as if kept together), so the interval is conservative there.
The interval is estimate +- 1.96 sqrt(V), never below the events actually stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metrics_ops.events import MAX_WEIGHT, MIN_RATE

__all__ = ["MAX_WEIGHT", "MIN_INCLUSION", "Estimate", "Z95", "add_to_cluster", "merge_clusters", "repeated",
           "spread_estimates", "weight"]

Z95 = 1.959964
#: the largest weight a stored line may carry, 1 / (client_rate x server_rate), from serve's smallest accepted
#: rate (:data:`metrics_ops.events.MIN_RATE`, one owner). Any smaller product is a damaged line (an older serve
#: stored such rates). Sums of weights, and their variance (weights squared), stay finite for any number of lines
#: a disk can hold.
MIN_INCLUSION = MIN_RATE * MIN_RATE  # the smallest client_rate x server_rate a reader weighs (10^-12)


@dataclass(slots=True)
class Estimate:
    """A group's counts: stored events, distinct visitors (None: cannot be known), the weighted estimate and
    the variance of that estimate."""

    events: int = 0
    visitors: int | None = 0
    estimate: float = 0.0
    variance: float = 0.0

    @classmethod
    def of_visitors(cls, clusters: dict[str, list]) -> Estimate:
        """From ``{visitor: [sum of weights, stored events]}``: the sums exact, rounded once (:func:`math.fsum`),
        so the same visitors give the same figures in whatever order or grouping they are added
        (:func:`spread_estimates`)."""
        values = clusters.values()
        events = sum(n for _, n in values)
        est = math.fsum(z for z, _ in values)
        var = math.fsum(z * (z - n) for z, n in values)
        return cls(events, len(clusters), est, max(0.0, var))

    def add(self, other: Estimate, *, disjoint: bool) -> None:
        """Add another part (another day, another folded path). Visitors add only when no visitor can be in both
        parts (``disjoint``); otherwise the total is unknown (None)."""
        self.events += other.events
        self.estimate += other.estimate
        self.variance += other.variance
        if not disjoint or self.visitors is None or other.visitors is None:
            self.visitors = None
        else:
            self.visitors += other.visitors

    @property
    def low(self) -> float:
        return max(float(self.events), self.estimate - Z95 * math.sqrt(self.variance))

    @property
    def high(self) -> float:
        return self.estimate + Z95 * math.sqrt(self.variance)

    def as_list(self) -> list:
        return [self.events, self.visitors, round(self.estimate, 3), round(self.variance, 3)]

    @classmethod
    def from_list(cls, values: list) -> Estimate:
        events, visitors, est, var = values
        return cls(int(events), None if visitors is None else int(visitors), float(est), float(var))


def weight(c, s) -> tuple[float, bool] | None:
    """A line's weight from its recorded rates (None: not recorded), and whether it counts as *unweighted*:
    1 / (c x s) for numbers in (0, 1] (a missing one is 1); weight 1 without rates or with rates that cannot be.
    None (a damaged line) when c x s is under :data:`MIN_INCLUSION`. The one rule of every reader
    (:mod:`metrics_ops.tally` inlines it in its loop)."""
    if c is None and s is None:
        return 1.0, True
    c = 1 if c is None else c
    s = 1 if s is None else s
    if type(c) in (int, float) and type(s) in (int, float) and 0 < c <= 1 and 0 < s <= 1:
        p = c * s
        return (1.0 / p, False) if p >= MIN_INCLUSION else None
    return 1.0, True


def add_to_cluster(clusters: dict[str, list], vid: str, z: float, n: int) -> None:
    """Add ``n`` events of summed weight ``z`` to visitor ``vid``'s cluster ``[z, n]``."""
    acc = clusters.get(vid)
    if acc is None:
        clusters[vid] = [z, n]
    else:
        acc[0] += z
        acc[1] += n


def merge_clusters(into: dict[str, list], part: dict[str, list]) -> None:
    """Add ``part``'s visitor clusters to ``into`` (the same visitor in both: one cluster)."""
    for vid, (z, n) in part.items():
        add_to_cluster(into, vid, z, n)


def repeated(w: float, n: int, memo: dict | None = None) -> float:
    """The weights of ``n`` lines of weight ``w`` summed as a reader adds a visitor's lines, one by one
    (``w + w + ...``: not always ``n * w`` in floating point), so that counting the lines first gives the same
    cluster as the line-by-line reference. ``memo`` caches it by (w, n)."""
    if memo is not None and (found := memo.get((w, n))) is not None:
        return found
    z = w
    for _ in range(n - 1):
        z += w
    if memo is not None:
        memo[w, n] = z
    return z


def _times(x: float, m: int) -> list[float]:
    """``m`` copies of ``x`` as a few exact terms (``x * 2^k`` for each bit k of m), for :func:`math.fsum`."""
    terms, k = [], 0
    while m:
        if m & 1:
            terms.append(math.ldexp(x, k))
        m >>= 1
        k += 1
    return terms


def spread_estimates(clusters: dict, spread, weights) -> dict:
    """Each key's :class:`Estimate` from visitor ``clusters`` (key -> {visitor: [z, n]}) and a day's visitors
    grouped as ``spread``: (key, weight kind, n) -> m, m visitors who each sent n lines at weight
    ``weights[kind]``. The sums are exact and rounded once, so the figures equal :meth:`Estimate.of_visitors`
    over the same visitors one by one (the reference), whatever the grouping."""
    parts: dict = {}
    for key, cluster in clusters.items():
        values = cluster.values()
        parts[key] = [sum(n for _, n in values), len(cluster), [z for z, _ in values],
                      [z * (z - n) for z, n in values]]
    memo: dict = {}
    for (key, kind, n), m in spread.items():
        z = repeated(weights[kind], n, memo)  # m visitors, each with n lines at this weight
        part = parts.get(key)
        if part is None:
            parts[key] = part = [0, 0, [], []]
        part[0] += n * m
        part[1] += m
        part[2] += _times(z, m)
        part[3] += _times(z * (z - n), m)
    return {key: Estimate(events, visitors, math.fsum(est), max(0.0, math.fsum(var)))
            for key, (events, visitors, est, var) in parts.items()}
