"""report: events, distinct visitors and sampling-corrected estimates, from raw lines or daily rollups."""

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


@declares(exits=(ExitCode.FAILURE, ExitCode.UNREACHABLE), settings=("dir", "jsonl", "archive_url", "host_id"),
          env=("NO_COLOR",))
@click.command(short_help="Count events and visitors; estimate the real totals.")
@range_options
@click.option("--by", "by_", default="day", metavar="LIST", show_default=True,
              help="Group by any of day, hour, event, path (comma-separated), e.g. day,event.")
@click.option("--event", default=None, metavar="NAME", help="Only this event name.")
@click.option("--top", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="With path: the top N paths; the rest are one row, (other).")
@click.option("csv_", "--csv", is_flag=True,
              help="Print CSV (for spreadsheets). A text cell starting with = + - @, tab or CR gets a leading ' "
                   "so no spreadsheet runs it as a formula (OWASP); numbers stay numbers.")
@click.option("--no-rollups", is_flag=True, help="Read raw lines only, even where a day's rollup exists.")
@click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
              help="IANA time zone of the days and hours (default UTC; env METRICS_TZ).")
@archive_options
@shared_options
@pass_invocation
def report(run, since, until, by_, event, top, csv_, no_rollups, tz, hosts, no_archive):
    """Count events and distinct visitors, and estimate the events that really happened under sampling.

    Each stored line weighs 1 / (client rate x server rate) as recorded in it (lines without rates weigh 1;
    the output says how many). ESTIMATE is the weighted sum, with a 95% interval that treats visitors as the
    sampled units. Days come from their rollup when the grouping allows it and the rollup folds nothing of
    it, else from the raw files, plain, shards and .gz alike; a day still being written is marked partial.
    A day whose raw files are gone comes from its rollup even where it folds events and paths into (other):
    rows that may count too few are marked ~ and a ranking that may be wrong says so. Test traffic is left
    out. With archive_url set, every host's lines are read: the archive's objects and this host's files not yet
    archived, each line once (--host picks hosts, --no-archive reads the local files only); a bucket that
    cannot be read is one line and exit 5.

    \b
    Examples:
      metrics-ops report                # the last 7 days, per day
      metrics-ops report --since 2026-11-01 --until 2026-11-30 --by day,event
      metrics-ops report --since 30d --by path --top 20 --event page_view
      metrics-ops report --by event --json
    """
    import time

    from metrics_ops.objectstore import ArchiveError
    from metrics_ops.render import render_report
    from metrics_ops.report import parse_by, run_report

    out = run.output()
    try:
        by = parse_by(by_)
    except ValueError as exc:
        raise Failure(f"--by {by_}: {exc}", ExitCode.USAGE) from None
    s = run.settings(tz=tz)
    store = existing_store(s)
    across = reading_across(s, hosts, no_archive)
    today = store.today(time.time())
    first, last = day_range(since, until, today)
    try:
        result = run_report(store.dir, since=first, until=last, today=today, zone=s.zone, tz=s.tz, by=by,
                            event=event, top=top, use_rollups=not no_rollups, link=store.link, across=across)
    except ArchiveError as exc:
        raise archive_failure(exc) from None
    except OSError as exc:
        raise Failure(f"cannot read {store.dir}: {exc.strerror or exc}") from None
    render_report(out, result, csv_format=csv_ and not out.json)
    if not result.ok:
        raise click.exceptions.Exit(ExitCode.FAILURE)
