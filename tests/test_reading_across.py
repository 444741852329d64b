"""report and export across hosts (issue 20 item 5): every host's archived days from a real S3 server (SeaweedFS)
plus this host's local days not yet archived, each line exactly once; --host, --no-archive, an unreachable bucket,
a damaged object, a line over 1 MiB in an object, and this host's rollups mixed with other hosts' raw lines."""

import gzip
import json
from collections import Counter
from datetime import date, timedelta

import pytest

from metrics_ops.objectstore import Bucket, file_digest, object_key, parse_archive_url
from metrics_ops.reading import iter_lines
from metrics_ops.store import file_name

from .helpers import cli, free_port

TODAY = date.today()
D1, D2, D3 = (TODAY - timedelta(days=n) for n in (4, 3, 2))
ME = "web-1"


def rec(host: str, day: date, i: int, event: str = "page_view") -> str:
    at = f"{day.isoformat()}T{i % 24:02d}:30:00.000001Z"
    return json.dumps({"visitor_id": f"{host}-v{i}", "event": event, "metadata": {"path": f"/{host}/{i % 3}"},
                       "received_at": at, "ts": at, "client_rate": 1, "server_rate": 1}, separators=(",", ":"))


def lines(host: str, day: date, n: int, start: int = 0) -> list[str]:
    return [rec(host, day, i, ("page_view", "click", "signup")[i % 3]) for i in range(start, start + n)]


def body(ls: list[str]) -> bytes:
    return "".join(x + "\n" for x in ls).encode()


def put(bucket: Bucket, tmp_path, day: date, host: str, name: str, data: bytes) -> None:
    """An object in the layout, as the archive step leaves it (put_file: sha256 and size recorded)."""
    path = tmp_path / f"up-{host}-{name}"
    path.write_bytes(data)
    sha, size = file_digest(path)
    bucket.put_file(object_key(bucket.location, day, host, name), path, sha256=sha, size=size)


def env(archive_url: str, data_dir, host: str = ME) -> dict:
    return {"METRICS_ARCHIVE_URL": archive_url, "METRICS_HOST_ID": host, "METRICS_DIR": str(data_dir)}


@pytest.fixture
def scene(tmp_path, data_dir, archive_url):
    """Three hosts. This host (web-1): D1 archived and still local (its object = its file), D2 local only, with a
    shard left as a plain+archive pair, D3 pruned locally (object only), today plain. web-2: D1, and D2 in two
    shards; web-3: D3. Returns (bucket, every line that must be read once, by host)."""
    bucket = Bucket(parse_archive_url(archive_url))
    by_host: dict[str, list[str]] = {}
    d1 = lines(ME, D1, 30)
    (data_dir / file_name(D1, gz=True)).write_bytes(gzip.compress(body(d1)))
    put(bucket, tmp_path, D1, ME, file_name(D1, gz=True), (data_dir / file_name(D1, gz=True)).read_bytes())
    d2 = lines(ME, D2, 20)
    (data_dir / file_name(D2, gz=True)).write_bytes(gzip.compress(body(d2)))
    pair_gz, pair_all = lines(ME, D2, 5, 100), lines(ME, D2, 8, 100)  # the archive holds the start of the source
    (data_dir / file_name(D2, 1, gz=True)).write_bytes(gzip.compress(body(pair_gz)))
    (data_dir / file_name(D2, 1)).write_bytes(body(pair_all))
    d3 = lines(ME, D3, 12)
    put(bucket, tmp_path, D3, ME, file_name(D3, gz=True), gzip.compress(body(d3)))
    today = lines(ME, TODAY, 7)
    (data_dir / file_name(TODAY)).write_bytes(body(today))
    local = [x.decode() for x in iter_lines(data_dir)]  # the local reader: a pair read as a reconcile merges it
    assert Counter(local) == Counter(d1 + d2 + pair_all + today)
    by_host[ME] = local + d3
    w2 = lines("web-2", D1, 25) + lines("web-2", D2, 15) + lines("web-2", D2, 9, 50)
    put(bucket, tmp_path, D1, "web-2", file_name(D1, gz=True), gzip.compress(body(w2[:25])))
    put(bucket, tmp_path, D2, "web-2", file_name(D2, gz=True), gzip.compress(body(w2[25:40])))
    put(bucket, tmp_path, D2, "web-2", file_name(D2, 1, gz=True), gzip.compress(body(w2[40:])))
    by_host["web-2"] = w2
    w3 = lines("web-3", D3, 11)
    put(bucket, tmp_path, D3, "web-3", file_name(D3, gz=True), gzip.compress(body(w3)))
    by_host["web-3"] = w3
    return bucket, by_host


def export_lines(archive_url, data_dir, *args, host=ME) -> tuple[list[str], object]:
    p = cli("export", "--since", D1, "--until", TODAY, *args, env=env(archive_url, data_dir, host))
    return p.stdout.splitlines(), p


def test_export_and_report_read_every_host_each_line_once(scene, archive_url, data_dir):
    _, by_host = scene
    want = Counter(x for ls in by_host.values() for x in ls)
    got, p = export_lines(archive_url, data_dir)
    assert p.returncode == 0, p.stderr
    assert Counter(got) == want and len(got) == sum(want.values())
    r = cli("report", "--since", D1, "--until", TODAY, "--by", "day,event", "--json",
            env=env(archive_url, data_dir))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hosts"] == ["web-1", "web-2", "web-3"] and doc["ok"]
    counted = Counter()
    for row in doc["rows"]:
        counted[(row["day"], row["event"])] += row["events"]
    truth = Counter((json.loads(x)["received_at"][:10], json.loads(x)["event"]) for x in want.elements())
    assert counted == truth
    clicks = [json.loads(x) for x in want if D2.isoformat() in x and '"click"' in x]
    visitors = {(row["day"], row["event"]): row["visitors"] for row in doc["rows"]}
    assert visitors[(D2.isoformat(), "click")] == len({x["visitor_id"] for x in clicks}) > 0


def test_report_across_agrees_with_duckdb_over_the_downloaded_objects_and_local_files(scene, archive_url, data_dir,
                                                                                        tmp_path):
    duckdb = pytest.importorskip("duckdb")
    bucket, _ = scene
    copy = tmp_path / "duck"
    copy.mkdir()
    local = {p.name for p in data_dir.glob("metrics-*.jsonl*")}
    for i, obj in enumerate(bucket.list()):
        name = obj.key.rsplit("/", 1)[1]
        if f"host={ME}/" in obj.key and name in local:
            continue  # this host's own object of a local file: the same file
        with bucket.open_stream(obj.key) as stream:
            (copy / f"{i}-{name}").write_bytes(stream.read())
    (data_dir / file_name(D2, 1, gz=True)).unlink()  # DuckDB knows no pairs: leave the source, which holds all
    for p in data_dir.glob("metrics-*.jsonl*"):
        (copy / f"local-{p.name}").write_bytes(p.read_bytes())
    rows = duckdb.sql(f"SELECT event, count(*) FROM read_json('{copy}/*.jsonl*', format='newline_delimited', "
                      "columns={event: 'VARCHAR'}) GROUP BY event").fetchall()
    r = cli("report", "--since", D1, "--until", TODAY, "--by", "event", "--json", env=env(archive_url, data_dir))
    assert r.returncode == 0, r.stderr
    assert {row["event"]: row["events"] for row in json.loads(r.stdout)["rows"]} == dict(rows)


def test_host_picks_hosts_and_no_archive_reads_local_files_only(scene, archive_url, data_dir):
    _, by_host = scene
    got, p = export_lines(archive_url, data_dir, "--host", "web-2,web-3")
    assert p.returncode == 0, p.stderr
    assert Counter(got) == Counter(by_host["web-2"] + by_host["web-3"])
    got, p = export_lines(archive_url, data_dir, "--host", "web-1", "--host", "web-3")
    assert Counter(got) == Counter(by_host["web-1"] + by_host["web-3"])
    got, p = export_lines(archive_url, data_dir, "--no-archive")
    assert p.returncode == 0 and Counter(got) == Counter(x.decode() for x in iter_lines(data_dir))
    r = cli("report", "--since", D1, "--until", TODAY, "--by", "event", "--json", "--host", "web-3",
            env=env(archive_url, data_dir))
    assert sum(row["events"] for row in json.loads(r.stdout)["rows"]) == len(by_host["web-3"])
    none = cli("report", "--since", D1, "--host", "web-9,web-2", "--json", env=env(archive_url, data_dir))
    assert none.returncode == 0 and "--host web-9: no lines of this host in the range" in json.loads(none.stdout)[
        "notes"]
    bad = cli("report", "--host", "Web_2", env=env(archive_url, data_dir))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--host Web_2" in bad.stderr
    other = cli("export", "--no-archive", "--host", "web-2", env=env(archive_url, data_dir))
    assert other.returncode == 2 and "--no-archive" in other.stderr and "Traceback" not in other.stderr


def test_an_unreachable_bucket_is_one_line_and_exit_5_with_no_partial_answer(data_dir, archive_url, tmp_path):
    (data_dir / file_name(D1)).write_bytes(body(lines(ME, D1, 3)))
    dead = {**env(archive_url, data_dir), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_MAX_ATTEMPTS": "1"}
    out = tmp_path / "out.jsonl"
    for args in (("report", "--json"), ("export",), ("export", "--output", out)):
        p = cli(*args, "--since", D1, env=dead)
        assert p.returncode == 5, (args, p.stderr)
        assert p.stdout == "" and p.stderr.count("\n") == 1 and "archive s3://metrics/" in p.stderr, p.stderr
        assert "--no-archive" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()
    ok = cli("report", "--since", D1, "--no-archive", "--json", env=dead)
    assert ok.returncode == 0 and json.loads(ok.stdout)["lines"] == 3


def test_a_damaged_object_is_named_like_a_damaged_archive_and_the_rest_is_read(data_dir, archive_url, tmp_path):
    bucket = Bucket(parse_archive_url(archive_url))
    good = lines("web-2", D1, 10)
    put(bucket, tmp_path, D1, "web-2", file_name(D1, gz=True), gzip.compress(body(good)))
    whole = gzip.compress(body(lines("web-3", D1, 2000)))
    put(bucket, tmp_path, D1, "web-3", file_name(D1, gz=True), whole[: len(whole) // 2])  # truncated
    put(bucket, tmp_path, D2, "web-3", file_name(D2, gz=True), b"not gzip at all\n")
    got, p = export_lines(archive_url, data_dir)
    assert p.returncode == 1
    key = object_key(bucket.location, D1, "web-3", file_name(D1, gz=True))
    assert f"damaged: s3://metrics/{key}: unreadable after" in p.stderr and "truncated" in p.stderr
    assert f"host=web-3/{file_name(D2, gz=True)}: unreadable after 0 bytes" in p.stderr
    assert set(good) <= set(got) and all(json.loads(x) for x in got)  # whole lines only
    r = cli("report", "--since", D1, "--until", TODAY, "--json", env=env(archive_url, data_dir))
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and not doc["ok"] and any(key in x for x in doc["problems"])


def test_a_line_over_1_mib_in_an_object_is_one_damaged_line(data_dir, archive_url, tmp_path):
    bucket = Bucket(parse_archive_url(archive_url))
    ls = lines("web-2", D1, 4)
    huge = json.dumps({"visitor_id": "x", "event": "page_view", "metadata": {"p": "a" * (2 << 20)}})
    put(bucket, tmp_path, D1, "web-2", file_name(D1, gz=True), gzip.compress(body(ls[:2] + [huge] + ls[2:])))
    got, p = export_lines(archive_url, data_dir)
    assert p.returncode == 0 and got == ls and "1 damaged line(s) longer than 1 MiB" in p.stderr
    assert f"s3://metrics/{object_key(bucket.location, D1, 'web-2', file_name(D1, gz=True))}" in p.stderr
    doc = json.loads(cli("report", "--since", D1, "--json", env=env(archive_url, data_dir)).stdout)
    assert doc["lines"] == 4 and doc["damage"] == {"longer than 1 MiB": 1}


def test_rollups_answer_only_where_raw_lines_are_gone_and_mixing_says_visitors_are_not_additive(
        data_dir, archive_url, tmp_path):
    bucket = Bucket(parse_archive_url(archive_url))
    mine = lines(ME, D1, 9) + lines(ME, D2, 6)
    (data_dir / file_name(D1)).write_bytes(body(mine[:9]))
    (data_dir / file_name(D2)).write_bytes(body(mine[9:]))
    rolled = cli("rotate", "--once", env={"METRICS_DIR": str(data_dir), "METRICS_HOST_ID": ME})
    assert rolled.returncode == 0, rolled.stderr
    assert (data_dir / "rollups").is_dir()
    for p in data_dir.glob("metrics-*.jsonl*"):
        p.unlink()  # this host's raw lines of D1 and D2 are gone (pruned, objects expired): its rollups remain
    theirs = lines("web-2", D2, 5)
    put(bucket, tmp_path, D2, "web-2", file_name(D2, gz=True), gzip.compress(body(theirs)))
    r = cli("report", "--since", D1, "--until", D2, "--by", "day", "--json", env=env(archive_url, data_dir))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["day"]: row for row in doc["rows"]}
    assert rows[D1.isoformat()]["events"] == 9 and rows[D1.isoformat()]["visitors"] == 9  # this host's rollup
    assert rows[D2.isoformat()]["events"] == 6 + 5 and rows[D2.isoformat()]["visitors"] is None
    assert doc["mixed_days"] == [D2.isoformat()] and doc["days"]["rollup"] == [D1.isoformat(), D2.isoformat()]
    notes = " ".join(doc["notes"])
    assert "not additive across hosts" in notes and f"this host only: {D1.isoformat()}" in notes
    only_theirs = json.loads(cli("report", "--since", D1, "--until", D2, "--host", "web-2", "--json",
                                 env=env(archive_url, data_dir)).stdout)
    assert [(x["day"], x["events"], x["visitors"]) for x in only_theirs["rows"]] == [(D2.isoformat(), 5, 5)]


def test_a_local_archive_pruned_while_read_is_read_from_its_object_and_a_deleted_object_is_a_problem(
        data_dir, archive_url, tmp_path):
    from metrics_ops.reading import Across, read_day, sources

    bucket = Bucket(parse_archive_url(archive_url))
    mine = lines(ME, D1, 6)
    gz = data_dir / file_name(D1, gz=True)
    gz.write_bytes(gzip.compress(body(mine)))
    put(bucket, tmp_path, D1, ME, gz.name, gz.read_bytes())
    theirs = lines("web-2", D1, 4)
    put(bucket, tmp_path, D1, "web-2", gz.name, gzip.compress(body(theirs)))
    found = sources(data_dir, D1, D1, across=Across(bucket.location, ME))
    assert [type(s).__name__ for s in found[D1]] == ["Shard", "Remote"]  # the own object is the local file
    gz.unlink()  # pruned once archived, after the listing
    bucket.delete(object_key(bucket.location, D1, "web-2", gz.name))  # archive retention on another host
    problems = []
    got = b"".join(read_day(data_dir, found[D1], problems)).decode().splitlines()
    assert got == mine
    assert [p.why for p in problems] == ["deleted from the archive since it was listed"]
    assert problems[0].file.endswith(f"host=web-2/{gz.name}")


def test_many_objects_of_a_day_are_read_in_order_each_once(data_dir, archive_url, tmp_path):
    bucket = Bucket(parse_archive_url(archive_url))
    want = []
    for host in ("web-3", "web-2"):
        for n in range(7):
            ls = lines(host, D1, 5, 10 * n)
            put(bucket, tmp_path, D1, host, file_name(D1, n, gz=True), gzip.compress(body(ls)))
    for host in ("web-2", "web-3"):  # by host id, then shard (.10 after .9 is the layout's order)
        for n in range(7):
            want += lines(host, D1, 5, 10 * n)
    mine = lines(ME, D1, 3)
    (data_dir / file_name(D1)).write_bytes(body(mine))
    got, p = export_lines(archive_url, data_dir)
    assert p.returncode == 0, p.stderr
    assert got == mine + want


def test_csv_export_across_hosts_keeps_the_formula_guard(data_dir, archive_url, tmp_path):
    import csv
    import io

    bucket = Bucket(parse_archive_url(archive_url))
    evil = json.dumps({"visitor_id": "=HYPERLINK(\"x\")", "event": "+cmd", "metadata": {"path": "@SUM(A1)"}})
    put(bucket, tmp_path, D1, "web-2", file_name(D1, gz=True), gzip.compress(body([evil])))
    p = cli("export", "--since", D1, "--format", "csv", env=env(archive_url, data_dir))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [(r["visitor_id"], r["event"], r["metadata.path"]) for r in rows] == [
        ("'=HYPERLINK(\"x\")", "'+cmd", "'@SUM(A1)")]


class CuttingProxy:
    """A TCP proxy to the S3 server that cuts a connection once the server has sent ``limit`` bytes on it: the
    bucket goes away in the middle of a download (real sockets, the real server behind)."""

    def __init__(self, target_port: int, limit: int):
        import socket
        import threading

        self.target, self.limit = target_port, limit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.limit), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, limit):
        sent = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent > limit:
                    break
        except OSError:
            pass
        import socket

        for s in (src, dst):  # shutdown first: it ends the other direction's recv at once
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


def test_a_bucket_lost_in_the_middle_of_a_download_stops_the_read_exit_5(data_dir, archive_url, tmp_path,
                                                                          s3_server):
    import os
    import random

    bucket = Bucket(parse_archive_url(archive_url))
    rng = random.Random(5)
    big = [json.dumps({"visitor_id": f"v{i}", "event": "page_view", "metadata": {"n": rng.getrandbits(256)}})
           for i in range(20000)]  # about 1 MB compressed: far more than any listing's reply
    put(bucket, tmp_path, D1, "web-2", file_name(D1, gz=True), gzip.compress(body(big)))
    proxy = CuttingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]), 256 << 10)
    try:
        cut = {**env(archive_url, data_dir), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        out = tmp_path / "out.jsonl"
        for args in (("report", "--json"), ("export", "--output", out)):
            p = cli(*args, "--since", D1, env={**os.environ, **cut})
            assert p.returncode == 5, (args, p.stderr)
            assert p.stdout == "" and p.stderr.count("\n") == 1 and "download failed" in p.stderr, p.stderr
        assert not out.exists()
    finally:
        proxy.close()


def test_without_boto3_report_and_export_say_so_in_one_line_exit_2(data_dir, archive_url):
    import os
    import subprocess
    import sys

    code = ("import runpy, sys\nsys.modules['boto3'] = None\nsys.argv = ['metrics-ops'] + sys.argv[1:]\n"
            "runpy.run_module('metrics_ops', run_name='__main__')\n")
    for command in ("report", "export"):
        p = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env(archive_url, data_dir)})
        assert p.returncode == 2, p.stderr
        assert p.stderr == "metrics-ops: archive_url is set but boto3 is not installed: pip install 'metrics-ops[s3]'\n"
        assert subprocess.run([sys.executable, "-c", code, command, "--no-archive"], capture_output=True,
                              env={**os.environ, **env(archive_url, data_dir)}, timeout=120).returncode == 0


def test_after_real_passes_on_two_hosts_every_line_is_read_once_from_files_and_objects(tmp_path, archive_url):
    """Two hosts' rotate passes compress, archive and prune (days 4..6 old gone locally); web-1 then reads both
    hosts: its own files, its pruned days from its objects, web-2's from the bucket."""
    written: list[str] = []
    dirs = {}
    for host in ("web-1", "web-2"):
        d = dirs[host] = tmp_path / host
        d.mkdir()
        for n in range(1, 7):
            day = TODAY - timedelta(days=n)
            ls = lines(host, day, 10 + n)
            (d / file_name(day)).write_bytes(body(ls))
            written += ls
        done = cli("rotate", "--once", env={**env(archive_url, d, host), "METRICS_GZIP_AFTER": "1",
                                            "METRICS_RETENTION": "4"})
        assert done.returncode == 0, done.stderr
        assert len(list(d.glob("metrics-*.gz"))) == 3  # days 1..3 kept, days 4..6 archived then pruned
    since, until = TODAY - timedelta(days=6), TODAY - timedelta(days=1)
    p = cli("export", "--since", since, "--until", until, env=env(archive_url, dirs["web-1"]))
    assert p.returncode == 0, p.stderr
    assert Counter(p.stdout.splitlines()) == Counter(written) and len(p.stdout.splitlines()) == len(written)
    for extra in ((), ("--no-rollups",)):
        r = cli("report", "--since", since, "--until", until, "--by", "day", "--json", *extra,
                env=env(archive_url, dirs["web-1"]))
        doc = json.loads(r.stdout)
        assert r.returncode == 0 and doc["hosts"] == ["web-1", "web-2"], r.stderr
        assert sum(row["events"] for row in doc["rows"]) == len(written)
        assert all(row["visitors"] == row["events"] for row in doc["rows"])  # one event per visitor, every host
