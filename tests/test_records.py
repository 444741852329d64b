"""The C way to count (metrics_ops/linecount.py, _linescan.c) never changes an answer: over real files of every
line shape with odd lines mixed in, a day's totals equal the reference's (orjson line by line,
tally._count_block) exactly, damaged lines by reason included; a property test does the same over generated
lines; the extension is really built and used, lines of every shape are counted in C, and each odd line is
either read in C as orjson reads it or handed back whole to the reference."""

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

from metrics_ops import _linescan
from metrics_ops.estimate import Estimate
from metrics_ops.events import encode_record
from metrics_ops.linecount import LineCounter
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
    b'{"visitor_id": "vesc", "event": "click", "x": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000"}',
    b'{"visitor_id": "vesc2", "event": "click", "x": "\\ude00"}',  # a lone low surrogate
    b'{"visitor_id": "vesc3", "event": "click", "x": "\\ud83d\\u0041"}',  # a high surrogate, no low one
    b'{"visitor_id": "vesc4", "event": "click", "x": "\\x41"}',  # no such escape
    b'{"visitor_id": "vesc5", "event": "click", "metadata": {"a": {"test_\\u0072un": 1}}, "x": "\\u12"}',
    b'{"visitor_id": "vesc6", "event": "click", "metadata": {"a": {"k\\u00e9y": "\\/"}}}',
    b'{"visitor_id": "vcrlf", "event": "click", "client_rate": 0.5}\r',  # CRLF: the \r is whitespace
    b'{"visitor_id": "vsur", "event": "click", "x": "\xed\xa0\x80"}',  # a surrogate written raw: invalid UTF-8
    b'{"visitor_id": "vover", "event": "click", "x": "\xc0\xaf"}',  # overlong UTF-8
    b'{"visitor_id": "vmax", "event": "click", "x": "\xf4\x90\x80\x80"}',  # beyond U+10FFFF
    b'{"visitor_id": "v\xf0\x9f\x98\x80", "event": "cl\xc3\xafck", "x": "\xe2\x82\xac"}',  # valid UTF-8, raw
    b'{"visitor_id": "vneg", "event": "click", "client_rate": -0, "server_rate": 1E-2}',
    b'{"visitor_id": "vexp", "event": "click", "client_rate": 5e-1, "server_rate": 2.5E+0, "x": 1e99}',
    b'{"visitor_id": "vd18", "event": "click", "client_rate": 100000000000000000, "x": 123456789012345678}',
    b'{"visitor_id": "vd19", "event": "click", "x": 1234567890123456789, "y": 0.1234567890123456789}',
    b'{"visitor_id": "vdupr", "event": "click", "client_rate": 1e-9, "client_rate": null, "server_rate": 0.5}',
    b'{"visitor_id": "vdupm", "event": "click", "metadata": {"test_run": "x"}, "metadata": {"path": "/"}}',
    b'{"visitor_id": "vdupm2", "event": "click", "metadata": {"path": "/"}, "metadata": {"test_run": "x"}}',
    b'{"visitor_id": "vdeep2", "event": "click", "metadata": {"a": ' + b"[" * 60 + b"]" * 60 + b"}}",
    b'{"visitor_id": "vdeep3", "event": "click", "metadata": {"a": ' + b"[" * 80 + b"]" * 80 + b"}}",
    b'{"visitor_id": "vshort", "event": "click", "received_at": "999"}',
    b'{"visitor_id": "vempty", "event": "click", "received_at": ""}',
    b'{"visitor_id": "vfirst", "event": "click", "received_at": "0002-01-01T00:00:00Z"}',
    b'{"visitor_id": "vnan", "event": "click", "client_rate": NaN}',
    b'{"visitor_id": "vlead", "event": "click", "x": 01}',
    b'{"visitor_id": "vtrail", "event": "click",}',
    b'{"visitor_id": "vcolon", "event" "click"}',
    b"{}",
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


@pytest.mark.parametrize("event", [None, "click", "\udcff"])
def test_clean_lines_of_every_shape_count_as_the_reference(data_dir, event):
    """No line for the reference: each event's estimate comes from the C counter's spread, visitors with lines of
    two weights (shape a's rates, shape b's none) clustered apart."""
    rng = random.Random(9)
    lines = [shaped(rng.choice("abcd"), rng, f"v{rng.randint(0, 300)}", rng.choice(["click", "scroll"]), AT)
             for _ in range(4000)]
    (data_dir / file_name(DAY, 0)).write_bytes(b"".join(line for line in lines if b"\\" not in line))
    zone = ZoneInfo("Europe/Berlin")
    got, want = fast(data_dir, zone, event), reference(data_dir, zone, event)
    assert got == want
    assert event == "\udcff" or len(want["rows"]) >= 1 and want["unweighted"] > 0


@pytest.mark.parametrize("event", [None, "click"])
@pytest.mark.parametrize("estimates", [True, False])
def test_a_day_grouped_by_nothing_counts_as_the_reference(data_dir, event, estimates):
    """Grouped by nothing (report --by day): each visitor one cluster over all its events, from the C counter's
    spread by visitor (a visitor with lines of two weights clustered apart) or its entries."""
    rng = random.Random(11)
    lines = [shaped(rng.choice("abcd"), rng, f"v{rng.randint(0, 300)}", rng.choice(["click", "scroll"]), AT)
             for _ in range(4000)]
    (data_dir / file_name(DAY, 0)).write_bytes(b"".join(line for line in lines if b"\\" not in line))
    day_shards = shards(data_dir)[DAY]
    tally = tally_day(data_dir, DAY, day_shards, [()], ZONES[1], event, estimates=estimates)
    want = DayTally(DAY, {(): {}})
    for block in read_day(data_dir, day_shards, want.problems, want.long_lines):
        _count_block(block, want, [(want.cells[()], _key_of(()))], event, _Hours(ZONES[1]), False, False)
    [(key, cell)] = tally.cells[()].items()
    got = cell if isinstance(cell, Estimate) else Estimate.of_visitors(cell)
    ref = Estimate.of_visitors(want.cells[()][()])
    assert key == () and (got.events, got.visitors) == (ref.events, ref.visitors) and ref.visitors > 250
    assert (round(got.estimate, 6), round(got.variance, 6)) == (round(ref.estimate, 6), round(ref.variance, 6))
    assert (tally.lines, tally.unweighted, tally.damage) == (want.lines, want.unweighted, want.damage)


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


def test_the_extension_is_built_and_every_shape_is_counted_in_c():
    assert _linescan.__file__.endswith(".so")  # built, not some stand-in
    rng = random.Random(5)
    for shape in "abcd":
        counter = LineCounter(None)
        assert isinstance(counter.counter, _linescan.Counter)
        block = b"".join(shaped(shape, rng, f"v{i % 50}", "click", AT) for i in range(500))
        assert b"\\u00fc" in block or shape != "c"  # escapes in skipped strings are read in C too
        assert counter.count(block) == b"", shape  # nothing handed back: every line read in C
        assert counter.counter.lines == 500


#: odd lines the C reader is sure of (counted in C); every other odd line is handed back whole
READ_IN_C = {b"vnull", b"vlist", b"vnest", b"vrare", b"vshort", b"vat", b"vcrlf", b"vneg", b"vexp", b"vd18",
             b"vdupr", b"vdeep2", b"vesc", b"vesc6", b"vfirst", b"vws", b"v\xf0\x9f\x98\x80"}


def test_each_odd_line_is_read_in_c_or_handed_back_whole():
    clean = b"".join(shaped("b", random.Random(6), f"v{i}", "click", AT) for i in range(200))
    for odd in ODD[:-1]:
        counter = LineCounter(None)
        back = counter.count(clean + odd + b"\n" + clean)
        assert counter.counter.lines + back.count(b"\n") == 401, odd  # each line once, one way or the other
        vid = odd.split(b'"visitor_id": "')[-1].split(b'"')[0] if b'"visitor_id": "' in odd else None
        assert (back == b"") == (vid in READ_IN_C), odd
        assert back in (b"", odd + b"\n")
    assert LineCounter(None).count(b'{"visitor_id": "v", "event": "e"}') == b""  # no newline at the end: a line


def test_rates_are_read_as_orjson_reads_them():
    """strtod, correctly rounded like orjson: the counter's pairs of rates are orjson's floats."""
    texts = [b"0.1", b"0.3333333333333333", b"1e-7", b"4.9406564584124654e-32", b"2.2250738585072014e-99",
             b"0.99999999999999999", b"1", b"-0", b"0.5E+00", b"123456789012345678"]
    for text in texts:
        counter = LineCounter(None)
        assert counter.count(b'{"visitor_id": "v", "event": "e", "client_rate": %s, "server_rate": null}' % text) == b""
        assert counter.counter.pairs() == [(float(orjson.loads(text)), None, 1, 0)], text


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
            line[:at] + b"\\" + line[at:], line[:-1] + b', "n": 1' + b"0" * 320 + b"}", line + b"\r",
            line[:-1] + b', "m": {"test_run": 1}, "r": "\xe2\x82\xac"}'][how % 10]


lines = st.lists(st.tuples(event_dicts, st.integers(0, 2), st.one_of(st.none(), st.tuples(st.integers(0, 9),
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


mutations = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.binary(min_size=1, max_size=3)),
                     max_size=3)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_dicts, st.integers(0, 2), mutations)
def test_property_a_line_read_in_c_is_read_so_by_orjson(ev, how, changes):
    """Line by line, bytes inserted, replaced or deleted anywhere: a line the C reader counts is one orjson reads,
    with the same visitor, event and rates (None for null or missing); any other line is handed back whole."""
    line = bytearray(encode(ev, how))
    for kind, at, data in changes:
        at %= len(line) + 1
        if kind == 0:
            line[at:at] = data
        elif kind == 1:
            line[at:at + len(data)] = data
        else:
            del line[at:at + len(data)]
    line = bytes(line).replace(b"\n", b" ")
    counter = LineCounter(None)
    back = counter.count(line + b"\n")
    if back:
        assert back == line + b"\n"
        return
    if not line:
        return  # an empty line is no line
    rec = orjson.loads(line)  # raises if the C reader took what orjson refuses
    assert type(rec) is dict and type(rec["visitor_id"]) is str and type(rec["event"]) is str
    [(c, s, counted, _)] = counter.counter.pairs()
    assert (c, s) == tuple(None if rec.get(k) is None else float(rec[k]) for k in ("client_rate", "server_rate"))
    assert type(rec.get("client_rate")) is not bool and type(rec.get("server_rate")) is not bool
    assert counter.counter.entries([0]) == [(rec["visitor_id"], rec["event"], 0, 1)]
    meta = rec.get("metadata")
    assert not (type(meta) is dict and "test_run" in meta)
    at = rec.get("received_at")
    assert type(at) is not str or "0002" <= at < "9999"


def test_a_checkout_whose_extension_is_not_built_says_so_in_one_line(tmp_path, data_dir):
    """A source tree without its built C extension (run with PYTHONPATH, never installed): one line naming the
    module and the command that builds it, exit 1; not a ModuleNotFoundError traceback."""
    import shutil
    import subprocess
    import sys

    package = Path(_linescan.__file__).parent
    shutil.copytree(package, tmp_path / "src" / "metrics_ops", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    day = date(2026, 11, 2)
    line = encode_record({"visitor_id": "v1", "event": "click"}, "2026-11-02T12:00:00.000Z")
    (data_dir / file_name(day)).write_bytes(line)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "src"), "HOME": str(tmp_path)}
    # the test venv's editable install would still find the built module: run as if metrics-ops were not installed
    launch = ("import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
              "import metrics_ops, metrics_ops.cli; assert metrics_ops.__file__.startswith(sys.argv[1]), "
              "metrics_ops.__file__; del sys.argv[1]; runpy.run_module('metrics_ops', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", launch, str(tmp_path / "src"), "--data-dir", str(data_dir),
                           "report", "--since", "2026-11-02", "--until", "2026-11-02", "--no-rollups"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "metrics-ops: the C extension metrics_ops._linescan is not built: run pip install -e . in the checkout "
        "(it needs gcc and Python's headers, python3-dev)"]
