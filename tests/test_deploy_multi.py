"""The multi-host example as operators copy it (issue 20 item 7): deploy/docker-compose.multi.yml, its env files
and deploy/edge/nginx-multi.conf. nginx -t on the shipped upstream, the compose services consistent with each
other and with the single-host files, settings only from env files, credentials only the AWS way, and a real nginx
spreading real traffic over three real serves (each with its own data directory and host id)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from metrics_ops.objectstore import host_id_problem, parse_archive_url

from .edge import MULTI, SHIPPED, nginx_binary, render
from .helpers import CLI
from .multihost import (
    ARCHIVE_EXAMPLE,
    DEPLOY,
    ROOT,
    Site,
    archive_env_text,
    compose_multi,
    env_lines,
    host_env,
    host_names,
    stored_lines,
)
from .serve_process import free_port
from .test_deploy_settings import setting_flags

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")


@needs_nginx
def test_shipped_multi_host_nginx_config_passes_nginx_t(tmp_path):
    conf = render(tmp_path, free_port(), [f"127.0.0.1:{free_port()}" for _ in host_names()], MULTI)
    r = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr


def _body(text: str) -> tuple[str, str]:
    """(the config without its header comment and its upstream block, the upstream block)"""
    text = text[text.index("\nlimit_req_zone"):]
    upstream = re.search(r"\n(?:#[^\n]*\n)*upstream metrics_backend \{.*?\n\}\n", text, re.S)
    return text.replace(upstream[0], "\n"), upstream[0]


def test_multi_host_nginx_config_is_the_single_host_one_with_an_upstream_of_three():
    single, single_upstream = _body(SHIPPED.read_text())
    multi, upstream = _body(MULTI.read_text())
    assert multi == single  # every location, limit and privacy rule: the same (no drift between the two)
    servers = re.findall(r"^    server (\S+)(.*);$", upstream, re.M)
    assert [s for s, _ in servers] == [f"{name}:8001" for name in host_names()]  # the compose file's serves
    assert all(opts == " max_fails=3 fail_timeout=10s" for _, opts in servers)
    assert "keepalive 16;" in upstream and "non_idempotent" not in MULTI.read_text().replace("`non_idempotent`", "")


def test_multi_compose_gives_each_host_a_serve_and_a_rotator_sharing_its_own_volume_and_env_files():
    doc = compose_multi()
    services = doc["services"]
    names = host_names()
    assert names == ["web-1", "web-2", "web-3"]
    assert set(services) == {"edge", *names, *(f"{n}-rotator" for n in names)}
    assert set(doc["volumes"]) == {f"{n}-data" for n in names}
    edge = services["edge"]
    assert (DEPLOY / edge["volumes"][0].split(":")[0]).resolve() == MULTI
    assert edge["ports"] == ["8080:8080"] and set(edge["depends_on"]) == set(names)
    for name in names:
        serve, rotator = services[name], services[f"{name}-rotator"]
        assert serve["command"] == ["metrics-ops", "serve"] and rotator["command"] == ["metrics-ops", "rotate"]
        assert "ports" not in serve  # only the edge is published
        assert serve["env_file"] == rotator["env_file"] == ["metrics-ops.env", "archive.env", f"multi/{name}.env"]
        assert serve["volumes"] == rotator["volumes"] == ["..:/opt/metrics-ops:ro", f"{name}-data:/data"]
        for svc in (serve, rotator):
            assert svc["environment"] == {"METRICS_DIR": "/data", "PYTHONPATH": "/opt/metrics-ops"}
            assert svc["restart"] == "unless-stopped" and "healthcheck" in svc
        # the same healthcheck as the single-host rotator (the status file every pass writes)
        full = yaml_full()["services"]
        assert rotator["healthcheck"]["test"] == full["metrics-rotator"]["healthcheck"]["test"]
        assert serve["healthcheck"]["test"] == full["backend"]["healthcheck"]["test"]


def yaml_full() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "docker-compose.full.yml").read_text())


def test_multi_host_ids_are_distinct_valid_and_the_only_per_host_difference():
    per_host = {name: env_lines((DEPLOY / "multi" / f"{name}.env").read_text()) for name in host_names()}
    ids = [env["METRICS_HOST_ID"] for env in per_host.values()]
    assert len(set(ids)) == len(ids) and all(host_id_problem(i) is None for i in ids)
    assert all(set(env) == {"METRICS_HOST_ID", "METRICS_HOST"} for env in per_host.values())
    shared = env_lines((DEPLOY / "metrics-ops.env").read_text())
    assert not set(shared) & {"METRICS_HOST_ID", "METRICS_ARCHIVE_URL"}  # never one id for every host


def test_credentials_come_the_aws_way_and_never_into_git_nor_our_settings():
    example = env_lines(ARCHIVE_EXAMPLE.read_text())
    assert set(example) == {"METRICS_ARCHIVE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    parse_archive_url(example["METRICS_ARCHIVE_URL"])  # a URL the setting takes
    assert "# AWS_ENDPOINT_URL=" in ARCHIVE_EXAMPLE.read_text()  # for S3-compatible servers
    for path in [DEPLOY / "metrics-ops.env", *(DEPLOY / "multi").glob("*.env")]:
        assert not [k for k in env_lines(path.read_text()) if k.startswith("AWS_")], path
    for svc in compose_multi()["services"].values():
        assert not [k for k in svc.get("environment", {}) if k.startswith("AWS_")]
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "deploy/archive.env"])
    assert r.returncode == 0, "deploy/archive.env (the operator's credentials) must be ignored by git"
    from metrics_ops.config import Settings

    assert not [f for f in Settings.fields if "secret" in f or "access_key" in f or "endpoint" in f]


def test_no_multi_host_command_sets_a_setting_by_flag():
    commands = {}
    for name, svc in compose_multi()["services"].items():
        if svc.get("command"):
            commands[name] = svc["command"][1:]
            commands[f"{name} healthcheck"] = svc["healthcheck"]["test"][2:]
    assert len(commands) == 12
    assert {name: setting_flags(argv) for name, argv in commands.items()} == {name: [] for name in commands}


def test_each_host_of_the_compose_file_has_its_own_id_and_the_shared_archive(tmp_path):
    """`metrics-ops config show` in the environment Compose gives each rotator: the host id from its own file,
    the archive URL from archive.env, everything else from metrics-ops.env; no credential shown."""
    archive = archive_env_text("s3://metrics/site-a", {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                                                       "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-shown",
                                                       "AWS_REGION": "eu-central-1"})
    for name in host_names():
        env = host_env(f"{name}-rotator", tmp_path / name, free_port(), archive)
        r = subprocess.run([*CLI, "config", "show", "--json"], env={"PATH": "/usr/bin:/bin", **env},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["host_id"]["value"] == name and doc["host_id"]["source"] == "environment"
        assert doc["archive_url"]["value"] == "s3://metrics/site-a"
        assert doc["retention"]["value"] == 30 and doc["gzip_after"]["value"] == 3
        assert "s3cr3t-never-shown" not in r.stdout + r.stderr


@needs_nginx
def test_the_edge_spreads_events_over_the_three_serves_and_skips_a_stopped_one(tmp_path):
    """Real nginx (nginx-multi.conf) over three real serves, each in the environment of its compose service:
    every event stored exactly once, on one host; every host gets its share; with web-2 stopped, the events go
    to the other two and none is lost."""
    site = Site(tmp_path, archive_env_text(None, None))
    sent: list[tuple[str, int]] = []
    try:
        conn = site.connection()
        for n in range(30):
            status, answer = site.post(conn, {"visitor_id": f"v{n % 7}", "event": "page_view", "metadata": {"n": n}})
            assert status == 202 and answer["stored"] == 1, answer
            sent.append((f"v{n % 7}", n))
        conn.close()
        assert site.hosts[1].serve.stop() == 0
        before = stored_lines(site.hosts[1])
        conn = site.connection()
        for n in range(30, 42):
            status, answer = site.post(conn, {"visitor_id": "after", "event": "page_view", "metadata": {"n": n}})
            assert status == 202 and answer["stored"] == 1, answer
            sent.append(("after", n))
        conn.close()
    finally:
        assert site.stop() == [0, 0, 0]
    per_host = [stored_lines(h) for h in site.hosts]
    assert per_host[1] == before  # the stopped host got nothing more
    assert all(sum(c.values()) >= 5 for c in per_host)  # round robin: about 10 each of the first 30
    total = sum(per_host, start=type(per_host[0])())
    assert total == {key: 1 for key in sent}  # each stored line on exactly one host, nothing else
    assert all(max(c.values()) == 1 for c in per_host)


def test_the_image_has_the_s3_extra_for_the_archive():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir "/build[s3]"' in dockerfile
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("boto3") for r in extras["s3"])


def test_the_deployment_docs_name_the_shipped_files_and_their_upstream():
    from .helpers import doc_section

    section = doc_section("deployment.md", "From one host to three, with an archive")
    for path in set(re.findall(r"\bdeploy/[\w./-]+[\w]", section)):
        assert (ROOT / path).exists() or path == "deploy/archive.env", path  # the operator makes that one
    [block] = re.findall(r"```nginx\n(.*?)```", section, re.S)
    _, shipped = _body(MULTI.read_text())
    shipped_lines = [line for line in shipped.strip().splitlines() if not line.startswith("#")]
    documented = re.sub(r"server 10\.0\.0\.1(\d):8001", lambda m: f"server web-{m[1]}:8001", block).strip()
    assert documented.splitlines() == shipped_lines  # the same upstream, with the hosts' addresses
    for command in ("metrics-ops archive --dry-run", "metrics-ops status", "METRICS_HOST_ID=web-1",
                    "docker compose -f deploy/docker-compose.multi.yml up -d --build"):
        assert command in section, command
