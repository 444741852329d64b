"""Daily rollups: a complete day's counts, kept for ``rollup_retention`` days after its raw files are pruned.

A rollup is ``DIR/rollups/rollup-YYYY-MM-DD.json`` (a subdirectory: the data file grammar, gzip and prune never
see it). It holds, for the day in the zone it was written with, one row per cell of each *view*: the whole day,
per event, per local hour, per path, per event and hour, per event and path. A row is the key, stored events,
distinct visitors, the weighted estimate and its variance (:mod:`metrics_ops.estimate`). No visitor id, no
metadata but the grouped path, and nothing that singles anyone out: an event name or a path seen by fewer than
``rollup_min_visitors`` visitors that day, or beyond the day's top 100, is counted in ``(other)``
(:mod:`metrics_ops.folding`, which also bounds the size: under 1 MB whatever the traffic).

Format 2 stores each dimension's values once (``values``) and rows of indices into them, the fold rule it was
written with (``min_visitors``; the top N are :mod:`metrics_ops.folding`'s) and each view's residual
(``folded``, only where it is not 0: a view that folded nothing is exact). A
format 1 rollup (no folding by visitors, paths beyond the top 100 as ``other``) is still read; the pass
rewrites it (recounted from raw lines while they exist, else folded in place: :func:`plan`, :func:`write`).

Nothing here follows a symbolic link: the directory is opened with O_NOFOLLOW and every file in it relative
to that descriptor, so ``DIR/rollups`` as a link is refused (:class:`RollupDirError`), never read, written or
deleted through. The files and the directory follow ``METRICS_FILE_MODE``.

The maintenance pass writes the rollup of every day before today that has data files and no rollup yet (once:
a day is complete when the pass's today is later), crash-safely (temp file, fsync, rename, fsync the
directory), and deletes rollups ``rollup_retention`` days old; ``forget`` recounts the rollups of the days it
rewrote (:func:`metrics_ops.forget.recount_rollups`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops import folding
from metrics_ops.estimate import Estimate
from metrics_ops.folding import OTHER
from metrics_ops.layout import ROLLUP_DIR, StoreError, dir_mode, fsync_dir
from metrics_ops.reading import shards
from metrics_ops.tally import NOT_AN_EVENT, DayTally, tally_day

FORMAT = 2
DEFAULT_MIN_VISITORS = 5
DEFAULT_FILE_MODE = 0o640
#: the groupings a rollup keeps (dimensions in tally order); () is the whole day
VIEWS: tuple[tuple[str, ...], ...] = ((), ("event",), ("hour",), ("path",), ("event", "hour"), ("event", "path"))
_NAME = re.compile(r"^rollup-(\d{4}-\d{2}-\d{2})\.json$")
_HEADER = re.compile(rb'^\{\s*"format"\s*:\s*(\d+)(?:\s*,\s*"min_visitors"\s*:\s*(\d+))?')
TEMP_SUFFIX = ".tmp"
_OLD_OTHER = "other"  # format 1's name of the folded paths


class RollupDirError(StoreError):
    """``DIR/rollups`` is a symbolic link or not a directory: refused, in one line naming it."""


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


def _day_of_name(name: str) -> date:
    day = day_of_rollup(name)
    if day is None:
        raise ValueError(f"{name} is not a rollup")
    return day


@contextmanager
def _opened(directory: Path, *, create: bool = False, file_mode: int = DEFAULT_FILE_MODE) -> Iterator[int | None]:
    """A descriptor of ``DIR/rollups`` opened without following a link (None: it does not exist and ``create``
    is false). With ``create`` it is made with the directory form of ``file_mode``, and an existing one that
    grants more than that is narrowed to it."""
    path = rollup_dir(directory)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = _open_dir(path, flags)
    if fd is None and create:
        try:
            os.mkdir(path, dir_mode(file_mode))
        except FileExistsError:
            pass
        fsync_dir(Path(directory))
        fd = _open_dir(path, flags)
    if fd is None:
        if create:
            raise StoreError(errno.ENOENT, f"{path} vanished as it was made")
        yield None
        return
    try:
        if create:
            mode = os.fstat(fd).st_mode & 0o7777
            if mode & ~dir_mode(file_mode):
                os.fchmod(fd, mode & dir_mode(file_mode))
        yield fd
    finally:
        os.close(fd)


def _open_dir(path: Path, flags: int) -> int | None:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refusal(path, exc) from None


def _refusal(path: Path, exc: OSError) -> OSError:
    if exc.errno == errno.ELOOP or os.path.islink(path):
        return RollupDirError(errno.ELOOP, f"{path} is a symbolic link: rollups are never read or written "
                                           "through a link (make it a directory of its own)")
    if exc.errno == errno.ENOTDIR:
        return RollupDirError(errno.ENOTDIR, f"{path} is not a directory (rollups need it: move it away)")
    return exc


def existing(directory: Path) -> dict[date, str]:
    """The rollups on disk by day (temp files of a killed write and other names are not rollups); raises
    :class:`RollupDirError` when ``DIR/rollups`` is a link or not a directory."""
    with _opened(directory) as fd:
        names = os.listdir(fd) if fd is not None else []
    return {day: name for name in names if (day := day_of_rollup(name)) is not None}


def _header(fd: int, name: str) -> tuple[int, int] | None:
    """(format, min_visitors) from a rollup's first bytes (format 1: min_visitors 1, nothing folded by it)."""
    try:
        rfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return None
    try:
        m = _HEADER.match(os.read(rfd, 64))
    finally:
        os.close(rfd)
    return (int(m[1]), int(m[2] or 1)) if m else None


def plan(directory: Path, data_days: set[date], today: date, retention: int,
         min_visitors: int = DEFAULT_MIN_VISITORS) -> tuple[list[str], list[str], list[str]]:
    """(rollups due, rollups to rewrite, rollups old enough to delete), as names in :func:`rollup_dir`. A day is
    due once it is over (before ``today``), still has data files and has no rollup; a rollup within
    ``retention`` is rewritten when :func:`stale`; ``retention`` counts days like prune's."""
    have = existing(directory)
    due = sorted(d for d in data_days if d < today and d not in have and (today - d).days < retention)
    return ([rollup_name(d) for d in due],
            stale(directory, data_days, min_visitors, {d for d in have if (today - d).days < retention}),
            sorted(name for d, name in have.items() if (today - d).days >= retention))


def stale(directory: Path, data_days: set[date], min_visitors: int, days: set[date] | None = None) -> list[str]:
    """The rollups (of ``days``, or all) that fold less than the rules now say (format 1, a smaller
    ``min_visitors``), or cannot be read while the day's raw lines are there to recount."""
    out = []
    with _opened(directory) as fd:
        for name in sorted(os.listdir(fd)) if fd is not None else []:
            day = day_of_rollup(name)
            if day is None or days is not None and day not in days:
                continue
            head = _header(fd, name)
            if head is None and day in data_days or head is not None and (head[0] < FORMAT
                                                                           or head[1] < min_visitors):
                out.append(name)
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
    min_visitors: int = DEFAULT_MIN_VISITORS
    #: per view, the most events of one key folded into (other): 0 exact, None unknown (format 1)
    folded: dict[tuple[str, ...], int | None] = field(default_factory=dict)
    format: int = FORMAT
    damage: dict[str, int] = field(default_factory=dict)  # the damaged lines by what is wrong (tally.DAMAGE)

    def exact(self, view: tuple[str, ...]) -> bool:
        """Whether ``view`` holds every key the raw lines give, unfolded."""
        return self.folded.get(view, 0) == 0

    def to_dict(self) -> dict:
        values: dict[str, dict[str, int]] = {"event": {}, "hour": {}, "path": {}}
        views = {}
        for v, cells in self.views.items():
            index = [values[d] for d in v]
            views[",".join(v)] = [[*(ix.setdefault(k, len(ix)) for ix, k in zip(index, key, strict=True)),
                                   *est.as_list()] for key, est in sorted(cells.items())]
        folded = {",".join(v): n for v, n in self.folded.items() if n}
        return {
            "format": FORMAT, "min_visitors": self.min_visitors,
            "day": self.day.isoformat(), "tz": self.tz, "lines": self.lines, "test_lines": self.test_lines,
            "unweighted": self.unweighted, "damaged": self.damaged, "damage": self.damage,
            "problems": self.problems,
            "values": {d: list(ix) for d, ix in values.items() if ix},
            **({"folded": folded} if folded else {}),
            "views": views,
        }

    @classmethod
    def from_dict(cls, doc: dict, only: tuple[str, ...] | None = None) -> Rollup:
        """The rollup of a document (format 1 or 2); with ``only``, just that view (a report needs one)."""
        fmt = doc["format"]
        values = doc.get("values") if fmt >= 2 else None
        views, folded = {}, {}
        for name, rows in doc["views"].items():
            dims = tuple(name.split(",")) if name else ()
            if only is not None and dims != only:
                continue
            n = len(dims)
            if values is not None:
                tables = [values.get(d, ()) for d in dims]
                views[dims] = {tuple(t[i] for t, i in zip(tables, row[:n], strict=True)):
                               Estimate.from_list(row[n:]) for row in rows}
                folded[dims] = int(doc.get("folded", {}).get(name, 0))
            else:
                at = dims.index("path") if "path" in dims else None
                cells = {}
                for row in rows:
                    key = tuple(row[:n])
                    if at is not None and key[at] == _OLD_OTHER:
                        key = key[:at] + (OTHER,) + key[at + 1:]
                    cells[key] = Estimate.from_list(row[n:])
                views[dims] = cells
                folded[dims] = None if at is not None and any(k[at] == OTHER for k in cells) else 0
        return cls(date.fromisoformat(doc["day"]), doc["tz"], views, doc.get("lines", 0), doc.get("test_lines", 0),
                   doc.get("unweighted", 0), doc.get("damaged", 0), doc.get("problems", []),
                   int(doc.get("min_visitors", 1)), folded, fmt,
                   # a rollup of an earlier version counted only lines that are not JSON events as damaged
                   doc.get("damage") or ({NOT_AN_EVENT: doc["damaged"]} if doc.get("damaged") else {}))


def from_tally(tally: DayTally, tz: str, min_visitors: int,
               beyond_top: dict[str, int] | None = None) -> Rollup:
    """A rollup from a day's tally over :data:`VIEWS` (values beyond the top N already ``(other)``:
    ``beyond_top`` says the most events of one value left out per dimension), folded by the K rule."""
    beyond_top = beyond_top or {}
    rare = {d: folding.rare_values(tally.cells[(d,)], len, min_visitors) for d in folding.FOLDED}
    views, folded = {}, {}
    for view in VIEWS:
        cells, residual = folding.fold_clusters(view, tally.cells[view], rare)
        views[view] = {key: Estimate.of_visitors(clusters) for key, clusters in cells.items()}
        folded[view] = max(residual, folding.residual_of(view, beyond_top))
    return Rollup(tally.day, tz, views, tally.lines, tally.test_lines, tally.unweighted, tally.damaged,
                  [str(p) for p in tally.problems], min_visitors, folded, damage=dict(tally.damage))


def refold(rollup: Rollup, min_visitors: int) -> Rollup:
    """A rollup whose raw lines are gone, folded in place by today's rules (from its own per-day visitors)."""
    rare = {d: folding.rare_values(rollup.views.get((d,), {}), lambda e: e.visitors, min_visitors)
            for d in folding.FOLDED}
    views, folded = {}, {}
    for view, cells in rollup.views.items():
        views[view], residual = folding.fold_estimates(view, cells, rare)
        before = rollup.folded.get(view, 0)
        folded[view] = max(residual, sum(e.events for k, e in cells.items() if OTHER in k)
                           if before is None else before)
    return Rollup(rollup.day, rollup.tz, views, rollup.lines, rollup.test_lines, rollup.unweighted,
                  rollup.damaged, rollup.problems, max(min_visitors, rollup.min_visitors), folded,
                  damage=rollup.damage)


def count(directory: Path, day: date, zone: ZoneInfo, min_visitors: int = DEFAULT_MIN_VISITORS) -> Rollup | None:
    """The rollup of ``day`` counted from its data files (None: it has none), in bounded memory: the values
    beyond the top N are found first (:func:`metrics_ops.folding.rank`) and counted as ``(other)``."""
    day_shards = shards(directory, day, day).get(day, [])
    if not day_shards:
        return None
    kept = folding.rank(directory, day_shards)
    tally = tally_day(directory, day, day_shards, list(VIEWS), zone, fold=folding.folder(kept))
    return from_tally(tally, zone.key, min_visitors, {d: n for d, (_, n) in kept.items()})


def write(directory: Path, name: str, zone: ZoneInfo, min_visitors: int = DEFAULT_MIN_VISITORS,
          file_mode: int = DEFAULT_FILE_MODE) -> int:
    """Write the rollup ``name`` (``rollup-DAY.json`` in :func:`rollup_dir`) crash-safely; return its size.
    Counted from the day's data files; a day without them keeps its rollup, folded in place by today's rules
    (:func:`refold`). OSError (a :class:`RollupDirError` for a link) when it cannot be written."""
    day = _day_of_name(name)
    rollup = count(directory, day, zone, min_visitors)
    if rollup is None:
        old = read(directory, day)
        if old is None:
            raise StoreError(errno.ENOENT, f"{name}: no data files for {day} to count, and the rollup cannot be "
                                           "read to fold it (delete it)")
        rollup = refold(old, min_visitors)
    return _store(directory, name, rollup, file_mode)


def _store(directory: Path, name: str, rollup: Rollup, file_mode: int) -> int:
    import orjson

    doc = rollup.to_dict()
    doc["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    body = orjson.dumps(doc)
    tmp = name + TEMP_SUFFIX
    with _opened(directory, create=True, file_mode=file_mode) as dfd:
        try:
            os.unlink(tmp, dir_fd=dfd)  # left by a killed write: the rollup itself was never in place
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode,
                     dir_fd=dfd)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    return len(body)


def read(directory: Path, day: date, view: tuple[str, ...] | None = None) -> Rollup | None:
    """The rollup of ``day`` (only ``view``, when given), or None when there is none or it cannot be read (then
    raw lines are used). Raises :class:`RollupDirError` when ``DIR/rollups`` is a link."""
    import orjson

    with _opened(directory) as dfd:
        if dfd is None:
            return None
        try:
            fd = os.open(rollup_name(day), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return None
    try:
        with open(fd, "rb") as fh:
            rollup = Rollup.from_dict(orjson.loads(fh.read()), view)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return rollup if view is None or view in rollup.views else None


def delete(directory: Path, name: str) -> int:
    """Delete the rollup ``name`` (a link of that name is removed, never followed); return its size."""
    _day_of_name(name)
    with _opened(directory) as fd:
        if fd is None:
            raise StoreError(errno.ENOENT, f"{rollup_dir(directory) / name}: no such rollup")
        size = os.stat(name, dir_fd=fd, follow_symlinks=False).st_size
        os.unlink(name, dir_fd=fd)
    return size
