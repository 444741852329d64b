"""forget: remove visitors' events from every data file (a deletion request)."""

from __future__ import annotations

import click

from metrics_ops.cli.common import (
    Failure,
    declares,
    existing_store,
    maintenance_lock_busy,
    pass_invocation,
    render_outcome,
    shared_options,
)
from metrics_ops.exitcodes import ExitCode


@declares(exits=(ExitCode.FAILURE, ExitCode.LOCKED), env=("NO_COLOR",),
          settings=("dir", "jsonl", "tz", "gzip_level", "rollup_min_visitors", "archive_url", "host_id"))
@click.command(short_help="Delete visitors' events from every file (on request).")
@click.argument("visitor_ids", metavar="[VISITOR_ID]...", nargs=-1)
@click.option("--prefix", "prefixes", multiple=True, metavar="PREFIX",
              help="Also remove every visitor id that starts with PREFIX (one test run: probe-RUNID-, st-RUNID-).")
@click.option("--include-current", is_flag=True, hidden=True,
              help="Accepted for compatibility: every file, the current one included, is always covered.")
@click.option("--dry-run", is_flag=True,
              help="List the files (and with archive_url, the objects of every host) and line counts, change nothing.")
@click.option("--lock-timeout", type=float, default=None, metavar="SECONDS",
              help="Wait this long for a maintenance pass to finish (default 10; env METRICS_LOCK_TIMEOUT).")
@shared_options
@pass_invocation
def forget(run, visitor_ids, prefixes, include_current, dry_run, lock_timeout):
    """Remove every event of the given visitor ids (or id prefixes) from every data file, archives included.

    Each file is rewritten crash-safely (a filtered copy, fsync, rename) under the maintenance lock, the file
    serve is writing included: serve notices the new file on its next append. An archive that cannot be read
    whole is never rewritten; it is named on stderr and the exit status is 1. The rollup of every day whose
    raw data was rewritten is recounted; rollups whose raw data is gone cannot be (they hold no ids, and fold
    what fewer than rollup_min_visitors visitors saw into (other)): their days are named. The debug ring keeps
    its last events until newer ones push them out.

    With archive_url set, every archived object of every host is searched too, and each one holding these
    visitors' lines is rewritten in the bucket (a conditional write, verified; this host's own objects become
    its rewritten local files). Each object that could not be rewritten (it kept changing, it is damaged, the
    bucket did not answer) is named on stderr and the exit status is 1; run forget again then. Other hosts
    replace their local copies, and recount those days' rollups, on their next pass.

    \b
    Examples:
      metrics-ops forget v_8f2a --dry-run
      metrics-ops forget v_8f2a v_91c0
      metrics-ops forget --prefix probe-7f3a09-   # a probe run's test events
    """
    import time

    from metrics_ops.events import VISITOR_ID
    from metrics_ops.forget import run_forget, visitor_rule
    from metrics_ops.maintenance import LockBusy, locked

    out = run.output()
    if not visitor_ids and not prefixes:
        raise Failure("give at least one VISITOR_ID or --prefix", ExitCode.USAGE)
    bad = [v for v in visitor_ids if not VISITOR_ID.fullmatch(v)]
    if bad:
        raise Failure(f"VISITOR_ID {bad[0]!r}: not a visitor id (1-128 characters of A-Z a-z 0-9 _ -)",
                      ExitCode.USAGE)
    bad = [p for p in prefixes if len(p) < 3 or not VISITOR_ID.fullmatch(p)]
    if bad:
        raise Failure(f"--prefix {bad[0]!r}: want at least 3 characters of A-Z a-z 0-9 _ - (a shorter prefix "
                      "would match too many visitors)", ExitCode.USAGE)
    s = run.settings(lock_timeout=lock_timeout)
    store = existing_store(s)
    keep = visitor_rule(frozenset(visitor_ids), frozenset(prefixes))
    bucket, unopened = _bucket(s)

    try:
        with locked(store, s.lock_timeout, dry_run):
            result = run_forget(store, keep, now=time.time(), level=s.gzip_level, dry_run=dry_run,
                                min_visitors=s.rollup_min_visitors)
            if s.archive_location is not None:
                from metrics_ops.erasure import ArchiveErasure, erase_archive, into_result, local_rewrites

                if bucket is None:
                    erasure = ArchiveErasure(s.archive_location.url, s.host_id, errors=[unopened])
                else:
                    erasure = erase_archive(bucket, keep, host_id=s.host_id, store=store, level=s.gzip_level,
                                            dry_run=dry_run, rewritten_local=local_rewrites(result.actions))
                into_result(result, erasure)
    except LockBusy as exc:
        raise Failure(maintenance_lock_busy(exc), ExitCode.LOCKED) from None
    except OSError as exc:
        raise Failure(f"cannot process {store.dir}: {exc.strerror or exc}") from None
    render_outcome(out, result)


def _bucket(s):
    """The archive's bucket (None, None without archive_url; None and why when it cannot be set up): opened
    before anything changes, so a missing boto3 exits 2 with nothing rewritten."""
    if s.archive_location is None:
        return None, None
    from metrics_ops.objectstore import ArchiveError, Boto3Missing, Bucket

    try:
        return Bucket(s.archive_location), None
    except Boto3Missing as exc:
        raise Failure(str(exc), ExitCode.USAGE) from None
    except ArchiveError as exc:
        return None, f"{exc}; no archived object was searched"
