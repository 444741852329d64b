"""Lines from a data file, bounded: the one place every reader gets its lines from (report, rollups, export,
forget, a reconcile's comparison).

A file's bytes come as chunks (:func:`raw`, or :func:`inflated` for gzip, every member) and are cut into blocks of
whole lines (:func:`cut`). A line is bounded: one longer than :data:`MAX_LINE` bytes (1 MiB; serve never writes one
over about 110 KB, see :mod:`metrics_ops.events`' limits) is one damaged line, counted per file, and skipped
without ever being held whole: its bytes are dropped, or handed to ``through`` piece by piece (forget copies it),
so memory stays bounded and time linear in the bytes whatever a file holds. A good block costs no per-line Python
work: a line over the bound is found by a few ``bytes.find`` calls per block (:func:`_bounded`).

The last line of a file without its newline (a torn tail after a crash, a legacy file) is a line, as DuckDB's
``read_json`` reads it (an event when it is whole JSON, damaged when not), unless the caller says a writer is
still at it. Damage to the file itself is a :class:`Problem`, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

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


def file_blocks(fd: int, name: str, problems: list[Problem], long_lines: dict[str, int], *,
                through: Through = None) -> Iterator[bytes]:
    """The lines of the open data file ``fd`` (an archive when ``name`` ends in ``.gz`` or is one set aside) as
    blocks of whole lines, from its start, the unterminated last line included (with a newline): what forget
    rewrites under the file's exclusive lock. The descriptor stays open."""
    if name.endswith(".gz") or ".gz." in name:
        return cut(inflated(fd), name, problems, long_lines, through)
    return cut(raw(fd), name, problems, long_lines, through)


def raw(fd: int) -> Generator[bytes, None, None]:
    offset = 0
    while chunk := os.pread(fd, _READ, offset):
        offset += len(chunk)
        yield chunk


def stream_blocks(stream, name: str, problems: list[Problem], long_lines: dict[str, int], *,
                  through: Through = None) -> Iterator[bytes]:
    """:func:`file_blocks` of a readable binary stream (an archived object as it downloads): the same lines, the
    same bound, the same problems. A read error of the stream propagates."""
    def chunks() -> Generator[bytes, None, None]:
        while chunk := stream.read(_READ):
            yield chunk

    if name.endswith(".gz") or ".gz." in name:
        return cut(inflate(chunks()), name, problems, long_lines, through)
    return cut(chunks(), name, problems, long_lines, through)


def inflated(fd: int) -> Generator[bytes, None, str | None]:
    """The decompressed data of a gzip file (every member) in pieces of at most 4 MiB (a highly compressed
    archive cannot balloon); returns why it stopped early, or None when it read to the end of the last member
    (zero bytes after it are padding, as gzip(1) reads them). Reconciling an archive with its source
    (:func:`metrics_ops.archive.compare_pair`) reads it the same way."""
    return (yield from inflate(raw(fd)))


def inflate(compressed: Iterator[bytes]) -> Generator[bytes, None, str | None]:
    """:func:`inflated` of gzip data coming as chunks (a file's, or an object's as it downloads)."""
    from zlib_ng import zlib_ng

    inflater = zlib_ng.decompressobj(31)
    produced = offset = 0
    for data in compressed:
        offset += len(data)
        while data:
            if inflater.eof:  # another gzip member follows (an archive extended by a reconcile), or padding
                data = data.lstrip(b"\0")
                if not data:
                    break
                inflater = zlib_ng.decompressobj(31)
            try:
                out = inflater.decompress(data, _READ)
            except zlib_ng.error as exc:
                return f"unreadable after {produced} bytes of data ({exc})"
            produced += len(out)
            if out:
                yield out
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    while not inflater.eof and (out := inflater.decompress(b"", _READ)):  # output still held back at the end
        produced += len(out)
        yield out
    if not inflater.eof and offset:
        return f"unreadable after {produced} bytes of data (the archive is truncated)"
    return None


def cut(chunks: Generator[bytes, None, str | None], name: str, problems: list[Problem],
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
