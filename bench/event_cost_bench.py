"""serve's in-process cost of one event: the WSGI app called directly (no sockets), for a single event and for
50-event batches, in this install and others (``--also before=/path/to/venv/bin/python``).

Usage: python bench/event_cost_bench.py [--events 20000] [--rounds 5] [--callgrind] [--also LABEL=PYTHON]

Each install runs in its own process, rounds alternating between installs; the figure is the best round's CPU
time per event. With ``--callgrind`` it also counts instructions under valgrind (the steady figure on a shared
machine: it does not depend on load; PYTHONHASHSEED=0 keeps string hashing alike): the count of 2N events less
the count of N, divided by N, so start-up and imports cancel out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ENV = {**os.environ, "PYTHONHASHSEED": "0"}  # string hashes, so dict probing and the counts, alike in every run
SINGLE = b'{"visitor_id":"v0123456789ab","event":"page_view","metadata":{"path":"/pricing","w":1280}}'


def browser_event(i: int) -> bytes:
    """An event as metrics.js sends it."""
    return (b'{"visitor_id":"%032x","event":"%s","timestamp":%d,"sample_rate":1,'
            b'"metadata":{"path":"/p/%d"}}'
            % ((i + 1) * 0x9E3779B97F4A7C15 % 2**128, b"page_view" if i % 3 else b"click", 1764072000123 + i * 97,
               i % 40))


BATCH = b"[" + b",".join(browser_event(i) for i in range(50)) + b"]"

CHILD = r"""
import io, json, shutil, sys, tempfile, time
from metrics_ops.config import load_settings
from metrics_ops.serve import make_app
kind, events, rounds, single, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), \
    sys.argv[5].encode()
path, body, per = ("/api/metrics/event", single, 1) if kind == "single" else ("/api/metrics/events", batch, 50)
d = tempfile.mkdtemp(prefix="metrics-ops-cost-")
app = make_app(load_settings({"dir": d, "ring_capacity": 10}, env_file=None))
if sys.argv[6:] == ["noop"]:  # the harness alone: environ, body, start_response, with an app that does nothing
    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
def environ():
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
def start_response(status, headers):
    assert status.startswith("202"), status
best = float("inf")
for _ in range(rounds):
    started = time.process_time()
    for _ in range(events // per):
        app(environ(), start_response)
    best = min(best, (time.process_time() - started) / events)
shutil.rmtree(d)
print(json.dumps(best))
"""


def run(python: str, kind: str, events: int, rounds: int, valgrind: bool = False, noop: bool = False) -> float | int:
    cmd = [python, "-c", CHILD, kind, str(events), str(rounds), SINGLE.decode(), BATCH.decode(), *(["noop"] * noop)]
    if not valgrind:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir(), env=ENV)  # not the checkout
        if r.returncode:
            raise SystemExit(f"{python} failed: {r.stderr.strip()[-2000:]}")
        return json.loads(r.stdout)
    with tempfile.NamedTemporaryFile() as out:
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}", *cmd],
                           capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(), env=ENV)
    return int(re.search(r"Collected : (\d+)", r.stderr)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind (slow)")
    ap.add_argument("--callgrind-events", type=int, default=2000)
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PYTHON")
    args = ap.parse_args()
    installs = {"this": sys.executable, **{label: py for label, _, py in (a.partition("=") for a in args.also)}}
    kinds = ("single", "batch of 50")
    cpu = {(name, kind): float("inf") for name in installs for kind in kinds}
    for _ in range(args.rounds):  # alternating: the machine's noise hits every install
        for name, python in installs.items():
            for kind in kinds:
                cpu[name, kind] = min(cpu[name, kind], run(python, kind.split()[0], args.events, 1))
    instructions = {}
    if args.callgrind:
        n = args.callgrind_events
        py = sys.executable
        harness = (run(py, "single", 2 * n, 1, True, True) - run(py, "single", n, 1, True, True)) / n
        print(f"the harness with an app that does nothing: {harness:,.0f} instructions per request (included below)")
        for name, python in installs.items():
            for kind in kinds:
                instructions[name, kind] = (run(python, kind.split()[0], 2 * n, 1, True)
                                            - run(python, kind.split()[0], n, 1, True)) / n
    print(f"| install | request | CPU us per event (best of {args.rounds}) | instructions per event |")
    print("|---|---|---|---|")
    for (name, kind), seconds in cpu.items():
        count = f"{instructions[name, kind]:,.0f}" if instructions else "-"
        print(f"| {name} | {kind} | {seconds * 1e6:.2f} | {count} |")
    for name in list(installs)[1:]:
        for kind in kinds:
            line = f"\nthis / {name}, {kind}: CPU {cpu['this', kind] / cpu[name, kind]:.3f}x"
            if instructions:
                line += f", instructions {instructions['this', kind] / instructions[name, kind]:.3f}x"
            print(line, end="")
    print()


if __name__ == "__main__":
    main()
