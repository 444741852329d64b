"""Calling a WSGI app directly, as a server would (wsgiref's testing defaults), without sockets."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from wsgiref.util import setup_testing_defaults


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


def call(app, method: str, path: str, body: bytes | str | None = None, *, content_type="application/json",
         length: bool = True, headers: dict | None = None, peer: str | None = "127.0.0.1") -> Response:
    """``peer``: the client address a server puts in REMOTE_ADDR (None: none, as no real server does)."""
    if isinstance(body, str):
        body = body.encode()
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING="")
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    else:
        environ.pop("CONTENT_TYPE", None)
    body = body or b""
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(response_headers)

    out = b"".join(app(environ, start_response))
    return Response(captured["status"], captured["headers"], out)
