"""Compression benchmark: metrics-ops gzip against gzip -6 and pigz -6, on the same files, in the same run.

Usage: python bench/gzip_bench.py [--size-mb 140] [--files 10] [--repeat 3] [--json]

Two workloads: one ~140 MB day file (1.2 M events), and a directory of 10 day files of ~14 MB each.
Each tool starts from the same plain files (copied afresh for every run); times are the best of --repeat
whole-process runs, so Python's start-up is included for metrics-ops. Targets (issue 2): at most 0.5x the
time of `gzip -6` on the directory, size at most 1.10x of `gzip -6`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, timed, write_day  # noqa: E402


def _fresh(src: Path, dst: Path) -> list[Path]:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir()
    out = []
    for p in sorted(src.iterdir()):
        shutil.copy2(p, dst / p.name)
        out.append(dst / p.name)
    return out


def _gz_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob("*.gz"))


def run_tool(tool: str, src: Path, work: Path, repeat: int) -> tuple[float, int]:
    def once() -> float:
        files = _fresh(src, work)
        if tool == "metrics-ops":
            return timed([sys.executable, "-m", "metrics_ops", "--data-dir", str(work), "gzip", "-q",
                          "--gzip-after", "1"])
        if tool == "gzip -6":
            return timed(["gzip", "-6", *map(str, files)])  # one process, files in turn, as logrotate would
        return timed(["pigz", "-6", "-p", "2", *map(str, files)])

    t = best_of(repeat, once)
    size = _gz_size(work)
    if subprocess.run(["gzip", "-t", *map(str, work.glob("*.gz"))]).returncode != 0:
        raise SystemExit(f"{tool}: output failed gzip -t")
    return t, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=140)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in ("gzip", "pigz"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    root = Path(tempfile.mkdtemp(prefix="metrics-ops-bench-"))
    try:
        old = date.today() - timedelta(days=5)
        single, many = root / "single", root / "dir"
        single.mkdir()
        many.mkdir()
        events = write_day(single / f"metrics-{old}.jsonl", int(args.size_mb * 2**20), 1, old.isoformat())
        for i in range(args.files):
            d = old - timedelta(days=i)
            write_day(many / f"metrics-{d}.jsonl", int(args.size_mb * 2**20 / args.files), 100 + i, d.isoformat())
        results = {}
        for label, src in (("one day file", single), (f"{args.files}-file directory", many)):
            plain = sum(p.stat().st_size for p in src.iterdir())
            rows = {tool: run_tool(tool, src, root / "work", args.repeat) for tool in ("gzip -6", "pigz -6",
                                                                                       "metrics-ops")}
            g_t, g_s = rows["gzip -6"]
            p_t, _ = rows["pigz -6"]
            results[label] = {
                "plain_bytes": plain,
                **{tool: {"seconds": round(t, 3), "bytes": s} for tool, (t, s) in rows.items()},
                "time_vs_gzip": round(rows["metrics-ops"][0] / g_t, 3),
                "time_vs_pigz": round(rows["metrics-ops"][0] / p_t, 3),
                "size_vs_gzip": round(rows["metrics-ops"][1] / g_s, 3),
            }
        results["events_in_day_file"] = events
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| workload | gzip -6 | pigz -6 (2 cores) | metrics-ops gzip | time vs gzip -6 | vs pigz -6 "
          "| size vs gzip -6 |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        if not isinstance(r, dict):
            continue
        print(f"| {label} ({r['plain_bytes'] / 1e6:.0f} MB) | {r['gzip -6']['seconds']:.2f} s, "
              f"{r['gzip -6']['bytes'] / 1e6:.1f} MB | {r['pigz -6']['seconds']:.2f} s | "
              f"{r['metrics-ops']['seconds']:.2f} s, {r['metrics-ops']['bytes'] / 1e6:.1f} MB | "
              f"{r['time_vs_gzip']:.2f}x | {r['time_vs_pigz']:.2f}x | {r['size_vs_gzip']:.3f}x |")


if __name__ == "__main__":
    main()
