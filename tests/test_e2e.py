"""End to end over real processes: nginx (deploy/edge/nginx.conf) -> metrics-ops serve -> JSONL files ->
rotate with tiny shards -> gzip -> prune, across 31 simulated days.

serve and rotate run under libfaketime (Debian package faketime) reading the fake date from a file that the test
rewrites, so one serve process lives through a month; nginx keeps the real clock, as an edge would.
"""

import gzip
import http.client
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from .edge import Nginx, nginx_binary
from .helpers import cli
from .serve_process import LIBFAKETIME, Server

START = date(2026, 1, 1)
DAYS = 31
PER_DAY = 3


def set_clock(path: Path, text: str) -> None:
    """Atomically: libfaketime rereads the file on every clock call, and a half-written file reads as "no fake
    time", which would put an event on today's real date."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


@pytest.mark.slow
@pytest.mark.skipif(nginx_binary() is None or LIBFAKETIME is None,
                    reason="needs nginx and faketime (apt-get install nginx faketime; .ci/run installs both)")
def test_pipeline_over_31_simulated_days(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    data = tmp_path / "data"
    data.mkdir()
    clock = tmp_path / "fake-now"
    set_clock(clock, f"{START} 12:00:00")
    fake = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    backend = Server(data, tmp_path / "serve.log", "--max-mb", "0.0002", env=fake)
    edge = Nginx(tmp_path / "nginx", backend.port)
    stored: dict[str, list[tuple[str, int]]] = {}
    limited = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        next_send = time.monotonic()
        for d in range(DAYS):
            day = START + timedelta(days=d)
            set_clock(clock, f"{day} 12:00:00")
            for n in range(PER_DAY):
                time.sleep(max(0.0, next_send - time.monotonic()))
                next_send = time.monotonic() + 0.21  # under the edge's 5 r/s
                body = json.dumps({"visitor_id": f"e2e-{d}", "event": "page_view", "metadata": {"n": n}})
                conn.request("POST", "/api/metrics/event", body, {"Content-Type": "text/plain"})
                r = conn.getresponse()
                answer = json.loads(r.read())
                if r.status == 429:
                    limited += 1
                    continue
                assert r.status == 202, answer
                assert answer["file"].startswith(f"metrics-{day}")  # the receive day decides the file
                if answer["stored"] == 1:
                    stored.setdefault(str(day), []).append((f"e2e-{d}", n))
            if d == 15:  # the burst: nginx must refuse exactly where the limit_req model says
                time.sleep(2.3)  # (burst + 1) / rate: the bucket forgets the paced traffic
                probe = cli("probe", edge.url(), "--requests", "20", "--expect-rate", "5", "--expect-burst", "10",
                            "--json", timeout=60)
                assert probe.returncode == 0, probe.stdout + probe.stderr
                doc = json.loads(probe.stdout)
                assert doc["expectation"]["match"]  # the model, fed the real send times, within tolerance 1
                assert 11 <= doc["passed"] <= 13  # 11 and #12 when the sends are quick
                probe_passed = doc["passed"]
                stored[str(day)] += [("probe", i) for i in range(probe_passed)]
                time.sleep(2.3)
                big = b'{"visitor_id":"v","event":"x","metadata":{"s":"' + b"x" * 70_000 + b'"}}'
                c2 = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
                c2.request("POST", "/api/metrics/event", big, {"Content-Type": "application/json"})
                r = c2.getresponse()
                assert r.status == 413 and json.loads(r.read())["error"]["code"] == "body_too_large"
                c2.close()
                next_send = time.monotonic() + 0.21
            rotate = cli("--data-dir", data, "rotate", "--once", "-q", "--max-mb", "0.0002", "--gzip-after", "3",
                         "--retention", "30", env=fake, timeout=60)
            assert rotate.returncode == 0, rotate.stderr
        set_clock(clock, f"{START + timedelta(days=DAYS)} 00:30:00")  # after 31 simulated days
        rotate = cli("--data-dir", data, "rotate", "--once", "--json", "--max-mb", "0.0002", "--gzip-after", "3",
                     "--retention", "30", env=fake, timeout=60)
        assert rotate.returncode == 0, rotate.stderr
        conn.close()
    finally:
        edge.stop()
        assert backend.stop() == 0, backend.log
    assert limited == 0  # paced traffic never met the limit

    today = START + timedelta(days=DAYS)
    pruned = {str(today - timedelta(days=age)) for age in (30, 31)}
    assert pruned == {"2026-01-01", "2026-01-02"}
    names = sorted(p.name for p in data.iterdir() if p.name.startswith("metrics-"))
    assert not [n for n in names if n[8:18] in pruned]  # retention removed exactly those days
    plain_days = {n[8:18] for n in names if n.endswith(".jsonl")}
    assert plain_days == {"2026-01-30", "2026-01-31", "2026-02-01"}  # younger than --gzip-after
    assert any(".1.jsonl" in n for n in names)  # the tiny --max-mb cut shards
    assert os.readlink(data / "metrics.jsonl") == "metrics-2026-02-01.jsonl"
    archives = [str(data / n) for n in names if n.endswith(".gz")]
    assert subprocess.run(["gzip", "-t", *archives]).returncode == 0

    found: Counter = Counter()
    for n in names:
        raw = (data / n).read_bytes()
        text = gzip.decompress(raw).decode() if n.endswith(".gz") else raw.decode()
        for line in text.splitlines():
            rec = json.loads(line)
            who = "probe" if rec["event"] == "ratelimit_probe" else rec["visitor_id"]
            key = (who, rec["metadata"]["n"]) if who != "probe" else ("probe", None)
            found[(n[8:18], key)] += 1
    expected: Counter = Counter()
    for day, events in stored.items():
        if day in pruned:
            continue
        for who, n in events:
            expected[(day, (who, n) if who != "probe" else ("probe", None))] += 1
    assert found == expected  # every stored=1 answer exactly once, nothing else
    assert sum(expected.values()) == (DAYS - 2) * PER_DAY + probe_passed
    shutil.rmtree(tmp_path / "nginx", ignore_errors=True)
