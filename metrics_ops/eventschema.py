"""The event model as msgspec structs: serve's fast path, a body decoded and checked in C.

:class:`Event` is the wire format of one event (what the browser script sends) with every limit of
:mod:`metrics_ops.events` that a type can say: the two names' patterns, metadata four levels deep at most, strings
of at most 256 characters (so at most 1,024 bytes of UTF-8 whatever they hold), integers within +-2^53, the
client's timestamp (a string of at most 40 characters, or epoch milliseconds in 2000-2099), the declared
sampling rate (MIN_RATE..1), no other top-level field and no null. What a type cannot say is checked here, on
the decoded value: no repeated key anywhere (counted, see :func:`lines`), at most MAX_ITEMS keys and items in
metadata, the ISO timestamp's calendar, and no escape in the body (so no control character, no lone surrogate
and no hidden colon can be in a string).

The fast path only ever *accepts*: :func:`one` and :func:`batch` return the stored lines, byte for byte those of
the reference path (``events.parse_body`` + ``validate_event`` + ``encode_record``), or None, and then the
reference path decides: it names the status, code, field and message of every refusal, and takes the rare valid
bodies the structs leave out (unknown fields, nulls, escapes, longer strings). tests/test_eventschema.py holds
the two paths to the same answers.

A reader may decode stored lines with the same types (a stored line adds ``client_rate``, ``server_rate``,
``received_at`` and ``ts``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from metrics_ops.events import (
    MAX_ITEMS,
    MAX_SAFE_INT,
    MAX_STRING,
    MIN_RATE,
    TIMESTAMP_MS,
    Problem,
    check_timestamp,
    without_query,
)

Str = Annotated[str, Meta(max_length=MAX_STRING // 4)]  # longer strings: the reference path counts their bytes
Int = Annotated[int, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
Scalar = Str | Int | float | bool | None  # (a JSON number beyond a double is a decode error, never inf)
_V3 = Scalar | list[Scalar] | dict[Str, Scalar]  # the values of a container at depth 2 (metadata is depth 0)
_V2 = Scalar | list[_V3] | dict[Str, _V3]
_V1 = Scalar | list[_V2] | dict[Str, _V2]
Metadata = dict[Str, _V1]
VisitorId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,128}\Z")]
EventName = Annotated[str, Meta(pattern=r"^[a-z0-9_.:-]{1,64}\Z")]
Timestamp = (Annotated[str, Meta(max_length=40)] | Annotated[int, Meta(ge=TIMESTAMP_MS[0], lt=TIMESTAMP_MS[1])]
             | Annotated[float, Meta(ge=TIMESTAMP_MS[0], lt=TIMESTAMP_MS[1])])
Rate = Annotated[float, Meta(ge=MIN_RATE, le=1)]


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One event as sent; a field that was not sent is UNSET."""

    visitor_id: VisitorId
    event: EventName
    timestamp: Timestamp | UnsetType = UNSET
    sample_rate: Rate | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


_one = msgspec.json.Decoder(Event)
_many = msgspec.json.Decoder(list[Event])
# (ValidationError is a DecodeError; msgspec before 0.19 raised UnicodeDecodeError, a ValueError, on bytes that
# are not UTF-8; whatever the decoder raises, the reference path decides)
_DecodeError = (msgspec.DecodeError, ValueError, RecursionError)
_dumps, _NEWLINE = orjson.dumps, orjson.OPT_APPEND_NEWLINE
#: colons a stored line adds to its event's: client_rate, server_rate, received_at (2 in its value), ts (2)
_ADDED_COLONS = 8
Line = tuple[str, str, bytes]  # (visitor_id, event, the stored line)


def one(body: bytes, keep_query: bool, received_at: str, rate_for: Callable[[str], float]) -> Line | None:
    """The stored line of a one-event body, or None: the reference path decides."""
    if b"\\" in body or b"\x7f" in body:
        return None
    try:
        event = _one.decode(body)
    except _DecodeError:
        return None
    made = _line(event, keep_query, received_at, rate_for)
    if made is None or made[1] != body.count(b":") + _ADDED_COLONS:
        return None  # (a repeated key: see lines)
    return event.visitor_id, event.event, made[0]


def batch(body: bytes, max_batch: int, keep_query: bool, received_at: str,
          rate_for: Callable[[str], float]) -> list[Line] | None:
    """The stored lines of a batch whose every event is valid, or None: the reference path decides."""
    if b"\\" in body or b"\x7f" in body:
        return None
    try:
        events = _many.decode(body)
    except _DecodeError:
        return None
    if not 0 < len(events) <= max_batch:
        return None
    return lines(events, body.count(b":"), keep_query, received_at, rate_for)


def lines(events: list[Event], colons: int, keep_query: bool, received_at: str,
          rate_for: Callable[[str], float]) -> list[Line] | None:
    """The stored lines of decoded events (``encode_record``'s, key order included), or None.

    Repeated keys are found by counting colons: in a body without escapes every colon is a key's or sits in a
    string, and so in the lines, which hold every key and string of the events plus the colons the line adds,
    less those of a cut query string. A repeated key drops a key (and its value's colons) from the decoded
    events, so the count of the lines falls short of the body's exactly when a key was repeated."""
    out = []
    for event in events:
        made = _line(event, keep_query, received_at, rate_for)
        if made is None:
            return None
        colons -= made[1] - _ADDED_COLONS
        out.append((event.visitor_id, event.event, made[0]))
    return out if colons == 0 else None


def _line(event: Event, keep_query: bool, received_at: str,
          rate_for: Callable[[str], float]) -> tuple[bytes, int] | None:
    """(the stored line, its colons less those the event's text had over the lines': a sample_rate key, a cut
    query string), or None: not valid after all (metadata's item budget, the ISO timestamp's calendar)."""
    name = event.event
    record = {"visitor_id": event.visitor_id, "event": name}
    ts = received_at
    if (timestamp := event.timestamp) is not UNSET:
        if type(timestamp) is int:  # epoch milliseconds in 2000-2099, as the browser script sends
            seconds, milli = divmod(timestamp, 1000)
            ts = f"{_seconds.get(seconds) or _second(seconds)}.{milli:03d}000Z"
        else:
            try:
                ts = check_timestamp(timestamp, "timestamp")
            except Problem:
                return None
        record["timestamp"] = timestamp
    missing = 0
    if (rate := event.sample_rate) is not UNSET:
        record["client_rate"] = rate
        missing = 1  # the key sample_rate became client_rate
    if (metadata := event.metadata) is not UNSET:
        if metadata:
            if len(metadata) > MAX_ITEMS or _items(metadata) > MAX_ITEMS:
                return None
            path = metadata.get("path")
            if not keep_query and type(path) is str and ("?" in path or "#" in path):
                metadata["path"] = kept = without_query(path)
                missing += path.count(":") - kept.count(":")
        record["metadata"] = metadata
    if rate is UNSET:
        record["client_rate"] = 1.0
    record["server_rate"] = rate_for(name)
    record["received_at"] = received_at
    record["ts"] = ts
    line = _dumps(record, option=_NEWLINE)
    return line, line.count(b":") + missing


_seconds: dict[int, str] = {}


def _second(seconds: int) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS`` (UTC), as check_timestamp spells them; the last 4,096 cached."""
    if len(_seconds) >= 4096:
        _seconds.clear()
    when = datetime.fromtimestamp(seconds, UTC)
    text = _seconds[seconds] = (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
                                f"{when.second:02d}")
    return text


def _items(value: dict | list) -> int:
    """Keys and items of ``value`` and of every container below it."""
    n = len(value)
    for item in (value.values() if type(value) is dict else value):
        if type(item) is dict or type(item) is list:
            n += _items(item)
    return n
