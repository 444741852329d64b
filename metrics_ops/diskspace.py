"""Free space on the data directory's file system: one statvfs reading, and serve's hard floor.

serve never fills the file system to the last byte: below ``serve_min_free_mb`` it stops appending (202
``stored: 0``, counted) and ``/healthz`` says why, so gzip's temp files, the state file and the maintenance pass
keep room to work. :class:`SpaceFloor` asks the kernel at most every ``every`` seconds (a statvfs per event
would cost throughput); the clock is injectable, so tests need no waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024
CHECK_SECONDS = 0.25  # how stale serve's view of free space may be


@dataclass(frozen=True)
class DiskUsage:
    """One statvfs reading: bytes an unprivileged writer may still use, and the file system's size."""

    free: int
    total: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0


def disk_usage(path: str | os.PathLike) -> DiskUsage:
    """The file system holding ``path`` (f_bavail: what a non-root writer may use; root's reserve excluded)."""
    st = os.statvfs(path)
    return DiskUsage(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def readable(n: int | float | None) -> str:
    """Bytes for messages, in the unit a person reads them in (1024 steps): 900 bytes, 20.0 KiB, 63.9 MiB,
    1.2 GiB. A 20 KB budget is "20.0 KiB", not "0.0 MiB"."""
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{int(n)} bytes" if int(n) != 1 else "1 byte"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


mib = readable  # the former name (it printed MiB whatever the size)


class SpaceFloor:
    """serve's free-space floor. :meth:`reason` is None while at least ``floor`` bytes are free, else why not.

    ``floor`` 0 switches the check off. A statvfs that fails (the directory went away) is not this class's
    concern: the append fails on its own and is counted as a write error.
    """

    def __init__(self, path: str | os.PathLike, floor: int, *, clock: Callable[[], float] = time.monotonic,
                 every: float = CHECK_SECONDS, usage: Callable[[str | os.PathLike], DiskUsage] = disk_usage):
        self.path, self.floor, self.clock, self.every, self._usage = path, floor, clock, every, usage
        self._checked = -float("inf")
        self._reason: str | None = None

    def reason(self) -> str | None:
        if self.floor <= 0:
            return None
        now = self.clock()
        if now - self._checked >= self.every:
            self._checked = now
            try:
                free = self._usage(self.path).free
            except OSError:
                self._reason = None
            else:
                self._reason = (None if free >= self.floor else
                                f"free space on the data directory's file system is {readable(free)}, under serve's "
                                f"floor of {readable(self.floor)} (METRICS_SERVE_MIN_FREE_MB): events are not stored "
                                "until space returns")
        return self._reason
