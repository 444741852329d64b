"""The data directory's change counter: how a writer notices on every append, without a system call, that its
file was unlinked or replaced.

Every process that unlinks or replaces a data file (compress, reconcile, delete, forget's rewrite) first adds one
to a counter in ``DIR/.metrics-ops.changes`` while it holds that file's exclusive flock. A writer holds the
file's shared flock while it appends, so it reads the counter (a load from a shared mapping) after any such
change: when the counter moved, it calls ``fstat()`` and reopens if its file is gone; when it did not, its file
cannot have been touched by a pass of this tool. Measured: an ``fstat()`` on every append cost about 25 % of
serve's throughput (each system call hands the GIL back and forth with granian's threads); a memory load
costs nothing. Files deleted by other tools (``rm``, logrotate) are still noticed: a writer calls ``fstat()``
at least every :data:`RECHECK_SECONDS` whatever the counter says.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from metrics_ops.locks import OPEN_FLAGS

CHANGES_NAME = ".metrics-ops.changes"
RECHECK_SECONDS = 0.1
_COUNTER = struct.Struct("=Q")


def record_change(directory: Path) -> None:
    """Count one unlink or replacement of a data file in ``directory``. Call it while holding that file's
    exclusive flock and before changing anything: if it cannot be counted, nothing must change (OSError)."""
    try:
        fd = os.open(directory / CHANGES_NAME, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o644)
        try:
            raw = os.pread(fd, _COUNTER.size, 0)
            value = _COUNTER.unpack(raw)[0] if len(raw) == _COUNTER.size else 0
            if os.pwrite(fd, _COUNTER.pack((value + 1) & 0xFFFF_FFFF_FFFF_FFFF), 0) != _COUNTER.size:
                raise OSError(28, os.strerror(28))
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno or 5, f"cannot count the change in {directory / CHANGES_NAME}: "
                                      f"{exc.strerror or exc}; nothing was changed") from None


class ChangeCounter:
    """A writer's read-only view of the counter. ``attach()`` maps it (the writer calls it when it opens a file;
    the mapping stays valid in forked children); ``value()`` is a memory load, or None when the file cannot be
    mapped (then the writer calls fstat() on every append, as safe as before and slower)."""

    def __init__(self, directory: Path):
        self.path = directory / CHANGES_NAME
        self._view: memoryview | None = None
        self._map: mmap.mmap | None = None

    def value(self) -> int | None:
        return self._view[0] if self._view is not None else None

    def attach(self) -> None:
        if self._view is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o644)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.posix_fallocate(fd, 0, _COUNTER.size)  # the block exists: a count on a full disk cannot fail
            self._map = mmap.mmap(fd, _COUNTER.size, prot=mmap.PROT_READ)
            self._view = memoryview(self._map).cast("Q")
        except (OSError, ValueError):
            self._view, self._map = None, None
        finally:
            os.close(fd)
