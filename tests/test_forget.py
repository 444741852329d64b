"""forget: a visitor's lines leave every file, archives included; nothing else changes; the current file waits."""

import gzip
import json
import os
import subprocess
from datetime import date, timedelta

import pytest
from conftest import all_lines
from freezegun import freeze_time

from metrics_ops.store import LOCK_NAME, file_name

TODAY = date(2026, 6, 15)


def write(path, rows, gz=False):
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture
def files(data_dir):
    old = file_name(TODAY - timedelta(days=10)) + ".gz"
    mid = file_name(TODAY - timedelta(days=2), 1)
    cur = file_name(TODAY)
    write(data_dir / old, [{"visitor_id": "v1", "event": "a"}, {"visitor_id": "keep", "event": "v1"},
                           {"visitor_id": "v12", "event": "b"}], gz=True)
    write(data_dir / mid, [{"visitor_id": "v1", "event": "c"}, {"visitor_id": "v2", "event": "d"},
                           {"visitor_id": "v1", "event": "e", "metadata": {"q": 1}}])
    write(data_dir / cur, [{"visitor_id": "v1", "event": "f"}, {"visitor_id": "x", "event": "g"}])
    os.utime(data_dir / mid, (1_700_000_000, 1_700_000_000))
    os.chmod(data_dir / mid, 0o640)
    (data_dir / "notes.txt").write_text('{"visitor_id":"v1"}\n')
    return old, mid, cur


def visitors(data_dir):
    return sorted(json.loads(line)["visitor_id"] for line in all_lines(data_dir))


def test_forget_removes_exactly_the_visitor_from_past_files(data_dir, files, run):
    old, mid, cur = files
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "--json")
    assert r.exit_code == 1  # the current file still holds a line: the request is not complete yet
    assert f"metrics-ops: {cur}: 1 line(s) left" in r.stderr
    doc = json.loads(r.stdout)
    assert {a["file"]: a["status"] for a in doc["actions"]} == {old: "done", mid: "done", cur: "skipped"}
    assert visitors(data_dir) == ["keep", "v1", "v12", "v2", "x"]  # the one v1 left is in today's file
    assert "v1" not in [json.loads(x)["visitor_id"] for x in gzip.decompress((data_dir / old).read_bytes())
                        .decode().splitlines()]
    assert (data_dir / mid).stat().st_mtime == 1_700_000_000 and oct((data_dir / mid).stat().st_mode)[-3:] == "640"
    assert subprocess.run(["gzip", "-t", str(data_dir / old)]).returncode == 0
    assert (data_dir / "notes.txt").read_text() == '{"visitor_id":"v1"}\n'  # strangers are never touched
    with freeze_time(f"{TODAY + timedelta(days=1)} 00:10:00"):  # after midnight the file is no longer current
        r = run("--data-dir", data_dir, "forget", "v1")
    assert r.exit_code == 0
    assert visitors(data_dir) == ["keep", "v12", "v2", "x"]


def test_include_current_rewrites_todays_file_too(data_dir, files, run):
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "v1", "v2", "--include-current")
    assert r.exit_code == 0, r.output
    assert visitors(data_dir) == ["keep", "v12", "x"]


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
