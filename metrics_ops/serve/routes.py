"""The routes table: which path answers which methods, through which handler, under which rules.

A handler is a method of :class:`metrics_ops.serve.app.Endpoint` named by ``Route.handler``; it takes the WSGI
environ and returns a :class:`Reply`. Adding a route is one line here and one method there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

EVENT_PATH = "/api/metrics/event"
BATCH_PATH = "/api/metrics/events"
SNAPSHOT_PATH = "/api/metrics/snapshot"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
SCRIPT_PATH = "/metrics.js"  # the browser script (metrics_ops.client); the ES module next to it
MODULE_PATH = "/metrics.mjs"


class Route(NamedTuple):
    handler: str  # the Endpoint method that answers
    allow: str  # the methods, as the Allow header lists them; HEAD is implied by GET
    cors: bool = False  # the cross-origin rules (METRICS_CORS_ORIGINS) apply, OPTIONS is the preflight
    admin: bool = False  # an operator route: loopback peers or the admin token only (metrics_ops.serve.access)

    def allows(self, method: str) -> bool:
        return method in self.allow or (method == "HEAD" and "GET" in self.allow)


ROUTES: dict[str, Route] = {
    EVENT_PATH: Route("one_event", "POST, OPTIONS", cors=True),
    BATCH_PATH: Route("batch", "POST, OPTIONS", cors=True),
    SNAPSHOT_PATH: Route("snapshot", "GET, HEAD", admin=True),
    HEALTH_PATH: Route("health", "GET, HEAD"),
    METRICS_PATH: Route("exposition", "GET, HEAD", admin=True),
    SCRIPT_PATH: Route("client_script", "GET, HEAD"),
    MODULE_PATH: Route("client_module", "GET, HEAD"),
}


class Reply(NamedTuple):
    """What a handler answers. ``payload``: a dict (sent as JSON), bytes (sent as they are) or None (no body).
    ``headers`` are added to the defaults; a Cache-Control among them replaces the default ``no-store``."""

    status: int
    payload: Any
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


STATUS = {200: "200 OK", 202: "202 Accepted", 204: "204 No Content", 304: "304 Not Modified",
          400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
          405: "405 Method Not Allowed",
          413: "413 Content Too Large", 415: "415 Unsupported Media Type", 422: "422 Unprocessable Content",
          500: "500 Internal Server Error", 503: "503 Service Unavailable"}

#: the reason codes /healthz answers with a 503, and what each means. The body holds the code and this text only:
#: the details (a path, a setting, free MiB, an error) go to serve's log, the snapshot's "health" and `status`.
HEALTH_REASONS = {
    "data_dir_missing": "the data directory does not exist",
    "data_dir_not_a_directory": "the data directory is not a directory",
    "data_dir_not_writable": "the data directory is not writable",
    "low_space": "free space on the data directory's file system is under serve's floor: events are not stored",
    "write_failed": "a write failed in the last minute and none succeeded since",
}
