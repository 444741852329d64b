"""Warm report with process start (issue 21 goal 2: under 0.3 s), for one or more installs, runs alternated.

Usage: python bench/warm_report_bench.py --dir DIR --since DAY --until DAY [--runs 9] [--python NAME=PYTHON ...]
DIR must already hold its rollups (DIR/rollups/, written by a pass or an earlier report); it is only read. Each
install runs ``PYTHON -m metrics_ops --data-dir DIR report --since .. --until .. --by day,event --json`` as a
whole process, one install after the other in every round (so a burst of load hits all of them alike); the best
and the median wall and CPU (user + sys) of --runs are printed, and the outputs must be equal.
Byte-compile the installs first (``python -m compileall -q``): with PYTHONDONTWRITEBYTECODE set, a checkout
compiles its modules again at every start. The processes run in an empty directory (no .env, no checkout on
the path); to time a checkout that is not installed, give a wrapper script that cds there and execs a Python.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--since", required=True)
    ap.add_argument("--until", required=True)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--python", action="append", default=[], metavar="NAME=PYTHON",
                    help="an install to time (repeatable; default: this Python)")
    args = ap.parse_args()
    pythons = dict(p.split("=", 1) for p in args.python) or {"this": sys.executable}
    cmd = ["-m", "metrics_ops", "--data-dir", os.path.abspath(args.dir), "report", "--since", args.since,
           "--until", args.until, "--by", "day,event", "--json"]
    wall: dict[str, list[float]] = {name: [] for name in pythons}
    cpu: dict[str, list[float]] = {name: [] for name in pythons}
    outputs = set()
    empty = tempfile.mkdtemp(prefix="warm-report-bench-")
    for _ in range(args.runs):
        for name, python in pythons.items():
            before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            r = subprocess.run([python, *cmd], stdout=subprocess.PIPE, check=True, cwd=empty)
            t1, after = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            wall[name].append(t1 - t0)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            outputs.add(r.stdout)
    for name in pythons:
        print(f"{name}: wall best {min(wall[name]):.3f} s, median {statistics.median(wall[name]):.3f} s; "
              f"CPU best {min(cpu[name]):.3f} s, median {statistics.median(cpu[name]):.3f} s")
    os.rmdir(empty)
    print(f"outputs equal: {len(outputs) == 1}; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
