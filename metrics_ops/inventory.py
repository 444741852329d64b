"""What the data directory holds, by state: counts and bytes of plain files, archives, shards and archives set
aside, the days present. One ``lstat`` per data file and no file opened: a year of files takes milliseconds.
The budget, the health textfile and ``metrics-ops status`` read the directory through here.
"""

from __future__ import annotations

import os
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


@dataclass
class Inventory:
    plain_files: int = 0
    plain_bytes: int = 0
    archived_files: int = 0
    archived_bytes: int = 0
    shard_files: int = 0  # files with a shard number (.1, .2, ...), plain or archived; counted in the two above
    aside_files: int = 0  # archives set aside as unreadable (.gz.corrupt)
    aside_bytes: int = 0
    days: list[date] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.plain_bytes + self.archived_bytes + self.aside_bytes

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
    inv.days = sorted(days)
    return inv
