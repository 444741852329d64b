"""serve's start and restart, as an operator meets them: it comes back on its own data directory however the
settings are given, its ready line means the port takes events, a refused start leaves nothing behind, and
workers that die are one line and a non-zero exit (issue 18 item 0, issue 19 items 5 and 6)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .helpers import CLI, cli, free_port
from .serve_process import children

READY = "metrics-ops: serve ready on "


class Started:
    """`metrics-ops ARGS` started in ``cwd``; its stderr read line by line as it comes."""

    def __init__(self, *args, env: dict | None = None, cwd: Path | None = None, argv=None):
        self.proc = subprocess.Popen([*(argv or CLI), *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def next_line(self, timeout: float = 60) -> str | None:
        """The next stderr line (None: stderr closed, the process ended)."""
        line = self._q.get(timeout=timeout)
        if line is not None:
            self.lines.append(line)
        return line

    def wait_ready(self) -> str:
        while (line := self.next_line()) is not None:
            if line.startswith(READY):
                return line
        raise AssertionError(f"no ready line; exit {self.proc.wait(20)}: {self.lines}")

    def rest(self, timeout: float = 60) -> list[str]:
        """Every line until stderr closes; the process has ended."""
        while self.next_line(timeout) is not None:
            pass
        self.proc.wait(timeout)
        return self.lines

    def wait_healthy(self, port: int, timeout: float = 60) -> None:
        """Until /healthz answers 200 (whatever the ready line says); fails if serve exits first."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}: {self.rest()}"
            assert time.monotonic() < deadline, f"serve not healthy after {timeout} s: {self.lines}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.rest()
        return self.proc.returncode


def post(port: int, visitor: str) -> dict:
    """One event, sent the moment this is called: no retry, no wait for the port."""
    body = json.dumps({"visitor_id": visitor, "event": "page_view"}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/metrics/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"202", answer
    return json.loads(payload)


# --- issue 18 item 0: serve comes back after a restart, however the data directory is given -----------------
def _settings(way: str, which: str, tmp_path: Path, work: Path, data: Path, port: int):
    """(arguments, environment) that give serve its data directory and link ``way`` (flag, env, dotenv, toml),
    naming the link (jsonl), the directory (dir) or both; the port by flag."""
    link = data / "metrics.jsonl"
    values = {"jsonl": {"METRICS_JSONL": str(link)}, "dir": {"METRICS_DIR": str(data)},
              "both": {"METRICS_DIR": str(data), "METRICS_JSONL": str(link)}}[which]
    args, env = ["serve", "--port", port, "--workers", "1"], {}
    if way == "flag":  # --data-dir is the only flag of the two; the link then comes from the environment
        args += ["--data-dir", data]
        env = {"METRICS_JSONL": str(link)} if which == "both" else {}
    elif way == "env":
        env = values
    elif way == "dotenv":
        (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    else:
        cfg = tmp_path / "metrics-ops.toml"
        cfg.write_text("".join(f'{k.removeprefix("METRICS_").lower()} = "{v}"\n' for k, v in values.items()))
        args = ["--config", cfg, *args]
    return args, env


WAYS = [(way, which) for way in ("flag", "env", "dotenv", "toml") for which in ("jsonl", "dir", "both")
        if (way, which) != ("flag", "jsonl")]


@pytest.mark.slow
@pytest.mark.parametrize("way, which", WAYS, ids=[f"{w}-{x}" for w, x in WAYS])
def test_serve_restarts_on_its_data_directory_however_the_settings_are_given(tmp_path, isolated_env, way, which):
    data, port = tmp_path / "data", free_port()
    args, env = _settings(way, which, tmp_path, isolated_env, data, port)
    files = []
    for run in range(2):
        serve = Started(*args, env=env, cwd=isolated_env)
        line = serve.wait_ready()
        assert f"(data directory {data}, 1 worker)" in line
        serve.wait_healthy(port)
        files.append(post(port, f"visitor{run}")["file"])
        assert serve.stop() == 0, serve.lines
        assert serve.lines == [line], serve.lines  # no worker refused its settings, nothing respawned
        assert (data / "metrics.jsonl").is_symlink()
        if run == 0:  # a pass between the two starts (it made the link, or kept it)
            r = subprocess.run([*CLI, *args[:args.index("serve")], "rotate", "--once", "-q"], cwd=isolated_env,
                               env={**os.environ, **env, **({"METRICS_DIR": str(data)} if way == "flag" else {})},
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
    assert files[0] == files[1] and (data / "metrics.jsonl").resolve().name == files[0]
    stored = [json.loads(x)["visitor_id"] for x in (data / files[0]).read_text().splitlines()]
    assert stored == ["visitor0", "visitor1"]


def test_serve_restarts_with_metrics_jsonl_right_after_its_own_link(tmp_path, isolated_env):
    """The existing system's habit, METRICS_JSONL alone: the link serve made on its first event used to be
    resolved to the data file and handed to the workers, which refused it in a crash loop."""
    data, port = tmp_path / "data", free_port()
    env = {"METRICS_JSONL": str(data / "metrics.jsonl")}
    for visitor in ("first", "second"):
        serve = Started("serve", "--port", port, env=env, cwd=isolated_env)
        serve.wait_ready()
        serve.wait_healthy(port)
        assert post(port, visitor)["stored"] == 1
        assert serve.stop() == 0, serve.lines
        assert not [x for x in serve.lines if not x.startswith(READY)], serve.lines
    assert len((data / "metrics.jsonl").read_text().splitlines()) == 2


# --- issue 19 item 5: the ready line means the port takes events -------------------------------------------
@pytest.mark.slow
def test_the_first_event_sent_right_after_the_ready_line_is_stored_every_time(tmp_path):
    data = tmp_path / "data"
    for n in range(20):
        port = free_port()
        serve = Started("--data-dir", data, "serve", "--port", port)
        serve.wait_ready()
        answer = post(port, f"v{n}")  # at once: no retry, no health poll
        assert answer["stored"] == 1
        assert serve.stop() == 0, serve.lines  # a stop this early, while the second worker may still start
    assert sum(len(p.read_text().splitlines()) for p in data.glob("metrics-*.jsonl")) == 20


# --- issue 19 item 6: a refused serve creates nothing -------------------------------------------------------
@pytest.fixture
def base(tmp_path) -> Path:
    """An empty directory of the test's own (tmp_path holds the working directory too)."""
    (tmp_path / "base").mkdir()
    return tmp_path / "base"


def test_a_serve_refused_for_a_busy_port_creates_no_directory_and_no_state_file(base):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("--data-dir", base / "new" / "data", "serve", "--port", port, timeout=60)
    assert r.returncode == 1
    assert r.stderr == f"metrics-ops: port {port} on 127.0.0.1 is already in use (--port / METRICS_PORT)\n"
    assert list(base.iterdir()) == []


def test_a_serve_refused_for_a_bad_setting_creates_nothing(base):
    r = cli("--data-dir", base / "new" / "data", "serve", "--port", free_port(), "--workers", "0", timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    foreign = base / "elsewhere" / "state"
    foreign.parent.mkdir()
    foreign.write_bytes(b"not a state file\n")
    r = cli("--data-dir", base / "new" / "data", "serve", "--port", free_port(), timeout=60,
            env={"METRICS_STATE_FILE": str(foreign)})
    assert r.returncode == 2 and "is not a metrics-ops state file" in r.stderr
    assert sorted(p.name for p in base.iterdir()) == ["elsewhere"]
    assert foreign.read_bytes() == b"not a state file\n"


def test_a_serve_refused_for_a_state_file_it_cannot_open_leaves_no_directory(base):
    r = cli("--data-dir", base / "new" / "data", "serve", "--port", free_port(), timeout=60,
            env={"METRICS_STATE_FILE": str(base / "missing" / "state")})
    assert r.returncode == 1 and "cannot open the state file" in r.stderr
    assert list(base.iterdir()) == []


# --- workers that die: one line and a non-zero exit, never a ready line that lies -----------------------------
#: the CLI with every worker's app failing to build (the fault: a worker that exits at once, whatever the cause)
DYING_WORKERS = [sys.executable, "-c", "import os, sys; import metrics_ops.serve.app as app; "
                 "app.make_app = lambda *a, **k: os._exit(3); "
                 "from metrics_ops.cli import main; sys.argv[0] = 'metrics-ops'; main()"]


def test_workers_that_die_before_the_port_listens_are_one_line_and_exit_1_without_a_ready_line(tmp_path):
    serve = Started("--data-dir", tmp_path / "data", "serve", "--port", free_port(), argv=DYING_WORKERS)
    lines = serve.rest()
    assert serve.proc.returncode == 1
    assert not [x for x in lines if x.startswith(READY)]
    assert lines[-1] == ("metrics-ops: the workers exited before the port accepted connections (see the lines "
                         "above); nothing was served")


@pytest.mark.slow
def test_a_worker_crash_loop_after_the_ready_line_is_reported_and_exits_1(tmp_path):
    port = free_port()
    serve = Started("--data-dir", tmp_path / "data", "serve", "--port", port, "--workers", "1")
    serve.wait_ready()
    killed = set()
    deadline = time.monotonic() + 60
    while serve.proc.poll() is None and time.monotonic() < deadline:
        for pid in set(children(serve.proc.pid)) - killed:  # the worker, and each one granian starts anew
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.add(pid)
        time.sleep(0.05)
    lines = serve.rest()
    assert serve.proc.returncode == 1, lines
    assert len(killed) >= 2
    assert lines[-1] == "metrics-ops: the workers kept exiting (see the lines above); serve stopped"


def test_a_near_miss_in_serves_environment_is_said_once_not_once_per_worker(tmp_path):
    port = free_port()
    serve = Started("--data-dir", tmp_path / "data", "serve", "--port", port, "--workers", "2",
                    env={"METRICS_RETENTON": "60"})
    serve.wait_ready()
    serve.wait_healthy(port)
    assert serve.stop() == 0
    assert [x for x in serve.lines if not x.startswith(READY)] == [
        "metrics-ops: ignoring METRICS_RETENTON; did you mean METRICS_RETENTION?"]


#: the CLI with the second worker slow to start: it sleeps where a granian worker still has the main process's
#: signal handlers (before granian installs its own), the window a stop right after the ready line falls into
SLOW_SECOND_WORKER = [sys.executable, "-c", "import os, sys, time; import granian.server.mp as mp; "
                      "flag = sys.argv.pop(1); first = mp.configure_logging\n"
                      "def slow(*a, **k):\n"
                      "    if os.path.exists(flag): time.sleep(4); open(flag + '.woke', 'a').close()\n"
                      "    open(flag, 'a').close(); return first(*a, **k)\n"
                      "mp.configure_logging = slow\n"
                      "from metrics_ops.cli import main; sys.argv[0] = 'metrics-ops'; main()"]


def test_a_stop_right_after_the_ready_line_ends_serve_while_a_worker_is_still_starting(tmp_path):
    port = free_port()
    serve = Started(tmp_path / "flag", "--data-dir", tmp_path / "data", "serve", "--port", port, "--workers", "2",
                    argv=SLOW_SECOND_WORKER)
    serve.wait_ready()  # the first worker accepts; the second sleeps in its start
    serve.proc.send_signal(signal.SIGTERM)
    try:
        serve.proc.wait(60)  # the stop used to be swallowed by the starting worker: serve waited for it forever
    finally:
        for pid in children(serve.proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert serve.stop() == 0, serve.lines
    # The starting worker ended on the signal, in its sleep: it was not left to wake up and serve.
    assert not (tmp_path / "flag.woke").exists()


def _threads_taking(pid: int, sig: int) -> list[int]:
    """The threads of ``pid`` other than its main thread that do not block ``sig`` (any of them may be handed a
    signal sent to the process)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        status = (task / "status").read_text()
        blocked = int(next(x for x in status.splitlines() if x.startswith("SigBlk:")).split()[1], 16)
        if tid != pid and not blocked & (1 << (sig - 1)):
            out.append(tid)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill: Linux only")
def test_a_stop_signal_handed_to_a_workers_other_thread_still_stops_that_worker(tmp_path):
    import ctypes

    port = free_port()
    serve = Started("--data-dir", tmp_path / "data", "serve", "--port", port, "--workers", "1")
    serve.wait_ready()
    try:
        (worker,) = children(serve.proc.pid)
        deadline = time.monotonic() + 30
        while not (others := _threads_taking(worker, signal.SIGTERM)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert others, "the worker has no thread besides its main one that takes SIGTERM"
        # What the kernel may do with a SIGTERM sent to the worker: hand it to one of granian's Rust threads. The
        # worker's main thread, asleep in a lock wait, used to never run the handler: the worker went on serving
        # and a serve being stopped waited for it forever.
        assert ctypes.CDLL(None, use_errno=True).syscall(234, worker, others[0], signal.SIGTERM) == 0  # tgkill
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z", (
            "the worker did not stop on a SIGTERM handed to another of its threads")
    finally:
        serve.stop()
