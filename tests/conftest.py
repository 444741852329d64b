"""Fixtures every test may use; plain helpers are in helpers.py."""

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from metrics_ops.cli import cli

from .helpers import HangUpServer, free_port, mount_tmpfs


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


def seconds_to_midnight(now: datetime) -> float:
    """Seconds from ``now`` (aware) to the next midnight of its own zone."""
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo) - now).total_seconds()


@pytest.fixture(autouse=True)
def not_across_midnight():
    """Many tests take "today" in-process (``date.today()``, the UTC day of serve's files) and then check what a
    subprocess wrote or reported for it: a test that straddles midnight compares two different days and fails for
    no fault of the code (seen: 9 failures in a suite run that crossed 00:00 UTC). A test that would start in the
    last 90 seconds of a day (local or UTC) waits for the next one: at most once per suite run."""
    left = min(seconds_to_midnight(datetime.now().astimezone()), seconds_to_midnight(datetime.now(UTC)))
    if left < 90:
        time.sleep(left + 1)


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


@pytest.fixture
def dead_url():
    """An http URL on a loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/api/metrics/event"


@pytest.fixture
def hang_up_url():
    server = HangUpServer()
    yield f"http://127.0.0.1:{server.port}/api/metrics/event"
    server.close()




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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real SeaweedFS S3 server for the session (tests/s3server.py): .endpoint, .bucket, .env() (the AWS_*
    variables a subprocess needs: pass env={**s3_server.env()} to helpers.cli)."""
    from .s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("weed")).start()
    yield server
    server.stop()


@pytest.fixture
def archive_url(s3_server, monkeypatch):
    """``s3://metrics/<a prefix of this test's own>``, with this process's AWS_* variables pointing at the
    session's server (so in-process code and subprocesses inheriting os.environ reach it)."""
    import uuid

    from .s3server import S3Server

    for key in S3Server.UNWANTED:
        monkeypatch.delenv(key, raising=False)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}"
