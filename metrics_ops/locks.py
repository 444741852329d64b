"""Locks on files in the data directory: one maintenance pass at a time, one link swap at a time.

A lock that stays busy raises :class:`LockBusy`, which names the lock file and the wait and nothing else: the
maintenance lock and the link lock raise the same error, and each caller says what it means for its user.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC  # no file of the tool is ever opened through a symlink

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def this_pid() -> int:
    """This process's id, as os.getpid() gives it, without its system call: 0.7 us on a virtual machine, and
    serve's hot path asks twice per event whether it still is the process that opened its file and mapped its
    ring (a forked worker must not use its parent's). Kept here, refreshed in the child of every fork
    (granian's workers are forked by multiprocessing, through os.fork)."""
    return _pid


class LockBusy(Exception):
    """Another process held the lock on ``path`` for the whole ``waited`` seconds."""

    def __init__(self, path: Path, waited: float):
        super().__init__(f"{path} is locked by another process (waited {waited:g} s)")
        self.path = path
        self.waited = waited


def pause(seconds: float) -> None:
    """time.sleep, but by a timed wait: under libfaketime (the tests' fake clock) time.sleep fails with EINVAL."""
    threading.Event().wait(seconds)


@contextmanager
def flock_path(path: Path, timeout: float, *, sleep: Callable[[float], None] = pause,
               clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting up to ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o600)
    try:
        deadline = clock() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise LockBusy(path, timeout) from None
                sleep(min(0.05, max(0.0, deadline - clock())))
        yield
    finally:
        os.close(fd)
