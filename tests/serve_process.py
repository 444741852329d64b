"""Start a real `metrics-ops serve` on a free loopback port, for socket-level tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .helpers import CLI, free_port  # noqa: F401  (re-exported for the tests that start servers)

LIBFAKETIME = next((p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                                "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                                "/usr/lib/faketime/libfaketime.so.1") if os.path.exists(p)), None)


def shifted_clock(offset: float) -> dict[str, str]:
    """Environment for a process whose wall clock runs ``offset`` seconds from the real one (libfaketime).
    Every process started with the same offset sees the same time; the monotonic clock stays real."""
    return {"LD_PRELOAD": LIBFAKETIME or "", "FAKETIME": f"{offset:+.3f}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


class Connection(http.client.HTTPConnection):
    """A keep-alive connection usable in a with block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Server:
    def __init__(self, data_dir: Path, log: Path, *args: str, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [*CLI, "--data-dir", str(data_dir), "serve", "--port", str(self.port),
             *args],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start (exit status {self.proc.poll()}): {log.read_text()}")
            time.sleep(0.05)

    def connection(self) -> Connection:
        return Connection("127.0.0.1", self.port, timeout=10)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.connection()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data and r.getheader("Content-Type", "").startswith(
                "application/json") else data)
        finally:
            if conn is None:
                c.close()

    def post_event(self, event: dict, conn=None, headers=None):
        return self.request("POST", "/api/metrics/event", json.dumps(event),
                            {"Content-Type": "application/json", **(headers or {})}, conn)

    def raw(self, data: bytes) -> int:
        """Send raw bytes, return the status code of the answer (0 if the connection closed without one)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            try:
                s.sendall(data)
            except OSError:  # the server may answer (413) and close before it read everything
                pass
            buf = b""
            while b"\r\n" not in buf:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
        return int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/") else 0

    def stop(self, sig=signal.SIGTERM, timeout=20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    @property
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")
