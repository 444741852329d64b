"""Archives: compression, reconciling a source with its archive, reading archives, rewriting a file in place.

Every new version of a file is written by :func:`replace_atomically`: temp file in the same directory
(O_EXCL|O_NOFOLLOW, named with a leading dot: outside the reading glob ``metrics-*.jsonl*``) -> fsync -> rename
-> fsync the directory. A killed compression leaves the source intact
(and maybe a temp, which the next pass removes) or both the source and a complete archive, which
:func:`finish_compress` reconciles so that every line is present exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from metrics_ops.changes import record_change
from metrics_ops.layout import (
    ASIDE_SUFFIX,
    FORGET_SUFFIX,
    TEMP_SUFFIX,
    StoreError,
    aside_day,
    aside_name,
    fsync_dir,
    is_old_name,
    open_regular,
    temp_name,
)
from metrics_ops.lines import file_blocks, inflated
from metrics_ops.locks import OPEN_FLAGS

_CHUNK = 1 << 20


class UnreadableFile(StoreError):
    """A damaged archive: ``found`` lines matched in its readable part; the rest could not be searched."""

    def __init__(self, name: str, why: str, found: int):
        super().__init__(errno.EIO, f"{name}: {why}")
        self.name, self.why, self.found = name, why, found


def replace_atomically(directory: Path, tmp_name: str, name: str, st: os.stat_result | None,
                       write: Callable[[int], None], mode: int = 0o644) -> int:
    """Put a new version of ``name`` in place: ``write(fd)`` fills ``tmp_name`` (created with the mode of
    ``st``), then fsync, the atime and mtime of ``st``, rename over ``name``, fsync the directory. On any error
    the temp file is removed and ``name`` is untouched. Returns the size of the new version. Without ``st``
    (a report file written anew, such as the health textfile) the file gets ``mode`` and the current times."""
    tmp = directory / tmp_name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS,
                 stat.S_IMODE(st.st_mode) if st is not None else mode)
    try:
        write(fd)
        os.fsync(fd)
        size = os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    if st is not None:
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tmp, directory / name)
    fsync_dir(directory)
    return size


def compress(directory: Path, name: str, level: int = 6, *, threads: int = 2,
             progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """gzip ``name`` to ``name.gz`` crash-safely, under the file's exclusive flock (writers wait, then move
    on); return (bytes before, bytes after)."""
    if os.path.lexists(directory / (name + ".gz")):
        raise StoreError(errno.EEXIST, f"{name}.gz exists already; the pass reconciles the two instead")
    src_fd = open_regular(directory, name)
    try:
        fcntl.flock(src_fd, fcntl.LOCK_EX)  # writers of this file wait, then move on
        st = os.fstat(src_fd)
        if st.st_nlink == 0:
            raise StoreError(errno.ENOENT, f"{name} vanished while waiting for its lock")
        record_change(directory)  # before anything changes: writers of this file will look again
        with open(src_fd, "rb", closefd=False) as src:
            after = _write_archive(directory, name + ".gz", [(src, st.st_size)], level, threads, st, progress)
        if os.fstat(src_fd).st_size != st.st_size:
            os.unlink(directory / (name + ".gz"))
            raise StoreError(errno.EAGAIN, f"{name} changed size while it was compressed; left as it was")
        os.unlink(directory / name)
        fsync_dir(directory)
        return st.st_size, after
    finally:
        os.close(src_fd)


def finish_compress(directory: Path, name: str, level: int = 6) -> tuple[str, int, int]:
    """Both ``name`` and ``name.gz`` exist: make the archive hold every line exactly once, drop the source.

    - archive == source, or archive ends with source (a killed merge): remove the source;
    - source starts with the archive (lines appended since): add the tail as another gzip member;
    - otherwise (a late writer made a fresh file): add the whole source as another member (after a newline when
      the archive's last line has none: a line of the source never continues one of the archive);
    - archive unreadable: set it aside as ``.name.gz.corrupt`` and compress the source anew.
    Returns (what was done, bytes before, bytes after). Readers read a pair the same way (:func:`compare_pair`).
    """
    gz_name = name + ".gz"
    src_fd = open_regular(directory, name)
    try:
        fcntl.flock(src_fd, fcntl.LOCK_EX)
        record_change(directory)  # before anything changes: writers of this file will look again
        st = os.fstat(src_fd)
        found = compare_pair(directory, gz_name, src_fd, st.st_size)
        if found.plan == UNREADABLE:
            aside = _set_aside(directory, gz_name)
            os.close(src_fd)
            src_fd = -1
            before, after = compress(directory, name, level)
            return f"archive unreadable, set aside as {aside}; recompressed", before, after
        size_gz = os.lstat(directory / gz_name).st_size
        if found.plan == COMPLETE:
            what = "archive complete; source removed"
        elif found.plan == APPEND_TAIL:
            _extend_archive(directory, gz_name, src_fd, found.archived, st, level)
            what = f"appended {st.st_size - found.archived} bytes written after the archive"
        elif found.plan == CONTAINED:
            what = "archive already holds the source; source removed"
        else:
            _extend_archive(directory, gz_name, src_fd, 0, st, level, lead=b"" if found.newline_end else b"\n")
            what = "source differs from the archive; appended it whole"
        os.unlink(directory / name)
        fsync_dir(directory)
        return what, st.st_size + size_gz, os.lstat(directory / gz_name).st_size
    finally:
        if src_fd >= 0:
            os.close(src_fd)


# what reconciling a source with its archive does (compare_pair)
UNREADABLE, COMPLETE, APPEND_TAIL, CONTAINED, APPEND_WHOLE = "unreadable", "complete", "tail", "contained", "whole"


class PairComparison(NamedTuple):
    plan: str
    archived: int  # bytes of data in the archive (its readable part when UNREADABLE)
    newline_end: bool  # the archive's data ends with a newline (or is empty)
    why: str | None  # UNREADABLE: why


def compare_pair(directory: Path, gz_name: str, src_fd: int, src_size: int) -> PairComparison:
    """How the archive ``gz_name`` and the first ``src_size`` bytes of its source compare: what
    :func:`finish_compress` will do with them. Decompresses the archive once (twice when it is longer than the
    source), in constant memory."""
    try:
        gz_fd = open_regular(directory, gz_name)
    except StoreError as exc:
        return PairComparison(UNREADABLE, 0, True, str(exc))
    try:
        length, prefix, last = 0, True, b"\n"
        chunks = inflated(gz_fd)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration as stop:
                why = stop.value
                break
            if prefix and (length + len(chunk) > src_size or os.pread(src_fd, len(chunk), length) != chunk):
                prefix = False
            length += len(chunk)
            last = chunk[-1:]
        if why is not None:
            plan = UNREADABLE
        elif src_size == 0 or length == src_size and prefix:
            plan = COMPLETE
        elif prefix:
            plan = APPEND_TAIL
        elif length >= src_size and _archive_ends_with(gz_fd, src_fd, length, src_size):
            plan = CONTAINED
        else:
            plan = APPEND_WHOLE
        return PairComparison(plan, length, last == b"\n", why)
    finally:
        os.close(gz_fd)


def search(directory: Path, name: str, keep: Callable[[bytes], bool]) -> tuple[int, str | None]:
    """How many lines of a data file (plain, .gz, or an archive set aside) ``keep`` refuses, read in constant
    memory, and why the file could not be read to its end (None: it was)."""
    fd = open_regular(directory, name)
    try:
        problems: list = []
        found = sum(1 for block in file_blocks(fd, name, problems, {}) for line in block.split(b"\n")
                    if line and not keep(line))
    finally:
        os.close(fd)
    return found, (problems[0].why if problems else None)


@dataclass
class Rewrite:
    """What :func:`rewrite_without` did: lines removed, sizes, and lines over the bound that hold an id's text."""

    removed: int
    bytes_before: int
    bytes_after: int
    unsearched: int = 0


def rewrite_without(directory: Path, name: str, keep: Callable[[bytes], bool], level: int = 6, *,
                    dry_run: bool = False, touches: Callable[[bytes], bool] | None = None) -> Rewrite:
    """Drop the lines for which ``keep`` is false from one data file (plain or .gz). Under the exclusive flock
    (no writer appends meanwhile) the file is read once to count them and, when there are any, once more to write
    a filtered copy to ``.NAME.forget.tmp``, fsynced and renamed over the file (mode and mtime kept); both reads
    stream (:func:`metrics_ops.lines.file_blocks`): memory stays constant whatever the file's size. A writer that
    held the old file notices the replacement on its next append and reopens.

    ``touches(block)`` (optional) is a quick test of a block of lines: False when ``keep`` keeps all of them.
    A line over :data:`metrics_ops.lines.MAX_LINE` is copied as it is (never parsed); one that ``touches``
    is counted in ``Rewrite.unsearched``. A damaged archive is never rewritten: :class:`UnreadableFile` says how
    much of it was searched."""
    fd = open_regular(directory, name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        count = LineFilter(keep, touches)
        for block in file_blocks(fd, name, count.problems, {}, through=count.long_line):
            count.block(block)
        count.finish()
        if count.problems:
            raise UnreadableFile(name, count.problems[0].why, count.removed)
        result = Rewrite(count.removed, st.st_size, st.st_size, count.unsearched)
        if count.removed == 0 or dry_run:
            return result

        def write(out: int) -> None:
            with open(out, "wb", closefd=False) as raw:
                if name.endswith(".gz"):
                    from zlib_ng import gzip_ng

                    sink = gzip_ng.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=int(st.st_mtime))
                else:
                    sink = contextlib.nullcontext(raw)
                with sink as dest:
                    copy = LineFilter(keep, touches, dest.write)
                    for block in file_blocks(fd, name, copy.problems, {}, through=copy.long_line):
                        copy.block(block)
            if copy.problems or copy.removed != count.removed:  # nothing writes under the lock; a disk may fail
                raise StoreError(errno.EIO, f"{name} read differently the second time; left as it was")

        record_change(directory)  # before the rename: a writer that held the old file will look again
        result.bytes_after = replace_atomically(directory, temp_name(name, FORGET_SUFFIX), name, st, write)
        return result
    finally:
        os.close(fd)


class LineFilter:
    """The lines ``keep`` keeps, block by block, to ``write`` (None: only count the others)."""

    def __init__(self, keep: Callable[[bytes], bool], touches: Callable[[bytes], bool] | None,
                 write: Callable[[bytes], object] | None = None):
        self.keep, self.touches, self.write = keep, touches, write
        self.removed = self.unsearched = 0
        self.problems: list = []
        self._long_tail = b""  # the end of the previous piece of a long line: an id's text may span two pieces
        self._long_hit = False

    def block(self, block: bytes) -> None:
        if self.touches is not None and not self.touches(block):  # most blocks: no id's text at all
            if self.write is not None:
                self.write(block)
            return
        kept = []
        for line in block.split(b"\n")[:-1]:  # the block ends with a newline
            if not line or self.keep(line):
                kept.append(line)
            else:
                self.removed += 1
        if self.write is not None and kept:
            self.write(b"\n".join(kept) + b"\n")

    def long_line(self, piece: bytes) -> None:
        """A piece of a line over the bound: copied through; searched for the ids' text, never parsed."""
        if self.write is not None:
            self.write(piece)
        if not self._long_hit and (self.touches is None or self.touches(self._long_tail + piece)):
            self._long_hit = True
        self._long_tail = piece[-256:]
        if piece.endswith(b"\n"):
            self.finish()

    def finish(self) -> None:
        """The end of a long line (or of the file, after one without its newline)."""
        self.unsearched += self._long_hit
        self._long_tail, self._long_hit = b"", False


def _write_archive(directory: Path, gz_name: str, parts, level: int, threads: int, st: os.stat_result,
                   progress: Callable[[int], None] | None, head=None) -> int:
    """Write ``head`` (an open existing archive, copied as it is) then a gzip member of ``parts`` to gz_name
    via a temp file; keep mode and mtime of the source. Returns the archive size."""
    from zlib_ng import gzip_ng, gzip_ng_threaded

    total = sum(length for _, length in parts)

    def write(out_fd: int) -> None:
        with open(out_fd, "wb", closefd=False) as raw:
            if head is not None:
                shutil.copyfileobj(head, raw, _CHUNK)
            if threads > 1 and total >= 2 * _CHUNK:  # below that, one core finishes in ~20 ms
                gz = gzip_ng_threaded.open(raw, "wb", compresslevel=level, threads=threads)
            else:
                gz = gzip_ng.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=int(st.st_mtime))
            with gz:
                for fh, length in parts:
                    _copy(fh, length, gz, gz_name[:-3], progress)
        os.fchmod(out_fd, stat.S_IMODE(st.st_mode))  # the source's mode exactly, whatever the umask

    return replace_atomically(directory, temp_name(gz_name[:-3], TEMP_SUFFIX), gz_name, st, write)


def _copy(fh, length: int, gz, name: str, progress: Callable[[int], None] | None) -> None:
    left = length
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            raise StoreError(errno.EIO, f"{name} shrank while it was compressed")
        gz.write(chunk)
        left -= len(chunk)
        if progress is not None:
            progress(len(chunk))


def _archive_ends_with(gz_fd: int, src_fd: int, archived: int, src_size: int) -> bool:
    """Whether the archive's data (``archived`` bytes) ends with the source's first ``src_size`` bytes."""
    skip, pos = archived - src_size, 0
    for chunk in inflated(gz_fd):
        end = pos + len(chunk)
        if end > skip:
            part = chunk[max(0, skip - pos):]
            offset = max(pos, skip) - skip
            if os.pread(src_fd, len(part), offset) != part:
                return False
        pos = end
    return True


def _extend_archive(directory: Path, gz_name: str, src_fd: int, start: int, st: os.stat_result,
                    level: int, lead: bytes = b"") -> None:
    """The archive's bytes as they are, then a gzip member of ``lead`` and the source from ``start``."""
    old = open_regular(directory, gz_name)
    with open(old, "rb") as head, open(src_fd, "rb", closefd=False) as src:
        src.seek(start)
        parts = [(io.BytesIO(lead), len(lead))] if lead else []
        _write_archive(directory, gz_name, [*parts, (src, st.st_size - start)], level, 1, st, None, head=head)


def _set_aside(directory: Path, gz_name: str) -> str:
    name = _free_aside_name(directory, gz_name)
    os.rename(directory / gz_name, directory / name)
    fsync_dir(directory)
    return name


def _free_aside_name(directory: Path, gz_name: str) -> str:
    name, n = aside_name(gz_name), 1
    while os.path.lexists(directory / name):
        n += 1
        name = aside_name(gz_name, n)
    return name


def rename_aside(directory: Path, name: str) -> str:
    """Give an archive set aside under an earlier version's name (``metrics-...gz.corrupt``, inside the reading
    glob) a hidden name; return it. Never over an existing file (a hard link, then the old name goes)."""
    if not is_old_name(name) or aside_day(name) is None:
        raise StoreError(errno.EINVAL, f"{name} is not an archive set aside under an old name")
    if not stat.S_ISREG(os.lstat(directory / name).st_mode):
        raise StoreError(errno.EINVAL, f"{name} is not a regular file; left alone")
    new = _free_aside_name(directory, name.partition(ASIDE_SUFFIX)[0] + ".gz")
    os.link(directory / name, directory / new)
    os.unlink(directory / name)
    fsync_dir(directory)
    return new
