"""The WSGI application: ``make_app(settings)`` returns a plain WSGI callable (no framework).

Routes (the table is :mod:`metrics_ops.serve.routes`)
- ``POST /api/metrics/event``   one event  -> 202 {"ok": true, "stored": 0|1, "file": "..."}
- ``POST /api/metrics/events``  a JSON array of events -> 202 with a result per item
- ``GET  /api/metrics/snapshot`` the ring (newest last, visitors as keyed hashes), the counters, the health details
- ``GET  /healthz``             200 when the data directory is writable and has room, else 503 with a reason code
- ``GET  /metrics``             Prometheus text format (:mod:`metrics_ops.serve.exposition`)
  The snapshot and /metrics answer loopback peers only, or the admin token (:mod:`metrics_ops.serve.access`).
- ``GET  /metrics.js``, ``/metrics.mjs`` the browser script and its ES module (:mod:`metrics_ops.client`):
  ETag and 304, an hour's Cache-Control, gzip when accepted; the bytes, gzip and ETag made once per app
- ``OPTIONS`` on the POST routes: CORS preflight for METRICS_CORS_ORIGINS

Errors are JSON: {"ok": false, "error": {"code", "message", "field"}} with 400, 401, 403, 404, 405, 413, 415 or 422.
Privacy: no header value (client address, X-Forwarded-For, User-Agent, Cookie, Referer) is stored or logged; the
operator routes alone look at the peer address and whether forwarding headers are present, to decide (access.py).
The access log line holds method, path, status, size and duration only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Callable

import orjson

from metrics_ops import eventschema
from metrics_ops.client import ClientFile, answer, client_file
from metrics_ops.diskspace import MIB, SpaceFloor
from metrics_ops.events import Problem, encode_record, parse_body, validate_event
from metrics_ops.sampling import Sampler
from metrics_ops.serve import exposition
from metrics_ops.serve.access import AdminGate, visitor_tag
from metrics_ops.serve.counters import INDEX, rejected_counter
from metrics_ops.serve.request import PREFLIGHT_HEADERS, Cors, read_body
from metrics_ops.serve.routes import EVENT_PATH, HEALTH_REASONS, ROUTES, STATUS, Reply
from metrics_ops.serve.shared import SharedState
from metrics_ops.store import Store, StoreError, unusable_dir

access_log = logging.getLogger("metrics_ops.access")
log = logging.getLogger("metrics_ops.serve")
_JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                 ("X-Content-Type-Options", "nosniff"))
_iso_cache = [-1, ""]


def _utc_iso(now: float) -> str:
    """ISO-8601 UTC with microseconds; the seconds part is formatted once per second."""
    seconds = int(now)
    if seconds != _iso_cache[0]:
        _iso_cache[0], _iso_cache[1] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
    return f"{_iso_cache[1]}{int((now - seconds) * 1e6):06d}Z"


def _unavailable(exc: OSError) -> Reply:
    """The state file or the data directory went away under us: 503, one log line."""
    log.error("request failed: %s", exc)
    return Reply(503, {"ok": False, "error": {"code": "unavailable", "field": None,
                                              "message": errno.errorcode.get(exc.errno or 0, "OSError")}})


def _client_reply(f: ClientFile, environ) -> Reply:
    status, body, headers = answer(f, environ.get("HTTP_IF_NONE_MATCH", ""), environ.get("HTTP_ACCEPT_ENCODING", ""))
    return Reply(status, body, f.content_type, headers)


def _refused(problem: Problem) -> Reply:
    return Reply(problem.status, {"ok": False, "error": problem.to_dict()})


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


class Endpoint:
    """The handlers of the routes table over one store, one shared state and one sampler."""

    def __init__(self, settings, store: Store, state: SharedState, sampler: Sampler, clock: Callable[[], float]):
        self.store, self.state, self.sampler, self.clock = store, state, sampler, clock
        self.max_body, self.max_batch, self.keep_query = settings.max_body, settings.max_batch, settings.keep_query
        self.gate = AdminGate(settings.admin_token)
        self.health_logged: str | None = None
        self.quiet_errors = _QuietLog()
        self.floor = SpaceFloor(store.dir, int(settings.serve_min_free_mb * MIB))  # never fill the disk
        self.script, self.module = client_file("script"), client_file("module")
        self.rate_for = sampler.rate_for
        self.answers: dict[tuple[bool, str], bytes] = {}  # the 202 bodies of single events, by (stored, file)

    def count_refusal(self, problem: Problem) -> None:
        self.state.update(requests=1, **{rejected_counter(problem.code, problem.status): 1})

    def refusal_of(self, line: eventschema.Line) -> str | None:
        """Why a valid event is not stored (the counter: sampled_out, low_space), None: store it."""
        if not self.sampler.keep(line[0], line[1]):
            return "sampled_out"
        if self.floor.reason() is not None:  # room stays for gzip's temp files and the pass
            return "low_space"
        return None

    def write(self, records: bytes, now: float) -> tuple[bool, str, str]:
        """Append complete lines in one write -> (stored, file, counter)."""
        try:
            return True, self.store.append(records, now), "stored"
        except (StoreError, OSError) as exc:
            self.state.note_write_error(str(exc))
            self.quiet_errors.log(str(exc))
            return False, self.store.current_file(now), "write_errors"

    def keep_and_store(self, line: eventschema.Line, now: float) -> tuple[bool, str, str]:
        """(visitor, event, stored line) -> (stored, file, counter); refusal_of spelled out: the hot path"""
        if not self.sampler.keep(line[0], line[1]):
            why = "sampled_out"
        elif self.floor.reason() is not None:
            why = "low_space"
        else:
            return self.write(line[2], now)
        return False, self.store.current_file(now), why

    def line_of(self, event: dict, received_at: str) -> eventschema.Line:
        """A validated event of the reference path -> (visitor, event, stored line)."""
        name = event["event"]
        return event["visitor_id"], name, encode_record(event, received_at, self.rate_for(name))

    def accept(self, environ) -> bytes:
        """One event: validated, sampled, stored -> the body of the 202 (a Problem for a refusal).

        The schema's fast path takes a valid body in C; any other body goes the reference way, which names
        the refusal (and takes the valid bodies the schema leaves out): the same answers either way."""
        body = read_body(environ, self.max_body)
        now = self.clock()
        received_at = _utc_iso(now)
        line = eventschema.one(body, self.keep_query, received_at, self.rate_for)
        if line is None:
            line = self.line_of(validate_event(parse_body(body), "", self.keep_query), received_at)
        stored, file, counter = self.keep_and_store(line, now)
        self.state.record_event(line[2], stored, INDEX[counter])
        if (answer := self.answers.get((stored, file))) is None:  # one of a few: made once
            if len(self.answers) > 64:
                self.answers.clear()
            answer = self.answers[stored, file] = orjson.dumps({"ok": True, "stored": int(stored), "file": file})
        return answer

    def one_event(self, environ) -> Reply:
        return Reply(202, self.accept(environ))

    def batch_lines(self, body: bytes, received_at: str) -> list[eventschema.Line | Problem]:
        """A stored line or the refusal of each event of a batch (a Problem for the whole batch)."""
        lines = eventschema.batch(body, self.max_batch, self.keep_query, received_at, self.rate_for)
        if lines is not None:
            return lines
        items = parse_body(body)
        if not isinstance(items, list):
            raise Problem(422, "not_array", "a batch must be a JSON array of events")
        if not items:
            raise Problem(422, "empty_batch", "the batch is empty")
        if len(items) > self.max_batch:
            raise Problem(413, "batch_too_large", f"{len(items)} events in one batch; the limit is {self.max_batch}")
        out: list[eventschema.Line | Problem] = []
        for i, item in enumerate(items):
            try:
                out.append(self.line_of(validate_event(item, f"[{i}].", self.keep_query), received_at))
            except Problem as problem:
                out.append(problem)
        return out

    def batch(self, environ) -> Reply:
        """Every event of a batch validated, sampled; the kept ones appended in one write (all or none)."""
        body = read_body(environ, self.max_body)
        now = self.clock()
        lines = self.batch_lines(body, _utc_iso(now))
        whys = [line if isinstance(line, Problem) else self.refusal_of(line) for line in lines]
        kept = [line[2] for line, why in zip(lines, whys, strict=True) if why is None]
        if kept:
            wrote = self.write(b"".join(kept), now)
        results, entries, counts = [], [], {"requests": 1}
        for line, why in zip(lines, whys, strict=True):
            if isinstance(why, Problem):
                results.append({"ok": False, "error": why.to_dict()})
                counts["rejected_invalid"] = counts.get("rejected_invalid", 0) + 1
                continue
            stored, file, counter = wrote if why is None else (False, self.store.current_file(now), why)
            entries.append((line[2], stored))
            counts["received"] = counts.get("received", 0) + 1
            counts[counter] = counts.get(counter, 0) + 1
            results.append({"ok": True, "stored": int(stored), "file": file})
        self.state.update(entries, **counts)
        accepted = len(entries)
        body = {"ok": accepted > 0, "accepted": accepted, "rejected": len(lines) - accepted,
                "stored": counts.get("stored", 0), "results": results}
        return Reply(202 if accepted else 422, body)

    def snapshot(self, environ) -> Reply:
        entries, counters = self.state.snapshot()
        key = self.state.hash_key()
        events = []
        for record, stored in entries:
            obj = json.loads(record)
            visitor = obj.pop("visitor_id", None)
            if isinstance(visitor, str):  # never the id itself: a keyed hash tells visitors apart
                obj = {"visitor": visitor_tag(visitor, key), **obj}
            obj["stored"] = stored
            events.append(obj)
        reason, detail = self.health_state()
        return Reply(200, {"ok": True, "capacity": self.state.capacity, "size": len(events), "events": events,
                           "counters": counters, "health": {"ok": reason is None, "reason": reason, "detail": detail}})

    def health_state(self) -> tuple[str | None, str | None]:
        """(reason code of HEALTH_REASONS, the details: path, setting, figures), (None, None) when healthy."""
        directory = self.store.dir
        if (unusable := unusable_dir(directory)) is not None:
            code = "data_dir_missing" if unusable == "does not exist" else "data_dir_not_a_directory"
            return code, f"data directory {directory.absolute()} {unusable}"
        if not os.access(directory, os.W_OK | os.X_OK):
            return "data_dir_not_writable", f"data directory {directory.absolute()} is not writable"
        if (low := self.floor.reason()) is not None:
            return "low_space", low
        try:
            last_ok, last_error, message = self.state.health()  # every worker of the server answers alike
        except OSError:  # the debug state is broken, ingestion is not (the warning is logged once a minute)
            last_ok, last_error, message = 0, 0, ""
        age = self.clock() - last_error / 1e9
        if last_error > last_ok and age < 60:
            return "write_failed", f"a write failed {age:.0f} s ago and none succeeded since: {message}"
        return None, None

    def health(self, environ) -> Reply:
        """200, or 503 with a reason code and its fixed text: no path, setting or figure leaves the host here."""
        reason, detail = self.health_state()
        if reason != self.health_logged:  # the details go to the log, once per change
            self.health_logged = reason
            if reason is not None:
                log.warning("/healthz 503 %s: %s", reason, detail)
        if reason is None:
            return Reply(200, {"ok": True})
        return Reply(503, {"ok": False, "reason": reason, "message": HEALTH_REASONS[reason]})

    def client_script(self, environ) -> Reply:
        return _client_reply(self.script, environ)

    def client_module(self, environ) -> Reply:
        return _client_reply(self.module, environ)

    def exposition(self, environ) -> Reply:
        entries, counters = self.state.snapshot()
        return Reply(200, exposition.generate_latest(counters, len(entries), self.state.capacity),
                     exposition.CONTENT_TYPE)


def make_app(settings, *, store: Store | None = None, state: SharedState | None = None,
             sampler: Sampler | None = None, clock: Callable[[], float] = time.time) -> Callable:
    """Build the WSGI application (like prometheus_client's make_wsgi_app): call it per request."""
    endpoint = Endpoint(settings,
                        store if store is not None else Store.from_settings(settings, clock),
                        state if state is not None else SharedState.for_settings(settings),
                        sampler if sampler is not None else Sampler.from_settings(settings), clock)
    router = _Router(endpoint, Cors(settings.cors_origins))
    accept, count_refusal, dispatch = endpoint.accept, endpoint.count_refusal, router.dispatch
    cross_origin = bool(settings.cors_origins)

    def app(environ, start_response):
        timed = access_log.isEnabledFor(logging.INFO)
        started = time.perf_counter() if timed else 0.0
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        if path == EVENT_PATH and method == "POST" and not (cross_origin and "HTTP_ORIGIN" in environ):
            status = 202  # the hot path: one event, no CORS in play, no Reply object
            try:
                body = accept(environ)
            except Problem as problem:
                count_refusal(problem)
                status, payload = _refused(problem)[:2]
                body = orjson.dumps(payload)
            except OSError as exc:
                status, payload = _unavailable(exc)[:2]
                body = orjson.dumps(payload)
            start_response(STATUS[status], [("Content-Length", str(len(body))), *_JSON_HEADERS])
        else:
            reply, headers = dispatch(environ, method, path)
            status, body = reply.status, _respond(start_response, reply, headers, method)
        if timed:
            access_log.info("%s %s %d %d %.2fms", method[:10], path[:100], status, len(body),
                            (time.perf_counter() - started) * 1e3)
        return [body]

    app.store = endpoint.store  # for tests and embedding
    app.state = endpoint.state
    return app


class _Router:
    """Every request but the hot path: the routes table, the methods each route allows, the CORS rules."""

    def __init__(self, endpoint: Endpoint, cors: Cors):
        self.endpoint, self.cors = endpoint, cors
        self.handlers = {path: (route, getattr(endpoint, route.handler)) for path, route in ROUTES.items()}

    def dispatch(self, environ, method: str, path: str) -> tuple[Reply, list[tuple[str, str]]]:
        headers: list[tuple[str, str]] = []
        try:
            route, handler = self.handlers.get(path) or (None, None)
            if route is None:
                raise Problem(404, "not_found", f"no route {path[:100]}")
            if not route.allows(method):
                headers.append(("Allow", route.allow))
                raise Problem(405, "method_not_allowed", f"{method[:10]} not allowed on {path}; use {route.allow}")
            if route.admin and (refusal := self.endpoint.gate.refusal(environ)) is not None:
                if refusal.status == 401:
                    headers.append(("WWW-Authenticate", 'Bearer realm="metrics-ops"'))
                raise refusal
            if not route.cors:
                return handler(environ), headers
            allowed = self.cors.headers(environ.get("HTTP_ORIGIN"), method == "OPTIONS")
            if allowed is None:
                self.endpoint.state.update(requests=1, rejected_origin=1)
                raise self.cors.refusal()
            headers += allowed
            if method == "OPTIONS":
                return Reply(204, None, headers=PREFLIGHT_HEADERS), headers
            try:
                return handler(environ), headers
            except Problem as problem:
                self.endpoint.count_refusal(problem)
                raise
        except Problem as problem:
            return _refused(problem), headers
        except OSError as exc:
            return _unavailable(exc), headers


def _respond(start_response, reply: Reply, headers: list[tuple[str, str]], method: str) -> bytes:
    payload = reply.payload
    body = b"" if payload is None else payload if isinstance(payload, bytes) else orjson.dumps(payload)
    own = list(reply.headers)
    cache = () if any(name == "Cache-Control" for name, _ in own) else (("Cache-Control", "no-store"),)
    # HEAD: the length GET would send; 304: no length (it would have to be the full response's)
    length = () if reply.status == 304 else (("Content-Length", str(len(body))),)
    start_response(STATUS[reply.status], [*headers, *own, ("Content-Type", reply.content_type), *length, *cache,
                                          ("X-Content-Type-Options", "nosniff")])
    return b"" if method == "HEAD" else body
