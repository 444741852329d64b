"""Erasure across hosts: with ``archive_url`` set, forget reaches every archived object of every host.

After the local rewrite (:func:`metrics_ops.forget.run_forget`), the archive's prefix is listed once and every
object in the layout (``day=.../host=.../<file>``: every day, every host) is searched, streamed and never held
whole, with the local rule and reader: :class:`metrics_ops.archive.LineFilter` over
:func:`metrics_ops.lines.stream_blocks` (a line over 1 MiB is copied as it is and named when it holds an id's
text, as locally). An object holding lines to remove is read a second time (same ETag, ``If-Match``) into a
filtered temporary file in ``$TMPDIR``, which replaces the object with ``If-Match`` on the ETag read and the
metadata ``forgotten-from`` = the sha256 of the replaced bytes; the upload is verified (size, sha256,
forgotten-from). An object that changed meanwhile (412) is searched again from a fresh read, at most
:data:`ATTEMPTS` times. This host's own object of a local file forget has just rewritten, when the object is
what the archive record says was uploaded, becomes the local file itself (uploaded with ``If-Match``) and the
record is updated (:mod:`metrics_ops.offsite`): the local file and its object stay one file.

Everything not rewritten (an object that kept changing, a damaged or unreadable object, an unreachable bucket)
is one line in the result's errors: forget exits 1, and what was rewritten stays rewritten. Other hosts replace
their local copy of an object carrying ``forgotten-from`` on their next pass, which recounts that day's rollup.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from metrics_ops.archive import LineFilter
from metrics_ops.lines import MAX_LINE_TEXT, inflated, raw, stream_blocks
from metrics_ops.objectstore import (
    FORGOTTEN_CHAIN,
    META_FORGOTTEN_FROM,
    ArchiveError,
    Bucket,
    ObjectInfo,
    ObjectMissing,
    PreconditionFailed,
    file_digest,
    parse_key,
)

#: how many times an object that changed under a rewrite (HTTP 412) is searched again from a fresh read
ATTEMPTS = 3
#: objects searched at a time (downloads overlap; decompression releases the GIL)
WORKERS = 4
#: failures in a row (not a damaged object) after which the bucket counts as unreachable: the rest is not searched
GIVE_UP_AFTER = 3

REWRITTEN, REPLACED, PLANNED, NOT_REWRITTEN, GONE = "rewritten", "replaced", "planned", "not-rewritten", "gone"


@dataclass
class ObjectErasure:
    """What became of one object that held these visitors' lines (or could not be searched)."""

    key: str
    host: str
    day: str
    status: str  # rewritten | replaced (by this host's rewritten local file) | planned | not-rewritten | gone
    removed: int | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    forgotten_from: str | None = None
    attempts: int = 1
    error: str | None = None


@dataclass
class ArchiveErasure:
    """The bucket's part of a forget: objects searched per host, and every object that held lines or failed."""

    url: str
    host_id: str
    searched: dict[str, int] = field(default_factory=dict)  # host -> objects searched
    objects: list[ObjectErasure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        hosts = {}
        for host in sorted({*self.searched, *(o.host for o in self.objects)}):
            mine = [o for o in self.objects if o.host == host]
            hosts[host] = {"searched": self.searched.get(host, 0),
                           **{s: sum(o.status == s for o in mine) for s in (REWRITTEN, REPLACED, PLANNED,
                                                                            NOT_REWRITTEN)}}
        return {"url": self.url, "host_id": self.host_id, "hosts": hosts,
                "objects": [asdict(o) for o in self.objects], "errors": self.errors}


class _Hashing:
    """A stream's bytes as they are read, hashed: the sha256 of the version a rewrite replaces."""

    def __init__(self, stream):
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def erase_archive(bucket: Bucket, keep, *, host_id: str, store=None, rewritten_local: dict[str, int] | None = None,
                  level: int = 6, dry_run: bool = False, attempts: int = ATTEMPTS, workers: int = WORKERS,
                  between: Callable[[str], None] | None = None) -> ArchiveErasure:
    """Remove the lines ``keep`` refuses from every object in the layout under ``bucket.location``.

    ``rewritten_local``: this host's local .gz files forget has just rewritten (name -> lines removed); their
    objects are replaced by the local file when the archive record of ``store`` says the object is what was
    uploaded. ``between(key)`` runs after an object's filtered copy is written and before it is uploaded (the
    window a concurrent writer meets). Never raises ArchiveError: every failure is one line in ``errors``."""
    done = ArchiveErasure(bucket.location.url, host_id)
    try:
        listing = [(info, parsed) for info in bucket.list() if (parsed := parse_key(bucket.location, info.key))]
    except ArchiveError as exc:
        done.errors.append(f"{exc}; no archived object was searched: run forget again when the bucket answers")
        return done
    job = _Job(bucket, keep, host_id, store, rewritten_local or {}, level, dry_run, attempts, between)
    if workers <= 1:
        outcomes = [job.one(item) for item in listing]
    else:
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(job.one, listing))
    for (_info, (_day, host, _name)), outcome in zip(listing, outcomes, strict=True):
        if outcome == "skipped":
            continue
        done.searched[host] = done.searched.get(host, 0) + 1
        if outcome is not None:
            done.objects.append(outcome)
            if outcome.error:
                done.errors.append(f"s3://{bucket.location.bucket}/{outcome.key}: {outcome.error}")
    if job.skipped:
        done.errors.append(f"archive {bucket.location.url}: {job.skipped} object(s) not searched: the bucket stopped "
                           f"answering ({job.last_failure}); run forget again when it answers")
    return done


class _Job:
    """One forget's work on the objects (shared by the worker threads)."""

    def __init__(self, bucket: Bucket, keep, host_id: str, store, rewritten_local: dict[str, int], level: int,
                 dry_run: bool, attempts: int, between):
        self.bucket, self.keep, self.touches = bucket, keep, getattr(keep, "touches", None)
        self.host_id, self.store, self.rewritten_local = host_id, store, rewritten_local
        self.level, self.dry_run, self.attempts, self.between = level, dry_run, max(1, attempts), between
        self._lock = threading.Lock()
        self._failures = self.skipped = 0
        self.last_failure = ""

    def one(self, item: tuple[ObjectInfo, tuple]) -> ObjectErasure | None | str:
        info, (day, host, name) = item
        with self._lock:
            if self._failures >= GIVE_UP_AFTER:
                self.skipped += 1
                return "skipped"
        outcome = ObjectErasure(info.key, host, day.isoformat(), PLANNED if self.dry_run else REWRITTEN)
        try:
            found = self._erase(info, name, outcome)
        except ArchiveError as exc:
            with self._lock:
                self._failures += 1
                self.last_failure = str(exc)
            outcome.status, outcome.error = NOT_REWRITTEN, f"not rewritten: {_tail(exc, info.key)}"
            return outcome
        with self._lock:
            self._failures = 0
        return outcome if found else None

    def _erase(self, info: ObjectInfo, name: str, outcome: ObjectErasure) -> bool:
        """Search (and rewrite) one object; False when it holds none of these lines and nothing went wrong."""
        etag = info.etag
        own = outcome.host == self.host_id and name in self.rewritten_local and not self.dry_run
        for attempt in range(1, self.attempts + 1):
            outcome.attempts = attempt
            try:
                if own and self._replace_own(info.key, name, outcome):
                    return True
                return self._rewrite(info.key, name, etag, outcome)
            except PreconditionFailed:
                fresh = self.bucket.head(info.key)
                if fresh is None:
                    break
                etag = fresh.etag
            except ObjectMissing:  # deleted since the listing (archive retention): nothing left to erase
                break
        else:
            outcome.status = NOT_REWRITTEN
            outcome.error = (f"changed {self.attempts} times while it was rewritten (HTTP 412 each time); not "
                             "rewritten: run forget again")
            return True
        outcome.status, outcome.removed, outcome.error = GONE, None, None
        return True

    def _replace_own(self, key: str, name: str, outcome: ObjectErasure) -> bool:
        """This host's object of a local file forget rewrote: when the object is what was uploaded (the record),
        upload the local file over it; False when it is not (then it is rewritten like any other object)."""
        from metrics_ops.offsite import read_record

        record = read_record(self.store, name)
        head = self.bucket.head(key)
        if record is None or head is None or not record.same_object(head):
            return False
        self._upload_local(key, name, head.etag, head.sha256, head.size, outcome, head.forgotten_from)
        return True

    def _upload_local(self, key: str, name: str, etag: str, old_sha256: str, old_size: int,
                      outcome: ObjectErasure, earlier: str | None) -> None:
        """The rewritten local file over its object (If-Match ``etag``), verified, and the archive record."""
        from metrics_ops.offsite import write_record

        path = self.store.dir / name
        sha256, size = file_digest(path)
        chain = _chain(old_sha256, earlier)
        new = self.bucket.put_file(key, path, sha256=sha256, size=size, if_match=etag,
                                   extra_metadata={META_FORGOTTEN_FROM: chain})
        _verify(new, chain, key)
        try:
            write_record(self.store, name, new)
        except OSError as exc:
            outcome.error = (f"replaced by the rewritten local file, but its archive record could not be written "
                             f"({exc.strerror or exc}): the next pass looks at the object again")
        outcome.status, outcome.removed = REPLACED, self.rewritten_local[name]
        outcome.bytes_before, outcome.bytes_after, outcome.forgotten_from = old_size, size, old_sha256

    def _rewrite(self, key: str, name: str, etag: str, outcome: ObjectErasure) -> bool:
        count, source, _ = self._read(key, name, etag)
        if count.problems:
            outcome.status, outcome.removed = NOT_REWRITTEN, count.removed
            outcome.error = (f"{count.problems[0].why}; {count.removed} line(s) of these visitors are in its "
                             "readable part, the rest could not be searched; not rewritten (repair or delete it)")
            return True
        long_note = (f"{count.unsearched} line(s) longer than {MAX_LINE_TEXT} hold the text of these visitors' ids; "
                     "such a line is no event and is never parsed: it was left as it is (remove it by hand)"
                     if count.unsearched else None)
        outcome.bytes_before, outcome.removed, outcome.error = source.size, count.removed, long_note
        if count.removed == 0:
            outcome.status = NOT_REWRITTEN
            return long_note is not None
        if self.dry_run:
            return True
        old = source.digest.hexdigest()
        with tempfile.TemporaryDirectory(prefix="metrics-ops-forget-") as tmp:
            path = os.path.join(tmp, name)
            copy, again, content = self._read(key, name, etag, path)
            if copy.removed != count.removed or again.digest.digest() != source.digest.digest():
                raise ArchiveError(f"archive s3://{self.bucket.location.bucket}/{key}: read differently the "
                                   "second time")
            if self.between is not None:
                self.between(key)
            earlier = self._earlier(key, etag)
            if (outcome.host == self.host_id and name in self.rewritten_local
                    and content == _content_digest(self.store.dir / name)):
                # this host's object holds what its rewritten local file holds (no record said so, or the
                # object was uploaded anew): the local file's very bytes go, so that the two stay one file
                self._upload_local(key, name, etag, old, source.size, outcome, earlier)
                return True
            sha256, size = file_digest(path)
            chain = _chain(old, earlier)
            new = self.bucket.put_file(key, path, sha256=sha256, size=size, if_match=etag,
                                       extra_metadata={META_FORGOTTEN_FROM: chain})
        _verify(new, chain, key)
        outcome.bytes_after, outcome.forgotten_from = size, old
        return True

    def _earlier(self, key: str, etag: str) -> str | None:
        """The ``forgotten-from`` of the version read (ETag ``etag``): an earlier forget's, carried on."""
        head = self.bucket.head(key)
        if head is None:
            raise ObjectMissing(f"archive s3://{self.bucket.location.bucket}/{key}: gone since it was read")
        if head.etag != etag:
            raise PreconditionFailed(f"archive s3://{self.bucket.location.bucket}/{key}: changed since it was read")
        return head.forgotten_from

    def _read(self, key: str, name: str, etag: str, out: str | None = None) -> tuple[LineFilter, _Hashing, bytes]:
        """Stream the object (this ETag only) through the local forget's filter; into ``out`` when given. Also
        the sha256 of the lines kept (what the object's rewrite holds, uncompressed)."""
        content = hashlib.sha256()
        with self.bucket.open_stream(key, if_match=etag) as stream:
            source = _Hashing(stream)
            if out is None:
                return _filtered(source, name, self.keep, self.touches, None), source, b""
            with open(out, "wb") as fh:
                if name.endswith(".gz"):
                    from zlib_ng import gzip_ng

                    sink = gzip_ng.GzipFile(fileobj=fh, mode="wb", compresslevel=self.level, mtime=0)
                else:
                    sink = contextlib.nullcontext(fh)
                with sink as dest:
                    def write(block: bytes) -> None:
                        content.update(block)
                        dest.write(block)

                    lines = _filtered(source, name, self.keep, self.touches, write)
        return lines, source, content.digest()


def _filtered(source: _Hashing, name: str, keep, touches, write) -> LineFilter:
    lines = LineFilter(keep, touches, write)
    for block in stream_blocks(source, name, lines.problems, {}, through=lines.long_line):
        lines.block(block)
    lines.finish()
    return lines


def _content_digest(path) -> bytes | None:
    """The sha256 of a local file's lines (decompressed), or None when it cannot be read whole."""
    content = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = inflated(fd) if str(path).endswith(".gz") else raw(fd)
        while True:
            try:
                content.update(next(chunks))
            except StopIteration as stop:
                return None if stop.value else content.digest()
    finally:
        os.close(fd)


def _chain(old_sha256: str, earlier: str | None) -> str:
    """``forgotten-from`` of a rewrite: the replaced version's sha256, then the versions that one was made from
    (newest first, at most FORGOTTEN_CHAIN): a host whose pass has not run since several forgets still finds
    the version it uploaded there, and replaces its local copy."""
    shas = [old_sha256] + [s for s in (earlier or "").split() if s != old_sha256]
    return " ".join(shas[:FORGOTTEN_CHAIN])


def _verify(new: ObjectInfo, want: str, key: str) -> None:
    if new.forgotten_from != want:
        raise ArchiveError(f"archive {key}: the rewrite did not verify: forgotten-from is {new.forgotten_from}, "
                           f"want {want}")


def _tail(exc: ArchiveError, key: str) -> str:
    """The message without its leading ``archive s3://bucket/key:`` (the line names the object already)."""
    return re.sub(r"^archive s3://[^ ]*" + re.escape(key) + r": ", "", str(exc))


def local_rewrites(actions) -> dict[str, int]:
    """This host's local .gz files a (not dry) forget rewrote, with the lines removed from each."""
    from metrics_ops.layout import parse_name
    from metrics_ops.plans import Kind, Status

    found = {}
    for a in actions:
        if a.kind == Kind.REWRITE and a.status == Status.DONE and a.file.endswith(".gz") and parse_name(a.file):
            match = re.match(r"(\d+) line", a.detail)
            found[a.file] = int(match[1]) if match else 0
    return found


def into_result(result, erasure: ArchiveErasure) -> None:
    """Add the bucket's part to a :class:`metrics_ops.forget.ForgetResult`: an action per object rewritten
    (or planned), one error line per object not rewritten, the per-host and per-object document."""
    from metrics_ops.plans import Action, Kind, Status

    bucket = erasure.url[len("s3://"):].partition("/")[0]
    for o in erasure.objects:
        if o.status in (REWRITTEN, REPLACED, PLANNED):
            how = ("replaced by the rewritten local file" if o.status == REPLACED
                   else f"{o.removed} line(s) {'to remove' if o.status == PLANNED else 'removed'}")
            result.actions.append(Action("forget", Kind.REWRITE, f"s3://{bucket}/{o.key}", o.bytes_before,
                                         o.bytes_after, f"{how} (host {o.host})",
                                         Status.PLANNED if o.status == PLANNED else Status.DONE))
    result.errors.extend(erasure.errors)
    result.archive = erasure
