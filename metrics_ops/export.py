"""``export``: the stored lines of a day range as a stream, in stored order, in constant memory.

``jsonl`` writes every line exactly as stored. ``csv`` writes one row per line with the columns
:data:`FIXED_COLUMNS`, then ``metadata.<key>`` for every top-level metadata key found in the range (sorted; found by
a first pass over the same files, which holds only the key names), and ``metadata._rest`` for keys that appeared
only after that first pass (lines written meanwhile), as JSON. A metadata value that is an object or a list is
written as JSON; a missing field is an empty cell; a text cell a spreadsheet would run as a formula gets a leading
``'`` (:mod:`metrics_ops.csvcells`). Lines that are not JSON objects are left out of CSV and
counted. Test traffic is exported like any other line (``metadata.test_run`` tells it apart). A line longer than
the reader's bound (:data:`metrics_ops.lines.MAX_LINE`, 1 MiB) is left out of both formats and counted per
file, never held whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from metrics_ops.csvcells import SafeWriter
from metrics_ops.reading import Across, Problem, read_day, sources

FORMATS = ("jsonl", "csv")
FIXED_COLUMNS = ("received_at", "ts", "visitor_id", "event", "timestamp", "client_rate", "server_rate")
REST_COLUMN = "metadata._rest"


@dataclass
class ExportResult:
    since: date
    until: date
    format: str
    lines: int = 0
    bytes_read: int = 0
    skipped: int = 0  # csv: lines that are not JSON objects
    event: str | None = None
    problems: list[str] = field(default_factory=list)
    long_lines: dict[str, int] = field(default_factory=dict)  # file -> lines over the reader's bound, left out
    across: Across | None = None  # with archive_url: every picked host's lines, the archive's and this host's
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "format": self.format, "event": self.event, "lines": self.lines, "skipped": self.skipped,
                "too_long": sum(self.long_lines.values()), "problems": self.problems, "notes": self.notes}


def _blocks(directory: Path, since: date, until: date, problems: list[Problem],
            long_lines: dict[str, int] | None = None, across: Across | None = None, notes: list[str] | None = None):
    for day_shards in sources(directory, since, until, across=across, notes=notes).values():
        yield from read_day(directory, day_shards, problems, long_lines)


def _event_of(line: bytes) -> str | None:
    import orjson

    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return rec.get("event") if isinstance(rec, dict) else None


def metadata_keys(directory: Path, since: date, until: date, across: Across | None = None) -> list[str]:
    import orjson

    keys: set[str] = set()
    for block in _blocks(directory, since, until, [], across=across):
        if b'"metadata"' not in block:
            continue
        for line in block.split(b"\n"):
            if b'"metadata"' in line:
                try:
                    meta = orjson.loads(line).get("metadata")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(meta, dict):
                    keys.update(meta)
    return sorted(keys)


def export(directory: Path, out: IO[bytes], *, since: date, until: date, fmt: str = "jsonl",
           event: str | None = None, progress: Callable[[int], None] | None = None,
           across: Across | None = None) -> ExportResult:
    """Write the lines of [since, until] (of ``event`` only, when given) to ``out`` (a binary stream).
    ``across``: every picked host's lines, the archive's and this host's, each once (ArchiveError, raised,
    when the bucket cannot be read: the output is then incomplete)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    result = ExportResult(since, until, fmt, event=event, across=across)
    problems: list[Problem] = []
    if fmt == "csv":
        _export_csv(directory, out, result, problems, progress)
    else:
        needle = None if event is None else json.dumps(event).encode()
        for block in _blocks(directory, since, until, problems, result.long_lines, across, result.notes):
            if needle is not None:
                kept = [line for line in block.split(b"\n") if line and needle in line and _event_of(line) == event]
                block = b"".join(line + b"\n" for line in kept)
                result.lines += len(kept)
            else:
                result.lines += block.count(b"\n") - block.count(b"\n\n")
                block = block.replace(b"\n\n", b"\n") if b"\n\n" in block else block
            out.write(block)
            if progress is not None:
                progress(len(block))
    result.problems = [str(p) for p in problems]
    return result


def export_to_file(path: str | Path, file_mode: int, directory: Path, **kw) -> ExportResult:
    """:func:`export` into ``PATH.tmp`` (created anew with ``file_mode``, METRICS_FILE_MODE: the lines are the
    data's, never world-readable by default; never through a link), then renamed: a killed export never leaves
    a half file under the name asked for."""
    import os

    tmp = f"{path}.tmp"
    try:
        os.unlink(tmp)  # left by a killed export (a link of that name is removed, never followed)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode)
    try:
        with open(fd, "wb") as fh:
            result = export(directory, fh, **kw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return result


def _cell(value):
    """A CSV cell: text (made safe for spreadsheets by :class:`~metrics_ops.csvcells.SafeWriter`) or a number."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _export_csv(directory: Path, out: IO[bytes], result: ExportResult, problems: list[Problem],
                progress: Callable[[int], None] | None) -> None:
    import io

    import orjson

    keys = metadata_keys(directory, result.since, result.until, result.across)
    known = set(keys)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = SafeWriter(text)
    writer.writerow([*FIXED_COLUMNS, *(f"metadata.{k}" for k in keys), REST_COLUMN])
    for block in _blocks(directory, result.since, result.until, problems, result.long_lines, result.across,
                         result.notes):
        for line in block.split(b"\n"):
            if not line:
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict):
                result.skipped += 1
                continue
            if result.event is not None and rec.get("event") != result.event:
                continue
            meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
            rest = {k: v for k, v in meta.items() if k not in known}
            writer.writerow([*(_cell(rec.get(c)) for c in FIXED_COLUMNS), *(_cell(meta.get(k)) for k in keys),
                             _cell(rest or None)], carriage=b"\\r" in line)  # JSON holds a CR as \r only
            result.lines += 1
        if progress is not None:
            progress(len(block))
    text.detach()
