"""Sending requests to serve or to the edge, for the commands that measure them (sample-test --url, probe;
status --url checks its URL with the same parser).

One parser for their URLs, one keep-alive connection type, one POST that never raises for a network failure,
and the rule that a target which cannot be reached has measured nothing: that is an error with its own exit
status (:class:`Unreachable`), never a statistic (``ok``, INCONCLUSIVE).
"""

from __future__ import annotations

import http.client
import socket
from typing import NamedTuple
from urllib.parse import urlsplit


class Unreachable(Exception):
    """The target could not be connected to, or answered none of the requests."""


class Target(NamedTuple):
    url: str
    scheme: str
    host: str
    port: int | None
    path: str  # with the query string, if any

    @classmethod
    def parse(cls, url: str, default_path: str = "/") -> Target:
        """An http:// or https:// URL, or ValueError saying what is wrong with it."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # "Invalid IPv6 URL" for http://[::1
            raise ValueError(f"{url}: {str(exc)[:1].lower()}{str(exc)[1:]}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url}: want an http:// or https:// URL")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url}: the port is not a number from 0 to 65535") from None
        path = parts.path or default_path
        if parts.query:
            path += "?" + parts.query
        return cls(url, parts.scheme, parts.hostname, port, path)

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """A new keep-alive connection (not yet connected)."""
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout)


class Answer(NamedTuple):
    status: int  # 0: no HTTP answer (``error`` says why)
    body: bytes
    error: str | None
    closed: bool  # the connection cannot be used again: open a new one


def post(conn: http.client.HTTPConnection, path: str, body: bytes | str,
         content_type: str = "application/json") -> Answer:
    """POST on a keep-alive connection; a network failure is an Answer with status 0, not an exception."""
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return Answer(0, b"", type(exc).__name__, True)
    closed = resp.getheader("Connection", "").lower() == "close"
    if closed:
        conn.close()
    return Answer(resp.status, data, None, closed)


def require_connection(url: str, timeout: float = 10.0) -> None:
    """Open (and close) one TCP connection to the URL's host and port, or raise :class:`Unreachable`."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise Unreachable(f"cannot connect to {url}: {reason[:1].lower() + reason[1:]}") from None


def require_an_answer(url: str, sent: int, errors: list[str]) -> None:
    """Every request failed without an HTTP answer (the target went away after the first connection)."""
    kinds = ", ".join(sorted(set(errors))) or "no answer"
    raise Unreachable(f"no answer from {url}: all {sent} requests failed ({kinds})")
