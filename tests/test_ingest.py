"""The WSGI app called directly: every route and status, validation, sampling, CORS, privacy of the record."""

import json
import os
from datetime import datetime

import pytest

from metrics_ops.config import load_settings
from metrics_ops.events import MAX_ITEMS
from metrics_ops.sampling import Sampler
from metrics_ops.serve import make_app

from .wsgi_client import call

EVENT = "/api/metrics/event"
BATCH = "/api/metrics/events"
GOOD = {"visitor_id": "v_123-abc", "event": "page_view", "timestamp": "2026-11-25T10:00:00Z",
        "metadata": {"path": "/pricing", "w": 1280, "nested": {"a": [1, 2, {"b": True}]}}}


@pytest.fixture
def app(data_dir):
    return make_app(load_settings({"dir": str(data_dir)}))


def stored_lines(data_dir):
    out = []
    for p in sorted(data_dir.glob("metrics-*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines()]
    return out


def test_accepts_an_event_and_stores_it_with_the_receive_time(app, data_dir):
    r = call(app, "POST", EVENT, json.dumps(GOOD))
    assert r.status == 202
    today = datetime.utcnow().date().isoformat()
    assert r.json == {"ok": True, "stored": 1, "file": f"metrics-{today}.jsonl"}
    [line] = stored_lines(data_dir)
    received = line.pop("received_at")
    assert line.pop("ts") == "2026-11-25T10:00:00.000000Z"
    assert (line.pop("client_rate"), line.pop("server_rate")) == (1.0, 1.0)  # no sample_rate sent, none configured
    assert line == GOOD
    assert received.endswith("Z") and datetime.fromisoformat(received[:-1])


def test_text_plain_from_send_beacon_is_accepted(app, data_dir):
    r = call(app, "POST", EVENT, json.dumps(GOOD), content_type="text/plain;charset=UTF-8")
    assert r.status == 202 and r.json["stored"] == 1


def test_unknown_top_level_fields_are_not_stored(app, data_dir):
    r = call(app, "POST", EVENT, json.dumps({**GOOD, "ip": "203.0.113.9", "user_agent": "x"}))
    assert r.status == 202
    assert set(stored_lines(data_dir)[0]) == {"visitor_id", "event", "timestamp", "metadata", "received_at", "ts",
                                                 "client_rate", "server_rate"}


@pytest.mark.parametrize("sent, ts", [
    ("2026-11-25T12:00:00Z", "2026-11-25T12:00:00.000000Z"),
    ("2026-11-25T13:30:00.25+01:30", "2026-11-25T12:00:00.250000Z"),
    ("2026-11-25T12:00:00", "2026-11-25T12:00:00.000000Z"),  # no offset: taken as UTC
    (1764072000123, "2025-11-25T12:00:00.123000Z"),
    (1764072000123.5, "2025-11-25T12:00:00.123500Z"),
])
def test_ts_is_the_client_time_in_utc_whatever_its_form_and_timestamp_is_kept(app, data_dir, sent, ts):
    r = call(app, "POST", EVENT, json.dumps({"visitor_id": "v1", "event": "e", "timestamp": sent}))
    assert r.status == 202, r.body
    [line] = stored_lines(data_dir)
    assert line["timestamp"] == sent and line["ts"] == ts


def test_ts_is_the_receive_time_without_a_client_timestamp_and_always_a_string(app, data_dir):
    events = [{"visitor_id": "v1", "event": "e"}, {"visitor_id": "v2", "event": "e", "timestamp": 1764072000000},
              {"visitor_id": "v3", "event": "e", "timestamp": "2026-11-25T12:00:00+02:00"}]
    assert call(app, "POST", BATCH, json.dumps(events)).json["stored"] == 3
    lines = stored_lines(data_dir)
    assert lines[0]["ts"] == lines[0]["received_at"]
    assert [type(line["timestamp"]) for line in lines[1:]] == [int, str]  # what the clients sent
    assert [line["ts"] for line in lines[1:]] == ["2025-11-25T12:00:00.000000Z", "2026-11-25T10:00:00.000000Z"]


@pytest.mark.parametrize("sent", ["1999-12-31T23:59:59Z", "2000-01-01T00:30:00+01:00", "0001-01-01T00:00:00+05:00",
                                  "9999-12-31T23:00:00-05:00", "2100-01-01T00:00:00Z"])
def test_iso_timestamps_outside_2000_2099_are_422_like_epoch_ms(app, sent):
    r = call(app, "POST", EVENT, json.dumps({"visitor_id": "v1", "event": "e", "timestamp": sent}))
    assert r.status == 422 and r.json["error"] == {"code": "bad_timestamp", "field": "timestamp",
                                                   "message": "timestamp outside the years 2000-2099"}


def test_client_timestamp_never_decides_the_file(app, data_dir):
    r = call(app, "POST", EVENT, json.dumps({**GOOD, "timestamp": "2019-01-01T00:00:00Z"}))
    assert r.json["file"] == f"metrics-{datetime.utcnow().date().isoformat()}.jsonl"


@pytest.mark.parametrize("body, field, code", [
    ({"event": "x"}, "visitor_id", "missing"),
    ({"visitor_id": 5, "event": "x"}, "visitor_id", "type"),
    ({"visitor_id": "", "event": "x"}, "visitor_id", "invalid"),
    ({"visitor_id": "a" * 129, "event": "x"}, "visitor_id", "invalid"),
    ({"visitor_id": "a b", "event": "x"}, "visitor_id", "invalid"),
    ({"visitor_id": "a", "event": "Page View"}, "event", "invalid"),
    ({"visitor_id": "a", "event": "e" * 65}, "event", "invalid"),
    ({"visitor_id": "a"}, "event", "missing"),
    ({"visitor_id": "a", "event": "x", "metadata": [1]}, "metadata", "type"),
    ({"visitor_id": "a", "event": "x", "metadata": "s"}, "metadata", "type"),
    ({"visitor_id": "a", "event": "x", "metadata": {"a": {"b": {"c": {"d": {}}}}}}, "metadata.a.b.c.d", "too_deep"),
    ({"visitor_id": "a", "event": "x", "metadata": {f"k{i}": i for i in range(MAX_ITEMS + 1)}}, "metadata",
     "too_many_keys"),
    ({"visitor_id": "a", "event": "x", "metadata": {"s": "x" * 1025}}, "metadata.s", "too_long"),
    ({"visitor_id": "a", "event": "x", "metadata": {"s": "é" * 600}}, "metadata.s", "too_long"),
    ({"visitor_id": "a", "event": "x", "metadata": {"s": "a\r\nb"}}, "metadata.s", "control_character"),
    ({"visitor_id": "a", "event": "x", "metadata": {"s": "a\u0000b"}}, "metadata.s", "control_character"),
    ({"visitor_id": "a", "event": "x", "metadata": {"n": 2**60}}, "metadata.n", "number_out_of_range"),
    ({"visitor_id": "a", "event": "x", "timestamp": "yesterday"}, "timestamp", "bad_timestamp"),
    ({"visitor_id": "a", "event": "x", "timestamp": 12}, "timestamp", "bad_timestamp"),
    ({"visitor_id": "a", "event": "x", "timestamp": True}, "timestamp", "bad_timestamp"),
    ([GOOD], None, "not_object"),
])
def test_invalid_events_are_422_naming_the_field(app, data_dir, body, field, code):
    r = call(app, "POST", EVENT, json.dumps(body))
    assert r.status == 422
    assert r.json["ok"] is False
    assert (r.json["error"]["field"], r.json["error"]["code"]) == (field, code)
    assert r.json["error"]["message"]
    assert stored_lines(data_dir) == []


def test_metadata_at_the_limits_is_accepted(app, data_dir):
    meta = {"a": {"b": {"c": {"d": 1}}}, "s": "x" * 1024, **{f"k{i}": i for i in range(MAX_ITEMS - 5)}}
    r = call(app, "POST", EVENT, json.dumps({"visitor_id": "a" * 128, "event": "e" * 64, "metadata": meta}))
    assert r.status == 202, r.body
    assert call(app, "POST", EVENT, json.dumps({**GOOD, "timestamp": 1764064800000})).status == 202


@pytest.mark.parametrize("body, code", [
    (b"", "empty_body"), (b"   ", "empty_body"), (b"{", "bad_json"), (b"\xff\xfe{}", "bad_encoding"),
    (b'{"visitor_id":"a","event":"x","metadata":{"n":NaN}}', "bad_json"),
    (b'{"visitor_id":"a","event":"x","visitor_id":"b"}', "duplicate_key"),
    (b"[" * 5000 + b"]" * 5000, "too_deep"),
])
def test_malformed_bodies_are_400(app, data_dir, body, code):
    r = call(app, "POST", EVENT, body)
    assert r.status == 400 and r.json["error"]["code"] == code
    assert stored_lines(data_dir) == []


def test_body_over_the_limit_is_413_with_and_without_content_length(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "max_body": 1024}))
    big = json.dumps({**GOOD, "metadata": {"s": "x" * 1000}})
    assert call(app, "POST", EVENT, big).status == 413
    r = call(app, "POST", EVENT, big, length=False)
    assert r.status == 413 and r.json["error"]["code"] == "body_too_large"
    assert call(app, "POST", EVENT, json.dumps(GOOD), length=False).status == 202
    assert len(stored_lines(data_dir)) == 1


def test_other_content_types_are_415(app):
    for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        r = call(app, "POST", EVENT, json.dumps(GOOD), content_type=ctype)
        assert r.status == 415 and r.json["error"]["code"] == "content_type"


def test_wrong_method_is_405_with_allow_and_unknown_path_404(app):
    r = call(app, "GET", EVENT)
    assert r.status == 405 and r.headers["Allow"] == "POST, OPTIONS"
    r = call(app, "POST", "/healthz", "{}")
    assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    r = call(app, "GET", "/nope")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"


def test_batch_has_a_result_per_item(app, data_dir):
    items = [GOOD, {"visitor_id": "a"}, {**GOOD, "event": "click"}]
    r = call(app, "POST", BATCH, json.dumps(items))
    assert r.status == 202
    assert (r.json["accepted"], r.json["rejected"], r.json["stored"]) == (2, 1, 2)
    assert [x["ok"] for x in r.json["results"]] == [True, False, True]
    assert r.json["results"][1]["error"]["field"] == "[1].event"
    assert [line["event"] for line in stored_lines(data_dir)] == ["page_view", "click"]


def test_batch_limits(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "max_batch": 3}))
    assert call(app, "POST", BATCH, json.dumps([GOOD] * 4)).status == 413
    assert call(app, "POST", BATCH, "[]").status == 422
    assert call(app, "POST", BATCH, json.dumps(GOOD)).json["error"]["code"] == "not_array"
    r = call(app, "POST", BATCH, json.dumps([{"x": 1}]))
    assert r.status == 422 and r.json["accepted"] == 0
    assert stored_lines(data_dir) == []


def test_sampled_out_events_enter_the_ring_but_not_the_file(data_dir):
    settings = load_settings({"dir": str(data_dir), "sample_rate": 0.5})
    app = make_app(settings, sampler=Sampler(0.5, rng=iter([0.7, 0.2] * 10).__next__))
    out = [call(app, "POST", EVENT, json.dumps({**GOOD, "event": f"e{i}"})).json for i in range(4)]
    assert [r["stored"] for r in out] == [0, 1, 0, 1]
    assert all(r["file"] == out[1]["file"] for r in out)
    snap = call(app, "GET", "/api/metrics/snapshot").json
    assert [(e["event"], e["stored"]) for e in snap["events"]] == [("e0", False), ("e1", True), ("e2", False),
                                                                  ("e3", True)]
    assert snap["counters"]["sampled_out"] == 2 and snap["counters"]["stored"] == 2
    assert [line["event"] for line in stored_lines(data_dir)] == ["e1", "e3"]


def test_ring_keeps_the_newest_capacity_events_newest_last(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "ring_capacity": 5}))
    for i in range(12):
        call(app, "POST", EVENT, json.dumps({**GOOD, "event": f"e{i}"}))
    snap = call(app, "GET", "/api/metrics/snapshot").json
    assert [e["event"] for e in snap["events"]] == [f"e{i}" for i in range(7, 12)]
    assert snap["capacity"] == 5 and snap["counters"]["received"] == 12


def test_prometheus_metrics(app):
    call(app, "POST", EVENT, json.dumps(GOOD))
    call(app, "POST", EVENT, "{")
    call(app, "POST", EVENT, json.dumps({"visitor_id": "a"}))
    r = call(app, "GET", "/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    assert "metrics_ops_events_received_total 1" in text
    assert "metrics_ops_events_stored_total 1" in text
    assert 'metrics_ops_events_rejected_total{reason="bad_json"} 1' in text
    assert 'metrics_ops_events_rejected_total{reason="invalid"} 1' in text
    assert "metrics_ops_events_write_errors_total 0" in text
    assert "metrics_ops_ring_events 1" in text
    for line in text.splitlines():  # the exposition format: comments or "name{labels} value"
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_healthz(app, data_dir):
    assert call(app, "GET", "/healthz").json == {"ok": True}
    os.rename(data_dir, str(data_dir) + ".moved")
    r = call(app, "GET", "/healthz")
    assert r.status == 503 and r.json["reason"] == "data_dir_missing"


WRITE_FAILS = """
import json, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from wsgi_client import call
from metrics_ops.config import load_settings
from metrics_ops.serve import make_app
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
app = make_app(load_settings({"dir": sys.argv[1]}))
body = json.dumps({"visitor_id": "v1", "event": "page_view", "metadata": {"pad": "x" * 300}})
first = call(app, "POST", "/api/metrics/event", body).json
resource.setrlimit(resource.RLIMIT_FSIZE, (500, 500))  # the file may not grow past 500 bytes: a full disk
second = call(app, "POST", "/api/metrics/event", body)
after = call(app, "GET", "/api/metrics/snapshot").json
health = call(app, "GET", "/healthz")
print(json.dumps([first, second.status, second.json, after["counters"], health.status, health.json, after["health"]]))
"""


def test_write_error_is_202_stored_0_counted_and_leaves_nothing_partial(data_dir):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", WRITE_FAILS, str(data_dir), os.path.dirname(__file__)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first, status, second, counters, health_status, health, details = json.loads(r.stdout)
    assert first["stored"] == 1
    assert status == 202 and second["stored"] == 0
    assert (counters["stored"], counters["write_errors"], counters["received"]) == (1, 1, 2)
    assert health_status == 503 and health["reason"] == "write_failed"
    assert details["reason"] == "write_failed" and details["detail"].startswith("a write failed 0 s ago")
    assert r.stderr.count("write failed:") == 1  # one log line
    lines = (data_dir / first["file"]).read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and json.loads(lines[0])["visitor_id"] == "v1"  # the torn second line was removed


def test_cors_allows_configured_origins_only(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "cors_origins": "https://shop.example"}))
    ok = {"Origin": "https://shop.example"}
    r = call(app, "OPTIONS", EVENT, headers={**ok, "Access-Control-Request-Method": "POST"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type"
    r = call(app, "POST", EVENT, json.dumps(GOOD), headers=ok)
    assert r.status == 202 and r.headers["Vary"] == "Origin"
    r = call(app, "POST", EVENT, json.dumps(GOOD), headers={"Origin": "https://evil.example"})
    assert r.status == 403 and r.json["error"]["code"] == "origin_not_allowed"
    assert call(app, "OPTIONS", EVENT, headers={"Origin": "https://evil.example"}).status == 403


def test_no_cors_headers_without_configured_origins(app):
    r = call(app, "POST", EVENT, json.dumps(GOOD), headers={"Origin": "https://a.example"})
    assert r.status == 202 and "Access-Control-Allow-Origin" not in r.headers


def test_a_preflight_is_refused_when_no_origin_is_configured(app):
    r = call(app, "OPTIONS", EVENT, headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers  # not a 204 that looks allowed
    assert r.json["error"]["code"] == "origin_not_allowed"
    assert r.json["error"]["message"].startswith("METRICS_CORS_ORIGINS is empty: no cross-origin requests")
    assert call(app, "OPTIONS", BATCH, headers={"Origin": "https://a.example"}).status == 403
    assert call(app, "OPTIONS", EVENT).status == 204  # no Origin: not a CORS preflight
    counters = call(app, "GET", "/api/metrics/snapshot").json["counters"]
    assert counters["rejected_origin"] == 2


def test_head_has_no_body(app):
    r = call(app, "HEAD", "/healthz")
    assert r.status == 200 and r.body == b""


def test_a_broken_state_file_never_fails_an_event_the_store_took(data_dir, caplog):
    (data_dir / "state-is-a-dir").mkdir()
    app = make_app(load_settings({"dir": str(data_dir), "state_file": str(data_dir / "state-is-a-dir")}))
    r = call(app, "POST", EVENT, json.dumps(GOOD))
    assert r.status == 202 and r.json["stored"] == 1  # not a 5xx the client would retry (and store twice)
    assert call(app, "POST", BATCH, json.dumps([GOOD])).status == 202
    assert len(stored_lines(data_dir)) == 2
    assert call(app, "GET", "/api/metrics/snapshot").status == 503  # the debug view says it is broken
    assert call(app, "GET", "/healthz").status == 200  # ingestion works: the edge must keep sending
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("state file" in m for m in warnings) == 1  # one warning, not one per event


def test_every_line_records_the_client_and_server_rates_that_applied(data_dir):
    """A reader weighs each line by 1 / (client_rate x server_rate), so both are stored as they were."""
    app = make_app(load_settings({"dir": str(data_dir), "sample_rates": {"click": 0.5}}))
    assert call(app, "POST", EVENT, json.dumps({**GOOD, "sample_rate": 0.25})).json["stored"] == 1
    r = call(app, "POST", BATCH, json.dumps([{"visitor_id": "v2", "event": "page_view", "sample_rate": 1},
                                             {"visitor_id": "v3", "event": "click"}] * 20))
    assert r.status == 202
    lines = stored_lines(data_dir)
    assert (lines[0]["client_rate"], lines[0]["server_rate"]) == (0.25, 1.0)
    assert {(x["event"], x["client_rate"], x["server_rate"]) for x in lines[1:]} == {
        ("page_view", 1.0, 1.0), ("click", 1.0, 0.5)}
    assert all("sample_rate" not in x for x in lines)


@pytest.mark.parametrize("rate, code", [("0", "out_of_range"), ("-0.5", "out_of_range"), ("1.5", "out_of_range"),
                                        ('"0.5"', "type"), ("true", "type"), ("[0.5]", "type"),
                                        # weights no reader can use (issue 18 item 1): 1 / 5e-324 is inf
                                        ("5e-324", "out_of_range"), ("1e-300", "out_of_range"),
                                        ("9.99e-7", "out_of_range"), ("1e400", "out_of_range")])
def test_a_declared_rate_outside_the_floor_to_1_is_refused_naming_the_field(app, data_dir, rate, code):
    body = json.dumps(GOOD)[:-1] + f', "sample_rate": {rate}}}'
    r = call(app, "POST", EVENT, body)
    assert r.status == 422
    assert (r.json["error"]["code"], r.json["error"]["field"]) == (code, "sample_rate")
    assert stored_lines(data_dir) == []
    batch = call(app, "POST", BATCH, f"[{body}]")
    assert batch.status == 422 and batch.json["results"][0]["error"]["field"] == "[0].sample_rate"
    if code == "out_of_range":
        assert batch.json["results"][0]["error"]["message"] == (
            "sample_rate must be at least 1e-06 and at most 1 (the share the client kept)")
    assert stored_lines(data_dir) == []


def test_the_smallest_rate_accepted_is_one_in_a_million(data_dir):
    from metrics_ops.events import MAX_WEIGHT, MIN_RATE

    app = make_app(load_settings({"dir": str(data_dir), "sample_rate": MIN_RATE}),
                   sampler=Sampler(MIN_RATE, rng=lambda: 0.0))
    r = call(app, "POST", EVENT, json.dumps(GOOD)[:-1] + ', "sample_rate": 1e-6}')
    assert r.status == 202 and r.json["stored"] == 1
    [line] = stored_lines(data_dir)
    assert (line["client_rate"], line["server_rate"]) == (1e-6, 1e-6)
    weight = 1 / (line["client_rate"] * line["server_rate"])
    assert weight == MAX_WEIGHT == 1e12 and json.dumps(weight) == "1000000000000.0"  # finite, plain JSON


PATHS = [("/account/alice@example.com/reset?token=abc#step2", "/account/alice@example.com/reset"),
         ("/search?q=ann%40example.org", "/search"), ("/docs#install", "/docs"), ("/a#b?c", "/a"),
         ("?only=query", ""), ("/plain/path", "/plain/path")]


@pytest.mark.parametrize("path, stored", PATHS)
def test_metadata_path_is_stored_without_query_and_fragment(app, data_dir, path, stored):
    event = {**GOOD, "metadata": {"path": path, "w": 1}}
    assert call(app, "POST", EVENT, json.dumps(event)).status == 202
    assert call(app, "POST", BATCH, json.dumps([event])).status == 202
    lines = stored_lines(data_dir)
    assert [line["metadata"] for line in lines] == [{"path": stored, "w": 1}] * 2
    raw = "".join(p.read_text() for p in data_dir.glob("metrics-*.jsonl"))
    assert "token" not in raw and "ann" not in raw and "#" not in raw
    ring = call(app, "GET", "/api/metrics/snapshot").json["events"]
    assert [e["metadata"]["path"] for e in ring] == [stored] * 2


def test_keep_query_keeps_the_whole_path(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "keep_query": True}))
    path = "/pricing?utm_source=news#plans"
    assert call(app, "POST", EVENT, json.dumps({**GOOD, "metadata": {"path": path}})).status == 202
    assert [line["metadata"]["path"] for line in stored_lines(data_dir)] == [path]


def test_only_a_string_path_of_metadata_is_cut(app, data_dir):
    metadata = {"path": ["/a?b"], "nested": {"path": "/n?x"}}
    assert call(app, "POST", EVENT, json.dumps({**GOOD, "metadata": metadata})).status == 202
    assert stored_lines(data_dir)[0]["metadata"] == metadata


@pytest.mark.parametrize("digits", ["1" + "0" * 400, "-1" + "0" * 400])
def test_an_epoch_timestamp_beyond_a_double_is_422_not_a_crash(app, data_dir, digits):
    """74df433 raised OverflowError here (a 500 from a server): math.isfinite of an integer beyond a double."""
    body = '{"visitor_id":"v1","event":"e","timestamp":' + digits + '}'
    r = call(app, "POST", EVENT, body)
    assert r.status == 422 and r.json["error"]["code"] == "bad_timestamp"
    assert r.json["error"]["message"] == "epoch milliseconds outside the years 2000-2099"
    r = call(app, "POST", BATCH, f"[{body}]")
    assert r.status == 422 and r.json["results"][0]["error"]["field"] == "[0].timestamp"
    assert stored_lines(data_dir) == []


BATCH_WRITE_FAILS = """
import json, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from wsgi_client import call
from metrics_ops.config import load_settings
from metrics_ops.serve import make_app
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
app = make_app(load_settings({"dir": sys.argv[1]}))
event = {"visitor_id": "v1", "event": "page_view", "metadata": {"pad": "x" * 200}}
call(app, "GET", "/api/metrics/snapshot")  # the state file is laid out before the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (500, 500))  # room for one line of the batch, not for two
r = call(app, "POST", "/api/metrics/events", json.dumps([event, event]))
print(json.dumps([r.status, r.json, call(app, "GET", "/api/metrics/snapshot").json["counters"]]))
"""


def test_a_batch_is_written_all_or_none(data_dir):
    """The kept events of a batch go in one write: a write that fails stores none of them (74df433 stored the
    first and refused the second), and leaves nothing partial."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", BATCH_WRITE_FAILS, str(data_dir), os.path.dirname(__file__)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    status, reply, counters = json.loads(r.stdout)
    assert status == 202 and (reply["accepted"], reply["stored"]) == (2, 0)
    assert [x["stored"] for x in reply["results"]] == [0, 0]
    assert (counters["write_errors"], counters["received"], counters["stored"]) == (2, 2, 0)
    assert stored_lines(data_dir) == [] and all(p.stat().st_size == 0 for p in data_dir.glob("metrics-*.jsonl"))


def test_a_key_with_a_lone_surrogate_is_named_escaped_not_a_crash(app, data_dir):
    """74df433 answered with a TypeError (a 500): the field naming the key could not be written as UTF-8."""
    body = '{"visitor_id":"v1","event":"e","metadata":{"a":{"k\\ud800":1}}}'
    r = call(app, "POST", EVENT, body)
    assert r.status == 422 and (r.json["error"]["code"], r.json["error"]["field"]) == ("bad_string",
                                                                                     "metadata.a.k\\ud800")
    r = call(app, "POST", BATCH, f"[{body}]")
    assert r.status == 422 and r.json["results"][0]["error"]["field"] == "[0].metadata.a.k\\ud800"
    assert stored_lines(data_dir) == []
