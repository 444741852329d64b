"""The msgspec way to count (metrics_ops/records.py, recordcount.py) never changes an answer: over real files of
every line shape with odd lines mixed in, a day's totals equal the reference's (orjson line by line,
tally._count_block) exactly, damaged lines by reason included; a property test does the same over generated
lines; and lines of the other shapes are really decoded, not all sent the reference way."""

import gzip
import json
import random
import tempfile
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_ops import records
from metrics_ops.estimate import Estimate
from metrics_ops.events import encode_record
from metrics_ops.reading import read_day, shards
from metrics_ops.report import run_report
from metrics_ops.store import file_name
from metrics_ops.tally import TOO_LONG, DayTally, _count_block, _Hours, _key_of, tally_day

DAY = date(2026, 11, 25)
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/Los_Angeles")]


def shaped(shape: str, rng: random.Random, vid: str, ev: str, at: str) -> bytes:
    """One line of shape a (serve's), b (no rates), c (the seed's), d (random key order, extra fields)."""
    meta = {"path": f"/p/{rng.randint(0, 3)}", "ref": rng.choice(["", "über", 'a "quoted" one', "😀"])}
    if shape == "a":
        return encode_record({"visitor_id": vid, "event": ev, "metadata": meta}, at, rng.choice([1.0, 0.5, 0.25]))
    if shape == "b":
        return orjson.dumps({"visitor_id": vid, "event": ev, "metadata": meta, "received_at": at, "ts": at}) + b"\n"
    if shape == "c":
        return json.dumps({"visitor_id": vid, "event": ev, "timestamp": at[:23] + "Z", "metadata": meta,
                           "received_at": at}).encode() + b"\n"
    rec = {"visitor_id": vid, "event": ev, "metadata": meta, "client_rate": rng.choice([1, 1.0, 0.5, None]),
           "server_rate": rng.choice([1.0, 0.25]), "received_at": at, "ts": at, "ua": "Mozilla/5.0",
           "n": rng.randint(0, 10**6), "nested": {"visitor_id": "not me", "event": "nor me", "test_run": "x"}}
    keys = list(rec)
    rng.shuffle(keys)
    return orjson.dumps({k: rec[k] for k in keys}) + b"\n"


AT = "2026-11-25T12:30:00.000000Z"
#: lines that are not all they seem: each must count as orjson reads it, line by line
ODD = [
    b"not json",
    b"   ",
    b'["v1", "click"]',
    b'"a string"',
    b"12",
    b'{"visitor_id": 12, "event": "click"}',
    b'{"event": "click", "received_at": "x"}',
    b'{"visitor_id": "v1", "event": "click", "visitor_id": 7}',  # duplicate key: the last one counts (damaged)
    b'{"visitor_id": 7, "event": "click", "visitor_id": "vdup"}',  # ... and here it makes an event
    b'{"visitor_id": "v\\"q", "event": "cl\\u0069ck"}',  # escapes
    b'{"visitor_id": "v\\ud83d\\ude00", "event": "click"}',  # a surrogate pair
    b'{"visitor_id": "vlone", "event": "click", "x": "\\ud800"}',  # a lone surrogate: invalid
    b'{"visitor_id": "vutf", "event": "click", "x": "\xff"}',  # invalid UTF-8 in a skipped field
    b'{"visitor_id": "vctl", "event": "click", "x": "a\x01b"}',
    b'{"visitor_id": "vbig", "event": "click", "x": 1e999}',  # beyond a float, in a skipped field
    b'{"visitor_id": "vbig2", "event": "click", "x": ' + b"1" * 400 + b"}",
    b'{"visitor_id": "vbig3", "event": "click", "x": ' + b"1" * 250 + b"e60}",
    b'{"visitor_id": "vbig4", "event": "click", "metadata": {"w": 2E+308}}',
    b'{"visitor_id": "vok", "event": "click", "x": 1e308, "y": 1e-999, "z": 18446744073709551616}',
    b'{"visitor_id": "vint", "event": "click", "client_rate": 1, "server_rate": 18446744073709551616}',
    b'{"visitor_id": "vbool", "event": "click", "client_rate": true, "server_rate": 0.5}',
    b'{"visitor_id": "vstr", "event": "click", "client_rate": "0.5"}',
    b'{"visitor_id": "vrare", "event": "click", "client_rate": 1e-7, "server_rate": 1e-6}',
    b'{"visitor_id": "vrare2", "event": "scroll", "server_rate": 5e-324}',
    b'{"visitor_id": "vnull", "event": "click", "client_rate": null, "server_rate": null, "metadata": null}',
    b'{"visitor_id": "vlist", "event": "click", "metadata": [1, {"test_run": 1}]}',
    b'{"visitor_id": "vtest", "event": "click", "metadata": {"test_run": "3f2a9c01b7de"}}',
    b'{"visitor_id": "vtest2", "event": "click", "metadata": {"test_\\u0072un": "x"}}',  # escaped: not test
    b'{"visitor_id": "vnest", "event": "click", "metadata": {"a": {"visitor_id": 1, "event": 2}}}',
    b'{"visitor_id": "vedge", "event": "click", "received_at": "9999-12-31T23:00:00Z"}',
    b'{"visitor_id": "vedge2", "event": "click", "received_at": "0001-01-01T00:00:00Z", "client_rate": 1e-7,'
    b' "server_rate": 1e-6}',
    b'{"visitor_id": "vedge3", "event": "click", "received_at": "\\u0039999-12-31t05"}',
    b'{"visitor_id": "vedge4", "event": "click", "received_at": "0001-1-1T1"}',
    b'{"visitor_id": "vat", "event": "click", "received_at": 5}',
    b'{"visitor_id": "vdeep", "event": "click", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"visitor_id": "vtwo", "event": "click"} {"visitor_id": "vtwo", "event": "click"}',
    b'{"visitor_id": "vtwo2", "event": "click"},{"visitor_id": "vtwo2", "event": "click"}',
    b'{"visitor_id": "vsplit", "event": "click", "x": [1,',  # a value over two lines: two damaged lines
    b'2]}',
    b'{"visitor_id": "vcut", "event": "click", "metadata": {"path": "/p/1"',
    b"\xef\xbb\xbf{\"visitor_id\": \"vbom\", \"event\": \"click\"}",
    b'{"visitor_id": "vws", "event": "click"}\t \r',
    b"",  # an empty line: not a line at all
]


def odd_day(seed: int, odd_every: int = 7) -> bytes:
    """Lines of every shape for a pool of visitors, the odd ones spread among them."""
    rng = random.Random(seed)
    out = []
    for i in range(3000):
        if i % odd_every == 0:
            out.append(ODD[(i // odd_every) % len(ODD)] + b"\n")
        out.append(shaped(rng.choice("abcd"), rng, f"v{rng.randint(0, 120)}",
                          rng.choice(["click", "page_view", "scroll"]), AT))
    return b"".join(out)


def summary(tally: DayTally) -> dict:
    cells = tally.cells[("event",)]
    rows = {}
    for key, cell in cells.items():
        est = cell if isinstance(cell, Estimate) else Estimate.of_visitors(cell)
        rows[key[0] if isinstance(key, tuple) else key] = (
            est.events, est.visitors, round(est.estimate, 6), round(est.variance, 6))
    return {"rows": rows, "lines": tally.lines, "test": tally.test_lines, "unweighted": tally.unweighted,
            "damage": dict(sorted(tally.damage.items())), "problems": [str(p) for p in tally.problems]}


def reference(directory: Path, zone: ZoneInfo, event: str | None = None) -> dict:
    """The day as the reference counts it: orjson line by line over every block."""
    day_shards = shards(directory)[DAY]
    tally = DayTally(DAY, {("event",): {}})
    targets = [(tally.cells[("event",)], _key_of(("event",)))]
    for block in read_day(directory, day_shards, tally.problems, tally.long_lines):
        _count_block(block, tally, targets, event, _Hours(zone), False, False)
    tally.add_damage(TOO_LONG, sum(tally.long_lines.values()))
    return summary(tally)


def fast(directory: Path, zone: ZoneInfo, event: str | None = None, estimates: bool = True) -> dict:
    day_shards = shards(directory)[DAY]
    tally = tally_day(directory, DAY, day_shards, [("event",)], zone, event, estimates=estimates)
    tally.cells[("event",)] = {k[0]: v for k, v in tally.cells[("event",)].items()}
    return summary(tally)


@pytest.mark.parametrize("zone", ZONES, ids=lambda z: z.key)
@pytest.mark.parametrize("event", [None, "click"])
@pytest.mark.parametrize("estimates", [True, False])
def test_every_shape_with_odd_lines_counts_as_the_reference(data_dir, zone, event, estimates):
    (data_dir / file_name(DAY, 0)).write_bytes(gzip.compress(odd_day(1)))
    (data_dir / file_name(DAY, 1)).write_bytes(odd_day(2, odd_every=3))
    (data_dir / file_name(DAY, 2)).write_bytes(b"x" * (2 << 20) + b"\n" + odd_day(3))  # a line over 1 MiB
    for n in (3, 4):  # damage in most blocks: the rest of the day goes the reference way (quicker then)
        (data_dir / file_name(DAY, n)).write_bytes(odd_day(n + 1))
    got, want = fast(data_dir, zone, event, estimates), reference(data_dir, zone, event)
    assert got == want
    assert want["damage"]["not a JSON event"] > 100 and want["test"] > 0 and want["unweighted"] > 0
    assert want["damage"]["sampling rates too small to weigh"] > 0
    assert zone.key == "UTC" or want["damage"]["a received_at with no hour in the time zone"] > 0


def test_a_report_over_every_shape_answers_as_before(data_dir):
    """The whole report (two worker processes) over mixed files: rows equal the reference's."""
    for n in range(3):
        (data_dir / file_name(DAY, n)).write_bytes(gzip.compress(odd_day(10 + n)))
    result = run_report(data_dir, since=DAY, until=DAY, today=date(2026, 11, 26), zone=ZoneInfo("UTC"), tz="UTC",
                        by=("event",), event=None, workers=2)
    got = {r.keys["event"]: (r.est.events, r.est.visitors, round(r.est.estimate, 6), round(r.est.variance, 6))
           for r in result.rows}
    want = reference(data_dir, ZoneInfo("UTC"))
    assert got == want["rows"]
    assert (result.lines, result.damaged, result.test_lines, result.unweighted) == (
        want["lines"], sum(want["damage"].values()), want["test"], want["unweighted"])


def test_other_shapes_are_decoded_and_odd_lines_go_the_reference_way():
    rng = random.Random(5)
    for shape in "bcd":
        block = b"".join(shaped(shape, rng, f"v{i}", "click", AT) for i in range(500))
        found = list(records.runs(block))
        assert all(recs is not None for recs, _, _ in found), shape
        assert sum(len(recs) for recs, _, _ in found) == 500
    clean = b"".join(shaped("b", rng, f"v{i}", "click", AT) for i in range(200))
    for odd in ODD[:-1]:
        found = list(records.runs(clean + odd + b"\n" + clean))
        decoded = sum(len(recs) for recs, _, _ in found if recs is not None)
        assert 400 - 64 <= decoded <= 400 + 1, odd  # the lines around it are still decoded


# ---------------------------------------------------------------------------------------------- property test

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
rates = st.one_of(st.none(), st.booleans(), st.sampled_from([1, 1.0, 0.5, 0.25, 1e-6, 1e-7, 5e-324, 0, -1, 2]),
                  st.floats(allow_nan=False, allow_infinity=False), values)
received = st.one_of(st.just(AT), st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-1-1T3",
                                                   "9999-12-31t01", "x", ""]), values)
event_dicts = st.fixed_dictionaries(
    {"visitor_id": st.one_of(st.sampled_from(["v1", "v2", "v3"]), values),
     "event": st.one_of(st.sampled_from(["click", "scroll"]), values)},
    optional={"client_rate": rates, "server_rate": rates, "received_at": received, "ts": values,
              "timestamp": values, "extra": values,
              "metadata": st.one_of(values, st.fixed_dictionaries({}, optional={"test_run": values, "path": values,
                                                                                 "n": values}))})


def encode(ev: dict, how: int) -> bytes:
    if how == 0:
        try:
            return orjson.dumps(ev)
        except TypeError:  # an integer beyond 64 bits
            return json.dumps(ev, separators=(",", ":")).encode()
    if how == 1:
        return json.dumps(ev).encode()  # \\u escapes
    keys = list(ev)[::-1]
    return json.dumps({k: ev[k] for k in keys}, ensure_ascii=False, indent=None).encode("utf-8", "surrogatepass")


def damage(line: bytes, how: int, at: int) -> bytes:
    """Break a line: cut it, insert a byte, a newline, a huge number, a duplicate key."""
    at = at % (len(line) + 1)
    return [line[:at], line[:at] + b"\xff" + line[at:], line[:at] + b"\n" + line[at:],
            line[:-1] + b', "big": 1e400}', line[:-1] + b', "visitor_id": "vdup"}', line + b"\n",
            line[:at] + b"\\" + line[at:], line[:-1] + b', "n": 1' + b"0" * 320 + b"}"][how % 8]


lines = st.lists(st.tuples(event_dicts, st.integers(0, 2), st.one_of(st.none(), st.tuples(st.integers(0, 7),
                                                                                           st.integers(0, 400)))),
                 min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines, st.sampled_from(ZONES), st.booleans())
def test_property_fast_equals_reference(drawn, zone, estimates):
    body = []
    for ev, how, broken in drawn:
        line = encode(ev, how)
        body.append(line if broken is None else damage(line, *broken))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / file_name(DAY, 0)).write_bytes(b"\n".join(body) + b"\n")
        assert fast(directory, zone, estimates=estimates) == reference(directory, zone)
