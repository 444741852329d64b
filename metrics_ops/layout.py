"""The layout of the data directory: file names, the day of a file, the current target, the listing, the link.

::

    metrics-2026-11-25.jsonl        day file (receive day in METRICS_TZ)
    metrics-2026-11-25.1.jsonl      size shards, N = 1, 2, ... (numeric order: .10 after .9)
    metrics-2026-11-22.jsonl.gz     archives: the same names + .gz
    metrics.jsonl -> metrics-2026-11-25.1.jsonl    symlink to the current file (METRICS_JSONL)
    rollups/rollup-2026-11-24.json  a complete day's counts (metrics_ops.rollups); never listed as data
    .metrics-2026-11-22.jsonl.gz.tmp          a compression in progress (or killed)
    .metrics-2026-11-24.jsonl.forget.tmp      a forget rewrite in progress (or killed)
    .metrics-2026-11-20.jsonl.gz.corrupt      an unreadable archive set aside
    .metrics-ops.archived/metrics-2026-11-22.jsonl.gz.json   what was uploaded to the archive (metrics_ops.offsite)

The tool's own temporary and set-aside versions of a data file start with a dot, so the reading glob
``metrics-*.jsonl*`` (DuckDB, ``zcat``) never matches them, whatever a killed pass left behind. The names
without the dot that earlier versions made are still recognised (removed, searched, pruned, or renamed).

Names that do not match the grammar are never opened, renamed or deleted; symlinks are never followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from metrics_ops.changes import CHANGES_NAME, record_change
from metrics_ops.locks import OPEN_FLAGS, flock_path

PREFIX = "metrics-"
# One grammar for every number a writer can produce: shards are unbounded (``.1000000`` follows ``.999999``).
_NAME = re.compile(r"^metrics-(\d{4})-(\d{2})-(\d{2})(?:\.([1-9]\d*))?\.jsonl(\.gz)?$")
TEMP_SUFFIX = ".gz.tmp"  # .metrics-YYYY-MM-DD[.N].jsonl.gz.tmp: a compression in progress (or killed)
ASIDE_SUFFIX = ".gz.corrupt"  # .metrics-...jsonl.gz.corrupt[.N]: an unreadable archive set aside
FORGET_SUFFIX = ".forget.tmp"  # .metrics-...jsonl[.gz].forget.tmp: a `forget` rewrite in progress (or killed)
HIDDEN = "."  # leads the names of the tool's own versions of a data file: outside the glob metrics-*.jsonl*
LOCK_NAME = ".metrics-ops.lock"  # one maintenance pass at a time
LINK_LOCK_NAME = ".metrics-ops.link.lock"  # link swaps and legacy adoption, across processes
STATE_NAME = ".metrics-ops.state"  # serve's shared ring and counters (metrics_ops.serve.shared)
ROLLUP_DIR = "rollups"  # daily rollups (metrics_ops.rollups): a directory, so no data name can match
STATUS_NAME = ".metrics-ops.status"  # the last pass's one-line status (metrics_ops.health; METRICS_STATUS_FILE)
ARCHIVED_DIR = ".metrics-ops.archived"  # the archive record (metrics_ops.offsite): a directory, never data
#: names in the data directory that belong to the tool, never data: a setting may not point the link at them
RESERVED_NAMES = frozenset({LOCK_NAME, LINK_LOCK_NAME, STATE_NAME, STATUS_NAME, CHANGES_NAME, ARCHIVED_DIR})
DEFAULT_FILE_MODE = 0o640  # data files: owner and group read; everyone else nothing (METRICS_FILE_MODE)
LINK_LOCK_TIMEOUT = 30.0  # seconds a link swap waits for another process's swap


class StoreError(OSError):
    """A store operation failed; the message says which file and why."""

    def __str__(self) -> str:  # the message alone: it names the file and the reason already
        return self.strerror if self.strerror else super().__str__()


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


def temp_name(name: str, suffix: str) -> str:
    """The temporary version of data file ``name`` (``suffix``: TEMP_SUFFIX, FORGET_SUFFIX): hidden from the
    reading glob."""
    return HIDDEN + name + suffix


def aside_name(gz_name: str, n: int = 1) -> str:
    """The name an unreadable archive ``X.jsonl.gz`` is set aside under: ``.X.jsonl.gz.corrupt``, or with
    ``n`` > 1 (the name is taken) ``.X.jsonl.gz.corrupt.N``."""
    base = HIDDEN + gz_name.removesuffix(".gz") + ASIDE_SUFFIX
    return base if n == 1 else f"{base}.{n}"


def is_old_name(name: str) -> bool:
    """Whether ``name`` is a temporary or set-aside version named as earlier versions did (no leading dot): it
    matches the reading glob ``metrics-*.jsonl*``."""
    return name.startswith(PREFIX)


def _visible(name: str) -> str:
    return name[len(HIDDEN):] if name.startswith(HIDDEN + PREFIX) else name


def aside_day(name: str) -> date | None:
    """The day of an archive set aside as unreadable (``.metrics-...jsonl.gz.corrupt[.N]``, or an earlier
    version's ``metrics-...jsonl.gz.corrupt[.N]``), else None."""
    base, sep, tail = _visible(name).partition(ASIDE_SUFFIX)
    if not sep or (tail and not (tail[0] == "." and tail[1:].isdigit())):
        return None
    parsed = parse_name(base + ".gz")
    return parsed.day if parsed is not None else None


def is_temp(name: str) -> bool:
    """Whether ``name`` is the temp file of a compression or a forget rewrite of a data file (either naming)."""
    name = _visible(name)
    return any(name.endswith(sfx) and parse_name(name[: -len(sfx)]) for sfx in (TEMP_SUFFIX, FORGET_SUFFIX))



def unusable_dir(directory: Path) -> str | None:
    """Why ``directory`` cannot be a data directory ("does not exist", "is not a directory", "cannot be looked
    up: File name too long"); None when it can. Every command and serve word a bad data directory with it."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return "is not a directory" if os.path.lexists(directory) else "does not exist"  # lexists: a dangling link
    except NotADirectoryError:
        return "does not exist (a part of its path is a file)"
    except OSError as exc:  # a name over 255 bytes, a /proc link of another process, a symlink loop
        return f"cannot be looked up: {exc.strerror or exc}"
    return None if stat.S_ISDIR(st.st_mode) else "is not a directory"


class NotARegularFile(OSError):
    """A small file to read is a FIFO, socket or device (``kind`` says which), or larger than its limit."""

    def __init__(self, path, kind: str):
        super().__init__(f"{path}: {kind}")
        self.kind = kind


def read_small_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a small file the tool reads whole (a settings file, the status line): a regular file, or
    /dev/null (empty), of at most ``limit`` bytes. A FIFO (even one put in its place since it was looked at) is
    refused at once, never waited on for a writer; a device is not read without end (NotARegularFile, ``kind``
    "a FIFO, socket or device" or "larger than N bytes"); open's own errors as they are."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once, to be refused
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode) and not os.path.samestat(st, os.stat(os.devnull)):
            raise NotARegularFile(path, "a FIFO, socket or device")
        raw = os.read(fd, limit + 1) if st.st_size <= limit else b""
    finally:
        os.close(fd)
    if st.st_size > limit or len(raw) > limit:
        raise NotARegularFile(path, f"larger than {limit} bytes")
    return raw


def real_path(path: Path) -> Path:
    """``path`` absolute, symlinks resolved as far as they go; as given (made absolute) where a link cannot be
    read (a /proc link of another process), as given where the working directory is gone: Path.resolve raises
    on a symlink loop, os.path.realpath on such a link, os.path.abspath without a working directory."""
    try:
        return Path(os.path.realpath(path))
    except OSError:
        pass
    try:
        return Path(os.path.abspath(path))
    except OSError:  # the working directory was deleted: a relative path stays as it is
        return Path(path)


def inside_tree(path: Path, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` itself or lies anywhere under it (``rollups/`` included), symlinks
    resolved on both sides: a file the tool writes for someone else (the status file at a place of the operator's
    choosing, the health textfile, export's output) never goes there, where passes, report and forget read,
    compress, roll up or delete what they find."""
    target, tree = real_path(path), real_path(directory)
    return target == tree or tree in target.parents


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


def current_target(directory: Path, day: date, names: list[str] | None = None) -> str:
    """The file writers append to on ``day``: the highest shard of that day (an archived one is skipped)."""
    if names is None:
        names = os.listdir(directory)
    shards = [p for p in map(parse_name, names) if p is not None and p.day == day]
    if not shards:
        return file_name(day)
    top = max(p.shard for p in shards)
    archived = any(p.gz for p in shards if p.shard == top)
    return file_name(day, top + 1 if archived else top)


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


def scan(directory: Path, link: Path) -> Listing:
    """List ``directory`` by the grammar; ``link`` is the link's path (its name is not data)."""
    files, temps, aside, unknown = [], [], [], []
    link_target, legacy = None, False
    with os.scandir(directory) as it:
        for entry in it:
            name = entry.name
            if name == link.name:
                if entry.is_symlink():
                    link_target = link_target_name(directory, link)
                elif entry.is_file(follow_symlinks=False):
                    legacy = True
                else:
                    unknown.append(name)
                continue
            if name in RESERVED_NAMES or name.startswith(STATUS_NAME + "."):  # and the status file's temp files
                continue
            if name == ROLLUP_DIR and entry.is_dir(follow_symlinks=False):
                continue
            parsed = parse_name(name)
            if parsed is not None and entry.is_file(follow_symlinks=False):
                files.append(parsed)
            elif is_temp(name) and entry.is_file(follow_symlinks=False):
                temps.append(name)
            elif aside_day(name) is not None and entry.is_file(follow_symlinks=False):
                aside.append(name)
            elif name.startswith(f".{link.name}.") and entry.is_symlink():
                continue  # a link swap in progress in another process
            else:
                unknown.append(name)  # includes matching names that are symlinks or directories
    files.sort()
    return Listing(files, sorted(temps), sorted(aside), sorted(unknown), link_target, legacy)


def link_target_name(directory: Path, link: Path) -> str | None:
    """The file name the link points at, when it points at a plain name inside ``directory``."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    p = Path(target)
    if not p.is_absolute():
        p = link.parent / p
    return p.name if real_path(p.parent) == real_path(directory) else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(directory: Path, name: str) -> int:
    """A read-only descriptor of the regular file ``name`` (never through a symlink), or StoreError."""
    try:
        fd = os.open(directory / name, os.O_RDONLY | OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(exc.errno, f"{name} is a symlink; left alone") from None
        raise StoreError(exc.errno, f"cannot open {name}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(errno.EINVAL, f"{name} is not a regular file; left alone")
    return fd


# ----------------------------------------------------------------- files of the directory
def size_of(directory: Path, name: str) -> int:
    try:
        return os.lstat(directory / name).st_size
    except FileNotFoundError:
        return 0


def held_for_writing(directory: Path, name: str) -> bool:
    """Whether any process holds ``name`` open for writing (serve's current file), asked of the kernel: a
    read lease (Linux F_SETLEASE) cannot be taken on a file open for writing. False when it cannot tell
    (another owner without CAP_LEASE, a file system without leases, not Linux)."""
    try:
        fd = os.open(directory / name, os.O_RDONLY | OPEN_FLAGS)
    except OSError:
        return False
    try:
        return fd_held_for_writing(fd)
    finally:
        os.close(fd)


def fd_held_for_writing(fd: int) -> bool:
    """:func:`held_for_writing` for the file of a read-only descriptor."""
    set_lease = getattr(fcntl, "F_SETLEASE", None)
    if set_lease is None:
        return False
    try:
        fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
    return False


def make_dir(directory: Path, file_mode: int) -> None:
    """Create the data directory (and missing parents) with the directory form of ``file_mode``."""
    os.makedirs(directory, mode=dir_mode(file_mode), exist_ok=True)


def create(directory: Path, name: str, file_mode: int) -> None:
    """Create an empty data file under ``name`` unless it exists (rotate starts a day or a shard)."""
    if parse_name(name) is None:
        raise StoreError(errno.EINVAL, f"{name} does not match the file name grammar")
    fd = os.open(directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, file_mode)
    os.close(fd)


def remove_temp(directory: Path, name: str) -> int:
    """Remove a temp file left by a killed pass or forget (the source is still there, untouched)."""
    if not is_temp(name):
        raise StoreError(errno.EINVAL, f"{name} is not a compression temp file")
    st = os.lstat(directory / name)
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(errno.EINVAL, f"{name} is not a regular file; left alone")
    os.unlink(directory / name)
    return st.st_size


def delete(directory: Path, name: str) -> int:
    """Delete a data file or a set-aside archive (never a symlink, never a name outside the grammar); return
    its size."""
    if parse_name(name) is None and aside_day(name) is None:
        raise StoreError(errno.EINVAL, f"{name} does not match the file name grammar; left alone")
    fd = open_regular(directory, name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a late writer finishes its line first, then moves on
        size = os.fstat(fd).st_size
        record_change(directory)  # before the unlink: a writer that held this file will look again
        os.unlink(directory / name)
    finally:
        os.close(fd)
    return size


# ----------------------------------------------------------------- the link
def point_link(directory: Path, link: Path, name: str, *, zone: ZoneInfo, clock: Callable[[], float],
               forward_only: bool = True, timeout: float = LINK_LOCK_TIMEOUT) -> tuple[bool, str | None]:
    """Point the link at ``name`` (a file in ``directory``), atomically: temp link + rename().

    A regular file in the link's place (the existing system's layout) is first adopted into the dated
    layout under a hard link, so at every instant the link path exists and no line is lost.
    With ``forward_only`` a link that already points at a later file is left alone (another process won).
    Waits up to ``timeout`` seconds for another process's swap (then :class:`LockBusy`).
    Returns (changed, adopted name or None).
    """
    with flock_path(directory / LINK_LOCK_NAME, timeout=timeout):
        adopted = None
        try:
            st = os.lstat(link)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            adopted = _adopt(directory, link, st, zone=zone, clock=clock)
        elif st is not None and not stat.S_ISLNK(st.st_mode):
            raise StoreError(errno.EEXIST, f"{link} is neither a symlink nor a regular file; left alone")
        elif st is not None:
            current = link_target_name(directory, link)
            if current == name:
                return False, None
            cur, new = parse_name(current or ""), parse_name(name)
            if forward_only and cur is not None and new is not None and cur > new:
                return False, None
        tmp = link.parent / f".{link.name}.{os.getpid()}.tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(name, tmp)
        os.rename(tmp, link)
        return True, adopted


def _adopt(directory: Path, link: Path, st: os.stat_result, *, zone: ZoneInfo, clock: Callable[[], float]) -> str:
    """Give the legacy regular file a dated name (hard link); the caller then swaps the link over it.

    The name carries the day of the file's mtime in ``zone`` (the day it was last written), or today (by
    ``clock``) when the mtime lies in the future; the next free shard of that day when the day has files already."""
    for entry in os.scandir(directory):  # a killed adoption left the same inode under a dated name
        if parse_name(entry.name) and entry.inode() == st.st_ino and entry.is_file(follow_symlinks=False):
            return entry.name
    day = min(day_of(st.st_mtime, zone), day_of(clock(), zone))  # a future mtime (a wrong clock) means today
    same_day = [p for p in map(parse_name, os.listdir(directory)) if p is not None and p.day == day]
    name = file_name(day, max(p.shard for p in same_day) + 1) if same_day else file_name(day)
    os.link(link, directory / name)
    fsync_dir(directory)
    return name
