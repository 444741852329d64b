"""Reading the data directory back: every stored line of a day range, each exactly once, in stored order.

One helper for every reader (report, rollups, export, sample-test, the tests' no-loss oracle):

- the files come from :func:`metrics_ops.layout.scan` (names and days by the grammar; the ``metrics.jsonl``
  link, temp files and names outside the grammar are never read, so today is never counted twice);
- a day's shards are read in order (.1 after the day file, .10 after .9), each shard once: plain or archive;
- a pass may run at the same time. A plain file opened before it was compressed is read whole from the open
  descriptor (the inode lives on after the unlink); a plain file gone when it is opened is read from its new
  ``.gz``; a shard left as both ``X.jsonl`` and ``X.jsonl.gz`` (a pass killed between rename and unlink, or a
  late writer) is read like the next pass will reconcile it, so no line is lost or doubled;
- damage is reported, never raised: an archive that stops decompressing yields what it holds and a
  :class:`Problem`; a file that vanished (pruned) is a Problem too. The last line of a plain file without its
  newline (a writer mid-``write()``) is left for the next read.

Archives are decompressed with zlib-ng in 4 MiB reads (measured in bench/report_bench.py: 2.3x Python's gzip
module line by line).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from metrics_ops.layout import DataFile, StoreError, file_name, open_regular, scan

_READ = 4 << 20  # bytes per read (and most bytes per decompression step): large blocks keep the work in C


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


def read_blocks(directory: Path, shard: Shard, problems: list[Problem]) -> Iterator[bytes]:
    """The lines of one shard as blocks of whole lines (each block ends with ``\\n``)."""
    directory = Path(directory)
    if shard.plain and shard.gz:
        yield from _pair(directory, shard, problems)
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
            yield from _plain(fd)
            return
    yield from _archive(directory, name + ".gz", problems)


def read_day(directory: Path, day_shards: Iterable[Shard], problems: list[Problem]) -> Iterator[bytes]:
    for shard in day_shards:
        yield from read_blocks(directory, shard, problems)


def iter_lines(directory: Path, since: date | None = None, until: date | None = None, *,
               problems: list[Problem] | None = None, link: Path | None = None) -> Iterator[bytes]:
    """Every stored line (without its newline) of the days in [since, until], in stored order. Empty lines (a
    failed write blanked by the writer) are skipped."""
    problems = [] if problems is None else problems
    for day_shards in shards(directory, since, until, link).values():
        for block in read_day(directory, day_shards, problems):
            for line in block.split(b"\n"):
                if line:
                    yield line


def all_lines(directory: Path) -> list[str]:
    """Every line of every data file as text: the no-loss oracle of the tests, and small reads."""
    return [line.decode() for line in iter_lines(directory)]


def _plain(fd: int) -> Iterator[bytes]:
    try:
        rest = b""
        while chunk := os.read(fd, _READ):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            if cut:
                yield chunk[:cut]
        # ``rest``: a line still being written (no newline yet): the next read finds it whole
    finally:
        os.close(fd)


def _archive(directory: Path, gz_name: str, problems: list[Problem]) -> Iterator[bytes]:
    from zlib_ng import zlib_ng

    try:
        fd = open_regular(directory, gz_name)
    except StoreError as exc:
        why = "vanished while reading (pruned?)" if exc.errno == errno.ENOENT else str(exc)
        problems.append(Problem(gz_name, why))
        return
    inflater = zlib_ng.decompressobj(31)
    rest, produced = b"", 0
    try:
        while True:
            raw = os.read(fd, _READ)
            if not raw:
                break
            while raw:
                if inflater.eof:  # another gzip member follows (an archive extended by a reconcile)
                    inflater = zlib_ng.decompressobj(31)
                try:
                    out = inflater.decompress(raw, _READ)  # bounded: a highly compressed archive cannot balloon
                except zlib_ng.error as exc:
                    problems.append(Problem(gz_name, f"unreadable after {produced} bytes of data ({exc})"
                                                     + ("; its last line is cut off, left out" if rest else "")))
                    return
                produced += len(out)
                if rest:
                    out, rest = rest + out, b""
                cut = out.rfind(b"\n") + 1
                if cut == len(out):
                    yield out  # whole lines already: no copy of the 4 MiB
                    rest = b""
                else:
                    if cut:
                        yield out[:cut]
                    rest = out[cut:]
                raw = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        if not inflater.eof and produced:
            problems.append(Problem(gz_name, f"truncated after {produced} bytes of data"
                                             + ("; its last line is cut off, left out" if rest else "")))
        elif rest:
            yield rest + b"\n"  # a last line compressed without its newline: whole, keep it
    finally:
        os.close(fd)


def _pair(directory: Path, shard: Shard, problems: list[Problem]) -> Iterator[bytes]:
    """Both X.jsonl and X.jsonl.gz: read them as the next pass's reconcile will merge them (see
    :func:`metrics_ops.archive.finish_compress`): the source alone when it starts with the archive, the
    archive alone when it ends with the source, else the archive then the source."""
    archived = b"".join(_archive(directory, shard.name + ".gz", problems))
    try:
        fd = open_regular(directory, shard.name)
    except StoreError:  # reconciled since the listing: the archive holds everything
        yield archived
        return
    source = b"".join(_plain(fd))
    if source.startswith(archived):
        yield source
    elif archived.endswith(source):
        yield archived
    else:
        yield archived
        yield source
