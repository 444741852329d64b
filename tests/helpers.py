"""Helpers the tests share (imported relatively: ``from .helpers import ...``); fixtures live in conftest.py."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

#: the CLI of the Python running the tests, as a subprocess
CLI = [sys.executable, "-m", "metrics_ops"]


def cli(*args, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``metrics-ops ARGS`` in a subprocess (text output captured), the test's environment plus ``env``:
    the one runner of the real CLI."""
    return subprocess.run([*CLI, *(str(a) for a in args)], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Until serve on ``port`` answers /healthz 200; fails at once if ``proc`` exits, and after ``timeout`` s."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                assert resp.status == 200
                return
        except OSError:
            stderr = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            assert proc.poll() is None, f"serve exited {proc.returncode}: {stderr}"
            assert time.monotonic() < deadline, f"serve on port {port} not healthy after {timeout} s"
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_file(path: Path, rows: Iterable[dict | str], gz: bool = False) -> list[str]:
    """Write a data file: dicts as compact JSON lines, strings as they are (a line each); ``gz`` writes the
    archive ``path`` + ".gz" unless ``path`` already ends so. -> the lines written, without newlines."""
    lines = [json.dumps(r, separators=(",", ":")) if isinstance(r, dict) else r.rstrip("\n") for r in rows]
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        path = path if path.name.endswith(".gz") else path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return lines


def write_lines(path: Path, tag: str, n: int) -> list[str]:
    """``n`` events named ``tag`` (visitors v0..v{n-1}) into a data file."""
    return data_file(path, ({"visitor_id": f"v{i}", "event": tag, "n": i} for i in range(n)))



def all_lines(directory: Path) -> list[str]:
    """Every line of every data file, archives included, each shard once, in stored order (the no-loss oracle):
    the reader report and export use (metrics_ops.reading)."""
    from metrics_ops.reading import all_lines as read_all

    return read_all(directory)


def days_ago(n: int, today: date | None = None) -> date:
    return (today or date.today()) - timedelta(days=n)


def console_script() -> str | None:
    """The `metrics-ops` script of the Python running the tests: next to sys.executable first (a venv that is
    not activated is not on PATH), then PATH; None when the package is not installed with its scripts."""
    beside = Path(sys.executable).parent / "metrics-ops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("metrics-ops")


class HangUpServer:
    """A TCP port that accepts every connection and closes it at once: reachable, but never answers HTTP."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


def run_in_pty(args, env=None, columns: int = 80, timeout: float = 60, stop_at: str | None = None,
               before_stop=None) -> tuple[int, str]:
    """Run a command with stdin/stdout/stderr on a pseudo-terminal ``columns`` wide, as an operator sees it: no
    COLUMNS or LINES in its environment, so click and rich ask the terminal, as they do in a real shell.
    ``stop_at``: SIGTERM once the output holds this text (a server's ready line), after ``before_stop(proc)``.
    Returns (exit status, everything it wrote, with \\r\\n turned into \\n)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    full_env = {**inherited, "NO_COLOR": "1", **(env or {})}
    proc = subprocess.Popen([str(a) for a in args], stdin=slave, stdout=slave, stderr=slave, env=full_env,
                            close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
        if stop_at is not None and stop_at.encode() in b"".join(chunks).replace(b"\r\n", b"\n"):
            if before_stop is not None:
                before_stop(proc)
            proc.terminate()
            stop_at = None
    os.close(master)
    return proc.wait(timeout), b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def mount_tmpfs(mnt: Path, size: str) -> None:
    """Mount a real tmpfs of ``size`` (``8m``) on ``mnt``, or skip: it needs root (CI runs as root)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


def fill(directory: Path) -> Path:
    """Fill the file system to the last byte with one file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


#: the checkout: README.md and the documentation in docs/
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def doc(name: str) -> str:
    """The text of README.md ("README.md") or of a file in docs/ ("operations.md")."""
    return (ROOT / name if name == "README.md" else DOCS / name).read_text()


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(line index, level, text) of a Markdown text's headings, outside fenced code blocks."""
    import re

    out, fenced = [], False
    for i, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^(#{1,6}) (.*)$", line)):
            out.append((i, len(m.group(1)), m.group(2).strip()))
    return out


def doc_section(name: str, heading: str) -> str:
    """The section of a document under the heading `heading` (its text after the #s, any level), up to the next
    heading of the same or a higher level; the heading line itself is left out."""
    text = doc(name)
    headings = _headings(text)
    found = [(i, level) for i, level, h in headings if h == heading]
    assert len(found) == 1, f"{name}: {len(found)} headings {heading!r}"
    [(start, level)] = found
    end = next((i for i, lv, _h in headings if i > start and lv <= level), None)
    return "\n".join(text.splitlines()[start + 1:end]) + "\n"


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings: lower case, punctuation but - and _ dropped, spaces to
    hyphens, and -1, -2, ... after a repeated one."""
    import re

    anchors, counts = set(), {}
    for _i, _level, heading in _headings(text):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        counts[slug] = n + 1
    return anchors
