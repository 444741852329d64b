"""forget: remove one or more visitors' events from every data file (a deletion request)."""

from __future__ import annotations

import click

from metrics_ops.cli.common import Failure, output, output_options, settings
from metrics_ops.exitcodes import ExitCode


@click.command(short_help="Delete visitors' events from every file (on request).")
@click.argument("visitor_ids", metavar="VISITOR_ID...", nargs=-1, required=True)
@click.option("--include-current", is_flag=True,
              help="Also rewrite today's files and the link's target: only while serve is stopped.")
@click.option("--dry-run", is_flag=True, help="List the files and line counts, change nothing.")
@click.option("--lock-timeout", type=float, default=None, metavar="SECONDS",
              help="Wait this long for a maintenance pass to finish (default 10; env METRICS_LOCK_TIMEOUT).")
@output_options
@click.pass_context
def forget(ctx, visitor_ids, include_current, dry_run, lock_timeout, json_, quiet, verbose):
    """Remove every event of the given visitor ids from the data files, archives included.

    Each file is rewritten crash-safely (a filtered copy, fsync, rename) under the maintenance lock. Files serve
    is still appending to are left alone unless --include-current; then exit 1 says lines remain. The debug
    ring keeps its last events until newer ones push them out.

    \b
    Examples:
      metrics-ops forget v_8f2a --dry-run
      metrics-ops forget v_8f2a v_91c0
      systemctl stop metrics-ops-serve && metrics-ops forget v_8f2a --include-current
    """
    import time

    from metrics_ops.events import VISITOR_ID
    from metrics_ops.maintenance import LockBusy, locked, run_forget
    from metrics_ops.render import render_pass
    from metrics_ops.store import Store

    out = output(ctx, json_, quiet, verbose)
    bad = [v for v in visitor_ids if not VISITOR_ID.fullmatch(v)]
    if bad:
        raise Failure(f"VISITOR_ID {bad[0]!r}: not a visitor id (1-128 characters of A-Z a-z 0-9 _ -)",
                      ExitCode.USAGE)
    s = settings(ctx, lock_timeout=lock_timeout)
    store = Store.from_settings(s)
    if not store.dir.is_dir():
        raise Failure(f"data directory {store.dir} does not exist (METRICS_DIR / --data-dir)")
    def go():
        return run_forget(store, frozenset(visitor_ids), now=time.time(), level=s.gzip_level, dry_run=dry_run,
                          include_current=include_current)

    try:
        if dry_run:  # reads only, and leaves not even a lock file behind
            result = go()
        else:
            with locked(store, s.lock_timeout):
                result = go()
    except LockBusy as exc:
        raise Failure(str(exc), ExitCode.LOCKED) from None
    render_pass(out, result)
    left = [a for a in result.actions if a.status == "skipped"]
    for a in left:
        out.error(f"{a.file}: {a.detail}")
    if not result.ok or (left and not dry_run):
        ctx.exit(ExitCode.FAILURE)
