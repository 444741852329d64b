"""The shipped deploy files take every value from their environment file (issue 19 item 1): the systemd units
from /etc/metrics-ops/env, the compose services (the backend and the rotator sidecar) from deploy/metrics-ops.env.
Each test changes a value in the file and runs the exact command line the unit or service runs, in the
environment systemd or Compose would give it, and checks what the command does."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .helpers import CLI, data_file, days_ago, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def setting_flags(argv: list[str]) -> list[str]:
    """The options of a `metrics-ops ...` command line that set a setting: each would override the environment
    file in silence."""
    from metrics_ops.cli import cli
    from metrics_ops.config import Settings

    command, found = cli, []
    options = {opt: p for p in cli.params for opt in p.opts}
    for token in argv:
        if token in getattr(command, "commands", {}):
            command = command.commands[token]
            options.update({opt: p for p in command.params for opt in p.opts})
        elif token.startswith("-") and (param := options.get(token.split("=")[0])) is not None:
            if {"data_dir": "dir"}.get(param.name, param.name) in Settings.fields:
                found.append(token)
    return found


def env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an environment file (systemd's EnvironmentFile=, Compose's env_file)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def unit(path: Path) -> tuple[dict[str, str], str, list[str]]:
    """(the Environment= assignments, the EnvironmentFile= path, the ExecStart= command line) of a unit."""
    text = path.read_text()
    environment = {}
    for line in re.findall(r"^Environment=(.*)$", text, re.M):
        environment.update(item.split("=", 1) for item in shlex.split(line))
    [env_file] = re.findall(r"^EnvironmentFile=-?(.*)$", text, re.M)
    [exec_start] = re.findall(r"^ExecStart=(.*)$", text, re.M)
    return environment, env_file, shlex.split(exec_start)


def systemd_env(path: Path, env_file_text: str) -> tuple[dict[str, str], list[str]]:
    """The environment systemd gives the unit's command (Environment=, then the EnvironmentFile, which wins) and
    the command as this machine runs it."""
    environment, env_file, argv = unit(path)
    assert env_file == "/etc/metrics-ops/env"
    assert argv[0] == "/usr/local/bin/metrics-ops"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **environment, **env_lines(env_file_text)}
    return env, [*CLI, *argv[1:]]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.full.yml").read_text())


def compose_env(service: str, env_file_text: str, data: Path) -> tuple[dict[str, str], list[str]]:
    """The environment Compose gives a metrics-ops service (env_file, then environment:, which wins), with the
    volume's mount point /data standing for ``data``, and its command."""
    svc = compose()["services"][service]
    assert svc["env_file"] == "metrics-ops.env"
    env = {**env_lines(env_file_text), **{k: str(v) for k, v in svc["environment"].items()}}
    assert env.pop("METRICS_DIR") == "/data"
    env.update(METRICS_DIR=str(data), PYTHONPATH=str(ROOT), PATH="/usr/bin:/bin")
    assert svc["command"][0] == "metrics-ops"
    return env, [*CLI, *svc["command"][1:]]


def test_no_shipped_command_sets_a_setting_by_flag():
    commands = {path.name: unit(path)[2][1:] for path in UNITS}
    for name, svc in compose()["services"].items():
        if svc.get("command"):
            commands[name] = svc["command"][1:]
            commands[f"{name} healthcheck"] = svc["healthcheck"]["test"][2:]
    assert {name: setting_flags(argv) for name, argv in commands.items()} == {name: [] for name in commands}
    assert commands["metrics-ops-rotate.service"] == ["rotate", "--once", "-q"]
    assert commands["metrics-ops-serve.service"] == ["serve"]


def old_files(data: Path) -> list[str]:
    """The data files of the days before the last week (the pass starts today's file)."""
    return sorted(p.name for p in data.glob("metrics-*") if p.name < f"metrics-{days_ago(7)}")


@pytest.fixture
def old_days(tmp_path) -> Path:
    """A data directory with a day 40 days old (kept by a retention of 60, deleted by 30) and one 70 days old."""
    data = tmp_path / "data"
    data.mkdir()
    for n in (40, 70):
        data_file(data / f"metrics-{days_ago(n)}.jsonl", [{"visitor_id": f"v{n}", "event": "page_view"}], gz=True)
    return data


# The operator's change, and what keeps the test independent of this machine's free space.
RETENTION_60 = "METRICS_RETENTION=60\n# no disk budget on the test machine's disk\nMETRICS_MIN_FREE_PERCENT=\n"


def test_the_rotate_unit_keeps_60_days_when_the_env_file_says_so(old_days):
    env, argv = systemd_env(DEPLOY / "systemd" / "metrics-ops-rotate.service",
                            f"METRICS_DIR={old_days}\n{RETENTION_60}")
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert old_files(old_days) == [f"metrics-{days_ago(40)}.jsonl.gz"]  # 70 days: gone; 40: kept
    shown = subprocess.run([*CLI, "config", "show", "--json"], env=env, capture_output=True, text=True, timeout=60)
    doc = json.loads(shown.stdout)
    assert doc["retention"] == {"value": 60, "source": "environment", "env": "METRICS_RETENTION"}
    assert doc["max_mb"]["value"] == 64 and doc["min_free_percent"]["value"] is None  # the unit's, the file's


def test_the_serve_unit_listens_on_the_port_of_the_env_file(tmp_path):
    from .test_serve_start import Started, post

    port = free_port()
    env, argv = systemd_env(DEPLOY / "systemd" / "metrics-ops-serve.service",
                            f"METRICS_DIR={tmp_path / 'data'}\nMETRICS_PORT={port}\nMETRICS_WORKERS=1\n")
    serve = Started(*argv[len(CLI):], env=env)
    try:
        assert serve.wait_ready().startswith(f"metrics-ops: serve ready on http://127.0.0.1:{port} ")
        assert post(port, "unit")["stored"] == 1
    finally:
        assert serve.stop() == 0


def test_the_compose_sidecar_keeps_60_days_when_metrics_ops_env_says_so(old_days, tmp_path):
    shipped = (DEPLOY / "metrics-ops.env").read_text()
    assert "METRICS_RETENTION=30\n" in shipped
    env, argv = compose_env("metrics-rotator", shipped.replace("METRICS_RETENTION=30\n", RETENTION_60), old_days)
    rotator = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        status = old_days / ".metrics-ops.status"
        for _ in range(1200):  # the loop's first pass runs at once; its status file says it finished
            if status.exists() or rotator.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        rotator.send_signal(signal.SIGTERM)
        out, err = rotator.communicate(timeout=60)
    assert rotator.returncode == 0, err
    assert old_files(old_days) == [f"metrics-{days_ago(40)}.jsonl.gz"]


def test_the_compose_backend_takes_its_settings_from_metrics_ops_env(tmp_path):
    from .test_serve_start import Started, post

    shipped = (DEPLOY / "metrics-ops.env").read_text()
    port = free_port()
    env, argv = compose_env("backend", shipped + f"METRICS_PORT={port}\nMETRICS_WORKERS=1\n", tmp_path / "data")
    serve = Started(*argv[len(CLI):], env=env)
    try:
        assert serve.wait_ready() == (f"metrics-ops: serve ready on http://127.0.0.1:{port} (data directory "
                                      f"{tmp_path / 'data'}, 1 worker)")
        assert post(port, "compose")["stored"] == 1
    finally:
        assert serve.stop() == 0
    shown = subprocess.run([*CLI, "config", "show", "--json"], env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=60)
    doc = json.loads(shown.stdout)
    assert {k: doc[k]["value"] for k in ("max_mb", "sample_rate", "tz")} == {"max_mb": 64, "sample_rate": 1.0,
                                                                          "tz": "UTC"}
