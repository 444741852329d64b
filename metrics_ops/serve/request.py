"""Reading a request: its body within the limits, and whether its origin may send events (CORS)."""

from __future__ import annotations

from metrics_ops.events import Problem

CONTENT_TYPES = ("application/json", "text/plain")  # text/plain: what navigator.sendBeacon sends, no preflight
PREFLIGHT_HEADERS = (("Access-Control-Allow-Methods", "POST, OPTIONS"),
                     ("Access-Control-Allow-Headers", "Content-Type"), ("Access-Control-Max-Age", "86400"))


def read_body(environ, max_body: int) -> bytes:
    """The request body, at most ``max_body`` bytes; 415 for another content type, 413 above the limit, 400 when
    the client sent less than its Content-Length (what it did not finish sending is never stored)."""
    ctype = environ.get("CONTENT_TYPE", "")
    if ctype not in CONTENT_TYPES:
        ctype = ctype.split(";", 1)[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        shown = ctype or "none"
        raise Problem(415, "content_type", f"content type {shown[:60]} not accepted; send application/json "
                      "or text/plain (navigator.sendBeacon)")
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if not length:
        return _read_unsized(stream, max_body)
    try:
        n = int(length)
    except ValueError:
        raise Problem(400, "bad_request", "Content-Length is not a number") from None
    if n > max_body:
        raise Problem(413, "body_too_large", f"body of {n} bytes is over the limit of {max_body} bytes")
    body = stream.read(n) if n > 0 else b""
    if len(body) < n:
        raise Problem(400, "incomplete_body", f"body ended after {len(body)} of the {n} bytes that "
                      "Content-Length announced")
    return body


def _read_unsized(stream, max_body: int) -> bytes:
    """Chunked or unknown length: at most the limit plus one byte, to tell "over the limit" apart."""
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


class Cors:
    """Which origins may post events: none (same origin only, the default), a list, or ``*``."""

    def __init__(self, origins):
        self.origins = frozenset(origins)
        self.any = "*" in self.origins

    def headers(self, origin: str | None, preflight: bool = False) -> list[tuple[str, str]] | None:
        """The response headers for ``origin``; None: refused. [] when no CORS is in play."""
        if origin is None:
            return []
        if not self.origins:  # CORS is off: a preflight must not get a 204 that reads like a yes
            return None if preflight else []
        if self.any or origin in self.origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return None

    def refusal(self) -> Problem:
        return Problem(403, "origin_not_allowed", "this origin is not in METRICS_CORS_ORIGINS" if self.origins
                       else "METRICS_CORS_ORIGINS is empty: no cross-origin requests (serve the event routes "
                            "from the site's own origin, or list this origin)")
