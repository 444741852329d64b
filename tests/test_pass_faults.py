"""One day's trouble never stops the rotator (issue 18 item 2), and its loop speaks only when something happens
(issue 19 item 10).

A pass is a list of independent steps; an action that fails for one day (or a step that cannot even plan) is one
line naming the step, the file (and so the day) and why; every other action of every step still runs, the pass
exits 1 and writes its status file, and the ``--interval`` loop goes on.
"""

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from metrics_ops import rollups
from metrics_ops.health import read_status
from metrics_ops.store import file_name

from .helpers import CLI, data_file
from .serve_process import LIBFAKETIME, shifted_clock

wait = threading.Event().wait


def until(condition, timeout: float = 60, what: str = "") -> None:
    """Wait for ``condition()`` (polled), failing after ``timeout`` s: tests wait for states, not for times."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        wait(0.05)


def hostile(day: date) -> dict:
    """A stored line whose weight cannot be computed on 7aa4faa: 1 / (5e-324 x 0.5) divides by zero."""
    return {"visitor_id": "h", "event": "page_view", "client_rate": 5e-324, "server_rate": 0.5,
            "received_at": f"{day.isoformat()}T10:00:00Z", "stored": 1}


def normal(day: date, n: int = 3) -> list[dict]:
    return [{"visitor_id": f"v{i}", "event": "page_view", "client_rate": 1.0, "server_rate": 1.0,
             "received_at": f"{day.isoformat()}T09:00:00Z"} for i in range(n)]


@pytest.mark.slow
@pytest.mark.skipif(LIBFAKETIME is None, reason="needs libfaketime (apt-get install faketime; .ci/run installs it)")
def test_a_hostile_line_never_stops_the_interval_loop_under_a_later_clock(tmp_path):
    """rotate --interval 1 as a real process whose clock runs 10 days ahead: the day with the hostile line (and
    a day whose rollup cannot be written, whatever the readers make of lines) fails alone; the other days are
    rolled up, compressed and pruned, every pass is recorded, and the loop keeps running until SIGTERM."""
    data = tmp_path / "data"
    data.mkdir()
    offset = 10 * 86400
    today = datetime.fromtimestamp(time.time() + offset, UTC).date()  # the rotator's today
    bad, blocked, fine, old = (today - timedelta(days=n) for n in (5, 6, 7, 40))
    data_file(data / file_name(bad), [*normal(bad), hostile(bad)])
    for d in (blocked, fine, old):
        data_file(data / file_name(d), normal(d))
    (data / rollups.ROLLUP_DIR).mkdir()
    (data / rollups.ROLLUP_DIR / (rollups.rollup_name(blocked) + ".tmp")).mkdir()  # the rollup's temp: no way
    env = {**os.environ, **shifted_clock(offset), "METRICS_DIR": str(data), "METRICS_TZ": "UTC"}
    proc = subprocess.Popen([*CLI, "rotate", "--interval", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    status_file = data / ".metrics-ops.status"
    try:
        until(lambda: (data / (file_name(fine) + ".gz")).exists() and not (data / file_name(old)).exists()
              and status_file.exists() or proc.poll() is not None, what="the first pass")
        assert proc.poll() is None, proc.communicate()
        first = read_status(status_file)
        until(lambda: read_status(status_file).time > first.time or proc.poll() is not None, what="a second pass")
        assert proc.poll() is None, proc.communicate()  # the loop goes on after a pass that failed in part
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    names = set(os.listdir(data))
    for d in (bad, blocked, fine):  # compressing a day never needed its rollup
        assert file_name(d) + ".gz" in names and file_name(d) not in names
    assert file_name(old) not in names  # pruned
    assert (data / rollups.ROLLUP_DIR / rollups.rollup_name(fine)).is_file()
    assert not (data / rollups.ROLLUP_DIR / rollups.rollup_name(blocked)).exists()
    # stderr: the loop's first line, then one line per failed action: the blocked day's rollup, and the hostile
    # day's while the readers cannot weigh its line (a damaged line, counted, once they can)
    logged = err.splitlines()[1:]
    allowed = tuple(f"metrics-ops: rollup rollup {rollups.rollup_name(d)}: " for d in (bad, blocked))
    assert logged and all(line.startswith(allowed) for line in logged), err
    assert any(line.startswith(allowed[1]) for line in logged)
    hostile_failed = any(line.startswith(allowed[0]) for line in logged)
    assert hostile_failed != (data / rollups.ROLLUP_DIR / rollups.rollup_name(bad)).exists()
    status = read_status(status_file)
    assert status.result == "failed" and status.message.startswith("rollup rollup rollup-")


def test_an_unforeseen_error_in_one_days_rollup_fails_that_action_alone(data_dir, run, monkeypatch):
    """Whatever a step raises for one day (here the day's rollup raises a ValueError no reader foresaw) is one
    failed action in one line with its type and place; the other days are rolled up, compressed and pruned."""
    today = date.today()
    bad, fine, old = (today - timedelta(days=n) for n in (5, 6, 40))
    for d in (bad, fine, old):
        data_file(data_dir / file_name(d), normal(d))
    real_write = rollups.write

    def write(directory, name, zone, *args, **kw):
        if name == rollups.rollup_name(bad):
            raise ValueError("a value no reader foresaw")
        return real_write(directory, name, zone, *args, **kw)

    monkeypatch.setattr(rollups, "write", write)
    r = run("--data-dir", data_dir, "rotate", "--once", "--json")
    assert r.exit_code == 1
    [line] = r.stderr.splitlines()
    assert line.startswith(f"metrics-ops: rollup rollup {rollups.rollup_name(bad)}: unexpected ValueError at "
                           "test_pass_faults.py:") and line.endswith(": a value no reader foresaw"), line
    doc = json.loads(r.stdout)
    assert not doc["ok"]
    assert {(a["file"], a["status"]) for a in doc["actions"] if a["step"] in ("gzip", "prune")} == {
        (file_name(bad), "done"), (file_name(fine), "done"), (file_name(old), "done")}
    assert (data_dir / rollups.ROLLUP_DIR / rollups.rollup_name(fine)).is_file()
    status = read_status(data_dir / ".metrics-ops.status")
    assert status.result == "failed" and status.errors == 1


def test_a_step_that_cannot_plan_is_one_line_and_the_other_steps_run(data_dir, run):
    """DIR/rollups is a file: the rollup step cannot even list its directory. gzip, prune and the budget still
    run; exit 1 names the step; the status file records the failed pass."""
    today = date.today()
    young, old = today - timedelta(days=5), today - timedelta(days=40)
    data_file(data_dir / file_name(young), normal(young))
    data_file(data_dir / file_name(old), normal(old))
    (data_dir / rollups.ROLLUP_DIR).write_text("not a directory\n")
    r = run("--data-dir", data_dir, "rotate", "--once", "--max-total-mb", "1")
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert len([line for line in lines if line.startswith("metrics-ops: rollup")]) == 1, r.stderr
    assert "Traceback" not in r.output
    assert (data_dir / (file_name(young) + ".gz")).exists() and not (data_dir / file_name(old)).exists()
    assert (data_dir / rollups.ROLLUP_DIR).read_text() == "not a directory\n"  # never replaced
    status = read_status(data_dir / ".metrics-ops.status")
    assert status.result == "failed" and status.message.startswith("rollup")


@pytest.mark.slow
def test_the_interval_loop_is_silent_until_something_changes_or_fails(data_dir):
    """Like logrotate under cron: passes with nothing to do print nothing; a pass that compresses logs it; a
    failed action is logged; -v shows every pass."""
    env = {**os.environ, "METRICS_DIR": str(data_dir)}
    status_file = data_dir / ".metrics-ops.status"

    def passes_seen(proc, n: int) -> None:
        """Wait until the loop has recorded ``n`` more passes (each pass rewrites the status file)."""
        seen = {read_status(status_file).time} if status_file.exists() else set()
        goal = len(seen) + n
        until(lambda: proc.poll() is not None or (status_file.exists() and seen.add(read_status(status_file).time)
                                                  is None and len(seen) >= goal), what=f"{n} passes")
        assert proc.poll() is None, proc.communicate()

    proc = subprocess.Popen([*CLI, "rotate", "--interval", "0.2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        passes_seen(proc, 5)  # the first makes today's file and the link; then nothing to do
        old = date.today() - timedelta(days=5)
        data_file(data_dir / file_name(old), normal(old))
        until(lambda: (data_dir / (file_name(old) + ".gz")).exists() or proc.poll() is not None, what="gzip")
        stuck = date.today() - timedelta(days=6)
        data_file(data_dir / file_name(stuck), normal(stuck))
        (data_dir / ("." + file_name(stuck) + ".gz.tmp")).mkdir()  # its compression fails on every pass
        passes_seen(proc, 4)  # the first may have listed the directory before the file came
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "nothing to do" not in out + err
    rows = [line.split("\t") for line in out.splitlines() if not line.startswith("step\t")]
    assert [r[1] for r in rows if r[2].startswith(file_name(old))][:2] == ["gzip"]  # the change is logged
    assert rows[0][:2] == ["rotate", "create"]
    err_lines = err.splitlines()
    assert err_lines[0].startswith(f"metrics-ops: rotating {data_dir} every 0.2 s")
    stuck_lines = [line for line in err_lines[1:] if file_name(stuck) + ":" in line]
    stranger = f"metrics-ops: left alone (names outside the file grammar): .{file_name(stuck)}.gz.tmp"
    assert err_lines.count(stranger) == 1  # said when it appears, not on every pass
    assert len(stuck_lines) >= 3 and len(err_lines) == 2 + len(stuck_lines), err  # each failure, nothing else
    assert all(line.startswith(f"metrics-ops: gzip gzip {file_name(stuck)}: ") for line in stuck_lines)

    verbose = subprocess.Popen([*CLI, "rotate", "--interval", "0.2", "-v"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        (data_dir / ("." + file_name(stuck) + ".gz.tmp")).rmdir()
        passes_seen(verbose, 4)
    finally:
        verbose.send_signal(signal.SIGTERM)
        out, err = verbose.communicate(timeout=60)
    assert verbose.returncode == 0, err
    assert len([line for line in err.splitlines() if line.endswith(": nothing to do")]) >= 2, err
