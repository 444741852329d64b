"""The rotator's own health (issue 14): the status file and textfile every pass writes, and `rotate --check`."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.health import PassStatus, check, next_status, read_status

from .helpers import CLI

UTC = ZoneInfo("UTC")
PROMTOOL = shutil.which("promtool")


def test_a_failed_pass_keeps_the_time_of_the_last_success():
    first = next_status(None, started=100.0, ended=101.5, result="ok", interval=300)
    assert first.last_success == 101.5 and first.duration == 1.5 and first.ok
    failed = next_status(first, started=400.0, ended=401.0, result="failed", interval=300,
                         errors=["gzip gzip metrics-2026-11-20.jsonl: No space left on device\nmore"])
    assert failed.last_success == 101.5 and not failed.ok and failed.errors == 1
    assert failed.message == "gzip gzip metrics-2026-11-20.jsonl: No space left on device"
    assert next_status(None, started=1, ended=2, result="failed", interval=300).last_success is None


def test_the_check_goes_red_after_two_intervals_without_a_success():
    ok = PassStatus(time=1000.0, result="ok", last_success=1000.0, duration=0.1, interval=300)
    assert check(ok, now=1600.0, interval=300, zone=UTC) == []
    [reason] = check(ok, now=1600.5, interval=300, zone=UTC)
    assert reason == ("the last successful pass was 600 s ago (1970-01-01T00:16:40+00:00), more than 2 x the "
                      "interval of 300 s")
    failing = PassStatus(time=1590.0, result="failed", last_success=1000.0, duration=0.1, interval=300, errors=1,
                         message="pass failed: [Errno 28] No space left on device")
    [reason] = check(failing, now=1700.0, interval=300, zone=ZoneInfo("Asia/Tokyo"))
    assert "(1970-01-01T09:16:40+09:00)" in reason and reason.endswith(
        "; the last pass (1970-01-01T09:26:30+09:00) failed: pass failed: [Errno 28] No space left on device")
    assert check(None, now=0, interval=300, zone=UTC) == [
        "no maintenance pass has recorded a status yet (is the rotator running?)"]


def test_every_pass_writes_the_status_line_and_the_textfile(data_dir, tmp_path, run):
    (data_dir / "metrics-2020-01-01.jsonl").write_text('{"visitor_id":"v","event":"e"}\n' * 100)
    (data_dir / "metrics-2020-01-02.jsonl").write_text('{"visitor_id":"v","event":"e"}\n' * 100)
    prom = tmp_path / "textfile" / "metrics_ops.prom"
    prom.parent.mkdir()
    r = run("--data-dir", data_dir, "rotate", "--once", "-q", "--retention", 4000, "--gzip-after", 3,
            env={"METRICS_HEALTH_TEXTFILE": str(prom), "METRICS_MIN_FREE_MB": "1"})
    assert r.exit_code == 0, r.output
    status = read_status(data_dir / ".metrics-ops.status")
    assert status.result == "ok" and status.last_success == status.time and status.interval == 300
    assert len((data_dir / ".metrics-ops.status").read_text().splitlines()) == 1
    text = prom.read_text()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert float(samples["metrics_ops_rotate_last_success_timestamp_seconds"]) == pytest.approx(status.time)
    assert samples['metrics_ops_rotate_files{state="archived"}'] == "2"
    assert samples['metrics_ops_rotate_files{state="plain"}'] == "1"  # today's, made by the pass
    assert samples['metrics_ops_rotate_files{state="pruned"}'] == "0"
    assert samples["metrics_ops_rotate_min_free_bytes"] == str(1024 * 1024)
    assert int(samples["metrics_ops_rotate_free_bytes"]) > 0
    assert [p.name for p in prom.parent.iterdir()] == ["metrics_ops.prom"]  # the temp file was renamed
    if PROMTOOL:
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    r = run("--data-dir", data_dir, "rotate", "--once", "--dry-run", env={"METRICS_HEALTH_TEXTFILE": str(prom)})
    assert read_status(data_dir / ".metrics-ops.status") == status  # a plan is not a pass


def test_check_reads_what_the_pass_wrote_and_says_why_in_one_line(data_dir, run):
    r = run("--data-dir", data_dir, "rotate", "--check")
    assert r.exit_code == 7
    assert r.stderr == "metrics-ops: no maintenance pass has recorded a status yet (is the rotator running?)\n"
    assert run("--data-dir", data_dir, "rotate", "--once", "-q").exit_code == 0
    r = run("--data-dir", data_dir, "rotate", "--check", env={"METRICS_TZ": "Asia/Tokyo"})
    assert r.exit_code == 0 and r.stdout.startswith("rotator healthy: last successful pass ") and "+09:00" in r.stdout
    (data_dir / ".metrics-ops.status").write_text("garbage\n")
    r = run("--data-dir", data_dir, "rotate", "--check", "--json")
    assert r.exit_code == 7 and json.loads(r.stdout)["reasons"] == [
        f"the status file {data_dir}/.metrics-ops.status does not hold a metrics-ops status line"]


def test_status_and_textfile_paths_may_not_name_data(data_dir, run):
    bad = data_dir / "metrics-2026-01-01.jsonl"
    r = run("--data-dir", data_dir, "rotate", "--once", env={"METRICS_STATUS_FILE": str(bad)})
    assert r.exit_code == 2
    assert r.stderr == (f"metrics-ops: METRICS_STATUS_FILE={bad} (from the environment): the status file cannot "
                        "be a data file or have a data file's name (metrics-...: passes would compress, remove or "
                        "delete it)\n")
    lock = data_dir / ".metrics-ops.lock"
    r = run("--data-dir", data_dir, "rotate", "--once", env={"METRICS_HEALTH_TEXTFILE": str(lock)})
    assert r.exit_code == 2
    assert "the health textfile cannot be one of the data directory's lock or counter files" in r.stderr


@pytest.mark.slow
def test_killing_the_rotator_turns_its_health_check_red(data_dir):
    """The compose healthcheck's command, against a real rotator loop that is then killed with SIGKILL."""
    env = {**os.environ, "METRICS_DIR": str(data_dir)}
    rotator = subprocess.Popen([*CLI, "rotate", "--interval", "0.5", "-q"], env=env, stderr=subprocess.PIPE)
    wait = threading.Event().wait

    def health() -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "rotate", "--check"], env=env, capture_output=True, text=True, timeout=30)

    try:
        deadline = time.monotonic() + 20
        while not (data_dir / ".metrics-ops.status").exists() and time.monotonic() < deadline:
            wait(0.1)
        assert health().returncode == 0
        first = read_status(data_dir / ".metrics-ops.status")
        wait(1.2)
        assert read_status(data_dir / ".metrics-ops.status").time > first.time  # the loop records every pass
        assert health().returncode == 0
    finally:
        rotator.send_signal(signal.SIGKILL)
        rotator.wait(10)
    wait(1.2)  # more than 2 x 0.5 s since the last pass
    r = health()
    assert r.returncode == 7, r.stdout + r.stderr
    assert "the last successful pass was" in r.stderr and "more than 2 x the interval of 0.5 s" in r.stderr


def test_a_failing_pass_is_recorded_and_keeps_the_last_success(data_dir, run):
    assert run("--data-dir", data_dir, "rotate", "--once", "-q").exit_code == 0
    good = read_status(data_dir / ".metrics-ops.status")
    (data_dir / "metrics.jsonl").unlink()
    (data_dir / "metrics.jsonl").mkdir()  # every pass now fails to point the link
    r = run("--data-dir", data_dir, "rotate", "--once", "-q")
    assert r.exit_code == 1
    failed = read_status(data_dir / ".metrics-ops.status")
    assert failed.result == "failed" and failed.last_success == good.last_success and failed.errors == 1
    assert failed.message.startswith("rotate link metrics.jsonl: ") and failed.time > good.time


def test_a_status_file_that_cannot_be_written_is_one_line_and_exit_1(data_dir, tmp_path, run):
    r = run("--data-dir", data_dir, "rotate", "--once", "-q",
            env={"METRICS_STATUS_FILE": str(tmp_path / "missing" / "status")})
    assert r.exit_code == 1
    assert r.stderr == (f"metrics-ops: the pass's health was not recorded: cannot write {tmp_path}/missing/status: "
                        "No such file or directory\n")
    assert len(r.stderr.splitlines()) == 1 and (data_dir / "metrics.jsonl").is_symlink()  # the pass itself ran


# Found by attacking the status surface: a status file nobody's pass wrote must not stop `status` or reach the
# terminal raw.
def test_a_status_file_nested_too_deep_is_no_status_line(tmp_path):
    path = tmp_path / "status"
    path.write_text("[" * 60_000 + "]" * 5_000)  # under the 64 KiB limit
    with pytest.raises(ValueError, match="does not hold a metrics-ops status line"):
        read_status(path)


def test_the_text_of_a_status_file_is_read_escaped(tmp_path):
    path = tmp_path / "status"
    path.write_text('{"time":1,"result":"\\udcff","last_success":null,"duration":0,"interval":1,'
                    '"message":"a\\u001b[31mred\\nfake","archive_oldest_waiting":"\\u202e"}')
    status = read_status(path)
    assert (status.result, status.message, status.archive_oldest_waiting) == (
        "\\xff", "a\\x1b[31mred\\nfake", "\\u202e")


def test_commands_in_a_deleted_working_directory_say_what_is_missing(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    for command in (("status",), ("report", "--since", "2026-01-01"), ("rotate", "--once"), ("config", "show")):
        r = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone),
                            *CLI, *command], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "METRICS_STATE_FILE": "s"})
        gone.mkdir()
        assert "Traceback" not in r.stderr, (command, r.stderr)
        assert r.returncode in (0, 1) and (r.returncode == 0 or "data directory data does not exist" in r.stderr)
