"""Whether an HTTP target answers at all. A probe or a live sampling test of a target that cannot be reached
has measured nothing: that is an error with its own exit status, never a statistic (``ok``, INCONCLUSIVE)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


class Unreachable(Exception):
    """The target could not be connected to, or answered none of the requests."""


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
