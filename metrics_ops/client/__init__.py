"""The browser script, shipped inside the package: metrics.js (a tag), metrics.mjs (the same as an ES module),
metrics.d.ts (its types), and the HTTP answer serve gives for them.

``metrics.src.js`` is the readable source; ``tools/build_client.py`` minifies it into the two shipped files
(each at most 1 KiB gzipped, tested). Everything an answer needs (bytes, gzip, ETag) is computed once, when the
file is loaded, never per request.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

JS = "text/javascript; charset=utf-8"
# Browsers revalidate after an hour (a 304 when the ETag still matches), so an upgrade reaches them the same day.
CACHE_CONTROL = "public, max-age=3600"
KINDS = {"script": ("metrics.js", JS), "module": ("metrics.mjs", JS),
         "types": ("metrics.d.ts", "text/plain; charset=utf-8")}


@dataclass(frozen=True)
class ClientFile:
    kind: str
    name: str
    content_type: str
    body: bytes
    gzipped: bytes
    etag: str  # of the plain bytes; the gzip representation's is gzip_etag

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gzip"'

    def summary(self) -> dict:
        return {"kind": self.kind, "file": self.name, "content_type": self.content_type, "bytes": len(self.body),
                "gzip_bytes": len(self.gzipped), "etag": self.etag}


@cache
def client_file(kind: str = "script") -> ClientFile:
    """One shipped file, with its gzip form and ETag (read from the installed package once per process)."""
    name, content_type = KINDS[kind]
    body = files(__name__).joinpath(name).read_bytes()
    gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    return ClientFile(kind, name, content_type, body, gzipped, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip`` or ``*`` with a q-value above 0)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        try:
            return not q.startswith("q=") or float(q[2:]) > 0
        except ValueError:
            return False
    return False


def not_modified(if_none_match: str, f: ClientFile) -> bool:
    """Whether an If-None-Match header names a current ETag (weak comparison, as RFC 9110 asks for GET)."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or f.etag in tags or f.gzip_etag in tags


def answer(f: ClientFile, if_none_match: str = "", accept_encoding: str = "") -> tuple[int, bytes | None, tuple]:
    """(status, body, headers) for a GET of ``f``: 304 without a body when If-None-Match names its ETag, the
    gzip bytes when Accept-Encoding allows them. The content type and length are the caller's to add."""
    zipped = accepts_gzip(accept_encoding)
    headers = (("Cache-Control", CACHE_CONTROL), ("Vary", "Accept-Encoding"),
               ("ETag", f.gzip_etag if zipped else f.etag))
    if if_none_match and not_modified(if_none_match, f):
        return 304, None, headers
    if zipped:
        return 200, f.gzipped, (*headers, ("Content-Encoding", "gzip"))
    return 200, f.body, headers
