"""nginx's limit_req model (ANCHORS.md figures) and the probe against a real nginx in front of a real serve."""

import csv
import json
from collections import Counter

import pytest

from metrics_ops.httpclient import Unreachable
from metrics_ops.ratelimit import NODELAY, predict, recent_probe_warning, remember_probe, run_probe, summarize

from .edge import Nginx, nginx_binary
from .serve_process import Server


def passes(decisions):
    return sum(d.passed for d in decisions)


def first_refused(decisions):
    return next((i for i, d in enumerate(decisions, 1) if not d.passed), None)


def test_back_to_back_sequential_passes_burst_plus_one():
    d = predict([i * 1.0 for i in range(20)], 5, 10)
    assert passes(d) == 11 and first_refused(d) == 12


def test_fifty_ms_spacing_passes_15_first_429_at_15():
    d = predict([i * 50.0 for i in range(20)], 5, 10)
    assert passes(d) == 15 and first_refused(d) == 15
    assert [i for i, x in enumerate(d, 1) if x.passed] == [*range(1, 15), 17]  # #17 slips through as it drains


def test_twenty_simultaneous_pass_11():
    assert passes(predict([0.0] * 20, 5, 10)) == 11


def test_a_second_burst_one_second_later_passes_5():
    first = [i * 1.0 for i in range(20)]
    d = predict(first + [first[-1] + 1000 + i for i in range(20)], 5, 10)
    assert passes(d[:20]) == 11 and passes(d[20:]) == 5


def test_delay_4_lets_5_through_at_once_and_queues_the_rest_of_the_burst():
    d = predict([0.0] * 20, 5, 10, delay=4)
    assert passes(d) == 11
    assert [x.delay_ms for x in d if x.passed] == [0, 0, 0, 0, 0, 200, 400, 600, 800, 1000, 1200]


def test_plain_burst_queues_every_excess_request():
    d = predict([0.0] * 5, 5, 10, delay=0)
    assert [x.delay_ms for x in d] == [0, 200, 400, 600, 800]


def test_a_refused_request_does_not_update_the_state():
    d = predict([0.0] * 11 + [1.0, 150.0], 5, 10)
    assert [x.passed for x in d[-2:]] == [False, False]
    assert d[-1].excess == d[10].excess  # the refusals left the bucket as the last accepted request did
    assert predict([0.0] * 11 + [200.0], 5, 10)[-1].passed  # 200 ms drained one request


def test_summarize_compares_with_the_model():
    from metrics_ops.ratelimit import ProbeResult, Record

    recs = [Record(i, float(i), 202 if i <= 11 else 429, 1.0) for i in range(1, 21)]
    r = summarize(ProbeResult("http://x/", "sequential", recs, 0.02), expect_rate=5, expect_burst=10)
    assert r.expectation["match"] and r.first_limited == 12 and r.passed == 11
    recs = [Record(i, float(i), 202 if i <= 14 else 429, 1.0) for i in range(1, 21)]
    r = summarize(ProbeResult("http://x/", "sequential", recs, 0.02), expect_rate=5, expect_burst=10)
    assert not r.expectation["match"]


def test_slow_sender_is_told_it_did_not_test_the_burst():
    from metrics_ops.ratelimit import ProbeResult, Record

    recs = [Record(i, i * 100.0, 202, 1.0) for i in range(1, 21)]  # 10 r/s: nginx drains half of it
    r = summarize(ProbeResult("http://x/", "sequential", recs, 2.0), expect_rate=5, expect_burst=10)
    assert any("was not tested at full speed" in w for w in r.warnings)


def test_recent_probe_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert recent_probe_warning("http://x/", 5, 10, now=100.0) is None
    remember_probe("http://x/", now=100.0)
    assert "2.2 s" in recent_probe_warning("http://x/", 5, 10, now=101.0)
    assert recent_probe_warning("http://x/", 5, 10, now=103.0) is None
    assert recent_probe_warning("http://other/", 5, 10, now=101.0) is None


def test_probe_refuses_other_schemes_and_unbounded_requests(run):
    r = run("probe", "file:///etc/passwd")
    assert r.exit_code == 2 and "want an http:// or https:// URL" in r.stderr
    r = run("probe", "http://127.0.0.1:80a/x")
    assert (r.exit_code, r.stderr) == (2, "metrics-ops: URL http://127.0.0.1:80a/x: the port is not a number from "
                                          "0 to 65535\n")
    assert run("probe", "http://127.0.0.1:9/", "--requests", "10001").exit_code == 2
    r = run("probe", "http://127.0.0.1:9/", "--rate", "1000", "--duration", "20")
    assert r.exit_code == 2 and "over 10000 requests" in r.stderr
    assert run("probe", "http://127.0.0.1:9/", "--rate", "5").exit_code == 2


def test_probe_timeout_bounds_a_dead_target():
    import socket
    import time

    with socket.socket() as s:  # listens but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match="no answer from"):  # nothing answered: nothing was measured
            run_probe(f"http://127.0.0.1:{s.getsockname()[1]}/", requests=50, concurrency=2, timeout=1.0)
        assert time.monotonic() - t0 < 4


needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (apt-get install nginx; "
                                                                 ".ci/run installs it)")


@pytest.fixture
def edge(data_dir, tmp_path):
    backend = Server(data_dir, tmp_path / "serve.log")
    proxy = Nginx(tmp_path / "nginx", backend.port)
    yield proxy
    proxy.stop()
    assert backend.stop() == 0


@needs_nginx
def test_probe_matches_real_nginx_sequential(edge, run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    out = tmp_path / "probe.csv"
    r = run("probe", edge.url(), "--requests", "20", "--expect-rate", "5", "--expect-burst", "10", "--json",
            "--csv", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    model = doc["expectation"]  # the model fed the real send times, within the documented tolerance of 1
    assert model["match"] and abs(doc["passed"] - model["predicted_passed"]) <= 1
    assert abs(doc["first_limited"] - model["predicted_first_limited"]) <= 1
    assert doc["limiter_seen"] is True and "no rate limiter" not in r.stderr
    assert 11 <= doc["passed"] <= 13  # 11 when the 20 sends take under 200 ms, as they do on an idle machine
    assert doc["statuses"] == {"202": doc["passed"], "429": 20 - doc["passed"]}
    rows = list(csv.DictReader(out.open()))
    assert [int(x["index"]) for x in rows] == list(range(1, 21))
    differ = [x for x in rows if x["predicted"] != ("pass" if x["status"] == "202" else "429")]
    assert len(differ) <= 1
    # probing again at once: the warning, and the model (fed real send times) still decides
    r = run("probe", edge.url(), "--requests", "20", "--expect-rate", "5", "--expect-burst", "10")
    assert "the previous probe of" in r.stderr


@needs_nginx
def test_probe_matches_real_nginx_concurrent(edge, run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    r = run("probe", edge.url(), "--requests", "20", "--concurrency", "20", "--expect-rate", "5",
            "--expect-burst", "10", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["expectation"]["match"] and doc["expectation"]["predicted_passed"] in (11, 12)  # 11 if sent at once
    assert doc["passed"] in (11, 12)


@needs_nginx
def test_probe_matches_real_nginx_open_loop_50ms(edge, run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    r = run("probe", edge.url(), "--rate", "20", "--duration", "1", "--concurrency", "4", "--expect-rate", "5",
            "--expect-burst", "10", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["expectation"]["match"]
    assert abs(doc["passed"] - 15) <= 1


@needs_nginx
def test_a_wrong_expectation_is_exit_1(edge, run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    r = run("probe", edge.url(), "--requests", "20", "--expect-rate", "5", "--expect-burst", "4")
    assert r.exit_code == 1
    import re

    m = re.search(r"metrics-ops: mismatch: (\d+) passed \(model: (\d+)\), first 429 at #(\d+) \(model: #(\d+)\), "
                  r"tolerance 1", r.stderr)
    assert m, r.stderr
    passed, model, first, model_first = map(int, m.groups())
    assert 11 <= passed <= 13 and first == passed + 1  # what nginx really let through ...
    assert model in (5, 6) and model_first == model + 1  # ... against a burst of 4 that was not configured


def test_nodelay_and_delay_exclude_each_other(run):
    r = run("probe", "http://127.0.0.1:9/", "--nodelay", "--delay", "3")
    assert r.exit_code == 2 and "exclude each other" in r.stderr
    assert NODELAY > 1e9


def test_probe_events_carry_the_runs_prefix_and_mark_and_the_run_is_printed(data_dir, tmp_path, run, monkeypatch):
    from metrics_ops.testrun import RUN_PREFIX

    from .helpers import all_lines

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    backend = Server(data_dir, tmp_path / "serve.log")
    try:
        r = run("probe", f"http://127.0.0.1:{backend.port}/api/metrics/event", "--requests", "5")
        doc = json.loads(run("probe", f"http://127.0.0.1:{backend.port}/api/metrics/event", "--requests", "3",
                             "--json").stdout)
    finally:
        assert backend.stop() == 0
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.stderr.splitlines() if "test run" in x]
    run_id = line.split("test run ", 1)[1].split(":", 1)[0]
    assert line.startswith(f"metrics-ops: test run {run_id}: visitor ids probe-{run_id}-*, metadata.test_run")
    assert doc["visitor_prefix"] == f"probe-{doc['run_id']}-" and doc["run_id"] != run_id  # one prefix per run
    records = [json.loads(x) for x in all_lines(data_dir)]
    assert len(records) == 8 and {rec["event"] for rec in records} == {"ratelimit_probe"}
    by_run = Counter(RUN_PREFIX.match(rec["visitor_id"]).group() for rec in records)
    assert by_run == {f"probe-{run_id}-": 5, doc["visitor_prefix"]: 3}
    assert Counter(rec["metadata"]["test_run"] for rec in records) == {run_id: 5, doc["run_id"]: 3}


@pytest.mark.parametrize("extra", [(), ("--expect-rate", "5", "--expect-burst", "10"), ("--json",),
                                   ("--concurrency", "4")])
def test_a_target_that_cannot_be_reached_is_one_line_and_exit_5(run, dead_url, extra):
    r = run("probe", dead_url, "--requests", "20", *extra)
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr == f"metrics-ops: cannot connect to {dead_url}: connection refused\n"


def test_a_target_that_answers_nothing_is_exit_5_too(run, hang_up_url):
    r = run("probe", hang_up_url, "--requests", "5", "--timeout", "10")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr.startswith(f"metrics-ops: no answer from {hang_up_url}: all 5 requests failed (")
    assert len(r.stderr.splitlines()) == 1


def test_a_mismatch_without_any_429_says_none(data_dir, tmp_path, run):
    backend = Server(data_dir, tmp_path / "serve.log")  # no edge in front: nothing is ever limited
    try:
        r = run("probe", f"http://127.0.0.1:{backend.port}/api/metrics/event", "--requests", "20",
                "--expect-rate", "5", "--expect-burst", "10")
    finally:
        assert backend.stop() == 0
    assert r.exit_code == 1
    assert "metrics-ops: mismatch: 20 passed (model: 11), first 429 at none (model: #12)" in r.stderr


def test_a_target_where_every_request_passed_is_said_to_have_no_limiter_in_front(data_dir, tmp_path, run,
                                                                                  monkeypatch):
    """serve alone (no edge): 20 of 20 pass, and the probe says what that means, with or without a model."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    backend = Server(data_dir, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{backend.port}/api/metrics/event"
    try:
        plain = run("probe", url, "--requests", "20")
        doc = json.loads(run("probe", url, "--requests", "5", "--concurrency", "5", "--json").stdout)
        single = run("probe", url, "--requests", "1")
    finally:
        assert backend.stop() == 0
    said = (f"metrics-ops: all 20 requests passed: no rate limiter seems to be in front of {url} (or its burst "
            "lets 20 through: raise --requests)")
    assert plain.exit_code == 0 and said in plain.stderr.splitlines()
    assert "limited (429)\t0" in plain.stdout
    assert doc["passed"] == 5 and doc["limiter_seen"] is False
    assert "all 5 requests passed: no rate limiter seems to be in front of" in doc["warnings"][0]
    assert single.exit_code == 0 and "rate limiter" not in single.stderr  # the first request always passes


def test_limiter_seen_only_when_the_answers_tell():
    from metrics_ops.ratelimit import ProbeResult, Record

    def seen(statuses):
        recs = [Record(i, float(i), s, 1.0) for i, s in enumerate(statuses, 1)]
        return summarize(ProbeResult("http://x/", "sequential", recs, 0.02)).limiter_seen

    assert seen([202] * 20) is False and seen([202] * 11 + [429] * 9) is True
    assert seen([202]) is None and seen([202] * 19 + [502]) is None and seen([404] * 20) is None


def test_a_csv_that_cannot_be_written_is_one_line_and_said_before_the_burst(data_dir, tmp_path, run, dead_url,
                                                                             monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    missing = tmp_path / "no-such-dir" / "probe.csv"
    r = run("probe", dead_url, "--csv", missing)  # exit 2, not 5: nothing was sent to the dead URL
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == f"metrics-ops: --csv {missing}: directory {missing.parent} does not exist\n"
    backend = Server(data_dir, tmp_path / "serve.log")
    try:
        r = run("probe", f"http://127.0.0.1:{backend.port}/api/metrics/event", "--requests", "2", "-q",
                "--csv", "/proc/probe.csv")  # a directory where no file can be made
    finally:
        assert backend.stop() == 0
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == "metrics-ops: --csv /proc/probe.csv: cannot write it: No such file or directory\n"


def test_a_url_that_is_no_url_is_one_line_for_probe_and_sample_test(run):
    r = run("probe", "http://[::1")
    assert (r.exit_code, r.stderr) == (2, "metrics-ops: URL http://[::1: invalid IPv6 URL\n")
    r = run("sample-test", "--url", "http://[::1")
    assert (r.exit_code, r.stderr) == (2, "metrics-ops: --url http://[::1: invalid IPv6 URL\n")
