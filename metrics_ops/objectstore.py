"""The one place that talks to S3-compatible object storage (AWS S3, R2, B2, MinIO, SeaweedFS, Ceph), through
boto3, which is imported only when a bucket is opened (the optional extra ``metrics-ops[s3]``).

The archive's layout is hive-style, day first: ``<prefix>/day=YYYY-MM-DD/host=<host_id>/<file name>``, so one
listing per day covers every host. Credentials, endpoint and region come only the standard AWS ways (environment,
profiles, ``AWS_ENDPOINT_URL``): never a setting of ours, never in a message. Every failure is an
:class:`ArchiveError` of one line naming the bucket and key; a 412 is a :class:`PreconditionFailed`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

#: the message (and exit status 2) when archive_url is set and boto3 is not importable
BOTO3_MISSING = "archive_url is set but boto3 is not installed: pip install 'metrics-ops[s3]'"
#: object metadata we write (x-amz-meta-sha256, x-amz-meta-size)
META_SHA256, META_SIZE = "sha256", "size"
#: metadata of an object rewritten by forget: the sha256 of the version it replaced (x-amz-meta-forgotten-from)
META_FORGOTTEN_FROM = "forgotten-from"
#: how many replaced versions ``forgotten-from`` lists (newest first): 8 forgets between two passes of a host
FORGOTTEN_CHAIN = 8
#: bounded waiting: an unreachable endpoint fails after ATTEMPTS tries of CONNECT_TIMEOUT seconds at most
CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS = 3, 60, 3

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+,-]+")
_HOST_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_KEY_TAIL = re.compile(r"day=(\d{4}-\d{2}-\d{2})/host=([^/]+)/([^/]+)")


class ArchiveError(Exception):
    """An object-storage operation failed; the message is one line naming the bucket (and key), no secret."""


class PreconditionFailed(ArchiveError):
    """A conditional write (If-Match / If-None-Match) did not hold: HTTP 412."""


class ClockSkewed(ArchiveError):
    """The server refused the request's signed time (RequestTimeTooSkewed): this host's clock is wrong."""


class ObjectMissing(ArchiveError):
    """The key holds no object (HTTP 404), e.g. deleted since it was listed."""


class Boto3Missing(ArchiveError):
    """archive_url is set but boto3 cannot be imported (commands exit 2: a setup problem, nothing changed)."""

    def __init__(self):
        super().__init__(BOTO3_MISSING)


@dataclass(frozen=True)
class Location:
    """Where the archive lives: a bucket and a key prefix without leading or trailing slash ("" for none)."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest


def bucket_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name, or None (AWS's general-purpose bucket naming rules)."""
    if not _BUCKET.fullmatch(name):
        return "a bucket name is 3 to 63 characters of a-z 0-9 . - starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "a bucket name has no two adjacent periods and no period next to a hyphen"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "a bucket name cannot look like an IP address"
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return "a bucket name cannot start with xn-- or sthree- or end with -s3alias or --ol-s3"
    return None


def parse_archive_url(url: str) -> Location:
    """``s3://bucket[/prefix]`` -> :class:`Location`; ValueError (one line, the reason) for anything else."""
    text = url.strip()
    if not text.startswith("s3://"):
        raise ValueError("want s3://bucket or s3://bucket/prefix (only the s3:// scheme is supported)")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    if "@" in bucket or ":" in bucket:
        raise ValueError("no credentials, user or port in the URL: credentials come from the AWS environment or "
                         "profile, the endpoint from AWS_ENDPOINT_URL")
    if why := bucket_problem(bucket):
        raise ValueError(why)
    parts = [p for p in prefix.split("/") if p]
    for part in parts:
        if part in (".", "..") or not _SEGMENT.fullmatch(part):
            raise ValueError(f"the prefix segment {part!r} is not allowed: use A-Z a-z 0-9 and ! _ . * ' ( ) = + , - "
                             "(no . or .. segments)")
    return Location(bucket, "/".join(parts))


def host_id_problem(host_id: str) -> str | None:
    """Why ``host_id`` cannot name a host's objects, or None."""
    if not _HOST_ID.fullmatch(host_id):
        return ("a host id is 1 to 63 characters of a-z 0-9 and -, not starting or ending with - "
                "(it becomes host=<host_id> in every object key)")
    return None


def default_host_id(name: str | None = None) -> str:
    """The host name (``socket.gethostname()``), lowercased, every run of other characters than a-z 0-9 - made
    one -, at most 63 characters, no - at either end; "localhost" if nothing is left."""
    raw = (socket.gethostname() if name is None else name).lower()
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")[:63].strip("-")
    return cleaned or "localhost"


def day_prefix(location: Location, day: date, host_id: str | None = None) -> str:
    """The key prefix of a day's objects (every host's, or one host's), ending in /."""
    rest = f"day={day.isoformat()}/" + (f"host={host_id}/" if host_id is not None else "")
    return location.key(rest)


def object_key(location: Location, day: date, host_id: str, file_name: str) -> str:
    """``<prefix>/day=YYYY-MM-DD/host=<host_id>/<file name>``: deterministic, so a retry lands on the same key."""
    if why := host_id_problem(host_id):
        raise ValueError(f"host id {host_id!r}: {why}")
    if not file_name or "/" in file_name or file_name in (".", ".."):
        raise ValueError(f"not a file name: {file_name!r}")
    return day_prefix(location, day, host_id) + file_name


def parse_key(location: Location, key: str) -> tuple[date, str, str] | None:
    """(day, host_id, file name) of a key in the layout under ``location``; None for any other key."""
    head = location.key("")
    if not key.startswith(head):
        return None
    match = _KEY_TAIL.fullmatch(key[len(head):])
    if match is None or host_id_problem(match[2]):
        return None
    try:
        day = date.fromisoformat(match[1])
    except ValueError:
        return None
    return day, match[2], match[3]


@dataclass(frozen=True)
class ObjectInfo:
    """One object: ``etag`` without quotes; ``sha256`` and ``recorded_size`` from our metadata (None in a listing,
    which carries no metadata, and for an object we did not write); ``forgotten_from``: the sha256 of the version
    a forget replaced with this one (None for an object no forget rewrote)."""

    key: str
    size: int
    etag: str
    sha256: str | None = None
    last_modified: datetime | None = None
    recorded_size: int | None = None
    forgotten_from: str | None = None

    def matches(self, sha256: str, size: int) -> bool:
        """Is this our intact upload of a file with this digest and size?"""
        return self.size == size and self.recorded_size == size and self.sha256 == sha256

    def forgotten(self, sha256: str) -> bool:
        """Did forget make this object out of the version with ``sha256`` (or out of one made from it)?
        ``forgotten-from`` lists the sha256 of each version forget replaced, newest first (several forgets may
        come before a host's next pass looks)."""
        return sha256 in (self.forgotten_from or "").split()


def file_digest(path: str | Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, streamed."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


def _boto3():
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise Boto3Missing() from None
    return boto3, botocore.config


#: the user-info of a URL in a message (``http://user:secret@host``): never shown
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s\"'@]*@")


def _one_line(text: str, limit: int = 300) -> str:
    """A client's message in one line, at most ``limit`` characters, without any URL's user-info (an
    AWS_ENDPOINT_URL such as http://user:secret@host shows as http://***@host)."""
    line = _USERINFO.sub(r"\1***@", " ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Bucket:
    """The archive's bucket, opened from a :class:`Location`. Keys given to methods are whole keys (as
    :func:`object_key` makes them)."""

    def __init__(self, location: Location, *, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, attempts: int = ATTEMPTS, session=None):
        """``session``: a boto3 Session to make the client from (default: a new one). A client made from a
        session that already made one costs ~10 ms instead of ~150 ms (the service model is loaded once)."""
        boto3, config = _boto3()
        self.location = location
        self._errors = _error_types()
        cfg = config.Config(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            # boto3 >= 1.36 adds a CRC32 trailer (aws-chunked) to every upload by default, which not every
            # S3-compatible server takes; we send x-amz-checksum-sha256 ourselves, which every one verifies.
            request_checksum_calculation="when_required", response_checksum_validation="when_required")
        try:
            self._s3 = (session or boto3.session.Session()).client("s3", config=cfg)
        except self._errors as exc:
            raise ArchiveError(f"archive {location.url}: cannot set up the S3 client: {_one_line(exc)}") from None

    def _fail(self, what: str, key: str | None, exc: Exception) -> ArchiveError:
        where = f"s3://{self.location.bucket}/{key}" if key is not None else self.location.url
        response = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if error or status:
            code = error.get("Code") or str(status)
            detail = f"{code} (HTTP {status})" + (f": {_one_line(error['Message'])}" if error.get("Message") else "")
            kind = (PreconditionFailed if status == 412 or code == "PreconditionFailed"
                    else ObjectMissing if code == "NoSuchKey"
                    else ClockSkewed if code == "RequestTimeTooSkewed" else ArchiveError)
            return kind(f"archive {where}: {what} failed: {detail}")
        return ArchiveError(f"archive {where}: {what} failed: {_one_line(exc)}")

    def put_file(self, key: str, path: str | Path, *, sha256: str, size: int, if_match: str | None = None,
                 if_none_match: bool = False, extra_metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Upload ``path`` to ``key`` with x-amz-checksum-sha256 = ``sha256`` (the server refuses other bytes:
        BadDigest), the sha256 and size in the object's metadata, then HEAD and check both. ``if_match``: only
        over the object with this ETag; ``if_none_match``: only if the key is free. A 412 is PreconditionFailed.
        ``extra_metadata``: more metadata (lowercase names, such as ``forgotten-from``), sent as it is."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        meta = {**(extra_metadata or {}), META_SHA256: sha256, META_SIZE: str(size)}
        params = {"Bucket": self.location.bucket, "Key": key,
                  "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode(), "Metadata": meta}
        if if_match is not None:
            params["IfMatch"] = if_match if if_match.startswith('"') else f'"{if_match}"'
        if if_none_match:
            params["IfNoneMatch"] = "*"
        try:
            with open(path, "rb") as body:
                self._s3.put_object(Body=body, **params)
        except OSError as exc:
            raise ArchiveError(f"archive s3://{self.location.bucket}/{key}: cannot read {path}: "
                               f"{exc.strerror or exc}") from None
        except self._errors as exc:
            raise self._fail("upload", key, exc) from None
        info = self.head(key)
        if info is None or not info.matches(sha256, size):
            found = "nothing" if info is None else f"{info.size} bytes, sha256 {info.sha256}"
            raise ArchiveError(f"archive s3://{self.location.bucket}/{key}: the upload did not verify: want {size} "
                               f"bytes, sha256 {sha256}, found {found}")
        return info

    def head(self, key: str) -> ObjectInfo | None:
        """The object at ``key`` with our metadata, or None if there is none."""
        try:
            r = self._s3.head_object(Bucket=self.location.bucket, Key=key)
        except self._errors as exc:
            status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status == 404:
                return None
            raise self._fail("head", key, exc) from None
        meta = r.get("Metadata") or {}
        recorded = meta.get(META_SIZE)
        return ObjectInfo(key, r["ContentLength"], r.get("ETag", "").strip('"'), meta.get(META_SHA256),
                          r.get("LastModified"), int(recorded) if recorded and recorded.isdigit() else None,
                          meta.get(META_FORGOTTEN_FROM))

    def _pages(self, prefix: str, delimiter: str | None = None):
        params = {"Bucket": self.location.bucket, "Prefix": prefix}
        if delimiter:
            params["Delimiter"] = delimiter
        try:
            yield from self._s3.get_paginator("list_objects_v2").paginate(**params)
        except self._errors as exc:
            raise self._fail("list", prefix or None, exc) from None

    def list(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (default: the location's, with its /), page by page;
        no metadata (sha256 None: :meth:`head` has it)."""
        for page in self._pages(self.location.key("") if prefix is None else prefix):
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], item["Size"], item.get("ETag", "").strip('"'), None,
                                 item.get("LastModified"))

    def _common(self, prefix: str) -> Iterator[str]:
        for page in self._pages(prefix, "/"):
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"][len(prefix):].rstrip("/")

    def list_days(self) -> set[date]:
        """The days that have objects under the location (any host), from one delimited listing."""
        days = set()
        for name in self._common(self.location.key("")):
            if name.startswith("day="):
                try:
                    days.add(date.fromisoformat(name[4:]))
                except ValueError:
                    pass
        return days

    def list_hosts(self, day: date) -> set[str]:
        """The host ids that have objects of ``day``."""
        return {name[5:] for name in self._common(day_prefix(self.location, day))
                if name.startswith("host=") and not host_id_problem(name[5:])}

    def open_stream(self, key: str, *, if_match: str | None = None) -> io.BufferedReader:
        """The object's bytes as a readable binary stream (read as it goes, never whole), e.g. for gzip.
        ``if_match``: only the version with this ETag (another one: PreconditionFailed)."""
        params = {"Bucket": self.location.bucket, "Key": key}
        if if_match is not None:
            params["IfMatch"] = if_match if if_match.startswith('"') else f'"{if_match}"'
        try:
            body = self._s3.get_object(**params)["Body"]
        except self._errors as exc:
            raise self._fail("download", key, exc) from None
        return io.BufferedReader(_Stream(body, self, key), buffer_size=1 << 20)

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error if there is none)."""
        try:
            self._s3.delete_object(Bucket=self.location.bucket, Key=key)
        except self._errors as exc:
            raise self._fail("delete", key, exc) from None


class _Stream(io.RawIOBase):
    """A GET's body as a raw stream whose read errors are ArchiveErrors."""

    def __init__(self, body, bucket: Bucket, key: str):
        self._body, self._bucket, self._key = body, bucket, key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._body.read(len(buffer))
        except self._bucket._errors as exc:
            raise self._bucket._fail("download", self._key, exc) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _error_types() -> tuple[type[Exception], ...]:
    """What boto3 raises: botocore's errors (client errors, connection, timeouts, credentials) and urllib3's."""
    import botocore.exceptions

    types: list[type[Exception]] = [botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError]
    try:
        import urllib3.exceptions

        types.append(urllib3.exceptions.HTTPError)
    except ImportError:  # pragma: no cover - botocore requires urllib3
        pass
    return tuple(types)
