"""The archive step of a pass (``metrics-ops archive``; ``rotate`` runs it after gzip and before prune when
``archive_url`` is set): its plan from the state of each closed, compressed file (:mod:`metrics_ops.offsite`),
carrying out each action, and archive retention (this host's objects of days at least archive_retention old).

Every upload is verified by the server (x-amz-checksum-sha256) and after it (HEAD: size and sha256), and lands on
the same key whatever retries and reruns happen, under a condition: If-None-Match for a new object (a retry whose
first reply was lost finds its own bytes there and adopts them), If-Match on the recorded ETag for a file that
changed since its upload. A local file is only ever read here, except when forget on another host rewrote its
object: then the verified object replaces it (atomically) and the day's rollup is recounted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import date

from metrics_ops import rollups
from metrics_ops.archive import replace_atomically
from metrics_ops.changes import record_change
from metrics_ops.layout import FORGET_SUFFIX, Listing, StoreError, open_regular, parse_name, temp_name
from metrics_ops.objectstore import ArchiveError, PreconditionFailed, day_prefix, file_digest
from metrics_ops.offsite import Archive, State, damage, drop_record, recorded_names

#: the actions of the archive step, by state
_KINDS = {State.NEW: "upload", State.ADOPT: "record", State.CHANGED: "reupload", State.FORGOTTEN: "restore"}
_DETAILS = {
    "upload": "not in the archive yet: uploaded (If-None-Match), verified",
    "record": "already in the archive with these bytes (a reply lost after an upload?): recorded, nothing uploaded",
    "reupload": "changed since its upload (a late writer, a forget): uploaded again over its object (If-Match)",
    "restore": "forget on another host rewrote its object: the local file is replaced by the verified object",
}


def plan_archive(store, listing: Listing, today: date, archive: Archive, result, action) -> tuple[list, list]:
    """The archive step's actions (``action(kind, file, **fields)`` makes one) and the files it leaves alone.
    A bucket that cannot be asked is one error of the pass naming the archive; the other steps still run."""
    actions, kept = [], []
    for f in listing.files:
        if not f.gz or f.day >= today:
            continue  # plain files are archived once compressed; today's day is not closed
        if archive.expired(f, today):
            kept.append((f.name, f"{(today - f.day).days} days old, past archive_retention "
                                 f"{archive.retention}: never archived"))
            continue
        try:
            state = archive.classify(store.dir, f, again=True)
        except OSError as exc:
            kept.append((f.name, f"cannot be read to archive it: {exc.strerror or exc}"))
            continue
        if state.state == State.CONFLICT:
            kept.append((f.name, state.why))
        elif state.state in _KINDS:
            kind = _KINDS[state.state]
            detail = state.why if state.state == State.NEW and state.record is not None else _DETAILS[kind]
            actions.append(action(kind, f.name, bytes_before=state.size, detail=detail, target=state.key))
    present = {f.name for f in listing.files}
    actions += [action("drop-record", name, detail="its local file is gone (deleted by hand?): its record goes, so "
                       "that a later file of this name is never taken for it and uploaded over its object")
                for name in recorded_names(store.dir) if name not in present]
    if archive.unreachable is None:
        actions += _plan_retention(archive, today, action)
    if archive.unreachable is not None:
        result.errors.append(f"archive: {archive.unreachable}; nothing uploaded, every file counts as not "
                             "archived (prune and the budget keep them)")
    return actions, kept


def _plan_retention(archive: Archive, today: date, action) -> list:
    """Delete this host's objects of days at least archive_retention old (each host's pass keeps its own)."""
    out = []
    try:
        for day in sorted(archive.bucket.list_days()):
            age = (today - day).days
            if age < archive.retention:
                break
            for obj in archive.bucket.list(day_prefix(archive.location, day, archive.host_id)):
                out.append(action("drop-object", obj.key, bytes_before=obj.size,
                                  detail=f"{age} days old: archive_retention {archive.retention}"))
    except ArchiveError as exc:
        archive.failed(exc)
    return out


def upload(run, a, threads: int) -> None:
    """upload / reupload: the file's bytes as planned, under the planned condition, verified, then recorded."""
    archive: Archive = run.archive
    state = archive.states[a.file]
    path = run.store.dir / a.file
    sha256, size = file_digest(path)
    if (sha256, size) != (state.sha256, state.size):
        raise ArchiveError(f"{a.file} changed while the pass ran; the next pass archives it")
    if_match = state.record.etag if a.kind == "reupload" else None
    if if_match is not None and (why := damage(path)):
        raise ArchiveError(f"{a.file} is damaged since its upload ({why}): not uploaded over its object "
                           f"s3://{archive.location.bucket}/{state.key}, the good copy, and kept; restore the file "
                           "from the object, or delete the file")
    try:
        info = archive.bucket.put_file(state.key, path, sha256=sha256, size=size, if_match=if_match,
                                       if_none_match=if_match is None)
    except PreconditionFailed:
        info = archive.bucket.head(state.key)  # a retry whose first PUT landed: its own bytes are there
        if info is None or not info.matches(sha256, size):
            raise ArchiveError(f"archive s3://{archive.location.bucket}/{state.key}: the object changed while "
                               "the pass ran; the next pass looks again") from None
        a.detail += "; the object was there already with these bytes"
    archive.mark(a.file, info, sha256, size, run.store.dir)
    a.bytes_after = info.size


def record(run, a, threads: int) -> None:
    """adopt: the object already holds the file's bytes; write the record, upload nothing."""
    state = run.archive.states[a.file]
    info = run.archive.bucket.head(state.key)
    if info is None or not info.matches(state.sha256, state.size):
        raise ArchiveError(f"archive s3://{run.archive.location.bucket}/{state.key}: the object changed while "
                           "the pass ran; the next pass looks again")
    run.archive.mark(a.file, info, state.sha256, state.size, run.store.dir)
    a.bytes_after = 0


def restore(run, a, threads: int) -> None:
    """forgotten-from: download the object, check its sha256 and size, put it in place of the local file
    (atomically, under the file's exclusive flock, counted as a change for writers), record it, recount the
    day's rollup when there is one."""
    archive: Archive = run.archive
    state = archive.states[a.file]
    obj = archive.bucket.head(state.key)
    if obj is None or obj.etag != state.obj.etag or obj.sha256 is None:
        raise ArchiveError(f"archive s3://{archive.location.bucket}/{state.key}: the object changed while the "
                           "pass ran; the next pass looks again")
    directory = run.store.dir
    fd = open_regular(directory, a.file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if file_digest(directory / a.file) != (state.sha256, state.size):
            raise StoreError(0, f"{a.file} changed while the pass ran; the next pass looks again")

        def write(out: int) -> None:
            digest, got = hashlib.sha256(), 0
            with archive.bucket.open_stream(state.key) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    got += len(chunk)
                    _write_all(out, chunk)
            if (digest.hexdigest(), got) != (obj.sha256, obj.size):
                raise ArchiveError(f"archive s3://{archive.location.bucket}/{state.key}: the download did not "
                                   f"verify (sha256 {digest.hexdigest()}, {got} bytes); the local file is kept")

        record_change(directory)
        a.bytes_after = replace_atomically(directory, temp_name(a.file, FORGET_SUFFIX), a.file, st, write)
    finally:
        os.close(fd)
    archive.mark(a.file, obj, obj.sha256, obj.size, directory)
    day = parse_name(a.file).day
    if day in rollups.existing(directory):
        rollups.write(directory, rollups.rollup_name(day), run.store.zone, run.rollup_min_visitors,
                      run.store.file_mode)
        a.detail += "; its day's rollup recounted"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def forget_record(run, a, threads: int) -> None:
    """The record of a local file that is gone (a.file): dropped."""
    drop_record(run.store.dir, a.file)
    a.bytes_after = 0


def drop_object(run, a, threads: int) -> None:
    """archive retention: delete one of this host's objects (a.file is its key)."""
    run.archive.bucket.delete(a.file)
    a.bytes_after = 0


HANDLERS = {"upload": upload, "reupload": upload, "record": record, "restore": restore, "drop-object": drop_object,
            "drop-record": forget_record}
