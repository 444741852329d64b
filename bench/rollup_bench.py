"""Derived data is bounded: one day with 200,000 distinct event names and 200,000 distinct paths.

    python3 bench/rollup_bench.py [--distinct 200000] [--common 100000] [--dir /tmp/metrics-rollup-bench]

The day (yesterday) holds ``--distinct`` lines that each carry an event name and a path seen nowhere else, and
``--common`` lines of ordinary traffic (7 event names, 400 paths, 20,000 visitors), all made by serve's own
``encode_record``. Measured, each a whole process (peak RSS of the process and its workers, by ``wait4``):

- ``rotate --once`` writing the day's rollup: target under 300 MB peak RSS; the rollup under 1 MB;
- ``report --by event`` of that day while its raw lines are there (they answer: the rollup folds), with
  ``--no-rollups``, and from the rollup alone (the raw file moved away): under 300 MB each.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVENTS, PATHS  # noqa: E402

LIMIT_MB = 300
ROLLUP_LIMIT = 1_000_000


def generate(directory: Path, day: date, distinct: int, common: int) -> None:
    from metrics_ops.events import encode_record

    rng = random.Random(7)
    pool = [f"v{rng.getrandbits(48):012x}" for _ in range(20_000)]
    out = []
    for i in range(distinct + common):
        at = f"{day.isoformat()}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}." \
             f"{rng.randint(0, 999999):06d}Z"
        if i < distinct:
            event = {"visitor_id": rng.choice(pool), "event": f"ev.{i:06d}", "metadata": {"path": f"/u/{i:06d}"}}
        else:
            event = {"visitor_id": rng.choice(pool), "event": rng.choice(EVENTS),
                     "metadata": {"path": rng.choice(PATHS)}}
        out.append((at, encode_record(event, at, 1.0)))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if old.is_file() or old.is_symlink():
            old.unlink()
        else:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    path = directory / f"metrics-{day.isoformat()}.jsonl"
    path.write_bytes(b"".join(line for _, line in sorted(out)))


MEASURE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t0
print(code, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def run_one(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the process and the workers it waited for). Measured by a small wrapper
    process: a child started by vfork inherits its parent's peak RSS at exec, so a parent that generated the data
    would stand in for the command."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True).stdout
    code, wall, rss = out.split()
    if code != "0":
        raise SystemExit(f"{cmd} failed with {code}")
    return float(wall), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distinct", type=int, default=200_000)
    ap.add_argument("--common", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/metrics-rollup-bench"))
    ap.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    day = date.today() - timedelta(days=1)
    if args.generate:
        generate(args.dir, day, args.distinct, args.common)
        return
    subprocess.run([sys.executable, __file__, "--generate", "--distinct", str(args.distinct), "--common",
                    str(args.common), "--dir", str(args.dir)], check=True)  # apart: this process stays small
    data = args.dir / f"metrics-{day.isoformat()}.jsonl"
    print(f"data: {data.name}, {args.distinct + args.common:,} lines, {data.stat().st_size / 1e6:.1f} MB, "
          f"{args.distinct:,} distinct event names and paths beyond the common ones")
    cli = [sys.executable, "-m", "metrics_ops", "--data-dir", str(args.dir)]
    report = [*cli, "report", "--since", day.isoformat(), "--until", day.isoformat(), "--by", "event", "--json"]
    rows = [("rotate --once (writes the rollup)",
             run_one([*cli, "rotate", "--once", "-q", "--gzip-after", "400", "--retention", "400"]))]
    rollup = args.dir / "rollups" / f"rollup-{day.isoformat()}.json"
    size = rollup.stat().st_size
    rows.append(("report --by event (raw lines and rollup)", run_one(report)))
    rows.append(("report --by event --no-rollups (raw lines)", run_one([*report, "--no-rollups"])))
    data.rename(data.with_name("aside"))  # raw retention is over: only the rollup answers
    rows.append(("report --by event (the rollup alone)", run_one(report)))
    print(f"{'command':<46} {'wall s':>7} {'peak MB':>8}")
    ok = size < ROLLUP_LIMIT
    for name, (wall, rss) in rows:
        print(f"{name:<46} {wall:7.2f} {rss:8.0f}")
        ok = ok and rss < LIMIT_MB
    print(f"rollup: {size:,} bytes (limit {ROLLUP_LIMIT:,}); peak RSS limit {LIMIT_MB} MB: "
          f"{'met' if ok else 'NOT met'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
