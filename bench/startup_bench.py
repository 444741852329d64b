"""Start-up benchmark: `metrics-ops --help` and a completion request against a bare click CLI, same run.

Usage: python bench/startup_bench.py [--runs 30] [--json]
Every TAB press starts the program, so start-up is felt. Both programs run on the same interpreter as whole
processes; the best and the median of --runs are reported. Target (issue 6): at most 1.5x the bare click CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO = '''import click

@click.group()
def cli():
    """A bare click CLI."""

@cli.command()
def hello():
    """Say hello."""
    click.echo("hello")

cli()
'''


def timed(cmd: list[str], env: dict, runs: int) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return {"best_ms": round(min(times) * 1000, 1), "median_ms": round(statistics.median(times) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        hello = Path(d) / "hello.py"
        hello.write_text(HELLO)
        env = dict(os.environ)
        comp = {**env, "_METRICS_OPS_COMPLETE": "bash_complete", "COMP_WORDS": "metrics-ops ro", "COMP_CWORD": "1"}
        bare_comp = {**env, "_HELLO_PY_COMPLETE": "bash_complete", "COMP_WORDS": "hello.py he", "COMP_CWORD": "1"}
        rows = {
            "bare click: --help": timed([sys.executable, str(hello), "--help"], env, args.runs),
            "metrics-ops --help": timed([sys.executable, "-m", "metrics_ops", "--help"], env, args.runs),
            "bare click: completion": timed([sys.executable, str(hello)], bare_comp, args.runs),
            "metrics-ops completion (ro<TAB>)": timed([sys.executable, "-m", "metrics_ops"], comp, args.runs),
        }
    ratio_help = rows["metrics-ops --help"]["median_ms"] / rows["bare click: --help"]["median_ms"]
    ratio_comp = rows["metrics-ops completion (ro<TAB>)"]["median_ms"] / rows["bare click: completion"]["median_ms"]
    if args.json:
        print(json.dumps({"rows": rows, "help_ratio": round(ratio_help, 2), "completion_ratio": round(ratio_comp, 2)},
                         indent=2))
        return
    print(f"| command ({args.runs} runs) | best | median |")
    print("|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['best_ms']} ms | {r['median_ms']} ms |")
    print(f"\nmedian ratio to the bare click CLI: --help {ratio_help:.2f}x, completion {ratio_comp:.2f}x")


if __name__ == "__main__":
    main()
