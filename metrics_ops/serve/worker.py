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


#: seconds a worker gets to finish its graceful stop after SIGTERM/SIGINT before it exits on its own
STOP_GRACE = 10.0


def guard_stop_signals() -> None:
    """A worker always ends within STOP_GRACE seconds of a stop signal.

    granian's worker installs its signal handler, then registers the callback that ends its main loop: a signal
    that falls between the two stops the server core but never the loop, and the worker (and serve, waiting for
    it) hung; seen about once in 30 stops sent right after the ready line. Wrapped here, before granian's worker
    calls it: once a stop signal has come, a watchdog thread ends the worker STOP_GRACE seconds later if the
    graceful stop has not (it takes milliseconds). The signals are blocked while the handlers are replaced, so
    none falls between granian's handler and this one."""
    try:
        import granian._signals as signals
    except ImportError:
        return
    original = getattr(signals, "set_sync_signals", None)
    if original is None or getattr(original, "_metrics_ops", False):
        return
    import threading

    started = threading.Lock()

    def exit_after_grace() -> None:
        if started.acquire(blocking=False):
            def watch() -> None:
                threading.Event().wait(STOP_GRACE)  # not time.sleep: it fails under libfaketime
                os._exit(0)

            threading.Thread(target=watch, name="metrics-ops-stop-grace", daemon=True).start()

    def set_sync_signals(*args, **kwargs):
        stops = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            event = original(*args, **kwargs)
            for sig in stops:
                inner = signal.getsignal(sig)

                def handler(signum, frame, inner=inner):
                    exit_after_grace()
                    if callable(inner):
                        inner(signum, frame)

                signal.signal(sig, handler)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return event

    set_sync_signals._metrics_ops = True
    signals.set_sync_signals = set_sync_signals
