"""The on-disk contract: names, days, the link, legacy adoption and appends."""

import os
import subprocess
import sys
import textwrap
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.store import Store, StoreError, day_bounds, day_of, file_name, parse_name

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, zone=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.mark.parametrize("name, day, shard, gz", [
    ("metrics-2026-11-25.jsonl", date(2026, 11, 25), 0, False),
    ("metrics-2026-11-25.1.jsonl", date(2026, 11, 25), 1, False),
    ("metrics-2026-11-25.10.jsonl.gz", date(2026, 11, 25), 10, True),
    ("metrics-2024-02-29.jsonl", date(2024, 2, 29), 0, False),
])
def test_grammar_accepts(name, day, shard, gz):
    f = parse_name(name)
    assert (f.day, f.shard, f.gz) == (day, shard, gz)
    assert file_name(day, shard, gz) == name


@pytest.mark.parametrize("name", [
    "metrics-2026-02-30.jsonl", "metrics-2025-02-29.jsonl", "metrics-2026-11-25.0.jsonl",
    "metrics-2026-11-25.01.jsonl", "metrics-2026-11-25.jsonl.gz.tmp", "metrics-2026-11-25.json",
    "metrics.jsonl", "xmetrics-2026-11-25.jsonl", "metrics-2026-11-25.jsonl.bak", "metrics-26-11-25.jsonl",
    "metrics-2026-11-25.-1.jsonl", "metrics-2026-11-25.a.jsonl", "metrics-2026-11-25.jsonl.gz.gz",
])
def test_grammar_rejects(name):
    assert parse_name(name) is None


def test_shards_sort_numerically():
    names = [file_name(date(2026, 1, 1), n) for n in (10, 2, 0, 9, 1, 11)]
    assert [parse_name(n).shard for n in sorted(names, key=parse_name)] == [0, 1, 2, 9, 10, 11]


@pytest.mark.parametrize("zone, before, after, day_before", [
    (UTC, "2026-11-25 23:59:59", "2026-11-26 00:00:00", date(2026, 11, 25)),
    # Europe/Berlin's DST days: 29 March 2026 (23 hours) and 25 October 2026 (25 hours)
    (BERLIN, "2026-03-28 23:59:59", "2026-03-29 00:00:00", date(2026, 3, 28)),
    (BERLIN, "2026-03-29 23:59:59", "2026-03-30 00:00:00", date(2026, 3, 29)),
    (BERLIN, "2026-10-24 23:59:59", "2026-10-25 00:00:00", date(2026, 10, 24)),
    (BERLIN, "2026-10-25 23:59:59", "2026-10-26 00:00:00", date(2026, 10, 25)),
])
def test_day_boundary(zone, before, after, day_before):
    assert day_of(ts(before, zone), zone) == day_before
    assert day_of(ts(after, zone), zone).toordinal() == day_before.toordinal() + 1


def test_dst_days_have_23_and_25_hours():
    start, end = day_bounds(date(2026, 3, 29), BERLIN)
    assert end - start == 23 * 3600
    start, end = day_bounds(date(2026, 10, 25), BERLIN)
    assert end - start == 25 * 3600


@pytest.mark.parametrize("zone, last, first", [
    (UTC, "2026-11-25 23:59:59.999", "2026-11-26 00:00:00"),
    (BERLIN, "2026-03-29 23:59:59.999", "2026-03-30 00:00:00"),
    (BERLIN, "2026-10-25 23:59:59.999", "2026-10-26 00:00:00"),
    (BERLIN, "2026-10-24 23:59:59.999", "2026-10-25 00:00:00"),
])
def test_writer_lands_each_event_in_its_receive_day(data_dir, zone, last, first):
    store = Store(data_dir, zone)
    a = store.append(b'{"n":1}\n', now=ts(last, zone))
    b = store.append(b'{"n":2}\n', now=ts(first, zone))
    assert a == file_name(date.fromisoformat(last[:10]))
    assert b == file_name(date.fromisoformat(first[:10]))
    assert (data_dir / a).read_bytes() == b'{"n":1}\n'
    assert (data_dir / b).read_bytes() == b'{"n":2}\n'
    assert os.readlink(data_dir / "metrics.jsonl") == b  # the writer moved the link on with the day


def test_writer_shards_at_max_bytes_past_nine(data_dir):
    store = Store(data_dir, UTC, max_bytes=100)
    now = ts("2026-11-25 12:00:00")
    line = b'{"pad":"' + b"x" * 40 + b'"}\n'  # 51 bytes: two lines fill a shard
    for _ in range(26):
        store.append(line, now=now)
    names = sorted(os.listdir(data_dir))
    shards = sorted(parse_name(n).shard for n in names if parse_name(n))
    assert shards == list(range(13))
    assert all((data_dir / file_name(date(2026, 11, 25), n)).stat().st_size == 102 for n in shards)
    assert os.readlink(data_dir / "metrics.jsonl") == "metrics-2026-11-25.12.jsonl"


def test_second_writer_agrees_on_the_target(data_dir):
    now = ts("2026-11-25 12:00:00")
    a, b = Store(data_dir, UTC, max_bytes=60), Store(data_dir, UTC, max_bytes=60)
    assert a.append(b"x" * 59 + b"\n", now=now) == "metrics-2026-11-25.jsonl"
    assert b.append(b"y\n", now=now) == "metrics-2026-11-25.1.jsonl"  # a fresh writer skips the full file
    assert a.append(b"z\n", now=now) == "metrics-2026-11-25.1.jsonl"  # the old writer notices and follows


def test_writer_never_appends_to_an_archived_shard(data_dir):
    (data_dir / "metrics-2026-11-25.jsonl.gz").write_bytes(b"")
    store = Store(data_dir, UTC)
    assert store.append(b"a\n", now=ts("2026-11-25 12:00:00")) == "metrics-2026-11-25.1.jsonl"


def test_writer_refuses_a_symlink_planted_under_a_data_name(data_dir, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (data_dir / "metrics-2026-11-25.jsonl").symlink_to(outside)
    with pytest.raises(StoreError, match="cannot open"):
        Store(data_dir, UTC).append(b"a\n", now=ts("2026-11-25 12:00:00"))
    assert outside.read_text() == "precious\n"


def test_write_error_leaves_nothing_partial(data_dir):
    """A real short write: RLIMIT_FSIZE makes the kernel stop the write part-way (like a full disk)."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from zoneinfo import ZoneInfo
        from metrics_ops.store import Store, StoreError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = Store({str(data_dir)!r}, ZoneInfo("UTC"))
        store.append(b"first line\\n", now=1764072000)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20, 20))
        try:
            store.append(b"a line that does not fit\\n", now=1764072000)
        except StoreError as exc:
            print("error:", exc)
            sys.exit(0)
        sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "metrics-2025-11-25.jsonl" in r.stdout
    assert (data_dir / "metrics-2025-11-25.jsonl").read_bytes() == b"first line\n"


def test_legacy_regular_file_is_adopted_without_losing_a_line(data_dir):
    legacy = data_dir / "metrics.jsonl"
    legacy.write_text('{"old":1}\n{"old":2}\n')
    os.utime(legacy, (ts("2026-11-20 10:00:00"), ts("2026-11-20 10:00:00")))
    (data_dir / "metrics-2026-11-20.jsonl").write_text('{"dated":1}\n')
    store = Store(data_dir, UTC)
    changed, adopted = store.point_link("metrics-2026-11-25.jsonl")
    assert changed and adopted == "metrics-2026-11-20.1.jsonl"  # the day file existed: next shard
    assert (data_dir / adopted).read_text() == '{"old":1}\n{"old":2}\n'
    assert (data_dir / "metrics-2026-11-20.jsonl").read_text() == '{"dated":1}\n'
    assert legacy.is_symlink() and os.readlink(legacy) == "metrics-2026-11-25.jsonl"


def test_a_killed_adoption_is_not_adopted_twice(data_dir):
    legacy = data_dir / "metrics.jsonl"
    legacy.write_text("x\n")
    os.utime(legacy, (ts("2026-11-20 10:00:00"), ts("2026-11-20 10:00:00")))
    os.link(legacy, data_dir / "metrics-2026-11-20.jsonl")  # killed after the hard link, before the swap
    _, adopted = Store(data_dir, UTC).point_link("metrics-2026-11-25.jsonl")
    assert adopted == "metrics-2026-11-20.jsonl"
    assert sorted(os.listdir(data_dir)) == [".metrics-ops.link.lock", "metrics-2026-11-20.jsonl", "metrics.jsonl"]


def test_external_writer_appending_through_the_link_lands_in_the_current_file(data_dir):
    store = Store(data_dir, UTC)
    store.append(b"ours\n", now=ts("2026-11-25 12:00:00"))
    with open(data_dir / "metrics.jsonl", "a") as fh:  # the existing system's writer: open/append per event
        fh.write("theirs\n")
    assert (data_dir / "metrics-2026-11-25.jsonl").read_text() == "ours\ntheirs\n"


def test_link_moves_forward_only(data_dir):
    store = Store(data_dir, UTC)
    store.point_link("metrics-2026-11-25.2.jsonl")
    assert store.point_link("metrics-2026-11-25.1.jsonl") == (False, None)
    assert os.readlink(data_dir / "metrics.jsonl") == "metrics-2026-11-25.2.jsonl"
    assert store.point_link("metrics-2026-11-26.jsonl")[0]


def test_scan_reports_but_never_classifies_strangers_as_data(data_dir, tmp_path):
    (data_dir / "metrics-2026-11-20.jsonl").write_text("a\n")
    (data_dir / "notes.txt").write_text("keep\n")
    (data_dir / "metrics-2026-11-21.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    (data_dir / "metrics-2026-11-22.jsonl").mkdir()
    listing = Store(data_dir, UTC).scan()
    assert [f.name for f in listing.files] == ["metrics-2026-11-20.jsonl"]
    assert listing.unknown == ["metrics-2026-11-21.jsonl", "metrics-2026-11-22.jsonl", "notes.txt"]
