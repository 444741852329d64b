"""nginx's limit_req, modelled exactly, and the probe that fires bounded bursts at the edge.

The model follows src/http/modules/ngx_http_limit_req_module.c (ngx_http_limit_req_lookup): per key, ``excess``
in milli-requests and ``last`` in ms; rate 5r/s is stored as 5000, burst 10 as 10000. The first request of a key
passes with excess 0. Every later one computes ``e = max(0, excess - rate * |ms since last| / 1000 + 1000)``
(integer arithmetic); ``e > burst`` is rejected and the state is left alone; otherwise the state becomes
(e, now). Accepted requests wait ``(e - delay) * 1000 / rate`` ms when ``e`` exceeds the delay threshold:
``nodelay`` never waits, plain ``burst=`` waits for all excess (delay 0), ``delay=N`` lets N+1 through at once.
So an instant burst passes burst + 1 requests, not the "15" of the old documentation.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metrics_ops import testrun
from metrics_ops.httpclient import Target, post, require_an_answer, require_connection

MAX_REQUESTS = 10_000
NODELAY = math.inf


@dataclass(frozen=True)
class Decision:
    passed: bool
    delay_ms: float  # how long nginx holds an accepted request before it proxies it
    excess: int  # milli-requests after this request (unchanged when rejected)


def predict(times_ms: Sequence[float], rate: float, burst: int, *, delay: float = NODELAY) -> list[Decision]:
    """nginx's decision for each request of one key arriving at ``times_ms`` (in order).

    ``delay``: NODELAY for ``nodelay``, 0 for plain ``burst=N``, N for ``delay=N``.
    """
    rate_m = int(rate * 1000)  # nginx: rate=5r/s -> 5000
    burst_m = burst * 1000
    delay_m = math.inf if delay == NODELAY else int(delay * 1000)
    out: list[Decision] = []
    excess, last = 0, None
    for t in times_ms:
        now = int(t)  # nginx compares whole milliseconds of its cached clock
        if last is None:
            e = 0
        else:
            ms = now - last
            ms = 1 if ms < -60000 else abs(ms)
            e = excess - rate_m * ms // 1000 + 1000
            e = max(e, 0)
            if e > burst_m:
                out.append(Decision(False, 0.0, excess))
                continue
        excess, last = e, now
        wait = 0.0 if e <= delay_m else (e - delay_m) * 1000 / rate_m
        out.append(Decision(True, wait, e))
    return out


@dataclass
class Record:
    index: int  # 1-based, in send order
    sent_ms: float  # since the probe started
    status: int  # 0: no answer (error or time-out)
    latency_ms: float
    error: str | None = None


@dataclass
class ProbeResult:
    url: str
    mode: str  # sequential | concurrent | open-loop
    records: list[Record]
    seconds: float
    timed_out: bool = False
    statuses: dict[int, int] = field(default_factory=dict)
    passed: int = 0
    limited: int = 0
    first_limited: int | None = None  # 1-based index of the first 429
    latency_ms: dict[str, float] = field(default_factory=dict)
    delayed: int = 0
    immediate: int = 0
    send_rate: float = 0.0
    expectation: dict | None = None
    #: True: some request was limited (429); False: every request passed, so nothing seems to limit this URL;
    #: None: cannot tell (a single request always passes; other answers)
    limiter_seen: bool | None = None
    warnings: list[str] = field(default_factory=list)
    run_id: str | None = None  # the test-traffic mark of the default body (None with --body)

    @property
    def ok(self) -> bool:
        return self.expectation is None or bool(self.expectation["match"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("records")
        d.pop("_delay_threshold_ms")
        d["requests"] = len(self.records)
        d["visitor_prefix"] = testrun.visitor_prefix("probe", self.run_id) if self.run_id else None
        d["ok"] = self.ok
        return d

    def write_csv(self, path: str | os.PathLike) -> None:
        predicted = (self.expectation or {}).get("decisions")
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "sent_ms", "status", "latency_ms", "delayed", "predicted", "error"])
            for r in self.records:
                pred = "" if predicted is None else ("pass" if predicted[r.index - 1] else "429")
                w.writerow([r.index, f"{r.sent_ms:.3f}", r.status, f"{r.latency_ms:.3f}",
                            int(self._is_delayed(r)), pred, r.error or ""])

    _delay_threshold_ms: float = 100.0

    def _is_delayed(self, r: Record) -> bool:
        return 200 <= r.status < 300 and r.latency_ms >= self._delay_threshold_ms


def default_body(run_id: str, i: int) -> bytes:
    """The shape real clients send, marked as test traffic (metrics_ops.testrun) to find and remove it."""
    return json.dumps(testrun.marked("probe", run_id, i, "ratelimit_probe"), separators=(",", ":")).encode()


def run_probe(url: str, *, requests: int = 20, concurrency: int = 1, rate: float | None = None,
              duration: float | None = None, timeout: float = 30.0, body: bytes | None = None,
              content_type: str = "application/json") -> ProbeResult:
    """Fire a bounded burst and record every request in send order.

    Closed loop (default): ``requests`` requests over ``concurrency`` keep-alive connections, each sent when
    its connection is free (1 = back-to-back sequential). Open loop (``rate`` and ``duration``): requests are
    sent at 1/rate intervals whatever the answers, over up to ``concurrency`` connections. ``timeout`` bounds
    the whole probe: nothing is sent after it, and no answer is awaited past it.
    """
    target = Target.parse(url)
    require_connection(url, min(10.0, timeout))  # a target that cannot be reached is an error, not 0 passes
    if rate is not None:
        if duration is None:
            raise ValueError("--rate needs --duration")
        requests = max(1, round(rate * duration))
    if not 1 <= requests <= MAX_REQUESTS:
        raise ValueError(f"--requests must be 1..{MAX_REQUESTS} (asked: {requests})")
    concurrency = max(1, min(concurrency, requests, 256))
    burst = _Burst(target, requests, rate, timeout, body, content_type)
    done, seconds = burst.run(concurrency)
    mode = "open-loop" if rate is not None else ("sequential" if concurrency == 1 else "concurrent")
    if done and all(r.status == 0 for r in done):
        require_an_answer(url, len(done), [r.error or "time-out" for r in done])
    result = ProbeResult(url, mode, done, seconds, timed_out=len(done) < requests,
                         run_id=burst.run_id if body is None else None)
    if result.timed_out:
        result.warnings.append(f"the probe stopped at --timeout {timeout:g} s after {len(done)} of {requests} "
                               "requests")
    return result


class _Burst:
    """The threads of one probe: each holds one keep-alive connection, opened before the burst starts (the
    burst measures requests, not handshakes), and takes the next request number until all are sent."""

    def __init__(self, target: Target, requests: int, rate: float | None, timeout: float, body: bytes | None,
                 content_type: str):
        self.target, self.requests, self.rate, self.timeout = target, requests, rate, timeout
        self.body, self.content_type = body, content_type
        self.run_id = testrun.new_run_id()
        self.records: list[Record | None] = [None] * requests
        self.lock = threading.Lock()
        self.taken = 0
        self.start = self.deadline = 0.0
        self.ready: threading.Barrier | None = None

    def run(self, concurrency: int) -> tuple[list[Record], float]:
        """-> (the records in send order, the seconds the burst took)"""
        self.ready = threading.Barrier(concurrency + 1)
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(concurrency)]
        self.start = time.monotonic()
        self.deadline = self.start + self.timeout
        for t in threads:
            t.start()
        try:
            self.ready.wait(timeout=min(self.timeout, 30))
        except threading.BrokenBarrierError:
            pass
        self.start = time.monotonic()  # the burst starts now, every connection is open
        self.deadline = self.start + self.timeout
        for t in threads:
            t.join(max(0.0, self.deadline - time.monotonic()) + 1.0)
        seconds = time.monotonic() - self.start
        done = sorted((r for r in self.records if r is not None), key=lambda r: r.sent_ms)
        for i, r in enumerate(done, 1):  # send order, as the record promises
            r.index = i
        return done, seconds

    def connect(self):
        conn = self.target.connection(min(10.0, self.timeout))
        try:
            conn.connect()
        except OSError:
            pass
        return conn

    def next_index(self) -> int | None:
        with self.lock:
            if self.taken >= self.requests or (self.rate is None and time.monotonic() >= self.deadline):
                return None
            self.taken += 1
            return self.taken

    def worker(self) -> None:
        conn = self.connect()
        self.ready.wait()
        try:
            while (index := self.next_index()) is not None:
                if self.rate is not None:  # open loop: each request at its due time, whatever the answers
                    due = self.start + (index - 1) / self.rate
                    if due > time.monotonic():
                        threading.Event().wait(due - time.monotonic())
                    if time.monotonic() >= self.deadline:
                        return
                conn = self.send(conn, index)
        finally:
            conn.close()

    def send(self, conn, index: int):
        payload = self.body if self.body is not None else default_body(self.run_id, index)
        t0 = time.monotonic()
        conn.timeout = max(0.05, min(10.0, self.deadline - t0))
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        answer = post(conn, self.target.path, payload, self.content_type)
        self.records[index - 1] = Record(index, (t0 - self.start) * 1000, answer.status,
                                         (time.monotonic() - t0) * 1000, answer.error)
        return self.connect() if answer.closed else conn


def summarize(result: ProbeResult, *, expect_rate: float | None = None, expect_burst: int | None = None,
              delay: float = NODELAY, tolerance: int = 1) -> ProbeResult:
    """Fill in the histogram, latencies, delayed/immediate and, with an expectation, the model's verdict."""
    recs = result.records
    result.statuses = dict(sorted(Counter(r.status for r in recs).items()))
    result.passed = sum(1 for r in recs if 200 <= r.status < 300)
    result.limited = sum(1 for r in recs if r.status == 429)
    result.first_limited = next((r.index for r in recs if r.status == 429), None)
    answered = sorted(r.latency_ms for r in recs if r.status)
    if answered:
        result.latency_ms = {f"p{q}": round(_quantile(answered, q / 100), 3) for q in (50, 95, 99)}
    result._delay_threshold_ms = 0.5 * 1000 / expect_rate if expect_rate else 100.0
    result.delayed = sum(1 for r in recs if result._is_delayed(r))
    result.immediate = result.passed - result.delayed
    if len(recs) > 1:
        span = (recs[-1].sent_ms - recs[0].sent_ms) / 1000
        result.send_rate = round((len(recs) - 1) / span, 1) if span > 0 else math.inf
    result.limiter_seen = True if result.limited else False if len(recs) > 1 and result.passed == len(recs) else None
    if result.limiter_seen is False:
        result.warnings.append(f"all {len(recs)} requests passed: no rate limiter seems to be in front of "
                               f"{result.url} (or its burst lets {len(recs)} through: raise --requests)")
    if expect_rate is None or expect_burst is None:
        return result
    times = [r.sent_ms for r in recs]
    decisions = predict(times, expect_rate, expect_burst, delay=delay)
    pred_pass = sum(d.passed for d in decisions)
    pred_first = next((i for i, d in enumerate(decisions, 1) if not d.passed), None)
    pred_delayed = sum(1 for d in decisions if d.passed and d.delay_ms >= result._delay_threshold_ms)
    compare_first = result.mode == "sequential"
    match = abs(result.passed - pred_pass) <= tolerance
    if compare_first:
        match = match and ((pred_first is None and result.first_limited is None) or (
            pred_first is not None and result.first_limited is not None
            and abs(pred_first - result.first_limited) <= tolerance))
    others = {s: n for s, n in result.statuses.items() if not (200 <= s < 300 or s == 429)}
    if others:
        result.warnings.append(f"answers other than 2xx and 429: {others}; the model does not predict them")
    # could the probe send fast enough? compare with the same burst sent all at once
    instant = sum(d.passed for d in predict([times[0]] * len(times), expect_rate, expect_burst, delay=delay)) \
        if times else 0
    if result.mode != "open-loop" and pred_pass > instant:
        result.warnings.append(
            f"sent at {result.send_rate:g} r/s: the bucket drained {pred_pass - instant} request(s) while the burst "
            f"was being sent, so burst={expect_burst} was not tested at full speed (raise --concurrency)")
    result.expectation = {
        "rate": expect_rate, "burst": expect_burst, "delay": None if delay == NODELAY else delay,
        "nodelay": delay == NODELAY, "tolerance": tolerance, "predicted_passed": pred_pass,
        "predicted_first_limited": pred_first, "predicted_delayed": pred_delayed,
        "compared": ["passed", "first_limited"] if compare_first else ["passed"], "match": match,
        "decisions": [d.passed for d in decisions],
    }
    return result


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def probe_history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "metrics-ops" / "probes.json"


def recent_probe_warning(url: str, rate: float, burst: int, now: float | None = None) -> str | None:
    """A warning when the previous probe of ``url`` ended less than (burst + 1) / rate seconds ago."""
    now = time.time() if now is None else now
    try:
        last = json.loads(probe_history_path().read_text()).get(url)
    except (OSError, ValueError):
        return None
    refill = (burst + 1) / rate
    if isinstance(last, int | float) and 0 <= now - last < refill:
        return (f"the previous probe of {url} ended {now - last:.1f} s ago; nginx needs {refill:g} s "
                f"((burst + 1) / rate) to forget it, so this probe may see fewer passes than the model predicts")
    return None


def remember_probe(url: str, now: float | None = None) -> None:
    path = probe_history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[url] = time.time() if now is None else now
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # remembering is a courtesy; the probe itself succeeded
