"""Attacks on the archive step and erasure across hosts (helper A2): a hostile operator, a hostile environment,
a careless second process. Each test is one attack that once lost or damaged data, against a real S3 server."""

import gzip
import json
from datetime import date, timedelta

from metrics_ops import offsite
from metrics_ops.objectstore import Bucket, parse_archive_url

from .helpers import cli, data_file
from .test_offsite import archive_env


def object_lines(archive_url, name):
    bucket = Bucket(parse_archive_url(archive_url))
    key = next(o.key for o in bucket.list() if o.key.endswith("/" + name))
    with bucket.open_stream(key) as stream:
        return gzip.decompress(stream.read()).decode().splitlines()


def test_a_new_file_under_a_pruned_archived_name_never_overwrites_the_archived_day(data_dir, archive_url):
    """prune deleted an archived day (its record stayed); later a writer under a wrong clock (or a restore, a
    copy) makes a file of the same name. The object is the day's only copy: it must not be uploaded over."""
    day = date.today() - timedelta(days=10)
    name = f"metrics-{day.isoformat()}.jsonl"
    whole = data_file(data_dir / name, [{"visitor_id": f"v{i}", "event": "day"} for i in range(200)], gz=True)
    env = archive_env(archive_url, data_dir, METRICS_RETENTION=5, METRICS_GZIP_AFTER=1)
    first = cli("rotate", "--once", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert not (data_dir / (name + ".gz")).exists()  # archived, then pruned
    assert object_lines(archive_url, name + ".gz") == whole
    # a late writer (a serve whose clock is days behind) writes a few lines into that day
    data_file(data_dir / name, [{"visitor_id": "late", "event": "late"}])
    cli("rotate", "--once", "--json", env=env)
    again = cli("archive", "--json", env=env)
    assert object_lines(archive_url, name + ".gz") == whole  # the archived day is still whole
    assert again.returncode == 7, again.stderr  # the late file is in conflict with the object: kept, reported
    assert gzip.decompress((data_dir / (name + ".gz")).read_bytes()).decode().splitlines() == [
        '{"visitor_id":"late","event":"late"}']


def test_a_file_deleted_by_hand_loses_its_record_so_a_new_one_is_never_uploaded_over(data_dir, archive_url):
    day = date.today() - timedelta(days=3)
    name = f"metrics-{day.isoformat()}.jsonl.gz"
    whole = data_file(data_dir / name, [{"visitor_id": f"v{i}", "event": "day"} for i in range(50)], gz=True)
    env = archive_env(archive_url, data_dir)
    assert cli("archive", env=env).returncode == 0
    (data_dir / name).unlink()  # by hand: no pass deleted it
    swept = cli("archive", "--json", env=env)
    assert swept.returncode == 0, swept.stderr
    assert [(a["kind"], a["file"]) for a in json.loads(swept.stdout)["actions"]] == [("drop-record", name)]
    assert offsite.read_record(data_dir, name) is None
    data_file(data_dir / name, [{"visitor_id": "other", "event": "copy"}], gz=True)
    after = cli("archive", "--json", env=env)
    assert after.returncode == 7, after.stderr
    assert object_lines(archive_url, name) == whole


def test_a_record_that_is_a_symlink_a_fifo_or_huge_counts_as_none_and_never_hangs(data_dir, tmp_path):
    import os

    name = "metrics-2026-11-24.jsonl.gz"
    (data_dir / ".metrics-ops.archived").mkdir()
    path = data_dir / ".metrics-ops.archived" / (name + ".json")
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps({"key": "k", "sha256": "ab" * 32, "size": 1, "etag": "e", "time": 0}))
    path.symlink_to(real)
    assert offsite.read_record(data_dir, name) is None  # never through a symlink
    path.unlink()
    path.symlink_to("/dev/zero")
    assert offsite.read_record(data_dir, name) is None  # once read forever, filling memory
    path.unlink()
    os.mkfifo(path)
    assert offsite.read_record(data_dir, name) is None  # once blocked forever
    path.unlink()
    path.write_text("[1, 2]")  # JSON, but not an object
    assert offsite.read_record(data_dir, name) is None


def test_an_endpoint_with_user_info_never_shows_its_secret(data_dir, tmp_path):
    """AWS_ENDPOINT_URL=http://user:secret@host (a proxy's credentials): the errors of a pass that cannot reach it
    (stderr, --json, the status file, the textfile) show http://***@host."""
    from .helpers import free_port

    day = date.today() - timedelta(days=3)
    data_file(data_dir / f"metrics-{day.isoformat()}.jsonl", [{"visitor_id": "v", "event": "e"}], gz=True)
    textfile = tmp_path / "metrics_ops.prom"
    env = {**archive_env("s3://metrics/p", data_dir, METRICS_HEALTH_TEXTFILE=textfile),
           "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "SECRETEXAMPLE", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://proxyuser:PROXYSECRET@127.0.0.1:{free_port()}/"}
    shown = []
    for args in (("archive",), ("archive", "--json"), ("rotate", "--once", "--json"), ("status", "--json")):
        done = cli(*args, env=env)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        shown += [done.stdout, done.stderr]
    assert any("http://***@127.0.0.1" in text for text in shown)
    shown += [p.read_text(errors="replace") for p in data_dir.glob(".metrics-ops.status*")]
    assert textfile.exists()
    shown.append(textfile.read_text())
    for text in shown:
        assert "PROXYSECRET" not in text and "SECRETEXAMPLE" not in text


def test_a_changed_host_id_never_archives_a_day_twice(data_dir, archive_url):
    """host_id defaults to the host name: a renamed host (or a changed METRICS_HOST_ID) must not upload its
    archived files again under the new id, where every report would count them twice and archive retention
    would never drop the first copies."""
    day = date.today() - timedelta(days=2)
    name = f"metrics-{day.isoformat()}.jsonl.gz"
    data_file(data_dir / name, [{"visitor_id": f"v{i}", "event": "day"} for i in range(20)], gz=True)
    assert cli("archive", env=archive_env(archive_url, data_dir)).returncode == 0
    renamed = cli("archive", env={**archive_env(archive_url, data_dir), "METRICS_HOST_ID": "web-9"})
    assert renamed.returncode == 7, renamed.stderr
    assert "Traceback" not in renamed.stderr
    assert "host=web-1/" + name in renamed.stdout + renamed.stderr  # names where it is archived
    bucket = Bucket(parse_archive_url(archive_url))
    assert [o.key.split("/")[-2] for o in bucket.list()] == ["host=web-1"]  # one copy only
    assert (data_dir / name).exists()  # kept: prune never deletes it while the two disagree
    pruned = cli("prune", env={**archive_env(archive_url, data_dir), "METRICS_HOST_ID": "web-9",
                                "METRICS_RETENTION": "1"})
    assert (data_dir / name).exists(), pruned.stdout


def test_a_local_file_damaged_after_its_upload_never_replaces_the_good_object(data_dir, archive_url):
    """A failing disk (or a careless `: > file`) damages an archived file: the archive is the good copy, and a
    pass must not upload the damage over it (and then let prune delete the local file)."""
    days = [date.today() - timedelta(days=age) for age in (2, 3)]
    names = [f"metrics-{d.isoformat()}.jsonl.gz" for d in days]
    whole = {n: data_file(data_dir / n, [{"visitor_id": f"v{i}", "event": n} for i in range(500)], gz=True)
             for n in names}
    env = archive_env(archive_url, data_dir)
    assert cli("archive", env=env).returncode == 0
    data = (data_dir / names[0]).read_bytes()
    (data_dir / names[0]).write_bytes(data[: len(data) // 2])  # truncated
    (data_dir / names[1]).write_bytes(b"")  # emptied
    again = cli("archive", env=env)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "damaged" in again.stderr
    for n in names:
        assert object_lines(archive_url, n) == whole[n]
    cli("prune", env={**env, "METRICS_RETENTION": "1"})
    assert all((data_dir / n).exists() for n in names)  # not archived: kept


def test_two_forgets_before_another_hosts_pass_still_reach_its_local_copy(tmp_path, archive_url):
    """Deletion requests come in batches: two forgets on web-1 rewrite web-2's object twice before web-2's next
    pass. web-2's local copy (what it uploaded, two versions ago) must still be replaced, not kept as a conflict
    holding both visitors until archive_retention."""
    from metrics_ops.store import file_name

    from .test_forget_archive import D1, env_for, rows

    web1, web2 = tmp_path / "web-1", tmp_path / "web-2"
    web1.mkdir()
    web2.mkdir()
    data_file(web2 / file_name(D1), [{**r, "received_at": f"{D1}T10:00:00Z"} for r in
                                     rows(D1, "web-2", ["v1", "a", "b", "c", "d", "e", "v2"])])
    assert cli("--data-dir", web2, "rotate", "--once", env=env_for(archive_url, "web-2")).returncode == 0
    for visitor in ("v1", "v2"):
        r = cli("--data-dir", web1, "forget", visitor, env=env_for(archive_url, "web-1"))
        assert r.returncode == 0, r.stderr
    again = cli("--data-dir", web2, "rotate", "--once", "--json", env=env_for(archive_url, "web-2"))
    assert again.returncode == 0, again.stderr
    local = gzip.decompress((web2 / (file_name(D1) + ".gz")).read_bytes()).decode().splitlines()
    assert [json.loads(x)["visitor_id"] for x in local] == ["a", "b", "c", "d", "e"]
    assert json.loads((web2 / "rollups" / f"rollup-{D1}.json").read_text())["lines"] == 5


def test_a_full_disk_while_restoring_a_forgotten_object_keeps_the_local_file_whole(tmp_path, small_tmpfs,
                                                                                     archive_url):
    """web-2's pass replaces its copy with the object forget rewrote, on a disk with no room for the new
    version: one line, exit 1, the local file and its record untouched, no temporary file left; with room
    again the next pass completes."""
    import os
    import secrets

    from metrics_ops.store import file_name

    from .helpers import fill
    from .test_forget_archive import D1, env_for

    web1, web2 = tmp_path / "web-1", small_tmpfs("8m") / "data"
    web1.mkdir()
    web2.mkdir()
    # incompressible lines: the object stays about as large as the file
    data_file(web2 / file_name(D1), [{"visitor_id": f"v{i % 50}", "event": "e", "pad": secrets.token_hex(200),
                                      "received_at": f"{D1}T10:00:00Z"} for i in range(2500)])
    assert cli("--data-dir", web2, "rotate", "--once", env=env_for(archive_url, "web-2")).returncode == 0
    name = file_name(D1) + ".gz"
    before = (web2 / name).read_bytes()
    record = offsite.read_record(web2, name)
    assert cli("--data-dir", web1, "forget", "v7", env=env_for(archive_url, "web-1")).returncode == 0
    filler = fill(web2.parent)
    full = cli("--data-dir", web2, "archive", env=env_for(archive_url, "web-2"))
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert (web2 / name).read_bytes() == before and offsite.read_record(web2, name) == record
    assert not [n for n in os.listdir(web2) if n.endswith(".tmp")]
    filler.unlink()
    again = cli("--data-dir", web2, "archive", env=env_for(archive_url, "web-2"))
    assert again.returncode == 0, again.stderr
    local = gzip.decompress((web2 / name).read_bytes()).decode().splitlines()
    assert len(local) == 2450 and not any('"v7"' in line for line in local)


def test_an_archive_set_aside_as_unreadable_is_kept_until_archive_retention(data_dir, archive_url):
    """gzip sets an unreadable archive aside (never archived: it cannot be read whole). Its readable part is the
    only copy of that day: with an archive, prune keeps it past retention, until archive_retention."""
    day = date.today() - timedelta(days=40)
    aside = f".metrics-{day.isoformat()}.jsonl.gz.corrupt"
    data = gzip.compress(b'{"visitor_id":"v","event":"e"}\n' * 100)
    (data_dir / aside).write_bytes(data[: len(data) // 2])
    env = archive_env(archive_url, data_dir, METRICS_RETENTION=30)
    kept = cli("prune", "-v", env=env)
    assert kept.returncode == 0, kept.stderr
    assert (data_dir / aside).exists() and "kept until archive_retention" in kept.stdout + kept.stderr
    gone = cli("prune", env={**env, "METRICS_ARCHIVE_RETENTION": "40"})
    assert gone.returncode == 0, gone.stderr
    assert not (data_dir / aside).exists()  # no archive keeps its day any longer
    without = data_dir / f".metrics-{day.isoformat()}.jsonl.gz.corrupt.1"
    without.write_bytes(data[:10])
    assert cli("prune", env={"METRICS_DIR": str(data_dir), "METRICS_RETENTION": "30"}).returncode == 0
    assert not without.exists()  # without an archive: deleted with its day, as before


def test_a_clock_far_ahead_never_empties_the_archive(data_dir, archive_url):
    """An NTP glitch puts one host's clock 500 days ahead: by its clock every object is past archive_retention.
    The bucket's clock (its replies' Date) says otherwise: archive retention must not drop them, and prune must
    not delete a local file that is not archived as 'past archive_retention'."""
    import shutil

    if shutil.which("faketime") is None:
        import pytest

        pytest.skip("faketime is not installed")
    days = [date.today() - timedelta(days=age) for age in (2, 3)]
    names = [f"metrics-{d.isoformat()}.jsonl.gz" for d in days]
    for n in names:
        data_file(data_dir / n, [{"visitor_id": "v", "event": n}], gz=True)
    env = archive_env(archive_url, data_dir)
    assert cli("archive", env=env).returncode == 0
    bucket = Bucket(parse_archive_url(archive_url))
    assert len(list(bucket.list())) == 2
    late = date.today() - timedelta(days=1)
    plain = f"metrics-{late.isoformat()}.jsonl"
    data_file(data_dir / plain, [{"visitor_id": "w", "event": "not archived yet"}])
    ahead = cli("rotate", "--once", "--json", env={**env, "FAKETIME": "+500d", "LD_PRELOAD": _libfaketime()})
    assert "Traceback" not in ahead.stderr
    assert len(list(bucket.list())) == 2, ahead.stdout  # the archive is whole
    assert ahead.returncode == 1 and "RequestTimeTooSkewed" in ahead.stderr, ahead.stderr  # SigV4 signs the time
    left = {p.name for p in data_dir.glob("metrics-*")}
    assert plain in left or plain + ".gz" in left  # never archived: never deleted


def _libfaketime() -> str:
    import glob

    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1")
    return found[0]


def test_status_with_a_bucket_that_never_answers_returns(data_dir):
    """A bucket that accepts connections and never answers: status (a HEAD for the next pass's prune) gives up
    after one short try instead of 3 tries of 60 s (about 3 minutes, past most monitoring timeouts)."""
    import socket
    import subprocess

    silent = socket.create_server(("127.0.0.1", 0), backlog=16)  # the kernel accepts; nobody ever replies
    try:
        day = date.today() - timedelta(days=40)
        data_file(data_dir / f"metrics-{day.isoformat()}.jsonl", [{"visitor_id": "v", "event": "e"}], gz=True)
        env = {**archive_env("s3://metrics/p", data_dir), "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        try:
            done = cli("status", env=env, timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError("status waited on the silent bucket for minutes") from None
        assert done.returncode == 7 and "Traceback" not in done.stderr
    finally:
        silent.close()
