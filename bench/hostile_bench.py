"""Readers against hostile files: peak memory and time of report, export and forget on a small archive that holds
one enormous line, and on an ordinary large archive.

    python3 bench/hostile_bench.py [--line-mib 1024] [--archive-mib 520] [--dir /tmp/metrics-hostile-bench]
                                   [--baseline DIR]

Rows: for each data set, `report --no-rollups`, `export --output`, and `forget` of one visitor (a real rewrite:
the visitor is in the file), each a whole process. Peak RSS is the largest resident set of the process and of
every process it waited for (``getrusage(RUSAGE_CHILDREN)`` in a small launcher process, so the figure is not
the benchmark's own memory inherited through fork). Targets (issue 18, item 12): under 300 MB whatever the line,
time linear in the bytes (compare a run at half the size). ``--baseline DIR`` measures an earlier checkout
(``git archive REV | tar -x -C DIR``) in the same run; beware: before the fix a 1 GiB line took gigabytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVENTS, PATHS  # noqa: E402

VISITORS = 50_000  # a day's distinct visitors (the report's memory grows with them, not with the bytes)
#: a process that runs its arguments and reports their wall time and peak RSS (a fresh, small parent)
LAUNCH = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"status": r.returncode, "wall": wall, "cpu": use.ru_utime + use.ru_stime,
                  "peak_mb": use.ru_maxrss / 1024, "stderr": r.stderr.decode()[-300:]}))
"""


def serve_lines(day: date, n: int, seed: int) -> list[bytes]:
    from metrics_ops.events import encode_record

    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = f"{day.isoformat()}T{i * 24 // n:02d}:{rng.randint(0, 59):02d}:00.{i % 1000000:06d}Z"
        event = {"visitor_id": f"v{rng.randrange(VISITORS):010x}", "event": rng.choice(EVENTS),
                 "metadata": {"path": rng.choice(PATHS)}}
        out.append(encode_record(event, at, 0.5))
    return out


def long_line_archive(path: Path, day: date, line_mib: int) -> None:
    """Serve lines, one line of ``line_mib`` MiB, serve lines: a small .gz (the line compresses 1000:1),
    written in pieces (never the line whole in this process either)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        head = serve_lines(day, 1000, 1)
        head[10] = head[10].replace(b'"visitor_id":"v', b'"visitor_id":"forget-me-', 1)
        out.write(comp.compress(b"".join(head)))
        out.write(comp.compress(b'{"visitor_id":"huge","event":"x","metadata":{"blob":"'))
        piece = b"y" * (1 << 20)
        for _ in range(line_mib):
            out.write(comp.compress(piece))
        out.write(comp.compress(b'"}}\n' + b"".join(serve_lines(day, 1000, 2))))
        out.write(comp.flush())


def ordinary_archive(path: Path, day: date, archive_mib: int) -> None:
    """An archive of ``archive_mib`` MiB of serve lines (uncompressed), with a visitor "forget-me-..." among
    them."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        written, seed = 0, 0
        while written < archive_mib << 20:
            block = serve_lines(day, 20000, seed)
            if seed == 3:
                block[100] = block[100].replace(b'"visitor_id":"v', b'"visitor_id":"forget-me-', 1)
            data = b"".join(block)
            out.write(data)
            written += len(data)
            seed += 1


def measure(cmd: list[str], env: dict) -> dict:
    # cwd "/": `python -m` puts the working directory first on sys.path, before PYTHONPATH (a checkout there would
    # hide the baseline)
    r = subprocess.run([sys.executable, "-c", LAUNCH, *cmd], capture_output=True, text=True, env=env, check=True,
                       cwd="/")
    return json.loads(r.stdout)


def run_set(name: str, directory: Path, day: date, out: Path, env: dict, label: str) -> list:
    cli = [sys.executable, "-m", "metrics_ops", "--data-dir", str(directory)]
    rows = []
    for what, args in (("report", ["report", "--since", str(day), "--until", str(day), "--no-rollups", "--json"]),
                       ("export", ["export", "--since", str(day), "--until", str(day), "--output", str(out)]),
                       ("forget", ["forget", "--prefix", "forget-me-"])):
        m = measure([*cli, *args], env)
        rows.append((f"{name}: {what}{label}", m))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line-mib", type=int, default=1024, help="size of the enormous line (default 1 GiB)")
    ap.add_argument("--archive-mib", type=int, default=520, help="uncompressed size of the ordinary archive")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/metrics-hostile-bench"))
    ap.add_argument("--baseline", type=Path, help="an earlier checkout, measured in the same run")
    args = ap.parse_args()
    day = date.today() - timedelta(days=2)
    gz = f"metrics-{day.isoformat()}.jsonl.gz"
    sets = {}
    for name, make, size in (("one long line", long_line_archive, args.line_mib),
                             ("ordinary archive", ordinary_archive, args.archive_mib)):
        src = args.dir / f"{name.replace(' ', '-')}-{size}"
        if not (src / gz).exists():
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir(parents=True)
            make(src / gz, day, size)
        sets[name] = (src, size)
    rows = []
    builds = [("", dict(os.environ))]
    if args.baseline:
        builds.insert(0, (" (before)", {**os.environ, "PYTHONPATH": str(args.baseline)}))
    for name, (src, size) in sets.items():
        for label, env in builds:
            work = args.dir / "work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            shutil.copy2(src / gz, work / gz)  # forget rewrites it: each run starts from the same file
            rows += run_set(f"{name} ({size} MiB, {(work / gz).stat().st_size / 2**20:.1f} MiB .gz)", work, day,
                            args.dir / "out.jsonl", env, label)
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'reader':<62} {'status':>6} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}")
    for name, m in rows:
        print(f"{name:<62} {m['status']:>6} {m['wall']:7.2f} {m['cpu']:7.2f} {m['peak_mb']:8.0f}")
        if m["status"] not in (0, 1):
            print(f"    {m['stderr'].strip()}")


if __name__ == "__main__":
    main()
