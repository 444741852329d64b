"""What serve's free-space floor costs per event, in-process: the same app with the floor on (64 MiB, checked
at most every 250 ms) and off (0), called directly as a WSGI server would, rounds alternating, best of N.

Usage: python bench/floor_bench.py [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time

from metrics_ops.config import load_settings
from metrics_ops.serve import make_app

BODY = json.dumps({"visitor_id": "v_8f2a", "event": "page_view", "metadata": {"path": "/pricing"}}).encode()


def environ() -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/metrics/event", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)), "wsgi.input": io.BytesIO(BODY)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    dirs, apps = [], {}
    for name, floor in (("floor on", "64"), ("floor off", "0")):
        dirs.append(tempfile.mkdtemp(prefix="metrics-ops-floor-"))
        apps[name] = make_app(load_settings({"dir": dirs[-1], "serve_min_free_mb": floor, "ring_capacity": 10},
                                            env_file=None))
    best = dict.fromkeys(apps, float("inf"))
    try:
        for _ in range(args.rounds):
            for name, app in apps.items():
                started = time.perf_counter()
                for _ in range(args.events):
                    app(environ(), lambda status, headers: None)
                best[name] = min(best[name], (time.perf_counter() - started) / args.events)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    print("| app (in-process, one event per call) | us per event |")
    print("|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds * 1e6:.2f} |")
    print(f"\nratio floor on / off: {best['floor on'] / best['floor off']:.3f}")


if __name__ == "__main__":
    main()
