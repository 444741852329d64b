"""Property test: for any body, the endpoint never answers 5xx, and what it stores is exactly what it accepted."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_ops.config import load_settings
from metrics_ops.serve import make_app

from .wsgi_client import call

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=6)), max_leaves=30)
visitor_ids = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True), st.text(max_size=20))
event_names = st.one_of(st.from_regex(r"[a-z0-9_.:-]{1,64}", fullmatch=True), st.text(max_size=10))
events = st.fixed_dictionaries(
    {"visitor_id": visitor_ids, "event": event_names},
    optional={"metadata": st.one_of(json_values, st.fixed_dictionaries({"path": st.text(max_size=30)},
                                                                         optional={"n": json_values})),
              "timestamp": st.one_of(
        st.just("2026-11-25T12:00:00Z"), st.integers(0, 5_000_000_000_000), st.text(max_size=30)),
        "sample_rate": st.one_of(st.floats(-1, 2), st.floats(0, 1e-5), st.integers(-1, 2), json_values),
        "extra": json_values})
bodies = st.one_of(
    events.map(lambda e: json.dumps(e).encode()),
    events.map(lambda e: json.dumps(e, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.lists(events, max_size=4).map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One app and its data directory for all the examples (hypothesis runs them within one test call)."""
    directory = tmp_path_factory.mktemp("prop")
    return make_app(load_settings({"dir": str(directory), "ring_capacity": 50})), directory


def _lines(directory: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(directory.glob("metrics-*.jsonl")) for line in p.read_text().splitlines()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, batch=st.booleans(), ctype=st.sampled_from(["application/json", "text/plain", "text/html"]))
def test_never_5xx_and_every_stored_line_is_the_accepted_event(served, body, batch, ctype):
    app, directory = served
    before = len(_lines(directory))
    path = "/api/metrics/events" if batch else "/api/metrics/event"
    r = call(app, "POST", path, body, content_type=ctype)
    assert 200 <= r.status < 500, (r.status, r.body)
    reply = r.json
    lines = _lines(directory)[before:]
    if r.status != 202:
        assert reply["ok"] is False and lines == []
        return
    sent = json.loads(body)
    accepted = [sent] if not batch else [e for e, res in zip(sent, reply["results"], strict=True) if res["ok"]]
    assert len(lines) == len(accepted)
    for line, event in zip(lines, accepted, strict=True):
        received = line.pop("received_at")
        assert received.endswith("Z")
        ts = line.pop("ts")  # always there, always ISO-8601 UTC
        assert len(ts) == 27 and ts[10] == "T" and ts.endswith("Z")
        assert ts == received or event.get("timestamp") is not None
        declared = event.get("sample_rate")
        client_rate = line.pop("client_rate")
        assert client_rate == (1.0 if declared is None else declared) and 1e-6 <= client_rate <= 1
        assert line.pop("server_rate") == 1.0
        expected = {k: event[k] for k in ("visitor_id", "event", "timestamp", "metadata")
                    if k in event and event[k] is not None}
        if isinstance(expected.get("metadata"), dict) and isinstance(expected["metadata"].get("path"), str):
            # stored without its query string and fragment
            expected["metadata"] = {**expected["metadata"], "path": re.split("[?#]", expected["metadata"]["path"])[0]}
        assert line == expected
