"""The on-disk contract: file names, the day of a file, the current target, the link, appends and compression.

Layout of the data directory::

    metrics-2026-11-25.jsonl        day file (receive day in METRICS_TZ)
    metrics-2026-11-25.1.jsonl      size shards, N = 1, 2, ... (numeric order: .10 after .9)
    metrics-2026-11-22.jsonl.gz     archives: the same names + .gz
    metrics.jsonl -> metrics-2026-11-25.1.jsonl    symlink to the current file (METRICS_JSONL)

Every writer in this package appends through :meth:`Store.append`: one ``write()`` per line on an ``O_APPEND``
descriptor while holding ``flock(LOCK_EX)`` on that file. The lock is what makes compression and deletion safe
against a writer that picked its file a moment before midnight: :meth:`Store.compress` and :meth:`Store.delete`
take the same lock, and a writer that then finds its file unlinked (``st_nlink == 0``) reopens the current one.
Names that do not match the grammar are never opened, renamed or deleted; symlinks are never followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

PREFIX = "metrics-"
# One grammar for every number a writer can produce: shards are unbounded (``.1000000`` follows ``.999999``).
_NAME = re.compile(r"^metrics-(\d{4})-(\d{2})-(\d{2})(?:\.([1-9]\d*))?\.jsonl(\.gz)?$")
TEMP_SUFFIX = ".gz.tmp"  # metrics-YYYY-MM-DD[.N].jsonl.gz.tmp: a compression in progress (or killed)
ASIDE_SUFFIX = ".gz.corrupt"  # an unreadable archive set aside, never deleted by this tool
FORGET_SUFFIX = ".forget.tmp"  # metrics-...jsonl[.gz].forget.tmp: a `forget` rewrite in progress (or killed)
LOCK_NAME = ".metrics-ops.lock"  # one maintenance pass at a time
LINK_LOCK_NAME = ".metrics-ops.link.lock"  # link swaps and legacy adoption, across processes
STATE_NAME = ".metrics-ops.state"  # serve's shared ring and counters (metrics_ops.state)
#: names in the data directory that belong to the tool, never data: a setting may not point the link at them
RESERVED_NAMES = frozenset({LOCK_NAME, LINK_LOCK_NAME, STATE_NAME})
DEFAULT_FILE_MODE = 0o640  # data files: owner and group read; everyone else nothing (METRICS_FILE_MODE)
SHARD_CHECK_APPENDS = 16  # a writer looks for a newer shard at least every this many appends ...
SHARD_CHECK_SECONDS = 0.1  # ... and on any append this long after its last look
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class StoreError(OSError):
    """A store operation failed; the message says which file and why."""

    def __str__(self) -> str:  # the message alone: it names the file and the reason already
        return self.strerror if self.strerror else super().__str__()


class UnreadableFile(StoreError):
    """A damaged archive: ``found`` lines matched in its readable part; the rest could not be searched."""

    def __init__(self, name: str, why: str, found: int):
        super().__init__(errno.EIO, f"{name}: {why}")
        self.name, self.why, self.found = name, why, found


class LockBusy(Exception):
    def __init__(self, path: Path, waited: float):
        super().__init__(f"another maintenance pass holds {path} (waited {waited:g} s; see --lock-timeout)")
        self.path = path
        self.waited = waited


class DataFile(NamedTuple):
    """A name that matches the grammar. Sorts by day, then shard, then plain before .gz (a C tuple compare:
    a year of files sorts in a millisecond)."""

    day: date
    shard: int
    gz: bool
    name: str


@lru_cache(maxsize=1 << 16)
def parse_name(name: str) -> DataFile | None:
    """The DataFile a name stands for, or None when it does not match (including impossible dates)."""
    m = _NAME.match(name)
    if not m:
        return None
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    return DataFile(day, int(m[4] or 0), bool(m[5]), name)


def file_name(day: date, shard: int = 0, gz: bool = False) -> str:
    return f"{PREFIX}{day.isoformat()}{'' if shard == 0 else f'.{shard}'}.jsonl{'.gz' if gz else ''}"


def gunzip_prefix(body: bytes) -> tuple[bytes, str | None]:
    """Decompress every gzip member of ``body``: (data, None), or (what decompresses, why the rest does not)."""
    from zlib_ng import zlib_ng

    out: list[bytes] = []
    rest = body
    while rest:
        inflater = zlib_ng.decompressobj(31)
        try:
            out.append(inflater.decompress(rest))
        except zlib_ng.error as exc:
            data = b"".join(out)
            return data, f"unreadable after {len(data)} bytes of data ({exc})"
        if not inflater.eof:
            data = b"".join(out)
            return data, f"unreadable after {len(data)} bytes of data (the archive is truncated)"
        rest = inflater.unused_data
    return b"".join(out), None


def aside_day(name: str) -> date | None:
    """The day of an archive set aside as unreadable (``metrics-...jsonl.gz.corrupt[.N]``), else None."""
    base, sep, tail = name.partition(ASIDE_SUFFIX)
    if not sep or (tail and not (tail[0] == "." and tail[1:].isdigit())):
        return None
    parsed = parse_name(base + ".gz")
    return parsed.day if parsed is not None else None


def dir_mode(file_mode: int) -> int:
    """The directory mode that goes with a file mode: owner rwx, and x wherever r is granted (0640 -> 0750)."""
    return file_mode | 0o700 | ((file_mode & 0o044) >> 2)


def day_of(ts: float, zone: ZoneInfo) -> date:
    """The calendar day of a POSIX timestamp in ``zone``."""
    return datetime.fromtimestamp(ts, zone).date()


def day_bounds(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a local day as POSIX timestamps (23 or 25 hours long on DST change days)."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()


@dataclass
class Listing:
    """One scan of the data directory."""

    files: list[DataFile]  # regular files whose names match, sorted
    temps: list[str]  # leftover compression temp files
    aside: list[str]  # archives set aside as unreadable
    unknown: list[str]  # anything else: reported, never touched
    link_target: str | None  # the name metrics.jsonl points at, if it is a link into this directory
    legacy_link_file: bool  # metrics.jsonl is a regular file (the existing system's layout)

    def by_name(self) -> dict[str, DataFile]:
        return {f.name: f for f in self.files}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause(seconds: float) -> None:
    """time.sleep, but by a timed wait: under libfaketime (the tests' fake clock) time.sleep fails with EINVAL."""
    threading.Event().wait(seconds)


@contextmanager
def flock_path(path: Path, timeout: float, *, sleep: Callable[[float], None] = _pause,
               clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting up to ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
    try:
        deadline = clock() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise LockBusy(path, timeout) from None
                sleep(min(0.05, max(0.0, deadline - clock())))
        yield
    finally:
        os.close(fd)


class Store:
    """The data directory. One instance per process; :meth:`append` keeps the current file open."""

    def __init__(self, directory: str | os.PathLike, zone: ZoneInfo, *, link: str | os.PathLike | None = None,
                 max_bytes: int | None = None, clock: Callable[[], float] = time.time,
                 file_mode: int = DEFAULT_FILE_MODE):
        self.dir = Path(directory)
        self.zone = zone
        self.link = Path(link) if link is not None else self.dir / "metrics.jsonl"
        self.max_bytes = max_bytes
        self.clock = clock
        self._fd: int | None = None
        self._fd_name: str | None = None
        self._fd_pid = 0
        self._bounds = (0.0, 0.0)
        self._appends_since_look = 0
        self._last_look = 0.0
        self.file_mode = file_mode

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], float] = time.time) -> Store:
        return cls(settings.dir, settings.zone, link=settings.link_path, max_bytes=settings.max_bytes, clock=clock,
                   file_mode=settings.file_mode_bits)

    # ----------------------------------------------------------------- reading the directory
    def scan(self) -> Listing:
        files, temps, aside, unknown = [], [], [], []
        link_target, legacy = None, False
        special = {LOCK_NAME, LINK_LOCK_NAME, STATE_NAME}
        with os.scandir(self.dir) as it:
            for entry in it:
                name = entry.name
                if name == self.link.name:
                    if entry.is_symlink():
                        link_target = self._link_target_name()
                    elif entry.is_file(follow_symlinks=False):
                        legacy = True
                    else:
                        unknown.append(name)
                    continue
                if name in special:
                    continue
                parsed = parse_name(name)
                if parsed is not None and entry.is_file(follow_symlinks=False):
                    files.append(parsed)
                elif (name.endswith(TEMP_SUFFIX) and parse_name(name[: -len(TEMP_SUFFIX)]) or
                      name.endswith(FORGET_SUFFIX) and parse_name(name[: -len(FORGET_SUFFIX)])) and \
                        entry.is_file(follow_symlinks=False):
                    temps.append(name)
                elif aside_day(name) is not None and entry.is_file(follow_symlinks=False):
                    aside.append(name)
                elif name.startswith(f".{self.link.name}.") and entry.is_symlink():
                    continue  # a link swap in progress in another process
                else:
                    unknown.append(name)  # includes matching names that are symlinks or directories
        files.sort()
        return Listing(files, sorted(temps), sorted(aside), sorted(unknown), link_target, legacy)

    def _link_target_name(self) -> str | None:
        """The file name the link points at, when it points at a plain name inside this directory."""
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        p = Path(target)
        if not p.is_absolute():
            p = self.link.parent / p
        return p.name if p.parent.resolve() == self.dir.resolve() else None

    def today(self, now: float | None = None) -> date:
        return day_of(self.clock() if now is None else now, self.zone)

    def current_target(self, day: date, names: list[str] | None = None) -> str:
        """The file writers append to on ``day``: the highest shard of that day (an archived one is skipped)."""
        if names is None:
            names = os.listdir(self.dir)
        shards = [p for p in map(parse_name, names) if p is not None and p.day == day]
        if not shards:
            return file_name(day)
        top = max(p.shard for p in shards)
        archived = any(p.gz for p in shards if p.shard == top)
        return file_name(day, top + 1 if archived else top)

    def current_file(self, now: float | None = None) -> str:
        """The name appends at ``now`` go to (cheap while this process's open file is still current)."""
        now = self.clock() if now is None else now
        if self._fd is not None and self._fd_pid == os.getpid() and self._bounds[0] <= now < self._bounds[1]:
            return self._fd_name
        return self.current_target(day_of(now, self.zone))

    def size_of(self, name: str) -> int:
        try:
            return os.lstat(self.dir / name).st_size
        except FileNotFoundError:
            return 0

    def held_for_writing(self, name: str) -> bool:
        """Whether any process holds ``name`` open for writing (serve's current file), asked of the kernel: a
        read lease (Linux F_SETLEASE) cannot be taken on a file open for writing. False when it cannot tell
        (another owner without CAP_LEASE, a file system without leases, not Linux)."""
        set_lease = getattr(fcntl, "F_SETLEASE", None)
        if set_lease is None:
            return False
        try:
            fd = os.open(self.dir / name, os.O_RDONLY | _OPEN_FLAGS)
        except OSError:
            return False
        try:
            fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
        except OSError as exc:
            return exc.errno == errno.EAGAIN
        else:
            fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
            return False
        finally:
            os.close(fd)

    def make_dir(self) -> None:
        """Create the data directory (and missing parents) with the directory form of ``file_mode``."""
        os.makedirs(self.dir, mode=dir_mode(self.file_mode), exist_ok=True)

    def create(self, name: str) -> None:
        """Create an empty data file under ``name`` unless it exists (rotate starts a day or a shard)."""
        if parse_name(name) is None:
            raise StoreError(errno.EINVAL, f"{name} does not match the file name grammar")
        fd = os.open(self.dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS, self.file_mode)
        os.close(fd)

    # ----------------------------------------------------------------- the link
    def point_link(self, name: str, *, forward_only: bool = True) -> tuple[bool, str | None]:
        """Point the link at ``name`` (a file in this directory), atomically: temp link + rename().

        A regular file in the link's place (the existing system's layout) is first adopted into the dated
        layout under a hard link, so at every instant the link path exists and no line is lost.
        With ``forward_only`` a link that already points at a later file is left alone (another process won).
        Returns (changed, adopted name or None).
        """
        with flock_path(self.dir / LINK_LOCK_NAME, timeout=30):
            adopted = None
            try:
                st = os.lstat(self.link)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                adopted = self._adopt(st)
            elif st is not None and not stat.S_ISLNK(st.st_mode):
                raise StoreError(errno.EEXIST, f"{self.link} is neither a symlink nor a regular file; left alone")
            elif st is not None:
                current = self._link_target_name()
                if current == name:
                    return False, None
                cur, new = parse_name(current or ""), parse_name(name)
                if forward_only and cur is not None and new is not None and cur > new:
                    return False, None
            tmp = self.link.parent / f".{self.link.name}.{os.getpid()}.tmp"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(name, tmp)
            os.rename(tmp, self.link)
            return True, adopted

    def _adopt(self, st: os.stat_result) -> str:
        """Give the legacy regular file a dated name (hard link); the caller then swaps the link over it.

        The name carries the day of the file's mtime in the store's zone (the day it was last written), or today
        when the mtime lies in the future; the next free shard of that day when the day has files already."""
        for entry in os.scandir(self.dir):  # a killed adoption left the same inode under a dated name
            if parse_name(entry.name) and entry.inode() == st.st_ino and entry.is_file(follow_symlinks=False):
                return entry.name
        day = min(day_of(st.st_mtime, self.zone), self.today())  # a future mtime (a wrong clock) means today
        same_day = [p for p in map(parse_name, os.listdir(self.dir)) if p is not None and p.day == day]
        name = file_name(day, max(p.shard for p in same_day) + 1) if same_day else file_name(day)
        os.link(self.link, self.dir / name)
        _fsync_dir(self.dir)
        return name

    # ----------------------------------------------------------------- appending
    def append(self, line: bytes, now: float | None = None) -> str:
        """Append one complete line (ending in ``\\n``) to the current file of the receive day; return its name.

        The writer's contract, whatever other processes' clocks, zones and shard limits say:

        - one write() on an O_APPEND descriptor, so concurrent writers never interleave;
        - under a *shared* flock on the file (writers do not exclude each other; compression, deletion and
          forget take it exclusively, so none of them reads, replaces or unlinks a file under a writer);
        - on **every** append, under that lock, one fstat(): a file that was unlinked or replaced since it was
          opened (``st_nlink == 0``: compressed, pruned or rewritten by another process) is never written to;
          the writer reopens the day's current file instead. A file at ``max_bytes`` moves it to the next shard;
        - the current file of a day is its highest shard, whoever made it: the writer looks for a newer one at
          least every :data:`SHARD_CHECK_APPENDS` appends and on any append :data:`SHARD_CHECK_SECONDS` after
          its last look (one listdir), and moves there.

        On a write error nothing partial is left behind and StoreError is raised.
        """
        now = self.clock() if now is None else now
        if self._fd is None or self._fd_pid != os.getpid() or not (self._bounds[0] <= now < self._bounds[1]):
            self._open_current(now)
        for _attempt in range(64):
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                st = os.fstat(fd)
                full = self.max_bytes is not None and st.st_size >= self.max_bytes
                if st.st_nlink > 0 and not full and not self._newer_shard():
                    try:
                        written = os.write(fd, line)
                    except OSError as exc:
                        raise StoreError(exc.errno, f"cannot append to {self._fd_name}: {exc.strerror}") from None
                    if written != len(line):
                        self._repair(fd, written)
                        raise StoreError(errno.ENOSPC, f"short write to {self._fd_name} ({written} of {len(line)}"
                                                       f" bytes: {os.strerror(errno.ENOSPC)}); the fragment was "
                                                       "removed")
                    return self._fd_name
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            # unlinked or replaced under us, full, or a newer shard exists: move on to the current file
            self._open_current(now, after=self._fd_name if full and st.st_nlink > 0 else None)
        raise StoreError(errno.EAGAIN, "could not settle on a target file after 64 attempts")

    def _newer_shard(self) -> bool:
        """Whether a shard newer than the open file exists (looked up at most every 16 appends or 100 ms)."""
        self._appends_since_look += 1
        tick = time.monotonic()
        if self._appends_since_look < SHARD_CHECK_APPENDS and tick - self._last_look < SHARD_CHECK_SECONDS:
            return False
        self._appends_since_look, self._last_look = 0, tick
        mine = parse_name(self._fd_name)
        try:
            names = os.listdir(self.dir)
        except OSError:
            return False
        target = self.current_target(mine.day, names)
        return parse_name(target).shard > mine.shard

    def _repair(self, fd: int, written: int) -> None:
        """Remove the fragment of a short write: truncate it when nothing was appended after it, else (another
        writer's line follows) overwrite it in place with blanks ending in a newline, an empty line."""
        if written <= 0:
            return
        end = os.lseek(fd, 0, os.SEEK_CUR)  # an O_APPEND write leaves the offset at the end of its data
        start = end - written
        fcntl.flock(fd, fcntl.LOCK_EX)  # wait for writers in flight; hold new ones off
        try:
            if os.fstat(fd).st_size == end:
                os.ftruncate(fd, start)
            else:
                path = self.dir / self._fd_name
                fix = os.open(path, os.O_WRONLY | _OPEN_FLAGS)
                try:
                    os.pwrite(fix, b" " * (written - 1) + b"\n", start)
                finally:
                    os.close(fix)
        except OSError:
            pass

    def _open_current(self, now: float, after: str | None = None) -> None:
        """Open the current target of ``now``'s day; with ``after`` (a full file) the shard after it at least."""
        day = day_of(now, self.zone)
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            self.make_dir()
            names = []
        name = self.current_target(day, names)
        if after is not None:
            full = parse_name(after)
            cur = parse_name(name)
            if full is not None and cur is not None and full.day == day and cur.shard <= full.shard:
                name = file_name(day, full.shard + 1)
        try:
            fd = os.open(self.dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS, self.file_mode)
        except OSError as exc:
            raise StoreError(exc.errno, f"cannot open {self.dir / name}: {exc.strerror}") from None
        self.close()
        self._fd, self._fd_name, self._fd_pid = fd, name, os.getpid()
        self._appends_since_look, self._last_look = 0, time.monotonic()
        self._bounds = day_bounds(day, self.zone)
        try:
            self.point_link(name)
        except (OSError, LockBusy):
            pass  # the link is a convenience for external readers; rotate repairs it

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._fd_name = None

    # ----------------------------------------------------------------- compression
    def compress(self, name: str, level: int = 6, *, threads: int = 2,
                 progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """gzip ``name`` to ``name.gz`` crash-safely; return (bytes before, bytes after).

        temp file in this directory (O_EXCL|O_NOFOLLOW) -> fsync -> rename -> fsync dir -> unlink source.
        A killed run leaves the source intact (and maybe a temp, which the next pass removes) or both the
        source and a complete archive, which :meth:`finish_compress` reconciles.
        """
        if os.path.lexists(self.dir / (name + ".gz")):
            raise StoreError(errno.EEXIST, f"{name}.gz exists already; the pass reconciles the two instead")
        src_fd = self._open_regular(name)
        try:
            fcntl.flock(src_fd, fcntl.LOCK_EX)  # writers of this file wait, then move on
            st = os.fstat(src_fd)
            if st.st_nlink == 0:
                raise StoreError(errno.ENOENT, f"{name} vanished while waiting for its lock")
            with open(src_fd, "rb", closefd=False) as src:
                after = self._write_archive(name + ".gz", [(src, st.st_size)], level, threads, st, progress)
            if os.fstat(src_fd).st_size != st.st_size:
                os.unlink(self.dir / (name + ".gz"))
                raise StoreError(errno.EAGAIN, f"{name} changed size while it was compressed; left as it was")
            os.unlink(self.dir / name)
            _fsync_dir(self.dir)
            return st.st_size, after
        finally:
            os.close(src_fd)

    def finish_compress(self, name: str, level: int = 6) -> tuple[str, int, int]:
        """Both ``name`` and ``name.gz`` exist: make the archive hold every line exactly once, drop the source.

        - archive == source, or archive ends with source (a killed merge): remove the source;
        - source starts with the archive (lines appended since): add the tail as another gzip member;
        - otherwise (a late writer made a fresh file): add the whole source as another member;
        - archive unreadable: set it aside as ``name.gz.corrupt`` and compress the source anew.
        Returns (what was done, bytes before, bytes after).
        """
        import gzip

        from zlib_ng import zlib_ng

        gz_name = name + ".gz"
        src_fd = self._open_regular(name)
        try:
            fcntl.flock(src_fd, fcntl.LOCK_EX)
            st = os.fstat(src_fd)
            try:
                archived, prefix = self._compare_archive(gz_name, src_fd, st.st_size)
            except (EOFError, gzip.BadGzipFile, zlib_ng.error):
                aside = self._set_aside(gz_name)
                os.close(src_fd)
                src_fd = -1
                before, after = self.compress(name, level)
                return f"archive unreadable, set aside as {aside}; recompressed", before, after
            size_gz = os.lstat(self.dir / gz_name).st_size
            if st.st_size == 0 or archived == st.st_size and prefix:
                what = "archive complete; source removed"
            elif prefix:
                self._extend_archive(gz_name, src_fd, archived, st, level)
                what = f"appended {st.st_size - archived} bytes written after the archive"
            elif archived >= st.st_size and self._archive_ends_with(gz_name, src_fd, archived, st.st_size):
                what = "archive already holds the source; source removed"
            else:
                self._extend_archive(gz_name, src_fd, 0, st, level)
                what = "source differs from the archive; appended it whole"
            os.unlink(self.dir / name)
            _fsync_dir(self.dir)
            return what, st.st_size + size_gz, os.lstat(self.dir / gz_name).st_size
        finally:
            if src_fd >= 0:
                os.close(src_fd)

    def remove_temp(self, name: str) -> int:
        """Remove a temp file left by a killed pass or forget (the source is still there, untouched)."""
        if not any(name.endswith(sfx) and parse_name(name[: -len(sfx)]) for sfx in (TEMP_SUFFIX, FORGET_SUFFIX)):
            raise StoreError(errno.EINVAL, f"{name} is not a compression temp file")
        st = os.lstat(self.dir / name)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(errno.EINVAL, f"{name} is not a regular file; left alone")
        os.unlink(self.dir / name)
        return st.st_size

    def delete(self, name: str) -> int:
        """Delete a data file or a set-aside archive (never a symlink, never a name outside the grammar); return
        its size."""
        if parse_name(name) is None and aside_day(name) is None:
            raise StoreError(errno.EINVAL, f"{name} does not match the file name grammar; left alone")
        fd = self._open_regular(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a late writer finishes its line first, then moves on
            size = os.fstat(fd).st_size
            os.unlink(self.dir / name)
        finally:
            os.close(fd)
        return size

    def read_data(self, name: str, fd: int | None = None) -> tuple[bytes, str | None]:
        """The uncompressed bytes of a data file (plain, .gz, or an archive set aside), and None; or, for a
        damaged archive, every byte that can be decompressed and why the rest cannot."""
        own = fd is None
        fd = self._open_regular(name) if own else fd
        try:
            with open(fd, "rb", closefd=False) as raw:
                raw.seek(0)
                body = raw.read()
        finally:
            if own:
                os.close(fd)
        if not (name.endswith(".gz") or ASIDE_SUFFIX in name):
            return body, None
        return gunzip_prefix(body)

    def rewrite_without(self, name: str, keep: Callable[[bytes], bool], level: int = 6, *,
                        dry_run: bool = False) -> tuple[int, int, int]:
        """Drop the lines for which ``keep`` is false from one data file (plain or .gz); return (lines removed,
        bytes before, bytes after). The file is read once, under the exclusive flock, so no writer appends while
        it is filtered; a filtered copy is written to ``NAME.forget.tmp``, fsynced and renamed over the file (mode
        and mtime kept). A writer that held the old file notices the replacement on its next append and reopens.
        A damaged archive is never rewritten: :class:`UnreadableFile` says how much of it was searched."""
        from zlib_ng import gzip_ng

        fd = self._open_regular(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            data, damage = self.read_data(name, fd)
            kept, removed = [], 0
            for line in data.splitlines(keepends=True):
                if keep(line):
                    kept.append(line)
                else:
                    removed += 1
            if damage is not None:
                raise UnreadableFile(name, damage, removed)
            if removed == 0 or dry_run:
                return removed, st.st_size, st.st_size
            body = b"".join(kept)
            if name.endswith(".gz"):
                body = gzip_ng.compress(body, level, mtime=int(st.st_mtime))
            tmp = self.dir / (name + FORGET_SUFFIX)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, stat.S_IMODE(st.st_mode))
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(out, view):]
                os.fsync(out)
            except BaseException:
                os.close(out)
                os.unlink(tmp)
                raise
            os.close(out)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.rename(tmp, self.dir / name)
            _fsync_dir(self.dir)
            return removed, st.st_size, len(body)
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- helpers
    def _open_regular(self, name: str) -> int:
        try:
            fd = os.open(self.dir / name, os.O_RDONLY | _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(exc.errno, f"{name} is a symlink; left alone") from None
            raise StoreError(exc.errno, f"cannot open {name}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(errno.EINVAL, f"{name} is not a regular file; left alone")
        return fd

    def _write_archive(self, gz_name: str, parts, level: int, threads: int, st: os.stat_result,
                       progress: Callable[[int], None] | None, head: bytes = b"") -> int:
        """Write ``head`` (raw bytes of an existing archive) then a gzip member of ``parts`` to gz_name
        via a temp file; keep mode and mtime of the source. Returns the archive size."""
        from zlib_ng import gzip_ng, gzip_ng_threaded

        tmp = self.dir / (gz_name[:-3] + TEMP_SUFFIX)
        total = sum(length for _, length in parts)
        out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, stat.S_IMODE(st.st_mode))
        try:
            with open(out_fd, "wb", closefd=False) as raw:
                raw.write(head)
                if threads > 1 and total >= 2 * _CHUNK:  # below that, one core finishes in ~20 ms
                    gz = gzip_ng_threaded.open(raw, "wb", compresslevel=level, threads=threads)
                else:
                    gz = gzip_ng.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=int(st.st_mtime))
                with gz:
                    for fh, length in parts:
                        left = length
                        while left > 0:
                            chunk = fh.read(min(_CHUNK, left))
                            if not chunk:
                                raise StoreError(errno.EIO, f"{gz_name[:-3]} shrank while it was compressed")
                            gz.write(chunk)
                            left -= len(chunk)
                            if progress is not None:
                                progress(len(chunk))
            os.fchmod(out_fd, stat.S_IMODE(st.st_mode))
            os.fsync(out_fd)
            size = os.fstat(out_fd).st_size
        except BaseException:
            os.close(out_fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        os.close(out_fd)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, self.dir / gz_name)
        _fsync_dir(self.dir)
        return size

    def _compare_archive(self, gz_name: str, src_fd: int, src_size: int) -> tuple[int, bool]:
        """Decompress the archive once: (its uncompressed length, whether the source starts with it)."""
        from zlib_ng import gzip_ng

        length, prefix = 0, True
        with gzip_ng.open(self.dir / gz_name, "rb") as gz:
            while chunk := gz.read(_CHUNK):
                if prefix:
                    if length + len(chunk) > src_size or os.pread(src_fd, len(chunk), length) != chunk:
                        prefix = False
                length += len(chunk)
        return length, prefix

    def _archive_ends_with(self, gz_name: str, src_fd: int, archived: int, src_size: int) -> bool:
        from zlib_ng import gzip_ng

        skip, pos = archived - src_size, 0
        with gzip_ng.open(self.dir / gz_name, "rb") as gz:
            while chunk := gz.read(_CHUNK):
                end = pos + len(chunk)
                if end > skip:
                    part = chunk[max(0, skip - pos):]
                    offset = max(pos, skip) - skip
                    if os.pread(src_fd, len(part), offset) != part:
                        return False
                pos = end
        return True

    def _extend_archive(self, gz_name: str, src_fd: int, start: int, st: os.stat_result, level: int) -> None:
        with open(self.dir / gz_name, "rb") as old:
            head = old.read()
        with open(src_fd, "rb", closefd=False) as src:
            src.seek(start)
            self._write_archive(gz_name, [(src, st.st_size - start)], level, 1, st, None, head=head)

    def _set_aside(self, gz_name: str) -> str:
        base = gz_name[:-3] + ASIDE_SUFFIX
        name, n = base, 1
        while os.path.lexists(self.dir / name):
            n += 1
            name = f"{base}.{n}"
        os.rename(self.dir / gz_name, self.dir / name)
        _fsync_dir(self.dir)
        return name
