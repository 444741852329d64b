"""rotate, gzip, archive and prune: the maintenance pass and its steps alone."""

from __future__ import annotations

import click

from metrics_ops.cli.common import (
    Failure,
    complete_zone,
    data_dir_problem,
    declares,
    maintenance_lock_busy,
    pass_invocation,
    render_outcome,
    shared_options,
)
from metrics_ops.exitcodes import ExitCode


def _common(fn):
    fn = click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")(fn)
    fn = click.option("--lock-timeout", type=float, default=None, metavar="SECONDS",
                      help="Wait this long for another pass to finish (default 10; env METRICS_LOCK_TIMEOUT).")(fn)
    fn = click.option("--tz", default=None, metavar="ZONE", shell_complete=complete_zone,
                      help="IANA time zone that decides the day (default UTC; env METRICS_TZ).")(fn)
    return shared_options(fn)


def _gzip_opts(fn):
    fn = click.option("--level", "gzip_level", type=int, default=None, metavar="1-9",
                      help="gzip level (default 6; env METRICS_GZIP_LEVEL).")(fn)
    return click.option("--gzip-after", type=int, default=None, metavar="DAYS",
                        help="Compress files whose day is at least DAYS old (default 3; env METRICS_GZIP_AFTER).")(fn)


def _retention_opt(fn):
    return click.option("--retention", type=int, default=None, metavar="DAYS",
                        help="Delete files whose day is at least DAYS old (default 30; env METRICS_RETENTION).")(fn)


def _run(run, steps: tuple[str, ...], flags: dict, *, dry_run: bool, loop: bool = False,
         interval: float | None = None, create: bool = False) -> None:
    import signal
    import threading

    from metrics_ops.maintenance import ARCHIVE_ROTATE_STEPS, ROTATE_STEPS, LockBusy, failure_reason, run_loop

    out = run.output()
    s = run.settings(interval=interval, **flags)
    if steps == ROTATE_STEPS and s.archive_url is not None:
        steps = ARCHIVE_ROTATE_STEPS
    store = _store_for(s, steps, dry_run=dry_run, create=create)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def one_pass():
        return _one_pass(out, s, store, steps, dry_run, stop)

    health_failed: list[OSError] = []
    if steps[0] == "rotate" and not dry_run:  # rotate's passes are recorded for monitoring
        one_pass, health_failed = _recorded(one_pass, store, s, out)
    if loop and not dry_run:
        if not out.quiet:
            out.warn(f"rotating {store.dir} every {s.interval:g} s; SIGTERM or Ctrl-C stops after the current step")
        run_loop(one_pass, s.interval, stop, _PassLog(out), out.error,
                 describe_busy=maintenance_lock_busy)
        return
    try:
        result = one_pass()
    except LockBusy as exc:
        raise Failure(maintenance_lock_busy(exc), ExitCode.LOCKED) from None
    except Exception as exc:  # noqa: BLE001  one line and exit 1, never a traceback; the status file says it too
        raise Failure(f"pass failed: {failure_reason(exc, '')}") from None
    render_outcome(out, result, failed=bool(health_failed))
    if steps == ("archive",) and result.ok and result.archive and result.archive["conflicts"]:
        conflicts = [(name, why) for name, why in result.kept if why.startswith("conflict")]
        for name, why in conflicts[:3]:  # named without -v: the operator has something to do for each
            out.warn(f"{name}: {why}")
        more = f" ({len(conflicts) - 3} more with -v)" if len(conflicts) > 3 else ""
        out.warn(f"{result.archive['conflicts']} file(s) in conflict with their object, kept{more}; exit status 7")
        raise click.exceptions.Exit(ExitCode.ATTENTION)
    if any(a.step == "budget" and a.status == "done" for a in result.actions):
        out.warn("the disk budget deleted data before its retention (see the budget actions above); exit status 6")
        raise click.exceptions.Exit(ExitCode.BUDGET)


class _PassLog:
    """The passes of the --interval loop, like logrotate under cron: silent while there is nothing to do; what
    a pass changed and what failed otherwise (names outside the grammar only when they change); with -v every
    pass, its "nothing to do" line included."""

    def __init__(self, out):
        self.out, self.unknown = out, []

    def __call__(self, result) -> None:
        from dataclasses import replace

        from metrics_ops.render import render_pass

        news = result.unknown != self.unknown
        self.unknown = result.unknown
        if not self.out.verbose:
            if not (news or result.errors or result.interrupted or any(a.status != "planned" for a in result.actions)):
                return
            if not news:
                result = replace(result, unknown=[])
        render_pass(self.out, result)


def _recorded(one_pass, store, s, out):
    """rotate's passes leave their status (and the textfile) for monitoring, failed or not; a busy lock means
    another pass runs and records its own. -> (the recorded pass, the list of failures to write them)."""
    import time

    from metrics_ops.health import record_pass
    from metrics_ops.maintenance import LockBusy, failure_reason

    failures: list[OSError] = []

    def record(started, **outcome):
        try:
            record_pass(store, s, started=started, ended=time.time(), **outcome)
        except OSError as exc:
            failures.append(exc)
            out.error(f"the pass's health was not recorded: {exc}")

    def recorded_pass():
        started = time.time()
        try:
            result = one_pass()
        except LockBusy:
            raise
        except Exception as exc:
            record(started, error=f"pass failed: {failure_reason(exc, '')}")
            raise
        record(started, result=result)
        return result

    return recorded_pass, failures


def _store_for(s, steps: tuple[str, ...], *, dry_run: bool, create: bool):
    """The store of the data directory, which must exist: a maintenance command never invents an empty one
    (cron's working directory is $HOME: ./data there is not the directory serve writes to); only --create
    makes it."""
    from metrics_ops.config import ConfigError, require_gzip_before_prune
    from metrics_ops.objectstore import Boto3Missing
    from metrics_ops.offsite import require_archive_retention, require_boto3
    from metrics_ops.store import Store

    try:
        if "gzip" in steps and "prune" in steps:  # only a pass that does both needs the order of the two
            require_gzip_before_prune(s)
        if s.archive_url is not None and ("prune" in steps or "archive" in steps or "budget" in steps):
            require_archive_retention(s)
            require_boto3()
    except ConfigError as exc:
        raise Failure(exc.lines, ExitCode.USAGE) from None
    except Boto3Missing as exc:
        raise Failure(str(exc), ExitCode.USAGE) from None
    store = Store.from_settings(s)
    problem = data_dir_problem(s, can_create="rotate" in steps)
    if problem is not None:
        if not create or store.dir.exists():  # --create makes a directory, never replaces a file
            raise Failure(problem)
        if not dry_run:
            try:
                store.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Failure(f"cannot create data directory {store.dir}: {exc.strerror}") from None
    if "archive" in steps and s.archive_url is None:
        raise Failure("archive_url is not set (METRICS_ARCHIVE_URL=s3://bucket/prefix): there is no archive to "
                      "upload to", ExitCode.USAGE)
    return store


def _one_pass(out, s, store, steps: tuple[str, ...], dry_run: bool, stop):
    import time

    from metrics_ops.budget import Budget
    from metrics_ops.maintenance import Kind, locked, run_pass
    from metrics_ops.offsite import Archive

    with out.progress("compressing", enabled=not dry_run) as bar:  # a plan compresses nothing
        def on_plan(actions):
            bar.add_total(sum(a.bytes_before or 0 for a in actions if a.kind in (Kind.GZIP, Kind.RECONCILE)))

        with locked(store, s.lock_timeout, dry_run):
            return run_pass(store, now=time.time(), steps=steps, gzip_after=s.gzip_after, retention=s.retention,
                            level=s.gzip_level, rollup_retention=s.rollup_retention,
                            rollup_min_visitors=s.rollup_min_visitors, dry_run=dry_run, stop=stop,
                            on_plan=on_plan, progress=bar.advance, budget=Budget.from_settings(s),
                            archive=Archive.from_settings(s))


def _budget_opts(fn):
    fn = click.option("--min-free-percent", type=float, default=None, metavar="PCT",
                      help="Disk budget: the same floor in percent of the file system (env METRICS_MIN_FREE_PERCENT)."
                      )(fn)
    fn = click.option("--min-free-mb", type=float, default=None, metavar="MIB",
                      help="Disk budget: delete the oldest data while less than MIB is free (env METRICS_MIN_FREE_MB)."
                      )(fn)
    return click.option("--max-total-mb", type=float, default=None, metavar="MIB",
                        help="Disk budget: delete the oldest data while data files exceed MIB (env "
                             "METRICS_MAX_TOTAL_MB).")(fn)


@declares(exits=(ExitCode.FAILURE, ExitCode.LOCKED, ExitCode.BUDGET, ExitCode.ATTENTION), env=("NO_COLOR",),
          settings=("dir", "jsonl", "rollup_retention", "rollup_min_visitors", "status_file", "health_textfile",
                    "file_mode", "archive_url", "host_id", "archive_retention"))
@click.command(short_help="Keep the data dir bounded: link, shard, gzip, prune.")
@click.option("--once", is_flag=True, help="Run one pass and exit; the exit status says whether it succeeded.")
@click.option("--interval", type=float, default=None, metavar="SECONDS",
              help="Seconds between passes of the loop (default 300; env METRICS_INTERVAL).")
@click.option("--max-mb", type=float, default=None, metavar="MIB",
              help="Start the next shard when the current file reaches MIB (env METRICS_MAX_MB; unset: never).")
@click.option("--create", is_flag=True,
              help="Create the data directory if it does not exist (without it: exit 1 naming the directory).")
@_budget_opts
@click.option("--check", is_flag=True,
              help="Health check: exit 7 unless the last successful pass is at most 2 x --interval old.")
@_gzip_opts
@_retention_opt
@_common
@pass_invocation
def rotate(run, once, interval, max_mb, create, max_total_mb, min_free_mb, min_free_percent, check, gzip_after,
           gzip_level, retention, tz, lock_timeout, dry_run):
    """Point the link at today's file, start size shards, write rollups, then gzip and prune: one pass or a loop.

    Without --once it loops every --interval seconds until SIGTERM/SIGINT (the sidecar layout);
    errors in one pass are reported on stderr and the loop goes on. A data directory that does not exist is
    an error (exit 1, naming it) unless --create is given: cron's working directory is not yours.

    \b
    Examples:
      metrics-ops rotate --once -q           # cron: mail only on trouble
      metrics-ops rotate --interval 300 --retention 30 --max-mb 64
      metrics-ops rotate --once --dry-run    # show the plan
      metrics-ops rotate --check             # health check: passes succeed?
      # the first run, to make the directory
      metrics-ops rotate --once --create --data-dir /var/lib/metrics
      # with a disk budget
      metrics-ops rotate --once --max-total-mb 2048 --min-free-percent 10
    """
    from metrics_ops.maintenance import ROTATE_STEPS

    if check:
        return _check(run, interval=interval, tz=tz)
    flags = dict(max_mb=max_mb, gzip_after=gzip_after, gzip_level=gzip_level, retention=retention, tz=tz,
                 lock_timeout=lock_timeout, max_total_mb=max_total_mb, min_free_mb=min_free_mb,
                 min_free_percent=min_free_percent)
    _run(run, ROTATE_STEPS, flags, dry_run=dry_run, loop=not once, interval=interval, create=create)


def _check(run, *, interval: float | None, tz: str | None) -> None:
    """rotate --check: the health check of compose and systemd, from the status file the passes write."""
    import time

    from metrics_ops.health import StatusUnreadable, check, expected_interval, read_status, when

    out = run.output()
    s = run.settings(interval=interval, tz=tz)
    problem = data_dir_problem(s, can_create=False)  # not "no pass has recorded a status yet": none can
    if problem is not None:
        raise Failure(problem)
    try:
        status = read_status(s.status_path)
    except StatusUnreadable as exc:
        status, reasons = None, [str(exc)]
    else:
        reasons = check(status, now=time.time(), interval=expected_interval(s, status), zone=s.zone)
    if out.json:
        out.document({"ok": not reasons, "reasons": reasons, "status_file": s.status_path,
                      "status": status.__dict__ if status is not None else None})
    else:
        for line in reasons:
            out.error(line)
        if not reasons and not out.quiet:
            ago = time.time() - status.last_success
            print(f"rotator healthy: last successful pass {when(status.last_success, s.zone)} ({ago:.0f} s ago)",
                  file=out.stdout)
    if reasons:
        raise click.exceptions.Exit(ExitCode.ATTENTION)


@declares(exits=(ExitCode.FAILURE, ExitCode.LOCKED), env=("NO_COLOR",),
          settings=("dir", "jsonl", "archive_url", "host_id", "archive_retention"))
@click.command("gzip", short_help="Compress the day files older than --gzip-after days.")
@_gzip_opts
@_common
@pass_invocation
def gzip_cmd(run, gzip_after, gzip_level, tz, lock_timeout, dry_run):
    """Compress day files whose day is at least --gzip-after days old (never today's, never the link's).

    Crash-safe: a killed run leaves every line in place, and the next run finishes the job.

    \b
    Examples:
      metrics-ops gzip --gzip-after 3
      metrics-ops gzip --dry-run --json
    """
    _run(run, ("gzip",), dict(gzip_after=gzip_after, gzip_level=gzip_level, tz=tz, lock_timeout=lock_timeout),
         dry_run=dry_run)


@declares(exits=(ExitCode.FAILURE, ExitCode.LOCKED), env=("NO_COLOR",),
          settings=("dir", "jsonl", "archive_url", "host_id", "archive_retention"))
@click.command(short_help="Delete the data files older than --retention days.")
@_retention_opt
@_common
@pass_invocation
def prune(run, retention, tz, lock_timeout, dry_run):
    """Delete data files (plain, shards, .gz) whose day is at least --retention days old.

    Never a symlink, never a name outside the file grammar, never the file the link points at.

    \b
    Examples:
      metrics-ops prune --retention 30 --dry-run
      metrics-ops prune --retention 30 -q
    """
    _run(run, ("prune",), dict(retention=retention, tz=tz, lock_timeout=lock_timeout), dry_run=dry_run)


@declares(exits=(ExitCode.FAILURE, ExitCode.USAGE, ExitCode.LOCKED, ExitCode.ATTENTION), env=("NO_COLOR",),
          settings=("dir", "jsonl", "archive_url", "host_id", "archive_retention", "retention"))
@click.command(short_help="Upload closed days to the archive (archive_url).")
@_common
@pass_invocation
def archive(run, tz, lock_timeout, dry_run):
    """Upload each closed, compressed file to the archive (archive_url), verified, and drop this host's objects
    past archive_retention: the step rotate runs after gzip and before prune when archive_url is set.

    Each file goes to <prefix>/day=YYYY-MM-DD/host=<host_id>/<file name>; a rerun uploads nothing twice. Local
    files are never deleted here (prune and the budget delete only what is safely archived). Exit 1 when the
    bucket cannot be reached or an upload failed (one line naming the archive), 7 when a file is in conflict
    with its object (kept; see docs/operations.md).

    \b
    Examples:
      metrics-ops archive --dry-run   # what it would upload
      metrics-ops archive -q          # cron: mail only on trouble
    """
    _run(run, ("archive",), dict(tz=tz, lock_timeout=lock_timeout), dry_run=dry_run)
