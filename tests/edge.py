"""A real nginx from deploy/edge/nginx.conf (or site-same-origin.conf), on a free loopback port with a temp
prefix, for edge tests.

Only the listen port, the log paths, the backend address and a site's root are substituted in the shipped file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .helpers import free_port

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "edge" / "nginx.conf"
SAME_ORIGIN = SHIPPED.parent / "site-same-origin.conf"
MULTI = SHIPPED.parent / "nginx-multi.conf"  # an upstream of several serves (docker-compose.multi.yml)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def render(prefix: Path, port: int, backend: str | list[str], source: Path = SHIPPED,
           rate: str | None = None) -> Path:
    """``rate`` (e.g. "1000r/s") replaces the shipped 5r/s, for tests whose many visitors share one address.
    ``backend`` is one address, or for MULTI one per `server web-N:8001` line of its upstream, in order."""
    text = source.read_text()
    if rate is not None:
        text, n_rate = re.subn(r"rate=5r/s;", f"rate={rate};", text)
        assert n_rate == 1, f"{source.name} changed shape; update tests/edge.py"
    text, n_listen = re.subn(r"listen (?:8080|80);", f"listen 127.0.0.1:{port};", text)
    if isinstance(backend, list):
        servers = re.findall(r"^    server (web-\d+:8001) ", text, re.M)
        for name, address in zip(servers, backend, strict=True):  # as many addresses as the upstream has
            text = text.replace(f"    server {name} ", f"    server {address} ", 1)
        n_backend = 1 if servers else 0
    else:
        text, n_backend = re.subn(r"server 127\.0\.0\.1:8001;", f"server {backend};", text)
    text = text.replace("/var/log/nginx/", f"{prefix}/").replace("root /var/www/site;", f"root {prefix}/site;")
    assert n_listen == 1 and n_backend == 1, f"{source.name} changed shape; update tests/edge.py"
    (prefix / "metrics-ops.conf").write_text(text)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(f"""{user}daemon off;
worker_processes 1;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  access_log off;
  include {prefix}/metrics-ops.conf;
}}
""")
    return main


class Nginx:
    def __init__(self, prefix: Path, backend_port: int | list[int], source: Path = SHIPPED, rate: str | None = None):
        self.binary = nginx_binary()
        self.prefix = prefix
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        backends = ([f"127.0.0.1:{p}" for p in backend_port] if isinstance(backend_port, list)
                    else f"127.0.0.1:{backend_port}")
        self.conf = render(prefix, self.port, backends, source, rate)
        self.test = subprocess.run([self.binary, "-t", "-p", str(prefix), "-c", str(self.conf), "-e",
                                    str(prefix / "error.log")], capture_output=True, text=True)
        if self.test.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {self.test.stderr}")
        self.proc = subprocess.Popen([self.binary, "-p", str(prefix), "-c", str(self.conf), "-e",
                                      str(prefix / "error.log")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(prefix / 'error.log').read_text()}") from None
                time.sleep(0.05)

    def url(self, path: str = "/api/metrics/event") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
