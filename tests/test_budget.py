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
    assert "data files 0.0 MiB over max_total_mb 0.0 MiB" in p.why and p.shortfall is None


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
    assert "free space 0.0 MiB under min_free 0.2 MiB" in p.why
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
    assert "free space" in done[0]["detail"] and "under min_free 6.5 MiB" in done[0]["detail"]
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
