"""The event model and its limits: parsing request bodies and validating events, without pydantic on the hot path.

An accepted event is stored as::

    {"visitor_id": "...", "event": "...", "timestamp": <as sent, if valid>, "metadata": {...}, "client_rate": 0.25,
     "server_rate": 1.0, "received_at": "...Z", "ts": "...Z"}

``ts`` is always there and always one type, so readers need not cope with ``timestamp``'s two: the client's
timestamp in UTC (ISO-8601, microseconds, ``Z``) when one was sent, else ``received_at``.

``client_rate`` is the sampling rate the browser declared in the event's ``sample_rate`` field (MIN_RATE <= r <= 1;
1.0 when it sent none) and ``server_rate`` serve's own rate for that event name when it stored the line, so a reader
weighs each line by 1 / (client_rate * server_rate) even when rates changed over time. Both rates are at least
:data:`MIN_RATE` (one in a million), so a weight is at most :data:`MAX_WEIGHT` (10^12): finite, exact enough in a
float sum and plain JSON. :func:`usable_rate` is the one test of a rate, for serve and for the readers.

``metadata.path`` is stored without its query string and fragment (``/reset?token=...#x`` -> ``/reset``): paths
are where e-mail addresses and tokens hide. ``keep_query`` (METRICS_KEEP_QUERY) keeps them, as the browser
script's ``keep-query`` does.

Unknown top-level fields are dropped, not stored (nothing the browser adds by mistake reaches the disk).
Every rejection is a :class:`Problem` carrying the HTTP status, a machine code, a message and the field.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
EVENT_NAME = re.compile(r"[a-z0-9_.:-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DEPTH = 4  # metadata itself is depth 1
MAX_ITEMS = 50  # keys and list items in metadata, all levels together
MAX_STRING = 1024  # bytes of UTF-8, keys and values
MAX_SAFE_INT = 2**53  # integers beyond this lose precision in browsers and most JSON readers
TIMESTAMP_MS = (946684800000, 4102444800000)  # 2000-01-01 .. 2100-01-01, as epoch milliseconds
#: the smallest sampling rate accepted anywhere (the event's sample_rate, METRICS_SAMPLE_RATE(S) when not 0): a line
#: then stands for at most 1 / MIN_RATE^2 events. 5e-324 would make the weight infinite; 1e-300 overflows sums.
MIN_RATE = 1e-6
MAX_WEIGHT = 1 / (MIN_RATE * MIN_RATE)  # 1e12: the largest weight 1 / (client_rate * server_rate) of a line


def usable_rate(value: Any) -> bool:
    """A rate a line may carry: a JSON number (not a boolean), MIN_RATE <= value <= 1 (NaN and inf are not)."""
    return (type(value) is float or type(value) is int) and MIN_RATE <= value <= 1


class Problem(Exception):
    """A request or an event that is refused: HTTP status, code, message, field (or None)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        if field is not None and not field.isascii():  # a key with a lone surrogate: named as \ud800, not a 500
            field = field.encode("utf-8", "backslashreplace").decode("utf-8")
        self.field = field

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "field": self.field}


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return obj


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
# The fast path (orjson) cannot see duplicate keys, u-escapes (\\uXXXX) that hide a colon, or integers too large for
# 64 bits (it turns them into floats); bodies that may hold either go to the exact stdlib path.
_NEEDS_EXACT = re.compile(rb"\\u|[0-9]{16}")


def _separators(value: Any) -> int:
    """Colons a JSON text of ``value`` holds without u-escapes: one per key plus those inside strings."""
    kind = type(value)
    if kind is dict:
        n = len(value) + sum(key.count(":") for key in value)
        items = value.values()
    elif kind is list:
        n, items = 0, value
    else:
        return value.count(":") if kind is str else 0
    for item in items:
        kind = type(item)
        if kind is str:
            n += item.count(":")
        elif kind is dict or kind is list:
            n += _separators(item)
    return n


def parse_body(body: bytes) -> Any:
    """Bytes -> JSON value; 400 for anything that is not strict JSON in UTF-8 with unique keys.

    Fast path: orjson, then duplicate keys are found by counting: in a text without u-escapes every colon
    is a key separator or sits inside a string, so the colons of the body equal keys + in-string colons of
    the parsed value exactly when no key was repeated (a repeated key drops a key, and its value's colons).
    """
    if not body.strip():
        raise Problem(400, "empty_body", "the request body is empty")
    if _NEEDS_EXACT.search(body) is None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the exact path names the problem
        else:
            if _separators(value) == body.count(b":"):
                return value
    return _parse_exact(body)


def _parse_exact(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "bad_encoding", f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return _decoder.decode(text)
    except _Duplicate as exc:
        raise Problem(400, "duplicate_key", f"duplicate key {str(exc)[:64]!r} in a JSON object") from None
    except RecursionError:
        raise Problem(400, "too_deep", "the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        raise Problem(400, "bad_json", f"not valid JSON: {str(exc)[:120]}") from None


def _check_string(value: str, field: str) -> None:
    if len(value) > MAX_STRING // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING:
        raise Problem(422, "too_long", f"string longer than {MAX_STRING} bytes", field)
    if _CONTROL.search(value):
        raise Problem(422, "control_character", "control characters (CR, LF, NUL, ...) are not allowed", field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Problem(422, "bad_string", "lone surrogate in string", field) from None


def _check_container(value: dict | list, field: str, depth: int, budget: list[int]) -> None:
    """Metadata below ``field``: depth, the shared key/item budget, and each key and value."""
    if depth >= MAX_DEPTH:
        raise Problem(422, "too_deep", f"metadata nested deeper than {MAX_DEPTH} levels", field)
    budget[0] -= len(value)
    if budget[0] < 0:
        raise Problem(422, "too_many_keys", f"metadata has more than {MAX_ITEMS} keys and items", "metadata")
    for key, item in (value.items() if type(value) is dict else enumerate(value)):
        if type(key) is str:
            if len(key) > 64 or _CONTROL.search(key) or not key.isascii():
                _check_string(key, f"{field}.{key[:64]}")
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING // 4 or _CONTROL.search(item) or not item.isascii():
                _check_string(item, _sub(field, key))
        elif kind is int:
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                raise Problem(422, "number_out_of_range", "integer outside +-2^53", _sub(field, key))
        elif kind is float:
            if not math.isfinite(item):
                raise Problem(422, "number_out_of_range", "number is not finite", _sub(field, key))
        elif kind is dict or kind is list:
            _check_container(item, _sub(field, key), depth + 1, budget)
        elif not (kind is bool or item is None):  # pragma: no cover - JSON has no other types
            raise Problem(422, "type", "unsupported value", _sub(field, key))


def _sub(field: str, key: str | int) -> str:
    return f"{field}.{key[:64]}" if type(key) is str else f"{field}[{key}]"


def check_timestamp(value: Any, field: str) -> str:
    """A valid client timestamp -> the same instant as ISO-8601 UTC with microseconds (``ts``)."""
    if isinstance(value, str):
        if len(value) > 40:
            raise Problem(422, "bad_timestamp", "timestamp longer than 40 characters", field)
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise Problem(422, "bad_timestamp", "want ISO-8601 (2026-11-25T12:00:00Z) or epoch milliseconds",
                          field) from None
        offset = when.utcoffset()  # None without an offset: taken as UTC
        if offset and 2000 <= when.year <= 2099:  # (the year test keeps the subtraction in range)
            when = when - offset
        if not 2000 <= when.year <= 2099:
            raise Problem(422, "bad_timestamp", "timestamp outside the years 2000-2099", field)
        micro = when.microsecond
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # (an integer is finite: math.isfinite would raise OverflowError on one beyond a double)
        if not ((type(value) is int or math.isfinite(value)) and TIMESTAMP_MS[0] <= value < TIMESTAMP_MS[1]):
            raise Problem(422, "bad_timestamp", "epoch milliseconds outside the years 2000-2099", field)
        seconds, micro = divmod(round(value * 1000), 1_000_000)
        when = datetime.fromtimestamp(seconds, UTC)
    else:
        raise Problem(422, "bad_timestamp", "want an ISO-8601 string or epoch milliseconds", field)
    # formatting the fields: about twice as fast as isoformat(timespec=...) on the hot path
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
            f".{micro:06d}Z")


def validate_event(obj: Any, prefix: str = "", keep_query: bool = False) -> dict:
    """A parsed JSON value -> the event to store (without received_at); 422 naming the field otherwise.
    ``metadata.path`` loses its query string and fragment unless ``keep_query``."""
    if not isinstance(obj, dict):
        raise Problem(422, "not_object", f"an event must be a JSON object, not {_json_type(obj)}", prefix or None)
    visitor = obj.get("visitor_id")
    if not isinstance(visitor, str):
        raise _missing_or_type(obj, "visitor_id", "a string", prefix)
    if not VISITOR_ID.fullmatch(visitor):
        raise Problem(422, "invalid", "visitor_id must be 1-128 characters of A-Z a-z 0-9 _ -",
                      prefix + "visitor_id")
    event = obj.get("event")
    if not isinstance(event, str):
        raise _missing_or_type(obj, "event", "a string", prefix)
    if not EVENT_NAME.fullmatch(event):
        raise Problem(422, "invalid", "event must be 1-64 characters of a-z 0-9 _ . : -", prefix + "event")
    out = {"visitor_id": visitor, "event": event}
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        ts = check_timestamp(timestamp, prefix + "timestamp")
        out["timestamp"] = timestamp
        out["ts"] = ts
    rate = obj.get("sample_rate")
    if rate is not None:
        out["client_rate"] = _check_rate(rate, prefix + "sample_rate")
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Problem(422, "type", f"metadata must be an object, not {_json_type(metadata)}",
                          prefix + "metadata")
        if metadata:
            _check_container(metadata, prefix + "metadata", 0, [MAX_ITEMS])
            if not keep_query:
                path = metadata.get("path")
                if type(path) is str and ("?" in path or "#" in path):
                    metadata["path"] = without_query(path)
        out["metadata"] = metadata
    return out


def without_query(path: str) -> str:
    """``path`` up to its query string or fragment: ``/a/b?token=x#y`` -> ``/a/b``."""
    return path.partition("?")[0].partition("#")[0]


def _check_rate(value: Any, field: str) -> float:
    """The client's declared sampling rate: a number, MIN_RATE <= r <= 1 (usable_rate, inlined: the hot path)."""
    if (type(value) is float or type(value) is int) and MIN_RATE <= value <= 1:
        return float(value)
    if type(value) is not float and (type(value) is not int):
        raise Problem(422, "type", f"sample_rate must be a number, not {_json_type(value)}", field)
    raise Problem(422, "out_of_range", f"sample_rate must be at least {MIN_RATE:g} and at most 1 (the share the "
                  "client kept)", field)


def _missing_or_type(obj: dict, name: str, want: str, prefix: str) -> Problem:
    if name not in obj:
        return Problem(422, "missing", f"{name} is required", prefix + name)
    return Problem(422, "type", f"{name} must be {want}, not {_json_type(obj[name])}", prefix + name)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def encode_record(event: dict, received_at: str, server_rate: float = 1.0) -> bytes:
    """The stored line: the validated event plus both sampling rates, the receive time and ``ts``, one JSON object
    and a newline."""
    record = dict(event)
    if "client_rate" not in record:
        record["client_rate"] = 1.0
    record["server_rate"] = server_rate
    record["received_at"] = received_at
    record["ts"] = record.pop("ts", received_at)
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
