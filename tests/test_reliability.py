"""stored:1 means stored (issue 9): real serve processes while other processes disagree with them.

Passes in other time zones and with other shard limits, forget, a clock running across midnight (libfaketime),
a full disk (a real tmpfs), a second serve, a foreign state file, a killed main process, half-sent bodies and
idle connections. The oracle is always the same: every answer that said stored:1 is on disk exactly once, and
nothing else is.
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics_ops.store import parse_name

from .helpers import all_lines, cli, fill, free_port
from .serve_process import LIBFAKETIME, Server, children, shifted_clock


def visitors_on_disk(directory: Path) -> Counter:
    """visitor_id -> how many lines hold it, over every data file (archives included)."""
    return Counter(json.loads(line)["visitor_id"] for line in all_lines(directory))


class Clients:
    """Threads posting events with unique visitor ids over keep-alive connections until stopped."""

    def __init__(self, server: Server, n: int, prefix: str = "c"):
        self.server, self.answers, self.errors = server, [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(f"{prefix}{k}",)) for k in range(n)]
        for t in self._threads:
            t.start()

    def _run(self, prefix: str) -> None:
        i = 0
        conn = self.server.connection()
        while not self._stop.is_set():
            vid = f"{prefix}-{i}"
            i += 1
            try:
                status, body = self.server.post_event({"visitor_id": vid, "event": "page_view"}, conn)
            except OSError as exc:  # a connection error is a failure of the test: serve must always answer
                self.errors.append(f"{vid}: {exc!r}")
                conn.close()
                conn = self.server.connection()
                continue
            if status != 202:
                self.errors.append(f"{vid}: {status} {body}")
            else:
                self.answers.append((vid, body["stored"]))
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def assert_every_stored_answer_on_disk_once(data: Path, answers, forgotten=()) -> None:
    found = visitors_on_disk(data)
    stored = {vid for vid, s in answers if s == 1}
    missing = sorted(v for v in stored if found[v] == 0)
    twice = sorted(v for v in stored if found[v] > 1)
    unexpected = sorted(v for v, n in found.items() if v not in stored and n)
    assert not missing, f"{len(missing)} stored:1 answers are not on disk, e.g. {missing[:5]}"
    assert not twice, f"{len(twice)} events are on disk twice, e.g. {twice[:5]}"
    assert not unexpected, f"lines nobody was told were stored: {unexpected[:5]}"
    assert not [v for v in forgotten if found[v]]


# ------------------------------------------------------------------------------------------------ the stress run
@pytest.mark.slow
@pytest.mark.skipif(LIBFAKETIME is None, reason="needs libfaketime (apt-get install faketime; .ci/run installs it)")
def test_stored_means_stored_while_passes_in_other_zones_forget_and_shard_across_midnight(tmp_path):
    """serve (UTC, no --max-mb, like the shipped unit) under 3 concurrent clients from 23:59:52, across midnight,
    while in a loop: rotate in Berlin with a 20 kB shard limit, gzip --gzip-after 1 in Kiritimati (UTC+14, where
    serve's live file is yesterday's), forget in Kiritimati, rotate in New York with another shard limit."""
    data = tmp_path / "data"
    data.mkdir()
    # 8 s before a UTC midnight in the future: libfaketime turns sleeps into EINVAL with a negative offset larger
    # than the machine's uptime (a fresh CI machine), so the fake clock only ever runs ahead
    midnight = (int(time.time()) // 86400 + 2) * 86400
    clock = shifted_clock(midnight - 8 - time.time())
    day1, day2 = (datetime.fromtimestamp(midnight + d, UTC).date().isoformat() for d in (-1, 0))
    server = Server(data, tmp_path / "serve.log", env=clock)
    victims = [f"victim-{i}" for i in range(6)]
    answers = []
    for v in victims:
        for n in range(3):
            status, body = server.post_event({"visitor_id": v, "event": "page_view", "metadata": {"n": n}})
            assert status == 202 and body["stored"] == 1
    clients = Clients(server, 3)
    passes = [
        ({"METRICS_TZ": "Europe/Berlin"}, ["rotate", "--once", "-q", "--max-mb", "0.02"]),
        ({"METRICS_TZ": "Pacific/Kiritimati"}, ["gzip", "--gzip-after", "1", "-q"]),
        ({"METRICS_TZ": "Pacific/Kiritimati"}, ["forget", "-q"]),
        ({"METRICS_TZ": "America/New_York"}, ["rotate", "--once", "-q", "--max-mb", "0.05", "--gzip-after", "1"]),
    ]
    ran, failures = Counter(), []
    try:
        deadline = time.monotonic() + 16
        while time.monotonic() < deadline or victims:
            for env, args in passes:
                if args[0] == "forget":
                    if not victims:
                        continue
                    args = [*args, victims.pop()]
                r = cli("--data-dir", data, *args, env={**clock, **env})
                ran[args[0]] += 1
                if r.returncode != 0:
                    failures.append((args, r.returncode, r.stderr[-3000:]))
    finally:
        clients.stop()
        assert server.stop() == 0, server.log
    answers = clients.answers
    assert not clients.errors, clients.errors[:5]
    assert not failures, failures[:3]
    assert ran["gzip"] >= 3 and ran["forget"] == 6 and len(answers) > 500
    names = sorted(p.name for p in data.iterdir())
    assert any(n.startswith(f"metrics-{day1}") and n.endswith(".gz") for n in names), names  # live file gzipped
    assert any(n.startswith(f"metrics-{day2}") for n in names), names  # midnight was crossed
    assert any(".1.jsonl" in n for n in names), names  # serve followed shards it did not make itself
    assert_every_stored_answer_on_disk_once(data, answers, forgotten=[f"victim-{i}" for i in range(6)])


@pytest.mark.skipif(LIBFAKETIME is None, reason="needs libfaketime (apt-get install faketime; .ci/run installs it)")
def test_a_pass_a_day_ahead_with_retention_1_never_deletes_the_file_serve_writes(tmp_path):
    """A pass whose clock runs a day ahead moves the link to 'its' today, and then found serve's live file 1 day
    old: with --retention 1 it deleted it under serve, answered events and all. A file a writer holds open is
    the file being written, whatever the pass's clock says."""
    data = tmp_path / "data"
    server = Server(data, tmp_path / "serve.log")
    clients = Clients(server, 2)
    try:
        time.sleep(0.5)
        r = cli("--data-dir", data, "rotate", "--once", "--json", "--gzip-after", "1", "--retention", "1",
                env=shifted_clock(86_000))
        time.sleep(0.5)
    finally:
        clients.stop()
        assert server.stop() == 0, server.log
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    live = [k for k in doc["kept"] if "a writer holds it open" in k["reason"]]
    assert len(live) == 1 and not [a for a in doc["actions"] if a["kind"] == "delete"], doc
    assert not clients.errors and len(clients.answers) > 100
    assert_every_stored_answer_on_disk_once(data, clients.answers)


# ------------------------------------------------------------------------------------------------ a full disk
def health_of_every_worker(server: Server, probes: int = 16) -> Counter:
    return Counter(server.request("GET", "/healthz")[0] for _ in range(probes))  # a new connection each


def test_a_full_disk_never_kills_a_worker_and_serve_recovers(tmpfs, tmp_path):
    data = tmpfs / "data"
    # the free-space floor off: this is the write-error path (a disk another process fills to the last byte)
    server = Server(data, tmp_path / "serve.log", env={"METRICS_SERVE_MIN_FREE_MB": "0"})
    try:
        workers = sorted(children(server.proc.pid))
        answers = []
        for i in range(20):
            status, body = server.post_event({"visitor_id": f"before-{i}", "event": "page_view"})
            assert status == 202 and body["stored"] == 1
            answers.append((f"before-{i}", 1))
        filler = fill(tmpfs)
        for i in range(300):  # each on a new connection: a dead worker would show as a refused or reset one
            status, body = server.post_event({"visitor_id": f"full-{i}", "event": "page_view",
                                              "metadata": {"pad": "x" * 200}})
            assert status == 202, body
            answers.append((f"full-{i}", body["stored"]))
        # the disk is full: stored 0, said so (the last 4 KiB page of the data file may still take a few lines)
        assert sum(s for v, s in answers if v.startswith("full-")) < 20
        assert health_of_every_worker(server) == Counter({503: 16})  # every worker knows
        assert server.request("GET", "/healthz")[1]["reason"] == "write_failed"
        snapshot = server.request("GET", "/api/metrics/snapshot")[1]
        assert "a write failed" in snapshot["health"]["detail"] and "No space left" in snapshot["health"]["detail"]
        counters = snapshot["counters"]
        assert counters["write_errors"] >= 295 and counters["received"] == 320
        filler.unlink()
        for i in range(20):
            status, body = server.post_event({"visitor_id": f"after-{i}", "event": "page_view"})
            assert status == 202 and body["stored"] == 1
            answers.append((f"after-{i}", 1))
        assert health_of_every_worker(server) == Counter({200: 16})
        assert sorted(children(server.proc.pid)) == workers  # no worker died and was respawned
    finally:
        assert server.stop() == 0, server.log
    assert "Unexpected exit from worker" not in server.log
    assert 1 <= server.log.count("write failed") <= 6  # ~300 failures, a few lines: no flood on a full disk
    assert_every_stored_answer_on_disk_once(data, answers)


def test_serve_refuses_to_start_when_the_state_file_cannot_be_reserved(tmpfs, tmp_path):
    data = tmpfs / "data"
    data.mkdir()
    fill(tmpfs)
    r = cli("--data-dir", data, "serve", "--port", str(free_port()), timeout=30)
    assert r.returncode == 1
    assert re.fullmatch(f"metrics-ops: cannot reserve 3.9 MiB for the state file {data}/.metrics-ops.state: No space "
                        "left on device\n", r.stderr), r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_forget_on_a_read_only_directory_is_one_line_and_damages_nothing(tmpfs):
    """As root nothing is unwritable but a read-only file system: the PermissionError/EROFS path, for real."""
    data = tmpfs / "data"
    data.mkdir()
    day = data / "metrics-2026-11-20.jsonl"
    day.write_text('{"visitor_id":"v1","event":"a"}\n{"visitor_id":"v2","event":"b"}\n')
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    try:
        r = cli("--data-dir", data, "forget", "v1")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)])
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Read-only file system" in r.stderr, r.stderr
    assert day.read_text() == '{"visitor_id":"v1","event":"a"}\n{"visitor_id":"v2","event":"b"}\n'


# ------------------------------------------------------------------------------------------------ state file
def test_a_second_serve_is_refused_naming_the_first_which_keeps_serving(tmp_path):
    data = tmp_path / "fresh" / "data"  # serve creates it
    first = Server(data, tmp_path / "first.log")
    try:
        assert first.post_event({"visitor_id": "a", "event": "x"})[1]["stored"] == 1
        r = cli("--data-dir", data, "serve", "--port", str(free_port()), timeout=30)
        assert r.returncode == 1
        assert r.stderr == (f"metrics-ops: another metrics-ops serve (pid {first.proc.pid}) is using the state file "
                            f"{data}/.metrics-ops.state; stop it first, or give this server its own state file "
                            "(METRICS_STATE_FILE)\n")
        assert first.post_event({"visitor_id": "b", "event": "x"})[1]["stored"] == 1  # the first never noticed
        second = Server(data, tmp_path / "second.log", env={"METRICS_STATE_FILE": str(tmp_path / "second.state")})
        try:
            for v in ("c", "d", "e"):
                assert second.post_event({"visitor_id": v, "event": "x"})[1]["stored"] == 1
            assert second.request("GET", "/api/metrics/snapshot")[1]["counters"]["stored"] == 3
        finally:
            assert second.stop() == 0
        assert first.request("GET", "/api/metrics/snapshot")[1]["counters"]["stored"] == 2  # its own only
    finally:
        assert first.stop() == 0, first.log
    assert visitors_on_disk(data) == Counter({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [data, *data.iterdir()] if not p.is_symlink()}
    assert modes[data.name] == "0o750" and modes[".metrics-ops.state"] == "0o600"
    assert {m for n, m in modes.items() if parse_name(n)} == {"0o640"}


def test_a_foreign_state_file_is_refused_untouched(tmp_path, data_dir):
    db = tmp_path / "app.sqlite"
    db.write_bytes(b"SQLite format 3\0" + os.urandom(4000))
    before = db.read_bytes()
    r = cli("--data-dir", data_dir, "serve", "--port", free_port(), env={"METRICS_STATE_FILE": str(db)}, timeout=30)
    assert r.returncode == 2
    assert r.stderr == (f"metrics-ops: {db} is not a metrics-ops state file (it does not start with MOPSTAT); "
                        "refusing to overwrite it: point METRICS_STATE_FILE at a new file\n")
    assert db.read_bytes() == before


# ------------------------------------------------------------------------------------------------ process edges
def test_workers_exit_when_the_main_process_is_killed(tmp_path, data_dir):
    server = Server(data_dir, tmp_path / "serve.log")
    workers = children(server.proc.pid)
    assert len(workers) >= 2
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _listening(server.port):
        time.sleep(0.05)
    assert not _listening(server.port), "orphaned workers still hold the port 5 s after the main process died"
    again = Server(data_dir, tmp_path / "again.log", port=server.port)  # the next serve starts on the same port
    try:
        assert again.post_event({"visitor_id": "v", "event": "x"})[1]["stored"] == 1
    finally:
        assert again.stop() == 0, again.log


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_body_shorter_than_its_content_length_is_400_and_not_stored(tmp_path, data_dir):
    server = Server(data_dir, tmp_path / "serve.log")
    try:
        body = b'{"visitor_id":"half","event":"page_view"}'
        head = (b"POST /api/metrics/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (len(body) + 40))
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head + body)
            s.shutdown(socket.SHUT_WR)  # FIN: the rest will never come
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
        assert status == 400, answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "incomplete_body"
        assert server.post_event({"visitor_id": "whole", "event": "page_view"})[1]["stored"] == 1
    finally:
        assert server.stop() == 0, server.log
    assert visitors_on_disk(data_dir) == Counter({"whole": 1})


def test_a_thousand_idle_connections_leave_real_requests_answered(tmp_path, data_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2500:
        pytest.skip(f"needs 2,500 file descriptors, the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2500), hard))
    server = Server(data_dir, tmp_path / "serve.log")
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        time.sleep(0.3)
        started = time.monotonic()
        for i in range(10):
            conn = server.connection()
            conn.timeout = 5
            assert server.post_event({"visitor_id": f"real-{i}", "event": "x"}, conn)[1]["stored"] == 1
            conn.close()
        assert time.monotonic() - started < 10
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert server.stop() == 0, server.log
