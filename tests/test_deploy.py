"""The deploy files as operators copy them: nginx -t, the compose file's commands on the real CLI, systemd units."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import console_script
from edge import Nginx, nginx_binary, render
from serve_process import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CLI = [sys.executable, "-m", "metrics_ops"]


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_shipped_nginx_config_passes_nginx_t(tmp_path):
    conf = render(tmp_path, free_port(), "127.0.0.1:8001")
    r = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr


def test_nginx_config_carries_the_limits_and_the_corrected_figures():
    text = (DEPLOY / "edge" / "nginx.conf").read_text()
    assert "limit_req_zone $binary_remote_addr zone=metrics_zone:10m rate=5r/s;" in text
    assert "limit_req_status 429;" in text
    assert text.count("limit_req zone=metrics_zone burst=10 nodelay;") == 2
    assert text.count("client_max_body_size 64k;") == 2
    assert "burst + 1 = 11" in text and "80,000" in text
    for fmt in re.findall(r"log_format\s+\w+\s+'([^']*)'", text):
        assert "$remote_addr" not in fmt and "$http_user_agent" not in fmt and "$http_x_forwarded_for" not in fmt


def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.full.yml").read_text())


def test_compose_file_parses_and_has_the_three_services():
    doc = compose()
    services = doc["services"]
    assert set(services) == {"edge", "backend", "metrics-rotator"}
    rotator = services["metrics-rotator"]
    assert rotator["restart"] == "unless-stopped"
    assert "..:/opt/metrics-ops:ro" in rotator["volumes"] and "metrics-data:/data" in rotator["volumes"]
    assert rotator["command"][:2] == ["metrics-ops", "rotate"]
    assert " ".join(rotator["command"][2:]) == "--interval 300 --gzip-after 3 --retention 30 --max-mb 64"
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert (DEPLOY / services["edge"]["volumes"][0].split(":")[0]).resolve() == DEPLOY / "edge" / "nginx.conf"
    assert services["backend"]["network_mode"] == "service:edge"  # so nginx.conf's 127.0.0.1:8001 holds


def test_compose_rotator_command_is_accepted_by_the_real_cli(tmp_path):
    cmd = compose()["services"]["metrics-rotator"]["command"][1:]
    r = subprocess.run([*CLI, "--data-dir", str(tmp_path / "data"), *cmd, "--dry-run"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_backend_command_serves(tmp_path):
    cmd = compose()["services"]["backend"]["command"][1:]
    port = free_port()
    cmd[cmd.index("--port") + 1] = str(port)
    proc = subprocess.Popen([*CLI, "--data-dir", str(tmp_path / "data"), *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        import time
        import urllib.request

        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_readme_cron_line_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("*/5 * * * *"))
    fields = line.split()
    user, command = fields[5], fields[6:]
    assert user == "metrics"
    env = {**os.environ}
    while "=" in command[0]:
        name, _ = command.pop(0).split("=", 1)
        env[name] = str(tmp_path / "data")
    assert command[0] == "metrics-ops"
    r = subprocess.run([*CLI, *command[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""  # -q: silent when all is well
    assert (tmp_path / "data" / "metrics.jsonl").is_symlink()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path):
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text().replace("/usr/local/bin/metrics-ops", exe)  # where pip put it on this machine
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if "metrics-ops" in line and "Failed to" not in line and "dbus" not in line.lower()]
    assert r.returncode == 0 or not problems, r.stderr
    assert not problems, problems
    timer = (DEPLOY / "systemd" / "metrics-ops-rotate.timer").read_text()
    assert "OnCalendar=*:0/5" in timer


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_edge_answers_413_above_64k_and_never_forwards_client_headers(data_dir, tmp_path):
    backend = Server(data_dir, tmp_path / "serve.log", "--log-level", "debug")
    edge = Nginx(tmp_path / "nginx", backend.port)
    try:
        import http.client
        import json

        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        conn.request("POST", "/api/metrics/event", b'{"a":"' + b"x" * 70000 + b'"}',
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"]["code"] == "body_too_large"
        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        conn.request("POST", "/api/metrics/event", '{"visitor_id":"v1","event":"page_view"}',
                     {"Content-Type": "text/plain", "User-Agent": "EdgeMarker/1", "Cookie": "c=EdgeCookie"})
        r = conn.getresponse()
        answer = r.read()
        assert r.status == 202, answer
        conn.request("GET", "/api/metrics/snapshot")
        assert conn.getresponse().status == 404  # the debug view is not exposed at the edge
    finally:
        edge.stop()
        assert backend.stop() == 0
    access = (tmp_path / "nginx" / "metrics-ops.access.log").read_text()
    assert "/api/metrics/event" in access and "127.0.0.1" not in access and "EdgeMarker" not in access
