"""The deploy files as operators copy them: nginx -t, the compose file's commands on the real CLI, systemd units."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .edge import Nginx, nginx_binary, render
from .helpers import CLI, cli, console_script, doc_section, wait_healthy
from .serve_process import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


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
    assert rotator["command"] == ["metrics-ops", "rotate"]  # every value from metrics-ops.env (test_deploy_settings)
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert (DEPLOY / services["edge"]["volumes"][0].split(":")[0]).resolve() == DEPLOY / "edge" / "nginx.conf"
    assert services["backend"]["network_mode"] == "service:edge"  # so nginx.conf's 127.0.0.1:8001 holds


def test_compose_rotator_command_is_accepted_by_the_real_cli(tmp_path):
    cmd = compose()["services"]["metrics-rotator"]["command"][1:]
    (tmp_path / "data").mkdir()  # the metrics-data volume
    r = cli("--data-dir", str(tmp_path / "data"), *cmd, "--once", "--dry-run", timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_backend_command_serves(tmp_path):
    cmd = compose()["services"]["backend"]["command"][1:]
    port = free_port()
    proc = subprocess.Popen([*CLI, "--data-dir", str(tmp_path / "data"), *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "METRICS_PORT": str(port)})
    try:
        wait_healthy(port, proc)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def readme_cron_lines() -> dict[str, str]:
    """The documented cron lines (docs/deployment.md, "cron"): the one for `crontab -e` and the one for
    /etc/cron.d (with a user field)."""
    section = doc_section("deployment.md", "cron")
    blocks = re.findall(r"```cron\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2, lines
    return {"crontab": lines[0], "cron.d": lines[1]}


@pytest.mark.parametrize("kind", ["crontab", "cron.d"])
def test_readme_cron_lines_run_as_cron_runs_them(tmp_path, kind):
    fields = readme_cron_lines()[kind].split()
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    command = fields[5:]
    if kind == "cron.d":
        user = command.pop(0)
        assert re.fullmatch(r"[a-z_][a-z0-9_-]*", user), "/etc/cron.d lines have a user after the time fields"
    else:
        assert "=" in command[0], "crontab -e lines have no user field"
    assignments = []
    while "=" in command[0]:
        assignments.append(command.pop(0).split("=", 1))
    assert [name for name, _ in assignments] == ["METRICS_DIR"] and assignments[0][1].startswith("/")
    assert command[0].startswith("/") and command[0].endswith("/metrics-ops"), "cron's PATH has no virtualenv"
    exe = Path(sys.executable).parent / "metrics-ops"  # where pip put it on this machine
    if not exe.exists():
        exe = Path(shutil.which("metrics-ops") or pytest.skip("metrics-ops is not installed as a script"))
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()  # serve made it
    line = " ".join([f"METRICS_DIR={data}", str(exe), *command[1:]])
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LOGNAME": "metrics"}
    r = subprocess.run(["/bin/sh", "-c", line], cwd=home, env=cron_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""  # -q: silent when all is well
    assert (data / "metrics.jsonl").is_symlink()
    assert list(home.iterdir()) == []  # nothing invented in cron's working directory
    # The same line without METRICS_DIR: cron mails one line naming the directory it would have used.
    r = subprocess.run(["/bin/sh", "-c", " ".join([str(exe), *command[1:]])], cwd=home, env=cron_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith(f"metrics-ops: data directory {home / 'data'} does not exist")
    assert list(home.iterdir()) == []


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


def _http(port, method, path, body=None, headers=None):
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        data = r.read()
        ctype = r.getheader("Content-Type", "")
        return r.status, r.headers, (json.loads(data) if data and "json" in ctype else data)  # any case
    finally:
        conn.close()


PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_same_origin_site_serves_the_page_and_takes_events_without_cors(data_dir, tmp_path):
    from .edge import SAME_ORIGIN

    backend = Server(data_dir, tmp_path / "serve.log")  # METRICS_CORS_ORIGINS empty: no CORS at all
    (tmp_path / "nginx" / "site").mkdir(parents=True)
    (tmp_path / "nginx" / "site" / "index.html").write_text("<h1>the shop</h1>\n")
    edge = Nginx(tmp_path / "nginx", backend.port, SAME_ORIGIN)
    site = f"http://127.0.0.1:{edge.port}"
    try:
        status, _, page = _http(edge.port, "GET", "/")
        assert status == 200 and page == b"<h1>the shop</h1>\n"
        # what a page's fetch() sends to its own origin (Origin is sent on a same-origin POST too): no preflight
        status, headers, answer = _http(edge.port, "POST", "/api/metrics/event",
                                        '{"visitor_id":"v1","event":"page_view"}',
                                        {"Content-Type": "application/json", "Origin": site})
        assert status == 202 and answer["stored"] == 1
        status, _, answer = _http(edge.port, "POST", "/api/metrics/events", '[{"visitor_id":"v2","event":"x"}]',
                                  {"Content-Type": "text/plain", "Origin": site})
        assert status == 202 and answer["stored"] == 1
        assert _http(edge.port, "GET", "/api/metrics/snapshot")[0] == 404  # not exposed
        # a preflight from another origin: CORS is off, so no 204 that reads like a yes
        status, headers, answer = _http(edge.port, "OPTIONS", "/api/metrics/event",
                                        headers={"Origin": "https://elsewhere.example", **PREFLIGHT})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        big = b'{"visitor_id":"v","event":"x","metadata":{"s":"' + b"x" * 70_000 + b'"}}'
        status, _, answer = _http(edge.port, "POST", "/api/metrics/event", big, {"Content-Type": "text/plain"})
        assert status == 413 and answer["error"]["code"] == "body_too_large"
        statuses = [_http(edge.port, "POST", "/api/metrics/event", '{"visitor_id":"v3","event":"x"}',
                          {"Content-Type": "text/plain"})[:3:2] for _ in range(15)]
        limited = [answer for status, answer in statuses if status == 429]
        assert limited and limited[0]["error"]["code"] == "rate_limited"  # the edge's limit holds on this route
    finally:
        edge.stop()
        assert backend.stop() == 0
    visitors = {line.split('"visitor_id":"')[1].split('"')[0]
                for p in data_dir.glob("metrics-*.jsonl") for line in p.read_text().splitlines()}
    assert {"v1", "v2"} <= visitors


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_separate_origin_edge_answers_preflights_by_metrics_cors_origins(data_dir, tmp_path):
    backend = Server(data_dir, tmp_path / "serve.log", env={"METRICS_CORS_ORIGINS": "https://shop.example"})
    edge = Nginx(tmp_path / "nginx", backend.port)  # deploy/edge/nginx.conf as shipped: its own port
    try:
        status, headers, _ = _http(edge.port, "OPTIONS", "/api/metrics/event",
                                   headers={"Origin": "https://shop.example", **PREFLIGHT})
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"].lower() == "content-type"
        status, headers, answer = _http(edge.port, "POST", "/api/metrics/event",
                                        '{"visitor_id":"v1","event":"page_view"}',
                                        {"Content-Type": "application/json", "Origin": "https://shop.example"})
        assert status == 202 and answer["stored"] == 1
        assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
        status, headers, answer = _http(edge.port, "OPTIONS", "/api/metrics/event",
                                        headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        assert answer["error"]["code"] == "origin_not_allowed"
    finally:
        edge.stop()
        assert backend.stop() == 0


def test_the_rotator_healthchecks_of_compose_and_systemd_follow_the_status_file(tmp_path):
    """The healthcheck is green after a pass of the compose rotator's own command, red without a pass (serve
    moving the link used to keep the old check green with the rotator dead)."""
    data = tmp_path / "data"
    data.mkdir()
    check = compose()["services"]["metrics-rotator"]["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "metrics-ops"
    unit = (DEPLOY / "systemd" / "metrics-ops-rotate-check.service").read_text()
    systemd_check = re.search(r"^ExecStart=/usr/local/bin/metrics-ops (.*)$", unit, re.M)[1].split()
    assert systemd_check == check[2:]
    env = {**os.environ, "METRICS_DIR": str(data)}
    r = subprocess.run([*CLI, *check[2:]], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 7 and "no maintenance pass has recorded a status yet" in r.stderr
    rotator = compose()["services"]["metrics-rotator"]["command"][1:]
    r = subprocess.run([*CLI, *rotator, "--once", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*CLI, *check[2:]], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == r.stderr == ""


def merged_volumes(base: dict, override: dict, service: str) -> dict[str, str]:
    """Container path -> source after Compose merges an override (an entry for the same container path
    replaces the base's, as `docker compose -f a -f b` does)."""
    mounts = {}
    for doc in (base, override):
        for entry in doc["services"].get(service, {}).get("volumes", []):
            source, target = entry.split(":")[:2]
            mounts[target] = source
    return mounts


def test_compose_bind_mount_gives_backend_and_rotator_the_hosts_data_directory(tmp_path):
    bind = yaml.safe_load((DEPLOY / "docker-compose.bind.yml").read_text())
    base = compose()
    assert set(bind["services"]) == {"backend", "metrics-rotator"} and "volumes" not in bind
    for name in ("backend", "metrics-rotator"):
        mounts = merged_volumes(base, bind, name)
        assert (DEPLOY / mounts["/data"]).resolve() == ROOT / "data", name  # the checkout's data/, as before
        assert mounts["/opt/metrics-ops"] == ".."  # the code mount is kept
    assert base["x-metrics-ops"]["environment"]["METRICS_DIR"] == "/data"
    # One host directory for both commands: serve (the backend's command) writes, the rotator's pass sees it.
    host = tmp_path / "data"
    host.mkdir()
    backend = base["services"]["backend"]["command"][1:]
    assert backend == ["serve"]  # host and workers: the defaults (metrics-ops.env may set them)
    serve = Server(host, tmp_path / "serve.log")
    try:
        status, answer = serve.post_event({"visitor_id": "v_bind", "event": "page_view"})
    finally:
        assert serve.stop() == 0
    assert status == 202 and answer["stored"] == 1
    rotator = base["services"]["metrics-rotator"]["command"][1:]
    r = cli("--data-dir", host, *rotator, "--once", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    assert (host / "metrics.jsonl").resolve().name == answer["file"]
    assert "v_bind" in (host / answer["file"]).read_text()


def test_e2e_workflow_runs_on_metrics_paths_and_by_hand_and_keeps_the_logs_of_a_failure():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e-metrics.yml").read_text())
    assert "workflow_dispatch" in doc[True]  # yaml reads the key `on` as True
    jobs = doc["jobs"]
    filters = yaml.safe_load(jobs["changes"]["steps"][1]["with"]["filters"])["metrics"]
    assert {"metrics_ops/**", "deploy/**", "tests/**"} <= set(filters)
    e2e = jobs["e2e"]
    assert "needs.changes.outputs.metrics == 'true'" in e2e["if"] and "workflow_dispatch" in e2e["if"]
    scripts = "\n".join(step.get("run", "") for step in e2e["steps"])
    order = ["metrics-ops --data-dir", "/healthz", "/api/metrics/event", "/api/metrics/snapshot",
             "tests/test_browser.py"]
    assert [scripts.index(part) for part in order] == sorted(scripts.index(part) for part in order)
    [upload] = [s for s in e2e["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["if"] == "failure()" and "backend.log" in upload["with"]["path"]
    assert "browser-report.xml" in upload["with"]["path"]
