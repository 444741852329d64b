"""forget: a visitor's lines leave every file, archives included; nothing else changes; the current file waits."""

import gzip
import json
import os
import subprocess
from datetime import date, timedelta

import pytest
from freezegun import freeze_time

from metrics_ops.store import LOCK_NAME, file_name

from .helpers import all_lines, data_file

TODAY = date(2026, 6, 15)


@pytest.fixture
def files(data_dir):
    old = file_name(TODAY - timedelta(days=10)) + ".gz"
    mid = file_name(TODAY - timedelta(days=2), 1)
    cur = file_name(TODAY)
    data_file(data_dir / old, [{"visitor_id": "v1", "event": "a"}, {"visitor_id": "keep", "event": "v1"},
                           {"visitor_id": "v12", "event": "b"}], gz=True)
    data_file(data_dir / mid, [{"visitor_id": "v1", "event": "c"}, {"visitor_id": "v2", "event": "d"},
                           {"visitor_id": "v1", "event": "e", "metadata": {"q": 1}}])
    data_file(data_dir / cur, [{"visitor_id": "v1", "event": "f"}, {"visitor_id": "x", "event": "g"}])
    os.utime(data_dir / mid, (1_700_000_000, 1_700_000_000))
    os.chmod(data_dir / mid, 0o640)
    (data_dir / "notes.txt").write_text('{"visitor_id":"v1"}\n')
    return old, mid, cur


def visitors(data_dir):
    return sorted(json.loads(line)["visitor_id"] for line in all_lines(data_dir))


def test_forget_removes_exactly_the_visitor_from_every_file(data_dir, files, run):
    old, mid, cur = files
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert {a["file"]: a["status"] for a in doc["actions"]} == {old: "done", mid: "done", cur: "done"}
    assert visitors(data_dir) == ["keep", "v12", "v2", "x"]  # the current file too: serve reopens it
    assert "v1" not in [json.loads(x)["visitor_id"] for x in gzip.decompress((data_dir / old).read_bytes())
                        .decode().splitlines()]
    assert (data_dir / mid).stat().st_mtime == 1_700_000_000 and oct((data_dir / mid).stat().st_mode)[-3:] == "640"
    assert subprocess.run(["gzip", "-t", str(data_dir / old)]).returncode == 0
    assert (data_dir / "notes.txt").read_text() == '{"visitor_id":"v1"}\n'  # strangers are never touched


def test_include_current_is_accepted_and_changes_nothing_of_the_contract(data_dir, files, run):
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "v2", "--include-current")
    assert r.exit_code == 0, r.output
    assert visitors(data_dir) == ["keep", "v12", "x"]


def test_a_prefix_removes_one_test_run(data_dir, run):
    data_file(data_dir / file_name(TODAY), [{"visitor_id": "probe-7f3a09-0001", "event": "ratelimit_probe"},
                                        {"visitor_id": "probe-7f3a09-0002", "event": "ratelimit_probe"},
                                        {"visitor_id": "probe-8b0000-0001", "event": "ratelimit_probe"},
                                        {"visitor_id": "real", "event": "probe-7f3a09-0003"}])
    r = run("--data-dir", data_dir, "forget", "--prefix", "probe-7f3a09-")
    assert r.exit_code == 0, r.output
    assert visitors(data_dir) == ["probe-8b0000-0001", "real"]
    r = run("--data-dir", data_dir, "forget", "--prefix", "p")
    assert r.exit_code == 2 and "--prefix 'p'" in r.stderr
    r = run("--data-dir", data_dir, "forget")
    assert r.exit_code == 2 and "at least one VISITOR_ID or --prefix" in r.stderr


def test_future_dated_files_are_covered_and_do_not_fail_forget(data_dir, run):
    data_file(data_dir / "metrics-2099-01-01.jsonl", [{"visitor_id": "v1", "event": "a"}, {"visitor_id": "k"}])
    r = run("--data-dir", data_dir, "forget", "v1", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True
    assert visitors(data_dir) == ["k"]


def test_a_damaged_archive_is_named_every_other_file_is_cleaned_and_json_agrees(data_dir, files, run):
    old, mid, cur = files
    broken = file_name(TODAY - timedelta(days=5)) + ".gz"
    whole = gzip.compress(b"".join(b'{"visitor_id":"v%d","event":"e"}\n' % (i % 3) for i in range(4000)))
    (data_dir / broken).write_bytes(whole[: len(whole) // 2])  # truncated: a disk or copy accident
    aside = file_name(TODAY - timedelta(days=6)) + ".gz.corrupt"
    (data_dir / aside).write_bytes(gzip.compress(b'{"visitor_id":"v1","event":"x"}\n')[:-12])
    before = {n: (data_dir / n).read_bytes() for n in (broken, aside)}
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    assert {a["file"] for a in doc["actions"] if a["status"] == "done"} == {old, mid, cur}
    errors = [line for line in r.stderr.splitlines() if line.startswith("metrics-ops: ")]
    assert len(errors) == 2, r.stderr
    assert any(line.startswith(f"metrics-ops: {broken}: unreadable after ") and "line(s) of these visitors" in line
               for line in errors)
    assert any(line.startswith(f"metrics-ops: {aside}: ") for line in errors)
    assert {n: (data_dir / n).read_bytes() for n in (broken, aside)} == before  # never rewritten
    for n in (broken, aside):
        os.unlink(data_dir / n)
    assert visitors(data_dir) == ["keep", "v12", "v2", "x"]


def test_dry_run_changes_nothing(data_dir, files, run):
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "--dry-run")
    assert r.exit_code == 0
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before


def test_a_killed_forget_leaves_the_file_whole_and_its_temp_is_removed(data_dir, files, run):
    _old, mid, _cur = files
    (data_dir / (mid + ".forget.tmp")).write_bytes(b'{"visitor_id":"v2"')  # killed while writing the copy
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "--json")
    kinds = [(a["kind"], a["file"]) for a in json.loads(r.stdout)["actions"]]
    assert ("remove-temp", mid + ".forget.tmp") in kinds
    assert not (data_dir / (mid + ".forget.tmp")).exists()
    assert sorted(n for n in os.listdir(data_dir) if n.endswith(".tmp")) == []


def test_bad_visitor_id_is_a_usage_error(data_dir, run):
    r = run("--data-dir", data_dir, "forget", "not an id")
    assert r.exit_code == 2 and "not a visitor id" in r.stderr
    assert os.listdir(data_dir) == []


def test_forget_waits_for_the_maintenance_lock(data_dir, files, run):
    import fcntl

    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = run("--data-dir", data_dir, "forget", "v1", "--lock-timeout", "0.2")
    finally:
        os.close(fd)
    assert r.exit_code == 3


def test_a_pair_left_by_a_killed_gzip_is_reconciled_before_it_is_filtered(data_dir, run):
    """gzip killed between its rename and its unlink leaves X.jsonl and X.jsonl.gz with the same lines. Filtering
    the two apart made the next gzip pass append the plain file to the archive whole: every line twice."""
    name = file_name(TODAY - timedelta(days=5))
    rows = [{"visitor_id": "victim" if i == 7 else f"v{i}", "event": "e", "metadata": {"i": i}} for i in range(50)]
    data_file(data_dir / name, rows)
    data_file(data_dir / (name + ".gz"), rows, gz=True)
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "victim", "--json")
        assert r.exit_code == 0, r.output
        assert [(a["kind"], a["file"]) for a in json.loads(r.stdout)["actions"]] == [
            ("reconcile", name), ("rewrite", name + ".gz")]
        assert run("--data-dir", data_dir, "gzip", "--gzip-after", "1").exit_code == 0
    assert sorted(os.listdir(data_dir)) == [".metrics-ops.changes", ".metrics-ops.lock", name + ".gz"]
    found = visitors(data_dir)
    assert len(found) == 49 and "victim" not in found  # each line once, the visitor gone
