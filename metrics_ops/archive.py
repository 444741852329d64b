"""Archives: compression, reconciling a source with its archive, reading archives, rewriting a file in place.

Every new version of a file is written by :func:`replace_atomically`: temp file in the same directory
(O_EXCL|O_NOFOLLOW) -> fsync -> rename -> fsync the directory. A killed compression leaves the source intact
(and maybe a temp, which the next pass removes) or both the source and a complete archive, which
:func:`finish_compress` reconciles so that every line is present exactly once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

from metrics_ops.changes import record_change
from metrics_ops.layout import (
    ASIDE_SUFFIX,
    FORGET_SUFFIX,
    TEMP_SUFFIX,
    StoreError,
    fsync_dir,
    open_regular,
)
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
    - otherwise (a late writer made a fresh file): add the whole source as another member;
    - archive unreadable: set it aside as ``name.gz.corrupt`` and compress the source anew.
    Returns (what was done, bytes before, bytes after).
    """
    import gzip

    from zlib_ng import zlib_ng

    gz_name = name + ".gz"
    src_fd = open_regular(directory, name)
    try:
        fcntl.flock(src_fd, fcntl.LOCK_EX)
        record_change(directory)  # before anything changes: writers of this file will look again
        st = os.fstat(src_fd)
        try:
            archived, prefix = _compare_archive(directory / gz_name, src_fd, st.st_size)
        except (EOFError, gzip.BadGzipFile, zlib_ng.error):
            aside = _set_aside(directory, gz_name)
            os.close(src_fd)
            src_fd = -1
            before, after = compress(directory, name, level)
            return f"archive unreadable, set aside as {aside}; recompressed", before, after
        size_gz = os.lstat(directory / gz_name).st_size
        if st.st_size == 0 or archived == st.st_size and prefix:
            what = "archive complete; source removed"
        elif prefix:
            _extend_archive(directory, gz_name, src_fd, archived, st, level)
            what = f"appended {st.st_size - archived} bytes written after the archive"
        elif archived >= st.st_size and _archive_ends_with(directory / gz_name, src_fd, archived, st.st_size):
            what = "archive already holds the source; source removed"
        else:
            _extend_archive(directory, gz_name, src_fd, 0, st, level)
            what = "source differs from the archive; appended it whole"
        os.unlink(directory / name)
        fsync_dir(directory)
        return what, st.st_size + size_gz, os.lstat(directory / gz_name).st_size
    finally:
        if src_fd >= 0:
            os.close(src_fd)


def read_data(directory: Path, name: str, fd: int | None = None) -> tuple[bytes, str | None]:
    """The uncompressed bytes of a data file (plain, .gz, or an archive set aside), and None; or, for a
    damaged archive, every byte that can be decompressed and why the rest cannot."""
    own = fd is None
    fd = open_regular(directory, name) if own else fd
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


def rewrite_without(directory: Path, name: str, keep: Callable[[bytes], bool], level: int = 6, *,
                    dry_run: bool = False) -> tuple[int, int, int]:
    """Drop the lines for which ``keep`` is false from one data file (plain or .gz); return (lines removed,
    bytes before, bytes after). The file is read once, under the exclusive flock, so no writer appends while
    it is filtered; a filtered copy is written to ``NAME.forget.tmp``, fsynced and renamed over the file (mode
    and mtime kept). A writer that held the old file notices the replacement on its next append and reopens.
    A damaged archive is never rewritten: :class:`UnreadableFile` says how much of it was searched."""
    from zlib_ng import gzip_ng

    fd = open_regular(directory, name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        data, damage = read_data(directory, name, fd)
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

        def write(out: int) -> None:
            view = memoryview(body)
            while view:
                view = view[os.write(out, view):]

        record_change(directory)  # before the rename: a writer that held the old file will look again
        return removed, st.st_size, replace_atomically(directory, name + FORGET_SUFFIX, name, st, write)
    finally:
        os.close(fd)


def _write_archive(directory: Path, gz_name: str, parts, level: int, threads: int, st: os.stat_result,
                   progress: Callable[[int], None] | None, head: bytes = b"") -> int:
    """Write ``head`` (raw bytes of an existing archive) then a gzip member of ``parts`` to gz_name
    via a temp file; keep mode and mtime of the source. Returns the archive size."""
    from zlib_ng import gzip_ng, gzip_ng_threaded

    total = sum(length for _, length in parts)

    def write(out_fd: int) -> None:
        with open(out_fd, "wb", closefd=False) as raw:
            raw.write(head)
            if threads > 1 and total >= 2 * _CHUNK:  # below that, one core finishes in ~20 ms
                gz = gzip_ng_threaded.open(raw, "wb", compresslevel=level, threads=threads)
            else:
                gz = gzip_ng.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=int(st.st_mtime))
            with gz:
                for fh, length in parts:
                    _copy(fh, length, gz, gz_name[:-3], progress)
        os.fchmod(out_fd, stat.S_IMODE(st.st_mode))  # the source's mode exactly, whatever the umask

    return replace_atomically(directory, gz_name[:-3] + TEMP_SUFFIX, gz_name, st, write)


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


def _compare_archive(gz_path: Path, src_fd: int, src_size: int) -> tuple[int, bool]:
    """Decompress the archive once: (its uncompressed length, whether the source starts with it)."""
    from zlib_ng import gzip_ng

    length, prefix = 0, True
    with gzip_ng.open(gz_path, "rb") as gz:
        while chunk := gz.read(_CHUNK):
            if prefix:
                if length + len(chunk) > src_size or os.pread(src_fd, len(chunk), length) != chunk:
                    prefix = False
            length += len(chunk)
    return length, prefix


def _archive_ends_with(gz_path: Path, src_fd: int, archived: int, src_size: int) -> bool:
    from zlib_ng import gzip_ng

    skip, pos = archived - src_size, 0
    with gzip_ng.open(gz_path, "rb") as gz:
        while chunk := gz.read(_CHUNK):
            end = pos + len(chunk)
            if end > skip:
                part = chunk[max(0, skip - pos):]
                offset = max(pos, skip) - skip
                if os.pread(src_fd, len(part), offset) != part:
                    return False
            pos = end
    return True


def _extend_archive(directory: Path, gz_name: str, src_fd: int, start: int, st: os.stat_result,
                    level: int) -> None:
    with open(directory / gz_name, "rb") as old:
        head = old.read()
    with open(src_fd, "rb", closefd=False) as src:
        src.seek(start)
        _write_archive(directory, gz_name, [(src, st.st_size - start)], level, 1, st, None, head=head)


def _set_aside(directory: Path, gz_name: str) -> str:
    base = gz_name[:-3] + ASIDE_SUFFIX
    name, n = base, 1
    while os.path.lexists(directory / name):
        n += 1
        name = f"{base}.{n}"
    os.rename(directory / gz_name, directory / name)
    fsync_dir(directory)
    return name
