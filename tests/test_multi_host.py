"""Three hosts end to end (issue 20, "Tested against a real S3 server"): three real serves behind a real nginx
upstream (deploy/edge/nginx-multi.conf), each in the environment deploy/docker-compose.multi.yml gives it (its
own data directory and host id), taking traffic over two simulated days; then each host's pass, days later,
compresses and archives its closed days to a real S3 server (SeaweedFS); `report` and `export` across the bucket
count every `stored: 1` answer exactly once (and DuckDB over the downloaded objects agrees); `forget` on one
host removes a visitor from every host's objects, and the other hosts' next pass takes the rewritten objects.

Loopback only. The serves run under libfaketime reading an offset from one file the test rewrites (as
tests/test_e2e.py does with dates), so that their traffic lands on days before today; the passes and the reading
commands run on the real clock (S3 signatures carry the time), nginx and the S3 server too.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from metrics_ops.objectstore import Bucket, file_digest, object_key, parse_archive_url

from .edge import nginx_binary
from .multihost import Site, archive_env_text, stored_lines
from .serve_process import LIBFAKETIME

TODAY = date.today()
OFFSETS = [-3, -2]  # the serves' clock runs this many days from the real one (libfaketime), ticking
DAYS = [TODAY + timedelta(days=n) for n in OFFSETS]  # the serves' days: closed by today
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
    for day, offset in zip(DAYS, OFFSETS, strict=True):
        set_clock(clock, f"{offset:+d}d")
        conn = site.connection()
        for i in range(PER_DAY):
            visitor = FORGET if i % 7 == 4 else f"v{i % 11}"  # on every host
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
    set_clock(clock, f"{OFFSETS[0]:+d}d")
    fake = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    # what the operator changed in metrics-ops.env for this site: compress a day once it is closed
    site = Site(tmp_path, archive_env_text(archive_url, s3_server.env()), clock=fake, extra="METRICS_GZIP_AFTER=1\n")
    site.clock_file = clock
    site.archive_url = archive_url
    try:
        yield site
    finally:
        stopped = site.stop()
        assert stopped == [0] * len(site.hosts), [h.serve.log for h in site.hosts]


def test_three_serves_behind_nginx_archive_to_one_bucket_and_read_back_as_one_site(site, tmp_path):
    stored = traffic(site, site.clock_file)
    assert sum(stored.values()) == len(DAYS) * PER_DAY and max(stored.values()) == 1  # no sampling in this site

    # Days later (today, the real clock: S3 refuses a request signed more than 15 min off the server's time),
    # each host's pass (the rotator's command, once) compresses and archives its closed days.
    set_clock(site.clock_file, "+0")  # the serves too
    location = parse_archive_url(site.archive_url)
    for host in site.hosts:
        r = site.run(host, "rotate", "--once", "--json", env=textfile(host))
        assert r.returncode == 0, (host.name, r.stdout, r.stderr)
        doc = json.loads(r.stdout)
        assert doc["steps"] == ["rotate", "rollup", "gzip", "archive", "prune", "budget"]
        uploads = [a for a in doc["actions"] if a["step"] == "archive"]
        assert {(a["kind"], a["status"], a["target"]) for a in uploads} == {
            ("upload", "done", object_key(location, day, host.host_id, f"metrics-{day}.jsonl.gz")) for day in DAYS}
        assert doc["archive"] | {"url": None} == {"url": None, "host_id": host.host_id, "waiting_files": 0,
                                                  "waiting_days": 0, "conflicts": 0, "archived_files": len(DAYS),
                                                  "oldest_waiting_day": None, "error": None}
        # how the operator checks it (docs/deployment.md): nothing left to upload, status fine, the textfile
        r = site.run(host, "archive", "--dry-run", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["actions"] == [], (r.stdout, r.stderr)
        r = site.run(host, "status", "--json")
        doc = json.loads(r.stdout)
        assert r.returncode == 0 and doc["attention"] == [], (r.stdout, r.stderr)
        assert (doc["last_pass"]["archive"], doc["last_pass"]["archive_waiting_files"]) == (True, 0)
        prom = Path(textfile(host)["METRICS_HEALTH_TEXTFILE"]).read_text().splitlines()
        for line in ("metrics_ops_rotate_archive_enabled 1", "metrics_ops_rotate_archive_waiting_files 0",
                     "metrics_ops_rotate_archive_waiting_dates 0", "metrics_ops_rotate_archive_conflicts 0"):
            assert line in prom, line

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

    # The archive: every local .gz of every host is one object, the same bytes, under its host's id.
    bucket = Bucket(parse_archive_url(site.archive_url))
    want = {object_key(bucket.location, day, h.host_id, f"metrics-{day}.jsonl.gz"): h for h in site.hosts
            for day in DAYS}
    assert {o.key for o in bucket.list()} == set(want)
    for key, host in want.items():
        assert bucket.head(key).matches(*file_digest(host.data / key.rsplit("/", 1)[1]))

    # Reading across hosts, from any host: every stored line exactly once.
    span = ("--since", DAYS[0], "--until", DAYS[-1])
    for host in site.hosts:
        r = site.run(host, "export", *span)
        assert r.returncode == 0, (host.name, r.stderr)
        assert keys_of(r.stdout) == stored, host.name
    r = site.run(site.hosts[0], "report", *span, "--by", "day", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hosts"] == [h.host_id for h in site.hosts]
    assert {row["day"]: row["events"] for row in doc["rows"]} == {
        str(day): PER_DAY for day in DAYS}
    for i, host in enumerate(site.hosts):  # --host picks one host's lines; --no-archive this host's files only
        r = site.run(site.hosts[0], "export", *span, "--host", host.host_id)
        assert r.returncode == 0 and keys_of(r.stdout) == per_host[i], r.stderr
    r = site.run(site.hosts[2], "export", *span, "--no-archive")
    assert r.returncode == 0 and keys_of(r.stdout) == per_host[2], r.stderr

    # DuckDB over the downloaded objects (the layout as it is, hive partitioning) agrees, host by host.
    duckdb = pytest.importorskip("duckdb")
    copy = tmp_path / "downloaded"
    for obj in bucket.list():
        target = copy / obj.key
        target.parent.mkdir(parents=True, exist_ok=True)
        with bucket.open_stream(obj.key) as stream:
            target.write_bytes(stream.read())
    prefix = copy / bucket.location.prefix
    rows = duckdb.sql(f"SELECT host, visitor_id, metadata.n FROM read_json('{prefix}/day=*/host=*/*.jsonl.gz', "
                      "format='newline_delimited', hive_partitioning=true, "
                      "columns={visitor_id: 'VARCHAR', metadata: 'STRUCT(n INTEGER)'})").fetchall()
    assert Counter((v, n) for _, v, n in rows) == stored
    for i, host in enumerate(site.hosts):
        assert Counter((v, n) for h, v, n in rows if h == host.host_id) == per_host[i]

    # forget on web-2 reaches every host's objects; each other host's next pass takes its rewritten objects.
    gone = Counter({key: n for key, n in stored.items() if key[0] != FORGET})
    assert gone != stored
    r = site.run(site.hosts[1], "forget", FORGET, "--json")
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["archive"]["errors"] == []
    for obj in bucket.list():
        with bucket.open_stream(obj.key) as stream:
            assert FORGET.encode() not in gzip.decompress(stream.read()), obj.key
    assert FORGET not in json.dumps(sorted(stored_lines(site.hosts[1])))  # this host's own files, at once
    assert all(FORGET in json.dumps(sorted(stored_lines(h))) for h in (site.hosts[0], site.hosts[2]))
    r = site.run(site.hosts[1], "export", *span)
    assert r.returncode == 0 and keys_of(r.stdout) == gone, r.stderr
    for i in (0, 2):  # their next pass: each local file whose object forget rewrote becomes that object
        host = site.hosts[i]
        r = site.run(host, "rotate", "--once", "--json")
        assert r.returncode == 0, (host.name, r.stdout, r.stderr)
        restored = {a["file"] for a in json.loads(r.stdout)["actions"] if a["step"] == "archive"}
        assert restored == {f"metrics-{DAYS[n // PER_DAY]}.jsonl.gz" for v, n in per_host[i] if v == FORGET}
        assert FORGET not in json.dumps(sorted(stored_lines(host))), host.name
    for host in site.hosts:
        r = site.run(host, "export", *span)
        assert r.returncode == 0 and keys_of(r.stdout) == gone, (host.name, r.stderr)


def textfile(host) -> dict[str, str]:
    """Where ``host``'s pass writes its Prometheus textfile (next to its data directory, not in it)."""
    return {"METRICS_HEALTH_TEXTFILE": str(host.data.parent / "metrics_ops.prom")}


def keys_of(jsonl: str) -> Counter:
    """(visitor_id, metadata.n) of each line of an export."""
    return Counter((rec["visitor_id"], rec["metadata"]["n"]) for rec in map(json.loads, jsonl.splitlines()))
