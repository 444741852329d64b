"""serve start-up: seconds from starting `metrics-ops serve` to its ready line, and to the first stored event.

Usage: python bench/serve_start_bench.py [--runs 10] [--workers 2] [--json]
The ready line is printed once a worker accepts connections (issue 19 item 5), so "ready" and "first event" differ
only by one request; before, the line came before any worker listened and a client had to poll. The first event
is sent at once after the line, then every 10 ms until it is answered 202 (never needed since the line is true).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENT = b'{"visitor_id":"bench","event":"page_view"}'
REQUEST = (b"POST /api/metrics/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(EVENT), EVENT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(REQUEST)
            return sock.recv(64).startswith(b"HTTP/1.1 202")
    except OSError:
        return False


def one_start(data: Path, workers: int) -> tuple[float, float, int]:
    """(seconds to the ready line, seconds to the first stored event, tries the event took)."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "metrics_ops", "--data-dir", str(data), "serve", "--port",
                             str(port), "--workers", str(workers)], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        ready = time.perf_counter() - t0
        assert "serve ready" in line, line
        tries = 1
        while not stored(port):
            tries += 1
            time.sleep(0.01)
        return ready, time.perf_counter() - t0, tries
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        runs = [one_start(Path(d) / "data", args.workers) for _ in range(args.runs)]
    ready, first, tries = zip(*runs, strict=True)
    doc = {"runs": args.runs, "workers": args.workers, "cpus": os.cpu_count(),
           "ready_median_s": round(statistics.median(ready), 3),
           "first_event_median_s": round(statistics.median(first), 3),
           "first_event_max_s": round(max(first), 3), "events_needing_a_retry": sum(t > 1 for t in tries)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
