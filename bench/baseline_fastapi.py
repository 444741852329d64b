"""The existing system's endpoint, reproduced as the benchmark baseline (not part of metrics-ops).

FastAPI + uvicorn, one worker, a pydantic model per event, a deque ring, open/append per event, sampling with
random.random() -- the shape ../shared/ANCHORS.md measured at ~3,100-3,600 req/s on this kind of machine.
Run: METRICS_DIR=/tmp/x uvicorn --app-dir bench baseline_fastapi:app --port 8002 --workers 1
"""

import json
import os
import random
from collections import deque
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

DATA_DIR = os.environ.get("METRICS_DIR", "./data")
JSONL = os.environ.get("METRICS_JSONL", os.path.join(DATA_DIR, "metrics.jsonl"))
SAMPLE_RATE = float(os.environ.get("METRICS_SAMPLE_RATE", "1.0"))
RING = deque(maxlen=int(os.environ.get("METRICS_RING_CAPACITY", "500")))
os.makedirs(DATA_DIR, exist_ok=True)

app = FastAPI()


class Event(BaseModel):
    visitor_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    event: str = Field(min_length=1, max_length=64)
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None


@app.post("/api/metrics/event", status_code=202)
async def ingest(ev: Event):
    record = ev.model_dump(exclude_none=True)
    record["received_at"] = datetime.now(UTC).isoformat()
    RING.append(record)
    if random.random() >= SAMPLE_RATE:
        return {"ok": True, "stored": 0, "file": JSONL}
    with open(JSONL, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    return {"ok": True, "stored": 1, "file": JSONL}


@app.get("/api/metrics/snapshot")
async def snapshot():
    return {"ok": True, "events": list(RING)}
