"""The archive's local side: what this host uploaded (the archive record), and the state of each closed,
compressed file against its object in the bucket (:mod:`metrics_ops.objectstore` talks to the bucket).

The archive record is one small JSON file per uploaded data file, in the hidden directory
``DIR/.metrics-ops.archived/`` (``<file name>.json``: key, sha256, size, etag, time): outside the reading glob
``metrics-*.jsonl*`` and never listed as data by a pass. Each record is replaced atomically (temp file, fsync,
rename), so concurrent writers of different files never meet and a killed writer leaves the old record or the new.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from metrics_ops.layout import ARCHIVED_DIR, fsync_dir, parse_name
from metrics_ops.objectstore import ObjectInfo

_RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class Record:
    """What was uploaded for one local file: the object's key, the sha256 and size of the bytes, the object's
    ETag (without quotes) and the time of the upload (POSIX seconds)."""

    key: str
    sha256: str
    size: int
    etag: str
    time: float

    def matches(self, sha256: str, size: int) -> bool:
        return self.sha256 == sha256 and self.size == size

    def same_object(self, info: ObjectInfo | None) -> bool:
        """Is ``info`` (a HEAD) the object this record describes: same bytes by our metadata?"""
        return info is not None and info.matches(self.sha256, self.size)


def _directory(store) -> Path:
    """The data directory of a :class:`metrics_ops.store.Store` (or the directory itself)."""
    return Path(getattr(store, "dir", store))


def record_dir(store) -> Path:
    """``DIR/.metrics-ops.archived``: where the records live."""
    return _directory(store) / ARCHIVED_DIR


def _record_path(store, name: str) -> Path:
    parsed = parse_name(name)
    if parsed is None or not parsed.gz:
        raise ValueError(f"not a compressed data file name: {name!r}")
    return record_dir(store) / (name + _RECORD_SUFFIX)


def read_record(store, name: str) -> Record | None:
    """The record of local file ``name``, or None (none, or unreadable: then the file counts as not recorded and
    the next archive step looks at the object again)."""
    path = _record_path(store, name)
    try:
        raw = json.loads(path.read_bytes())
        return Record(str(raw["key"]), str(raw["sha256"]), int(raw["size"]), str(raw["etag"]), float(raw["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(store, name: str, info: ObjectInfo, *, now: float | None = None) -> Record:
    """Record that local file ``name`` is the object ``info`` (an upload's or a HEAD's: its sha256 metadata and
    size), atomically. OSError if it cannot be written."""
    if info.sha256 is None:
        raise ValueError(f"object {info.key} carries no sha256: not ours to record")
    record = Record(info.key, info.sha256, info.size, info.etag.strip('"'), time.time() if now is None else now)
    path = _record_path(store, name)
    path.parent.mkdir(mode=0o750, exist_ok=True)
    tmp = path.parent / f".{name}.{os.getpid()}.tmp"
    data = json.dumps(asdict(record), sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path.parent)
    return record


def drop_record(store, name: str) -> None:
    """Forget the record of ``name`` (no error if there is none)."""
    try:
        _record_path(store, name).unlink()
    except FileNotFoundError:
        pass


def recorded_names(store) -> list[str]:
    """The local file names that have a record (whether or not the file is still there)."""
    try:
        names = os.listdir(record_dir(store))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n[: -len(_RECORD_SUFFIX)] for n in names
                  if n.endswith(_RECORD_SUFFIX) and not n.startswith(".") and parse_name(n[: -len(_RECORD_SUFFIX)]))
