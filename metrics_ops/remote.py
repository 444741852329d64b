"""Reading the archive back: which objects of which hosts a read across hosts takes, and their lines, streamed.

With ``archive_url`` set, ``report`` and ``export`` read every host's archived days from the bucket plus this
host's local days (:func:`metrics_ops.reading.sources` puts the two together, each line once):

- the bucket is listed day by day in the layout ``<prefix>/day=YYYY-MM-DD/host=<host_id>/<file name>``
  (:func:`listing`, the days' listings run concurrently); an object whose name is not a closed, compressed data file
  of its key's day (``metrics-YYYY-MM-DD[.N].jsonl.gz``) is not read, and said in a note;
- an object is a :class:`Remote` shard: :func:`metrics_ops.reading.read_blocks` streams it through
  :meth:`metrics_ops.objectstore.Bucket.open_stream` and decompresses it like a local ``.gz``
  (:func:`metrics_ops.lines.inflate`, the same bounded lines; a damaged object is a Problem named
  ``s3://bucket/key``, as a damaged local archive is named by its file);
- :class:`Prefetch` fetches the next :data:`AHEAD` objects of a day in threads while the current one is
  decompressed (in pieces of :data:`CHUNK`, at most :data:`QUEUED` pieces waiting per object: bounded memory);
- a bucket that cannot be reached (or refuses) raises :class:`~metrics_ops.objectstore.ArchiveError`: the read
  stops, never a partial answer; an object deleted since it was listed is a Problem, like a file pruned meanwhile.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from metrics_ops.layout import parse_name
from metrics_ops.objectstore import (
    ArchiveError,
    Bucket,
    Location,
    ObjectMissing,
    day_prefix,
    host_id_problem,
    parse_key,
)

#: objects fetched at the same time (threads; decompression is the bottleneck)
AHEAD = 3
#: bytes per read from an object's stream (as a local archive is read), and pieces waiting per object: at most
#: about 2 x AHEAD x QUEUED x CHUNK bytes held (a day's objects, and the next day's, :func:`warm`)
CHUNK, QUEUED = 4 << 20, 3
_END = object()


@dataclass(frozen=True)
class Across:
    """A read across hosts: the archive, this host's id, and the hosts picked (None: every host)."""

    location: Location
    host_id: str
    hosts: frozenset[str] | None = None

    def picks(self, host: str) -> bool:
        return self.hosts is None or host in self.hosts

    @property
    def only_this_host(self) -> bool:
        return self.hosts is not None and self.hosts <= {self.host_id}


@dataclass(frozen=True)
class Remote:
    """One archived object: shard ``number`` of ``day`` of ``host``, read from the bucket."""

    location: Location
    day: date
    host: str
    number: int
    key: str

    @property
    def name(self) -> str:
        """How problems and long lines name it."""
        return f"s3://{self.location.bucket}/{self.key}"


def parse_hosts(values: Iterable[str]) -> frozenset[str] | None:
    """``--host a --host b,c`` -> {a, b, c} (None when none is given); ValueError naming a bad host id."""
    hosts = {h.strip() for v in values for h in v.split(",") if h.strip()}
    for h in sorted(hosts):
        if why := host_id_problem(h):
            raise ValueError(f"--host {h}: {why}")
    return frozenset(hosts) or None


_buckets: dict[tuple[int, Location], Bucket] = {}
_session: list = []  # one boto3 Session, inherited by forked workers: their clients are made from it, fast
_lock = threading.Lock()
_warm: dict[Remote, _Fetch] = {}  # objects fetched ahead of the day that reads them (this process's)
os.register_at_fork(after_in_child=lambda: (globals().update(_lock=threading.Lock()), _warm.clear()))


def bucket(location: Location) -> Bucket:
    """This process's client of ``location``: one per process (a client's connections are not shared across a
    fork), made from the one Session (its service model already loaded: ~10 ms, not ~150 ms in each worker)."""
    key = (os.getpid(), location)
    with _lock:
        if key not in _buckets:
            if not _session:
                from metrics_ops.objectstore import _boto3

                _session.append(_boto3()[0].session.Session())
            _buckets[key] = Bucket(location, session=_session[0])
        return _buckets[key]


def listing(across: Across, since: date | None, until: date | None,
            notes: list[str] | None = None) -> dict[date, dict[str, dict[int, Remote]]]:
    """The objects of the picked hosts for the days in [since, until]: day -> host -> shard number -> Remote.
    ArchiveError when the bucket cannot be listed."""
    from concurrent.futures import ThreadPoolExecutor

    notes = [] if notes is None else notes
    store = bucket(across.location)
    days = sorted(d for d in store.list_days() if (since is None or d >= since) and (until is None or d <= until))
    out: dict[date, dict[str, dict[int, Remote]]] = {}
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(days)))) as pool:
        for day, objects in zip(days, pool.map(lambda d: list(store.list(day_prefix(across.location, d))), days),
                                strict=True):
            for obj in objects:
                parsed = parse_key(across.location, obj.key)
                if parsed is None or not across.picks(parsed[1]):
                    continue
                f = parse_name(parsed[2])
                if f is None or not f.gz or f.day != day or f.name != parsed[2]:
                    notes.append(f"s3://{across.location.bucket}/{obj.key}: not a compressed data file of {day}, "
                                 "not read")
                    continue
                out.setdefault(day, {}).setdefault(parsed[1], {})[f.shard] = Remote(
                    across.location, day, parsed[1], f.shard, obj.key)
    return out


class _Fetch(threading.Thread):
    """One object's compressed bytes, read ahead in a thread into a bounded queue."""

    def __init__(self, shard: Remote):
        super().__init__(daemon=True, name=f"fetch {shard.key}")
        self.shard = shard
        self.pieces: queue.Queue = queue.Queue(QUEUED)
        self.stopped = threading.Event()

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.pieces.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            with bucket(self.shard.location).open_stream(self.shard.key) as stream:
                while not self.stopped.is_set() and (piece := stream.read(CHUNK)):
                    if not self._put(piece):
                        return
            self._put(_END)
        except ArchiveError as exc:
            self._put(exc)
        except Exception as exc:  # noqa: BLE001 - anything else the client raises: the archive failed
            self._put(ArchiveError(f"archive {self.shard.name}: download failed: {exc}"))

    def chunks(self) -> Iterator[bytes]:
        """The compressed pieces in order; raises what the download raised."""
        while (item := self.pieces.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()


def warm(day_shards: Iterable) -> None:
    """Start fetching the first :data:`AHEAD` objects among the shards of the day this process reads next, while
    it reads the current one (an object's first byte takes a round trip: ~10-20 ms, a day's decompression of 1 MB
    ~40 ms); :class:`Prefetch` takes them over."""
    for stale in [s for s, f in _warm.items() if not f.is_alive() and f.pieces.empty()]:
        del _warm[stale]
    for shard in [s for s in day_shards if isinstance(s, Remote)][:AHEAD]:
        if shard not in _warm and len(_warm) < 2 * AHEAD:
            _warm[shard] = fetch = _Fetch(shard)
            fetch.start()


class Prefetch:
    """The objects among a day's shards, fetched :data:`AHEAD` at a time in the order they are read."""

    def __init__(self, day_shards: Iterable):
        self.waiting = [s for s in day_shards if isinstance(s, Remote)]
        self.started: dict[Remote, _Fetch] = {s: _warm.pop(s) for s in self.waiting if s in _warm}
        self.waiting = [s for s in self.waiting if s not in self.started]
        self._fill()

    def _fill(self) -> None:
        while self.waiting and len(self.started) < AHEAD:
            fetch = _Fetch(self.waiting.pop(0))
            self.started[fetch.shard] = fetch
            fetch.start()

    def take(self, shard: Remote) -> _Fetch:
        fetch = self.started.pop(shard, None)
        if fetch is None:
            fetch = _Fetch(shard)
            fetch.start()
        self._fill()
        return fetch

    def close(self) -> None:
        for fetch in self.started.values():
            fetch.stop()
        self.started.clear()
        self.waiting.clear()


def compressed(shard: Remote, problems: list, prefetch: Prefetch | None = None,
               missing: str = "deleted from the archive since it was listed") -> Iterator[bytes]:
    """The object's compressed bytes; an object that is gone is a Problem (``missing`` says why), nothing else
    is caught (ArchiveError: the bucket failed)."""
    from metrics_ops.lines import Problem

    fetch = prefetch.take(shard) if prefetch is not None else _Fetch(shard)
    if prefetch is None:
        fetch.start()
    try:
        yield from fetch.chunks()
    except ObjectMissing:
        problems.append(Problem(shard.name, missing))
    finally:
        fetch.stop()


def host_days(days: dict[date, list], across: Across | None) -> tuple[set[date], set[date]]:
    """(days with raw lines of this host, days with raw lines of other hosts) among ``days`` (of
    :func:`metrics_ops.reading.sources`): a rollup, this host's alone, answers a day with no other host's lines."""
    if across is None:
        return set(days), set()
    own = {d for d, found in days.items()
           if any(not isinstance(s, Remote) or s.host == across.host_id for s in found)}
    others = {d for d, found in days.items() if any(isinstance(s, Remote) and s.host != across.host_id for s in found)}
    return own, others


def hosts_read(days: dict[date, list], across: Across) -> list[str]:
    """The host ids whose lines are among ``days``."""
    return sorted({s.host if isinstance(s, Remote) else across.host_id for found in days.values() for s in found})


def rollup_notes(across: Across | None, hosts: list[str], pruned: list[date], mixed: list[date]) -> list[str]:
    """The hosts a report across hosts read, and what it could not count from every host's raw lines: days from
    this host's rollups alone (``pruned``), and ``mixed`` days (its rollup added to other hosts' raw lines:
    visitors not additive)."""
    if across is None:
        return []
    where = f"this host's files and {across.location.url}" if across.picks(across.host_id) else across.location.url
    read = f"read across hosts: {', '.join(hosts) or 'none'} ({where})"
    if across.only_this_host:
        return [read]

    def span(days: list[date]) -> str:
        return days[0].isoformat() if len(days) == 1 else f"{len(days)} days ({days[0]} .. {days[-1]})"

    notes = [read]
    if pruned:
        notes.append(f"this host only: {span(pruned)} from the rollups of {across.host_id} (no host's raw lines "
                     "are left; each host's rollups stay on that host)")
    if mixed:
        notes.append(f"visitors: not additive across hosts on {span(mixed)}: {across.host_id}'s lines there are only "
                     "in its rollup, the other hosts' are counted from raw lines (a visitor seen by both would count "
                     "twice), so visitors there are unknown; events and estimates add exactly")
    return notes
