"""Test traffic marks: what probe and sample-test put on the events they send, so they are easy to exclude.

Every event of one run carries
- a visitor id that starts with the run's prefix ``<kind>-<run id>-`` (``probe-3f2a9c01b7de-17``,
  ``st-3f2a9c01b7de-1999``): one prefix per run, printed by the command, the unit `forget` removes;
- ``metadata.test_run`` = the run id, the unit a query leaves out (``select(.metadata.test_run == null)``).

A run id is 12 lowercase hex digits (48 random bits).
"""

from __future__ import annotations

import re
import uuid

KINDS = {"probe": "ratelimit-probe", "st": "sample-test"}
MARK = "test_run"  # the metadata key holding the run id
#: a whole run's visitor-id prefix, e.g. "probe-3f2a9c01b7de-"
RUN_PREFIX = re.compile(r"(?:probe|st)-[0-9a-f]{12}-")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def visitor_prefix(kind: str, run_id: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of test traffic {kind!r}")
    return f"{kind}-{run_id}-"


def marked(kind: str, run_id: str, n: int, event: str) -> dict:
    """The n-th test event of a run, marked in both places."""
    return {"visitor_id": f"{visitor_prefix(kind, run_id)}{n}", "event": event, "metadata": {MARK: run_id, "n": n}}


def describe(kind: str, run_id: str) -> str:
    """One line for the operator: how to find (and later remove) this run's events."""
    return (f"test run {run_id}: visitor ids {visitor_prefix(kind, run_id)}*, metadata.{MARK} = {run_id} "
            "(leave them out of queries by either)")
