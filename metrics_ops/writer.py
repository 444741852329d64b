"""The append contract: serve's writer, the one way a line reaches a data file.

One ``write()`` per line (per batch of complete lines on serve's batch route) on an ``O_APPEND`` descriptor while
holding ``flock(LOCK_SH)`` on that file. The lock is what makes compression, deletion and forget safe against a
writer that picked its file a moment before midnight: they take the same lock exclusively, and a writer that then
finds its file unlinked (``st_nlink == 0``) reopens the current one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops.changes import RECHECK_SECONDS, ChangeCounter
from metrics_ops.layout import StoreError, current_target, day_bounds, day_of, file_name, make_dir, parse_name
from metrics_ops.locks import OPEN_FLAGS, this_pid

# A writer looks for a newer shard (one listdir) on its first append this long after its last look. Measured: a look
# every 16 appends cost ~10 % of serve's throughput; every 100 ms costs nothing measurable, and bounds the lag.
SHARD_CHECK_SECONDS = 0.1


class Writer:
    """The open current file of one process. ``on_new_file`` hears of every file it opens (to point the link)."""

    def __init__(self, directory: Path, zone: ZoneInfo, *, max_bytes: int | None, file_mode: int,
                 on_new_file: Callable[[str], None]):
        self.dir = directory
        self.zone = zone
        self.max_bytes = max_bytes
        self.file_mode = file_mode
        self.on_new_file = on_new_file
        self._fd: int | None = None
        self._fd_name: str | None = None
        self._fd_pid = 0
        self._bounds = (0.0, 0.0)
        self._last_look = 0.0
        self._changes = ChangeCounter(directory)
        self._seen_changes: int | None = None
        self._last_stat = 0.0

    def open_name(self, now: float) -> str | None:
        """The name of this process's open file while it is still the file of ``now``'s day, else None."""
        if self._fd is not None and self._fd_pid == this_pid() and self._bounds[0] <= now < self._bounds[1]:
            return self._fd_name
        return None

    def append(self, line: bytes, now: float) -> str:
        """Append one complete line (ending in ``\\n``), or several in one write (serve's batch: all or none), to the
        current file of ``now``'s day; return its name.

        The writer's contract, whatever other processes' clocks, zones and shard limits say:

        - one write() on an O_APPEND descriptor, so concurrent writers never interleave;
        - under a *shared* flock on the file (writers do not exclude each other; compression, deletion and
          forget take it exclusively, so none of them reads, replaces or unlinks a file under a writer);
        - on **every** append, under that lock, it notices whether its file was unlinked or replaced since it was
          opened (compressed, pruned or rewritten by another process): the directory's change counter
          (:mod:`metrics_ops.changes`, a memory load) says whether any pass changed a data file since its last
          look, and only then an fstat() checks ``st_nlink``; a gone file is never written to, the writer reopens
          the day's current file instead. With ``max_bytes`` it fstat()s every append and moves to the next
          shard at the limit;
        - the current file of a day is its highest shard, whoever made it: the writer looks for a newer one on
          its first append :data:`SHARD_CHECK_SECONDS` after its last look (one listdir), and moves there.

        On a write error nothing partial is left behind and StoreError is raised.
        """
        if self.open_name(now) is None:
            self._open_current(now)
        for _attempt in range(64):
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                gone = full = False
                tick = time.monotonic()
                if self._must_stat(tick):
                    st = os.fstat(fd)
                    gone = st.st_nlink == 0
                    full = self.max_bytes is not None and st.st_size >= self.max_bytes
                if not gone and not full and not self._newer_shard(tick):
                    self._write(fd, line)
                    return self._fd_name
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            # unlinked or replaced under us, full, or a newer shard exists: move on to the current file
            self._open_current(now, after=self._fd_name if full and not gone else None)
        raise StoreError(errno.EAGAIN, "could not settle on a target file after 64 attempts")

    def _write(self, fd: int, line: bytes) -> None:
        try:
            written = os.write(fd, line)
        except OSError as exc:
            raise StoreError(exc.errno, f"cannot append to {self._fd_name}: {exc.strerror}") from None
        if written != len(line):
            self._repair(fd, written)
            raise StoreError(errno.ENOSPC, f"short write to {self._fd_name} ({written} of {len(line)}"
                                           f" bytes: {os.strerror(errno.ENOSPC)}); the fragment was removed")

    def _must_stat(self, tick: float) -> bool:
        """Whether this append must fstat() its file (under the shared lock): when the change counter moved (a
        pass of this tool unlinked or replaced a data file), when there is no counter, with a shard limit (the
        size), and at least every RECHECK_SECONDS (files removed by other tools)."""
        changes = self._changes.value()
        if (changes is not None and changes == self._seen_changes and self.max_bytes is None
                and tick - self._last_stat < RECHECK_SECONDS):
            return False
        self._seen_changes, self._last_stat = changes, tick
        return True

    def _newer_shard(self, tick: float) -> bool:
        """Whether a shard newer than the open file exists (looked up at most every 100 ms)."""
        if tick - self._last_look < SHARD_CHECK_SECONDS:
            return False
        self._last_look = tick
        mine = parse_name(self._fd_name)
        try:
            names = os.listdir(self.dir)
        except OSError:
            return False
        target = current_target(self.dir, mine.day, names)
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
                fix = os.open(path, os.O_WRONLY | OPEN_FLAGS)
                try:
                    os.pwrite(fix, b" " * (written - 1) + b"\n", start)
                finally:
                    os.close(fix)
        except OSError:
            pass

    def _open_current(self, now: float, after: str | None = None) -> None:
        """Open the current target of ``now``'s day; with ``after`` (a full file) the shard after it at least."""
        day = day_of(now, self.zone)
        self._changes.attach()  # once per process (a no-op when mapped), never on the per-append path
        changes = self._changes.value()  # read before the open: a change after it moves the counter past this
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            make_dir(self.dir, self.file_mode)
            names = []
        name = current_target(self.dir, day, names)
        if after is not None:
            full = parse_name(after)
            cur = parse_name(name)
            if full is not None and cur is not None and full.day == day and cur.shard <= full.shard:
                name = file_name(day, full.shard + 1)
        try:
            fd = os.open(self.dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, self.file_mode)
        except OSError as exc:
            raise StoreError(exc.errno, f"cannot open {self.dir / name}: {exc.strerror}") from None
        try:
            _end_last_line(self.dir, name, fd)
        except OSError as exc:
            os.close(fd)
            raise StoreError(exc.errno, f"cannot append to {self.dir / name}: {exc.strerror}") from None
        self.close()
        self._fd, self._fd_name, self._fd_pid = fd, name, this_pid()
        self._last_look = self._last_stat = time.monotonic()
        self._seen_changes = changes
        self._bounds = day_bounds(day, self.zone)
        self.on_new_file(name)

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == this_pid():
            os.close(self._fd)
        self._fd = None
        self._fd_name = None


def _end_last_line(directory: Path, name: str, fd: int) -> None:
    """A file opened for appending whose last byte is not a newline (a torn tail after a crash, a legacy file
    adopted without its final newline) gets one first, so a stored line always starts a line of its own and
    never turns the tail into one long invalid line. Once per open, never per append: one fstat() for an empty
    file, else a one-byte read; only a tail without its newline takes the exclusive lock (a writer mid-``write()``
    finishes first; two writers opening the same file add one newline, not two) and is looked at again."""
    if os.fstat(fd).st_size == 0:
        return
    reader = os.open(directory / name, os.O_RDONLY | OPEN_FLAGS)  # fd is write-only
    try:
        if os.fstat(reader).st_ino != os.fstat(fd).st_ino or _last_byte(reader) in (b"\n", b""):
            return  # ends well (or replaced since the open: the append loop notices and reopens)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if _last_byte(reader) not in (b"\n", b""):
                os.write(fd, b"\n")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(reader)


def _last_byte(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, 1, size - 1) if size else b""
