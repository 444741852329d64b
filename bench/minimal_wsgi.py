"""The floor reference of bench/serve_bench.py: the minimal app of ../shared/ANCHORS.md that stores every event,
under granian as serve runs. The seed's model checked by pydantic (``model_validate_json``), a deque ring, the
received time added, one O_APPEND write per event; no sampling, no shared ring or counters between workers, no
lock, no day files, no free-space floor. What any endpoint that keeps each event pays here.

Run: METRICS_DIR=/tmp/x granian --interface wsgi --workers 2 --blocking-threads 1 --http 1 --no-ws \
    bench/minimal_wsgi.py:app
"""

import os
from collections import deque
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

DATA_DIR = os.environ.get("METRICS_DIR", "./data")
os.makedirs(DATA_DIR, exist_ok=True)
FD = os.open(os.path.join(DATA_DIR, "metrics-minimal.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
RING = deque(maxlen=500)
STORED = b'{"ok":true,"stored":1,"file":"metrics-minimal.jsonl"}'


class Event(BaseModel):  # the seed's model (bench/baseline_fastapi.py)
    visitor_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    event: str = Field(min_length=1, max_length=64)
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None
    received_at: str | None = None


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    try:
        event = Event.model_validate_json(body)
    except ValidationError:
        start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", "12")])
        return [b'{"ok":false}']
    event.received_at = datetime.now(UTC).isoformat()
    RING.append(event)
    os.write(FD, event.model_dump_json(exclude_none=True).encode() + b"\n")
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(STORED)))])
    return [STORED]
