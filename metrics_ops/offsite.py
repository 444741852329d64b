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
import stat
import time
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

from metrics_ops.layout import ARCHIVED_DIR, DataFile, fsync_dir, parse_name
from metrics_ops.objectstore import (
    ArchiveError,
    Boto3Missing,
    Bucket,
    ClockSkewed,
    Location,
    ObjectInfo,
    file_digest,
    object_key,
)

_RECORD_SUFFIX = ".json"
#: seconds status waits for a reply of the bucket (a pass waits objectstore.READ_TIMEOUT, 3 times)
QUICK_READ_TIMEOUT = 10
#: a record is a few hundred bytes; anything larger is not one of ours
_RECORD_MAX = 64 * 1024


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
        # never through a symlink, never a FIFO or a device (a record is a small regular file we wrote)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _RECORD_MAX:
                return None
            data = os.read(fd, _RECORD_MAX + 1)
        finally:
            os.close(fd)
        raw = json.loads(data)
        return Record(str(raw["key"]), str(raw["sha256"]), int(raw["size"]), str(raw["etag"]), float(raw["time"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
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


def damage(path: Path) -> str | None:
    """Why the compressed file ``path`` cannot be read whole (empty, truncated, corrupt), or None: read through
    once, in constant memory. A file that changed since its upload is uploaded over its object only when whole:
    a disk that damages a file must not reach the archive, its good copy."""
    from metrics_ops.lines import inflated

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size == 0:
            return "empty (0 bytes)"
        reader = inflated(fd)
        while True:
            try:
                next(reader)
            except StopIteration as stop:
                return stop.value
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------- states
class State(StrEnum):
    """Where a closed, compressed local file stands against its object (str-valued: ``--json`` prints it)."""

    NEW = "new"  # no object: upload it (If-None-Match: *)
    ADOPT = "adopt"  # the object holds these very bytes but no record says so (a reply lost after a PUT): record
    ARCHIVED = "archived"  # record == local == object: prune and the budget may delete the local file
    CHANGED = "changed"  # the local file changed since its upload, the object did not: upload again (If-Match)
    FORGOTTEN = "forgotten"  # forget on another host rewrote our object: replace the local file with it
    CONFLICT = "conflict"  # the object changed behind our back: the local file is kept, never uploaded over
    UNREACHABLE = "unreachable"  # the bucket could not be asked: not archived, as far as we know


#: the states in which a local file waits for the archive (ARCHIVED does not; CONFLICT is counted on its own)
WAITING = frozenset({State.NEW, State.ADOPT, State.CHANGED, State.FORGOTTEN, State.UNREACHABLE})


@dataclass
class FileState:
    """One local file against its object."""

    name: str
    key: str
    state: State
    sha256: str
    size: int
    record: Record | None = None
    obj: ObjectInfo | None = None
    why: str = ""


def judge(name: str, key: str, sha256: str, size: int, record: Record | None, obj: ObjectInfo | None) -> FileState:
    """The state of local file ``name`` (``sha256``, ``size``) from its record and its object's HEAD (None: no
    object) -- contract point 4, and: an object deleted behind our back is simply uploaded again."""
    state = FileState(name, key, State.NEW, sha256, size, record, obj)
    if record is not None and record.key != key:
        state.state = State.CONFLICT
        state.why = (f"conflict: archived as {record.key}, not {key} (host_id or archive_url changed?): kept and "
                     "not uploaded again, which would count it twice; set host_id (or archive_url) back, or delete "
                     f"its record {ARCHIVED_DIR}/{name}{_RECORD_SUFFIX} to archive it anew under the new key")
        return state
    if obj is None:
        state.why = "not in the archive yet" if record is None else "its object is gone: uploaded again"
        return state
    if obj.matches(sha256, size):
        exact = record is not None and record.matches(sha256, size) and record.etag == obj.etag
        state.state = State.ARCHIVED if exact else State.ADOPT
        state.why = "archived" if exact else "already in the archive (a reply lost after the upload?)"
        return state
    if record is not None and record.same_object(obj):  # the object is still what we uploaded; the file changed
        state.state, state.why = State.CHANGED, "changed since its upload (a late writer, a forget)"
        return state
    was = record.sha256 if record is not None else sha256
    if obj.forgotten(was) and (record is None or record.matches(sha256, size)):
        state.state, state.why = State.FORGOTTEN, "forget on another host rewrote its object"
        return state
    state.state = State.CONFLICT
    found = f"sha256 {obj.sha256}, {obj.size} bytes" if obj.sha256 else f"{obj.size} bytes not written by metrics-ops"
    state.why = (f"conflict: its object {key} changed behind our back ({found}; this file has sha256 {sha256}, "
                 f"{size} bytes): kept and never uploaded over; another host with the same host_id?")
    return state


# ----------------------------------------------------------------------------------------------- one pass's view
class Archive:
    """The archive as one pass sees it: the bucket (opened on first use), this host's id, ``retention``
    (archive_retention days) and the state of every file looked at, so that prune and the budget judge by what
    the archive step found and did. The first failure to ask the bucket (unreachable, refused) is kept in
    :attr:`unreachable`: from then on every file counts as not archived, without asking again."""

    def __init__(self, location: Location, host_id: str, retention: int, *, bucket: Bucket | None = None):
        self.location, self.host_id, self.retention = location, host_id, retention
        self._bucket = bucket
        self.states: dict[str, FileState] = {}
        self.unreachable: str | None = None
        self.skewed: str | None = None  # the bucket said this host's clock is wrong: no day's age is trusted
        self._asked = False

    @classmethod
    def from_settings(cls, settings, *, quick: bool = False) -> Archive | None:
        """``quick``: for a command that only looks (status): a bucket that does not answer within a few seconds
        counts as unreachable at once, instead of after 3 tries of a 60 s read timeout."""
        location = settings.archive_location
        if location is None:
            return None
        bucket = Bucket(location, connect_timeout=3, read_timeout=QUICK_READ_TIMEOUT, attempts=1) if quick else None
        return cls(location, settings.host_id, settings.archive_retention, bucket=bucket)

    @property
    def url(self) -> str:
        return self.location.url

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = Bucket(self.location)
        return self._bucket

    def key(self, f: DataFile) -> str:
        return object_key(self.location, f.day, self.host_id, f.name)

    def expired(self, f: DataFile, today: date) -> bool:
        """Is ``f``'s day at least archive_retention days old (no archive keeps it: never uploaded)?"""
        return (today - f.day).days >= self.retention

    def classify(self, directory: Path, f: DataFile, *, again: bool = False) -> FileState:
        """The state of the compressed file ``f`` (digest, record, HEAD); cached for the pass unless ``again``."""
        if not again and f.name in self.states:
            return self.states[f.name]
        sha256, size = file_digest(Path(directory) / f.name)
        key = self.key(f)
        record = read_record(directory, f.name)
        if self.unreachable is not None:
            state = FileState(f.name, key, State.UNREACHABLE, sha256, size, record, why=self.unreachable)
        else:
            try:
                state = judge(f.name, key, sha256, size, record, self._head(key))
            except ArchiveError:
                state = FileState(f.name, key, State.UNREACHABLE, sha256, size, record, why=self.unreachable)
        self.states[f.name] = state
        return state

    def _head(self, key: str) -> ObjectInfo | None:
        """HEAD ``key``; the first failure is kept in :attr:`unreachable` (and :attr:`skewed` when the bucket
        refused this host's clock) and raised."""
        self._asked = True
        try:
            return self.bucket.head(key)
        except ArchiveError as exc:
            self.failed(exc)
            raise

    def failed(self, exc: ArchiveError) -> None:
        """The bucket could not be asked: every file counts as not archived from now on."""
        self.unreachable = str(exc)
        if isinstance(exc, ClockSkewed):
            self.skewed = str(exc)

    def mark(self, name: str, info: ObjectInfo, sha256: str, size: int, directory: Path) -> None:
        """``name`` is archived now as ``info``: record it."""
        record = write_record(directory, name, info)
        self.states[name] = FileState(name, info.key, State.ARCHIVED, sha256, size, record, info, "archived")

    def why_kept(self, directory: Path, f: DataFile, today: date) -> str | None:
        """Why prune or the budget must keep data file ``f`` (None: it may go). Only a file whose object exists
        and matches (size and sha256) may go, or one past archive_retention (no archive keeps its day)."""
        if self.expired(f, today):
            if not self._asked and self.unreachable is None:  # a clock years ahead makes every day look expired
                try:
                    self._head(self.key(f))
                except ArchiveError:
                    pass
            if self.skewed is not None:
                return (f"kept: the archive refused this host's clock ({self.skewed}): no day's age can be "
                        "trusted; set the clock right")
            return None
        if not f.gz:
            return f"not archived: compressed and archived first ({self.url})"
        try:
            state = self.classify(directory, f)
        except OSError as exc:
            return f"not archived: cannot read it: {exc.strerror or exc}"
        if state.state == State.ARCHIVED:
            return None
        if state.state == State.UNREACHABLE:
            return f"not archived: the archive {self.url} cannot be reached"
        if state.state == State.CONFLICT:
            return "not archived: " + state.why
        return f"not archived yet in {self.url} ({state.why})"

    def backlog(self, directory: Path, files: list[DataFile], today: date) -> dict:
        """What waits for the archive among the closed, compressed ``files`` (those past archive_retention
        aside): ``waiting_files``, ``waiting_days``, ``conflicts``, ``archived_files``, ``oldest_waiting_day``."""
        waiting, conflicts, archived = [], 0, 0
        for f in files:
            if not f.gz or f.day >= today or self.expired(f, today):
                continue
            state = self.states.get(f.name)
            if state is None:
                try:
                    state = self.classify(directory, f)
                except OSError:
                    waiting.append(f.day)
                    continue
            if state.state == State.ARCHIVED:
                archived += 1
            elif state.state == State.CONFLICT:
                conflicts += 1
            else:
                waiting.append(f.day)
        return {"url": self.url, "host_id": self.host_id, "waiting_files": len(waiting),
                "waiting_days": len(set(waiting)), "conflicts": conflicts, "archived_files": archived,
                "oldest_waiting_day": min(waiting).isoformat() if waiting else None,
                "error": self.unreachable}


def require_archive_retention(settings) -> None:
    """With archive_url set, archive_retention must be at least retention: prune deletes a local file only once it
    is archived, so an archive that drops a day before retention does would have every pass upload it again
    (ConfigError, one line, exit 2)."""
    from metrics_ops.config import ConfigError, origins_of

    if settings.archive_url is not None and settings.archive_retention < settings.retention:
        origins = origins_of(settings)
        parts = [origins[f].describe(getattr(settings, f)) for f in ("archive_retention", "retention")]
        raise ConfigError([f"{' with '.join(parts)}: archive_retention is less than retention: the archive would "
                           "drop days that prune keeps until they are archived"])


def require_boto3() -> None:
    """Boto3Missing (exit 2, one line) when the optional S3 client is not installed."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise Boto3Missing() from None
