"""What the data directory holds, by state: counts and bytes of plain files, archives, shards, archives set
aside and rollups (``DIR/rollups/``), the days present. One ``lstat`` per file and no file opened: a year of
files takes milliseconds. The budget, the health textfile and ``metrics-ops status`` read the directory through
here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date

from metrics_ops.layout import Listing, aside_day


def measure(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """name -> (size, bytes allocated on disk) for the names that exist; symlinks are never followed."""
    sizes = {}
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:  # relative to the directory's descriptor: no path joined or walked per file
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            sizes[name] = (st.st_size, st.st_blocks * 512)
    finally:
        os.close(fd)
    return sizes


def rollup_sizes(directory: str | os.PathLike) -> dict[str, tuple[date, int, int]]:
    """Rollup name -> (its day, size, bytes allocated on disk), for the rollups in ``DIR/rollups``. Nothing when
    that is missing or is not a real directory: a symlink there is never followed (it is not the tool's)."""
    from metrics_ops.layout import ROLLUP_DIR
    from metrics_ops.rollups import day_of_rollup

    try:
        top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        fd = os.open(ROLLUP_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
    except OSError:  # missing, a file, a symlink (ELOOP / ENOTDIR)
        return {}
    finally:
        os.close(top)
    sizes = {}
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                day = day_of_rollup(entry.name)
                if day is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    sizes[entry.name] = (day, st.st_size, st.st_blocks * 512)
    finally:
        os.close(fd)
    return sizes


@dataclass
class Inventory:
    plain_files: int = 0
    plain_bytes: int = 0
    archived_files: int = 0
    archived_bytes: int = 0
    shard_files: int = 0  # files with a shard number (.1, .2, ...), plain or archived; counted in the two above
    aside_files: int = 0  # archives set aside as unreadable (.gz.corrupt)
    aside_bytes: int = 0
    rollup_files: int = 0  # DIR/rollups/rollup-DAY.json: counted by the disk budget, not among the days
    rollup_bytes: int = 0
    days: list[date] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """What the disk budget's max_total_mb weighs: data files and rollups."""
        return self.plain_bytes + self.archived_bytes + self.aside_bytes + self.rollup_bytes

    @property
    def oldest(self) -> date | None:
        return self.days[0] if self.days else None

    @property
    def newest(self) -> date | None:
        return self.days[-1] if self.days else None

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["days"] = len(self.days)
        doc.update(total_bytes=self.total_bytes, oldest=self.oldest, newest=self.newest)
        return doc


def take_inventory(directory: str | os.PathLike, listing: Listing) -> Inventory:
    inv = Inventory()
    sizes = measure(directory, [f.name for f in listing.files] + listing.aside)
    days = set()
    for f in listing.files:
        if f.name not in sizes:
            continue  # deleted since the scan
        size = sizes[f.name][0]
        days.add(f.day)
        inv.shard_files += f.shard > 0
        if f.gz:
            inv.archived_files += 1
            inv.archived_bytes += size
        else:
            inv.plain_files += 1
            inv.plain_bytes += size
    for name in listing.aside:
        if name in sizes:
            inv.aside_files += 1
            inv.aside_bytes += sizes[name][0]
            days.add(aside_day(name))
    rollups = rollup_sizes(directory)
    inv.rollup_files, inv.rollup_bytes = len(rollups), sum(size for _day, size, _blocks in rollups.values())
    inv.days = sorted(days)
    return inv
