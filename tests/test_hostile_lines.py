"""No stored line can stop a pass, a report or an export: a line whose weight or time a reader cannot use, or one
longer than the reader's bound, is one damaged line, counted and named, never a crash, an ``inf`` in a table or
``Infinity`` in a rollup; a line that lost its newline never swallows the next one. Real files, real processes."""

import gzip
import json
import os
import subprocess
import sys
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.events import encode_record
from metrics_ops.reading import MAX_LINE, iter_lines
from metrics_ops.report import run_report
from metrics_ops.store import Store, file_name

from .helpers import cli, days_ago

BERLIN = ZoneInfo("Europe/Berlin")


def served(vid: str, event: str, day: date, *, client: float | None = None, server: float = 1.0,
           at: str | None = None, path: str = "/") -> bytes:
    """A line exactly as serve writes it (the shape the report's shortcut reads)."""
    ev = {"visitor_id": vid, "event": event, "metadata": {"path": path}}
    if client is not None:
        ev["client_rate"] = client
    return encode_record(ev, at or f"{day.isoformat()}T12:00:00.000000Z", server)


def strict_json(text: str):
    """JSON as the standard says it: ``Infinity`` and ``NaN`` are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


HOSTILE = {  # what an older serve stored, or a hand: each one damaged line
    "sampling rates too small to weigh": [
        dict(server=5e-324), dict(client=5e-324, server=0.5), dict(client=1e-300), dict(client=1e-7, server=1e-6)],
    "a received_at with no hour in the time zone": [dict(at="9999-12-31T23:30:00.000000Z")],
}


@pytest.fixture
def hostile_day(data_dir):
    """Yesterday-but-one: 30 serve-shaped lines with the hostile ones among them, in one block and in a shard
    of their own. -> (day, good lines by visitor)"""
    day = days_ago(2)
    good = [served(f"v{i % 7}", ("page_view", "click")[i % 2], day, server=0.5) for i in range(30)]
    bad = [served(f"bad{n}", "click", day, **kw) for kws in HOSTILE.values() for n, kw in enumerate(kws)]
    (data_dir / file_name(day)).write_bytes(b"".join(good[:15] + bad + good[15:]))
    (data_dir / file_name(day, 1)).write_bytes(b"".join(bad))
    return day, good


@pytest.mark.parametrize("by", ["day", "event", "hour", "path", "day,event", "event,hour"])
def test_tiny_rates_and_times_past_the_calendar_are_damaged_lines_in_every_report(data_dir, hostile_day, by):
    day, good = hostile_day
    r = cli("--data-dir", data_dir, "report", "--since", day, "--until", day, "--by", by, "--no-rollups",
            "--tz", "Europe/Berlin", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    doc = strict_json(r.stdout)
    assert sum(row["events"] for row in doc["rows"]) == len(good)
    assert sum(row["estimate"] for row in doc["rows"]) == pytest.approx(2 * len(good))  # server rate 0.5
    assert doc["damage"] == {why: 2 * len(kws) for why, kws in HOSTILE.items()}  # in the block and in the shard
    [note] = [n for n in doc["notes"] if "damaged" in n]
    assert note.startswith("10 damaged line(s) left out: 8 sampling rates too small to weigh; 2 a received_at")


def test_the_shortcut_and_the_line_by_line_reader_agree_on_every_damaged_line(data_dir, hostile_day):
    """By event alone the serve-shaped blocks take the Counter shortcut; by event and hour every line is parsed
    with orjson: the same lines are damaged both ways, so the counts per event agree."""
    day, _ = hostile_day
    kw = dict(since=day, until=day, today=date.today(), zone=BERLIN, tz="Europe/Berlin", workers=1)
    shortcut = run_report(data_dir, by=("event",), **kw)
    parsed = run_report(data_dir, by=("event", "hour"), **kw)
    per_event = {}
    for row in parsed.rows:
        per_event[row.keys["event"]] = per_event.get(row.keys["event"], 0) + row.est.events
    assert {row.keys["event"]: row.est.events for row in shortcut.rows} == per_event
    assert shortcut.damage == parsed.damage == {why: 2 * len(kws) for why, kws in HOSTILE.items()}


def test_a_pass_over_hostile_lines_writes_a_rollup_that_is_json_and_agrees_with_raw(data_dir, hostile_day):
    day, good = hostile_day
    env = {"METRICS_TZ": "Europe/Berlin"}
    r = cli("--data-dir", data_dir, "rotate", "--once", "--gzip-after", "1", env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    doc = strict_json((data_dir / "rollups" / f"rollup-{day.isoformat()}.json").read_text())
    assert doc["damaged"] == 10 and doc["lines"] == len(good) + 10
    assert (data_dir / (file_name(day) + ".gz")).exists()  # the pass went on to compress the day
    for by in ("day", "event", "hour", "event,path"):
        both = [strict_json(cli("--data-dir", data_dir, "report", "--since", day, "--until", day, "--by", by,
                                "--json", *flag, env=env).stdout) for flag in ((), ("--no-rollups",))]
        assert both[0]["days"]["rollup"] == [day.isoformat()] and both[1]["days"]["raw"] == [day.isoformat()]
        assert [(r["events"], r["estimate"]) for r in both[0]["rows"]] == \
            [(r["events"], r["estimate"]) for r in both[1]["rows"]]
        assert both[0]["damaged"] == both[1]["damaged"] == 10


# ----------------------------------------------------------------------------- lines over the bound
def long_line(size: int, visitor: str = "huge") -> bytes:
    """A JSON object of ``size`` bytes (no newline): an event no serve would store."""
    head = b'{"visitor_id":"' + visitor.encode() + b'","event":"x","metadata":{"blob":"'
    return head + b"y" * (size - len(head) - 4) + b'"}}'


@pytest.fixture
def long_lines(data_dir):
    """An archive with a 3 MiB line between good ones, and a plain file with a line just under the bound, a 5 MiB
    line mid-file and a 2 MiB unterminated last line. -> (days, good lines)"""
    old, mid = days_ago(3), days_ago(2)
    good = [served(f"v{i}", "page_view", old) for i in range(40)]
    near = served("near", "page_view", mid, path="/" + "n" * (MAX_LINE - 200))
    assert len(near) - 1 <= MAX_LINE  # exactly a line a reader takes
    (data_dir / (file_name(old) + ".gz")).write_bytes(gzip.compress(
        b"".join(good[:20]) + long_line(3 << 20) + b"\n" + b"".join(good[20:])))
    mid_good = [served(f"w{i}", "click", mid) for i in range(10)]
    (data_dir / file_name(mid)).write_bytes(b"".join(mid_good[:5]) + near + long_line(5 << 20, "v3") + b"\n"
                                            + b"".join(mid_good[5:]) + long_line(2 << 20))
    return (old, mid), good + mid_good + [near]


def test_a_line_over_1_mib_is_one_damaged_line_named_in_report_and_export(data_dir, long_lines, tmp_path):
    (old, mid), good = long_lines
    r = cli("--data-dir", data_dir, "report", "--since", old, "--until", mid, "--json", "--no-rollups")
    assert r.returncode == 0, r.stderr
    doc = strict_json(r.stdout)
    assert sum(row["events"] for row in doc["rows"]) == len(good)
    assert doc["damage"] == {"longer than 1 MiB": 3}
    assert f"3 longer than 1 MiB ({file_name(old)}.gz, {file_name(mid)})" in " ".join(doc["notes"])
    out = tmp_path / "all.jsonl"
    r = cli("--data-dir", data_dir, "export", "--since", old, "--until", mid, "--output", out)
    assert r.returncode == 0, r.stderr
    assert sorted(out.read_bytes().splitlines(keepends=True)) == sorted(good)
    assert f"3 damaged line(s) longer than 1 MiB left out ({file_name(old)}.gz, {file_name(mid)})" in r.stderr


def test_forget_keeps_a_long_line_byte_for_byte_and_says_when_it_holds_the_id(data_dir, long_lines):
    (old, mid), _ = long_lines
    before = (data_dir / file_name(mid)).read_bytes()
    r = cli("--data-dir", data_dir, "forget", "w1", "v3", "--json")
    assert r.returncode == 1  # the 5 MiB line holds "v3": never parsed, so not removed, and said
    assert f"{file_name(mid)}: 1 line(s) longer than 1 MiB hold the text of these visitors' ids" in r.stderr
    after = (data_dir / file_name(mid)).read_bytes()
    assert after == before.replace(served("w1", "click", mid), b"")  # the long lines as they were
    assert [json.loads(x)["visitor_id"] for x in gzip.decompress((data_dir / (file_name(old) + ".gz")).read_bytes())
            .splitlines() if len(x) < MAX_LINE].count("v3") == 0


#: run the CLI, then print the peak RSS of the process (VmHWM; ru_maxrss would include the forked parent's)
PEAK = """
import sys
from metrics_ops.cli import cli
try:
    cli(sys.argv[1:], prog_name="metrics-ops", standalone_mode=False)
finally:
    print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1], file=sys.stderr)
"""


def test_a_256_mib_line_in_a_small_archive_is_read_in_bounded_memory(data_dir, tmp_path):
    """The issue's 1 GiB line, scaled down: report, export and forget read it without holding it (bench/
    hostile_bench.py measures the full size and the time). The test itself never holds it either."""
    import zlib

    day = days_ago(2)
    size = 256 << 20
    head = b'{"visitor_id":"v1","event":"x","metadata":{"blob":"'
    pack = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(data_dir / (file_name(day) + ".gz"), "wb") as out:
        out.write(pack.compress(served("v1", "a", day) + head))
        for _ in range(size >> 20):
            out.write(pack.compress(b"y" * (1 << 20)))
        out.write(pack.compress(b'"}}\n' + served("v2", "b", day)) + pack.flush())
    assert (data_dir / (file_name(day) + ".gz")).stat().st_size < 2 << 20
    runs = {"report": ["report", "--since", day, "--until", day, "--no-rollups"],
            "export": ["export", "--since", day, "--until", day, "--output", tmp_path / "out.jsonl"],
            "forget": ["forget", "v2"]}
    for what, args in runs.items():
        proc = subprocess.run([sys.executable, "-c", PEAK, "--data-dir", data_dir, *map(str, args)],
                              capture_output=True, text=True, timeout=300)
        peak_mib = int(proc.stderr.split()[-1]) / 1024
        assert "Traceback" not in proc.stderr, proc.stderr
        assert peak_mib < 120, f"{what}: {peak_mib:.0f} MiB"
    assert (tmp_path / "out.jsonl").read_bytes().count(b"\n") == 2
    unpack, lines, seen, found = zlib.decompressobj(31), 0, 0, False
    with open(data_dir / (file_name(day) + ".gz"), "rb") as fh:
        while raw := fh.read(1 << 20):
            while raw:
                piece = unpack.decompress(raw, 8 << 20)
                lines, seen = lines + piece.count(b"\n"), seen + len(piece)
                found = found or b'"visitor_id":"v2"' in piece
                raw = unpack.unconsumed_tail
    assert lines == 2 and not found and seen > size  # v2 gone, the long line kept whole


# ----------------------------------------------------------------------------- lines without their newline
def test_a_writer_never_appends_onto_a_line_without_its_newline(data_dir):
    today = date.today()
    name = file_name(today)
    (data_dir / name).write_bytes(served("a", "e", today) + served("torn", "e", today)[:40])  # a crash mid-write
    store = Store(data_dir, ZoneInfo("UTC"))
    assert store.append(served("b", "e", today)) == name
    assert store.append(served("c", "e", today)) == name
    lines = (data_dir / name).read_bytes().splitlines()
    assert lines[0] == served("a", "e", today).rstrip() and lines[1] == served("torn", "e", today)[:40]
    assert [json.loads(x)["visitor_id"] for x in lines[2:]] == ["b", "c"]  # each on a line of its own
    Store(data_dir, ZoneInfo("UTC")).append(served("d", "e", today))  # a second writer adds no empty line
    assert (data_dir / name).read_bytes().count(b"\n\n") == 0


def test_an_unterminated_last_line_counts_as_duckdb_counts_it_in_report_and_rollup(data_dir):
    duckdb = pytest.importorskip("duckdb")
    day = days_ago(2)
    body = b"".join(served(f"v{i}", "page_view", day) for i in range(5)).rstrip(b"\n")  # legacy: no final newline
    (data_dir / file_name(day)).write_bytes(body)
    [(n,)] = duckdb.sql(f"SELECT count(*) FROM read_json('{data_dir}/metrics-*.jsonl*', "
                        "format = 'newline_delimited', columns = {event: 'VARCHAR'})").fetchall()
    assert n == 5
    raw = strict_json(cli("--data-dir", data_dir, "report", "--since", day, "--until", day, "--no-rollups",
                          "--json").stdout)
    assert [row["events"] for row in raw["rows"]] == [5]
    assert cli("--data-dir", data_dir, "rotate", "--once").returncode == 0
    rolled = strict_json(cli("--data-dir", data_dir, "report", "--since", day, "--until", day, "--json").stdout)
    assert rolled["days"]["rollup"] == [day.isoformat()] and [row["events"] for row in rolled["rows"]] == [5]


def test_a_torn_last_line_is_one_damaged_line(data_dir):
    day = days_ago(2)
    (data_dir / file_name(day)).write_bytes(served("v1", "a", day) + served("v2", "a", day)[:30])
    doc = strict_json(cli("--data-dir", data_dir, "report", "--since", day, "--until", day, "--no-rollups",
                          "--json").stdout)
    assert [row["events"] for row in doc["rows"]] == [1] and doc["damage"] == {"not a JSON event": 1}


def test_a_line_being_written_is_left_for_the_next_read(data_dir):
    """A plain file some process holds open for writing: its unterminated tail is a line still being written."""
    day = days_ago(0)
    path = data_dir / file_name(day)
    path.write_bytes(served("v1", "a", day) + served("v2", "a", day)[:30])
    with open(path, "ab"):  # a writer has it open
        assert len(list(iter_lines(data_dir))) == 1
    assert len(list(iter_lines(data_dir))) == 2


def test_forget_finds_the_visitor_of_a_legacy_last_line_after_serve_appended(data_dir):
    """Cut-over: the existing system's metrics.jsonl lacks its final newline, a pass adopts it, serve appends.
    The visitor of that last line is found by forget, and serve's line is still there."""
    today = date.today()
    legacy = data_dir / "metrics.jsonl"
    legacy.write_bytes(served("old1", "e", today) + served("alice", "e", today).rstrip(b"\n"))
    assert cli("--data-dir", data_dir, "rotate", "--once").returncode == 0
    Store(data_dir, ZoneInfo("UTC")).append(served("bob", "e", today))
    r = cli("--data-dir", data_dir, "forget", "alice", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["visitor_id"] for x in iter_lines(data_dir)] == ["old1", "bob"]


def test_a_reconcile_never_joins_a_source_onto_an_archive_without_its_last_newline(data_dir):
    day = days_ago(5)
    name = file_name(day)
    (data_dir / (name + ".gz")).write_bytes(gzip.compress(served("a", "e", day).rstrip(b"\n")))
    (data_dir / name).write_bytes(served("b", "e", day))  # a late writer's fresh file
    read_before = [json.loads(x)["visitor_id"] for x in iter_lines(data_dir)]
    assert cli("--data-dir", data_dir, "gzip", "--gzip-after", "1").returncode == 0
    assert not (data_dir / name).exists()
    assert read_before == [json.loads(x)["visitor_id"] for x in iter_lines(data_dir)] == ["a", "b"]


# ----------------------------------------------------------------------------- legacy metrics.jsonl
def test_forget_reaches_a_legacy_metrics_jsonl_before_the_first_pass(data_dir):
    today = date.today()
    legacy = data_dir / "metrics.jsonl"
    legacy.write_bytes(b"".join(served(v, "e", today) for v in ("keep1", "alice", "keep2", "alice")))
    r = cli("--data-dir", data_dir, "forget", "alice", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert [(a["file"], a["detail"][:20]) for a in strict_json(r.stdout)["actions"] if a["kind"] == "rewrite"] == [
        ("metrics.jsonl", "2 line(s) to remove ")]
    assert legacy.is_file() and not legacy.is_symlink()  # a dry run changes nothing
    r = cli("--data-dir", data_dir, "forget", "alice", "--json")
    assert r.returncode == 0, r.stderr
    kinds = [a["kind"] for a in strict_json(r.stdout)["actions"]]
    assert "adopt" in kinds and "rewrite" in kinds
    assert legacy.is_symlink()
    assert [json.loads(x)["visitor_id"] for x in iter_lines(data_dir)] == ["keep1", "keep2"]
    os.unlink(legacy)
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith("metrics-")) == [file_name(today)]


@pytest.mark.parametrize("seed", range(20))
def test_the_bounded_reader_cuts_like_split_whatever_the_chunks(data_dir, monkeypatch, seed):
    """Lines of every length around the bound, read in chunks of every size, plain and .gz: the reader yields
    exactly the lines a plain split gives, minus those over the bound (counted, handed on whole and in order)."""
    import random

    from metrics_ops import lines as reading

    rng = random.Random(seed)
    bound = rng.choice([8, 16, 33])
    monkeypatch.setattr(reading, "MAX_LINE", bound)
    monkeypatch.setattr(reading, "_WINDOW", bound // 2)
    monkeypatch.setattr(reading, "_READ", rng.choice([1, 3, 7, 16, 64, 1000]))
    lines = [bytes(rng.choice(b"ab") for _ in range(rng.choice([0, 1, bound - 1, bound, bound + 1, 3 * bound,
                                                                  rng.randrange(5 * bound)])))
             for _ in range(rng.randrange(1, 30))]
    body = b"\n".join(lines) + rng.choice([b"\n", b""])
    name = file_name(days_ago(3)) + (".gz" if seed % 2 else "")
    (data_dir / name).write_bytes(gzip.compress(body) if seed % 2 else body)
    long, passed = {}, []
    fd = os.open(data_dir / name, os.O_RDONLY)
    try:
        got = b"".join(reading.file_blocks(fd, name, [], long, through=passed.append))
    finally:
        os.close(fd)
    whole = body.split(b"\n")
    if whole[-1] == b"":
        whole.pop()
    assert got.split(b"\n")[:-1] == [x for x in whole if len(x) <= bound]
    assert long.get(name, 0) == sum(len(x) > bound for x in whole)
    assert b"".join(passed) == b"".join(x + b"\n" for x in whole if len(x) > bound)[:len(b"".join(passed))]
    assert b"".join(passed).replace(b"\n", b"") == b"".join(x for x in whole if len(x) > bound)
