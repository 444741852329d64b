"""Real Chromium (Debian's `chromium`, driven by Playwright for Python) against a real nginx and a real serve.

A :class:`Site` is serve on a loopback port plus nginx in front of it, built from a shipped config:
- same origin: deploy/edge/site-same-origin.conf, whose site root holds the test pages;
- cross origin: deploy/edge/nginx.conf (the metrics origin) plus the pages on a Python http.server on another
  port (another origin), serve started with METRICS_CORS_ORIGINS set to that origin.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

from .edge import SAME_ORIGIN, SHIPPED, Nginx
from .helpers import all_lines
from .serve_process import Server

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")  # Debian's; GitHub's Ubuntu runners


def chromium_path() -> str | None:
    found = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    return found or next((p for p in ("/usr/bin/chromium",) if os.path.exists(p)), None)


def wait(seconds: float) -> None:
    threading.Event().wait(seconds)  # time.sleep raises EINVAL under libfaketime


class Site:
    def __init__(self, tmp_path: Path, data_dir: Path, *, cross_origin: bool = False, rate: str | None = None,
                 env: dict | None = None):
        self.data_dir = data_dir
        prefix = tmp_path / "nginx"
        self.root = prefix / "site"
        self.root.mkdir(parents=True)
        self.pages_server = None
        env = dict(env or {})
        if cross_origin:
            handler = functools.partial(_QuietHandler, directory=str(self.root))
            self.pages_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=self.pages_server.serve_forever, daemon=True).start()
            self.origin = f"http://127.0.0.1:{self.pages_server.server_address[1]}"
            env.setdefault("METRICS_CORS_ORIGINS", self.origin)
        self.serve = Server(data_dir, tmp_path / "serve.log", env=env)
        try:
            self.edge = Nginx(prefix, self.serve.port, SHIPPED if cross_origin else SAME_ORIGIN, rate)
        except Exception:
            self.serve.stop()
            raise
        self.metrics_origin = f"http://127.0.0.1:{self.edge.port}"
        if not cross_origin:
            self.origin = self.metrics_origin

    def page(self, name: str, attrs: str = "", body: str = "", script: str | None = None) -> str:
        """Write a page holding the tag (``attrs`` are its data-* attributes); returns its URL."""
        src = "/metrics.js" if self.origin == self.metrics_origin else f"{self.metrics_origin}/metrics.js"
        tag = f'<script defer src="{src}" {attrs}></script>' if script is None else script
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>{name}</title>{tag}</head>"
                        f"<body>{body}</body></html>\n")
        return f"{self.origin}/{name}"

    def records(self) -> list[dict]:
        return [json.loads(line) for line in all_lines(self.data_dir) if line]

    def wait_for(self, predicate, timeout: float = 20.0) -> list[dict]:
        """The records once ``predicate(records)`` holds (polling); AssertionError with them if it never does."""
        for _ in range(int(timeout / 0.05)):
            records = self.records()
            if predicate(records):
                return records
            wait(0.05)
        raise AssertionError(f"not on disk within {timeout} s; records: {self.records()}")

    def access_log(self) -> str:
        log = self.edge.prefix / "metrics-ops.access.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        self.edge.stop()
        if self.pages_server is not None:
            self.pages_server.shutdown()
            self.pages_server.server_close()
        assert self.serve.stop() == 0, self.serve.log


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# Init scripts (run in every page before its own scripts).
def fixed_visitor(visitor_id: str) -> str:
    """The visitor id metrics.js will find in localStorage (so a test knows whether it is sampled in)."""
    return f"try {{ localStorage.mops_vid = {json.dumps(visitor_id)} }} catch (e) {{}}"


# Records every sendBeacon call's URL in sessionStorage, which survives the navigation that triggered it.
BEACON_SPY = """
(() => { const send = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, body) => {
    const calls = JSON.parse(sessionStorage.beacons || "[]");
    calls.push(String(url)); sessionStorage.beacons = JSON.stringify(calls); return send(url, body) } })()
"""
GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true })"
DNT_ON = "Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' })"
