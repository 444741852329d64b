"""Reading the data directory back: every stored line of a day range, each exactly once, in stored order.

One reader for every reader (report, rollups, export, forget, sample-test, the tests' no-loss oracle):

- the files come from :func:`metrics_ops.layout.scan` (names and days by the grammar; the ``metrics.jsonl``
  link, temp files and names outside the grammar are never read, so today is never counted twice);
- a day's shards are read in order (.1 after the day file, .10 after .9), each shard once: plain or archive;
- a pass may run at the same time. A plain file opened before it was compressed is read whole from the open
  descriptor (the inode lives on after the unlink); a plain file gone when it is opened is read from its new
  ``.gz``; a shard left as both ``X.jsonl`` and ``X.jsonl.gz`` (a pass killed between rename and unlink, or a
  late writer) is read like the next pass will reconcile it, so no line is lost or doubled;
- damage is reported, never raised: an archive that stops decompressing yields what it holds and a
  :class:`Problem`; a file that vanished (pruned) is a Problem too;
- a line is bounded: one longer than :data:`MAX_LINE` bytes (1 MiB; serve never writes one over about 110 KB,
  see :mod:`metrics_ops.events`' limits) is one damaged line, counted per file in ``long_lines``, and skipped
  without ever being held whole (its bytes are dropped, or handed to ``through`` piece by piece), so memory stays
  bounded and time linear in the bytes whatever a file holds;
- the last line of a file without its newline (a torn tail after a crash, a legacy file) is a line, as DuckDB's
  ``read_json`` reads it (counted when it is whole JSON, damaged when not), except in a plain file some process
  holds open for writing: there it is a line being written, left for the next read (serve's writer ends an
  unterminated tail with a newline when it opens a file, :mod:`metrics_ops.writer`).

Archives are decompressed with zlib-ng in 4 MiB reads (measured in bench/report_bench.py: 2.3x Python's gzip
module line by line). Good blocks cost no per-line Python work: a line over the bound is found by a few
``bytes.find`` calls per block (:func:`_bounded`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from metrics_ops.layout import DataFile, StoreError, fd_held_for_writing, file_name, open_regular, scan

_READ = 4 << 20  # bytes per read (and most bytes per decompression step): large blocks keep the work in C
#: the longest line (without its newline) a reader takes; a longer one is one damaged line, skipped unread
MAX_LINE = 1 << 20
MAX_LINE_TEXT = "1 MiB"
_WINDOW = MAX_LINE // 2  # a line over MAX_LINE holds a whole aligned window of this many bytes without a newline

#: where the pieces of a line over MAX_LINE go (forget copies them through), in order, newline included
Through = Callable[[bytes], None] | None


@dataclass(frozen=True)
class Problem:
    """A file that could not be read whole; ``lines`` from it were read anyway."""

    file: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}: {self.why}"


@dataclass(frozen=True)
class Shard:
    """One shard of a day: its plain name and whether a plain file, an archive, or both were listed."""

    day: date
    number: int
    plain: bool
    gz: bool

    @property
    def name(self) -> str:
        return file_name(self.day, self.number)


def shards(directory: Path, since: date | None = None, until: date | None = None,
           link: Path | None = None) -> dict[date, list[Shard]]:
    """The shards of each day in [since, until] (None: open-ended), in read order."""
    listing = scan(Path(directory), link if link is not None else Path(directory) / "metrics.jsonl")
    found: dict[tuple[date, int], list[DataFile]] = {}
    for f in listing.files:
        if (since is None or f.day >= since) and (until is None or f.day <= until):
            found.setdefault((f.day, f.shard), []).append(f)
    days: dict[date, list[Shard]] = {}
    for (day, number), files in sorted(found.items()):
        days.setdefault(day, []).append(Shard(day, number, any(not f.gz for f in files), any(f.gz for f in files)))
    return days


def read_blocks(directory: Path, shard: Shard, problems: list[Problem],
                long_lines: dict[str, int] | None = None) -> Iterator[bytes]:
    """The lines of one shard as blocks of whole lines (each block ends with ``\\n``); lines over
    :data:`MAX_LINE` are left out and counted in ``long_lines`` (file name -> lines)."""
    directory = Path(directory)
    long_lines = {} if long_lines is None else long_lines
    if shard.plain and shard.gz:
        yield from _pair(directory, shard, problems, long_lines)
        return
    name = shard.name
    if shard.plain:
        try:
            fd = open_regular(directory, name)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                problems.append(Problem(name, str(exc)))
                return
            fd = None  # compressed (or pruned) since the listing: its archive has the lines
        if fd is not None:
            try:
                yield from _plain(fd, name, problems, long_lines)
            finally:
                os.close(fd)
            return
    yield from _archive(directory, name + ".gz", problems, long_lines)


def read_day(directory: Path, day_shards: Iterable[Shard], problems: list[Problem],
             long_lines: dict[str, int] | None = None) -> Iterator[bytes]:
    long_lines = {} if long_lines is None else long_lines
    for shard in day_shards:
        yield from read_blocks(directory, shard, problems, long_lines)


def iter_lines(directory: Path, since: date | None = None, until: date | None = None, *,
               problems: list[Problem] | None = None, link: Path | None = None,
               long_lines: dict[str, int] | None = None) -> Iterator[bytes]:
    """Every stored line (without its newline) of the days in [since, until], in stored order. Empty lines (a
    failed write blanked by the writer) are skipped."""
    problems = [] if problems is None else problems
    for day_shards in shards(directory, since, until, link).values():
        for block in read_day(directory, day_shards, problems, long_lines):
            for line in block.split(b"\n"):
                if line:
                    yield line


def all_lines(directory: Path) -> list[str]:
    """Every line of every data file as text: the no-loss oracle of the tests, and small reads."""
    return [line.decode() for line in iter_lines(directory)]


def file_blocks(fd: int, name: str, problems: list[Problem], long_lines: dict[str, int], *,
                through: Through = None) -> Iterator[bytes]:
    """The lines of the open data file ``fd`` (an archive when ``name`` ends in ``.gz`` or is one set aside) as
    blocks of whole lines, from its start, the unterminated last line included (with a newline): what forget
    rewrites under the file's exclusive lock. The descriptor stays open."""
    if name.endswith(".gz") or ".gz." in name:
        return _cut(inflated(fd), name, problems, long_lines, through)
    return _cut(_raw(fd), name, problems, long_lines, through)


# ----------------------------------------------------------------- chunks, and cutting them into lines
def _raw(fd: int) -> Generator[bytes, None, None]:
    offset = 0
    while chunk := os.pread(fd, _READ, offset):
        offset += len(chunk)
        yield chunk


def inflated(fd: int) -> Generator[bytes, None, str | None]:
    """The decompressed data of a gzip file (every member) in pieces of at most 4 MiB (a highly compressed
    archive cannot balloon); returns why it stopped early, or None when it read to the end of the last member
    (zero bytes after it are padding, as gzip(1) reads them). Reconciling an archive with its source
    (:func:`metrics_ops.archive.compare_pair`) reads it the same way."""
    from zlib_ng import zlib_ng

    inflater = zlib_ng.decompressobj(31)
    produced = offset = 0
    while raw := os.pread(fd, _READ, offset):
        offset += len(raw)
        while raw:
            if inflater.eof:  # another gzip member follows (an archive extended by a reconcile), or padding
                raw = raw.lstrip(b"\0")
                if not raw:
                    break
                inflater = zlib_ng.decompressobj(31)
            try:
                out = inflater.decompress(raw, _READ)
            except zlib_ng.error as exc:
                return f"unreadable after {produced} bytes of data ({exc})"
            produced += len(out)
            if out:
                yield out
            raw = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    while not inflater.eof and (out := inflater.decompress(b"", _READ)):  # output still held back at the end
        produced += len(out)
        yield out
    if not inflater.eof and offset:
        return f"unreadable after {produced} bytes of data (the archive is truncated)"
    return None


def _cut(chunks: Generator[bytes, None, str | None], name: str, problems: list[Problem],
         long_lines: dict[str, int], through: Through = None,
         tail_written: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """Blocks of whole lines from ``chunks``. A line over :data:`MAX_LINE` is counted in ``long_lines[name]``
    and its bytes go to ``through`` (or nowhere) as they come: never more than MAX_LINE + one chunk is held.
    The last line without its newline is yielded with one, unless ``tail_written()`` says a writer is still at it;
    when the chunks stop early (a damaged archive) it is cut off: left out, and said in the Problem."""
    rest, skipping = b"", False
    while True:
        try:
            chunk = next(chunks)
        except StopIteration as stop:
            why = stop.value
            break
        if skipping:  # inside a line over the bound: drop (or hand on) everything up to its newline
            end = chunk.find(b"\n") + 1
            if through is not None:
                through(chunk[:end] if end else chunk)
            if not end:
                continue
            skipping, chunk = False, chunk[end:]
        cut = chunk.rfind(b"\n") + 1
        if cut:
            block = rest + chunk[:cut] if rest else chunk[:cut]  # chunk[:len(chunk)] is chunk: no copy
            rest = chunk[cut:]
            yield from _bounded(block, name, long_lines, through)
        else:
            rest += chunk
        if len(rest) > MAX_LINE:
            long_lines[name] = long_lines.get(name, 0) + 1
            if through is not None:
                through(rest)
            rest, skipping = b"", True
    if why is not None:
        problems.append(Problem(name, why + ("; its last line is cut off, left out" if rest or skipping else "")))
    elif rest and (tail_written is None or not tail_written()):
        yield rest + b"\n"


def _bounded(block: bytes, name: str, long_lines: dict[str, int], through: Through) -> Iterator[bytes]:
    """``block`` without its lines over :data:`MAX_LINE` (counted, handed to ``through``). A block with no such
    line costs a few C searches: every aligned window of MAX_LINE / 2 bytes holds a newline. Only a block with a
    window that holds none (a line of 512 KiB at least) is gone through line by line."""
    size = len(block)
    if size <= MAX_LINE + 1 or all(block.find(b"\n", at, at + _WINDOW) >= 0 for at in range(0, size, _WINDOW)):
        yield block
        return
    start = pos = 0
    while pos < size:
        end = block.find(b"\n", pos)  # the block ends with a newline
        if end - pos > MAX_LINE:
            if start < pos:
                yield block[start:pos]
            long_lines[name] = long_lines.get(name, 0) + 1
            if through is not None:
                through(block[pos:end + 1])
            start = end + 1
        pos = end + 1
    if start < size:
        yield block[start:]


# ----------------------------------------------------------------- the three kinds of shard
def _plain(fd: int, name: str, problems: list[Problem], long_lines: dict[str, int]) -> Iterator[bytes]:
    """A plain file from its open descriptor (read whole, even if it is compressed and unlinked meanwhile)."""
    yield from _cut(_raw(fd), name, problems, long_lines, tail_written=lambda: fd_held_for_writing(fd))


def _archive(directory: Path, gz_name: str, problems: list[Problem], long_lines: dict[str, int]) -> Iterator[bytes]:
    try:
        fd = open_regular(directory, gz_name)
    except StoreError as exc:
        why = "vanished while reading (pruned?)" if exc.errno == errno.ENOENT else str(exc)
        problems.append(Problem(gz_name, why))
        return
    try:
        yield from _cut(inflated(fd), gz_name, problems, long_lines)
    finally:
        os.close(fd)


def _pair(directory: Path, shard: Shard, problems: list[Problem], long_lines: dict[str, int]) -> Iterator[bytes]:
    """Both X.jsonl and X.jsonl.gz: read them as the next pass's reconcile will merge them
    (:func:`metrics_ops.archive.compare_pair`, the comparison it makes, streamed): the source alone when it starts
    with the archive (or the archive is unreadable: it will be set aside), the archive alone when it holds the
    source, else the archive then the source."""
    from metrics_ops import archive

    gz_name = shard.name + ".gz"
    try:
        src = open_regular(directory, shard.name)
    except StoreError:  # reconciled since the listing: the archive holds everything
        yield from _archive(directory, gz_name, problems, long_lines)
        return
    try:
        found = archive.compare_pair(directory, gz_name, src, os.fstat(src).st_size)
        if found.plan == archive.UNREADABLE:
            problems.append(Problem(gz_name, f"{found.why}; the next pass sets it aside, {shard.name} is read"))
        elif found.plan != archive.APPEND_TAIL:
            yield from _archive(directory, gz_name, problems, long_lines)
        if found.plan in (archive.UNREADABLE, archive.APPEND_TAIL, archive.APPEND_WHOLE):
            yield from _plain(src, shard.name, problems, long_lines)
    finally:
        os.close(src)
