"""serve's free-space floor and the disk budget together, on real tmpfs mounts with real processes (issue 14)."""

import gzip
import json
import os
import signal
import subprocess
import threading
from collections import Counter
from datetime import date

import pytest

from metrics_ops.diskspace import MIB, disk_usage
from metrics_ops.layout import parse_name
from metrics_ops.store import file_name

from .helpers import CLI, days_ago
from .serve_process import Server

TODAY = date.today()
SMALL_STATE = {"METRICS_RING_CAPACITY": "10"}  # a ~100 KiB state file instead of 3.9 MiB on a small tmpfs
wait = threading.Event().wait  # time.sleep fails under libfaketime


def leave_free(mnt, free: int):
    """Fill ``mnt`` until about ``free`` bytes are left; return the filler file."""
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * (disk_usage(mnt).free - free))
    return filler


def test_serve_stores_nothing_under_its_floor_says_why_and_resumes(small_tmpfs, tmp_path):
    mnt = small_tmpfs("8m")
    data = mnt / "data"
    server = Server(data, tmp_path / "serve.log", env={**SMALL_STATE, "METRICS_SERVE_MIN_FREE_MB": "2"})
    try:
        assert server.post_event({"visitor_id": "before", "event": "e"}) == (
            202, {"ok": True, "stored": 1, "file": file_name(TODAY)})
        filler = leave_free(mnt, MIB)
        wait(0.3)  # every worker reads free space at most every 250 ms
        for i in range(10):
            status, body = server.post_event({"visitor_id": f"low-{i}", "event": "e"})
            assert (status, body["stored"]) == (202, 0)
        assert disk_usage(mnt).free > 0.9 * MIB  # nothing was appended
        status, health = server.request("GET", "/healthz")
        assert status == 503 and health["reason"] == "low_space"
        metrics = server.request("GET", "/metrics")[1].decode()
        assert "metrics_ops_events_low_space_total 10\n" in metrics
        snapshot = server.request("GET", "/api/metrics/snapshot")[1]
        assert "under serve's floor of 2.0 MiB (METRICS_SERVE_MIN_FREE_MB)" in snapshot["health"]["detail"]
        counters = snapshot["counters"]
        assert (counters["received"], counters["stored"], counters["low_space"], counters["write_errors"]) == (
            11, 1, 10, 0)
        filler.unlink()
        wait(0.3)
        assert server.post_event({"visitor_id": "after", "event": "e"})[1]["stored"] == 1
        assert server.request("GET", "/healthz")[0] == 200
    finally:
        assert server.stop() == 0, server.log
    lines = (data / file_name(TODAY)).read_text().splitlines()
    assert [json.loads(line)["visitor_id"] for line in lines] == ["before", "after"]


def documents(text: str) -> list[dict]:
    """The JSON documents a `rotate --interval ... --json` loop printed, one per pass."""
    decoder, docs, rest = json.JSONDecoder(), [], text.lstrip()
    while rest:
        doc, end = decoder.raw_decode(rest)
        docs.append(doc)
        rest = rest[end:].lstrip()
    return docs


@pytest.mark.slow
def test_a_flood_with_the_rotator_looping_keeps_free_space_and_loses_only_the_oldest_days(small_tmpfs, tmp_path):
    mnt = small_tmpfs("24m")
    data = mnt / "data"
    data.mkdir()
    old = []
    for age in range(10, 0, -1):  # ~10 MiB of old archives, one per day
        name = file_name(days_ago(age), gz=True)
        body = b"".join(b'{"visitor_id":"old","event":"e","pad":"%s"}\n' % os.urandom(300).hex().encode()
                        for _ in range(1400))
        (data / name).write_bytes(gzip.compress(body, 1))
        old.append(name)
    env = {**os.environ, **SMALL_STATE, "METRICS_DIR": str(data)}
    server = Server(data, tmp_path / "serve.log", env={**SMALL_STATE, "METRICS_SERVE_MIN_FREE_MB": "2"})
    rotator = subprocess.Popen([*CLI, "rotate", "--interval", "0.3", "--json", "--min-free-mb", "8", "--max-mb", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lowest, done = [disk_usage(mnt).free], threading.Event()

    def watch():
        while not done.is_set():
            lowest.append(disk_usage(mnt).free)
            done.wait(0.01)

    answers: list[tuple[str, int]] = []

    def flood(worker: int):
        with server.connection() as conn:
            for i in range(3000):
                vid = f"flood-{worker}-{i}"
                status, body = server.post_event({"visitor_id": vid, "event": "e", "metadata": {"pad": "x" * 900}},
                                                 conn=conn)
                assert status == 202
                answers.append((vid, body["stored"]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        threads = [threading.Thread(target=flood, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(1.0)  # a last pass or two
    finally:
        done.set()
        watcher.join()
        rotator.send_signal(signal.SIGTERM)
        out, err = rotator.communicate(timeout=30)
        assert server.stop() == 0, server.log
    assert rotator.returncode == 0, err
    deleted = [a["file"] for doc in documents(out) for a in doc["actions"]
               if a["step"] == "budget" and a["status"] == "done"]
    assert deleted, "the flood should have crossed the budget"
    assert deleted == old[:len(deleted)]  # the oldest days first, in order, and only old days
    assert all(parse_name(n).day < TODAY for n in deleted)
    print(f"budget deleted {len(deleted)} old days; lowest free space {min(lowest) / MIB:.1f} MiB")
    assert min(lowest) > 2 * MIB  # serve's floor held; the budget kept the disk from filling
    assert len(answers) == 12000 and all(stored == 1 for _, stored in answers)
    on_disk = Counter()
    for p in data.iterdir():
        parsed = parse_name(p.name)
        if parsed is not None and parsed.day == TODAY:
            on_disk.update(json.loads(line)["visitor_id"] for line in p.read_text().splitlines())
    assert on_disk == Counter(vid for vid, _ in answers)  # every stored:1 answer, exactly once
