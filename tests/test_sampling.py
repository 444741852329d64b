"""Samplers, the Wilson interval, and sample-test (simulated with fixed seeds, and live against a real serve)."""

import json
import random
import subprocess
import sys

import pytest

from metrics_ops.sampletest import FAIL, INCONCLUSIVE, PASS, Row, judge, simulate
from metrics_ops.sampling import (
    BrowserSampler,
    Sampler,
    browser_fraction,
    browser_visitor_id,
    effective_rate,
    events_to_decide,
    visitor_fraction,
    wilson_interval,
)

from .serve_process import Server


def test_rates_zero_and_one_are_exact():
    assert all(Sampler(1.0).keep(f"v{i}", "e") for i in range(1000))
    assert not any(Sampler(0.0, "visitor").keep(f"v{i}", "e") for i in range(1000))


def test_visitor_hash_is_stable_across_processes_and_keyed():
    # fixed values: a change here would silently move every visitor in or out of the sample
    import hashlib

    assert visitor_fraction("v_123", b"") == pytest.approx(0.0093476681, abs=1e-10)
    digest = hashlib.blake2b(b"v_123", key=b"k", digest_size=8).digest()  # the documented rule, by hand
    assert visitor_fraction("v_123", b"k") == int.from_bytes(digest, "big") / 2**64
    assert visitor_fraction("v_123", b"k") != visitor_fraction("v_123", b"")
    out = subprocess.run([sys.executable, "-c", "from metrics_ops.sampling import visitor_fraction as f;"
                          "print(repr(f('v_123', b'k')))"], capture_output=True, text=True, check=True).stdout
    assert float(out) == visitor_fraction("v_123", b"k")


def test_visitor_mode_keeps_or_drops_a_visitor_wholly():
    s = Sampler(0.3, "visitor", key=b"secret")
    for i in range(200):
        decisions = {s.keep(f"v{i}", name) for name in ("page_view", "click", "signup")}
        assert len(decisions) == 1


def test_keep_many_is_keep():
    s = Sampler(0.4, "visitor", key=b"k")
    ids = [f"v{i}" for i in range(2000)]
    assert s.keep_many(ids, "e") == [s.keep(v, "e") for v in ids]
    seeded = Sampler(0.4, rng=random.Random(5).random).keep_many(ids, "e")
    again = Sampler(0.4, rng=random.Random(5).random)
    assert seeded == [again.keep(v, "e") for v in ids]


def test_per_event_rates_override_the_default():
    s = Sampler(1.0, "visitor", rates={"page_view": 0.0})
    assert s.keep("v1", "click") and not s.keep("v1", "page_view")
    assert s.rate_for("page_view") == 0.0 and s.rate_for("other") == 1.0


def test_wilson_interval_and_sample_sizes_from_anchors():
    lo, hi = wilson_interval(1250, 10000)
    assert lo < 0.125 < hi and hi - lo == pytest.approx(0.0218, abs=5e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert abs(events_to_decide(0.125, 0.01) - 11842) <= 1
    assert events_to_decide(0.125, 0.02) == 2961


@pytest.mark.parametrize("mode, client, server, expected", [
    ("random", 0.25, 0.5, 0.125), ("random", 0.5, 0.5, 0.25), ("random", 1.0, 0.5, 0.5),
    ("visitor", 0.25, 0.5, 0.125), ("visitor", 0.5, 0.5, 0.25), ("visitor", 0.5, 1.0, 0.5),
])
def test_simulation_gives_the_documented_effective_rate(mode, client, server, expected):
    assert effective_rate(client, server) == expected
    row = judge(simulate(client, server, 20000, mode=mode, seed=7, key=b"k"), tolerance=0.02)
    assert row.verdict == PASS, row
    assert abs(row.observed - expected) < 0.015


def test_browser_and_visitor_stages_compose_to_the_product_not_min():
    """metrics.js decides by its id's digits, serve by a keyed hash: independent draws, not nested ones."""
    row = simulate(0.25, 0.5, 20000, mode="visitor", seed=3, key=b"k")
    row.expected = min(0.25, 0.5)  # the nested rule would be wrong here
    assert judge(row, 0.02).verdict == FAIL


def test_browser_rule_is_the_ids_first_eight_hex_digits():
    assert browser_fraction("00000000" + "f" * 24) == 0.0
    assert browser_fraction("80000000" + "0" * 24) == 0.5
    assert browser_fraction("ffffffff" + "0" * 24) == pytest.approx(1 - 2**-32)
    with pytest.raises(ValueError, match="not a metrics.js visitor id"):
        browser_fraction("v_123")
    ids = [browser_visitor_id(random.Random(i)) for i in range(5)]
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in ids) and len(set(ids)) == 5
    kept = BrowserSampler(0.5).keep_many(["7fffffff" + "0" * 24, "80000000" + "0" * 24])
    assert kept == [True, False]


def test_both_per_visitor_stages_keep_or_drop_a_visitor_wholly():
    rng = random.Random(5)
    visitors = [browser_visitor_id(rng) for _ in range(2000)]
    browser, server = BrowserSampler(0.5), Sampler(0.5, "visitor", key=b"k")
    outcomes = set()
    for _ in range(3):  # three events per visitor
        outcomes.add(tuple(b and server.keep(v, "step") for v, b in zip(visitors, browser.keep_many(visitors),
                                                                        strict=True)))
    assert len(outcomes) == 1 and 0.2 < sum(next(iter(outcomes))) / 2000 < 0.3


def test_inconclusive_says_how_many_events_decide():
    row = judge(Row("x", 1, 0.5, "random", 0.5, 100, 50), tolerance=0.01)
    assert row.verdict == INCONCLUSIVE and row.needed == events_to_decide(0.5, 0.01)


def test_visitor_sampling_keeps_funnels_unbiased():
    """40 % of visitors go from step 1 to step 3; sampling at 25 % must not change what a funnel reports."""
    rng = random.Random(11)
    visitors = [(f"f{i}", rng.random() < 0.4) for i in range(40000)]

    def conversion(sampler):
        step1 = {v for v, _ in visitors if sampler.keep(v, "step1")}
        step3 = {v for v, converts in visitors if converts and sampler.keep(v, "step3")}
        return len(step1 & step3) / len(step1)

    per_event = conversion(Sampler(0.25, "random", rng=random.Random(2).random))
    per_visitor = conversion(Sampler(0.25, "visitor", key=b"k"))
    assert per_event == pytest.approx(0.10, abs=0.02)  # random per-event sampling breaks the funnel
    assert per_visitor == pytest.approx(0.40, abs=0.02)


def test_cli_table_exit_codes_and_json(run):
    r = run("sample-test", "--seed", "1")
    assert r.exit_code == 0
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == [
        "pair", "standard 1 x 1", "standard 0.5 x 1", "standard 1 x 0.5", "standard 0.5 x 0.5", "standard 0.25 x 0.5",
        "configured 1 x 1"]
    r = run("sample-test", "--client-rate", "0.25", "--server-rate", "0.5", "--events", "500", "--seed", "1")
    assert r.exit_code == 4
    assert "INCONCLUSIVE: about 2961 events per row would decide within +-0.02" in r.stderr
    r = run("sample-test", "--client-rate", "0.25", "--server-rate", "0.5", "--seed", "1", "--json",
            env={"METRICS_SAMPLE_RATES": "signup=0.2"})
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "PASS"
    assert [(row["label"], row["expected"]) for row in doc["rows"]] == [("given 0.25 x 0.5", 0.125),
                                                                       ("event signup", 0.05)]


def test_cli_configured_pair_comes_from_the_environment(run):
    r = run("sample-test", "--seed", "2", "--json",
            env={"METRICS_CLIENT_SAMPLE_RATE": "0.5", "METRICS_SAMPLE_RATE": "0.25", "METRICS_SAMPLE_MODE": "visitor"})
    rows = json.loads(r.stdout)["rows"]
    assert rows[-1]["label"] == "configured 0.5 x 0.25" and rows[-1]["expected"] == 0.125


@pytest.fixture
def half_server(data_dir, tmp_path):
    s = Server(data_dir, tmp_path / "serve.log", env={"METRICS_SAMPLE_RATE": "0.5"})
    yield s
    assert s.stop() == 0


def test_live_against_a_real_serve_at_half_rate(half_server, data_dir, run):
    url = f"http://127.0.0.1:{half_server.port}/api/metrics/event"
    r = run("sample-test", "--url", url, "--events", "2000", "--server-rate", "0.5", "--tolerance", "0.05",
            "--data-dir", data_dir, "--json")
    assert r.exit_code == 0, r.output
    live = json.loads(r.stdout)["live"]
    assert live["sent"] == 2000 and live["statuses"] == {"202": 2000}
    assert live["stored"] + live["sampled_out"] == 2000
    assert live["lines_on_disk"] == live["stored"] and live["disk_matches"] is True
    assert json.loads(r.stdout)["verdict"] == "PASS"


def test_live_fails_when_the_server_samples_otherwise(half_server, run):
    url = f"http://127.0.0.1:{half_server.port}/api/metrics/event"
    r = run("sample-test", "--url", url, "--events", "1500", "--server-rate", "0.9")
    assert r.exit_code == 1
    assert "FAIL" in r.stdout


def test_live_refuses_other_schemes(run):
    r = run("sample-test", "--url", "ftp://127.0.0.1/x")
    assert r.exit_code == 2 and "want an http:// or https:// URL" in r.stderr
    r = run("sample-test", "--url", "http://127.0.0.1:99999/x")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "the port is not a number" in r.stderr


def test_live_events_carry_the_runs_prefix_and_mark_and_the_run_is_printed(half_server, data_dir, run):
    from metrics_ops.testrun import RUN_PREFIX

    from .helpers import all_lines

    url = f"http://127.0.0.1:{half_server.port}/api/metrics/event"
    r = run("sample-test", "--url", url, "--events", "300", "--server-rate", "0.5", "--tolerance", "0.5",
            "--data-dir", data_dir)
    [line] = [x for x in r.stderr.splitlines() if "test run" in x]
    run_id = line.split("test run ", 1)[1].split(":", 1)[0]
    assert line == (f"metrics-ops: test run {run_id}: visitor ids st-{run_id}-*, metadata.test_run = {run_id} "
                    "(leave them out of queries by either)")
    records = [json.loads(x) for x in all_lines(data_dir)]
    assert records and len(records) < 300  # half of them sampled out
    for rec in records:
        assert RUN_PREFIX.match(rec["visitor_id"]).group() == f"st-{run_id}-"
        assert rec["metadata"]["test_run"] == run_id


def test_live_against_a_dead_port_is_an_error_not_a_statistic(run, dead_url):
    r = run("sample-test", "--url", dead_url, "--events", "50")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr == f"metrics-ops: cannot connect to {dead_url}: connection refused\n"


def test_live_against_a_target_that_answers_nothing_is_exit_5(run, hang_up_url):
    r = run("sample-test", "--url", hang_up_url, "--events", "5", "--json")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr.startswith(f"metrics-ops: no answer from {hang_up_url}: all 5 requests failed (")


@pytest.mark.parametrize("client, server, mode", [("1", "1", "random"), ("0", "1", "random"), ("1", "0", "random"),
                                                  ("0.5", "0", "visitor"), ("1", "1", "visitor")])
def test_rates_zero_and_one_are_judged_exactly(run, client, server, mode):
    for _ in range(2):  # the same answer every run: no "need ~N" that grows by one
        r = run("sample-test", "--client-rate", client, "--server-rate", server, "--mode", mode, "--events", "50",
                "--json")
        assert r.exit_code == 0, r.output
        (row,) = json.loads(r.stdout)["rows"]
        assert (row["verdict"], row["needed"], row["low"], row["high"]) == ("PASS", None, row["expected"],
                                                                             row["expected"])


def test_an_exact_rate_off_by_one_event_fails():
    assert judge(Row("1 x 1", 1, 1, "random", 1.0, 50, 50), 0.02).verdict == PASS
    assert judge(Row("1 x 1", 1, 1, "random", 1.0, 50, 49), 0.02).verdict == FAIL
    assert judge(Row("0 x 1", 0, 1, "random", 0.0, 50, 0), 0.02).verdict == PASS
    assert judge(Row("0 x 1", 0, 1, "random", 0.0, 50, 1), 0.02).verdict == FAIL


def test_live_at_rate_one_passes_exactly(data_dir, tmp_path, run):
    s = Server(data_dir, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{s.port}/api/metrics/event"
        r = run("sample-test", "--url", url, "--events", "50", "--server-rate", "1", "--data-dir", data_dir, "--json")
    finally:
        assert s.stop() == 0
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "PASS" and doc["live"]["stored"] == 50 and doc["live"]["row"]["needed"] is None
