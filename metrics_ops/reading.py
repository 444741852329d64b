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
- lines come from :mod:`metrics_ops.lines`: bounded (a line over 1 MiB is one damaged line, counted per file
  in ``long_lines``, never held whole), an unterminated last line read as DuckDB reads it, except in a plain
  file some process holds open for writing: there it is a line being written, left for the next read (serve's
  writer ends an unterminated tail with a newline when it opens a file, :mod:`metrics_ops.writer`).

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

from metrics_ops import archive, remote
from metrics_ops.layout import DataFile, StoreError, fd_held_for_writing, file_name, open_regular, scan
from metrics_ops.lines import MAX_LINE, MAX_LINE_TEXT, Problem, cut, file_blocks, inflate, inflated, raw
from metrics_ops.objectstore import object_key
from metrics_ops.remote import Across, Prefetch, Remote

__all__ = ["MAX_LINE", "MAX_LINE_TEXT", "Across", "Problem", "Remote", "Shard", "all_lines", "file_blocks",
           "iter_lines", "read_blocks", "read_day", "shards", "sources"]


@dataclass(frozen=True)
class Shard:
    """One shard of a day: its plain name and whether a plain file, an archive, or both were listed."""

    day: date
    number: int
    plain: bool
    gz: bool
    #: this host's object of the shard in the archive: read when the local files are gone when read (pruned)
    archived: Remote | None = None

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


def sources(directory: Path, since: date | None = None, until: date | None = None, link: Path | None = None,
            across: Across | None = None, notes: list[str] | None = None) -> dict[date, list[Shard | Remote]]:
    """The shards of each day in [since, until] in read order: :func:`shards` without ``across``; with it, every
    picked host's objects too (:func:`metrics_ops.remote.listing`), each line once: this host's local files
    first (a local file and its own object are one file: the local one is read), then its objects whose local
    files are gone, then the other hosts' objects, by host id and shard. The local files are listed before the
    bucket: a file archived and pruned meanwhile is in the listing. ArchiveError when the bucket cannot be
    listed."""
    if across is None:
        return shards(directory, since, until, link)
    mine = across.picks(across.host_id)
    local = shards(directory, since, until, link) if mine else {}
    objects = remote.listing(across, since, until, notes)
    days: dict[date, list[Shard | Remote]] = {}
    for day in sorted(set(local) | set(objects)):
        here = {s.number: s for s in local.get(day, ())}
        hosts = objects.get(day, {})
        own = hosts.get(across.host_id, {}) if mine else {}
        found: list[Shard | Remote] = []
        for number in sorted(set(here) | set(own)):
            if number in here:  # its own object, if any, holds the same lines: the local file is read
                s = here[number]
                key = object_key(across.location, day, across.host_id, s.name + ".gz")
                found.append(Shard(s.day, s.number, s.plain, s.gz,
                                   Remote(across.location, day, across.host_id, number, key)))
            else:
                found.append(own[number])
        for host in sorted(h for h in hosts if h != across.host_id):
            found.extend(hosts[host][n] for n in sorted(hosts[host]))
        days[day] = found
    if across.hosts is not None and notes is not None:
        found_hosts = {s.host if isinstance(s, Remote) else across.host_id for ss in days.values() for s in ss}
        notes.extend(f"--host {h}: no lines of this host in the range" for h in sorted(across.hosts - found_hosts))
    return days


def read_blocks(directory: Path, shard: Shard | Remote, problems: list[Problem],
                long_lines: dict[str, int] | None = None, prefetch: Prefetch | None = None) -> Iterator[bytes]:
    """The lines of one shard (a local one, or an object of the archive) as blocks of whole lines (each block
    ends with ``\\n``); lines over :data:`MAX_LINE` are left out and counted in ``long_lines`` (file name ->
    lines). ``prefetch``: where the day's objects are being fetched ahead."""
    directory = Path(directory)
    long_lines = {} if long_lines is None else long_lines
    if isinstance(shard, Remote):
        yield from cut(inflate(remote.compressed(shard, problems, prefetch)), shard.name, problems, long_lines)
        return
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
    yield from _archive(directory, name + ".gz", problems, long_lines, shard.archived)


def read_day(directory: Path, day_shards: Iterable[Shard | Remote], problems: list[Problem],
             long_lines: dict[str, int] | None = None) -> Iterator[bytes]:
    """The lines of a day's shards in order; its objects are fetched ahead (:class:`metrics_ops.remote.Prefetch`)."""
    long_lines = {} if long_lines is None else long_lines
    day_shards = list(day_shards)
    prefetch = Prefetch(day_shards) if any(isinstance(s, Remote) for s in day_shards) else None
    try:
        for shard in day_shards:
            yield from read_blocks(directory, shard, problems, long_lines, prefetch)
    finally:
        if prefetch is not None:
            prefetch.close()


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


def _plain(fd: int, name: str, problems: list[Problem], long_lines: dict[str, int]) -> Iterator[bytes]:
    """A plain file from its open descriptor (read whole, even if it is compressed and unlinked meanwhile)."""
    yield from cut(raw(fd), name, problems, long_lines, tail_written=lambda: fd_held_for_writing(fd))


def _archive(directory: Path, gz_name: str, problems: list[Problem], long_lines: dict[str, int],
             archived: Remote | None = None) -> Iterator[bytes]:
    try:
        fd = open_regular(directory, gz_name)
    except StoreError as exc:
        why = "vanished while reading (pruned?)" if exc.errno == errno.ENOENT else str(exc)
        if archived is not None and exc.errno == errno.ENOENT:  # pruned once archived: its object has the lines
            chunks = remote.compressed(archived, problems, missing=f"{gz_name} {why}, and its object is gone too")
            yield from cut(inflate(chunks), archived.name, problems, long_lines)
            return
        problems.append(Problem(gz_name, why))
        return
    try:
        yield from cut(inflated(fd), gz_name, problems, long_lines)
    finally:
        os.close(fd)


def _pair(directory: Path, shard: Shard, problems: list[Problem], long_lines: dict[str, int]) -> Iterator[bytes]:
    """Both X.jsonl and X.jsonl.gz: read them as the next pass's reconcile will merge them
    (:func:`metrics_ops.archive.compare_pair`, the comparison it makes, streamed): the source alone when it starts
    with the archive (or the archive is unreadable: it will be set aside), the archive alone when it holds the
    source, else the archive then the source."""
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
