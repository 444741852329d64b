"""The reading end against DuckDB: 30 days x 100,000 events as .gz archives, count + distinct visitors per day and
event, every reader measured in the same run (ratios; absolute figures drift on a shared machine).

    python3 bench/report_bench.py [--days 30] [--events 100000] [--repeat 3] [--shapes abcde]
                                  [--dir /tmp/metrics-report-bench] [--baseline DIR]

Line shapes (issue 21; one data set each, DIR/<shape>/): (a) serve's current lines (its ``encode_record``),
(b) the same without the two rate fields (this project's files from before rates were stored), (c) the seed
system's lines (``visitor_id, event, timestamp, metadata, received_at``, no ``ts``), (d) serve's fields in a random
key order with extra fields, (e) a mix of the four with 1 % damaged lines (not JSON, JSON but not an event, rates
too small to weigh). For each shape: DuckDB's read_json with the same group-by (what the report must not be
slower than) and the cold `metrics-ops report --by day,event --no-rollups` (whole process; with --baseline the
same for an earlier checkout, whose answers must be the same).

For shape (a) only: the physical floor (decompressing the archives alone: zlib-ng, one core, and `gzip -dc` per
file on both cores), and `metrics-ops report` over the same days with rollups in place (target: under 0.3 s wall
time, process start included). Peak memory (max RSS of the process and its workers) for the cold report: target
under 300 MB. Wall and CPU time both: on a machine shared with other work, CPU time is the steadier ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVENTS, PATHS  # noqa: E402

RATES = {"page_view": 0.5, "scroll": 0.25}  # server rates per event name; the rest 1
SHAPES = "abcde"
#: the damaged lines of shape (e): not JSON, JSON but not an event, rates too small to weigh
DAMAGED = [b'{"visitor_id":"vbad","event":"click","metadata":{"path":"/p/1"', b'["page_view", "v1"]',
           b'{"visitor_id":12,"event":"click"}', b'{"event":"click","received_at":"x"}',
           b'{"visitor_id":"vrare","event":"click","client_rate":1e-7,"server_rate":1e-6}']


def _record(shape: str, rng: random.Random, pool: list[str], day: date) -> tuple[str, bytes]:
    """One line of ``shape`` (a-d) and its received_at, made from the same kind of event."""
    import orjson

    from metrics_ops.events import encode_record

    ev = rng.choice(EVENTS)
    at = f"{day.isoformat()}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}." \
         f"{rng.randint(0, 999999):06d}Z"
    event = {"visitor_id": rng.choice(pool), "event": ev,
             "metadata": {"path": rng.choice(PATHS), "ref": rng.choice(["", "search", "direct", "social"])}}
    if shape == "a":
        return at, encode_record(event, at, RATES.get(ev, 1.0))
    if shape == "b":  # serve's order before the rates were stored
        return at, orjson.dumps({**event, "received_at": at, "ts": at}) + b"\n"
    if shape == "c":  # the seed system: its timestamp as sent, no ts, no rates
        return at, json.dumps({**event, "timestamp": at[:23] + "Z", "received_at": at}, separators=(",", ":"),
                              ensure_ascii=False).encode() + b"\n"
    rec = orjson.loads(encode_record(event, at, RATES.get(ev, 1.0)))
    rec.update({"ua": "Mozilla/5.0 (X11; Linux x86_64)", "ip_hash": f"{rng.getrandbits(64):016x}",
                "n": rng.randint(0, 10**6), "tags": ["a", {"event": "nested", "visitor_id": "x"}]})
    keys = list(rec)
    rng.shuffle(keys)
    return at, orjson.dumps({k: rec[k] for k in keys}) + b"\n"


def day_lines(day: date, events: int, seed: int, shape: str = "a") -> bytes:
    """One day of ``shape``: events from a pool of events/5 visitors, in received_at order (damaged lines of
    shape e where they fall)."""
    rng = random.Random(seed)
    pool = [f"v{rng.getrandbits(48):012x}" for _ in range(max(1, events // 5))]
    out = []
    for _ in range(events):
        if shape != "e":
            out.append(_record(shape, rng, pool, day))
        elif rng.random() < 0.01:
            out.append((out[-1][0] if out else "", rng.choice(DAMAGED) + b"\n"))
        else:
            out.append(_record(rng.choice("abcd"), rng, pool, day))
    return b"".join(line for _, line in sorted(out, key=lambda x: x[0]))


def generate(directory: Path, days: int, events: int, shape: str = "a") -> list[Path]:
    """The data set of ``shape`` (made once, reused while its size matches): ``days`` archives ending yesterday."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".generated"
    want = f"{days}x{events} shape {shape}"
    first = date.today() - timedelta(days=days)
    files = [directory / f"metrics-{(first + timedelta(days=i)).isoformat()}.jsonl.gz" for i in range(days)]
    if stamp.exists() and stamp.read_text() == want and all(f.exists() for f in files):
        return files
    for old in directory.glob("metrics-*"):
        old.unlink()
    for i, f in enumerate(files):
        f.write_bytes(gzip.compress(day_lines(first + timedelta(days=i), events, i, shape), 6))
    stamp.write_text(want)
    return files


#: runs its arguments (their stdout its own) and reports their wall time, CPU time and peak RSS on stderr: a fresh,
#: small parent, so the peak is not this benchmark's memory inherited through fork (getrusage(RUSAGE_CHILDREN))
LAUNCH = """
import json, os, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL)
wall = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"status": r.returncode, "wall": wall, "cpu": use.ru_utime + use.ru_stime,
                  "peak_mb": use.ru_maxrss / 1024}), file=sys.stderr)
"""


def run_one(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds of the process and its workers, their peak RSS in MB, stdout) of one run.
    CPU time is the fairer figure on a shared machine: other agents' load stretches wall time, not CPU time."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        # cwd "/": `python -m` puts the working directory first on sys.path, before PYTHONPATH: run from a checkout,
        # the --baseline row measured that checkout instead of the baseline
        proc = subprocess.run([sys.executable, "-c", LAUNCH, *cmd], stdout=out, stderr=subprocess.PIPE, env=env,
                              cwd="/", check=True)
        got = json.loads(proc.stderr.decode().strip().splitlines()[-1])
        if got["status"] not in (0, 1):
            raise SystemExit(f"{cmd} failed")
        out.seek(0)
        return got["wall"], got["cpu"], got["peak_mb"], out.read()


def best(repeat: int, cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """The fastest of ``repeat`` runs by wall time, the least CPU time and the largest peak RSS."""
    runs = [run_one(cmd, env) for _ in range(repeat)]
    return (min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs), runs[0][3])


DUCKDB = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads = 2")
rows = con.sql(f\"\"\"SELECT left(received_at, 10) AS day, event, count(*), count(DISTINCT visitor_id)
  FROM read_json('{sys.argv[1]}/metrics-*.jsonl*', format = 'newline_delimited',
                 columns = {{visitor_id: 'VARCHAR', event: 'VARCHAR', received_at: 'VARCHAR'}},
                 ignore_errors = true)
  GROUP BY ALL ORDER BY ALL\"\"\").fetchall()
print(len(rows), sum(r[2] for r in rows))
"""

FLOOR = """
import sys
from pathlib import Path
from zlib_ng import zlib_ng
n = 0
for p in sorted(Path(sys.argv[1]).glob("metrics-*.jsonl.gz")):
    d = zlib_ng.decompressobj(31)
    with open(p, "rb") as fh:
        while raw := fh.read(4 << 20):
            n += d.decompress(raw).count(b"\\n")
print(n)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--events", type=int, default=100_000, help="events a day (develop with fewer)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", default=SHAPES, help="which line shapes to measure, e.g. 'ae' (default abcde)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/metrics-report-bench"))
    ap.add_argument("--baseline", type=Path, help="a checkout of an earlier metrics-ops (e.g. `git archive REV | "
                    "tar -x -C DIR`): its cold report is measured in the same run, as the 'before' row")
    args = ap.parse_args()
    byte_compile(args.baseline)
    rows, summary = [], []
    for shape in args.shapes:
        if shape not in SHAPES:
            raise SystemExit(f"--shapes: {shape!r} is not one of {SHAPES}")
        measure(args, shape, rows, summary)
    print(f"{'reader':<56} {'wall s':>7} {'CPU s':>7} {'peak MB':>8} {'wall/DuckDB':>11} {'CPU/DuckDB':>10}")
    for name, (wall, cpu, rss, _), duck in rows:
        print(f"{name:<56} {wall:7.2f} {cpu:7.2f} {rss:8.0f} {wall / duck[0]:10.2f}x {cpu / duck[1]:9.2f}x")
    for line in summary:
        print(line)


def byte_compile(baseline: Path | None) -> None:
    """Compile the installs' modules as pip does for an installed package: with PYTHONDONTWRITEBYTECODE set (or
    an editable checkout edited since its last run) every start would compile the changed sources again, a cost
    an installed tool does not pay (20-40 ms on the warm report)."""
    import compileall

    import metrics_ops

    for package in (Path(metrics_ops.__file__).parent, *([baseline / "metrics_ops"] if baseline else [])):
        compileall.compile_dir(package, quiet=1)


def measure(args, shape: str, rows: list, summary: list) -> None:
    """The rows of one shape's data set, each ratio against DuckDB's run over the same files."""
    directory = args.dir / shape
    files = generate(directory, args.days, args.events, shape)
    size = sum(f.stat().st_size for f in files)
    summary.append(f"data ({shape}): {len(files)} archives, {args.days * args.events:,} lines, "
                   f"{size / 1e6:.1f} MB compressed")
    py = sys.executable
    cli = [py, "-m", "metrics_ops", "--data-dir", str(directory)]
    since = (date.today() - timedelta(days=args.days)).isoformat()
    until = (date.today() - timedelta(days=1)).isoformat()
    report = [*cli, "report", "--since", since, "--until", until, "--by", "day,event", "--json"]
    rollup_dir = directory / "rollups"
    if rollup_dir.exists():
        for f in rollup_dir.iterdir():
            f.unlink()
    duck = best(args.repeat, [py, "-c", DUCKDB, str(directory)])
    if shape == "a":
        floor = best(args.repeat, [py, "-c", FLOOR, str(directory)])
        rows.append(("(a) decompress only (zlib-ng, one core): the floor", floor, duck))
        gz = best(args.repeat, ["sh", "-c", f"ls {directory}/metrics-*.jsonl.gz | xargs -P 2 -n 8 gzip -dc | wc -l"])
        rows.append(("(a) decompress only (gzip -dc, 2 processes)", gz, duck))
    rows.append((f"({shape}) DuckDB read_json group by, 2 threads", duck, duck))
    if args.baseline:
        before = best(args.repeat, [*report, "--no-rollups"], {**os.environ, "PYTHONPATH": str(args.baseline)})
        rows.append((f"({shape})   the same, before (--baseline)", before, duck))
    cold = best(args.repeat, [*report, "--no-rollups"])
    doc = json.loads(cold[3])
    rows.append((f"({shape}) metrics-ops report --by day,event --no-rollups (cold)", cold, duck))
    if args.baseline:
        assert json.loads(before[3]) == doc, f"shape {shape}: the baseline answers differently"
    line = (f"({shape}) cold report: {cold[0] / duck[0]:.2f}x DuckDB's wall time ({cold[1] / duck[1]:.2f}x its CPU "
            f"time); peak RSS {cold[2]:.0f} MB (DuckDB {duck[2]:.0f} MB); {sum(r['events'] for r in doc['rows']):,} "
            f"events counted, {doc.get('damaged', 0):,} damaged")
    if args.baseline:
        line += f"; before: {before[0] / duck[0]:.2f}x wall, {before[1] / duck[1]:.2f}x CPU, {before[2]:.0f} MB"
    summary.append(line)
    if shape != "a":
        return
    t0 = time.perf_counter()
    subprocess.run([*cli, "rotate", "--once", "-q", "--gzip-after", "1", "--retention", "400"], check=True)
    rollup_pass = time.perf_counter() - t0
    warm = best(args.repeat, report)
    doc2 = json.loads(warm[3])
    assert [r["events"] for r in doc2["rows"]] == [r["events"] for r in doc["rows"]], "rollups disagree with raw"
    rows.append(("(a) metrics-ops report --by day,event (rollups in place)", warm, duck))
    start = best(args.repeat, [*cli, "--help"])
    rows.append(("metrics-ops --help (process start)", start, duck))
    summary.append(f"(a) {cold[1] / floor[1]:.2f}x the zlib-ng floor's CPU time; first pass writing "
                   f"{len(doc2['days']['rollup'])} rollups: {rollup_pass:.1f} s; with rollups {warm[0]:.3f} s wall "
                   f"({warm[0] - start[0]:+.3f} s over --help)")


if __name__ == "__main__":
    main()
