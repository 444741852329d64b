"""Import target for any WSGI server: ``metrics_ops.wsgi:app``.

    granian --interface wsgi --workers 2 metrics_ops.wsgi:app
    gunicorn -w 2 metrics_ops.wsgi:app

Settings come from the environment, .env and METRICS_CONFIG as for every command. All worker processes of one
server share the ring and counters through METRICS_STATE_FILE (default DIR/.metrics-ops.state).
"""

from __future__ import annotations

import os
import signal
import sys

if os.environ.get("METRICS_SERVE_PARENT_PID"):
    # A granian worker inherits the main process's SIGTERM handler, which only sets a flag in the main process's
    # copy of the server, until the worker installs its own after this module is loaded: a stop signal in that
    # window was swallowed and the server never exited. Until then, the default action (exit) is right: this
    # worker has taken no request yet. Done first, before the imports that make up most of a worker's start.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import logging  # noqa: E402

from metrics_ops.config import ConfigError, load_settings  # noqa: E402
from metrics_ops.ingest import make_app  # noqa: E402


def configure_logging(level: str) -> None:
    """metrics_ops.* loggers -> stderr, one line each; the access logger speaks at INFO."""
    logger = logging.getLogger("metrics_ops")
    if not any(getattr(h, "_metrics_ops", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%Y-%m-%dT%H:%M:%S%z"))
        handler._metrics_ops = True
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def die_with_parent() -> None:
    """A worker of `metrics-ops serve` ends when the server's main process dies, even by SIGKILL: otherwise
    orphaned workers keep the port and the next serve fails with "port in use". prctl(PR_SET_PDEATHSIG) asks
    Linux for a SIGTERM at once (graceful: requests in flight finish); a watchdog thread that checks the parent
    twice a second covers a signal lost while the worker was still starting, and other systems."""
    parent = os.environ.get("METRICS_SERVE_PARENT_PID")
    if not parent:
        return
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        pause = threading.Event().wait  # not time.sleep: it fails under libfaketime, the tests' fake clock
        while str(os.getppid()) == parent:
            pause(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        pause(5)
        os._exit(0)  # the graceful stop did not finish

    threading.Thread(target=watch, name="metrics-ops-parent-watch", daemon=True).start()


def build_app():
    die_with_parent()
    try:
        settings = load_settings(config_file=os.environ.get("METRICS_CONFIG") or None)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"metrics-ops: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    return make_app(settings)


app = build_app()
