"""sample-test's simulation speed: 1,000,000 events through the client and server samplers.

Usage: python bench/sample_bench.py [--events 1000000] [--repeat 3] [--json]
Baseline in the same run: a list of 1,000,000 random.random() draws (the least a simulation can do).
Target (issue 4): a 1,000,000-event simulation in under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import argparse
import json
import random

from common import best_time  # noqa: E402

from metrics_ops.sampletest import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.events
    draw = random.Random(1).random
    base = best_time(args.repeat, lambda: [draw() for _ in range(n)])
    rows = {}
    for mode in ("random", "visitor"):
        for c, s in ((1.0, 0.5), (0.25, 0.5)):
            t = best_time(args.repeat, lambda c=c, s=s, mode=mode: simulate(c, s, n, mode=mode, seed=1))
            rows[f"{mode} {c:g} x {s:g}"] = {"seconds": round(t, 3), "vs_baseline": round(t / base, 2)}
    if args.json:
        print(json.dumps({"events": n, "baseline_s": round(base, 3), "rows": rows}, indent=2))
        return
    print(f"| {n:,} simulated events | seconds | vs {n:,} random() draws ({base:.3f} s) |")
    print("|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['seconds']:.3f} | {r['vs_baseline']:.1f}x |")


if __name__ == "__main__":
    main()
