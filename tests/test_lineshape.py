"""The C counter (metrics_ops/linecount.py, _linescan.c) never changes an answer on serve's own lines: report's
counts over real files equal an independent orjson count line by line, whatever odd lines sit among the
serve-shaped ones; serve's lines are all counted in C and only the odd ones go the reference way."""

import gzip
from collections import defaultdict
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from metrics_ops.events import encode_record
from metrics_ops.linecount import LineCounter
from metrics_ops.report import run_report
from metrics_ops.store import file_name

UTC = ZoneInfo("UTC")
TODAY = date.today()
DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]


def served(vid, event, day, client=None, server=1.0, metadata=None, timestamp=None) -> bytes:
    """A line exactly as serve stores it."""
    ev = {"visitor_id": vid, "event": event}
    if timestamp is not None:
        ev["timestamp"], ev["ts"] = timestamp, f"{day.isoformat()}T11:00:00.000000Z"
    if client is not None:
        ev["client_rate"] = client
    if metadata is not None:
        ev["metadata"] = metadata
    return encode_record(ev, f"{day.isoformat()}T12:30:00.{len(vid):06d}Z", server)


def clean_day(day, n, seed):
    """Serve-shaped lines only: visitors seen several times, rates per event, test traffic, no metadata."""
    out = []
    for i in range(n):
        event = ("page_view", "click", "scroll")[(i * 7 + seed) % 3]
        server = {"page_view": 0.5, "scroll": 0.25}.get(event, 1.0)
        meta = None if i % 11 == 0 else {"path": f"/p/{i % 5}", "w": i % 3, "über": "ja"}
        if i % 13 == 0:
            meta = {"path": "/", "test_run": "3f2a9c01b7de"}
        ts = None if i % 4 else (f"{day.isoformat()}T12:00:00Z" if i % 8 else 1764000000000 + i)
        out.append(served(f"v{(i * 31 + seed) % 40}", event, day, 0.5 if i % 9 == 0 else None, server, meta, ts))
    return out


#: lines that are not all they seem: each must be counted exactly as orjson reads the whole line
ODD = [
    b'{"visitor_id":"odd1","event":"click","metadata":{"a":tru},"client_rate":1.0,"server_rate":1.0,'
    b'"received_at":"2026-01-01T00:00:00.000000Z","ts":"2026-01-01T00:00:00.000000Z"}',  # invalid metadata
    b'{"visitor_id":"odd2","event":"click","client_rate":{"a":1,"server_rate":2},'
    b'"received_at":"x","ts":"y"}',  # server_rate swallowed by an object: valid JSON, weight 1
    b'{"visitor_id":"odd3","event":"click","client_rate":null,"server_rate":0,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"odd4","event":"click","client_rate":true,"server_rate":0.5,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"odd5","event":"click","client_rate":"1","server_rate":2,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"v\\u0031","event":"click","client_rate":1.0,"server_rate":0.5,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"odd7","event":"cl\tick","client_rate":1.0,"server_rate":1.0,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"odd8","event":"click","metadata":{"n":{"path":"/x"}},"client_rate":1.0,"server_rate":1.0,'
    b'"received_at":"x","ts":"y"}',  # nested metadata
    b'{"visitor_id":"odd9","event":"click","client_rate":1.0,"server_rate":0.5,"received_at":"x","ts":"y"}'
    b'{"visitor_id":"odd10","event":"click","client_rate":1.0,"server_rate":0.5,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"v1","event":"click","client_rate":1.0,"server_rate":0.25,"received_at":"x","ts":"y"}',
    b"not json",
    b'{"visitor_id": "odd12", "event": "click"}',
    b'{"visitor_id":"odd13","event":"click","metadata":{"t":"\xff"},"client_rate":1.0,"server_rate":1.0,'
    b'"received_at":"x","ts":"y"}',  # invalid UTF-8
    b'{"visitor_id":"odd14","event":"scroll","client_rate":1.0,"server_rate":5e-324,"received_at":"x","ts":"y"}',
    b'{"visitor_id":"odd15","event":"click","client_rate":1e-7,"server_rate":1e-6,"received_at":"x","ts":"y"}',
]


def oracle(lines, by, event=None):
    """Every line parsed on its own with orjson, the report's rules written out again."""
    cells = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    counts = {"damaged": 0, "test": 0, "unweighted": 0}
    for day, line in lines:
        try:
            r = orjson.loads(line)
            vid, ev = r["visitor_id"], r["event"]
            assert type(vid) is str and type(ev) is str
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            counts["damaged"] += 1
            continue
        meta = r.get("metadata")
        if isinstance(meta, dict) and "test_run" in meta:
            counts["test"] += 1
            continue
        c, s = r.get("client_rate"), r.get("server_rate")
        c, s = (1 if c is None else c), (1 if s is None else s)
        ok = r.get("client_rate") is not None or r.get("server_rate") is not None
        ok = ok and all(type(x) in (int, float) and 0 < x <= 1 for x in (c, s))
        if ok and c * s < 1e-12:  # a weight over a trillion: damaged, whatever the event
            counts["damaged"] += 1
            continue
        if event is not None and ev != event:
            continue
        counts["unweighted"] += not ok
        acc = cells[tuple({"day": day.isoformat(), "event": ev}[k] for k in by)][vid]
        acc[0] += 1 / (c * s) if ok else 1.0
        acc[1] += 1
    rows = {key: (sum(n for _, n in v.values()), len(v), round(sum(z for z, _ in v.values()), 6),
                  round(sum(z * (z - n) for z, n in v.values()), 6)) for key, v in cells.items()}
    return rows, counts


@pytest.fixture
def mixed(data_dir):
    """Three days: all serve-shaped (.gz); serve-shaped shards around a shard of odd lines; serve-shaped lines
    with one odd line in the same block. Returns (day, line) for every line."""
    lines = []

    def put(day, shard, body, gz=False):
        data = b"".join(line + b"\n" for line in body)
        name = file_name(day, shard) + (".gz" if gz else "")
        (data_dir / name).write_bytes(gzip.compress(data) if gz else data)
        lines.extend((day, line) for line in body)

    put(DAYS[0], 0, [x.rstrip(b"\n") for x in clean_day(DAYS[0], 400, 1)], gz=True)
    put(DAYS[1], 0, [x.rstrip(b"\n") for x in clean_day(DAYS[1], 300, 2)])
    put(DAYS[1], 1, ODD)
    put(DAYS[1], 2, [x.rstrip(b"\n") for x in clean_day(DAYS[1], 200, 3)], gz=True)
    put(DAYS[2], 0, [x.rstrip(b"\n") for x in clean_day(DAYS[2], 100, 4)] + ODD[9:10])
    return lines


def test_serve_lines_are_counted_in_c_and_odd_ones_handed_back():
    lines = clean_day(DAYS[0], 50, 1)
    counter = LineCounter(None)
    # test traffic (metadata.test_run) goes the reference way, which decides it; every other serve line is read
    # in C, and so is every odd line the C reader is sure of: a valid JSON event of plain strings, rates numbers
    assert counter.count(b"".join(lines)) == b"".join(lines[i] for i in range(0, 50, 13))
    assert counter.counter.lines == 50 - len(range(0, 50, 13))
    counted_in_c = {11}  # the others hold a received_at of "x", which sorts after "9999": the reference decides
    for i, odd in enumerate(ODD):
        counter = LineCounter(None)
        back = counter.count(odd + b"\n")
        assert (back == b"") == (i in counted_in_c), (i, odd)
        assert back in (b"", odd + b"\n")


@pytest.mark.parametrize("by", [("day", "event"), ("event",), ("day",)])
@pytest.mark.parametrize("event", [None, "click"])
def test_counts_equal_orjson_line_by_line_whatever_the_mix(data_dir, mixed, by, event):
    result = run_report(data_dir, since=DAYS[0], until=TODAY, today=TODAY, zone=UTC, tz="UTC", by=by,
                        event=event, workers=2)
    got = {tuple(r.keys[k] for k in by): (r.est.events, r.est.visitors, round(r.est.estimate, 6),
                                          round(r.est.variance, 6)) for r in result.rows}
    want, counts = oracle(mixed, by, event)
    assert got == want
    assert (result.damaged, result.test_lines, result.unweighted) == (
        counts["damaged"], counts["test"], counts["unweighted"])
    assert result.lines == len(mixed)
