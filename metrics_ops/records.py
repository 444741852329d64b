"""The stored record as a reader decodes it: a msgspec struct of only the fields a count needs, and whole blocks of
lines decoded into it at C speed, each line exactly as orjson reads it (the reference) or not at all.

:class:`Record` holds ``visitor_id`` and ``event`` (strings), ``client_rate`` and ``server_rate`` (numbers or
null, bools refused), ``received_at`` (any JSON value) and ``metadata`` (an object without ``test_run``, or any
other JSON value). Any key order, any other field (skipped unread), any of this project's
line shapes: serve's, the ones from before rates were stored, the seed system's.

:func:`runs` cuts a block of whole lines (:mod:`metrics_ops.lines`) into runs: ``(records, text)``, one record per
non-empty line of ``text`` in order, or ``(None, text)``: lines the caller must read the reference way (orjson
line by line, :func:`metrics_ops.tally._count_block`), which decides what a damaged line is. A run is decoded
(``Decoder.decode_lines``, one call per 256 KiB: the loop over lines in C) only when msgspec cannot read it
otherwise than orjson:

- msgspec does not check the UTF-8 of what it skips: a run is ASCII, or decodes as UTF-8 (orjson demands it);
- msgspec skips numbers unread, orjson refuses one beyond a float (``1e309``, 309 digits): a run holds no number
  with an exponent of three digits or more, nor a run of 210 digits (:func:`_huge_number`: a C translation of the
  text, then a few searches; a hit inside a string only costs speed);
- the run decodes as one record per line: as many records as newlines (a value spread over two lines, a blank or
  whitespace-only line, two objects on a line: not so);
- everything else msgspec refuses (invalid JSON, a ``visitor_id`` that is no string, a rate that is a bool or
  beyond a float, a line too deep) raises, and the line it names is read the reference way (the lines before it
  are decoded again without it). Where msgspec accepts, it reads what orjson reads (last of duplicate keys,
  escapes, surrogate pairs, big integers as floats for the rates): tests/test_records.py holds the two to the
  same totals over files of odd lines, and a property test over generated ones.

serve's own validation (:mod:`metrics_ops.events`) could later decode request bodies into a struct sharing these
field names; the reader needs only these few fields, tolerant of anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import msgspec

__all__ = ["UNSET", "Metadata", "Record", "runs"]

UNSET = msgspec.UNSET
_RUN = 1 << 18  # bytes decoded per call: a run stays in the CPU's cache while it is checked, decoded and counted
_CHUNK = 64  # lines per decode once a run has failed: a refused line costs at most this many lines decoded again


class Metadata(msgspec.Struct, frozen=True, gc=False):
    """``metadata`` (an object), its keys skipped. One holding ``test_run`` (test traffic, rare) does not decode:
    its line is read the reference way, which decides what is test traffic."""

    test_run: msgspec.UnsetType = UNSET


_NO_METADATA = Metadata()


class Record(msgspec.Struct, frozen=True, gc=False):
    """What a count needs of a stored line, hashable: a Counter counts the records themselves (in C). Missing rates
    are None, as ``dict.get`` gives them in the reference; metadata that is not an object (null included, rare)
    does not decode: its line is read the reference way."""

    visitor_id: str
    event: str
    client_rate: float | None = None
    server_rate: float | None = None
    metadata: Metadata = _NO_METADATA


class _Received(msgspec.Struct, gc=False):
    received_at: Any = None


_DECODER = msgspec.json.Decoder(Record)
_RECEIVED = msgspec.json.Decoder(_Received)
_AT = attrgetter("received_at")
_ERROR = (msgspec.DecodeError, RecursionError)  # ValidationError is a DecodeError
#: digits -> "0", e and E -> "e", what ends a number -> ",", anything else -> "x" ("+" is deleted)
_CANON = bytes(ord("0") if 48 <= b <= 57 else ord("e") if b in b"eE" else ord(",") if b in b",}] \t\r\n"
               else ord(".") if b == 46 else ord("x") for b in range(256))
_LONG = b"0" * 210
_EXPONENT = re.compile(rb"e000+,")  # canonical: an exponent of three digits or more (a literal first: quick)
#: a received_at on the calendar's first or last day may have no hour in a zone (a damaged line): as written
#: without escapes, ASCII, its text starts with one of these (strptime's %m and %d take "1" for "01")
_EDGE_DAYS = (b"0001-", b"9999-12-31")

Run = tuple[list[Record] | None, list | None, bytes]


def runs(block: bytes) -> Iterator[Run]:
    """``block`` (whole lines, each ending with a newline) as runs, in order: ``(records, received, text)``, one
    record per non-empty line of ``text``, and ``received`` their ``received_at`` values when one might be on
    the calendar's first or last day (else None); or ``(None, None, text)``: lines for the reference."""
    size, start = len(block), 0
    while start < size:
        end = size if size - start <= _RUN else block.rfind(b"\n", start, start + _RUN) + 1
        if end <= start:  # one line longer than a run
            end = block.find(b"\n", start + _RUN) + 1 or size
        text = block[start:end] if start or end < size else block
        start = end
        ascii = text.isascii()
        clean = _clean(text, ascii)
        found = _decoded(text, text.count(b"\n"), ascii) if clean else None
        if found is not None:
            yield found
        else:
            lines = [line for line in text.split(b"\n") if line]
            for at in range(0, len(lines), _CHUNK):
                yield from _chunk(lines[at:at + _CHUNK], clean)


def _decoded(text: bytes, lines: int, ascii: bool) -> Run | None:
    """The run of ``text`` (clean), one record per line, or None when it does not decode so."""
    try:
        records = _DECODER.decode_lines(text)
    except _ERROR:
        return None
    return _received(records, text, ascii) if len(records) == lines else None


def _received(records: list[Record], text: bytes, ascii: bool) -> Run | None:
    """The run, with the records' received_at when one might be on the calendar's first or last day: when the
    text holds an escape, is not ASCII (a digit of another script), or holds one of :data:`_EDGE_DAYS`."""
    if ascii and b"\\" not in text and not any(day in text for day in _EDGE_DAYS):
        return records, None, text
    try:
        received = list(map(_AT, _RECEIVED.decode_lines(text)))
    except _ERROR:
        return None
    return (records, received, text) if len(received) == len(records) else None


def _clean(text: bytes, ascii: bool) -> bool:
    """Valid UTF-8 without a number beyond a float (what msgspec would skip unchecked)."""
    if not ascii:
        try:
            text.decode()
        except UnicodeDecodeError:
            return False
    return not _huge_number(text)


def _huge_number(text: bytes) -> bool:
    """Whether ``text`` may hold a JSON number orjson refuses as infinite: 210 digits in a row, or an exponent of
    three digits or more (``e308``, ``E+0400``) ending where a number ends. A false alarm costs only speed."""
    canon = text.translate(_CANON, b"+")
    if _LONG in canon:
        return True
    return b"e000" in canon and any(canon[m.start() - 1] in b"0." for m in _EXPONENT.finditer(canon, 1))


def _chunk(lines: list[bytes], clean: bool) -> Iterator[Run]:
    """Lines of a run that did not decode whole (``clean``: known to be), each line msgspec refuses (or might read
    otherwise) on its own for the reference, the lines around it decoded."""
    while lines:
        text = b"\n".join(lines) + b"\n"
        bad = None
        if not clean:
            bad = next((i for i, line in enumerate(lines) if not _clean(line + b"\n", line.isascii())), None)
        if bad is None:
            try:
                records = _DECODER.decode_lines(text)
            except _ERROR as exc:
                bad = _failed_line(exc, text, len(lines))
                if bad is None:
                    yield None, None, text
                    return
            else:
                found = _received(records, text, text.isascii()) if len(records) == len(lines) else None
                yield found if found is not None else (None, None, text)  # a blank line, a value over two lines
                return
        if bad:
            yield from _chunk(lines[:bad], True)
        yield None, None, lines[bad] + b"\n"
        lines = lines[bad + 1:]


def _failed_line(exc: Exception, text: bytes, lines: int) -> int | None:
    """The line a decoding error names: ``$[i]`` for a record that is no :class:`Record`, ``(byte n)`` for invalid
    JSON, the last line for input cut short; None when it names none (then the whole chunk goes the reference
    way). A wrong guess costs speed only: the lines before it are decoded again and checked."""
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        at = message.rfind("`$[")
        if at >= 0:
            index = message[at + 3:message.find("]", at)]
            if index.isdigit() and int(index) < lines:
                return int(index)
        return None
    at = message.rfind("(byte ")
    if at >= 0 and message.endswith(")") and message[at + 6:-1].isdigit():
        byte = int(message[at + 6:-1])
        line = min(text.count(b"\n", 0, byte), lines - 1)
        start = text.rfind(b"\n", 0, byte) + 1
        if line and not text[start:byte].strip() and not text[:start - 1].rstrip().endswith(b"}"):
            line -= 1  # at the start of a line after one that did not end (a value left open)
        return line
    if "truncated" in message:
        return lines - 1
    return None
