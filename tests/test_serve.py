"""Socket-level tests against a real `metrics-ops serve` process (granian, 2 workers) on 127.0.0.1."""

import json
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest

from .helpers import CLI, all_lines, cli, wait_healthy
from .serve_process import Connection, Server, free_port

GOOD = {"visitor_id": "v1", "event": "page_view", "metadata": {"path": "/"}}


@pytest.fixture
def server(data_dir, tmp_path):
    s = Server(data_dir, tmp_path / "serve.log")
    yield s
    assert s.stop() == 0, s.log


def test_event_round_trip_and_snapshot_is_the_same_on_every_worker(server):
    with server.connection() as conn:
        for i in range(10):
            status, body = server.post_event({**GOOD, "event": f"e{i}"}, conn)
            assert status == 202 and body["stored"] == 1
    seen = set()
    for _ in range(20):  # new connections land on either worker
        status, snap = server.request("GET", "/api/metrics/snapshot")
        assert status == 200
        assert [e["event"] for e in snap["events"]] == [f"e{i}" for i in range(10)]
        assert snap["counters"]["received"] == 10
        seen.add(json.dumps(snap["counters"], sort_keys=True))
    assert len(seen) == 1
    status, text = server.request("GET", "/metrics")
    assert b"metrics_ops_events_stored_total 10" in text


def _r(method, path, body=b"", headers=()):
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    if body is not None and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def _ev(extra: str) -> bytes:
    return ('{"visitor_id":"v1","event":"x"' + extra + "}").encode()


def _chunked(body: bytes, size=4096) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


JSON = "Content-Type: application/json"
E = "/api/metrics/event"
HOSTILE = {
    "oversize with content-length": _r("POST", E, b"x" * 70000, [JSON]),
    "oversize chunked": _r("POST", E, _chunked(b'{"a":"' + b"x" * 70000 + b'"}'), [JSON, "Transfer-Encoding: chunked"]),
    "content-length lies high": _r("POST", E, b"{}", [JSON, "Content-Length: 1000000000"]),
    "content-length not a number": _r("POST", E, b"{}", [JSON, "Content-Length: abc"]),
    "invalid utf-8": _r("POST", E, b'{"visitor_id":"v\xff\xfe","event":"x"}', [JSON]),
    "utf-8 bom": _r("POST", E, b"\xef\xbb\xbf" + _ev(""), [JSON]),
    "arrays 10000 deep": _r("POST", E, b"[" * 10000 + b"]" * 10000, [JSON]),
    "objects 10000 deep": _r("POST", E, b'{"a":' * 10000 + b"1" + b"}" * 10000, [JSON]),
    "metadata 10000 deep": _r("POST", E, _ev(',"metadata":' + '{"a":' * 10000 + "1" + "}" * 10000), [JSON]),
    "integer of 5000 digits": _r("POST", E, _ev(',"metadata":{"n":' + "9" * 5000 + "}"), [JSON]),
    "integer of 30 digits": _r("POST", E, _ev(',"metadata":{"n":123456789012345678901234567890}'), [JSON]),
    "NaN": _r("POST", E, _ev(',"metadata":{"n":NaN}'), [JSON]),
    "Infinity": _r("POST", E, _ev(',"metadata":{"n":Infinity}'), [JSON]),
    "-Infinity": _r("POST", E, _ev(',"metadata":{"n":-Infinity}'), [JSON]),
    "1e400": _r("POST", E, _ev(',"metadata":{"n":1e400}'), [JSON]),
    "duplicate top-level key": _r("POST", E, b'{"visitor_id":"v1","event":"x","event":"y"}', [JSON]),
    "duplicate key in metadata": _r("POST", E, _ev(',"metadata":{"a":1,"a":2}'), [JSON]),
    "duplicate key hidden by an escape": _r("POST", E, _ev(',"metadata":{"a:":1,"a\\u003a":2}'), [JSON]),
    "array body": _r("POST", E, b'[{"visitor_id":"v1","event":"x"}]', [JSON]),
    "number body": _r("POST", E, b"42", [JSON]),
    "null body": _r("POST", E, b"null", [JSON]),
    "empty body": _r("POST", E, b"", [JSON]),
    "whitespace body": _r("POST", E, b"  \r\n ", [JSON]),
    "trailing garbage": _r("POST", E, _ev("") + b"xyz", [JSON]),
    "CRLF in visitor_id": _r("POST", E, b'{"visitor_id":"v1\\r\\nX-Injected: 1","event":"x"}', [JSON]),
    "CRLF in metadata": _r("POST", E, _ev(',"metadata":{"s":"a\\r\\nb"}'), [JSON]),
    "NUL in metadata": _r("POST", E, _ev(',"metadata":{"s":"a\\u0000b"}'), [JSON]),
    "NUL in event name": _r("POST", E, b'{"visitor_id":"v1","event":"x\\u0000"}', [JSON]),
    "lone surrogate": _r("POST", E, _ev(',"metadata":{"s":"\\ud800"}'), [JSON]),
    "string of 2 KiB": _r("POST", E, _ev(',"metadata":{"s":"' + "x" * 2048 + '"}'), [JSON]),
    "51 keys": _r("POST", E, _ev(',"metadata":{' + ",".join(f'"k{i}":1' for i in range(51)) + "}"), [JSON]),
    "metadata 5 deep": _r("POST", E, _ev(',"metadata":{"a":{"b":{"c":{"d":{"e":1}}}}}'), [JSON]),
    "visitor_id 129 chars": _r("POST", E, b'{"visitor_id":"' + b"v" * 129 + b'","event":"x"}', [JSON]),
    "event with a space": _r("POST", E, b'{"visitor_id":"v1","event":"page view"}', [JSON]),
    "timestamp object": _r("POST", E, _ev(',"timestamp":{"t":1}'), [JSON]),
    "metadata true": _r("POST", E, _ev(',"metadata":true'), [JSON]),
    "text/html": _r("POST", E, _ev(""), ["Content-Type: text/html"]),
    "form encoded": _r("POST", E, b"visitor_id=v1&event=x", ["Content-Type: application/x-www-form-urlencoded"]),
    "no content type": _r("POST", E, _ev(""), []),
    "PUT": _r("PUT", E, _ev(""), [JSON]),
    "DELETE on snapshot": _r("DELETE", "/api/metrics/snapshot", None, []),
    "path traversal": _r("GET", "/../../etc/passwd", None, []),
    "batch of 101": _r("POST", "/api/metrics/events", json.dumps([GOOD] * 101).encode(), [JSON]),
    "batch not an array": _r("POST", "/api/metrics/events", _ev(""), [JSON]),
}


def test_hostile_inputs_are_4xx_the_server_stays_healthy_and_nothing_is_written(server, data_dir):
    assert len(HOSTILE) >= 30
    answers = {name: server.raw(data) for name, data in HOSTILE.items()}
    wrong = {name: status for name, status in answers.items() if not 400 <= status < 500}
    assert not wrong, wrong
    assert server.request("GET", "/healthz")[0] == 200
    assert server.post_event(GOOD)[0] == 202  # still serving
    assert [json.loads(line)["event"] for line in all_lines(data_dir)] == ["page_view"]


def test_privacy_no_header_value_reaches_disk_or_log(data_dir, tmp_path):
    s = Server(data_dir, tmp_path / "serve.log", "--log-level", "debug")
    markers = {"X-Forwarded-For": "203.0.113.77", "User-Agent": "MarkerAgent/9.9", "Cookie": "sid=MarkerCookie42",
               "X-Real-IP": "198.51.100.66", "Referer": "https://marker-referer.example/"}
    try:
        # from a client address of its own (127.0.0.2), so that the address itself is a marker too
        with Connection("127.0.0.1", s.port, timeout=10, source_address=("127.0.0.2", 0)) as conn:
            for path in ("/api/metrics/event", "/api/metrics/events"):
                body = json.dumps(GOOD if path.endswith("event") else [GOOD])
                status, _ = s.request("POST", path, body, {"Content-Type": "text/plain", **markers}, conn)
                assert status == 202
            s.request("POST", "/api/metrics/event", "{bad", {"Content-Type": "application/json", **markers}, conn)
            s.request("GET", "/api/metrics/snapshot", None, markers, conn)
    finally:
        assert s.stop() == 0
    log = s.log
    assert "/api/metrics/event 202" in log  # the access log is on at debug ...
    blobs = [p.read_bytes() for p in data_dir.rglob("*") if p.is_file()]
    for value in [*markers.values(), "127.0.0.2"]:  # ... and holds no address, agent, cookie or referer
        assert value not in log, value
        for blob in blobs:
            assert value.encode() not in blob, value


def test_no_loss_under_concurrent_clients(data_dir, tmp_path):
    s = Server(data_dir, tmp_path / "serve.log", "--sample-rate", "0.5", "--max-mb", "0.05")
    stored, answered = Counter(), Counter()
    lock = threading.Lock()

    def client(cid):
        with s.connection() as conn:
            for n in range(150):
                status, body = s.post_event({"visitor_id": f"c{cid}", "event": "tick", "metadata": {"n": n}}, conn)
                with lock:
                    answered[status] += 1
                    if status == 202 and body["stored"] == 1:
                        stored[(f"c{cid}", n)] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.stop() == 0
    assert answered == Counter({202: 12 * 150})
    parsed = [json.loads(line) for line in all_lines(data_dir)]
    on_disk = Counter((p["visitor_id"], p["metadata"]["n"]) for p in parsed)
    assert on_disk == stored
    assert 0.35 < sum(stored.values()) / (12 * 150) < 0.65  # sampling at 0.5 really dropped some
    assert len(list(data_dir.glob("metrics-*.jsonl"))) > 1  # and the writers cut shards


def test_sigterm_lets_requests_in_flight_finish(data_dir, tmp_path):
    s = Server(data_dir, tmp_path / "serve.log")
    stored = []
    errors = []
    go = threading.Event()

    def client(cid):
        try:
            with s.connection() as conn:
                go.wait()
                for n in range(400):
                    status, body = s.post_event({"visitor_id": f"c{cid}", "event": "tick", "metadata": {"n": n}},
                                                conn)
                    if status == 202 and body["stored"]:
                        stored.append((f"c{cid}", n))
        except Exception as exc:  # the server going away ends a client
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    go.set()
    threading.Event().wait(0.3)
    code = s.stop(signal.SIGTERM)
    for t in threads:
        t.join()
    assert code == 0, s.log
    assert "Traceback" not in s.log
    on_disk = [(json.loads(line)["visitor_id"], json.loads(line)["metadata"]["n"]) for line in all_lines(data_dir)]
    assert sorted(on_disk) == sorted(stored)  # every 202 stored=1 the clients got is on disk, nothing else
    assert stored


def test_port_in_use_is_one_line(data_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("--data-dir", data_dir, "serve", "--port", port, timeout=30)
    assert r.returncode == 1
    assert r.stderr == f"metrics-ops: port {port} on 127.0.0.1 is already in use (--port / METRICS_PORT)\n"


def test_unwritable_data_dir_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a directory")
    r = cli("--data-dir", target / "data", "serve", "--port", free_port(), timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith(f"metrics-ops: cannot create data directory {target / 'data'}: ")
    assert len(r.stderr.splitlines()) == 1


def test_bad_setting_is_exit_2_before_anything_starts(data_dir):
    r = cli("--data-dir", data_dir, "serve", "--workers", "0", timeout=30)
    assert r.returncode == 2
    assert r.stderr == "metrics-ops: --workers 0 (from the command line): input should be greater than or equal to 1\n"


def test_serve_says_once_where_it_listens_and_writes_and_nothing_of_clients(tmp_path):
    import time
    import urllib.request

    port, data = free_port(), tmp_path / "new" / "data"
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--data-dir",
                             "new/data", "--workers", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/metrics/event", method="POST",
                                     data=b'{"visitor_id":"ReadyMarkerVisitor","event":"page_view"}',
                                     headers={"Content-Type": "text/plain", "User-Agent": "ReadyMarkerAgent"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 202
        time.sleep(0.3)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    # the default log level: exactly one line, on stderr; the directory absolute, as it will be used
    assert err == f"metrics-ops: serve ready on http://127.0.0.1:{port} (data directory {data}, 1 worker)\n"
    assert out == ""


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_the_wsgi_module_builds_nothing_at_import_and_its_factory_says_a_bad_setting_in_one_line(data_dir):
    """Importing the target must not load settings (a WSGI server or a test may import it first); the
    factory and the older `metrics_ops.wsgi:app` attribute build the app and refuse bad settings with exit 2."""
    import os

    env = {**os.environ, "METRICS_DIR": str(data_dir), "METRICS_SAMPLE_RATE": "2"}
    imported = _python("import metrics_ops.serve.wsgi, metrics_ops.wsgi; print('imported')", env)
    assert (imported.returncode, imported.stdout.strip(), imported.stderr) == (0, "imported", "")
    for target in ("from metrics_ops.serve.wsgi import create_app; create_app()",
                   "from metrics_ops.wsgi import app"):
        failed = _python(target, env)
        assert failed.returncode == 2, failed.stderr
        [line] = failed.stderr.splitlines()
        assert line.startswith("metrics-ops: METRICS_SAMPLE_RATE") and "2" in line
    built = _python("from metrics_ops.wsgi import app; print(callable(app), app.store.dir)",
                    {**env, "METRICS_SAMPLE_RATE": "0.5"})
    assert built.stdout.split() == ["True", str(data_dir)], built.stderr
