import gzip
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
    """Every line of every data file, archives included (the no-loss oracle)."""
    out = []
    for p in sorted(directory.iterdir()):
        if p.is_symlink() or not p.name.startswith("metrics-"):
            continue
        if p.name.endswith(".jsonl.gz"):
            out.extend(gzip.decompress(p.read_bytes()).decode().splitlines())
        elif p.name.endswith(".jsonl"):
            out.extend(p.read_text().splitlines())
    return out


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


def mount_tmpfs(mnt: Path, size: str) -> None:
    """Mount a real tmpfs of ``size`` (``8m``) on ``mnt``, or skip: it needs root (CI runs as root)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A factory of real tmpfs mounts: small_tmpfs("16m") -> the mount point; all unmounted afterwards."""
    import subprocess

    mounted = []

    def make(size: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mount_tmpfs(mnt, size)
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)])


@pytest.fixture
def tmpfs(small_tmpfs):
    """A real 8 MiB tmpfs (needs root: CI runs as root)."""
    return small_tmpfs("8m")


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
