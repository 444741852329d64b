"""sample-test: prove that sampling keeps the share it should, offline (simulated) or live against serve.

The simulation pushes events through the browser's stage as metrics.js decides (per visitor, by its random
id's digits) at the client rate, then through :class:`metrics_ops.sampling.Sampler`, the code serve runs, at the
server rate; the two compose to client x server (metrics_ops/sampling.py says why). The observed share is tested with a
99.9 % Wilson score interval: FAIL when the expected rate lies outside it, INCONCLUSIVE when the interval is
wider than +-tolerance (the result says how many events would decide), PASS otherwise. Expected rates 0 and 1
are judged exactly: every event kept (or none), else FAIL.
"""

from __future__ import annotations

import errno
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metrics_ops import testrun
from metrics_ops.httpclient import Target, post, require_an_answer, require_connection
from metrics_ops.layout import StoreError, unusable_dir
from metrics_ops.sampling import (
    Z999,
    BrowserSampler,
    Sampler,
    effective_rate,
    events_to_decide,
    wilson_interval,
)

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
STANDARD_PAIRS = ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5), (0.25, 0.5))
SIM_EVENT = "sample_test"


@dataclass
class Row:
    label: str
    client: float
    server: float
    mode: str
    expected: float  # the effective rate the stages should give
    events: int
    kept: int
    low: float = 0.0
    high: float = 1.0
    verdict: str = INCONCLUSIVE
    needed: int | None = None  # events that would decide, when INCONCLUSIVE

    @property
    def observed(self) -> float:
        return self.kept / self.events if self.events else 0.0


def judge(row: Row, tolerance: float, z: float = Z999) -> Row:
    if row.expected in (0.0, 1.0):
        # Rates 0 and 1 are exact (the sampler keeps none or all): one event off is a FAIL, and no number of
        # events makes an interval decide better than counting does.
        row.low = row.high = row.expected
        row.needed = None
        row.verdict = PASS if row.kept == row.expected * row.events else FAIL
        return row
    row.low, row.high = wilson_interval(row.kept, row.events, z)
    if not row.low <= row.expected <= row.high:
        row.verdict = FAIL
    elif (row.high - row.low) / 2 > tolerance:
        row.verdict = INCONCLUSIVE
        row.needed = max(row.events + 1, events_to_decide(row.expected, tolerance, z))
    else:
        row.verdict = PASS
    return row


def overall(rows: list[Row]) -> str:
    verdicts = {r.verdict for r in rows}
    return FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS


def simulate(client: float, server: float, events: int, *, mode: str = "random", seed: int | None = None,
             key: bytes | str = b"", event: str = SIM_EVENT, server_rates: dict | None = None,
             label: str = "") -> Row:
    """Push ``events`` simulated events (one visitor each, ids as metrics.js makes them) through the browser's
    per-visitor stage and serve's Sampler in ``mode``."""
    rng = random.Random(seed)
    server_stage = Sampler(server, mode, rates=server_rates, key=key, rng=random.Random(rng.random()).random)
    # A metrics.js id is 32 random hex digits and the browser looks at its first 8 only: draw those, decide, and
    # spell out whole ids (the rest a counter, so they are distinct) only for the visitors serve hashes.
    places = [rng.getrandbits(32) for _ in range(events)]
    passed = [i for i, keep in enumerate(BrowserSampler(client).keep_places(places)) if keep]
    if mode == "visitor":
        passed = ["%08x%024x" % (places[i], i) for i in passed]  # noqa: UP031 - the fastest spelling here
    kept = sum(server_stage.keep_many(passed, event))
    rate = server_stage.rate_for(event)
    return Row(label or f"{client:g} x {rate:g}", client, rate, mode, effective_rate(client, rate), events, kept)


@dataclass
class LiveResult:
    url: str
    run_id: str
    sent: int
    statuses: dict[int, int]
    stored: int
    sampled_out: int
    errors: int
    seconds: float
    row: Row
    lines_on_disk: int | None = None
    disk_matches: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["row"]["observed"] = self.row.observed
        d["visitor_prefix"] = testrun.visitor_prefix("st", self.run_id)
        return d


def live(url: str, events: int, *, server_rate: float, mode: str, tolerance: float, timeout: float = 120.0,
         data_dir: Path | None = None, body_event: str = SIM_EVENT) -> LiveResult:
    """Post ``events`` events to a running serve (one keep-alive connection), count stored=1 against stored=0.
    With ``data_dir``, also count this run's lines there; a ``data_dir`` that cannot be one is a
    :class:`StoreError` before anything is sent."""
    try:
        target = Target.parse(url, default_path="/api/metrics/event")
    except ValueError as exc:
        raise ValueError(f"--url {exc}") from None
    if data_dir is not None and (why := unusable_dir(Path(data_dir))) is not None:  # before anything is sent
        raise StoreError(errno.ENOTDIR if why == "is not a directory" else errno.ENOENT,
                         f"data directory {data_dir} {why}")
    require_connection(url, min(10.0, timeout))  # a dead port is an error, not an INCONCLUSIVE row
    run_id = testrun.new_run_id()
    before = _lines_with(data_dir, run_id) if data_dir else None
    started = time.monotonic()
    statuses, answers, error_kinds = _post_events(target, run_id, events, body_event, started + timeout)
    seconds = time.monotonic() - started
    sent = sum(statuses.values()) + len(error_kinds)
    if sent and not statuses:
        require_an_answer(url, sent, error_kinds)
    stored, sampled_out = answers[1], answers[0]
    answered = stored + sampled_out
    row = judge(Row(f"live {server_rate:g}", 1.0, server_rate, mode, server_rate, answered, stored), tolerance)
    result = LiveResult(url, run_id, sent, dict(statuses), stored, sampled_out, len(error_kinds), seconds, row)
    if answered < sent:
        result.notes.append(f"{sent - answered} of {sent} requests were not answered 202 "
                            f"({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()) if k != 202) or 'errors'});"
                            " they are left out of the rate (is a rate limit in front?)")
    if data_dir is not None:
        result.lines_on_disk = _lines_with(data_dir, run_id) - (before or 0)
        result.disk_matches = result.lines_on_disk == stored
        if not result.disk_matches:
            result.notes.append(f"{stored} events were answered stored=1 but {result.lines_on_disk} lines of this "
                                f"run are in {data_dir}")
    return result


def _post_events(target: Target, run_id: str, events: int, event_name: str,
                 deadline: float) -> tuple[Counter, Counter, list[str]]:
    """-> (HTTP statuses, the 202 answers by their "stored" value, the kinds of failed requests)"""
    statuses: Counter = Counter()
    answers: Counter = Counter()
    errors: list[str] = []
    conn = target.connection(min(10.0, deadline - time.monotonic()))
    try:
        for i in range(events):
            if time.monotonic() > deadline:
                break
            answer = post(conn, target.path, json.dumps(testrun.marked("st", run_id, i, event_name)))
            if answer.closed:
                conn = target.connection(conn.timeout)
            if answer.error:
                errors.append(answer.error)
                continue
            statuses[answer.status] += 1
            if answer.status == 202:
                answers[1 if json.loads(answer.body).get("stored") == 1 else 0] += 1
    finally:
        conn.close()
    return statuses, answers, errors


def _lines_with(data_dir: Path, marker: str) -> int:
    """Lines of this run in the data directory: plain, shards and archives, each once (metrics_ops.reading)."""
    from metrics_ops.reading import iter_lines

    needle = f'"{testrun.visitor_prefix("st", marker)}'.encode()
    return sum(1 for line in iter_lines(Path(data_dir)) if needle in line)
