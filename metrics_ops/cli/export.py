"""export: the stored lines of a day range as JSONL or CSV, in stored order, in constant memory."""

from __future__ import annotations

import click

from metrics_ops.cli.common import (
    Failure,
    archive_failure,
    archive_options,
    complete_zone,
    day_range,
    declares,
    existing_store,
    pass_invocation,
    range_options,
    reading_across,
    shared_options,
)
from metrics_ops.exitcodes import ExitCode


def _size(n: int) -> str:
    """Bytes for the progress line: 812 bytes, 135.2 kB, 48.1 MB (powers of 1000, as the line always said)."""
    if n < 1000:
        return f"{n} byte{'' if n == 1 else 's'}"
    return f"{n / 1e3:,.1f} kB" if n < 1e6 else f"{n / 1e6:,.1f} MB"


class _Progress:
    """The bytes exported so far on stderr, at most every half second, then the final size and where it went.
    Only for an export into --output FILE watched on a terminal: when stdout is the data, a line on stderr
    would land in the middle of it (on the terminal, or of `| jq`'s output), so nothing is said."""

    def __init__(self, stream, enabled: bool):
        import time

        self.stream, self.enabled, self.total, self.clock, self.shown = stream, enabled, 0, time.monotonic, None
        self.width = 0

    def _show(self, text: str, end: str = "") -> None:
        line = f"metrics-ops: {text}"
        print(f"\r{line.ljust(self.width)}", end=end, file=self.stream, flush=True)  # over a longer line
        self.width = len(line)

    def __call__(self, n: int) -> None:
        self.total += n
        if self.enabled and (self.shown is None or self.clock() - self.shown >= 0.5):
            self.shown = self.clock()
            self._show(f"exporting: {_size(self.total)}")

    def done(self, lines: int, path: str) -> None:
        import os

        if self.enabled:  # the file's own size: CSV is not the size of the lines it was made from
            self._show(f"exported {lines:,} line{'' if lines == 1 else 's'} ({_size(os.path.getsize(path))}) to "
                       f"{path}", end="\n")


@declares(exits=(ExitCode.FAILURE, ExitCode.UNREACHABLE), settings=("dir", "jsonl", "archive_url", "host_id"))
@click.command(short_help="Stream the stored lines of a day range as JSONL or CSV.")
@range_options
@click.option("--event", default=None, metavar="NAME", help="Only this event name.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="jsonl: the lines as stored; csv: one row per line, metadata flattened one level, formula-like "
                   "text cells quoted with a leading '.")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="Write to FILE instead of stdout: replaced only when the export is complete, with "
              "METRICS_FILE_MODE (default 0640: never world-readable).")
@click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
              help="IANA time zone of the days (default UTC; env METRICS_TZ).")
@archive_options
@shared_options
@pass_invocation
def export(run, since, until, event, fmt, output_file, tz, hosts, no_archive):
    """Write every stored line of the days in the range, in stored order, across plain, shard and .gz files.

    CSV columns: received_at, ts, visitor_id, event, timestamp, client_rate, server_rate, then metadata.KEY for
    every top-level metadata key in the range (objects and lists as JSON), and metadata._rest. A text cell
    starting with = + - @, tab or CR gets a leading ' so no spreadsheet runs it as a formula (OWASP); numbers
    stay numbers. Test traffic is exported too (metadata.test_run marks it). With --json, a summary document
    goes to stdout (needs --output). With archive_url set, every host's lines are read: the archive's objects
    and this host's files not yet archived, each line once, by day, this host first, then by host id (--host
    picks hosts, --no-archive reads the local files only); a bucket that cannot be read is one line and exit 5
    (with --output nothing is written; on stdout what came before it is incomplete).

    \b
    Examples:
      metrics-ops export --since 2026-11-01 --until 2026-11-30 > november.jsonl
      metrics-ops export --since 7d --format csv --output last-week.csv
      metrics-ops export --since 1d --until 1d --event signup | jq .metadata
    """
    import sys
    import time

    from metrics_ops.export import export as run_export
    from metrics_ops.export import export_to_file
    from metrics_ops.lines import MAX_LINE_TEXT
    from metrics_ops.objectstore import ArchiveError

    out = run.output()
    if out.json and output_file is None:
        raise Failure("--json prints a summary on stdout: give --output FILE for the lines", ExitCode.USAGE)
    s = run.settings(tz=tz)
    store = existing_store(s)
    across = reading_across(s, hosts, no_archive)
    if output_file is not None:
        _outside_the_data(output_file, s.dir)
    first, last = day_range(since, until, store.today(time.time()))
    progress = _Progress(sys.stderr, output_file is not None and not out.quiet and not out.json
                         and sys.stderr.isatty())
    try:
        if output_file is None:
            result = run_export(store.dir, sys.stdout.buffer, since=first, until=last, fmt=fmt, event=event,
                                progress=progress, across=across)
            sys.stdout.flush()
        else:
            result = export_to_file(output_file, s.file_mode_bits, store.dir, since=first, until=last, fmt=fmt,
                                    event=event, progress=progress, across=across)
    except BrokenPipeError:  # `| head`: the reader has enough
        raise click.exceptions.Exit(ExitCode.OK) from None
    except ArchiveError as exc:
        raise archive_failure(exc) from None
    except OSError as exc:
        raise Failure(f"cannot export: {exc.strerror or exc} ({exc.filename or output_file or 'stdout'})") from None
    if output_file is not None:
        progress.done(result.lines, output_file)
    for line in result.problems:
        out.error(f"damaged: {line}")
    for line in result.notes:
        out.warn(line)
    if out.json:
        out.document(result.to_dict())
    else:
        if result.skipped:
            out.warn(f"{result.skipped} line(s) are not JSON objects: left out of the CSV")
        if result.long_lines:
            out.warn(f"{sum(result.long_lines.values())} damaged line(s) longer than {MAX_LINE_TEXT} left out "
                     f"({', '.join(sorted(result.long_lines))})")
    if not result.ok:
        raise click.exceptions.Exit(ExitCode.FAILURE)


def _outside_the_data(path: str, directory) -> None:
    """--output never lands in the data directory's tree (rollups/ included): exit 2, nothing written."""
    from pathlib import Path

    from metrics_ops.layout import inside_tree, real_path

    if inside_tree(Path(path), directory):
        raise Failure(f"--output {path}: inside the data directory {real_path(Path(directory))} (rollups/ included), "
                      "where passes, report and forget would take it for data; export elsewhere", ExitCode.USAGE)
