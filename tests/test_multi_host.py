"""Three hosts end to end (issue 20, "Tested against a real S3 server"): three real serves behind a real nginx
upstream (deploy/edge/nginx-multi.conf), each in the environment deploy/docker-compose.multi.yml gives it (its
own data directory and host id), taking traffic over two simulated days; then each host's pass, days later,
compresses and archives its closed days to a real S3 server (SeaweedFS); `report` and `export` across the bucket
count every `stored: 1` answer exactly once (and DuckDB over the downloaded objects agrees); `forget` on one
host removes a visitor from every host's objects, and the other hosts' next pass takes the rewritten objects.

Loopback only. serve and every pass run under libfaketime reading the date from one file the test rewrites
(as tests/test_e2e.py does); nginx and the S3 server keep the real clock.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from .edge import nginx_binary
from .multihost import Site, archive_env_text, stored_lines
from .serve_process import LIBFAKETIME

DAYS = [date(2026, 3, 2), date(2026, 3, 3)]
PER_DAY = 45
FORGET = "forget-me"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    nginx_binary() is None or LIBFAKETIME is None,
    reason="needs nginx and faketime (apt-get install nginx faketime; .ci/run installs both)")]


def set_clock(path: Path, text: str) -> None:
    """Atomically: libfaketime rereads the file on every clock call (FAKETIME_NO_CACHE)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def traffic(site: Site, clock: Path) -> Counter:
    """PER_DAY events on each of DAYS through the edge; -> (visitor, n) of every `stored: 1` answer."""
    stored: Counter = Counter()
    n = 0
    for day in DAYS:
        set_clock(clock, f"{day} 12:00:00")
        conn = site.connection()
        for i in range(PER_DAY):
            visitor = FORGET if i % 9 == 4 else f"v{i % 11}"
            status, answer = site.post(conn, {"visitor_id": visitor, "event": "page_view", "metadata": {"n": n}})
            assert status == 202, answer
            assert answer["file"].startswith(f"metrics-{day}")  # the (fake) receive day decides the file
            if answer["stored"] == 1:
                stored[(visitor, n)] += 1
            n += 1
        conn.close()
    return stored


@pytest.fixture
def site(tmp_path, archive_url, s3_server, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    clock = tmp_path / "fake-now"
    set_clock(clock, f"{DAYS[0]} 12:00:00")
    fake = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    # what the operator changed in metrics-ops.env for this site: compress a day once it is closed
    site = Site(tmp_path, archive_env_text(archive_url, s3_server.env()), clock=fake, extra="METRICS_GZIP_AFTER=1\n")
    site.clock_file = clock
    site.archive_url = archive_url
    try:
        yield site
    finally:
        assert site.stop() == [0, 0, 0]


def test_three_serves_behind_nginx_archive_to_one_bucket_and_read_back_as_one_site(site, tmp_path):
    stored = traffic(site, site.clock_file)
    assert sum(stored.values()) == len(DAYS) * PER_DAY and max(stored.values()) == 1  # no sampling in this site

    # Two days later: each host's pass (the rotator's command, once) closes, compresses and archives its days.
    set_clock(site.clock_file, f"{DAYS[-1] + timedelta(days=2)} 00:30:00")
    for host in site.hosts:
        r = site.run(host, "rotate", "--once", "--json")
        assert r.returncode == 0, (host.name, r.stdout, r.stderr)

    # Each stored line on exactly one host; the upstream spread the load; every closed day is compressed.
    per_host = [stored_lines(h) for h in site.hosts]
    assert sum(per_host, start=Counter()) == stored
    assert all(sum(c.values()) >= PER_DAY * len(DAYS) // 6 for c in per_host), [sum(c.values()) for c in per_host]
    for host in site.hosts:
        names = sorted(p.name for p in host.data.glob("metrics-*.jsonl*"))
        assert [n for n in names if n < f"metrics-{DAYS[-1] + timedelta(days=1)}"] == [
            f"metrics-{day}.jsonl.gz" for day in DAYS], (host.name, names)
        for day in DAYS:
            gzip.decompress((host.data / f"metrics-{day}.jsonl.gz").read_bytes())  # whole archives
    site.stored = stored


def visitors_of(lines: list[str]) -> Counter:
    return Counter(json.loads(line)["visitor_id"] for line in lines)
