"""What the network can see of serve (issue 18 item 18): the operator routes (the snapshot and /metrics) answer
loopback peers or the admin token only, the snapshot shows no raw visitor id, /healthz answers a reason code
(never a path or a setting), and a serve bound beyond loopback says so."""

import json
import logging
import re
import socket

import pytest

from metrics_ops.config import load_settings
from metrics_ops.serve import make_app
from metrics_ops.serve.routes import HEALTH_REASONS

from .serve_process import Server
from .wsgi_client import call

SNAPSHOT, METRICS, EVENT = "/api/metrics/snapshot", "/metrics", "/api/metrics/event"
TOKEN = "0123456789abcdef-admin-token"


@pytest.fixture
def app(data_dir):
    return make_app(load_settings({"dir": str(data_dir)}))


def _event(visitor: str, **metadata) -> str:
    return json.dumps({"visitor_id": visitor, "event": "page_view", "metadata": metadata})


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_read_the_operator_routes(app, peer):
    for path in (SNAPSHOT, METRICS):
        assert call(app, "GET", path, peer=peer).status == 200
        assert call(app, "HEAD", path, peer=peer).status == 200


@pytest.mark.parametrize("peer", ["192.0.2.7", "10.0.0.5", "2001:db8::1", "::ffff:192.0.2.7", "", None])
def test_other_peers_get_403_and_no_counters_but_events_and_health_still_work(app, data_dir, peer):
    assert call(app, "POST", EVENT, _event("v1"), peer=peer).status == 202  # the event routes answer everyone
    assert call(app, "GET", "/healthz", peer=peer).status == 200
    for path in (SNAPSHOT, METRICS):
        r = call(app, "GET", path, peer=peer)
        assert r.status == 403 and r.json["error"]["code"] == "forbidden"
        assert b"counters" not in r.body and b"v1" not in r.body and b"metrics_ops_" not in r.body
        assert call(app, "HEAD", path, peer=peer).status == 403


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded", "X-Forwarded-Proto",
                                    "X-Forwarded-Host"])
def test_a_request_a_proxy_forwarded_is_not_a_loopback_peers_own(app, header):
    """The edge connects from loopback: what it passes on carries its forwarding headers, and is refused."""
    for path in (SNAPSHOT, METRICS):
        r = call(app, "GET", path, headers={header: "203.0.113.9"})
        assert r.status == 403 and r.json["error"]["code"] == "forbidden"


def test_with_an_admin_token_every_peer_needs_it(data_dir):
    app = make_app(load_settings({"dir": str(data_dir), "admin_token": TOKEN}))
    for path in (SNAPSHOT, METRICS):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
            r = call(app, "GET", path, headers=headers)  # from loopback too: the edge is a loopback peer
            assert r.status == 401 and r.json["error"]["code"] == "unauthorized", headers
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="metrics-ops"'
            assert TOKEN not in r.body.decode()
        for scheme in ("Bearer", "bearer"):
            for peer in ("127.0.0.1", "192.0.2.7"):
                r = call(app, "GET", path, headers={"Authorization": f"{scheme} {TOKEN}"}, peer=peer)
                assert r.status == 200
    assert call(app, "POST", EVENT, _event("v1"), peer="192.0.2.7").status == 202


def test_the_snapshot_never_shows_a_raw_visitor_id(data_dir):
    settings = load_settings({"dir": str(data_dir)})
    worker1, worker2 = make_app(settings), make_app(settings)  # two workers, one state file
    assert call(worker1, "POST", EVENT, _event("alice-4f1c9e")).json["stored"] == 1
    assert call(worker2, "POST", EVENT, _event("alice-4f1c9e")).json["stored"] == 1
    assert call(worker1, "POST", EVENT, _event("bob-77aa31")).json["stored"] == 1
    # a record over the ring's slot is kept as a summary: it too shows no id
    assert call(worker2, "POST", EVENT, _event("carol-0d2b8f", a="x" * 1000, b="y" * 1000)).json["stored"] == 1
    bodies = [call(w, "GET", SNAPSHOT).body for w in (worker1, worker2)]
    for body in bodies:
        text = body.decode()
        for visitor in ("alice", "bob", "carol"):
            assert visitor not in text
        events = json.loads(body)["events"]
        tags = [e["visitor"] for e in events]
        assert all(re.fullmatch(r"[0-9a-f]{12}", t) for t in tags) and "visitor_id" not in events[0]
        assert tags[0] == tags[1] and len(set(tags)) == 3  # the same visitor, the same tag; others differ
        assert events[3]["truncated"] is True
    assert bodies[0] == bodies[1]  # every worker shows the same tags
    stored = [json.loads(line) for p in data_dir.glob("metrics-*.jsonl") for line in p.read_text().splitlines()]
    assert [r["visitor_id"] for r in stored] == ["alice-4f1c9e", "alice-4f1c9e", "bob-77aa31", "carol-0d2b8f"]


def _assert_reason_only(r, code: str, data_dir) -> None:
    assert r.status == 503
    assert r.json == {"ok": False, "reason": code, "message": HEALTH_REASONS[code]}
    text = r.body.decode()
    assert str(data_dir) not in text and "/" not in text and "METRICS_" not in text and "MiB" not in text


def test_healthz_names_a_reason_code_and_the_details_go_to_the_snapshot_and_the_log(data_dir, caplog):
    caplog.set_level(logging.WARNING, "metrics_ops.serve")
    low = make_app(load_settings({"dir": str(data_dir), "serve_min_free_mb": 1e9}))  # more than any disk has
    _assert_reason_only(call(low, "GET", "/healthz"), "low_space", data_dir)
    health = call(low, "GET", SNAPSHOT).json["health"]
    assert health["ok"] is False and health["reason"] == "low_space"
    assert "(METRICS_SERVE_MIN_FREE_MB)" in health["detail"]
    call(low, "GET", "/healthz")
    assert [m for m in caplog.messages if "/healthz 503" in m] == [  # the details, once per change
        f"/healthz 503 low_space: {health['detail']}"]

    app = make_app(load_settings({"dir": str(data_dir)}))
    assert call(app, "GET", SNAPSHOT).json["health"] == {"ok": True, "reason": None, "detail": None}
    moved = data_dir.rename(data_dir.with_name("moved"))
    _assert_reason_only(call(app, "GET", "/healthz"), "data_dir_missing", data_dir)
    assert f"data directory {data_dir} does not exist" in caplog.text
    data_dir.write_text("a file where the directory was")
    _assert_reason_only(call(app, "GET", "/healthz"), "data_dir_not_a_directory", data_dir)
    data_dir.unlink()
    moved.rename(data_dir)
    assert call(app, "GET", "/healthz").status == 200


def _own_address() -> str | None:
    """This machine's address on its outward interface (not loopback), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # a UDP connect sends nothing: it only picks the route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def _get(host: str, port: int, path: str, headers: dict | None = None) -> int:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_serve_bound_beyond_loopback_warns_once_and_refuses_remote_peers(data_dir, tmp_path):
    own = _own_address()
    if own is None:
        pytest.skip("no non-loopback address on this machine")
    server = Server(data_dir, tmp_path / "serve.log", "--host", "0.0.0.0")
    try:
        assert server.post_event({"visitor_id": "v1", "event": "page_view"})[0] == 202
        assert _get("127.0.0.1", server.port, METRICS) == 200  # loopback: the operator's own tools
        assert _get(own, server.port, METRICS) == 403  # the peer is this machine's outward address
        assert _get(own, server.port, SNAPSHOT) == 403
        assert _get(own, server.port, "/healthz") == 200
    finally:
        assert server.stop() == 0
    warnings = [line for line in server.log.splitlines() if "warning" in line]
    assert warnings == ["metrics-ops: warning: serve listens on 0.0.0.0, which other machines can reach: keep it "
                        "behind the edge (nginx) or a firewall; the snapshot and /metrics still answer loopback "
                        "peers only (--host / METRICS_HOST)"]


def test_serve_on_loopback_says_nothing_and_a_token_reaches_it_from_anywhere(data_dir, tmp_path, run):
    server = Server(data_dir, tmp_path / "serve.log", env={"METRICS_ADMIN_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert server.post_event({"visitor_id": "v1", "event": "page_view"})[0] == 202
        assert _get("127.0.0.1", server.port, METRICS) == 401
        assert _get("127.0.0.1", server.port, METRICS, {"Authorization": f"Bearer {TOKEN}"}) == 200
        # status sends the token it is configured with, and says so when it has none
        with_token = run("--data-dir", data_dir, "status", "--json", "--url", url, env={"METRICS_ADMIN_TOKEN": TOKEN})
        without = run("--data-dir", data_dir, "status", "--url", url)
    finally:
        assert server.stop() == 0
    assert "warning" not in server.log
    assert json.loads(with_token.stdout)["serve"]["counters"]["stored"] == 1
    assert without.exit_code == 7 and f"serve at {url}: /metrics answered 401" in without.stderr


def test_status_shows_what_healthz_keeps_to_itself(data_dir, tmp_path, run):
    # the state file outside the data directory, so the snapshot answers while the directory is gone
    server = Server(data_dir, tmp_path / "serve.log", env={"METRICS_STATE_FILE": str(tmp_path / "serve.state")})
    url = f"http://127.0.0.1:{server.port}"
    try:
        moved = data_dir.rename(tmp_path / "moved")
        (tmp_path / "local").mkdir()  # status's own directory is fine: only serve's answer needs attention
        r = run("--data-dir", tmp_path / "local", "status", "--json", "--url", url)
        moved.rename(data_dir)
    finally:
        assert server.stop() == 0
    assert r.exit_code == 7
    attention = json.loads(r.stdout)["attention"]
    assert (f"serve at {url}: /healthz 503 (data_dir_missing): data directory {data_dir} does not exist"
            in attention)


OPERATOR_SPELLINGS = ["/metrics", "/metrics/", "/metrics?x=1", "/METRICS", "/%6detrics", "/metrics.js/../metrics",
                      "/api/metrics/snapshot", "/api/metrics/snapshot/", "/api/metrics//snapshot",
                      "/api/metrics/%73napshot", "/api/metrics/event/../snapshot", "/api/metrics/events/../../metrics",
                      "/api/metrics/snapshot/..%2Fevent", "/api/metrics/snapshot%3F/../event", "/healthz/../metrics"]


@pytest.mark.parametrize("config", ["nginx.conf", "site-same-origin.conf"])
def test_the_shipped_edges_never_pass_the_operator_routes(data_dir, tmp_path, config):
    """serve trusts a loopback peer, and the edge is one: the edge itself must not pass these routes on."""
    from .edge import SHIPPED, Nginx, nginx_binary

    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    backend = Server(data_dir, tmp_path / "serve.log", "--log-level", "debug")
    (tmp_path / "nginx" / "site").mkdir(parents=True)
    edge = Nginx(tmp_path / "nginx", backend.port, SHIPPED.with_name(config))
    try:
        assert _get("127.0.0.1", backend.port, METRICS) == 200  # on serve's own port, from loopback: answered
        import http.client

        for path in OPERATOR_SPELLINGS:
            conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            assert response.status != 200 and b"metrics_ops_" not in body and b"counters" not in body, path
    finally:
        edge.stop()
        assert backend.stop() == 0
    # what reached serve (its access log): an edge passes a raw path on when it normalises to an event route
    # (/api/metrics/snapshot/..%2Fevent); serve matches routes exactly, so that is a 404, never the snapshot
    reached = [(p, int(c)) for p, c in re.findall(r"metrics_ops\.access: GET (\S+) (\d+) ", backend.log)
               if p != "/healthz"]
    assert reached[0] == (METRICS, 200) and all(code == 404 for _, code in reached[1:]), reached
