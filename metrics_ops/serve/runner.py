"""Run the ingestion app on a production WSGI server (``metrics-ops serve``): granian (Rust HTTP core, one
process per worker).

Chosen by measurement (../shared/ANCHORS.md and bench/serve_bench.py): on 2 cores granian's WSGI interface with
2 workers serves ~30,000 req/s of this kind of app, gunicorn gthread ~7,000, waitress ~2,100, wsgiref ~2,900.
The workers are separate processes; the ring and counters they share live in a memory-mapped state file.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from metrics_ops.config import Settings
from metrics_ops.serve.access import warn_if_exposed
from metrics_ops.serve.handoff import settings_to_json
from metrics_ops.serve.worker import PARENT_ENV, SETTINGS_ENV


class ServeError(Exception):
    """A start-up failure, said in one line; ``exit_code`` 2 when a setting is at fault."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


BACKPRESSURE = 4096  # connections per worker, idle ones included (see run())
READY_TIMEOUT = 60.0  # seconds the workers get to accept a first connection


def settings_env(settings: Settings) -> dict[str, str]:
    """What the workers need in their environment: the effective settings, exactly as this process validated
    them (paths absolute, the link left a link: never resolved to the data file it points at), and this pid."""
    return {SETTINGS_ENV: settings_to_json(settings), PARENT_ENV: str(os.getpid())}


def check_port(host: str, port: int) -> None:
    """Raise a one-line ServeError unless ``host:port`` can be bound now. The host is shown escaped, whatever it
    holds: an error line is one line, and no escape sequence reaches the terminal."""
    from metrics_ops.origins import printable

    shown = printable(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except (TypeError, ValueError) as exc:  # a NUL, or a name the resolver cannot even encode (UnicodeError)
        raise ServeError(f"cannot listen on {shown}:{port}: not an address or a host name ({printable(str(exc))}) "
                         "(--host / METRICS_HOST)", 2) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {shown} is already in use (--port / METRICS_PORT)") from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"no permission to listen on {shown}:{port} (ports below 1024 need root)") from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:  # no such name; not this host's
            raise ServeError(f"cannot listen on {shown}:{port}: {exc.strerror} (--host / METRICS_HOST)", 2) from None
        raise ServeError(f"cannot listen on {shown}:{port}: {exc.strerror}") from None


def preflight(settings: Settings) -> list[Path]:
    """Everything that would make the server fail after it started, checked first: one line each. The checks
    that create nothing come first, so a refused serve leaves nothing behind; returns the directories it made
    (the data directory and missing parents, outermost first) for :func:`undo`."""
    from metrics_ops.store import dir_mode, unusable_dir

    directory = settings.dir
    if unusable_dir(directory) == "is not a directory":
        raise ServeError(f"data directory {directory} is not a directory")
    check_port(settings.host, settings.port)
    made = [p for p in (directory, *directory.absolute().parents) if not os.path.lexists(p)][::-1]
    try:
        directory.mkdir(mode=dir_mode(settings.file_mode_bits), parents=True, exist_ok=True)
    except OSError as exc:
        undo(made)
        raise ServeError(f"cannot create data directory {directory}: {exc.strerror}") from None
    probe = directory / f".metrics-ops.probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        undo(made)
        raise ServeError(f"data directory {directory} is not writable: {exc.strerror}") from None
    return made


def undo(made: list[Path]) -> None:
    """Remove the directories a refused start made (innermost first), if they are still empty."""
    for path in reversed(made):
        try:
            os.rmdir(path)
        except OSError:
            return


def claim_state(settings: Settings, made: list[Path]):
    """The state file, claimed for this server's life; a refusal removes a state file it created."""
    from metrics_ops.serve.shared import SharedState, StateBusy, StateError

    state = SharedState.for_settings(settings)
    existed = os.path.lexists(state.path)
    try:
        state.claim()  # held until this process exits: a second serve on the same file is refused
    except StateBusy as exc:
        undo(made)
        raise ServeError(f"{exc}; stop it first, or give this server its own state file (METRICS_STATE_FILE)"
                         ) from None
    except StateError as exc:
        if not existed:
            try:
                os.unlink(state.path)
            except OSError:
                pass
        undo(made)
        raise ServeError(str(exc), 2 if exc.errno == errno.EEXIST else 1) from None
    return state


def run(settings: Settings, on_ready: Callable[[], object] | None = None) -> None:
    """Start granian in this process with settings.workers workers; returns after SIGTERM/SIGINT.

    ``on_ready`` runs once the port accepts connections (a worker has built the app and listens). Workers that
    exit before that, or keep exiting after it (granian's crash loop), end serve with a ServeError."""
    made = preflight(settings)
    state = claim_state(settings, made)  # noqa: F841  (kept alive: it holds the claim)
    warn_if_exposed(settings)  # one line when other machines can reach the port
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
    _stop_signals_in_starting_workers()
    watch = ReadyWatch(server, settings, on_ready)
    server.on_startup(watch.start)  # granian calls it after binding, before it starts the workers
    try:
        server.serve()
    except SystemExit as exc:  # granian gave up: its workers kept exiting
        if exc.code in (0, None):
            raise
        raise ServeError(watch.failure()) from None
    except Exception as exc:  # granian's ConfigurationError and start-up failures: one line, not a traceback
        raise ServeError(f"the server failed to start: {exc}") from None
    finally:
        watch.stop.set()
    if watch.timed_out:
        raise ServeError(watch.failure())


def _stop_signals_in_starting_workers() -> None:
    """A forked worker exits on SIGTERM or SIGINT until granian installs its own handlers.

    It would otherwise inherit the main process's handler, which only sets a flag in the worker's copy of the
    server: a stop that came while a worker was still building the app (the ready line comes as soon as one
    worker accepts) was swallowed, the worker never stopped, and serve hung in its shutdown. The two signals are
    blocked in the forking thread around fork() and unblocked in the child only once the exit handler is in
    place, so a signal sent at any moment of the fork is delivered to it, never lost. Nothing has been served by
    a worker that exits this way: granian installs its handlers before the worker accepts its first connection.
    """
    global _AT_FORK
    if not _AT_FORK:
        _AT_FORK = True
        os.register_at_fork(before=_block_stop_signals, after_in_parent=_unblock_stop_signals,
                            after_in_child=_exit_on_stop_signals)


_AT_FORK = False
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _block_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _exit_on_stop_signals() -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _exit_now)
    _unblock_stop_signals()


def _exit_now(signum, frame) -> None:
    os._exit(128 + signum)


class ReadyWatch:
    """Connects to the server's port from the main process until a worker accepts, then calls ``on_ready``
    once: a script that waits for the ready line can send at once. Gives up after READY_TIMEOUT seconds,
    stopping the server."""

    def __init__(self, server, settings: Settings, on_ready: Callable[[], object] | None):
        self.server, self.on_ready = server, on_ready
        self.workers, self.port = settings.workers, settings.port
        self.address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
        self.stop, self.ready, self.timed_out = threading.Event(), threading.Event(), False

    def start(self) -> None:
        threading.Thread(target=self._watch, name="metrics-ops-ready", daemon=True).start()

    def _watch(self) -> None:
        import time

        deadline = time.monotonic() + READY_TIMEOUT
        # Only once the workers are forked: a thread that held a lock at fork time would leave it held in the
        # child. Until then this thread only reads the list's length.
        while len(getattr(self.server, "wrks", ())) < self.workers and hasattr(self.server, "wrks"):
            if self.stop.wait(0.005) or time.monotonic() > deadline:
                break
        while not self.stop.is_set():
            if self._accepts():
                self.ready.set()
                if self.on_ready is not None:
                    self.on_ready()
                return
            if time.monotonic() > deadline:
                self.timed_out = True
                self.server.signal_handler_interrupt()  # what SIGTERM does: a graceful stop
                return
            self.stop.wait(0.01)  # not time.sleep: it fails under libfaketime, the tests' fake clock

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=1):
                return True
        except OSError:
            return False

    def failure(self) -> str:
        if self.timed_out:
            return (f"no worker accepted connections on port {self.port} within {READY_TIMEOUT:g} s; "
                    "serve stopped")
        if self.ready.is_set():
            return "the workers kept exiting (see the lines above); serve stopped"
        return "the workers exited before the port accepted connections (see the lines above); nothing was served"
