"""The WSGI ingestion endpoint: ``make_app(settings)`` returns a plain WSGI callable (no framework).

Routes
- ``POST /api/metrics/event``   one event  -> 202 {"ok": true, "stored": 0|1, "file": "..."}
- ``POST /api/metrics/events``  a JSON array of events -> 202 with a result per item
- ``GET  /api/metrics/snapshot`` the ring (newest last) and the counters, shared by all workers
- ``GET  /healthz``             200 when the data directory is writable, else 503 with the reason
- ``GET  /metrics``             Prometheus text format
- ``OPTIONS`` on the POST routes: CORS preflight for METRICS_CORS_ORIGINS

Errors are JSON: {"ok": false, "error": {"code", "message", "field"}} with 400, 403, 404, 405, 413, 415 or 422.
Privacy: no header value (client address, X-Forwarded-For, User-Agent, Cookie, Referer) is read, stored or
logged; the access log line holds method, path, status, size and duration only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Callable

import orjson

from metrics_ops.events import Problem, encode_record, parse_body, validate_event
from metrics_ops.sampling import Sampler
from metrics_ops.state import COUNTERS, INDEX, SharedState
from metrics_ops.store import Store, StoreError

EVENT_PATH = "/api/metrics/event"
BATCH_PATH = "/api/metrics/events"
SNAPSHOT_PATH = "/api/metrics/snapshot"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
CONTENT_TYPES = ("application/json", "text/plain")
_STATUS = {200: "200 OK", 202: "202 Accepted", 204: "204 No Content", 400: "400 Bad Request",
           403: "403 Forbidden", 404: "404 Not Found", 405: "405 Method Not Allowed",
           413: "413 Content Too Large", 415: "415 Unsupported Media Type", 422: "422 Unprocessable Content",
           500: "500 Internal Server Error", 503: "503 Service Unavailable"}
_ALLOW = {EVENT_PATH: "POST, OPTIONS", BATCH_PATH: "POST, OPTIONS", SNAPSHOT_PATH: "GET, HEAD",
          HEALTH_PATH: "GET, HEAD", METRICS_PATH: "GET, HEAD"}
_HELP = {
    "received": "Valid events received (stored + sampled_out + write_errors).",
    "stored": "Events appended to the JSONL store.",
    "sampled_out": "Valid events dropped by server-side sampling (answered 202, stored=0).",
    "write_errors": "Valid, sampled-in events that could not be written (answered 202, stored=0).",
    "requests": "HTTP requests to the ingestion routes.",
}
access_log = logging.getLogger("metrics_ops.access")
log = logging.getLogger("metrics_ops.serve")


_iso_cache = [-1, ""]


def _utc_iso(now: float) -> str:
    """ISO-8601 UTC with microseconds; the seconds part is formatted once per second."""
    seconds = int(now)
    if seconds != _iso_cache[0]:
        _iso_cache[0], _iso_cache[1] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
    return f"{_iso_cache[1]}{int((now - seconds) * 1e6):06d}Z"


_JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                 ("X-Content-Type-Options", "nosniff"))


def _unavailable(exc: OSError) -> tuple[int, dict]:
    """The state file or the data directory went away under us: 503, one log line."""
    log.error("request failed: %s", exc)
    return 503, {"ok": False, "error": {"code": "unavailable", "field": None,
                                        "message": errno.errorcode.get(exc.errno or 0, "OSError")}}


def _counter_of(problem: Problem) -> str:
    if problem.status == 422:
        return "rejected_invalid"
    name = "rejected_" + problem.code
    return name if name in INDEX else "rejected_invalid"


class _QuietLog:
    """One log line per ``every`` seconds for a failure that repeats on every event (a full disk): the first at
    once, then a summary with the count of the ones not logged. The counter write_errors_total has them all."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self.last, self.skipped = -1e18, 0

    def log(self, message: str) -> None:
        now = self.clock()
        if now - self.last < self.every:
            self.skipped += 1
            return
        more = f" (and {self.skipped} more write errors in the last {now - self.last:.0f} s)" if self.skipped else ""
        log.error("write failed: %s%s", message, more)
        self.last, self.skipped = now, 0


def make_app(settings, *, store: Store | None = None, state: SharedState | None = None,
             sampler: Sampler | None = None, clock: Callable[[], float] = time.time) -> Callable:
    """Build the WSGI application (like prometheus_client's make_wsgi_app): call it per request."""
    store = store if store is not None else Store.from_settings(settings, clock)
    state = state if state is not None else SharedState.for_settings(settings)
    sampler = sampler if sampler is not None else Sampler.from_settings(settings)
    max_body, max_batch = settings.max_body, settings.max_batch
    origins = frozenset(settings.cors_origins)
    any_origin = "*" in origins
    quiet_errors = _QuietLog()

    def read_body(environ) -> bytes:
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype not in CONTENT_TYPES:
            ctype = ctype.split(";", 1)[0].strip().lower()
        if ctype not in CONTENT_TYPES:
            shown = ctype or "none"
            raise Problem(415, "content_type", f"content type {shown[:60]} not accepted; send application/json "
                          "or text/plain (navigator.sendBeacon)")
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length:
            try:
                n = int(length)
            except ValueError:
                raise Problem(400, "bad_request", "Content-Length is not a number") from None
            if n > max_body:
                raise Problem(413, "body_too_large", f"body of {n} bytes is over the limit of {max_body} bytes")
            body = stream.read(n) if n > 0 else b""
            if len(body) < n:  # the client closed early: never store what it did not finish sending
                raise Problem(400, "incomplete_body", f"body ended after {len(body)} of the {n} bytes that "
                              "Content-Length announced")
        else:  # chunked or unknown length: read at most the limit plus one byte
            parts, total = [], 0
            while total <= max_body:
                chunk = stream.read(max_body + 1 - total)
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            body = b"".join(parts)
        if len(body) > max_body:
            raise Problem(413, "body_too_large", f"body is over the limit of {max_body} bytes")
        return body

    def keep_and_store(event: dict, now: float) -> tuple[bytes, bool, str, str]:
        """-> (record, stored, file, counter)"""
        record = encode_record(event, _utc_iso(now), sampler.rate_for(event["event"]))
        if not sampler.keep(event["visitor_id"], event["event"]):
            return record, False, store.current_file(now), "sampled_out"
        try:
            return record, True, store.append(record, now), "stored"
        except (StoreError, OSError) as exc:
            state.note_write_error(str(exc))
            quiet_errors.log(str(exc))
            return record, False, store.current_file(now), "write_errors"

    def one_event(environ) -> tuple[int, dict]:
        event = validate_event(parse_body(read_body(environ)))
        now = clock()
        record, stored, file, counter = keep_and_store(event, now)
        state.record_event(record, stored, INDEX[counter])
        return 202, {"ok": True, "stored": int(stored), "file": file}

    def batch(environ) -> tuple[int, dict]:
        items = parse_body(read_body(environ))
        if not isinstance(items, list):
            raise Problem(422, "not_array", "a batch must be a JSON array of events")
        if not items:
            raise Problem(422, "empty_batch", "the batch is empty")
        if len(items) > max_batch:
            raise Problem(413, "batch_too_large", f"{len(items)} events in one batch; the limit is {max_batch}")
        now = clock()
        results, entries, counts = [], [], {"requests": 1}
        for i, item in enumerate(items):
            try:
                event = validate_event(item, prefix=f"[{i}].")
            except Problem as problem:
                results.append({"ok": False, "error": problem.to_dict()})
                counts["rejected_invalid"] = counts.get("rejected_invalid", 0) + 1
                continue
            record, stored, file, counter = keep_and_store(event, now)
            entries.append((record, stored))
            counts["received"] = counts.get("received", 0) + 1
            counts[counter] = counts.get(counter, 0) + 1
            results.append({"ok": True, "stored": int(stored), "file": file})
        state.update(entries, **counts)
        accepted = len(entries)
        body = {"ok": accepted > 0, "accepted": accepted, "rejected": len(items) - accepted,
                "stored": counts.get("stored", 0), "results": results}
        return (202 if accepted else 422), body

    def snapshot() -> tuple[int, dict]:
        entries, counters = state.snapshot()
        events = []
        for record, stored in entries:
            obj = json.loads(record)
            obj["stored"] = stored
            events.append(obj)
        return 200, {"ok": True, "capacity": state.capacity, "size": len(events), "events": events,
                     "counters": counters}

    def health() -> tuple[int, dict]:
        directory = store.dir
        if not directory.is_dir():
            return 503, {"ok": False, "reason": f"data directory {directory} does not exist"}
        if not os.access(directory, os.W_OK | os.X_OK):
            return 503, {"ok": False, "reason": f"data directory {directory} is not writable"}
        try:
            last_ok, last_error, message = state.health()  # every worker of the server answers alike
        except OSError:  # the debug state is broken, ingestion is not (the warning is logged once a minute)
            last_ok, last_error, message = 0, 0, ""
        age = clock() - last_error / 1e9
        if last_error > last_ok and age < 60:
            return 503, {"ok": False, "reason": f"a write failed {age:.0f} s ago and none succeeded since: "
                                                f"{message}"}
        return 200, {"ok": True}

    def prometheus() -> bytes:
        entries, counters = state.snapshot()
        lines = []
        for name in COUNTERS:
            if name.startswith("rejected_"):
                continue
            metric = f"metrics_ops_events_{name}_total" if name != "requests" else "metrics_ops_requests_total"
            lines += [f"# HELP {metric} {_HELP[name]}", f"# TYPE {metric} counter", f"{metric} {counters[name]}"]
        lines += ["# HELP metrics_ops_events_rejected_total Requests or batch items refused, by reason.",
                  "# TYPE metrics_ops_events_rejected_total counter"]
        for name in COUNTERS:
            if name.startswith("rejected_"):
                lines.append(f'metrics_ops_events_rejected_total{{reason="{name[9:]}"}} {counters[name]}')
        lines += ["# HELP metrics_ops_ring_events Events held in the debug ring.",
                  "# TYPE metrics_ops_ring_events gauge", f"metrics_ops_ring_events {len(entries)}",
                  "# HELP metrics_ops_ring_capacity Capacity of the debug ring.",
                  "# TYPE metrics_ops_ring_capacity gauge", f"metrics_ops_ring_capacity {state.capacity}"]
        return ("\n".join(lines) + "\n").encode()

    def cors_headers(origin: str | None, preflight: bool = False) -> list[tuple[str, str]] | None:
        """None: the origin is refused. []: no CORS in play."""
        if origin is None:
            return []
        if not origins:  # CORS is off: a preflight must not get a 204 that reads like a yes
            return None if preflight else []
        if any_origin or origin in origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return None

    def app(environ, start_response):
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        if path == EVENT_PATH and method == "POST" and (not origins or "HTTP_ORIGIN" not in environ):
            # the hot path: one event, no CORS in play
            try:
                status, payload = one_event(environ)
            except Problem as problem:
                state.update(requests=1, **{_counter_of(problem): 1})
                status, payload = problem.status, {"ok": False, "error": problem.to_dict()}
            except OSError as exc:
                status, payload = _unavailable(exc)
            body = orjson.dumps(payload)
            start_response(_STATUS[status], [("Content-Length", str(len(body))), *_JSON_HEADERS])
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("POST %s %d %d %.2fms", path, status, len(body), (time.perf_counter() - started) * 1e3)
            return [body]
        headers: list[tuple[str, str]] = []
        content_type = "application/json"
        try:
            allow = _ALLOW.get(path)
            if allow is None:
                raise Problem(404, "not_found", f"no route {path[:100]}")
            if method not in allow and not (method == "HEAD" and "GET" in allow):
                headers.append(("Allow", allow))
                raise Problem(405, "method_not_allowed", f"{method[:10]} not allowed on {path}; use {allow}")
            if path in (EVENT_PATH, BATCH_PATH):
                cors = cors_headers(environ.get("HTTP_ORIGIN"), method == "OPTIONS")
                if cors is None:
                    state.update(requests=1, rejected_origin=1)
                    raise Problem(403, "origin_not_allowed", "this origin is not in METRICS_CORS_ORIGINS" if origins
                                  else "METRICS_CORS_ORIGINS is empty: no cross-origin requests (serve the event "
                                       "routes from the site's own origin, or list this origin)")
                headers += cors
                if method == "OPTIONS":
                    status, payload = 204, None
                    headers += [("Access-Control-Allow-Methods", "POST, OPTIONS"),
                                ("Access-Control-Allow-Headers", "Content-Type"),
                                ("Access-Control-Max-Age", "86400")]
                else:
                    try:
                        status, payload = one_event(environ) if path == EVENT_PATH else batch(environ)
                    except Problem as problem:
                        state.update(requests=1, **{_counter_of(problem): 1})
                        raise
            elif path == SNAPSHOT_PATH:
                status, payload = snapshot()
            elif path == HEALTH_PATH:
                status, payload = health()
            else:
                status, payload = 200, prometheus()
                content_type = "text/plain; version=0.0.4; charset=utf-8"
        except Problem as problem:
            status, payload = problem.status, {"ok": False, "error": problem.to_dict()}
        except OSError as exc:
            status, payload = _unavailable(exc)
        if payload is None:
            body = b""
        elif isinstance(payload, bytes):
            body = payload
        else:
            body = orjson.dumps(payload)
        if method == "HEAD":
            body = b""
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
        start_response(_STATUS[status], headers)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %d %d %.2fms", method[:10], path[:100], status, len(body),
                            (time.perf_counter() - started) * 1000)
        return [body]

    app.store = store  # for tests and embedding
    app.state = state
    return app
