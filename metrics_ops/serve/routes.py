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

    def allows(self, method: str) -> bool:
        return method in self.allow or (method == "HEAD" and "GET" in self.allow)


ROUTES: dict[str, Route] = {
    EVENT_PATH: Route("one_event", "POST, OPTIONS", cors=True),
    BATCH_PATH: Route("batch", "POST, OPTIONS", cors=True),
    SNAPSHOT_PATH: Route("snapshot", "GET, HEAD"),
    HEALTH_PATH: Route("health", "GET, HEAD"),
    METRICS_PATH: Route("exposition", "GET, HEAD"),
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
          400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found", 405: "405 Method Not Allowed",
          413: "413 Content Too Large", 415: "415 Unsupported Media Type", 422: "422 Unprocessable Content",
          500: "500 Internal Server Error", 503: "503 Service Unavailable"}
