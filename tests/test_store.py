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


# --- the writer's contract when other processes disagree (issue 9) ------------------------------------------
def lines_of(directory):
    """Every line of every data file, archives included, with the file it is in."""
    import gzip

    out = []
    for p in sorted(directory.iterdir()):
        if p.is_symlink() or parse_name(p.name) is None:
            continue
        raw = p.read_bytes()
        text = gzip.decompress(raw) if p.name.endswith(".gz") else raw
        out += [(p.name, line) for line in text.decode().splitlines()]
    return out


def test_a_pass_that_compresses_the_live_file_mid_day_loses_nothing(data_dir):
    """A pass in another zone (or after a clock step) sees the writer's file as old and compresses it while the
    writer's own day is far from over: the next append must notice and go to a new file."""
    noon = ts("2026-11-25 12:00:00")
    writer = Store(data_dir, UTC, clock=lambda: noon)  # the writer's own day is far from over
    assert writer.append(b'{"n":1}\n', now=noon) == "metrics-2026-11-25.jsonl"
    other = Store(data_dir, ZoneInfo("Pacific/Kiritimati"))  # UTC+14: for it the file is yesterday's
    other.compress("metrics-2026-11-25.jsonl")
    assert writer.append(b'{"n":2}\n', now=noon + 1) == "metrics-2026-11-25.1.jsonl"
    assert sorted(line for _f, line in lines_of(data_dir)) == ['{"n":1}', '{"n":2}']


def test_a_file_replaced_under_the_writer_is_never_written_again(data_dir):
    """forget renames a filtered copy over the live file: the writer's next line must land in the new file."""
    from metrics_ops.forget import visitor_rule

    writer = Store(data_dir, UTC)
    noon = ts("2026-11-25 12:00:00")
    writer.append(b'{"visitor_id":"gone","n":1}\n', now=noon)
    writer.append(b'{"visitor_id":"kept","n":2}\n', now=noon)
    done = Store(data_dir, UTC).rewrite_without("metrics-2026-11-25.jsonl", visitor_rule(frozenset({"gone"})))
    assert done.removed == 1
    assert writer.append(b'{"visitor_id":"kept","n":3}\n', now=noon) == "metrics-2026-11-25.jsonl"
    assert [line for _f, line in lines_of(data_dir)] == ['{"visitor_id":"kept","n":2}', '{"visitor_id":"kept","n":3}']


def test_a_clock_stepped_back_across_midnight_after_a_gzip_pass_loses_nothing(data_dir):
    clock = [ts("2026-11-26 00:10:00")]
    writer = Store(data_dir, UTC, clock=lambda: clock[0])
    writer.append(b'{"n":1}\n')
    Store(data_dir, UTC).compress("metrics-2026-11-26.jsonl")  # a pass with a clock a day ahead
    clock[0] = ts("2026-11-25 23:50:00")  # NTP steps the writer's clock back across midnight
    writer.append(b'{"n":2}\n')
    Store(data_dir, UTC).compress(writer.current_file())  # ... and the pass runs again
    clock[0] = ts("2026-11-25 23:55:00")
    writer.append(b'{"n":3}\n')
    assert sorted(line for _f, line in lines_of(data_dir)) == ['{"n":1}', '{"n":2}', '{"n":3}']


def test_a_shard_made_by_another_process_is_followed_within_100_ms(data_dir):
    """serve without --max-mb, rotate --max-mb from cron: the day's current file is its highest shard."""
    import time

    writer = Store(data_dir, UTC)  # no shard limit of its own
    noon = ts("2026-11-25 12:00:00")
    writer.append(b"a\n", now=noon)
    (data_dir / "metrics-2026-11-25.1.jsonl").touch()  # rotate --once --max-mb 64 started a shard
    assert writer.append(b"b\n", now=noon) == "metrics-2026-11-25.jsonl"  # within 100 ms of its last look
    time.sleep(0.12)
    assert writer.append(b"c\n", now=noon) == "metrics-2026-11-25.1.jsonl"
    assert writer.append(b"d\n", now=noon) == "metrics-2026-11-25.1.jsonl"
    assert os.readlink(data_dir / "metrics.jsonl") == "metrics-2026-11-25.1.jsonl"  # the link names it too


def test_shard_numbers_have_no_ceiling(data_dir):
    day = date(2026, 11, 25)
    (data_dir / file_name(day, 999_999)).write_bytes(b"x" * 100)
    writer = Store(data_dir, UTC, max_bytes=100)
    assert writer.append(b"y\n", now=ts("2026-11-25 12:00:00")) == "metrics-2026-11-25.1000000.jsonl"
    assert parse_name("metrics-2026-11-25.1000000.jsonl").shard == 1_000_000
    assert [f.name for f in writer.scan().files][-1] == "metrics-2026-11-25.1000000.jsonl"


def test_files_and_directory_are_private_by_default(tmp_path):
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "new" / "data", UTC)
        store.append(b"x\n", now=ts("2026-11-25 12:00:00"))
        wide = Store(tmp_path / "wide", UTC, file_mode=0o644)
        wide.append(b"x\n", now=ts("2026-11-25 12:00:00"))
    finally:
        os.umask(old)
    assert oct((tmp_path / "new" / "data").stat().st_mode & 0o777) == "0o750"
    assert oct((tmp_path / "new" / "data" / "metrics-2026-11-25.jsonl").stat().st_mode & 0o777) == "0o640"
    assert oct((tmp_path / "wide").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "wide" / "metrics-2026-11-25.jsonl").stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("mtime, day", [("1970-01-01 00:00:00", "1970-01-01"), ("2099-01-01 00:00:00", None)])
def test_an_adopted_legacy_file_is_dated_by_its_mtime_never_in_the_future(data_dir, mtime, day):
    legacy = data_dir / "metrics.jsonl"
    legacy.write_text("x\n")
    os.utime(legacy, (ts(mtime), ts(mtime)))
    store = Store(data_dir, UTC, clock=lambda: ts("2026-11-25 12:00:00"))
    _, adopted = store.point_link("metrics-2026-11-25.jsonl")
    assert adopted == f"metrics-{day or '2026-11-25'}.jsonl"


def test_a_file_removed_by_another_tool_is_noticed_within_100_ms(data_dir):
    """rm or logrotate do not count their changes (metrics_ops.changes): the writer still fstat()s its file at
    least every 100 ms, so at most the lines of those 100 ms go to the removed file."""
    import time

    noon = ts("2026-11-25 12:00:00")
    writer = Store(data_dir, UTC, clock=lambda: noon)
    writer.append(b'{"n":1}\n', now=noon)
    os.unlink(data_dir / "metrics-2026-11-25.jsonl")  # not through the store: no change counted
    time.sleep(0.12)
    assert writer.append(b'{"n":2}\n', now=noon) == "metrics-2026-11-25.jsonl"
    assert (data_dir / "metrics-2026-11-25.jsonl").read_bytes() == b'{"n":2}\n'  # a new file, not the removed one


def test_a_pass_counts_its_change_before_it_touches_a_file(data_dir):
    """The cheap path: a writer fstat()s only when the change counter moved, and every unlink or replacement by
    the store moves it first (so a writer never appends to a file a pass removed, not even once)."""
    from metrics_ops.changes import ChangeCounter

    noon = ts("2026-11-25 12:00:00")
    writer = Store(data_dir, UTC, clock=lambda: noon)
    writer.append(b'{"n":1}\n', now=noon)
    counter = ChangeCounter(data_dir)
    counter.attach()
    before = counter.value()
    Store(data_dir, UTC).compress("metrics-2026-11-25.jsonl")
    assert counter.value() == before + 1
    assert writer.append(b'{"n":2}\n', now=noon) == "metrics-2026-11-25.1.jsonl"  # at once, not after 100 ms
