"""export: the stored lines of a day range as JSONL or CSV, in stored order, in constant memory."""

from __future__ import annotations

import click

from metrics_ops.cli.common import (
    Failure,
    complete_zone,
    day_range,
    declares,
    existing_store,
    pass_invocation,
    range_options,
    shared_options,
)
from metrics_ops.exitcodes import ExitCode


class _LineCounter:
    """Progress on stderr when it is a terminal: the bytes written so far, at most every half second."""

    def __init__(self, stream, enabled: bool):
        import time

        self.stream, self.enabled, self.total, self.clock, self.shown = stream, enabled, 0, time.monotonic, 0.0

    def __call__(self, n: int) -> None:
        self.total += n
        if self.enabled and self.clock() - self.shown >= 0.5:
            self.shown = self.clock()
            print(f"\rmetrics-ops: exported {self.total / 1e6:,.1f} MB", end="", file=self.stream, flush=True)

    def done(self) -> None:
        if self.enabled and self.shown:
            print("", file=self.stream)


@declares(exits=(ExitCode.FAILURE,), settings=("dir", "jsonl"))
@click.command(short_help="Stream the stored lines of a day range as JSONL or CSV.")
@range_options
@click.option("--event", default=None, metavar="NAME", help="Only this event name.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="jsonl: the lines as stored; csv: one row per line, metadata flattened one level.")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="Write to FILE (replaced only when the export is complete) instead of stdout.")
@click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
              help="IANA time zone of the days (default UTC; env METRICS_TZ).")
@shared_options
@pass_invocation
def export(run, since, until, event, fmt, output_file, tz):
    """Write every stored line of the days in the range, in stored order, across plain, shard and .gz files.

    CSV columns: received_at, ts, visitor_id, event, timestamp, client_rate, server_rate, then metadata.KEY for
    every top-level metadata key in the range (objects and lists as JSON), and metadata._rest. Test traffic is
    exported too (metadata.test_run marks it). With --json, a summary document goes to stdout (needs --output).

    \b
    Examples:
      metrics-ops export --since 2026-11-01 --until 2026-11-30 > november.jsonl
      metrics-ops export --since 7d --format csv --output last-week.csv
      metrics-ops export --since 1d --until 1d --event signup | jq .metadata
    """
    import sys
    import time

    from metrics_ops.export import export as run_export

    out = run.output()
    if out.json and output_file is None:
        raise Failure("--json prints a summary on stdout: give --output FILE for the lines", ExitCode.USAGE)
    s = run.settings(tz=tz)
    store = existing_store(s)
    first, last = day_range(since, until, store.today(time.time()))
    progress = _LineCounter(sys.stderr, not out.quiet and not out.json and sys.stderr.isatty())
    try:
        if output_file is None:
            result = run_export(store.dir, sys.stdout.buffer, since=first, until=last, fmt=fmt, event=event,
                                progress=progress)
            sys.stdout.flush()
        else:
            result = _to_file(output_file, store.dir, first, last, fmt, event, progress)
    except BrokenPipeError:  # `| head`: the reader has enough
        raise click.exceptions.Exit(ExitCode.OK) from None
    except OSError as exc:
        raise Failure(f"cannot export: {exc.strerror or exc} ({exc.filename or output_file or 'stdout'})") from None
    progress.done()
    for line in result.problems:
        out.error(f"damaged: {line}")
    if out.json:
        out.document(result.to_dict())
    elif result.skipped:
        out.warn(f"{result.skipped} line(s) are not JSON objects: left out of the CSV")
    if not result.ok:
        raise click.exceptions.Exit(ExitCode.FAILURE)


def _to_file(path: str, directory, first, last, fmt: str, event, progress):
    """Export into PATH.tmp, then rename: a killed export never leaves a half file under the name asked for."""
    import os

    from metrics_ops.export import export as run_export

    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as fh:
            result = run_export(directory, fh, since=first, until=last, fmt=fmt, event=event, progress=progress)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return result
