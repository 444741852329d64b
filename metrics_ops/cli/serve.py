"""serve: the WSGI ingestion endpoint on granian."""

from __future__ import annotations

import click

from metrics_ops.cli.common import Failure, complete_zone, declares, pass_invocation, settings_options
from metrics_ops.exitcodes import ExitCode


@declares(exits=(ExitCode.FAILURE,), settings=(
    "dir", "jsonl", "ring_capacity", "serve_min_free_mb", "max_body", "max_batch", "cors_origins", "state_file",
    "file_mode", "sample_rates", "sample_key", "keep_query", "admin_token"))
@click.command(short_help="Ingest events over HTTP into the daily JSONL files.")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; env METRICS_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8001; env METRICS_PORT).")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default 2; env METRICS_WORKERS). They share one ring and one set of counters.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default=None,
              help="Log level (default warning; env METRICS_LOG_LEVEL); info adds one access line per request.")
@click.option("--sample-rate", type=float, default=None, metavar="RATE",
              help="Server-side sampling rate: 0, or 0.000001..1 (default 1; env METRICS_SAMPLE_RATE).")
@click.option("--sample-mode", type=click.Choice(["random", "visitor"], case_sensitive=False), default=None,
              help="random: per event; visitor: whole visitors by a keyed hash (env METRICS_SAMPLE_MODE).")
@click.option("--max-mb", type=float, default=None, metavar="MIB",
              help="Start the next shard at this size (env METRICS_MAX_MB; unset: never).")
@click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
              help="IANA zone of the receive day (default UTC; env METRICS_TZ).")
@settings_options
@pass_invocation
def serve(run, host, port, workers, log_level, sample_rate, sample_mode, max_mb, tz):
    """Run the ingestion endpoint (POST /api/metrics/event) on a production WSGI server.

    SIGTERM or SIGINT: requests in flight finish, then it exits 0. Any WSGI server can host the same app
    through the factory metrics_ops.serve.wsgi:create_app. When the port accepts connections it prints one
    line on stderr: the address, the data directory (created if missing: serve is its writer) and the workers.

    \b
    Examples:
      metrics-ops serve --host 127.0.0.1 --port 8001 --workers 2
      METRICS_SAMPLE_RATE=0.5 metrics-ops --data-dir /var/lib/metrics \\
          serve --log-level info
    """
    import os
    import sys

    from metrics_ops.serve import runner
    from metrics_ops.terminal import PREFIX, fit, width_of

    s = run.settings(host=host, port=port, workers=workers, log_level=log_level, sample_rate=sample_rate,
                     sample_mode=sample_mode, max_mb=max_mb, tz=tz)
    line = (fit(PREFIX + ready_line(s), width_of(sys.stderr)) + "\n").encode()
    try:
        # os.write, not click.echo: granian may fork a worker again (a respawn), and no buffer lock may be held then
        runner.run(s, on_ready=lambda: os.write(2, line))
    except runner.ServeError as exc:
        raise Failure(str(exc), exc.exit_code) from None


def ready_line(s) -> str:
    from metrics_ops.layout import real_path
    from metrics_ops.origins import printable

    host = f"[{s.host}]" if ":" in s.host else s.host
    # printable: a directory name's byte that is not UTF-8 is shown as \xNN (it made the ready line a traceback)
    return printable(f"serve ready on http://{host}:{s.port} (data directory {real_path(s.dir)}, "
                     f"{s.workers} worker{'s' if s.workers != 1 else ''})")
