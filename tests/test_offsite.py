"""metrics_ops.offsite: the archive record, and the archive step against a real S3 server (SeaweedFS)."""

import json
import os
from datetime import date, timedelta

import pytest

from metrics_ops import offsite
from metrics_ops.layout import ARCHIVED_DIR, scan
from metrics_ops.objectstore import ObjectInfo, file_digest
from metrics_ops.reading import all_lines

from .helpers import cli, data_file, free_port

NAME = "metrics-2026-11-24.jsonl.gz"
SHA = "ab" * 32


def test_the_record_round_trips_hidden_from_readers_and_the_pass(data_dir):
    assert offsite.read_record(data_dir, NAME) is None and offsite.recorded_names(data_dir) == []
    lines = data_file(data_dir / NAME, [{"visitor_id": "v", "event": "e"}], gz=True)
    info = ObjectInfo("p/day=2026-11-24/host=web-1/" + NAME, 42, '"etag-1"', SHA, recorded_size=42)
    written = offsite.write_record(data_dir, NAME, info, now=1_700_000_000.0)
    assert written == offsite.Record(info.key, SHA, 42, "etag-1", 1_700_000_000.0)
    assert offsite.read_record(data_dir, NAME) == written
    assert offsite.recorded_names(data_dir) == [NAME]
    assert written.matches(SHA, 42) and not written.matches(SHA, 43) and written.same_object(info)
    # the record is outside the reading glob and outside what a pass lists as data or unknown
    listing = scan(data_dir, data_dir / "metrics.jsonl")
    assert [f.name for f in listing.files] == [NAME] and listing.unknown == []
    assert all_lines(data_dir) == lines
    assert sorted(os.listdir(data_dir / ARCHIVED_DIR)) == [NAME + ".json"]  # no temp file left behind
    offsite.drop_record(data_dir, NAME)
    offsite.drop_record(data_dir, NAME)  # twice: no error
    assert offsite.read_record(data_dir, NAME) is None


def test_an_unreadable_record_counts_as_none_and_names_are_checked(data_dir):
    (data_dir / ARCHIVED_DIR).mkdir()
    (data_dir / ARCHIVED_DIR / (NAME + ".json")).write_text("{not json")
    assert offsite.read_record(data_dir, NAME) is None
    (data_dir / ARCHIVED_DIR / (NAME + ".json")).write_text(json.dumps({"key": "k"}))
    assert offsite.read_record(data_dir, NAME) is None
    with pytest.raises(ValueError, match="not a compressed data file name"):
        offsite.read_record(data_dir, "metrics-2026-11-24.jsonl")  # plain files are never archived
    with pytest.raises(ValueError, match="no sha256"):
        offsite.write_record(data_dir, NAME, ObjectInfo("k", 1, "e"))


# ------------------------------------------------------------------------------------------ the archive step
def closed_days(data_dir, n=3, today=None, gz=True, rows=50):
    """n closed days of data (compressed unless ``gz`` is False), the newest yesterday -> their file names."""
    today = today or date.today()
    names = []
    for age in range(1, n + 1):
        day = today - timedelta(days=age)
        name = f"metrics-{day.isoformat()}.jsonl" + (".gz" if gz else "")
        data_file(data_dir / name, [{"visitor_id": f"v{i}", "event": f"d{age}"} for i in range(rows)], gz=gz)
        names.append(name)
    return names


def archive_env(archive_url, data_dir, **more):
    return {"METRICS_ARCHIVE_URL": archive_url, "METRICS_HOST_ID": "web-1", "METRICS_DIR": str(data_dir),
            **{k: str(v) for k, v in more.items()}}


def objects(archive_url):
    from metrics_ops.objectstore import Bucket, parse_archive_url

    bucket = Bucket(parse_archive_url(archive_url))
    return {o.key.rsplit("/", 1)[1]: bucket.head(o.key) for o in bucket.list()}


def kinds(doc, step="archive"):
    return sorted((a["kind"], a["file"]) for a in doc["actions"] if a["step"] == step)


def test_archive_uploads_each_closed_file_verified_and_a_rerun_uploads_nothing(data_dir, archive_url):
    names = closed_days(data_dir)
    data_file(data_dir / f"metrics-{date.today().isoformat()}.jsonl", [{"visitor_id": "v", "event": "now"}])
    env = archive_env(archive_url, data_dir)
    plan = cli("archive", "--dry-run", "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    assert kinds(json.loads(plan.stdout)) == sorted(("upload", n) for n in names)
    assert objects(archive_url) == {} and offsite.recorded_names(data_dir) == []  # a plan uploads nothing
    first = cli("archive", "--json", env=env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert kinds(doc) == sorted(("upload", n) for n in names)
    assert doc["archive"]["waiting_files"] == 0 and doc["archive"]["archived_files"] == 3
    found = objects(archive_url)
    assert sorted(found) == sorted(names)  # plain files and today's are never uploaded
    for name in names:
        sha, size = file_digest(data_dir / name)
        assert found[name].matches(sha, size)
        assert found[name].key.endswith(f"/day={name[8:18]}/host=web-1/{name}")
        assert offsite.read_record(data_dir, name).etag == found[name].etag
    again = cli("archive", "--json", env=env)
    assert again.returncode == 0 and kinds(json.loads(again.stdout)) == []
    assert {n: o.etag for n, o in objects(archive_url).items()} == {n: o.etag for n, o in found.items()}
    assert (data_dir / names[0]).exists()  # archive never deletes a local file
    quiet = cli("archive", "-q", env=env)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_rotate_archives_after_gzip_and_prune_deletes_only_what_is_archived(data_dir, archive_url):
    old = closed_days(data_dir, n=6, gz=False)  # plain: rotate compresses (gzip_after 1), archives, prunes
    env = archive_env(archive_url, data_dir, METRICS_GZIP_AFTER=1, METRICS_RETENTION=4)
    done = cli("rotate", "--once", "--json", env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    steps = [a["step"] for a in doc["actions"]]
    assert doc["steps"] == ["rotate", "rollup", "gzip", "archive", "prune", "budget"]
    assert steps.index("gzip") < steps.index("archive") < steps.index("prune")
    gone = {a["file"] for a in doc["actions"] if a["kind"] == "delete"}
    assert gone == {n + ".gz" for n in old[3:]}  # days 4..6 old: compressed, archived, then deleted
    assert sorted(objects(archive_url)) == sorted(n + ".gz" for n in old)
    status = json.loads((data_dir / ".metrics-ops.status").read_text())
    assert status["result"] == "ok" and status["archive_waiting_files"] == 0


def test_the_bucket_down_fails_only_the_archive_step_and_prune_deletes_nothing_unarchived(data_dir, tmp_path):
    from .helpers import free_port

    names = closed_days(data_dir, n=5, gz=False)
    down = f"http://127.0.0.1:{free_port()}"
    env = {**archive_env("s3://metrics/site-a", data_dir, METRICS_GZIP_AFTER=1, METRICS_RETENTION=2),
           "AWS_ENDPOINT_URL": down, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    done = cli("rotate", "--once", env=env)
    assert done.returncode == 1
    assert "archive s3://metrics/site-a" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in data_dir.glob("metrics-*.gz")) == sorted(n + ".gz" for n in names)  # gzip ran
    assert len(list((data_dir / "rollups").glob("rollup-*.json"))) == 5  # the rollup step ran
    status = json.loads((data_dir / ".metrics-ops.status").read_text())
    assert status["result"] == "failed" and "archive s3://metrics/site-a" in status["message"]
    assert status["archive_waiting_files"] == 5 and status["archive_waiting_days"] == 5
    alone = cli("archive", env=env)
    assert alone.returncode == 1 and "archive s3://metrics/site-a" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) <= 2, alone.stderr


class Proxy:
    """A loopback TCP proxy in front of the S3 server: ``drop_put_replies`` forwards every PUT and closes the
    client's connection instead of relaying the reply (a reply lost after the PUT landed); ``rate`` (bytes per
    second) throttles what the client sends, so that a test can kill the client mid-upload. ``sent`` counts the
    bytes of PUT requests forwarded."""

    def __init__(self, upstream_port: int, *, drop_put_replies: bool = False, rate: int | None = None):
        import socket
        import threading

        self.upstream, self.drop, self.rate = upstream_port, drop_put_replies, rate
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            state = {"put": False}
            self.threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            self.threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client, server, state):
        import time

        try:
            while data := client.recv(16384 if self.rate is None else 4096):
                if data.startswith(b"PUT "):
                    state["put"] = True
                if state["put"]:
                    self.sent += len(data)
                server.sendall(data)
                if self.rate is not None:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            _close(server)

    def _down(self, server, client, state):
        try:
            while data := server.recv(16384):
                if self.drop and state["put"] and not data.startswith(b"HTTP/1.1 100 "):
                    break  # the PUT landed (boto3 waits for 100 Continue before the body); its reply is lost
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)

    def close(self):
        _close(self.listener)


def _close(sock):
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def test_a_reply_lost_after_the_put_is_adopted_by_the_rerun_which_uploads_nothing(data_dir, archive_url, s3_server):
    names = closed_days(data_dir, n=1)
    env = archive_env(archive_url, data_dir)
    proxy = Proxy(s3_server.port, drop_put_replies=True)
    try:
        lost = cli("archive", env={**env, "AWS_ENDPOINT_URL": proxy.url})
    finally:
        proxy.close()
    assert lost.returncode == 1 and "archive s3://metrics/" in lost.stderr and "Traceback" not in lost.stderr
    assert offsite.read_record(data_dir, names[0]) is None  # no reply: nothing recorded
    landed = objects(archive_url)[names[0]]
    assert landed.matches(*file_digest(data_dir / names[0]))  # but the PUT landed
    rerun = cli("archive", "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert kinds(json.loads(rerun.stdout)) == [("record", names[0])]  # adopted: nothing uploaded
    after = objects(archive_url)[names[0]]
    assert (after.etag, after.last_modified) == (landed.etag, landed.last_modified)
    assert offsite.read_record(data_dir, names[0]).etag == landed.etag


def test_kill_9_during_an_upload_deletes_nothing_and_the_rerun_completes(data_dir, archive_url, s3_server):
    import subprocess
    import time

    from .helpers import CLI

    big = data_dir / f"metrics-{(date.today() - timedelta(days=1)).isoformat()}.jsonl.gz"
    big.write_bytes(os.urandom(3 << 20))  # stored, not read: any bytes do
    before = file_digest(big)
    env = archive_env(archive_url, data_dir, METRICS_RETENTION=1, METRICS_GZIP_AFTER=1)
    proxy = Proxy(s3_server.port, rate=256 << 10)
    try:
        proc = subprocess.Popen([*CLI, "rotate", "--once"], env={**os.environ, **env, "AWS_ENDPOINT_URL": proxy.url},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proxy.sent < (512 << 10) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the upload ended before it could be killed"
        proc.kill()
        proc.wait()
    finally:
        proxy.close()
    assert file_digest(big) == before and offsite.read_record(data_dir, big.name) is None
    assert big.name not in objects(archive_url)
    rerun = cli("rotate", "--once", "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert ("upload", big.name) in kinds(doc)
    assert objects(archive_url)[big.name].matches(*before)
    assert ("delete", big.name) in [(a["kind"], a["file"]) for a in doc["actions"]]  # archived, then pruned


def test_an_object_changed_behind_our_back_keeps_the_local_file_and_status_says_so(data_dir, archive_url, tmp_path):
    from metrics_ops.objectstore import Bucket, parse_archive_url

    names = closed_days(data_dir, n=2)
    env = archive_env(archive_url, data_dir, METRICS_GZIP_AFTER=1, METRICS_RETENTION=1)
    assert cli("archive", env=env).returncode == 0
    other = tmp_path / "other.gz"
    other.write_bytes(b"someone else's bytes")
    bucket = Bucket(parse_archive_url(archive_url))
    key = objects(archive_url)[names[0]].key
    bucket.put_file(key, other, sha256=file_digest(other)[0], size=file_digest(other)[1])
    offsite.drop_record(data_dir, names[1])  # the other file: archived, its record lost (adopted again below)
    again = cli("archive", "--json", env=env)
    assert again.returncode == 7, again.stderr
    doc = json.loads(again.stdout)
    assert kinds(doc) == [("record", names[1])]
    assert [k["file"] for k in doc["kept"] if "conflict" in k["reason"]] == [names[0]]
    assert doc["archive"]["conflicts"] == 1
    done = cli("rotate", "--once", "--json", env=env)
    assert done.returncode == 0, done.stderr
    deleted = [a["file"] for a in json.loads(done.stdout)["actions"] if a["kind"] == "delete"]
    assert deleted == [names[1]] and (data_dir / names[0]).exists()  # the conflict is never deleted
    assert bucket.head(key).sha256 == file_digest(other)[0]  # nor uploaded over
    status = cli("status", env=env)
    assert status.returncode == 7
    assert "1 file(s) in conflict with their object in the archive" in status.stderr
    health = tmp_path / "metrics.prom"
    cli("rotate", "--once", env={**env, "METRICS_HEALTH_TEXTFILE": str(health)})
    assert "metrics_ops_rotate_archive_conflicts 1" in health.read_text()


def test_a_late_writer_change_is_uploaded_again_over_the_old_object_with_if_match(data_dir, archive_url):
    names = closed_days(data_dir, n=1)
    env = archive_env(archive_url, data_dir)
    assert cli("archive", env=env).returncode == 0
    old = objects(archive_url)[names[0]]
    lines = data_file(data_dir / names[0], [{"visitor_id": "late", "event": "e"}] * 3, gz=True)
    again = cli("archive", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert kinds(json.loads(again.stdout)) == [("reupload", names[0])]
    new = objects(archive_url)[names[0]]
    assert new.etag != old.etag and new.matches(*file_digest(data_dir / names[0]))
    assert offsite.read_record(data_dir, names[0]).etag == new.etag
    assert all_lines(data_dir) == lines


@pytest.mark.parametrize("given", ["env", "toml", "dotenv"])
@pytest.mark.parametrize("url", ["s3://AKIAEXAMPLE:wJalr/XUtnFEMI+K7MDENG@metrics/site-a", "AKIAEXAMPLE:wJalr@metrics",
                                 "s3://AKIAEXAMPLE:wJalr@metrics:9000/p"])
def test_a_rejected_archive_url_never_shows_the_credentials_typed_into_it(tmp_path, isolated_env, given, url):
    env = {}
    if given == "env":
        env["METRICS_ARCHIVE_URL"] = url
    elif given == "toml":
        (tmp_path / "m.toml").write_text(f'archive_url = "{url}"\n')
        env["METRICS_CONFIG"] = str(tmp_path / "m.toml")
    else:
        (isolated_env / ".env").write_text(f"METRICS_ARCHIVE_URL={url}\n")
    r = cli("config", "show", env=env, cwd=isolated_env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "***@" in r.stderr and "archive_url" in r.stderr.lower()
    assert "wJalr" not in r.stderr + r.stdout and "AKIAEXAMPLE" not in r.stderr + r.stdout


def test_archive_retention_below_retention_is_one_line_and_exit_2(data_dir):
    env = archive_env("s3://metrics/site-a", data_dir, METRICS_ARCHIVE_RETENTION=20, METRICS_RETENTION=30)
    for command in (("archive",), ("prune",), ("rotate", "--once")):
        r = cli(*command, env=env)
        assert r.returncode == 2 and r.stderr.splitlines() == [
            "metrics-ops: METRICS_ARCHIVE_RETENTION=20 (from the environment) with METRICS_RETENTION=30 (from the "
            "environment): archive_retention is less than retention: the archive would drop days that prune keeps "
            "until they are archived"], r.stderr
    assert list(data_dir.iterdir()) == []  # nothing was changed


def test_without_boto3_an_archive_is_one_line_and_exit_2(data_dir, tmp_path):
    blocker = tmp_path / "noboto"
    (blocker / "boto3").mkdir(parents=True)
    (blocker / "boto3" / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**archive_env("s3://metrics/site-a", data_dir), "PYTHONPATH": str(blocker)}
    closed_days(data_dir, n=1)
    for command in (("archive",), ("rotate", "--once"), ("prune",)):
        r = cli(*command, env=env)
        assert (r.returncode, r.stderr) == (
            2, "metrics-ops: archive_url is set but boto3 is not installed: pip install 'metrics-ops[s3]'\n")


def test_archive_retention_drops_only_this_hosts_old_objects_and_never_uploads_an_expired_day(data_dir, archive_url,
                                                                                              tmp_path):
    from metrics_ops.objectstore import Bucket, object_key, parse_archive_url

    bucket = Bucket(parse_archive_url(archive_url))
    today = date.today()
    piece = tmp_path / "piece.gz"
    piece.write_bytes(b"an old day's bytes")
    sha, size = file_digest(piece)
    keys = {}
    for host in ("web-1", "web-2"):
        for age in (12, 9):
            key = object_key(bucket.location, today - timedelta(days=age), host, "metrics-x.jsonl.gz")
            bucket.put_file(key, piece, sha256=sha, size=size)
            keys[host, age] = key
    expired = closed_days(data_dir, n=12)[-1]  # 12 days old: past archive_retention 10
    env = archive_env(archive_url, data_dir, METRICS_ARCHIVE_RETENTION=10, METRICS_RETENTION=5)
    r = cli("archive", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(a["kind"], a["file"]) for a in doc["actions"] if a["kind"] == "drop-object"] == [
        ("drop-object", keys["web-1", 12])]
    assert expired not in [a["file"] for a in doc["actions"]]
    assert any(k["file"] == expired and "archive_retention" in k["reason"] for k in doc["kept"])
    left = {o.key for o in bucket.list()}
    assert keys["web-1", 12] not in left and {keys["web-2", 12], keys["web-1", 9], keys["web-2", 9]} <= left
    pruned = cli("prune", "--json", env=env)  # past both retentions: prune deletes it without an archived copy
    assert pruned.returncode == 0 and expired in [a["file"] for a in json.loads(pruned.stdout)["actions"]]


def test_the_budget_deletes_only_archived_files_and_says_when_unarchived_ones_block_it(data_dir, archive_url):
    names = closed_days(data_dir, n=4, rows=2000)
    down = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    env = archive_env(archive_url, data_dir, METRICS_MAX_TOTAL_MB=0.001, METRICS_RETENTION=30)
    blocked = cli("rotate", "--once", env={**env, **down})
    assert blocked.returncode == 1
    assert "not yet archived, which it deletes only once archived" in blocked.stderr
    assert all((data_dir / n).exists() for n in names)  # nothing unarchived is deleted
    done = cli("rotate", "--once", "--json", env=env)
    doc = json.loads(done.stdout)
    deleted = {a["file"] for a in doc["actions"] if a["step"] == "budget" and a["kind"] == "delete"}
    assert deleted == set(names) and set(objects(archive_url)) == set(names)


def test_an_object_rewritten_by_forget_on_another_host_replaces_the_local_file(data_dir, archive_url):
    import gzip
    import hashlib

    import boto3

    from metrics_ops import rollups
    from metrics_ops.objectstore import parse_archive_url

    if "forgotten_from" not in ObjectInfo.__dataclass_fields__:
        pytest.skip("needs ObjectInfo.forgotten_from (helper G's objectstore change, contract point 2)")
    names = closed_days(data_dir, n=1, rows=10)
    env = archive_env(archive_url, data_dir, METRICS_GZIP_AFTER=1, METRICS_ROLLUP_MIN_VISITORS=2)
    assert cli("rotate", "--once", env=env).returncode == 0
    day = date.today() - timedelta(days=1)
    assert rollups.read(data_dir, day).lines == 10
    old = objects(archive_url)[names[0]]
    kept = [{"visitor_id": f"v{i}", "event": "d1"} for i in range(4, 10)]  # forget removed v0..v3 elsewhere
    body = gzip.compress("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept).encode())
    sha = hashlib.sha256(body).hexdigest()
    location = parse_archive_url(archive_url)
    boto3.client("s3").put_object(Bucket=location.bucket, Key=old.key, Body=body, IfMatch=f'"{old.etag}"',
                                  Metadata={"sha256": sha, "size": str(len(body)), "forgotten-from": old.sha256})
    r = cli("archive", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert kinds(json.loads(r.stdout)) == [("restore", names[0])]
    assert (data_dir / names[0]).read_bytes() == body
    record = offsite.read_record(data_dir, names[0])
    assert (record.sha256, record.size) == (sha, len(body)) and record.etag == objects(archive_url)[names[0]].etag
    assert rollups.read(data_dir, day).lines == 6  # the day's rollup recounted
    again = cli("archive", "--json", env=env)
    assert again.returncode == 0 and kinds(json.loads(again.stdout)) == []


def test_each_state_of_a_local_file_against_its_record_and_object():
    from metrics_ops.offsite import State, judge

    a, b, c = "a" * 64, "b" * 64, "c" * 64
    record = offsite.Record("k", a, 10, "e1", 0.0)

    def obj(sha, size=10, etag="e1", forgotten_from=None):
        info = ObjectInfo("k", size, etag, sha, recorded_size=size)
        if forgotten_from is not None:  # helper G's field (contract point 2); without it, no forgotten state
            if "forgotten_from" not in ObjectInfo.__dataclass_fields__:
                return None
            info = ObjectInfo("k", size, etag, sha, recorded_size=size, forgotten_from=forgotten_from)
        return info

    def state(sha, rec, o):
        return judge("f", "k", sha, 10, rec, o).state

    assert state(a, None, None) == State.NEW  # nothing anywhere: upload
    assert state(a, record, None) == State.NEW  # the object was deleted: upload again
    assert state(a, None, obj(a)) == State.ADOPT  # a reply lost after the PUT
    assert state(a, record, obj(a, etag="e2")) == State.ADOPT  # same bytes, another ETag: record it
    assert state(a, record, obj(a)) == State.ARCHIVED
    assert state(b, record, obj(a)) == State.CHANGED  # a late writer: If-Match e1
    assert state(a, record, obj(b)) == State.CONFLICT  # changed behind our back
    assert state(a, None, obj(b)) == State.CONFLICT  # another host with our host_id
    assert state(a, None, ObjectInfo("k", 10, "e1")) == State.CONFLICT  # not written by metrics-ops
    assert state(b, record, obj(c)) == State.CONFLICT  # both changed
    if (forgotten := obj(c, etag="e3", forgotten_from=a)) is not None:
        assert state(a, record, forgotten) == State.FORGOTTEN
        assert state(b, record, forgotten) == State.CONFLICT  # the local file changed too: a person decides
