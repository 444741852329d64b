"""forget across the archive: the bucket's part (metrics_ops.erasure.erase_archive) against a real SeaweedFS,
sequential (1 worker) against a few workers, in the same run.

    python3 bench/forget_archive_bench.py [--days 10] [--hosts 3] [--mib 8] [--hits 3] [--rounds 3]
                                          [--workers 1,4]

The bucket holds DAYS x HOSTS objects in the layout, each the gzip of MIB MiB of ordinary event lines; the
forgotten visitor is in HITS of them (a real rewrite each round: the visitor's line is put back between rounds).
Rows alternate between the worker counts so that the machine's load falls on both alike; the figure is the
median wall time per worker count and the ratio to the first.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metrics_ops.erasure import erase_archive  # noqa: E402
from metrics_ops.forget import visitor_rule  # noqa: E402
from metrics_ops.objectstore import Bucket, Location, object_key  # noqa: E402
from tests.s3server import S3Server  # noqa: E402

GONE = "v-forget-me"


def day_bytes(mib: int, seed: int, hit: bool) -> bytes:
    line = {"visitor_id": "", "event": "view", "received_at": "2026-11-24T10:00:00Z",
            "metadata": {"path": "/pricing"}}
    lines = []
    size = 0
    i = 0
    while size < mib << 20:
        line["visitor_id"] = f"v{seed}-{i % 5000}"
        line["metadata"]["path"] = f"/p/{(i * 7919) % 1000}"
        text = json.dumps(line, separators=(",", ":")) + "\n"
        lines.append(text)
        size += len(text)
        i += 1
    if hit:
        lines.insert(len(lines) // 2, json.dumps({"visitor_id": GONE, "event": "view"}) + "\n")
    return gzip.compress("".join(lines).encode(), 6)


def upload(bucket: Bucket, tmp: Path, key: str, data: bytes) -> None:
    path = tmp / "up.gz"
    path.write_bytes(data)
    bucket.put_file(key, path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--hits", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,4")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = S3Server(tmp / "weed").start()
        try:
            os.environ.update(server.env())
            for key in S3Server.UNWANTED:
                os.environ.pop(key, None)
            bucket = Bucket(Location(server.bucket, "bench"))
            hits = {}
            n = 0
            for d in range(args.days):
                day = date(2026, 11, 1) + timedelta(days=d)
                for h in range(args.hosts):
                    key = object_key(bucket.location, day, f"web-{h + 1}", f"metrics-{day}.jsonl.gz")
                    hit = n < args.hits
                    data = day_bytes(args.mib, n, hit)
                    upload(bucket, tmp, key, data)
                    if hit:
                        hits[key] = data
                    n += 1
            total = sum(o.size for o in bucket.list())
            print(f"{n} objects, {total / 1e6:.1f} MB compressed, {args.mib} MiB of lines each, "
                  f"the visitor in {len(hits)}")
            keep = visitor_rule(frozenset({GONE}))
            times: dict[int, list[float]] = {w: [] for w in workers}
            for _ in range(args.rounds):
                for w in workers:
                    for key, data in hits.items():  # the visitor back where it was
                        upload(bucket, tmp, key, data)
                    t = time.perf_counter()
                    done = erase_archive(bucket, keep, host_id="bench", workers=w)
                    times[w].append(time.perf_counter() - t)
                    assert not done.errors and sum(o.removed for o in done.objects) == len(hits), done
            first = statistics.median(times[workers[0]])
            for w in workers:
                med = statistics.median(times[w])
                print(f"workers={w}: median {med:.2f} s over {args.rounds} rounds "
                      f"({n * args.mib / med:.0f} MiB of lines/s), {med / first:.2f}x of workers={workers[0]}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
