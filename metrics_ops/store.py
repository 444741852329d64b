"""The data directory as one object: :class:`Store`, a facade over the modules that own each part.

- :mod:`metrics_ops.layout`: file names, the day of a file, the current target, the listing, the link;
- :mod:`metrics_ops.writer`: the append contract (serve's open file);
- :mod:`metrics_ops.archive`: compression, reconciliation, reading archives, rewriting a file atomically;
- :mod:`metrics_ops.locks`: the flock helpers and :class:`LockBusy`.

The names below are re-exported so that ``from metrics_ops.store import ...`` keeps working.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from metrics_ops import archive, layout
from metrics_ops.archive import Rewrite, UnreadableFile
from metrics_ops.changes import CHANGES_NAME
from metrics_ops.layout import (
    ASIDE_SUFFIX,
    DEFAULT_FILE_MODE,
    FORGET_SUFFIX,
    LINK_LOCK_NAME,
    LINK_LOCK_TIMEOUT,
    LOCK_NAME,
    PREFIX,
    RESERVED_NAMES,
    STATE_NAME,
    TEMP_SUFFIX,
    DataFile,
    Listing,
    StoreError,
    aside_day,
    day_bounds,
    day_of,
    dir_mode,
    file_name,
    is_old_name,
    parse_name,
    unusable_dir,
)
from metrics_ops.locks import LockBusy, flock_path
from metrics_ops.writer import SHARD_CHECK_SECONDS, Writer

__all__ = [
    "ASIDE_SUFFIX", "CHANGES_NAME", "DEFAULT_FILE_MODE", "FORGET_SUFFIX", "LINK_LOCK_NAME", "LINK_LOCK_TIMEOUT",
    "LOCK_NAME", "PREFIX", "RESERVED_NAMES", "SHARD_CHECK_SECONDS", "STATE_NAME", "TEMP_SUFFIX",
    "DataFile", "Listing", "LockBusy", "Store", "StoreError", "UnreadableFile", "aside_day", "day_bounds",
    "day_of", "dir_mode", "file_name", "flock_path", "is_old_name", "parse_name",
]


class Store:
    """The data directory. One instance per process; :meth:`append` keeps the current file open."""

    def __init__(self, directory: str | os.PathLike, zone: ZoneInfo, *, link: str | os.PathLike | None = None,
                 max_bytes: int | None = None, clock: Callable[[], float] = time.time,
                 file_mode: int = DEFAULT_FILE_MODE, link_lock_timeout: float = LINK_LOCK_TIMEOUT):
        self.dir = Path(directory)
        self.zone = zone
        self.link = Path(link) if link is not None else self.dir / "metrics.jsonl"
        self.clock = clock
        self.file_mode = file_mode
        self.link_lock_timeout = link_lock_timeout
        self._writer = Writer(self.dir, zone, max_bytes=max_bytes, file_mode=file_mode,
                              on_new_file=self._link_quietly)

    @property
    def max_bytes(self) -> int | None:
        """The shard size: one value for the writer and for rotate's plan (the writer owns it)."""
        return self._writer.max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int | None) -> None:
        self._writer.max_bytes = value

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], float] = time.time) -> Store:
        return cls(settings.dir, settings.zone, link=settings.link_path, max_bytes=settings.max_bytes, clock=clock,
                   file_mode=settings.file_mode_bits)

    # ----------------------------------------------------------------- reading the directory
    def scan(self) -> Listing:
        return layout.scan(self.dir, self.link)

    def today(self, now: float | None = None) -> date:
        return day_of(self.clock() if now is None else now, self.zone)

    def current_target(self, day: date, names: list[str] | None = None) -> str:
        """The file writers append to on ``day``: the highest shard of that day (an archived one is skipped)."""
        return layout.current_target(self.dir, day, names)

    def current_file(self, now: float | None = None) -> str:
        """The name appends at ``now`` go to (cheap while this process's open file is still current)."""
        now = self.clock() if now is None else now
        return self._writer.open_name(now) or self.current_target(day_of(now, self.zone))

    def size_of(self, name: str) -> int:
        return layout.size_of(self.dir, name)

    def unusable(self) -> str | None:
        """Why the data directory cannot be used, as "data directory DIR does not exist" (None: it can)."""
        why = unusable_dir(self.dir)
        return None if why is None else f"data directory {self.dir} {why}"

    def held_for_writing(self, name: str) -> bool:
        """Whether any process holds ``name`` open for writing (see :func:`metrics_ops.layout.held_for_writing`)."""
        return layout.held_for_writing(self.dir, name)

    # ----------------------------------------------------------------- files and the link
    def make_dir(self) -> None:
        layout.make_dir(self.dir, self.file_mode)

    def create(self, name: str) -> None:
        layout.create(self.dir, name, self.file_mode)

    def remove_temp(self, name: str) -> int:
        return layout.remove_temp(self.dir, name)

    def delete(self, name: str) -> int:
        return layout.delete(self.dir, name)

    def point_link(self, name: str, *, forward_only: bool = True) -> tuple[bool, str | None]:
        """Point the link at ``name``, adopting a legacy regular file first (:func:`metrics_ops.layout.point_link`);
        raises :class:`LockBusy` when another process holds the link lock ``link_lock_timeout`` seconds."""
        return layout.point_link(self.dir, self.link, name, zone=self.zone, clock=self.clock,
                                 forward_only=forward_only, timeout=self.link_lock_timeout)

    def _link_quietly(self, name: str) -> None:
        try:
            self.point_link(name)
        except (OSError, LockBusy):
            pass  # the link is a convenience for external readers; rotate repairs it

    # ----------------------------------------------------------------- appending
    def append(self, line: bytes, now: float | None = None) -> str:
        """Append one complete line (or several, in one write: a batch) to the current file of the receive day
        (:meth:`metrics_ops.writer.Writer.append`); return its name."""
        return self._writer.append(line, self.clock() if now is None else now)

    def close(self) -> None:
        self._writer.close()

    # ----------------------------------------------------------------- archives
    def compress(self, name: str, level: int = 6, *, threads: int = 2,
                 progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        return archive.compress(self.dir, name, level, threads=threads, progress=progress)

    def finish_compress(self, name: str, level: int = 6) -> tuple[str, int, int]:
        return archive.finish_compress(self.dir, name, level)

    def search(self, name: str, keep: Callable[[bytes], bool]) -> tuple[int, str | None]:
        return archive.search(self.dir, name, keep)

    def rewrite_without(self, name: str, keep: Callable[[bytes], bool], level: int = 6, *, dry_run: bool = False,
                        touches: Callable[[bytes], bool] | None = None) -> Rewrite:
        return archive.rewrite_without(self.dir, name, keep, level, dry_run=dry_run, touches=touches)

    def rename_aside(self, name: str) -> str:
        return archive.rename_aside(self.dir, name)
