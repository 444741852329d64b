"""report across the archive against the same report over the same files locally, in the same run (issue 20: at
most 1.2x).

    python3 bench/archive_read_bench.py [--days 30] [--events 100000] [--repeat 3] [--hosts 1]
                                        [--dir /tmp/metrics-report-bench]

The data set is bench/report_bench.py's (N days x M events as serve-shaped .gz archives, made once and reused).
A real SeaweedFS (``weed mini``, tests/s3server.py) is started in a temporary directory; each archive is put into
its bucket with metrics_ops.objectstore in the layout (``day=YYYY-MM-DD/host=<id>/<file name>``; with --hosts K,
the days are dealt round-robin to K hosts). Then, alternately, ``metrics-ops report --by day,event --no-rollups
--json`` over the local directory (the archive off), and the same report from a data directory of another host
with no files of its own and ``METRICS_ARCHIVE_URL`` set: every line comes from the bucket, streamed. Both answers
must be equal. Wall and CPU time of the report process (and its workers; the server's own CPU is in the wall
time only: on this 2-core machine it competes with the report's two workers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from report_bench import generate, run_one  # noqa: E402

from tests.s3server import S3Server  # noqa: E402


def server_cpu(server: S3Server) -> float:
    """CPU seconds the server process has used so far (user + system, from /proc)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload(files: list[Path], url: str, hosts: int) -> None:
    from metrics_ops.objectstore import Bucket, file_digest, object_key, parse_archive_url
    from metrics_ops.store import parse_name

    bucket = Bucket(parse_archive_url(url))
    for i, f in enumerate(files):
        sha, size = file_digest(f)
        key = object_key(bucket.location, parse_name(f.name).day, f"bench-{i % hosts + 2}", f.name)
        bucket.put_file(key, f, sha256=sha, size=size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hosts", type=int, default=1, help="deal the days to this many hosts in the bucket")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/metrics-report-bench"))
    args = ap.parse_args()
    files = generate(args.dir, args.days, args.events)
    size = sum(f.stat().st_size for f in files)
    print(f"data: {len(files)} archives, {args.days * args.events:,} events, {size / 1e6:.1f} MB compressed")
    since = (date.today() - timedelta(days=args.days)).isoformat()
    until = (date.today() - timedelta(days=1)).isoformat()
    rollup_dir = args.dir / "rollups"
    if rollup_dir.exists():
        for f in rollup_dir.iterdir():
            f.unlink()
    with tempfile.TemporaryDirectory(prefix="archive-read-bench-") as tmp:
        server = S3Server(Path(tmp)).start()
        try:
            url = f"s3://{server.bucket}/bench"
            base = {k: v for k, v in os.environ.items() if not k.startswith(("METRICS_", "AWS_"))}
            base.update(server.env())
            os.environ.update(server.env())
            upload(files, url, args.hosts)
            empty = Path(tmp) / "host-1"
            empty.mkdir()
            report = [sys.executable, "-m", "metrics_ops", "report", "--since", since, "--until", until, "--by",
                      "day,event", "--no-rollups", "--json"]
            local_env = {**base, "METRICS_DIR": str(args.dir), "METRICS_HOST_ID": "bench-1"}
            remote_env = {**local_env, "METRICS_DIR": str(empty), "METRICS_ARCHIVE_URL": url}
            local, remote, served = [], [], []
            for _ in range(args.repeat):  # alternate: a burst of load hits both alike
                local.append(run_one(report, local_env))
                before = server_cpu(server)
                remote.append(run_one(report, remote_env))
                served.append(server_cpu(server) - before)
        finally:
            server.stop()
    a, b = json.loads(local[0][3]), json.loads(remote[0][3])
    assert a["rows"] == b["rows"] and a["lines"] == b["lines"], "the archive answers differently"
    assert b["hosts"] == sorted(f"bench-{i + 2}" for i in range(min(args.hosts, args.days)))
    print(f"{'report --by day,event --no-rollups':<44} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}")
    for name, runs in (("local files", local), (f"from the bucket ({args.hosts} host(s))", remote)):
        print(f"{name:<44} {min(r[0] for r in runs):7.2f} {min(r[1] for r in runs):7.2f} "
              f"{max(r[2] for r in runs):8.0f}")
    wall = min(r[0] for r in remote) / min(r[0] for r in local)
    cpu = min(r[1] for r in remote) / min(r[1] for r in local)
    print(f"across the archive: {wall:.2f}x the local report's wall time, {cpu:.2f}x its CPU time "
          f"({a['lines']:,} lines, target: at most 1.2x); the S3 server on the same cores used "
          f"{min(served):.2f} s CPU per report")


if __name__ == "__main__":
    main()
