"""serve's shared state: the debug ring and the counters of every worker process, in one memory-mapped file.

A private deque per worker would show a different ring on every request, and /metrics would count one worker
only. So every process of one server maps one file (METRICS_STATE_FILE, default DIR/.metrics-ops.state) and
owns one *region* of it: its own counters and its own ring. A process writes only its region (a thread lock
orders its own threads), so the hot path takes no lock between processes (an flock there cost ~20 % of
throughput under contention). Readers merge: counters are summed over regions; rings are merged by receive
time and the newest ``capacity`` entries kept, which is the same as one shared ring of that capacity.

Layout (native byte order)::

    file header (4096): magic "MOPSTAT2", capacity u32, slot size u32, regions u32
    region r at 4096 + r * region_size:
        head (4096): owner pid u64 @0, next sequence u64 @8, counters u64[COUNTERS] @64
        slots: capacity x slot size: tag u64 (sequence + 1; 0 while being written), time ns u64,
               length u32, flags u32, record bytes

A region whose owner died is taken over by the next process that attaches (counters continue, so they stay
monotonic across worker restarts); serve resets the file once at start. A record longer than a slot is kept
in the ring as a short summary marked ``"truncated": true`` (the full record is in the JSONL file).
"""

from __future__ import annotations

import fcntl
import heapq
import json
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path

MAGIC = b"MOPSTAT2"
PAGE = 4096
SLOT_SIZE = 2048
REGIONS = 64
_FILE_HEAD = struct.Struct("=8sIII")
_SLOT = struct.Struct("=QQII")

#: counter name -> index; names are Prometheus-friendly
COUNTERS = (
    "received", "stored", "sampled_out", "write_errors", "requests",
    "rejected_body_too_large", "rejected_bad_json", "rejected_bad_encoding", "rejected_invalid",
    "rejected_content_type", "rejected_batch_too_large", "rejected_empty_body", "rejected_duplicate_key",
    "rejected_too_deep", "rejected_origin",
)
INDEX = {name: i for i, name in enumerate(COUNTERS)}
_REQUESTS, _RECEIVED = INDEX["requests"], INDEX["received"]
FLAG_STORED = 1
log = logging.getLogger("metrics_ops.serve")


class StateError(OSError):
    pass


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedState:
    """The ring and counters of every worker of one server. Safe across fork: each process attaches anew."""

    def __init__(self, path: str | os.PathLike, capacity: int, slot_size: int = SLOT_SIZE, regions: int = REGIONS):
        self.path = Path(path)
        self.capacity = capacity
        self.slot_size = slot_size
        self.regions = regions
        self.region_size = PAGE + capacity * slot_size
        self._pid = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._region = -1
        self._base = 0
        self._counters: memoryview | None = None
        self._seq: memoryview | None = None
        self._lock = threading.Lock()
        self._last_warning = -1e9

    @property
    def size(self) -> int:
        return PAGE + self.regions * self.region_size

    def _head(self) -> bytes:
        return _FILE_HEAD.pack(MAGIC, self.capacity, self.slot_size, self.regions)

    def reset(self) -> None:
        """Start empty (serve does this once, before its workers start)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.ftruncate(fd, self.size)  # sparse: a page is allocated when first written
            os.pwrite(fd, self._head(), 0)
        finally:
            os.close(fd)
        self.close()

    def _attach(self) -> mmap.mmap:
        if self._map is not None and self._pid == os.getpid():
            return self._map
        with self._lock:
            if self._map is not None and self._pid == os.getpid():
                return self._map
            self._map = None  # inherited across fork: not ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                head = os.pread(fd, _FILE_HEAD.size, 0)
                if head != self._head():  # new, or laid out for another capacity: start afresh
                    os.ftruncate(fd, 0)
                    os.ftruncate(fd, self.size)
                    os.pwrite(fd, self._head(), 0)
                mapping = mmap.mmap(fd, self.size)
                region = self._claim(mapping)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            base = PAGE + region * self.region_size
            self._fd, self._region, self._base = fd, region, base
            self._seq = memoryview(mapping)[base + 8:base + 16].cast("Q")
            self._counters = memoryview(mapping)[base + 64:base + 64 + 8 * len(COUNTERS)].cast("Q")
            self._pid = os.getpid()
            self._map = mapping
            return mapping

    def _claim(self, mapping: mmap.mmap) -> int:
        """Take a free region (never used, or its owner is dead); the file lock is held."""
        me = os.getpid()
        free = None
        for r in range(self.regions):
            (owner,) = struct.unpack_from("=Q", mapping, PAGE + r * self.region_size)
            if owner == me:
                return r
            if free is None and not _alive(owner):
                free = r
        if free is None:
            raise StateError(f"all {self.regions} regions of {self.path} are held by live processes")
        struct.pack_into("=Q", mapping, PAGE + free * self.region_size, me)
        return free

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._counters.release()
            self._seq.release()
            self._map.close()
            os.close(self._fd)
        self._map, self._fd, self._pid = None, -1, 0

    def _put(self, m: mmap.mmap, record: bytes, stored: bool, now_ns: int) -> None:
        seq = self._seq[0]
        if len(record) > self.slot_size - _SLOT.size:
            record = _summary(record)
        offset = self._base + PAGE + (seq % self.capacity) * self.slot_size
        _SLOT.pack_into(m, offset, 0, now_ns, len(record), FLAG_STORED if stored else 0)  # 0: being written
        start = offset + _SLOT.size
        m[start:start + len(record)] = record
        struct.pack_into("=Q", m, offset, seq + 1)
        self._seq[0] = seq + 1

    def _unavailable(self, exc: OSError) -> None:
        """The ring and counters are a debug view: a broken state file must not fail an event that the store
        already took (the client would retry and store it twice). Say so once a minute."""
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("state file %s unusable, ring and counters not updated: %s", self.path, exc)

    def _mapped(self) -> mmap.mmap | None:
        try:
            return self._attach()
        except OSError as exc:
            self._unavailable(exc)
            return None

    def record_event(self, record: bytes, stored: bool, outcome: int) -> None:
        """The hot path of one accepted event: ring entry + requests, received and ``outcome`` counters."""
        if (m := self._mapped()) is None:
            return
        now_ns = time.time_ns()
        with self._lock:
            counters = self._counters
            counters[_REQUESTS] += 1
            counters[_RECEIVED] += 1
            counters[outcome] += 1
            self._put(m, record, stored, now_ns)

    def update(self, entries: Iterable[tuple[bytes, bool]] = (), **counts: int) -> None:
        """Append ring entries (record, stored?) and add to counters."""
        if (m := self._mapped()) is None:
            return
        now_ns = time.time_ns()
        with self._lock:
            for name, n in counts.items():
                self._counters[INDEX[name]] += n
            for record, stored in entries:
                self._put(m, record, stored, now_ns)

    def snapshot(self) -> tuple[list[tuple[bytes, bool]], dict[str, int]]:
        """(the newest ``capacity`` ring entries of all processes, oldest first; counters summed)."""
        m = self._attach()
        totals = [0] * len(COUNTERS)
        streams = []
        for r in range(self.regions):
            base = PAGE + r * self.region_size
            owner, seq = struct.unpack_from("=QQ", m, base)
            if owner == 0:
                continue
            for i, v in enumerate(struct.unpack_from(f"={len(COUNTERS)}Q", m, base + 64)):
                totals[i] += v
            entries = []
            for s in range(max(0, seq - self.capacity), seq):
                offset = base + PAGE + (s % self.capacity) * self.slot_size
                tag, t_ns, length, flags = _SLOT.unpack_from(m, offset)
                if tag != s + 1 or length > self.slot_size - _SLOT.size:
                    continue
                start = offset + _SLOT.size
                data = bytes(m[start:start + length])
                if struct.unpack_from("=Q", m, offset)[0] == tag:  # not overwritten while copied
                    entries.append((t_ns, r, s, data, bool(flags & FLAG_STORED)))
            streams.append(entries)
        merged = list(heapq.merge(*streams))[-self.capacity:]
        return [(data, stored) for _t, _r, _s, data, stored in merged], dict(zip(COUNTERS, totals, strict=True))


def _summary(record: bytes) -> bytes:
    try:
        obj = json.loads(record)
        keep = {k: obj[k] for k in ("visitor_id", "event", "timestamp", "received_at") if k in obj}
    except ValueError:
        keep = {}
    keep["truncated"] = True
    return json.dumps(keep, separators=(",", ":")).encode()
