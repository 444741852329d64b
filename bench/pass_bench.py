"""Maintenance-pass benchmark: a directory holding a year of files (~9,000: 365 days x 25 shards).

Usage: python bench/pass_bench.py [--days 365] [--shards 25] [--repeat 5] [--json]

Measures, in one run: (a) a steady-state pass (everything old is already archived, retention 400 days:
nothing to do but scan and plan), in-process and as a whole `metrics-ops rotate --once` process;
(b) the same pass with --retention 30 that prunes ~8,000 archives; baseline: one os.scandir() of the
same directory, and `python -c pass` for process start-up. Target (issue 2): well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import best_time  # noqa: E402

from metrics_ops.budget import Budget
from metrics_ops.config import load_settings
from metrics_ops.maintenance import run_pass
from metrics_ops.status import build_status
from metrics_ops.store import Store, file_name


def populate(d: Path, days: int, shards: int) -> int:
    today = date.today()
    n = 0
    for age in range(days):
        day = today - timedelta(days=age)
        for shard in range(shards):
            name = file_name(day, shard, gz=age >= 3)
            (d / name).write_bytes(b"")
            n += 1
    return n




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--shards", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metrics-ops-pass-"))
    try:
        d = root / "data"
        d.mkdir()
        files = populate(d, args.days, args.shards)
        store = Store(d, ZoneInfo("UTC"))
        scan = best_time(args.repeat, lambda: list(os.scandir(d)))
        steady = best_time(args.repeat, lambda: run_pass(store, now=time.time(), gzip_after=3, retention=400))
        # issue 14: the same pass with a disk budget (one lstat per file, nothing over it), and `status`
        budget = Budget(max_total_mb=1024, min_free_percent=1)  # the ceiling needs every file's size
        budgeted = best_time(args.repeat, lambda: run_pass(store, now=time.time(), gzip_after=3, retention=400,
                                                           budget=budget))
        settings = load_settings({"dir": str(d), "retention": 400}, env_file=None)
        status = best_time(args.repeat, lambda: build_status(settings, now=time.time()))
        status_cmd = [sys.executable, "-m", "metrics_ops", "--data-dir", str(d), "status", "--json"]
        status_process = best_time(args.repeat, lambda: subprocess.run(status_cmd, env={**os.environ,
                                   "METRICS_RETENTION": "400"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cmd = [sys.executable, "-m", "metrics_ops", "--data-dir", str(d), "rotate", "--once", "-q",
               "--retention", "400"]
        process = best_time(args.repeat, lambda: subprocess.run(cmd, check=True))
        bare = best_time(args.repeat, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        t0 = time.perf_counter()
        result = run_pass(store, now=time.time(), gzip_after=3, retention=30)
        prune = time.perf_counter() - t0
        deleted = sum(1 for a in result.actions if a.kind == "delete" and a.status == "done")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {
        "files": files,
        "scandir_s": round(scan, 4),
        "steady_pass_s": round(steady, 4),
        "steady_pass_vs_scandir": round(steady / scan, 1),
        "rotate_once_process_s": round(process, 3),
        "python_startup_s": round(bare, 3),
        "prune_pass_s": round(prune, 3),
        "budgeted_pass_s": round(budgeted, 4),
        "status_s": round(status, 4),
        "status_process_s": round(status_process, 3),
        "deleted": deleted,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"| files | scandir | steady pass (in-process) | `rotate --once` process | bare python | "
          f"pass pruning {deleted} files |")
    print("|---|---|---|---|---|---|")
    print(f"| {files} | {scan * 1000:.1f} ms | {steady * 1000:.1f} ms ({out['steady_pass_vs_scandir']}x scandir) | "
          f"{process * 1000:.0f} ms | {bare * 1000:.0f} ms | {prune * 1000:.0f} ms |")
    print()
    print("| files | steady pass | the same with a disk budget | `status` (in-process) | `metrics-ops status` "
          "process |")
    print("|---|---|---|---|---|")
    print(f"| {files} | {steady * 1000:.1f} ms | {budgeted * 1000:.1f} ms ({budgeted / steady:.2f}x) | "
          f"{status * 1000:.1f} ms ({status / scan:.1f}x scandir) | {status_process * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
