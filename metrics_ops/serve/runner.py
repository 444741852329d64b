"""Run the ingestion app on a production WSGI server (``metrics-ops serve``): granian (Rust HTTP core, one
process per worker).

Chosen by measurement (../shared/ANCHORS.md and bench/serve_bench.py): on 2 cores granian's WSGI interface with
2 workers serves ~30,000 req/s of this kind of app, gunicorn gthread ~7,000, waitress ~2,100, wsgiref ~2,900.
The workers are separate processes; the ring and counters they share live in a memory-mapped state file.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from metrics_ops.config import Settings
from metrics_ops.serve.access import warn_if_exposed
from metrics_ops.serve.worker import PARENT_ENV


class ServeError(Exception):
    """A start-up failure, said in one line; ``exit_code`` 2 when a setting is at fault."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


BACKPRESSURE = 4096  # connections per worker, idle ones included (see run())



def settings_env(settings: Settings) -> dict[str, str]:
    """The effective settings as METRICS_* variables, so every worker process builds the same app."""
    import json

    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, list | dict):
            text = json.dumps(value)
        elif isinstance(value, Path):
            text = str(value.resolve())
        elif isinstance(value, SecretStr):  # str() of it is the mask: the workers need the secret itself
            text = value.get_secret_value()
        else:
            text = str(value)
        env[f"METRICS_{name.upper()}"] = text
    env["METRICS_STATE_FILE"] = str(settings.state_path.resolve())
    env[PARENT_ENV] = str(os.getpid())
    return env


def preflight(settings: Settings) -> None:
    """Everything that would make the server fail after it started, checked first: one line each."""
    from metrics_ops.store import dir_mode, unusable_dir

    directory = settings.dir
    if unusable_dir(directory) == "is not a directory":
        raise ServeError(f"data directory {directory} is not a directory")
    try:
        directory.mkdir(mode=dir_mode(settings.file_mode_bits), parents=True, exist_ok=True)
    except OSError as exc:
        raise ServeError(f"cannot create data directory {directory}: {exc.strerror}") from None
    probe = directory / f".metrics-ops.probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ServeError(f"data directory {directory} is not writable: {exc.strerror}") from None
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((settings.host, settings.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {settings.port} on {settings.host} is already in use (--port / METRICS_PORT)") \
                from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"no permission to listen on {settings.host}:{settings.port} (ports below 1024 "
                             "need root)") from None
        raise ServeError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    warn_if_exposed(settings)


def run(settings: Settings, on_ready: Callable[[], object] | None = None) -> None:
    """Start granian in this process with settings.workers workers; returns after SIGTERM/SIGINT.

    ``on_ready`` runs once the port listens (before the workers start; requests queue until one takes them)."""
    from metrics_ops.serve.shared import SharedState, StateBusy, StateError

    preflight(settings)
    state = SharedState.for_settings(settings)
    try:
        state.claim()  # held until this process exits: a second serve on the same file is refused
    except StateBusy as exc:
        raise ServeError(f"{exc}; stop it first, or give this server its own state file (METRICS_STATE_FILE)"
                         ) from None
    except StateError as exc:
        raise ServeError(str(exc), 2 if exc.errno == errno.EEXIST else 1) from None
    os.environ.update(settings_env(settings))

    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    server = Granian(
        "metrics_ops.serve.wsgi:create_app",
        factory=True,  # the module builds nothing at import; granian calls create_app() in each worker
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        log_enabled=True,
        log_level=settings.log_level,
        log_access=False,  # granian's access log holds client addresses; ours does not
        backlog=2048,
        respawn_failed_workers=True,
        # One Python thread per worker runs the app: the handler is short and CPU-bound, so more threads only
        # contend for the GIL (measured: 1 thread ~36k req/s, 512 threads, granian's default, ~13k).
        blocking_threads=1,
        # backpressure caps the connections one worker holds at once, idle keep-alive ones included: at 128,
        # 300 idle connections opened straight at serve starved every real request for 30 s (granian's header
        # read timeout). At 4096 a server of 2 workers answered at once with 8,000 idle connections open
        # (tests/test_serve.py holds 1,000). The app still runs on one thread: the rest wait in the Rust core.
        # Keep nginx in front anyway: it buffers bodies, so a slow client never holds the Python thread.
        backpressure=BACKPRESSURE,
        http=HTTPModes.http1,  # nginx speaks HTTP/1.1 to its upstream; skipping protocol detection is faster
        websockets=False,
    )
    if on_ready is not None:
        server.on_startup(on_ready)  # granian calls it after binding, in this thread: no thread of our own
    try:
        server.serve()
    except Exception as exc:  # granian's ConfigurationError and start-up failures: one line, not a traceback
        raise ServeError(f"the server failed to start: {exc}") from None
