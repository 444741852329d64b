"""Exit statuses of every metrics-ops command, defined once (docs/exit-status.md and the man pages list them)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: the work failed (an action or step of a pass, a sampling FAIL, a probe mismatch, a server that cannot start)
    FAILURE = 1
    #: bad usage or a bad setting (flag, environment, .env or TOML); nothing was changed
    USAGE = 2
    #: another maintenance pass holds the data directory's lock for longer than --lock-timeout
    LOCKED = 3
    #: sample-test: too few events to decide; the output says how many would
    INCONCLUSIVE = 4
    #: ratelimit-probe, sample-test --url: the target cannot be connected to or answered nothing; report, export:
    #: the archive cannot be read
    UNREACHABLE = 5
    #: rotate: the pass succeeded, but the disk budget deleted data before its retention (listed in the output)
    BUDGET = 6
    #: status, rotate --check: something needs attention (each reason one line on stderr); archive: a conflict
    ATTENTION = 7


EXIT_STATUS_DOC = {
    ExitCode.OK: "success; with -q nothing is printed",
    ExitCode.FAILURE: "the work failed: an action or a step of the pass failed (one line each on stderr; every "
                      "other action was still done, and the status file says so), the disk budget cannot be met, "
                      "a result did not hold, or the data directory does not exist (rotate makes it only with "
                      "--create)",
    ExitCode.USAGE: "bad usage or an invalid setting (flag, environment, .env or TOML file), or archive_url set "
                    "without boto3 installed (pip install 'metrics-ops[s3]'); nothing was changed",
    ExitCode.LOCKED: "another maintenance pass held the lock longer than --lock-timeout; nothing was changed",
    ExitCode.INCONCLUSIVE: "sample-test: too few events to decide within --tolerance (it says how many would)",
    ExitCode.UNREACHABLE: "ratelimit-probe, sample-test --url: cannot connect to the URL, or no request was answered;"
                          " nothing was measured. report, export: the archive (archive_url) cannot be listed or "
                          "read; nothing is reported (--no-archive reads the local files)",
    ExitCode.BUDGET: "rotate: the pass succeeded, but the disk budget (max_total_mb, min_free_mb, min_free_percent) "
                     "deleted data before its retention; the deleted files are listed",
    ExitCode.ATTENTION: "status, rotate --check: something needs attention (no successful pass in 2 intervals, the "
                        "last pass failed, the disk budget crossed, files waiting for the archive, serve unhealthy); "
                        "one line per reason; archive: a file is in conflict with its object (kept)",
}
