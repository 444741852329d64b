"""Reading the directory while a pass runs, rollups (written once, crash-safe, kept past raw retention, used by
report, left alone by gzip and prune) and export (the stored lines in stored order)."""

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from metrics_ops import archive, rollups
from metrics_ops.maintenance import Kind, run_pass
from metrics_ops.reading import Problem, read_blocks, shards
from metrics_ops.report import run_report
from metrics_ops.store import Store, file_name

from .helpers import all_lines

ZONE = ZoneInfo("UTC")
TODAY = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp()


def rec(visitor, event, day, n, path="/"):
    at = f"{day.isoformat()}T{n % 24:02d}:00:00.{n:06d}Z"
    return json.dumps({"visitor_id": visitor, "event": event, "metadata": {"path": path, "n": n},
                       "received_at": at, "ts": at, "client_rate": 1, "server_rate": 0.5}, separators=(",", ":"))


def fill(data_dir, ages=(5, 4, 3, 2, 1, 0), per_day=40):
    """Days TODAY - age, the older ones as archives; returns every line in stored order."""
    stored = []
    for age in ages:
        day = TODAY - timedelta(days=age)
        lines = [rec(f"v{i % 10}", "page_view" if i % 3 else "click", day, i, f"/p{i % 4}") for i in range(per_day)]
        body = "".join(x + "\n" for x in lines).encode()
        if age >= 3:
            (data_dir / (file_name(day) + ".gz")).write_bytes(gzip.compress(body))
        else:
            half = len(lines) // 2
            (data_dir / file_name(day)).write_text("".join(x + "\n" for x in lines[:half]))
            (data_dir / file_name(day, 1)).write_text("".join(x + "\n" for x in lines[half:]))
        stored.extend(lines)
    os.symlink(file_name(TODAY, 1), data_dir / "metrics.jsonl")
    return stored


def a_pass(data_dir, now=NOW, **kw):
    return run_pass(Store(data_dir, ZONE, clock=lambda: now), now=now, steps=("rotate", "rollup", "gzip", "prune"),
                    **kw)


# ----------------------------------------------------------------------------- reading
def test_a_plain_file_compressed_after_the_listing_is_read_once_from_its_archive(data_dir):
    lines = fill(data_dir, ages=(1,))
    listed = shards(data_dir)
    archive.compress(data_dir, file_name(TODAY - timedelta(days=1)))  # a pass between listing and reading
    problems: list[Problem] = []
    got = b"".join(b for s in listed[TODAY - timedelta(days=1)] for b in read_blocks(data_dir, s, problems))
    assert got.decode().splitlines() == lines and problems == []


def test_a_plain_file_open_while_it_is_compressed_is_read_whole(data_dir):
    lines = fill(data_dir, ages=(1,))
    day = TODAY - timedelta(days=1)
    [first, second] = shards(data_dir)[day]
    blocks = read_blocks(data_dir, first, [])
    head = next(blocks)  # the file is open now
    archive.compress(data_dir, first.name)  # compressed and unlinked under the reader
    got = (head + b"".join(blocks) + b"".join(read_blocks(data_dir, second, []))).decode().splitlines()
    assert got == lines


def test_a_pair_left_by_a_killed_gzip_is_read_as_its_reconcile_will_merge_it(data_dir):
    lines = fill(data_dir, ages=(1,))
    name = file_name(TODAY - timedelta(days=1))
    (data_dir / (name + ".gz")).write_bytes(gzip.compress((data_dir / name).read_bytes()))  # killed before unlink
    assert all_lines(data_dir) == lines
    with open(data_dir / name, "a") as fh:
        fh.write(rec("late", "click", TODAY, 99) + "\n")  # and a late writer appended to the source
    assert Counter_of(all_lines(data_dir)) == Counter_of(lines[:20] + [rec("late", "click", TODAY, 99)] + lines[20:])


def Counter_of(lines):  # noqa: N802 - reads like the collections.Counter it wraps
    from collections import Counter

    return Counter(lines)


def test_the_link_and_strangers_are_never_read(data_dir):
    lines = fill(data_dir, ages=(0,))
    (data_dir / "notes.jsonl").write_text(rec("x", "y", TODAY, 1) + "\n")
    assert all_lines(data_dir) == lines  # today's file once, though the link points at it


# ----------------------------------------------------------------------------- rollups
def test_a_pass_writes_each_complete_days_rollup_once_and_gzip_and_prune_leave_them_alone(data_dir):
    fill(data_dir)
    first = a_pass(data_dir, gzip_after=1, retention=30)
    written = sorted(a.file for a in first.actions if a.kind == Kind.ROLLUP)
    assert written == [rollups.rollup_name(TODAY - timedelta(days=n)) for n in (5, 4, 3, 2, 1)]
    assert "rollups" not in first.unknown
    stamps = {p.name: p.stat().st_mtime_ns for p in (data_dir / "rollups").iterdir()}
    second = a_pass(data_dir, now=NOW + 3600, gzip_after=1, retention=30)
    assert [a for a in second.actions if a.kind == Kind.ROLLUP] == []  # once per day
    assert {p.name: p.stat().st_mtime_ns for p in (data_dir / "rollups").iterdir()} == stamps
    # a pass with retention 1 deletes every raw file but today's; the rollups stay, untouched
    third = a_pass(data_dir, now=NOW + 7200, gzip_after=1, retention=1)
    assert {a.file for a in third.actions if a.kind == Kind.DELETE}
    assert {p.name: p.stat().st_mtime_ns for p in (data_dir / "rollups").iterdir()} == stamps


def test_report_uses_rollups_past_raw_retention_with_the_same_counts(data_dir):
    fill(data_dir)
    kw = dict(since=TODAY - timedelta(days=6), until=TODAY, today=TODAY, zone=ZONE, tz="UTC")
    raw = run_report(data_dir, by=("day", "event"), use_rollups=False, **kw)
    a_pass(data_dir, gzip_after=1, retention=1)  # rollups written, then every raw file but today's deleted
    assert {p.name for p in data_dir.iterdir() if p.name.startswith("metrics-")} == {file_name(TODAY),
                                                                                    file_name(TODAY, 1)}
    later = run_report(data_dir, by=("day", "event"), **kw)
    assert [r.to_dict() for r in later.rows] == [r.to_dict() for r in raw.rows]
    assert later.rollup_days == [TODAY - timedelta(days=n) for n in (5, 4, 3, 2, 1)] and later.raw_days == [TODAY]
    by_event = run_report(data_dir, by=("event",), **kw)  # across days: visitors cannot come from daily rollups
    assert all(r.est.visitors is None for r in by_event.rows)
    assert sum(r.est.events for r in by_event.rows) == sum(r.est.events for r in raw.rows)
    assert any("visitors: unknown" in n for n in by_event.notes)
    hourly = run_report(data_dir, by=("day", "hour"), event="click", **kw)  # a view the rollups keep
    assert hourly.rollup_days and sum(r.est.events for r in hourly.rows) == sum(
        r.est.events for r in raw.rows if r.keys["event"] == "click")


def test_the_unknown_visitors_hint_suggests_what_works(data_dir):
    """Across days from rollups visitors are unknown: the note names --no-rollups while the raw files are kept
    (and following it gives the visitors), and a count per day once only the rollups are left."""
    from metrics_ops.cli.report import report

    fill(data_dir)
    a_pass(data_dir, gzip_after=1, retention=30)  # every complete day has its rollup, every raw file is kept
    kw = dict(since=TODAY - timedelta(days=6), until=TODAY, today=TODAY, zone=ZONE, tz="UTC")
    [hint] = [n for n in run_report(data_dir, by=("event",), **kw).notes if n.startswith("visitors: unknown")]
    assert hint.endswith("; add --no-rollups to count them from the raw files, or group by day")
    assert any("--no-rollups" in p.opts for p in report.params)
    followed = run_report(data_dir, by=("event",), use_rollups=False, **kw)
    assert [(r.keys["event"], r.est.visitors) for r in followed.rows] == [("page_view", 10), ("click", 10)]
    assert not [n for n in followed.notes if n.startswith("visitors")]
    a_pass(data_dir, now=NOW + 3600, gzip_after=1, retention=1)  # the raw files of 5 days are pruned
    [hint] = [n for n in run_report(data_dir, by=("event",), **kw).notes if n.startswith("visitors: unknown")]
    assert hint.endswith("; 5 of these days have only their rollup left (raw files pruned), so group by day "
                         "(--no-rollups would leave them out)")
    per_day = run_report(data_dir, by=("day", "event"), **kw)
    assert per_day.rows and all(r.est.visitors is not None for r in per_day.rows)


def test_rollups_hold_no_visitor_id(data_dir):
    fill(data_dir)
    a_pass(data_dir, gzip_after=1, retention=30)
    for p in (data_dir / "rollups").iterdir():
        text = p.read_text()
        assert "visitor_id" not in text and not any(f'"v{i}"' in text for i in range(10)), text


def test_rollups_past_rollup_retention_are_deleted(data_dir):
    fill(data_dir)
    a_pass(data_dir, gzip_after=1, retention=30)
    later = NOW + 4 * 86400
    result = a_pass(data_dir, now=later, gzip_after=1, retention=30, rollup_retention=7)
    dropped = sorted(a.file for a in result.actions if a.kind == Kind.DROP_ROLLUP)
    assert dropped == [rollups.rollup_name(TODAY - timedelta(days=n)) for n in (5, 4, 3)]


KILLED_WRITER = """
import os, sys, threading
from pathlib import Path
from zoneinfo import ZoneInfo
from metrics_ops import rollups
real_write = os.write
def stalling_write(fd, data):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".json.tmp"):
        real_write(fd, bytes(data[: len(data) // 2]))
        print("half", flush=True)
        threading.Event().wait()  # killed here, half the rollup written
    return real_write(fd, data)
os.write = stalling_write
rollups.write(Path(sys.argv[1]), sys.argv[2], ZoneInfo("UTC"))
"""


def test_a_rollup_write_killed_half_way_leaves_no_rollup_and_the_next_pass_writes_it(data_dir):
    fill(data_dir)
    day = TODAY - timedelta(days=2)
    relative = rollups.rollup_name(day)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(data_dir), relative], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted(os.listdir(data_dir / "rollups")) == [rollups.rollup_name(day) + ".tmp"]
    assert rollups.read(data_dir, day) is None  # report falls back to raw lines
    result = a_pass(data_dir, gzip_after=1, retention=30)
    assert relative in [a.file for a in result.actions if a.kind == Kind.ROLLUP]
    assert not any(n.endswith(".tmp") for n in os.listdir(data_dir / "rollups"))
    whole = rollups.read(data_dir, day)
    assert whole is not None and whole.views[()][()].events == 40


# ----------------------------------------------------------------------------- export
def test_export_jsonl_is_every_stored_line_in_stored_order(data_dir, run, tmp_path):
    stored = fill(data_dir)
    (data_dir / file_name(TODAY - timedelta(days=1), 2)).write_text("")  # an empty shard
    r = run("--data-dir", data_dir, "export", "--since", "2026-06-01", "--until", "2026-06-15")
    assert r.exit_code == 0, r.stderr
    # stdout of CliRunner is text: compare line by line
    assert r.stdout.splitlines() == stored
    out = tmp_path / "out.jsonl"
    r = run("--data-dir", data_dir, "export", "--since", "2026-06-12", "--until", "2026-06-13", "--event", "click",
            "--output", out, "--json")
    want = [x for x in stored if '"click"' in x and ("2026-06-12" in x or "2026-06-13" in x)]
    assert out.read_text().splitlines() == want
    assert json.loads(r.stdout)["lines"] == len(want)


def test_export_csv_flattens_metadata_one_level(data_dir, run):
    day = TODAY - timedelta(days=1)
    (data_dir / file_name(day)).write_text(
        json.dumps({"visitor_id": "v1", "event": "e", "metadata": {"path": "/a", "cart": {"items": 2}},
                    "received_at": "2026-06-14T10:00:00.000001Z", "ts": "2026-06-14T10:00:00.000001Z"}) + "\n"
        + json.dumps({"visitor_id": "v2", "event": "e", "timestamp": 1781431200000, "received_at":
                      "2026-06-14T10:00:01.000001Z", "ts": "2026-06-14T10:00:00.000000Z", "client_rate": 0.5,
                      "server_rate": 1}) + "\n" + "not json\n")
    r = run("--data-dir", data_dir, "export", "--since", "2026-06-14", "--until", "2026-06-14", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["received_at", "ts", "visitor_id", "event", "timestamp", "client_rate", "server_rate",
                             "metadata.cart", "metadata.path", "metadata._rest"]
    assert rows[0]["metadata.cart"] == '{"items":2}' and rows[0]["metadata.path"] == "/a"
    assert rows[1]["timestamp"] == "1781431200000" and rows[1]["client_rate"] == "0.5"
    assert rows[1]["metadata.path"] == ""
    assert "1 line(s) are not JSON objects" in r.stderr


def test_export_with_a_damaged_archive_streams_what_it_can_and_exits_1(data_dir, run):
    day = TODAY - timedelta(days=1)
    body = gzip.compress("".join(rec("v", "e", day, i) + "\n" for i in range(3000)).encode())
    (data_dir / (file_name(day) + ".gz")).write_bytes(body[: len(body) // 2])
    r = run("--data-dir", data_dir, "export", "--since", "2026-06-14", "--until", "2026-06-14")
    assert r.exit_code == 1 and "truncated" in r.stderr and "Traceback" not in r.stderr
    assert 0 < len(r.stdout.splitlines()) < 3000


def test_export_constant_memory_over_a_large_range(data_dir, tmp_path):
    """300,000 lines through a real process: max RSS stays far below the data's size."""

    for age in range(6):
        day = TODAY - timedelta(days=age + 1)
        body = "".join(rec(f"v{i}", "page_view", day, i % 1000, "/" + "x" * 200) + "\n" for i in range(50_000))
        (data_dir / (file_name(day) + ".gz")).write_bytes(gzip.compress(body.encode(), 1))
    out = tmp_path / "all.jsonl"
    proc = subprocess.run([sys.executable, "-c", PEAK, "--data-dir", data_dir, "export", "--since", "2026-06-01",
                           "--until", "2026-06-15", "--output", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 70 * 2**20
    peak_kib = int(proc.stdout.split()[-2])
    assert peak_kib < 100 * 1024, proc.stdout  # under 100 MB (the interpreter and its imports: about 40)


#: run the CLI, then print the process's own peak RSS (VmHWM: ru_maxrss would include the forked parent's)
PEAK = """
import sys
from metrics_ops.cli import cli
try:
    cli(sys.argv[1:], prog_name="metrics-ops", standalone_mode=False)
finally:
    print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].strip())
"""


def test_a_day_a_writer_still_holds_open_is_rolled_up_after_it_lets_go_with_every_line(data_dir):
    """Midnight: the pass finds yesterday over while serve's writer still holds yesterday's file and appends one
    more line. A rollup is written once, so it waits until the writer moved on to today's file."""
    fill(data_dir, ages=(1, 0))
    yesterday = TODAY - timedelta(days=1)
    writer = Store(data_dir, ZONE)
    late = NOW - 86400
    writer.append((rec("v99", "click", yesterday, 99) + "\n").encode(), now=late)  # the file is now held
    first = a_pass(data_dir)
    assert [a.file for a in first.actions if a.kind == Kind.ROLLUP] == []
    writer.append((rec("v98", "click", yesterday, 98) + "\n").encode(), now=late)
    writer.append((rec("v97", "click", TODAY, 97) + "\n").encode(), now=NOW)  # moves on, lets go of yesterday
    second = a_pass(data_dir, now=NOW + 60)
    assert [a.file for a in second.actions if a.kind == Kind.ROLLUP] == [rollups.rollup_name(yesterday)]
    doc = json.loads((data_dir / "rollups" / rollups.rollup_name(yesterday)).read_text())
    assert doc["lines"] == 40 + 2
