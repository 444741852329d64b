"""Helpers shared by the benchmarks: deterministic event data and timing of whole commands."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

EVENTS = ["page_view", "click", "scroll", "signup.start", "signup.done", "checkout:step1", "checkout:step2"]
PATHS = [f"/p/{i}" for i in range(400)]


def event_line(rng: random.Random, received: str) -> str:
    return json.dumps({
        "visitor_id": f"v{rng.getrandbits(48):012x}",
        "event": rng.choice(EVENTS),
        "timestamp": f"{received[:11]}{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
                     f"{rng.randint(0, 999):03d}Z",
        "metadata": {"path": rng.choice(PATHS), "ref": rng.choice(["", "search", "direct", "social"]),
                     "w": rng.choice([360, 390, 768, 1280, 1440, 1920])},
        "received_at": f"{received}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
                       f"{rng.getrandbits(20) % 1000000:06d}Z",
    }, separators=(",", ":")) + "\n"


def write_day(path: Path, size: int, seed: int, day: str) -> int:
    """A JSONL day file of about ``size`` bytes; returns the number of events."""
    rng = random.Random(seed)
    n = 0
    with open(path, "w") as fh:
        while fh.tell() < size:
            fh.write("".join(event_line(rng, day) for _ in range(5000)))
            n += 5000
    return n


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def best_of(n: int, fn) -> float:
    return min(fn() for _ in range(n))


def best_time(repeat: int, fn) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
