"""serve's shared state (the state file): the debug ring and the counters of every worker process, in one
memory-mapped file.

A private deque per worker would show a different ring on every request, and /metrics would count one worker
only. So every process of one server maps one file (METRICS_STATE_FILE, default DIR/.metrics-ops.state) and
owns one *region* of it: its own counters and its own ring. A process writes only its region (a thread lock
orders its own threads), so the hot path takes no lock between processes (an flock there cost ~20 % of
throughput under contention). Readers merge: counters are summed over regions; rings are merged by receive
time and the newest ``capacity`` entries kept, which is the same as one shared ring of that capacity.

Layout (native byte order)::

    file header (4096): magic "MOPSTAT3", capacity u32, slot size u32, regions u32; the snapshot's hash key
                        (32 random bytes, new with each server) @64
    region r at 4096 + r * region_size:
        head (4096): owner pid u64 @0, next sequence u64 @8, last stored ns u64 @16, last write error ns u64 @24,
                     error text length u32 @32, counters u64[COUNTERS] @64, error text @1024 (up to 1 KiB)
        slots: capacity x slot size: tag u64 (sequence + 1; 0 while being written), time ns u64,
               length u32, flags u32, record bytes

A region whose owner died is taken over by the next process that attaches (counters continue, so they stay
monotonic across worker restarts). A record longer than a slot is kept in the ring as a short summary marked
``"truncated": true`` (the full record is in the JSONL file).

Life cycle (:meth:`SharedState.claim`, once, in serve's main process): the file is refused unless it is new,
empty or already carries the header above (a mistyped METRICS_STATE_FILE never destroys a database or a data
file); a POSIX record lock held for the server's life makes a second serve on the same file fail with the
holder's pid instead of resetting the file under the first; every block is reserved with posix_fallocate, so a
full disk can never fault (SIGBUS) a worker writing through its mapping; and the file is never shrunk while a
process that maps it may be alive. Workers only attach: they never truncate, and refuse a foreign file.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import json
import logging
import mmap
import os
import stat
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from metrics_ops.locks import this_pid
from metrics_ops.serve.counters import COUNTERS, INDEX

MAGIC = b"MOPSTAT3"
MAGIC_FAMILY = b"MOPSTAT"  # earlier layouts: ours, so they may be laid out anew once nobody maps them
PAGE = 4096
SLOT_SIZE = 2048
SPARE_REGIONS = 2  # regions beyond the worker count: a respawned worker may start before the dead one is reaped
_LAST_OK, _LAST_ERROR, _ERROR_LEN, _ERROR_TEXT, _ERROR_MAX = 16, 24, 32, 1024, 1024
_FILE_HEAD = struct.Struct("=8sIII")
_KEY_AT, _KEY_LEN = 64, 32
_SLOT = struct.Struct("=QQII")

_REQUESTS, _RECEIVED = INDEX["requests"], INDEX["received"]
FLAG_STORED = 1
log = logging.getLogger("metrics_ops.serve")


class StateError(OSError):
    """The state file cannot be used; the message says which file and why."""

    def __str__(self) -> str:  # the message alone: it names the file and the reason already
        return self.strerror if self.strerror else super().__str__()


class StateBusy(StateError):
    """Another live server holds the state file."""

    def __init__(self, path: Path, pid: int):
        super().__init__(f"another metrics-ops serve (pid {pid}) is using the state file {path}")
        self.path, self.pid = path, pid


def _lock_holder(fd: int) -> int:
    """The pid holding a conflicting POSIX record lock on byte 0 of ``fd`` (0 when none)."""
    query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _whence, _start, _len, pid = struct.unpack("hhqqi", answer[:struct.calcsize("hhqqi")])
    return pid if l_type != fcntl.F_UNLCK else 0


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

    def __init__(self, path: str | os.PathLike, capacity: int, slot_size: int = SLOT_SIZE, regions: int = 4):
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
        self._head_view: memoryview | None = None
        self._claim_fd = -1  # serve's main process: holds the record lock for the server's life
        self._lock = threading.Lock()
        self._last_warning = -1e9

    @property
    def size(self) -> int:
        return PAGE + self.regions * self.region_size

    def _head(self) -> bytes:
        return _FILE_HEAD.pack(MAGIC, self.capacity, self.slot_size, self.regions)

    @classmethod
    def for_settings(cls, settings) -> SharedState:
        return cls(settings.state_path, settings.ring_capacity, regions=settings.workers + SPARE_REGIONS)

    def claim(self) -> None:
        """serve's main process, before its workers start: make the file this server's, for its whole life.

        Raises :class:`StateBusy` when another live server holds it and :class:`StateError` when the file is not
        a state file or its space cannot be reserved; nothing is truncated or written in either case."""
        fd = self._open()
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError:
                raise StateBusy(self.path, _lock_holder(fd)) from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # workers of an earlier server may still attach
            try:
                self._lay_out(fd, fresh=True)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)  # also drops the record lock
            raise
        self._claim_fd = fd

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(exc.errno, f"cannot open the state file {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StateError(errno.EINVAL, f"the state file {self.path} is not a regular file")
        return fd

    def _lay_out(self, fd: int, fresh: bool) -> None:
        """Under the file's flock: check the header, reserve the blocks, write the header (and, with ``fresh``,
        zero every region head). A foreign file is refused untouched."""
        st = os.fstat(fd)
        head = os.pread(fd, _FILE_HEAD.size, 0)
        if st.st_size > 0 and not head.startswith(MAGIC_FAMILY):
            raise StateError(errno.EEXIST, f"{self.path} is not a metrics-ops state file (it does not start with "
                                           f"{MAGIC_FAMILY.decode()}); refusing to overwrite it: point "
                                           "METRICS_STATE_FILE at a new file")
        same = head == self._head()
        if not same and st.st_size > 0:
            if holder := self._live_owner(fd, head):
                raise StateError(errno.EBUSY, f"{self.path} is laid out differently and still used by pid {holder}")
            if st.st_size > self.size:
                os.ftruncate(fd, self.size)  # nobody maps it: an older, larger layout may shrink
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as exc:
            raise StateError(exc.errno, f"cannot reserve {self.size / 2**20:.1f} MiB for the state file "
                                        f"{self.path}: {exc.strerror}") from None
        if fresh or not same:
            zero = bytes(PAGE)
            for r in range(self.regions):
                os.pwrite(fd, zero, PAGE + r * self.region_size)
        if fresh or not same or not any(os.pread(fd, _KEY_LEN, _KEY_AT)):
            os.pwrite(fd, os.urandom(_KEY_LEN), _KEY_AT)
        os.pwrite(fd, self._head(), 0)

    def _live_owner(self, fd: int, head: bytes) -> int:
        """A live pid owning a region of the file as laid out by ``head`` (any of our layouts), else 0."""
        try:
            _magic, capacity, slot_size, regions = _FILE_HEAD.unpack(head)
        except struct.error:
            return 0
        region_size = PAGE + capacity * slot_size
        for r in range(min(regions, 4096)):
            raw = os.pread(fd, 8, PAGE + r * region_size)
            if len(raw) < 8:
                break
            (owner,) = struct.unpack("=Q", raw)
            if owner != os.getpid() and _alive(owner):
                return owner
        return 0

    def _attach(self) -> mmap.mmap:
        if self._map is not None and self._pid == this_pid():
            return self._map
        with self._lock:
            if self._map is not None and self._pid == this_pid():
                return self._map
            self._map = None  # inherited across fork: not ours
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.pread(fd, _FILE_HEAD.size, 0) != self._head():  # new (no serve claimed it): lay out
                        self._lay_out(fd, fresh=False)
                    mapping = mmap.mmap(fd, self.size)
                    region = self._claim(mapping)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except BaseException:
                os.close(fd)
                raise
            base = PAGE + region * self.region_size
            self._fd, self._region, self._base = fd, region, base
            self._seq = memoryview(mapping)[base + 8:base + 16].cast("Q")
            self._head_view = memoryview(mapping)[base + _LAST_OK:base + _LAST_ERROR + 8].cast("Q")
            self._counters = memoryview(mapping)[base + 64:base + 64 + 8 * len(COUNTERS)].cast("Q")
            self._pid = this_pid()
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
        if self._map is not None and self._pid == this_pid():
            self._counters.release()
            self._seq.release()
            self._head_view.release()
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
        m = self._map
        if (m is None or self._pid != this_pid()) and (m := self._mapped()) is None:  # (_attach's test, inlined)
            return
        now_ns = time.time_ns()
        with self._lock:
            counters = self._counters
            counters[_REQUESTS] += 1
            counters[_RECEIVED] += 1
            counters[outcome] += 1
            if stored:
                self._head_view[0] = now_ns
            self._put(m, record, stored, now_ns)

    def note_write_error(self, message: str) -> None:
        """Remember a failed write where every worker's /healthz sees it."""
        if (m := self._mapped()) is None:
            return
        text = message.encode("utf-8", "replace")[:_ERROR_MAX]
        with self._lock:
            m[self._base + _ERROR_TEXT:self._base + _ERROR_TEXT + len(text)] = text
            struct.pack_into("=I", m, self._base + _ERROR_LEN, len(text))
            self._head_view[1] = time.time_ns()

    def health(self) -> tuple[int, int, str]:
        """(newest stored event ns, newest write error ns, its message) over every process of the server."""
        m = self._attach()
        last_ok, last_error, message = 0, 0, ""
        for r in range(self.regions):
            base = PAGE + r * self.region_size
            ok_ns, err_ns, length = struct.unpack_from("=QQI", m, base + _LAST_OK)
            last_ok = max(last_ok, ok_ns)
            if err_ns > last_error:
                last_error = err_ns
                message = bytes(m[base + _ERROR_TEXT:base + _ERROR_TEXT + min(length, _ERROR_MAX)]).decode(
                    "utf-8", "replace")
        return last_ok, last_error, message

    def update(self, entries: Iterable[tuple[bytes, bool]] = (), **counts: int) -> None:
        """Append ring entries (record, stored?) and add to counters."""
        if (m := self._mapped()) is None:
            return
        now_ns = time.time_ns()
        with self._lock:
            for name, n in counts.items():
                self._counters[INDEX[name]] += n
            if counts.get("stored"):
                self._head_view[0] = now_ns
            for record, stored in entries:
                self._put(m, record, stored, now_ns)

    def hash_key(self) -> bytes:
        """The key the snapshot hashes visitor ids with: random, one per server (every worker reads the same)."""
        key = bytes(self._attach()[_KEY_AT:_KEY_AT + _KEY_LEN])
        if not any(key):  # laid out by an earlier version that had no key: this process's own
            key = self.__dict__.setdefault("_own_key", os.urandom(_KEY_LEN))
        return key

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
