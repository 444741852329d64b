import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from metrics_ops.cli import cli


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No METRICS_* from the developer's shell, no .env of the checkout: each test starts from defaults."""
    for key in list(os.environ):
        if key.startswith("METRICS_") or key == "NO_COLOR":
            monkeypatch.delenv(key)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def run():
    """Invoke the CLI in-process: run("rotate", "--once") -> click Result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


def write_lines(path: Path, tag: str, n: int) -> list[str]:
    lines = [f'{{"visitor_id":"v{i}","event":"{tag}","n":{i}}}' for i in range(n)]
    path.write_text("".join(line + "\n" for line in lines))
    return lines


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


@pytest.fixture
def dead_url():
    """An http URL on a loopback port nothing listens on."""
    from serve_process import free_port

    return f"http://127.0.0.1:{free_port()}/api/metrics/event"


@pytest.fixture
def hang_up_url():
    server = HangUpServer()
    yield f"http://127.0.0.1:{server.port}/api/metrics/event"
    server.close()


def run_in_pty(args, env=None, columns: int = 80, timeout: float = 60) -> tuple[int, str]:
    """Run a command with stdin/stdout/stderr on a pseudo-terminal ``columns`` wide, as an operator sees it.
    Returns (exit status, everything it wrote, with \\r\\n turned into \\n)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    full_env = {**os.environ, "COLUMNS": str(columns), "LINES": "24", "NO_COLOR": "1", **(env or {})}
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
    os.close(master)
    return proc.wait(timeout), b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
