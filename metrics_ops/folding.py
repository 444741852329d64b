"""What a rollup keeps of a day's event names and paths, and what it folds into ``(other)``.

A rollup holds nothing that singles anyone out and stays small whatever the traffic (:mod:`metrics_ops.rollups`):

- **K visitors**: an event name or a path seen by fewer than ``min_visitors`` distinct visitors that day (the
  setting ``rollup_min_visitors``, default 5) is counted in ``(other)``, in every view that shows it. The
  labels ``(none)`` (no path) and the hours are no one's text and are never folded.
- **top N**: of each dimension only the :data:`TOP` values with most stored events are kept, and of the
  event-and-path view the :data:`TOP_PAIRS` cells with most events (the rest of an event's paths become its
  ``(other)`` row); a value longer than :data:`MAX_VALUE_BYTES` in the rollup's JSON (longer than serve
  accepts) is never kept. With 101 values a dimension and about 3,900 rows, a rollup stays under 1 MB.

Bounded memory: a first pass over the day (:func:`rank`) counts the stored events of each value (a Counter of
names, no visitors), and the day is then counted (:func:`metrics_ops.tally.tally_day`) with the values beyond the
top N already mapped to ``(other)`` (:func:`folder`); the K rule needs each kept value's distinct visitors, which
that count gives. Folding a cell merges it into its ``(other)`` cell: visitor clusters merge exactly (a visitor of
two folded paths is one visitor of ``(other)``); counts already summed (:func:`refold`, an old rollup without raw
data) add, and their visitors become unknown.

Each view records how many events the largest single key folded away had (its *residual*): 0 means the view is
exact (the raw lines give the same cells); otherwise it bounds what any value missing from the view can hide in
``(other)``, which tells a ranking over several days whether it is exact (:mod:`metrics_ops.report`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from metrics_ops.estimate import Estimate, merge_clusters
from metrics_ops.reading import Shard, read_day
from metrics_ops.tally import NO_PATH
from metrics_ops.testrun import MARK

OTHER = "(other)"
TOP = 100  # values kept per dimension (event, path)
TOP_PAIRS = 1000  # event-and-path cells kept
MAX_VALUE_BYTES = 1024  # serve's longest string (events.MAX_STRING): a longer value did not come from serve
FOLDED = ("event", "path")  # the dimensions that carry text someone chose
_NEVER_RARE = frozenset({NO_PATH, OTHER})


def rank(directory: Path, day_shards: list[Shard]) -> dict[str, tuple[frozenset[str], int]]:
    """Pass 1: per dimension of :data:`FOLDED`, the :data:`TOP` values with most stored events (test traffic
    left out; ties by name) and the most events of one value left out (0: none left out)."""
    import orjson

    counts = {"event": Counter(), "path": Counter()}
    marked = f'"{MARK}"'.encode()
    for block in read_day(directory, day_shards, []):
        events, paths = [], []
        for line in block.split(b"\n"):
            if not line:
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(rec) is not dict or type(ev := rec.get("event")) is not str:
                continue
            meta = rec.get("metadata")
            if type(meta) is not dict:
                meta = None
            elif marked in line and MARK in meta:
                continue
            path = meta.get("path", NO_PATH) if meta is not None else NO_PATH
            events.append(ev)
            paths.append(path if type(path) is str else NO_PATH)
        counts["event"].update(events)  # in C
        counts["path"].update(paths)
    out = {}
    for dim, counter in counts.items():
        fits = [(n, v) for v, n in counter.items() if _fits(v)]
        fits.sort(key=lambda nv: (-nv[0], nv[1]))
        keep = frozenset(v for _, v in fits[:TOP])
        out[dim] = (keep, max((n for v, n in counter.items() if v not in keep), default=0))
        counter.clear()
    return out


def _fits(value: str) -> bool:
    """Whether ``value`` takes at most :data:`MAX_VALUE_BYTES` in the rollup's JSON (escapes included)."""
    if len(value) * 6 <= MAX_VALUE_BYTES:  # no character takes more than 6 bytes there
        return True
    import orjson

    try:
        return len(orjson.dumps(value)) - 2 <= MAX_VALUE_BYTES
    except TypeError:  # a lone surrogate: not UTF-8, never kept
        return False


def folder(keep: dict[str, tuple[frozenset[str], int]]) -> Callable[[tuple], tuple]:
    """For :func:`metrics_ops.tally.tally_day`: (event, hour, path) with the values not kept as ``(other)``."""
    events, paths = keep["event"][0], keep["path"][0]

    def fold(values: tuple) -> tuple:
        ev, hour, path = values
        if ev in events and path in paths:
            return values
        return (ev if ev in events else OTHER, hour, path if path in paths else OTHER)

    return fold


def rare_values(cells: dict[tuple, object], visitors: Callable[[object], int | None], min_visitors: int
                ) -> frozenset[str]:
    """The values of a one-dimension view seen by fewer than ``min_visitors`` visitors (unknown: rare too)."""
    return frozenset(k[0] for k, c in cells.items()
                     if k[0] not in _NEVER_RARE and ((n := visitors(c)) is None or n < min_visitors))


def fold_view(view: tuple[str, ...], cells: dict[tuple, object], rare: dict[str, frozenset[str]],
              events: Callable[[object], int], merge: Callable[[object, object], object]
              ) -> tuple[dict[tuple, object], int]:
    """``cells`` with every rare value of a dimension in ``view`` as ``(other)``, and with at most
    :data:`TOP_PAIRS` event-and-path cells; (the cells, the most events of one key folded away)."""
    at = [(i, rare[d]) for i, d in enumerate(view) if d in rare and rare[d]]
    residual = 0
    if at:
        out: dict[tuple, object] = {}
        for key, cell in cells.items():
            new = key
            for i, values in at:
                if new[i] in values:
                    new = new[:i] + (OTHER,) + new[i + 1:]
            if new is not key:
                residual = max(residual, events(cell))
            out[new] = merge(out[new], cell) if new in out else cell
        cells = out
    if view == ("event", "path") and len(cells) > TOP_PAIRS:
        ranked = sorted((k for k in cells if k[1] != OTHER), key=lambda k: (-events(cells[k]), k))
        drop = ranked[TOP_PAIRS:]
        for key in drop:
            cell = cells.pop(key)
            residual = max(residual, events(cell))
            new = (key[0], OTHER)
            cells[new] = merge(cells[new], cell) if new in cells else cell
    return cells, residual


def fold_clusters(view: tuple[str, ...], cells: dict[tuple, dict[str, list]], rare: dict[str, frozenset[str]]
                  ) -> tuple[dict[tuple, dict[str, list]], int]:
    """:func:`fold_view` on visitor clusters (exact: a visitor of two folded keys is one visitor)."""
    def merge(into, part):
        merge_clusters(into, part)
        return into

    return fold_view(view, cells, rare, lambda c: sum(n for _, n in c.values()), merge)


def fold_estimates(view: tuple[str, ...], cells: dict[tuple, Estimate], rare: dict[str, frozenset[str]]
                   ) -> tuple[dict[tuple, Estimate], int]:
    """:func:`fold_view` on counts already summed: a merged cell's visitors are unknown."""
    def merge(into: Estimate, part: Estimate) -> Estimate:
        total = Estimate(into.events, into.visitors, into.estimate, into.variance)
        total.add(part, disjoint=False)
        return total

    return fold_view(view, cells, rare, lambda e: e.events, merge)


def residual_of(view: Iterable[str], beyond_top: dict[str, int]) -> int:
    """What the top-N cut folded away in ``view``: the most events of one value left out of its dimensions."""
    return max((beyond_top.get(d, 0) for d in view), default=0)
