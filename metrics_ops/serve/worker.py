"""What each worker process of `metrics-ops serve` does as it starts: log lines to stderr, and end with the
server's main process."""

from __future__ import annotations

import logging
import os
import signal
import sys

#: set by :func:`metrics_ops.serve.runner.run` for its workers: the pid whose death must end them
PARENT_ENV = "METRICS_SERVE_PARENT_PID"
#: ... and the settings it validated (:mod:`metrics_ops.serve.handoff`): a worker looks nothing up
SETTINGS_ENV = "METRICS_SERVE_SETTINGS"


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
    parent = os.environ.get(PARENT_ENV)
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
