"""The reading end against DuckDB: 30 days x 100,000 events as .gz archives, count + distinct visitors per day and
event, every reader measured in the same run (ratios; absolute figures drift on a shared machine).

    python3 bench/report_bench.py [--days 30] [--events 100000] [--repeat 3] [--dir /tmp/metrics-report-bench]

Rows: the physical floor (decompressing the archives alone: zlib-ng, one core, and `gzip -dc` per file on both
cores), DuckDB's read_json with the same group-by (what the report must not be slower than), the cold
`metrics-ops report --by day,event --no-rollups` (whole process), and `metrics-ops report` over the same 30 days
with rollups in place (target: under 0.3 s wall time, process start included). Peak memory (max RSS of the
process and its workers) for the cold report: target under 300 MB. Wall and CPU time both: on a machine shared
with other work, CPU time is the steadier ratio.
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


def day_lines(day: date, events: int, seed: int) -> bytes:
    """One day: events from a pool of events/5 visitors, each line made by serve's own ``encode_record`` (the
    shape serve writes: its key order, rates as floats, ``received_at`` and ``ts``)."""
    from metrics_ops.events import encode_record

    rng = random.Random(seed)
    pool = [f"v{rng.getrandbits(48):012x}" for _ in range(max(1, events // 5))]
    out = []
    for _ in range(events):
        ev = rng.choice(EVENTS)
        at = f"{day.isoformat()}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}." \
             f"{rng.randint(0, 999999):06d}Z"
        event = {"visitor_id": rng.choice(pool), "event": ev,
                 "metadata": {"path": rng.choice(PATHS), "ref": rng.choice(["", "search", "direct", "social"])}}
        out.append((at, encode_record(event, at, RATES.get(ev, 1.0))))
    return b"".join(line for _, line in sorted(out))


def generate(directory: Path, days: int, events: int) -> list[Path]:
    """The data set (made once, reused while its size matches): ``days`` archives ending yesterday."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".generated"
    want = f"{days}x{events} serve-shaped"
    first = date.today() - timedelta(days=days)
    files = [directory / f"metrics-{(first + timedelta(days=i)).isoformat()}.jsonl.gz" for i in range(days)]
    if stamp.exists() and stamp.read_text() == want and all(f.exists() for f in files):
        return files
    for old in directory.glob("metrics-*"):
        old.unlink()
    for i, f in enumerate(files):
        f.write_bytes(gzip.compress(day_lines(first + timedelta(days=i), events, i), 6))
    stamp.write_text(want)
    return files


def run_one(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds of the process and its workers, their peak RSS in MB, stdout) of one run.
    CPU time is the fairer figure on a shared machine: other agents' load stretches wall time, not CPU time."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        # cwd "/": `python -m` puts the working directory first on sys.path, before PYTHONPATH: run from a checkout,
        # the --baseline row measured that checkout instead of the baseline
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd="/")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"{cmd} failed")
        out.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


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
                 columns = {{visitor_id: 'VARCHAR', event: 'VARCHAR', received_at: 'VARCHAR'}})
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
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/metrics-report-bench"))
    ap.add_argument("--baseline", type=Path, help="a checkout of an earlier metrics-ops (e.g. `git archive REV | "
                    "tar -x -C DIR`): its cold report is measured in the same run, as the 'before' row")
    args = ap.parse_args()
    files = generate(args.dir, args.days, args.events)
    size = sum(f.stat().st_size for f in files)
    print(f"data: {len(files)} archives, {args.days * args.events:,} events, {size / 1e6:.1f} MB compressed")
    py = sys.executable
    cli = [py, "-m", "metrics_ops", "--data-dir", str(args.dir)]
    since = (date.today() - timedelta(days=args.days)).isoformat()
    until = (date.today() - timedelta(days=1)).isoformat()
    report = [*cli, "report", "--since", since, "--until", until, "--by", "day,event", "--json"]
    rollup_dir = args.dir / "rollups"
    if rollup_dir.exists():
        for f in rollup_dir.iterdir():
            f.unlink()
    rows = []
    floor = best(args.repeat, [py, "-c", FLOOR, str(args.dir)])
    rows.append(("decompress only (zlib-ng, one core): the floor", floor))
    gz = best(args.repeat, ["sh", "-c", f"ls {args.dir}/metrics-*.jsonl.gz | xargs -P 2 -n 8 gzip -dc | wc -l"])
    rows.append(("decompress only (gzip -dc, 2 processes)", gz))
    duck = best(args.repeat, [py, "-c", DUCKDB, str(args.dir)])
    rows.append(("DuckDB read_json group by, 2 threads", duck))
    if args.baseline:
        before = best(args.repeat, [*report, "--no-rollups"], {**os.environ, "PYTHONPATH": str(args.baseline)})
        rows.append(("  the same, before (--baseline)", before))
    cold = best(args.repeat, [*report, "--no-rollups"])
    doc = json.loads(cold[3])
    rows.append(("metrics-ops report --by day,event --no-rollups (cold)", cold))
    if args.baseline:
        assert json.loads(before[3])["rows"] == doc["rows"], "the baseline answers differently"
    t0 = time.perf_counter()
    subprocess.run([*cli, "rotate", "--once", "-q", "--gzip-after", "1", "--retention", "400"], check=True)
    rollup_pass = time.perf_counter() - t0
    warm = best(args.repeat, report)
    doc2 = json.loads(warm[3])
    assert [r["events"] for r in doc2["rows"]] == [r["events"] for r in doc["rows"]], "rollups disagree with raw"
    rows.append(("metrics-ops report --by day,event (rollups in place)", warm))
    start = best(args.repeat, [*cli, "--help"])
    rows.append(("metrics-ops --help (process start)", start))
    print(f"{'reader':<56} {'wall s':>7} {'CPU s':>7} {'peak MB':>8} {'wall/DuckDB':>11} {'CPU/DuckDB':>10}")
    for name, (wall, cpu, rss, _) in rows:
        print(f"{name:<56} {wall:7.2f} {cpu:7.2f} {rss:8.0f} {wall / duck[0]:10.2f}x {cpu / duck[1]:9.2f}x")
    print(f"cold report: {cold[0] / duck[0]:.2f}x DuckDB's wall time ({cold[1] / duck[1]:.2f}x its CPU time), "
          f"{cold[1] / floor[1]:.2f}x the zlib-ng floor's CPU time; peak RSS {cold[2]:.0f} MB; "
          f"first pass writing {len(doc2['days']['rollup'])} rollups: {rollup_pass:.1f} s; with rollups "
          f"{warm[0]:.3f} s wall ({warm[0] - start[0]:+.3f} s over --help); "
          f"{sum(r['events'] for r in doc['rows']):,} events counted")


if __name__ == "__main__":
    main()
