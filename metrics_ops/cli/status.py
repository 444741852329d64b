"""status: is everything fine? The data directory, the disk, the last and next pass, and serve."""

from __future__ import annotations

import click

from metrics_ops.cli.common import (
    Failure,
    complete_zone,
    data_dir_problem,
    declares,
    pass_invocation,
    shared_options,
)
from metrics_ops.exitcodes import ExitCode


@declares(exits=(ExitCode.FAILURE, ExitCode.ATTENTION), env=("NO_COLOR",), settings=(
    "dir", "jsonl", "gzip_after", "retention", "max_total_mb", "min_free_mb", "min_free_percent", "serve_min_free_mb",
    "status_file", "admin_token", "archive_url", "host_id", "archive_retention"))
@click.command(short_help="Is everything fine? Data, disk, passes, serve.")
@click.option("--url", default=None, metavar="URL",
              help="Also ask serve at URL (its base, e.g. http://127.0.0.1:8001) for /healthz and its counters.")
@click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
              help="IANA time zone that decides the day and shows times (default UTC; env METRICS_TZ).")
@click.option("--interval", type=float, default=None, metavar="SECONDS",
              help="Seconds between passes (default: what the rotator recorded; env METRICS_INTERVAL).")
@shared_options
@pass_invocation
def status(run, url, tz, interval):
    """Show the data directory, the disk and its budget, the last and the next pass, and serve's health.

    Exit status 7 when something needs attention (each reason one line on stderr): no successful pass in
    2 intervals, the last pass failed, the disk budget or serve's floor crossed, an archive set aside as
    unreadable, serve unhealthy or unreachable (--url). Exit 1, with one line, when the data directory does
    not exist. Reads names and sizes only: fast on a year of files.

    \b
    Examples:
      metrics-ops status
      metrics-ops status --url http://127.0.0.1:8001
      metrics-ops status --json | jq .attention
    """
    import time

    from metrics_ops.render import render_status
    from metrics_ops.status import build_status

    out = run.output()
    if url is not None:
        from metrics_ops.httpclient import Target

        try:
            Target.parse(url)
        except ValueError as exc:
            raise Failure(f"--url {exc} (serve's base, e.g. http://127.0.0.1:8001)", ExitCode.USAGE) from None
    s = run.settings(tz=tz, interval=interval)
    problem = data_dir_problem(s, can_create=False)  # the same line as every command's, not a partial table
    if problem is not None:
        raise Failure(problem)
    try:
        report = build_status(s, now=time.time(), url=url)
    except OSError as exc:
        raise Failure(f"cannot read {s.dir}: {exc.strerror or exc}") from None
    render_status(out, report)
    if not report.ok:
        raise click.exceptions.Exit(ExitCode.ATTENTION)
