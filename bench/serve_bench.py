"""Ingestion benchmark: wrk against `metrics-ops serve` (defaults) and the existing FastAPI endpoint, same run.

Usage: python bench/serve_bench.py [--duration 8] [--connections 32] [--rounds 2] [--json] [--also LABEL=PYTHON]
                                   [--batch 50 | --mix 5]

``--also before=/path/to/venv/bin/python`` adds another install of metrics-ops (an earlier commit, say) to the
same alternating rounds, so a change is measured before and after in one run.
Needs: wrk (apt-get install wrk), and for the baseline: pip install -e '.[bench]' (fastapi, uvicorn[standard]).

Both servers get the same ~90-byte event body from `wrk -t1 -cC -dD --latency` on 127.0.0.1, rounds
alternating (serve, baseline, serve, baseline, ...) so that the machine's noise hits both; the best round of
each is reported. Speed rounds use a plain wrk script. A final verification round per server adds a Lua hook
that counts responses saying "stored":1 (the hook costs wrk CPU, which on 2 cores the server feels, so its
req/s are not the ones reported); afterwards the lines on disk are counted: lost = stored=1 responses missing
from disk (must be 0); in flight = lines of requests wrk had sent when it stopped (at most the connection
count). Targets (issue 3): >= 10x the baseline's req/s, p99 <= 10 ms at 32 connections, zero lost events.
Two references frame the ratio, each under granian as serve runs: the ceiling (an app that does nothing,
bench/ceiling_wsgi.py) and the floor (ANCHORS' minimal app that checks and appends each event and nothing more,
bench/minimal_wsgi.py): what any endpoint that keeps every event pays on this machine.

``--batch N`` posts N-event batches; ``--mix N`` alternates one event and one N-event batch, the way metrics.js
sends them (page views at once, other events queued), and reports events/s from the lines on disk. Both measure
metrics-ops only. serve's settings come from the environment: ``METRICS_WORKERS=1 python bench/serve_bench.py``
measures every install with one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CEILING = "ceiling: granian, 2 workers, an app that does nothing"
FLOOR = "floor: granian, 2 workers, ANCHORS' minimal app (pydantic check, deque, one append per event)"
BODY = '{"visitor_id":"v0123456789ab","event":"page_view","metadata":{"path":"/pricing","w":1280}}'
PLAIN_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""
LUA = PLAIN_LUA + """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) stored = 0 end
function response(status, headers, body)
  local n = string.match(body, '"stored":(%d+)')  -- the first: the batch's total, or the event's 0 or 1
  if status == 202 and n then stored = stored + tonumber(n) end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("stored") end
  io.write("STORED " .. total .. "\\n")
end
"""


MIX_LUA = """
local i, json = 0, {["Content-Type"] = "application/json"}
request = function()
  i = i + 1
  if i % 2 == 0 then return wrk.format("POST", "/api/metrics/event", json, '{single}') end
  return wrk.format("POST", "/api/metrics/events", json, '{batch}')
end
"""


def batch_body(n: int) -> str:
    """``n`` events as metrics.js sends them, one JSON array."""
    return "[" + ",".join(
        f'{{"visitor_id":"{(i + 1) * 0x9E3779B97F4A7C15 % 2**128:032x}","event":"{"page_view" if i % 3 else "click"}",'
        f'"timestamp":{1764072000123 + i * 97},"sample_rate":1,"metadata":{{"path":"/p/{i % 40}"}}}}'
        for i in range(n)) + "]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, body: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode})")
        try:
            req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 202:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def parse_wrk(out: str) -> dict:
    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        v = float(m[1])
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    total = int(re.search(r"(\d+) requests in", out)[1])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "requests": total, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "non_2xx": int(non2xx[1]) if non2xx else 0, "socket_errors": errors[1] if errors else "",
            "stored_responses": int(m[1]) if (m := re.search(r"STORED (\d+)", out)) else None}


def lines_in(d: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in d.glob("*.jsonl") if not p.is_symlink())


def run_one(kind: str, root: Path, lua: Path, args) -> dict:
    data = root / f"{kind.replace('/', '_')}-{time.monotonic_ns()}"
    port = free_port()
    env = {**os.environ, "METRICS_DIR": str(data)}
    if kind.startswith("metrics-ops serve"):
        python = args.also.get(kind, sys.executable)
        cmd = [python, "-m", "metrics_ops", "serve", "--port", str(port)]
        url = f"http://127.0.0.1:{port}/api/metrics/event{'s' if args.batch else ''}"  # --mix: the Lua's paths
    elif kind.startswith(("ceiling", "floor")):
        cmd = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "2", "--blocking-threads", "1",
               "--http", "1", "--no-ws", "--port", str(port), "--log-level", "warning",
               "ceiling_wsgi:app" if kind.startswith("ceiling") else "minimal_wsgi:app"]
        url = f"http://127.0.0.1:{port}/api/metrics/event"
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "baseline_fastapi:app",
               "--port", str(port), "--workers", "1", "--log-level", "warning"]
        url = f"http://127.0.0.1:{port}/api/metrics/event"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).parent)
    try:
        wait_up(url, proc, batch_body(args.batch) if args.batch else BODY)
        warm = lines_in(data)
        out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s",
                              str(lua), url], capture_output=True, text=True, check=True).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result = parse_wrk(out)
    on_disk = lines_in(data) - warm
    result["lines_on_disk"] = on_disk
    if result["stored_responses"] is not None:
        result["lost"] = max(0, result["stored_responses"] - on_disk)
        result["in_flight_at_stop"] = on_disk - result["stored_responses"]
    shutil.rmtree(data, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batch", type=int, default=0, metavar="N", help="post N-event batches (metrics-ops only)")
    ap.add_argument("--mix", type=int, default=0, metavar="N",
                    help="alternate one event and one N-event batch, as metrics.js sends them (metrics-ops only)")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PYTHON",
                    help="another metrics-ops install to measure in the same rounds (e.g. before=venv/bin/python)")
    args = ap.parse_args()
    args.also = {f"metrics-ops serve @ {label}": python for label, _, python in (a.partition("=") for a in args.also)}
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise SystemExit("the baseline needs fastapi and uvicorn: pip install -e '.[bench]'") from None
    root = Path(tempfile.mkdtemp(prefix="metrics-ops-serve-bench-"))
    plain, counting = root / "post.lua", root / "count.lua"
    body = batch_body(args.batch) if args.batch else BODY
    plain.write_text(PLAIN_LUA.replace("{body}", body))
    counting.write_text(LUA.replace("{body}", body))
    if args.mix:
        mixed = MIX_LUA.replace("{single}", BODY).replace("{batch}", batch_body(args.mix))
        plain.write_text(mixed)
        counting.write_text(mixed + LUA.replace(PLAIN_LUA, "").replace("{body}", body))
    rounds = {"metrics-ops serve": [], **{kind: [] for kind in args.also}}
    references = {}  # the floor and the ceiling: in the same alternating rounds, no verification round
    if not args.batch and not args.mix:
        rounds["baseline (FastAPI + uvicorn, 1 worker)"] = []
        references = {FLOOR: [], CEILING: []}
    verify = {}
    try:
        for _ in range(args.rounds):
            for kind in rounds:
                rounds[kind].append(run_one(kind, root, plain, args))
            for kind in references:
                references[kind].append(run_one(kind, root, plain, args))
        for kind in rounds:
            verify[kind] = run_one(kind, root, counting, args)
        if args.batch:
            return batch_summary(rounds, verify, args)
        if args.mix:
            return mix_summary(rounds, verify, args)
        ceiling, floor = (max(references[kind], key=lambda r: r["rps"]) for kind in (CEILING, FLOOR))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = {kind: max(rs, key=lambda r: r["rps"]) for kind, rs in rounds.items()}
    ours, base = best["metrics-ops serve"], best["baseline (FastAPI + uvicorn, 1 worker)"]
    summary = {"rounds": rounds, "best": best, "verify": verify, "ratio": round(ours["rps"] / base["rps"], 2),
               "ratio_to": {kind: round(ours["rps"] / best[kind]["rps"], 3) for kind in args.also},
               "ceiling": ceiling, "share_of_ceiling": round(ours["rps"] / ceiling["rps"], 2),
               "floor": floor, "share_of_floor": round(ours["rps"] / floor["rps"], 2),
               "floor_ratio": round(floor["rps"] / base["rps"], 2),
               "ceiling_ratio": round(ceiling["rps"] / base["rps"], 2),
               "lost_events": sum(v["lost"] for v in verify.values())}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"| server (wrk -t1 -c{args.connections} -d{args.duration}s, best of {args.rounds}) | req/s | p50 | p99 "
          "| verification round: stored=1 responses | lines on disk | lost |")
    print("|---|---|---|---|---|---|---|")
    for kind, r in best.items():
        v = verify[kind]
        print(f"| {kind} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
              f"{v['stored_responses']:,} | {v['lines_on_disk']:,} | {v['lost']} |")
    for label, c in ((FLOOR, floor), (CEILING, ceiling)):
        print(f"| {label} | {c['rps']:,.0f} | {c['p50_ms']:.2f} ms | {c['p99_ms']:.2f} ms | - | - | - |")
    print(f"\nratio: {summary['ratio']}x the baseline's req/s, {summary['share_of_floor']:.0%} of the floor "
          f"({summary['floor_ratio']}x the baseline), {summary['share_of_ceiling']:.0%} of the ceiling "
          f"({summary['ceiling_ratio']}x the baseline); lost events in the verification rounds: "
          f"{summary['lost_events']}")
    for kind, ratio in summary["ratio_to"].items():
        print(f"metrics-ops serve / {kind}: {ratio}x")


def batch_summary(rounds: dict, verify: dict, args) -> None:
    n = args.batch
    best = {kind: max(rs, key=lambda r: r["rps"]) for kind, rs in rounds.items()}
    ours = best["metrics-ops serve"]
    summary = {"rounds": rounds, "best": best, "verify": verify, "batch": n,
               "ratio_to": {kind: round(ours["rps"] / best[kind]["rps"], 3) for kind in args.also},
               "lost_events": sum(v["lost"] for v in verify.values())}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"| server ({n}-event batches, wrk -t1 -c{args.connections} -d{args.duration}s, best of {args.rounds}) "
          "| req/s | events/s | p50 | p99 | verification round: stored events | lines on disk | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in best.items():
        v = verify[kind]
        print(f"| {kind} | {r['rps']:,.0f} | {r['rps'] * n:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
              f"{v['stored_responses']:,} | {v['lines_on_disk']:,} | {v['lost']} |")
    print(f"\nlost events in the verification rounds: {summary['lost_events']}")
    for kind, ratio in summary["ratio_to"].items():
        print(f"metrics-ops serve / {kind}: {ratio}x events/s")


def mix_summary(rounds: dict, verify: dict, args) -> None:
    """--mix: events/s from the lines each round left on disk (a request holds 1 or N events)."""
    for rs in rounds.values():
        for r in rs:
            r["events_per_s"] = r["lines_on_disk"] / args.duration
    best = {kind: max(rs, key=lambda r: r["events_per_s"]) for kind, rs in rounds.items()}
    ours = best["metrics-ops serve"]
    summary = {"rounds": rounds, "best": best, "verify": verify, "mix": args.mix,
               "workers": os.environ.get("METRICS_WORKERS", "default"),
               "ratio_to": {kind: round(ours["events_per_s"] / best[kind]["events_per_s"], 3) for kind in args.also},
               "lost_events": sum(v["lost"] for v in verify.values())}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"| server (one event, then a {args.mix}-event batch; workers: {summary['workers']}; wrk -t1 "
          f"-c{args.connections} -d{args.duration}s, best of {args.rounds}) | req/s | events/s | p50 | p99 "
          "| verification round: stored events | lines on disk | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in best.items():
        v = verify[kind]
        print(f"| {kind} | {r['rps']:,.0f} | {r['events_per_s']:,.0f} | {r['p50_ms']:.2f} ms | "
              f"{r['p99_ms']:.2f} ms | {v['stored_responses']:,} | {v['lines_on_disk']:,} | {v['lost']} |")
    print(f"\nlost events in the verification rounds: {summary['lost_events']}")
    for kind, ratio in summary["ratio_to"].items():
        print(f"metrics-ops serve / {kind}: {ratio}x events/s")


if __name__ == "__main__":
    main()
