"""What the network may see of serve beyond the event routes: who may read the operator routes (the debug snapshot
and ``/metrics``), how the snapshot shows a visitor, and the warning for a server bound where others reach it.

The operator routes answer a **loopback peer** (127.0.0.0/8, ::1) that came straight to serve, and nobody else,
unless an admin token is set (METRICS_ADMIN_TOKEN): then every peer, loopback included, must send
``Authorization: Bearer <token>``. A loopback peer is not enough once a token exists because the edge (nginx)
connects from loopback too: a proxy that passed these routes on would hand them to the whole network. For the
same reason a request carrying a proxy's forwarding header (Forwarded, X-Forwarded-*, X-Real-IP) is never taken
for a loopback peer's own. Only the presence of those headers and the peer address are looked at, for this
decision: neither is stored or logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from hashlib import blake2b

from metrics_ops.events import Problem

#: headers a reverse proxy adds: a request holding one came through a proxy, whatever its peer address
FORWARDING_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
                      "HTTP_X_REAL_IP")


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address, or "localhost") is this machine's loopback; anything else is not."""
    if address.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as a dual-stack socket reports IPv4 peers
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


class AdminGate:
    """The rule of the operator routes; ``refusal(environ)`` is None when the request may read them."""

    def __init__(self, token=None):
        secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        self.token = secret.encode() if secret else None

    def refusal(self, environ) -> Problem | None:
        if self.token is not None:
            scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            given = credentials.strip().encode("latin-1", "replace")
            if scheme.lower() == "bearer" and hmac.compare_digest(given, self.token):
                return None
            return Problem(401, "unauthorized", "this route needs the admin bearer token (Authorization: Bearer ...)")
        if is_loopback(environ.get("REMOTE_ADDR", "")) and not any(h in environ for h in FORWARDING_HEADERS):
            return None
        return Problem(403, "forbidden", "this route answers loopback peers only, or an admin bearer token")


def visitor_tag(visitor_id: str, key: bytes) -> str:
    """A short keyed hash of a visitor id for the snapshot (12 hex digits): the same visitor shows the same tag
    while the server runs, and the id cannot be read back from it nor checked against a guess without the key."""
    return blake2b(visitor_id.encode("utf-8", "surrogatepass"), key=key[:64], digest_size=6).hexdigest()


def exposure_warning(host: str, token_set: bool) -> str | None:
    """One line for a serve bound to an address other machines can reach (None for loopback)."""
    if is_loopback(host):
        return None
    from metrics_ops.origins import printable

    host = printable(host)  # one line, whatever the host holds
    guard = ("the snapshot and /metrics need the admin token" if token_set
             else "the snapshot and /metrics still answer loopback peers only")
    return (f"warning: serve listens on {host}, which other machines can reach: keep it behind the edge (nginx) or "
            f"a firewall; {guard}")


def warn_if_exposed(settings) -> None:
    """serve's start-up: the exposure warning on stderr, one line (os.write: granian forks right after, and no
    buffer lock may be held then)."""
    import os

    line = exposure_warning(settings.host, settings.admin_token is not None)
    if line is not None:
        os.write(2, f"metrics-ops: {line} (--host / METRICS_HOST)\n".encode())
