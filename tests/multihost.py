"""Several hosts as deploy/docker-compose.multi.yml runs them, on loopback: for each web-N, the environment
Compose gives its serve and its rotator (metrics-ops.env, archive.env, multi/web-N.env, then the compose file's
own `environment:`), with only the container's paths and addresses substituted (METRICS_DIR -> the host's own
data directory, METRICS_HOST -> 127.0.0.1, METRICS_PORT -> a free port); and a real nginx from
deploy/edge/nginx-multi.conf in front of their serves."""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from .edge import MULTI, Nginx
from .serve_process import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.multi.yml"
ARCHIVE_EXAMPLE = DEPLOY / "archive.env.example"


def compose_multi() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an environment file (Compose's env_file)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def archive_env_text(archive_url: str | None, aws: dict[str, str] | None) -> str:
    """deploy/archive.env as the operator fills it in from archive.env.example: the bucket's URL and the AWS_*
    variables (here the test server's); None for both: archiving off (the METRICS_ARCHIVE_URL line dropped)."""
    lines = []
    for line in ARCHIVE_EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0].lstrip("# ").strip() if "=" in line else ""
        if key == "METRICS_ARCHIVE_URL":
            if archive_url is not None:
                lines.append(f"METRICS_ARCHIVE_URL={archive_url}")
        elif key.startswith("AWS_"):
            if aws is not None and key in aws:
                lines.append(f"{key}={aws[key]}")
        else:
            lines.append(line)
    if aws is not None:  # the test server's own extras (no profile, no metadata service)
        lines += [f"{k}={v}" for k, v in aws.items() if f"{k}=" not in "\n".join(lines)]
    return "\n".join(lines) + "\n"


def host_env(service: str, data: Path, port: int, archive_text: str, extra: str = "") -> dict[str, str]:
    """The environment Compose gives ``service`` (a web-N or web-N-rotator), substituted for this machine.
    ``extra`` is appended to metrics-ops.env (the operator's change to what all hosts share)."""
    svc = compose_multi()["services"][service]
    files = {"metrics-ops.env": (DEPLOY / "metrics-ops.env").read_text() + extra, "archive.env": archive_text}
    env: dict[str, str] = {}
    for name in svc["env_file"]:
        env.update(env_lines(files[name] if name in files else (DEPLOY / name).read_text()))
    env.update({k: str(v) for k, v in svc["environment"].items()})
    assert env.pop("METRICS_DIR") == "/data" and env.pop("METRICS_HOST") == "0.0.0.0"
    env.update(METRICS_DIR=str(data), METRICS_HOST="127.0.0.1", METRICS_PORT=str(port), PYTHONPATH=str(ROOT))
    return env


def host_names() -> list[str]:
    """The serve services of the compose file (web-1, web-2, web-3), in order."""
    return [name for name, svc in compose_multi()["services"].items() if svc.get("command") == ["metrics-ops", "serve"]]


@dataclass
class Host:
    name: str  # the compose service, e.g. web-1
    data: Path
    env: dict[str, str]  # the rotator's environment (the serve's is the same: same env files)
    serve: Server | None = None

    @property
    def host_id(self) -> str:
        return self.env["METRICS_HOST_ID"]


class Site:
    """Every web-N of the compose file with its own data directory under ``root``, its serve started (one worker
    each: the machine has 2 cores), and nginx-multi.conf in front. ``clock`` (libfaketime variables) is given to
    the serves only; nginx and the commands of :meth:`run` keep the real clock."""

    def __init__(self, root: Path, archive_text: str, clock: dict[str, str] | None = None, rate: str = "100000r/s",
                 extra: str = ""):
        self.root, self.clock = root, clock or {}
        self.hosts: list[Host] = []
        self.edge: Nginx | None = None
        # no disk budget on the test machine's disk; one worker per serve
        extra = "METRICS_MIN_FREE_PERCENT=\nMETRICS_WORKERS=1\n" + extra
        try:
            for name in host_names():
                data = root / name / "data"
                data.mkdir(parents=True)
                port = free_port()
                env = host_env(f"{name}-rotator", data, port, archive_text, extra)
                assert env == host_env(name, data, port, archive_text, extra)  # serve and rotator: one host
                host = Host(name, data, env)
                host.serve = Server(data, root / name / "serve.log", env={**env, **self.clock}, port=port)
                self.hosts.append(host)
            self.edge = Nginx(root / "nginx", [h.serve.port for h in self.hosts], MULTI, rate=rate)
        except BaseException:
            self.stop()
            raise

    def post(self, conn: http.client.HTTPConnection, event: dict) -> tuple[int, dict]:
        conn.request("POST", "/api/metrics/event", json.dumps(event), {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.edge.port, timeout=10)

    def run(self, host: Host, *args: str, env: dict | None = None, timeout: float = 120):
        """``metrics-ops ARGS`` on ``host``, in its rotator's environment (the real clock)."""
        import subprocess

        from .helpers import CLI

        return subprocess.run([*CLI, *map(str, args)], env={**os.environ, **host.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def stop_serves(self) -> list[int]:
        return [h.serve.stop() for h in self.hosts if h.serve is not None]

    def stop(self) -> list[int]:
        if self.edge is not None:
            self.edge.stop()
        return self.stop_serves()


def stored_lines(host: Host) -> Counter:
    """(visitor_id, n) of every line in ``host``'s data files, plain and .gz, each shard once."""
    from metrics_ops.reading import all_lines

    found: Counter = Counter()
    for line in all_lines(host.data):
        rec = json.loads(line)
        found[(rec["visitor_id"], rec["metadata"]["n"])] += 1
    return found
