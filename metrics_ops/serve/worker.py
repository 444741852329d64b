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
    """A stop signal always reaches a worker's main thread, and the worker ends within STOP_GRACE seconds of it.

    granian's worker waits for its stop in the main thread, in a lock wait with no timeout, and its signal handler
    (Python's, so the main thread runs it) is what ends that wait. The kernel may deliver a process's SIGTERM to
    any of its threads, one of granian's Rust threads included: the handler was then due but the main thread
    never woke to run it, and the worker (and serve, waiting for it) hung; seen about once in 100 stops under
    load. So the signals also wake a watch thread (Python's wakeup fd), which pokes the main thread with a
    signal of its own (SIGWINCH, handled by doing nothing): the main thread wakes, and runs the due handler.
    And once a stop signal has been handled, a second watchdog ends the worker STOP_GRACE seconds later if the
    graceful stop has not (it takes milliseconds). Installed around granian's own ``set_sync_signals``, before
    its worker calls it; the stop signals are blocked meanwhile, so none falls between two handlers."""
    try:
        import granian._signals as signals
    except ImportError:
        return
    original = getattr(signals, "set_sync_signals", None)
    if original is None or getattr(original, "_metrics_ops", False):
        return
    import threading

    started = threading.Lock()
    stops = {signal.SIGTERM, signal.SIGINT}

    def exit_after_grace() -> None:
        if started.acquire(blocking=False):
            def watch() -> None:
                threading.Event().wait(STOP_GRACE)  # not time.sleep: it fails under libfaketime
                os._exit(0)

            threading.Thread(target=watch, name="metrics-ops-stop-grace", daemon=True).start()

    def wake_main_on_stop(read_fd: int, main: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # this thread never takes a stop signal itself
        while True:
            try:
                got = os.read(read_fd, 64)
            except InterruptedError:
                continue
            except OSError:
                return
            if not got:
                return
            if any(b in (signal.SIGTERM, signal.SIGINT) for b in got):
                signal.pthread_kill(main, signal.SIGWINCH)

    def set_sync_signals(*args, **kwargs):
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
            signal.signal(signal.SIGWINCH, lambda signum, frame: None)
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            threading.Thread(target=wake_main_on_stop, args=(read_fd, threading.get_ident()),
                             name="metrics-ops-stop-wake", daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return event

    set_sync_signals._metrics_ops = True
    signals.set_sync_signals = set_sync_signals
