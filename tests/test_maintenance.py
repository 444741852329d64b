"""rotate, gzip and prune through the CLI and the library: edges, dry runs, strangers, locks, reconciliation."""

import gzip
import json
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from metrics_ops.maintenance import plan_gzip, plan_prune, run_pass
from metrics_ops.store import CHANGES_NAME, LOCK_NAME, Store, file_name

from .helpers import all_lines, data_file

TODAY = date(2026, 6, 15)
NOON = "2026-06-15 12:00:00"


def day(n: int) -> date:
    return TODAY - timedelta(days=n)


def make(data_dir, age: int, shard: int = 0, lines: int = 5, gz: bool = False):
    name = file_name(day(age), shard)
    return name, data_file(data_dir / name, ({"visitor_id": f"v{i}", "event": name, "n": i} for i in range(lines)),
                           gz=gz)


def snapshot(d):
    return {p.name: (p.is_symlink() and os.readlink(p)) or (p.is_file() and p.read_bytes())
            for p in sorted(d.iterdir())}


def test_gzip_after_edge_is_inclusive(data_dir, run):
    for age in (1, 2, 3, 4):
        make(data_dir, age)
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--gzip-after", 3, "--json")
    assert r.exit_code == 0, r.output
    done = [a["file"] for a in json.loads(r.stdout)["actions"]]
    assert done == [file_name(day(4)), file_name(day(3))]
    assert (data_dir / (file_name(day(3)) + ".gz")).exists()
    assert (data_dir / file_name(day(2))).exists() and not (data_dir / (file_name(day(2)) + ".gz")).exists()


def test_retention_edge_is_inclusive_and_covers_shards_and_archives(data_dir, run):
    kept_young = make(data_dir, 29)[0]
    old = [make(data_dir, 30)[0], make(data_dir, 30, shard=1)[0], make(data_dir, 31, gz=True)[0] + ".gz"]
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "prune", "--retention", 30, "--json")
    assert r.exit_code == 0
    assert sorted(a["file"] for a in json.loads(r.stdout)["actions"]) == sorted(old)
    assert sorted(os.listdir(data_dir)) == [CHANGES_NAME, LOCK_NAME, kept_young]


def test_the_existing_timeline_written_day0_gzipped_day3_deleted_day30(data_dir, run):
    name, lines = make(data_dir, 0)
    for offset, expect in [(2, name), (3, name + ".gz"), (29, name + ".gz"), (30, None)]:
        with freeze_time(f"{TODAY + timedelta(days=offset)} 00:00:01"):
            r = run("--data-dir", data_dir, "rotate", "--once", "-q")
        assert r.exit_code == 0 and r.output == ""
        present = [n for n in os.listdir(data_dir) if n.startswith(name)]
        assert present == ([expect] if expect else []), offset
    assert lines  # the file held real lines until its deletion


def test_rotate_points_link_at_today_and_shards_at_max_mb(data_dir, run):
    yesterday = make(data_dir, 1)[0]
    os.symlink(yesterday, data_dir / "metrics.jsonl")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once", "--json")
    assert r.exit_code == 0
    assert os.readlink(data_dir / "metrics.jsonl") == file_name(TODAY)
    (data_dir / file_name(TODAY)).write_bytes(b"x" * 2048 + b"\n")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once", "--max-mb", "0.001", "--json")
    kinds = [(a["kind"], a["file"]) for a in json.loads(r.stdout)["actions"]]
    assert ("shard", file_name(TODAY, 1)) in kinds
    assert os.readlink(data_dir / "metrics.jsonl") == file_name(TODAY, 1)


def test_a_link_action_names_its_target_in_json(data_dir, run):
    os.symlink(make(data_dir, 1)[0], data_dir / "metrics.jsonl")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once", "--dry-run", "--json")
    link = [a for a in json.loads(r.stdout)["actions"] if a["kind"] == "link"]
    assert [(a["detail"], a["target"], a["status"]) for a in link] == [
        (f"-> {file_name(TODAY)}", file_name(TODAY), "planned")]


def test_gzip_never_touches_the_link_target_or_today(data_dir, run):
    old = make(data_dir, 10)[0]
    make(data_dir, 0)
    os.symlink(old, data_dir / "metrics.jsonl")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "-v", "--json")
    doc = json.loads(r.stdout)
    assert doc["actions"] == []
    assert {"file": old, "reason": "the link points at it"} in doc["kept"]
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "prune", "--retention", 5, "--json")
    assert json.loads(r.stdout)["actions"] == [] and (data_dir / old).exists()


def test_strangers_and_symlinks_out_of_the_directory_are_left_alone(data_dir, tmp_path, run):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.jsonl").write_text("do not touch\n")
    os.symlink(outside / "victim.jsonl", data_dir / file_name(day(40)))
    os.symlink(outside / "victim.jsonl", data_dir / file_name(day(5)))
    (data_dir / "metrics-2026-02-30.jsonl").write_text("not a date\n")
    (data_dir / "notes.txt").write_text("mine\n")
    before = snapshot(data_dir)
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once")
    assert r.exit_code == 0
    after = snapshot(data_dir)
    for name in before:
        assert after[name] == before[name]
    assert (outside / "victim.jsonl").read_text() == "do not touch\n"
    assert "left alone" in r.stderr and "notes.txt" in r.stderr


def test_dry_run_changes_nothing(data_dir, run):
    for age in (0, 4, 5, 31):
        make(data_dir, age)
    (data_dir / (file_name(day(5)) + ".gz.tmp")).write_bytes(b"partial")
    (data_dir / "metrics.jsonl").write_text("legacy\n")
    before = snapshot(data_dir)
    mtimes = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once", "--dry-run", "--max-mb", "0.00001", "--json")
    assert r.exit_code == 0
    assert snapshot(data_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == mtimes
    kinds = {(a["kind"], a["status"]) for a in json.loads(r.stdout)["actions"]}
    assert {("adopt", "planned"), ("gzip", "planned"), ("delete", "planned"), ("remove-temp", "planned")} <= kinds


def test_plans_are_pure_functions_of_names(data_dir):
    make(data_dir, 3)
    make(data_dir, 30, gz=True)
    listing = Store(data_dir, ZoneInfo("UTC")).scan()
    gz, _ = plan_gzip(listing, TODAY, 3, link_target=None)
    pr, _ = plan_prune(listing, TODAY, 30, link_target=None)
    assert [a.file for a in gz] == [file_name(day(3))]
    assert [a.file for a in pr] == [file_name(day(30)) + ".gz"]


def test_a_full_pass_does_not_compress_what_it_is_about_to_delete(data_dir):
    make(data_dir, 35)
    now = time.mktime(TODAY.timetuple()) + 43200
    result = run_pass(Store(data_dir, ZoneInfo("UTC")), now=now, gzip_after=3, retention=30)
    assert [(a.step, a.kind) for a in result.actions if a.step != "rotate"] == [("prune", "delete")]


def test_gzip_keeps_mode_mtime_and_every_line(data_dir, run):
    name, lines = make(data_dir, 5, lines=2000)
    os.chmod(data_dir / name, 0o640)
    os.utime(data_dir / name, (1_700_000_000, 1_700_000_000))
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--level", 9)
    assert r.exit_code == 0
    gz = data_dir / (name + ".gz")
    assert stat.S_IMODE(gz.stat().st_mode) == 0o640
    assert gz.stat().st_mtime == 1_700_000_000
    assert gzip.decompress(gz.read_bytes()).decode().splitlines() == lines
    assert subprocess.run(["gzip", "-t", str(gz)]).returncode == 0


def test_multi_file_pass_uses_the_threaded_writer_on_large_files(data_dir):
    name, lines = make(data_dir, 5, lines=200_000)  # ~10 MB: well above the threaded-writer threshold
    assert (data_dir / name).stat().st_size > 8 << 20
    now = time.mktime(TODAY.timetuple()) + 43200
    result = run_pass(Store(data_dir, ZoneInfo("UTC")), now=now, steps=("gzip",), threads=2)
    assert result.ok
    assert all_lines(data_dir) == lines
    assert subprocess.run(["gzip", "-t", str(data_dir / (name + ".gz"))]).returncode == 0


def test_leftover_temp_is_removed_and_the_work_redone(data_dir, run):
    name, lines = make(data_dir, 5)
    (data_dir / (name + ".gz.tmp")).write_bytes(b"\x1f\x8b half an archive")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--json")
    assert [a["kind"] for a in json.loads(r.stdout)["actions"]] == ["remove-temp", "gzip"]
    assert sorted(os.listdir(data_dir)) == [CHANGES_NAME, LOCK_NAME, name + ".gz"]
    assert all_lines(data_dir) == lines


@pytest.mark.parametrize("case", ["complete", "source-grew", "fresh-source", "merged"])
def test_both_plain_and_archive_are_reconciled_without_loss_or_duplication(data_dir, run, case):
    name = file_name(day(5))
    old = [f'{{"n":{i}}}' for i in range(50)]
    new = [f'{{"late":{i}}}' for i in range(3)]
    archive, source = {
        "complete": (old, old),  # killed between rename and unlink
        "source-grew": (old, old + new),  # a writer appended after the archive was made
        "fresh-source": (old, new),  # a late writer recreated the plain file
        "merged": (old + new, new),  # a killed reconcile of the case above
    }[case]
    (data_dir / (name + ".gz")).write_bytes(gzip.compress("".join(x + "\n" for x in archive).encode()))
    (data_dir / name).write_text("".join(x + "\n" for x in source))
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--json")
    assert r.exit_code == 0, r.output
    assert [a["kind"] for a in json.loads(r.stdout)["actions"]] == ["reconcile"]
    assert sorted(os.listdir(data_dir)) == [CHANGES_NAME, LOCK_NAME, name + ".gz"]
    expected = old if case == "complete" else old + new
    assert all_lines(data_dir) == expected
    assert subprocess.run(["gzip", "-t", str(data_dir / (name + ".gz"))]).returncode == 0


def test_unreadable_archive_is_set_aside_then_deleted_with_its_day(data_dir, run):
    name, lines = make(data_dir, 5)
    aside = "." + name + ".gz.corrupt"  # outside the reading glob metrics-*.jsonl*
    (data_dir / (name + ".gz")).write_bytes(gzip.compress(b"partial\n")[:-6])
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--json")
    assert r.exit_code == 0
    assert (data_dir / aside).exists()
    assert all_lines(data_dir) == lines
    with freeze_time("2026-07-09 12:00:00"):  # 29 days old: kept, and said so
        r = run("--data-dir", data_dir, "prune", "--retention", 30, "-v")
    assert r.exit_code == 0 and (data_dir / aside).exists()
    assert f"kept {aside}: an unreadable archive set aside" in r.stderr
    with freeze_time("2026-07-10 12:00:00"):  # 30 days old: retention covers it like any file of its day
        r = run("--data-dir", data_dir, "prune", "--retention", 30, "--json")
    assert r.exit_code == 0
    assert sorted(a["file"] for a in json.loads(r.stdout)["actions"]) == sorted([name + ".gz", aside])
    assert not (data_dir / aside).exists()


def hold_lock(path) -> subprocess.Popen:
    """Another process holding an exclusive flock on ``path`` (kill it to release), once it says so."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_contention_exits_3_naming_the_lock(data_dir, run):
    holder = hold_lock(data_dir / LOCK_NAME)
    try:
        make(data_dir, 5)
        before = snapshot(data_dir)
        r = run("--data-dir", data_dir, "gzip", "--lock-timeout", "0.3")
        assert r.exit_code == 3
        assert r.stderr == (f"metrics-ops: another maintenance pass holds {data_dir / LOCK_NAME} "
                            "(waited 0.3 s; see --lock-timeout)\n")
        assert snapshot(data_dir) == before
    finally:
        holder.kill()
        holder.wait()
    r = run("--data-dir", data_dir, "gzip", "--lock-timeout", "5", "-q")
    assert r.exit_code == 0


def test_a_busy_link_lock_fails_the_link_action_and_the_pass_goes_on(data_dir):
    """Another process swapping the link (holding its lock) used to abort the whole pass with the maintenance
    lock's wording; now the link action fails, naming the link lock, and the other steps still run."""
    from metrics_ops.store import LINK_LOCK_NAME

    yesterday, _ = make(data_dir, 1)
    old, _ = make(data_dir, 5)
    os.symlink(yesterday, data_dir / "metrics.jsonl")
    holder = hold_lock(data_dir / LINK_LOCK_NAME)
    try:
        store = Store(data_dir, ZoneInfo("UTC"), link_lock_timeout=0.3)
        noon = datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC).timestamp()
        result = run_pass(store, now=noon, steps=("rotate", "gzip"))
    finally:
        holder.kill()
        holder.wait()
    link = [a for a in result.actions if a.kind == "link"]
    assert [(a.status, a.error) for a in link] == [
        ("failed", f"{data_dir / LINK_LOCK_NAME} is locked by another process (waited 0.3 s)")]
    assert not result.ok
    assert os.readlink(data_dir / "metrics.jsonl") == yesterday  # left as it was
    assert (data_dir / file_name(TODAY)).exists()  # the rotate step's other action ran ...
    assert (data_dir / (old + ".gz")).exists() and not (data_dir / old).exists()  # ... and so did gzip


def test_gzip_and_prune_refuse_a_missing_directory(tmp_path, run):
    r = run("--data-dir", tmp_path / "missing", "gzip")
    assert r.exit_code == 1
    assert r.stderr == (f"metrics-ops: data directory {tmp_path / 'missing'} does not exist (--data-dir "
                        f"{tmp_path / 'missing'} (from the command line)); rotate --create makes it\n")


def test_a_failed_action_exits_1_with_one_line_and_the_pass_goes_on(data_dir, run):
    bad, _ = make(data_dir, 5)
    good, good_lines = make(data_dir, 6)
    (data_dir / ("." + bad + ".gz.tmp")).mkdir()  # a directory where the temp file must go: that gzip fails
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert not doc["ok"]
    assert (data_dir / (good + ".gz")).exists() and (data_dir / bad).exists()
    assert len([line for line in r.stderr.splitlines() if bad in line]) >= 1
    assert "Traceback" not in r.output


def test_plain_output_when_piped_and_quiet_prints_nothing(data_dir, run):
    make(data_dir, 5)
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "gzip")
    header, first = r.stdout.splitlines()[:2]
    assert header.split("\t") == ["step", "action", "file", "before", "after", "status", "detail"]
    assert first.split("\t")[:3] == ["gzip", "gzip", file_name(day(5))]
    make(data_dir, 6)
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "-q", "gzip")
    assert r.output == "" and r.exit_code == 0


@pytest.mark.parametrize("utc_instant, berlin_day", [
    ("2026-03-28 22:59:59", "2026-03-28"),  # 23:59:59 CET
    ("2026-03-28 23:00:00", "2026-03-29"),  # 00:00:00 CET, the 23-hour day begins
    ("2026-03-29 21:59:59", "2026-03-29"),  # 23:59:59 CEST
    ("2026-03-29 22:00:00", "2026-03-30"),
    ("2026-10-24 21:59:59", "2026-10-24"),  # 23:59:59 CEST
    ("2026-10-24 22:00:00", "2026-10-25"),  # the 25-hour day begins
    ("2026-10-25 22:59:59", "2026-10-25"),  # 23:59:59 CET
    ("2026-10-25 23:00:00", "2026-10-26"),
])
def test_rotate_follows_the_local_day_across_dst_changes(data_dir, run, utc_instant, berlin_day):
    with freeze_time(utc_instant):
        r = run("--data-dir", data_dir, "rotate", "--once", "--tz", "Europe/Berlin", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["day"] == berlin_day
    assert os.readlink(data_dir / "metrics.jsonl") == f"metrics-{berlin_day}.jsonl"


def test_dry_run_of_rotate_on_a_missing_directory_plans_it_and_creates_nothing(tmp_path, run):
    target = tmp_path / "new" / "data"
    r = run("--data-dir", target, "rotate", "--once", "--create", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert [(a["kind"], a["status"]) for a in json.loads(r.stdout)["actions"]] == [
        ("mkdir", "planned"), ("create", "planned"), ("link", "planned")]
    assert not (tmp_path / "new").exists()


def test_a_pass_never_deletes_what_it_adopted(data_dir, run):
    legacy = data_dir / "metrics.jsonl"
    legacy.write_text('{"legacy":1}\n')
    os.utime(legacy, (0, 0))  # a bogus mtime: 1970
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "rotate", "--once", "--json", "-v")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [a["adopted"] for a in doc["actions"] if a["kind"] == "adopt"] == ["metrics-1970-01-01.jsonl"]
    assert not [a for a in doc["actions"] if a["kind"] in ("delete", "gzip")]
    assert {"file": "metrics-1970-01-01.jsonl", "reason": "adopted in this pass"} in doc["kept"]
    assert (data_dir / "metrics-1970-01-01.jsonl").read_text() == '{"legacy":1}\n'


def test_future_dated_files_are_reported_not_silently_kept(data_dir, run):
    (data_dir / "metrics-2099-01-01.jsonl").write_text("x\n")
    with freeze_time(NOON):
        r = run("--data-dir", data_dir, "prune", "--json")
    assert r.exit_code == 0
    kept = {k["file"]: k["reason"] for k in json.loads(r.stdout)["kept"]}
    assert kept["metrics-2099-01-01.jsonl"].startswith("dated 26498 days in the future")


@pytest.mark.parametrize("args, line", [
    (("gzip",), "gzip for {day}: nothing to compress"),
    (("prune",), "prune for {day}: nothing to delete"),
    (("forget", "nobody"), "forget for {day}: no file holds events of these visitors"),
    (("gzip", "--dry-run"), "plan (dry run) of gzip for {day}: nothing to compress"),
])
def test_each_command_speaks_of_itself_when_there_is_nothing_to_do(run, data_dir, args, line):
    from datetime import datetime

    r = run("--data-dir", data_dir, *args)
    assert r.exit_code == 0, r.stderr
    assert r.stderr == line.format(day=datetime.now(UTC).date().isoformat()) + "\n"
