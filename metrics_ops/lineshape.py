"""The shape of the lines serve writes, and pulling the fields a count needs out of a whole block at C speed.

serve stores every event as ``orjson.dumps`` of one dict in a fixed key order (:func:`metrics_ops.events.
encode_record`)::

    {"visitor_id":"V","event":"E"[,"timestamp":T][,"metadata":{...}],"client_rate":C,"server_rate":S,
     "received_at":"R","ts":"Q"}

(``"client_rate":C`` comes before the metadata when the browser declared a rate.) One regular expression over
a block of such lines (``re.split``: the loop over lines runs in C) yields two columns of bytes,
``V","event":"E`` and the members between (metadata and rates), which :class:`collections.Counter` counts
over ``zip()`` (in C too) instead of a Python loop per line.

The shortcut must never change an answer, so a block takes it only when every one of its lines has the shape and
what the expression does not check is checked another way:

- the block holds no backslash (no JSON escape: every ``"..."`` is the string's value as it stands) and is valid
  UTF-8 (which orjson demands);
- the block is nothing but matches (nothing between two matches), and holds no control character but the
  newline that ends each match (JSON forbids them raw inside strings; so no match spans two lines): no empty
  line, no other key, order or spacing;
- a ``received_at`` on the calendar's first or last day (:data:`EDGE_DAYS`) does not match: whether its hour
  exists in the report's zone is decided the general way (a negative lookahead costs nothing measurable, where a
  search of the block for those days cost a third of the expression's time);
- what the expression takes as it stands, the metadata object (a nested object or a ``}`` inside a string does
  not match) and the rates (any JSON values without a comma), is parsed by orjson once per distinct value
  (:func:`members`): invalid JSON, or anything but those keys, sends the block the general way. What a rate is
  worth is decided for both ways by the same rule.

Any block that fails a check is read the general way (orjson line by line), which stays the reference.
"""

from __future__ import annotations

import re
from functools import cache

_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
#: control characters, newline included: JSON forbids them raw inside strings, so a block may hold none but the
#: newline that ends each line (counting them by deleting them with bytes.translate is 10x quicker than a regex
#: search, and counts the newlines too)
_CONTROL = bytes(range(32))

# the columns of :func:`columns`
VISITOR_EVENT, MEMBERS = range(2)


#: what separates the visitor from the event in a record's first column (neither can hold a quote)
SEPARATOR = b'","event":"'
#: the calendar's first and last day: a UTC hour there may have no hour in a zone east or west of UTC (a damaged
#: line), so a block holding a ``received_at`` of these days is read the general way, which decides
EDGE_DAYS = rb"9999-12-31T|0001-01-01T"


@cache
def _pattern() -> re.Pattern[bytes]:
    """The expression of one line with its newline. ``[^"]*`` and ``[^}]*`` are the quick loops of Python's
    regex engine; the visitor and the event are one capture (one bytes object per line to count), the metadata
    and the rates another (serve writes a client's declared rate before the metadata, its default one after)."""
    metadata = rb'(?:"metadata":\{[^}]*\},)?'
    return re.compile(
        rb'\{"visitor_id":"([^"]*' + SEPARATOR + rb'[^"]*)",'
        rb'(?:"timestamp":(?:"[^"]*"|' + _NUMBER + rb'),)?'
        rb'(' + metadata + rb'"client_rate":[^,]*,' + metadata + rb'"server_rate":[^,]*),'
        rb'"received_at":"(?!' + EDGE_DAYS + rb')[^"]*","ts":"[^"]*"\}\n')


def columns(block: bytes) -> list[list] | None:
    """The fields of every line of ``block`` (whole lines, each ending with a newline) as two columns with one
    item per line: ``V","event":"E`` (see :func:`visitor_event`) and the members ``"metadata":{...}`` (when
    there), ``"client_rate":C`` and ``"server_rate":S`` as written (see :func:`members`), all bytes; None when
    any line is not of serve's shape (or the block is empty): then the caller reads the block line by line.

    ``re.split`` rather than ``findall``: it returns the captures as one flat list (no tuple per line, 30 %
    quicker) and what lies between matches, which must all be empty: the block is nothing but matches. Each
    match ends with a newline, so when the block holds as many control characters as matches, none is inside a
    line: no raw control character in a string, and no match spanning two lines."""
    if not block or b"\\" in block:  # a JSON escape: the strings are not their values as written
        return None
    pieces = _pattern().split(block)
    lines = (len(pieces) - 1) // 3
    if not lines or any(pieces[::3]) or len(block) - len(block.translate(None, _CONTROL)) != lines:
        return None  # a line of another shape (or an empty line), a control character in a line
    if not block.isascii():
        try:
            block.decode()  # orjson demands valid UTF-8
        except UnicodeDecodeError:
            return None
    return [pieces[1::3], pieces[2::3]]


def members(text: bytes) -> dict | None:
    """The second column's ``"client_rate":C,...`` as a dict of exactly ``client_rate``, ``server_rate`` and
    maybe ``metadata`` (an object), as orjson reads them in the line; None when that is not what it holds
    (invalid JSON, a rate holding an object that swallowed the other key)."""
    import orjson

    try:
        found = orjson.loads(b"{" + text + b"}")
    except orjson.JSONDecodeError:
        return None
    if "client_rate" not in found or "server_rate" not in found or len(found) != 2 + ("metadata" in found):
        return None
    return found


def visitor_event(first: bytes) -> tuple[str, str]:
    """``V","event":"E`` -> (V, E)."""
    visitor, _, event = first.partition(SEPARATOR)
    return visitor.decode(), event.decode()
