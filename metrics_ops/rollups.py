"""Daily rollups: a complete day's counts, kept for ``rollup_retention`` days after its raw files are pruned.

A rollup is ``DIR/rollups/rollup-YYYY-MM-DD.json`` (a subdirectory: the data file grammar, gzip and prune never
see it). It holds, for the day in the zone it was written with, one row per cell of each *view*: the whole day,
per event, per local hour, per path (the day's top :data:`TOP_PATHS` paths, the rest as ``other``), per event
and hour, per event and path. A row is the key, stored events, distinct visitors, the weighted estimate and its
variance (:mod:`metrics_ops.estimate`). No visitor id, no metadata but the grouped path: nothing that
identifies anyone, so ``forget`` never needs to touch a rollup.

The maintenance pass writes the rollup of every day before today that has data files and no rollup yet (once:
a day is complete when the pass's today is later), crash-safely (temp file, fsync, rename; see
:func:`metrics_ops.archive.replace_atomically`), and deletes rollups ``rollup_retention`` days old.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops.archive import replace_atomically
from metrics_ops.estimate import Estimate, merge_clusters
from metrics_ops.layout import ROLLUP_DIR, fsync_dir
from metrics_ops.reading import shards
from metrics_ops.tally import NOT_AN_EVENT, DayTally, tally_day

FORMAT = 1
TOP_PATHS = 100
OTHER = "other"
#: the groupings a rollup keeps (dimensions in tally order); () is the whole day
VIEWS: tuple[tuple[str, ...], ...] = ((), ("event",), ("hour",), ("path",), ("event", "hour"), ("event", "path"))
_NAME = re.compile(r"^rollup-(\d{4}-\d{2}-\d{2})\.json$")
TEMP_SUFFIX = ".tmp"


def rollup_dir(directory: Path) -> Path:
    return Path(directory) / ROLLUP_DIR


def rollup_name(day: date) -> str:
    return f"rollup-{day.isoformat()}.json"


def day_of_rollup(name: str) -> date | None:
    m = _NAME.match(name)
    if not m:
        return None
    try:
        return date.fromisoformat(m[1])
    except ValueError:
        return None


def existing(directory: Path) -> dict[date, str]:
    """The rollups on disk by day (temp files of a killed write and other names are not rollups)."""
    try:
        names = os.listdir(rollup_dir(directory))
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        day = day_of_rollup(name)
        if day is not None:
            out[day] = name
    return out


def plan(directory: Path, data_days: set[date], today: date, retention: int) -> tuple[list[str], list[str]]:
    """(rollups due, rollups old enough to delete), as names in :func:`rollup_dir`. A day is due once it is over
    (before ``today``), still has data files and has no rollup; ``retention`` counts days like prune's."""
    have = existing(directory)
    due = sorted(d for d in data_days if d < today and d not in have and (today - d).days < retention)
    return [rollup_name(d) for d in due], sorted(name for d, name in have.items() if (today - d).days >= retention)


def _day_of_name(name: str) -> date:
    day = day_of_rollup(name)
    if day is None:
        raise ValueError(f"{name} is not a rollup")
    return day


def fold_paths(cells: dict[tuple, dict[str, list]], position: int, top: int) -> dict[tuple, dict[str, list]]:
    """Keep the ``top`` paths with most events (at ``position`` in the key); the rest become ``other``, their
    visitor clusters merged (a visitor of several folded paths is one visitor of ``other``)."""
    totals: dict[str, int] = {}
    for key, clusters in cells.items():
        totals[key[position]] = totals.get(key[position], 0) + sum(n for _, n in clusters.values())
    keep = set(sorted(totals, key=lambda p: (-totals[p], p))[:top])
    if len(keep) == len(totals):
        return cells
    out: dict[tuple, dict[str, list]] = {}
    for key, clusters in cells.items():
        if key[position] in keep:
            out[key] = clusters
        else:
            merge_clusters(out.setdefault(key[:position] + (OTHER,) + key[position + 1:], {}), clusters)
    return out


@dataclass
class Rollup:
    day: date
    tz: str
    views: dict[tuple[str, ...], dict[tuple, Estimate]]
    lines: int = 0
    test_lines: int = 0
    unweighted: int = 0
    damaged: int = 0
    problems: list[str] = field(default_factory=list)
    damage: dict[str, int] = field(default_factory=dict)  # the damaged lines by what is wrong (tally.DAMAGE)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "day": self.day.isoformat(), "tz": self.tz,
            "lines": self.lines, "test_lines": self.test_lines, "unweighted": self.unweighted,
            "damaged": self.damaged, "damage": self.damage, "problems": self.problems,
            "views": {",".join(v): [[*key, *est.as_list()] for key, est in sorted(cells.items())]
                      for v, cells in self.views.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict, only: tuple[str, ...] | None = None) -> Rollup:
        """The rollup of a document; with ``only``, just that view (a report needs one: 25x less work)."""
        views = {}
        for name, rows in doc["views"].items():
            dims = tuple(name.split(",")) if name else ()
            if only is None or dims == only:
                views[dims] = {tuple(row[:len(dims)]): Estimate.from_list(row[len(dims):]) for row in rows}
        return cls(date.fromisoformat(doc["day"]), doc["tz"], views, doc.get("lines", 0), doc.get("test_lines", 0),
                   doc.get("unweighted", 0), doc.get("damaged", 0), doc.get("problems", []),
                   # a rollup of an earlier version counted only lines that are not JSON events as damaged
                   doc.get("damage") or ({NOT_AN_EVENT: doc["damaged"]} if doc.get("damaged") else {}))


def from_tally(tally: DayTally, tz: str) -> Rollup:
    """A rollup from a day's tally over :data:`VIEWS`."""
    views = {}
    for view in VIEWS:
        cells = tally.cells[view]
        if "path" in view:
            cells = fold_paths(cells, view.index("path"), TOP_PATHS)
        views[view] = {key: Estimate.of_visitors(clusters) for key, clusters in cells.items()}
    return Rollup(tally.day, tz, views, tally.lines, tally.test_lines, tally.unweighted, tally.damaged,
                  [str(p) for p in tally.problems], dict(tally.damage))


def write(directory: Path, name: str, zone: ZoneInfo) -> int:
    """Count the day of the rollup ``name`` (``rollup-DAY.json`` in :func:`rollup_dir`) from its data files and
    write the rollup crash-safely; return its size."""
    day = _day_of_name(name)
    day_shards = shards(directory, day, day).get(day, [])
    rollup = from_tally(tally_day(directory, day, day_shards, list(VIEWS), zone), zone.key)
    doc = rollup.to_dict()
    doc["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    body = json.dumps(doc, separators=(",", ":")).encode()
    target = rollup_dir(directory)
    if not target.is_dir():
        target.mkdir(mode=0o750, exist_ok=True)
        fsync_dir(Path(directory))
    tmp = name + TEMP_SUFFIX
    try:
        os.unlink(target / tmp)  # left by a killed write: the rollup itself was never in place
    except FileNotFoundError:
        pass
    def fill(fd: int) -> None:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]

    return replace_atomically(target, tmp, name, None, fill, mode=0o640)


def read(directory: Path, day: date, view: tuple[str, ...] | None = None) -> Rollup | None:
    """The rollup of ``day`` (only ``view``, when given), or None when there is none or it cannot be read (then
    raw lines are used)."""
    import orjson

    try:
        with open(rollup_dir(directory) / rollup_name(day), "rb") as fh:
            rollup = Rollup.from_dict(orjson.loads(fh.read()), view)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rollup if view is None or view in rollup.views else None


def delete(directory: Path, name: str) -> int:
    """Delete the rollup ``name``; return its size."""
    _day_of_name(name)
    path = rollup_dir(directory) / name
    size = os.lstat(path).st_size
    os.unlink(path)
    return size
