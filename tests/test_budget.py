"""The disk budget (issue 14): a ceiling on the data files and a floor of free space, kept by the pass."""

import json
import os
from datetime import date

from metrics_ops.budget import Budget, plan_budget
from metrics_ops.diskspace import MIB, DiskUsage, disk_usage
from metrics_ops.layout import scan
from metrics_ops.store import file_name

from .helpers import days_ago, write_lines

TODAY = date.today()


def make_day(directory, age: int, size: int, *, shard: int = 0, gz: bool = False) -> str:
    name = file_name(days_ago(age, TODAY), shard, gz)
    (directory / name).write_bytes(os.urandom(size))  # random: tmpfs stores every byte
    return name


def plan(directory, budget, usage=None, **kw):
    kw.setdefault("keep", {})
    return plan_budget(directory, scan(directory, directory / "metrics.jsonl"), budget,
                       usage=usage or disk_usage, **kw)


def test_oldest_day_first_archives_before_plain_files_of_the_same_day(data_dir):
    names = [make_day(data_dir, 5, 1000), make_day(data_dir, 5, 1000, gz=True),
             make_day(data_dir, 5, 1000, shard=1, gz=True), make_day(data_dir, 9, 1000),
             make_day(data_dir, 2, 1000), make_day(data_dir, 2, 1000, shard=1)]
    p = plan(data_dir, Budget(max_total_mb=0.5 / 1024))  # 512 bytes: everything must go
    order = [c.name for c in p.deletions]
    assert order == [names[3], names[1], names[2], names[0], names[4], names[5]]
    assert p.why == "data files and rollups 5.9 KiB over max_total_mb 0.000488281 (512 bytes)" and p.shortfall is None


def test_only_as_much_as_needed_and_nothing_when_within_budget(data_dir):
    old = [make_day(data_dir, age, 100_000) for age in (10, 9, 8, 7)]
    assert plan(data_dir, Budget(max_total_mb=1)).deletions == []  # 400 kB < 1 MiB
    p = plan(data_dir, Budget(max_total_mb=0.25))  # 262,144 bytes: two files must go
    assert [c.name for c in p.deletions] == old[:2]


def test_free_space_floor_counts_the_blocks_a_deletion_gives_back(data_dir):
    old = [make_day(data_dir, age, 100 * 1024) for age in (4, 3, 2)]
    usage = DiskUsage(free=50 * 1024, total=10 * MIB)
    # the floor is 180 KiB (+ 64 KiB of headroom for the pass's own files): two files of 100 KiB + 50 KiB free
    p = plan(data_dir, Budget(min_free_mb=180 / 1024), usage=lambda d: usage)
    assert [c.name for c in p.deletions] == old[:2]
    assert p.why == "free space 50.0 KiB under min_free_mb 0.175781 (180.0 KiB)"
    p = plan(data_dir, Budget(min_free_percent=2.5), usage=lambda d: usage)  # 2.5 % of 10 MiB = 256 KiB
    assert [c.name for c in p.deletions] == old[:3] and p.shortfall is None


def test_never_the_link_target_todays_file_adopted_files_or_a_file_a_writer_holds(data_dir):
    kept = make_day(data_dir, 6, 1000)
    held = make_day(data_dir, 5, 1000)
    mine = make_day(data_dir, 4, 1000)
    free = make_day(data_dir, 3, 1000)
    fd = os.open(data_dir / held, os.O_WRONLY | os.O_APPEND)  # a writer: the kernel refuses a read lease
    try:
        from metrics_ops.layout import held_for_writing

        p = plan(data_dir, Budget(max_total_mb=1 / MIB), keep={kept: "the link points at it", mine: "adopted"},
                 in_use=lambda name: held_for_writing(data_dir, name))
    finally:
        os.close(fd)
    assert [c.name for c in p.deletions] == [free]
    reasons = dict(p.kept)
    assert reasons[kept] == "the link points at it; the disk budget never deletes it"
    assert "never deletes the file being written" in reasons[held]
    assert p.shortfall.startswith("disk budget not met after deleting every file it may delete")


def test_a_dry_run_counts_the_files_prune_will_delete_as_gone(data_dir):
    doomed = make_day(data_dir, 40, 300_000)
    young = make_day(data_dir, 3, 300_000)
    assert [c.name for c in plan(data_dir, Budget(max_total_mb=0.5)).deletions] == [doomed]
    p = plan(data_dir, Budget(max_total_mb=0.5), gone=frozenset({doomed}))
    assert p.deletions == [] and p.total == 300_000
    assert young


# ------------------------------------------------------------------------------------------ on a real tmpfs
def fill_days(directory, ages, size):
    return [make_day(directory, age, size, gz=age >= 3) for age in ages]  # nothing left for gzip


def test_rotate_keeps_free_space_on_a_real_tmpfs_oldest_first_and_says_so(small_tmpfs, run):
    mnt = small_tmpfs("16m")
    data = mnt / "data"
    data.mkdir()
    names = fill_days(data, range(12, 0, -1), 1024 * 1024)  # 12 MiB of data on 16 MiB
    before = disk_usage(data).free
    assert before < 4.5 * MIB
    plan_ = run("--data-dir", data, "rotate", "--once", "--dry-run", "--json", "--min-free-mb", 6.5)
    assert plan_.exit_code == 0, plan_.output
    planned = [a["file"] for a in json.loads(plan_.stdout)["actions"] if a["step"] == "budget"]
    assert planned == names[:3] and sorted(os.listdir(data)) == sorted(names)  # the plan changes nothing
    r = run("--data-dir", data, "rotate", "--once", "--json", "--min-free-mb", 6.5)
    assert r.exit_code == 6, r.output
    doc = json.loads(r.stdout)
    done = [a for a in doc["actions"] if a["step"] == "budget"]
    assert [a["file"] for a in done] == names[:3] and {a["status"] for a in done} == {"done"}
    assert "free space" in done[0]["detail"] and "under min_free_mb 6.5 (6.5 MiB)" in done[0]["detail"]
    assert disk_usage(data).free >= 6.5 * MIB
    assert all((data / n).exists() for n in names[3:])
    status = json.loads((data / ".metrics-ops.status").read_text())
    assert status["result"] == "budget" and status["budget_deleted"] == 3
    again = run("--data-dir", data, "rotate", "--once", "--min-free-mb", 6.5)
    assert again.exit_code == 0, again.output  # within the budget now: nothing deleted, a plain success


def test_a_budget_that_cannot_be_met_is_an_error_and_never_touches_todays_file(small_tmpfs, run):
    mnt = small_tmpfs("8m")
    data = mnt / "data"
    data.mkdir()
    old = make_day(data, 2, 1024 * 1024)
    today = data / file_name(TODAY)
    write_lines(today, "today", 20_000)  # ~0.9 MB
    r = run("--data-dir", data, "rotate", "--once", "--min-free-mb", 7.9)
    assert r.exit_code == 1, r.output
    assert "metrics-ops: disk budget not met after deleting every file it may delete" in r.stderr
    assert not (data / old).exists() and today.stat().st_size > 800_000
    status = json.loads((data / ".metrics-ops.status").read_text())
    assert status["result"] == "failed" and status["message"].startswith("disk budget not met")


def test_budget_settings_are_checked_like_every_other(data_dir, run):
    r = run("--data-dir", data_dir, "rotate", "--once", "--min-free-percent", 100)
    assert r.exit_code == 2
    assert r.stderr == "metrics-ops: --min-free-percent 100 (from the command line): input should be less than 100\n"
    r = run("--data-dir", data_dir, "rotate", "--once", env={"METRICS_MAX_TOTAL_MB": "-5"})
    assert r.exit_code == 2
    assert r.stderr == ("metrics-ops: METRICS_MAX_TOTAL_MB=-5 (from the environment): input should be greater "
                        "than 0\n")


# ------------------------------------------------------------------- today's files, rollups, readable sizes (issue 18)
def test_the_budget_never_deletes_any_of_todays_shards_and_says_so_in_readable_sizes(data_dir, run):
    """A 20 KiB budget, three 10 KiB shards of today and an old day: the old day (and then its rollup) goes;
    every shard of today stays, and the one line says how far off the budget is and why, in KiB."""
    old = make_day(data_dir, 5, 10 * 1024, gz=True)
    today = [make_day(data_dir, 0, 10 * 1024, shard=n) for n in (0, 1, 2)]
    r = run("--data-dir", data_dir, "rotate", "--once", "--json", "--max-total-mb", "0.02")
    assert r.exit_code == 1, r.output
    assert all((data_dir / name).stat().st_size == 10 * 1024 for name in today)
    assert not (data_dir / old).exists()
    doc = json.loads(r.stdout)
    budget = [(a["kind"], a["file"], a["status"]) for a in doc["actions"] if a["step"] == "budget"]
    rollup = f"rollup-{days_ago(5, TODAY).isoformat()}.json"
    assert budget == [("delete", old, "done"), ("drop-rollup", rollup, "done")]  # its counts after its lines
    assert r.stderr == ("metrics-ops: disk budget not met after deleting every file it may delete: data files and "
                        "rollups take 30.0 KiB, over max_total_mb 0.02 (20.5 KiB); left: today's files (30.0 KiB "
                        "in 3 files), which it never deletes\n")


def make_rollups(directory, ages, size: int) -> list[str]:
    (directory / "rollups").mkdir(exist_ok=True)
    names = [f"rollup-{days_ago(age, TODAY).isoformat()}.json" for age in ages]
    for name in names:
        (directory / "rollups" / name).write_bytes(b" " * size)
    return names


def test_the_budget_weighs_rollups_and_deletes_them_only_after_every_data_file_it_may(data_dir, run):
    raw = make_day(data_dir, 3, 8 * 1024, gz=True)
    rolls = make_rollups(data_dir, range(100, 80, -1), 1024)  # 20 KiB of rollups, the oldest first
    assert run("--data-dir", data_dir, "rotate", "--once", "-q", "--max-total-mb", "0.03").exit_code == 0
    assert (data_dir / raw).exists()  # 28 KiB: within 30 KiB
    r = run("--data-dir", data_dir, "rotate", "--once", "--json", "--max-total-mb", "0.0155")  # 15.9 KiB
    assert r.exit_code == 6, r.output
    deleted = [a["file"] for a in json.loads(r.stdout)["actions"] if a["step"] == "budget"]
    assert deleted == [raw, *rolls[:5]]  # the data files first, though the rollups are older; then oldest first
    rollup_of_raw = f"rollup-{days_ago(3, TODAY).isoformat()}.json"  # written by the pass, the newest
    assert sorted(os.listdir(data_dir / "rollups")) == sorted([*rolls[5:], rollup_of_raw])


def test_a_rollup_stays_while_its_days_data_files_do(data_dir):
    kept = make_day(data_dir, 5, 1000)
    rolls = make_rollups(data_dir, (50, 5), 1000)
    p = plan(data_dir, Budget(max_total_mb=1 / MIB), keep={kept: "the link points at it"}, today=TODAY)
    assert [c.name for c in p.deletions] == [rolls[0]]
    assert dict(p.kept)[rolls[1]] == ("its day's data files are still there; the disk budget deletes a rollup "
                                      "only after them")


def test_a_floor_above_the_file_system_deletes_nothing(data_dir):
    make_day(data_dir, 5, 1000)
    usage = DiskUsage(free=1 * MIB, total=8 * MIB)
    p = plan(data_dir, Budget(min_free_mb=9), usage=lambda d: usage)
    assert p.deletions == []
    assert p.shortfall == ("disk budget cannot be met: min_free_mb 9 (9.0 MiB) is more than the whole file system "
                           "(8.0 MiB); nothing deleted")


def test_a_symlinked_rollups_directory_is_neither_weighed_nor_deleted_from(data_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / f"rollup-{days_ago(50, TODAY).isoformat()}.json").write_bytes(b" " * 5000)
    (data_dir / "rollups").symlink_to(outside)
    p = plan(data_dir, Budget(max_total_mb=1 / MIB), today=TODAY)
    assert p.total == 0 and p.deletions == []
    assert len(os.listdir(outside)) == 1
