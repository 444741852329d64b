"""metrics_ops.objectstore against a real S3 server (SeaweedFS, tests/s3server.py), and the archive's settings."""

import gzip
import hashlib
import subprocess
import sys
from datetime import date

import pytest

from metrics_ops.config import ConfigError, load_settings
from metrics_ops.objectstore import (
    BOTO3_MISSING,
    ArchiveError,
    Bucket,
    Location,
    PreconditionFailed,
    default_host_id,
    file_digest,
    object_key,
    parse_archive_url,
    parse_key,
)

from .helpers import free_port

DAY = date(2026, 11, 24)


def a_file(tmp_path, data: bytes, name="metrics-2026-11-24.jsonl.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def opened(url: str) -> Bucket:
    return Bucket(parse_archive_url(url))


def test_put_then_head_round_trip_records_sha256_and_size(tmp_path, archive_url):
    bucket = opened(archive_url)
    data = gzip.compress(b'{"visitor_id":"v","event":"e"}\n' * 1000)
    path = a_file(tmp_path, data)
    sha, size = file_digest(path)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    key = object_key(bucket.location, DAY, "web-1", path.name)
    put = bucket.put_file(key, path, sha256=sha, size=size, if_none_match=True)
    head = bucket.head(key)
    assert head == put and head.sha256 == sha and head.size == size and head.recorded_size == size
    assert head.matches(sha, size) and not head.matches(hashlib.sha256(b"x").hexdigest(), size)
    with bucket.open_stream(key) as stream, gzip.GzipFile(fileobj=stream) as lines:
        assert lines.read() == gzip.decompress(data)
    assert [o.key for o in bucket.list()] == [key]
    assert bucket.list_days() == {DAY} and bucket.list_hosts(DAY) == {"web-1"}
    bucket.delete(key)
    assert bucket.head(key) is None and list(bucket.list()) == []


def test_the_server_refuses_bytes_that_do_not_match_the_digest(tmp_path, archive_url):
    bucket = opened(archive_url)
    path = a_file(tmp_path, b"the real bytes\n")
    _, size = file_digest(path)
    key = object_key(bucket.location, DAY, "web-1", path.name)
    wrong = hashlib.sha256(b"other bytes\n").hexdigest()
    with pytest.raises(ArchiveError) as caught:
        bucket.put_file(key, path, sha256=wrong, size=size)
    assert "BadDigest" in str(caught.value) and key in str(caught.value) and "\n" not in str(caught.value)
    assert bucket.head(key) is None  # nothing was stored


def test_conditional_writes_give_precondition_failed(tmp_path, archive_url):
    bucket = opened(archive_url)
    first, second = a_file(tmp_path, b"first\n", "a.gz"), a_file(tmp_path, b"second\n", "b.gz")
    key = object_key(bucket.location, DAY, "web-1", "metrics-2026-11-24.jsonl.gz")
    old = bucket.put_file(key, first, sha256=file_digest(first)[0], size=file_digest(first)[1])
    with pytest.raises(PreconditionFailed, match="412"):
        bucket.put_file(key, second, sha256=file_digest(second)[0], size=file_digest(second)[1], if_none_match=True)
    new = bucket.put_file(key, second, sha256=file_digest(second)[0], size=file_digest(second)[1], if_match=old.etag)
    assert new.etag != old.etag and bucket.head(key).sha256 == file_digest(second)[0]
    with pytest.raises(PreconditionFailed):  # the ETag we saw is stale now
        bucket.put_file(key, first, sha256=file_digest(first)[0], size=file_digest(first)[1], if_match=old.etag)
    assert bucket.head(key).sha256 == file_digest(second)[0]


def test_wrong_credentials_are_one_line_without_the_secret(tmp_path, archive_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all-42")
    with pytest.raises(ArchiveError) as caught:
        opened(archive_url).head(parse_archive_url(archive_url).key("x"))
    message = str(caught.value)
    assert "\n" not in message and "not-the-secret-at-all-42" not in message and "s3://metrics/" in message
    assert "403" in message


def test_an_unreachable_endpoint_is_one_line_after_bounded_retries(tmp_path, archive_url):
    """In a subprocess, as a command would meet it: one line, no traceback (the timeout is only a safety net)."""
    code = ("from metrics_ops.objectstore import Bucket, parse_archive_url, ArchiveError\n"
            f"b = Bucket(parse_archive_url({archive_url!r}))\n"
            "try:\n    b.head(b.location.key('x'))\nexcept ArchiveError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    [line] = r.stdout.splitlines()
    assert line.startswith(f"archive {archive_url}/x: head failed: Could not connect to the endpoint URL"), line


def test_without_boto3_the_message_is_one_line():
    code = ("import sys\nsys.modules['boto3'] = None\n"
            "from metrics_ops.objectstore import Bucket, Location, Boto3Missing\n"
            "try:\n    Bucket(Location('metrics'))\nexcept Boto3Missing as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout == BOTO3_MISSING + "\n" and r.stderr == ""
    assert BOTO3_MISSING == "archive_url is set but boto3 is not installed: pip install 'metrics-ops[s3]'"


def test_the_key_layout_round_trips_and_foreign_keys_are_refused():
    loc = Location("metrics", "site-a")
    key = object_key(loc, DAY, "web-1", "metrics-2026-11-24.1.jsonl.gz")
    assert key == "site-a/day=2026-11-24/host=web-1/metrics-2026-11-24.1.jsonl.gz"
    assert parse_key(loc, key) == (DAY, "web-1", "metrics-2026-11-24.1.jsonl.gz")
    assert object_key(Location("metrics"), DAY, "h", "f") == "day=2026-11-24/host=h/f"
    assert parse_key(Location("metrics"), "day=2026-11-24/host=h/f") == (DAY, "h", "f")
    for foreign in ("site-b/day=2026-11-24/host=web-1/f", "site-a/day=2026-13-01/host=web-1/f",
                    "site-a/day=2026-11-24/host=Web_1/f", "site-a/day=2026-11-24/f", "site-a/x/day=2026-11-24/host=h/f",
                    "site-a/day=2026-11-24/host=web-1/sub/f", "site-ab/day=2026-11-24/host=web-1/f"):
        assert parse_key(loc, foreign) is None, foreign
    for host, name in (("-x", "f"), ("Web", "f"), ("h", "a/b"), ("h", "")):
        with pytest.raises(ValueError):
            object_key(loc, DAY, host, name)


@pytest.mark.parametrize("url, location", [
    ("s3://metrics", Location("metrics", "")), ("s3://metrics/", Location("metrics", "")),
    ("s3://metrics/site-a/", Location("metrics", "site-a")),
    ("s3://my.bucket-1//a//b/", Location("my.bucket-1", "a/b")),
])
def test_archive_url_is_normalised(url, location):
    assert parse_archive_url(url) == location
    s = load_settings({"archive_url": url})
    assert s.archive_url == location.url and s.archive_location == location


@pytest.mark.parametrize("value, why", [
    ("metrics/site-a", "want s3://bucket"), ("https://metrics/x", "only the s3:// scheme"),
    ("s3://Metrics/x", "a bucket name is 3 to 63"), ("s3://ab", "a bucket name is 3 to 63"),
    ("s3://a..b", "no two adjacent periods"), ("s3://192.168.1.1", "IP address"),
    ("s3://xn--abc", "cannot start with xn--"), ("s3://metrics/a/../b", "is not allowed"),
    ("s3://metrics/a b", "is not allowed"), ("s3://key:secret@metrics", "no credentials"),
])
def test_a_bad_archive_url_is_one_line_naming_the_setting(value, why):
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, flags={"archive_url": value})
    [line] = caught.value.lines
    shown = value.replace("key:secret@", "***@")  # the user-info of a URL is never echoed
    assert line.startswith(f"archive_url {shown} (from the command line): ") and why in line, line
    assert "secret" not in line


def test_a_bad_setting_from_the_environment_exits_2(run, data_dir):
    for name, value, why in (("METRICS_ARCHIVE_URL", "s3://B", "a bucket name"),
                             ("METRICS_HOST_ID", "web_1", "a host id is 1 to 63 characters"),
                             ("METRICS_HOST_ID", "-web", "not starting or ending with -"),
                             ("METRICS_HOST_ID", "a" * 64, "a host id"),
                             ("METRICS_ARCHIVE_RETENTION", "0", "input should be greater than or equal to 1"),
                             ("METRICS_ARCHIVE_RETENTION", "100000000", "less than or equal to 36500")):
        r = run("--data-dir", data_dir, "status", env={name: value})
        assert r.exit_code == 2, r.output
        [line] = r.stderr.splitlines()
        assert line.startswith(f"metrics-ops: {name}={value} (from the environment): ") and why in line, line


def test_the_archive_settings_default_off_with_the_host_name():
    s = load_settings(env_file=None)
    assert s.archive_url is None and s.archive_location is None and s.archive_retention == 400
    assert s.host_id == default_host_id()
    assert load_settings({"host_id": "web-2"}).host_id == "web-2"


@pytest.mark.parametrize("name, host_id", [
    ("web1", "web1"), ("Web1.Example.COM", "web1-example-com"), ("db_2", "db-2"), ("--x--", "x"),
    ("ünïcode", "n-code"), ("...", "localhost"), ("a" * 70 + "-b", "a" * 63), ("a" * 62 + ".b", "a" * 62),
])
def test_the_default_host_id_is_the_host_name_made_valid(name, host_id):
    assert default_host_id(name) == host_id
    assert load_settings({"host_id": host_id}).host_id == host_id


def test_extra_metadata_is_stored_and_head_reads_forgotten_from(tmp_path, archive_url):
    """forget's rewrite carries forgotten-from = the sha256 of the version it replaced (the contract's point 2)."""
    bucket = opened(archive_url)
    first, second = a_file(tmp_path, b"first\n", "a.gz"), a_file(tmp_path, b"second\n", "b.gz")
    key = object_key(bucket.location, DAY, "web-1", "metrics-2026-11-24.jsonl.gz")
    old = bucket.put_file(key, first, sha256=file_digest(first)[0], size=file_digest(first)[1])
    assert old.forgotten_from is None
    new = bucket.put_file(key, second, sha256=file_digest(second)[0], size=file_digest(second)[1], if_match=old.etag,
                          extra_metadata={"forgotten-from": old.sha256})
    assert new.forgotten_from == old.sha256 == file_digest(first)[0]
    assert bucket.head(key) == new and new.matches(*file_digest(second))


def test_open_stream_if_match_reads_only_that_version(tmp_path, archive_url):
    bucket = opened(archive_url)
    first, second = a_file(tmp_path, b"first\n", "a.gz"), a_file(tmp_path, b"second\n", "b.gz")
    key = object_key(bucket.location, DAY, "web-1", "metrics-2026-11-24.jsonl.gz")
    old = bucket.put_file(key, first, sha256=file_digest(first)[0], size=file_digest(first)[1])
    with bucket.open_stream(key, if_match=old.etag) as stream:
        assert stream.read() == b"first\n"
    bucket.put_file(key, second, sha256=file_digest(second)[0], size=file_digest(second)[1])
    with pytest.raises(PreconditionFailed, match="412"):
        bucket.open_stream(key, if_match=old.etag)
