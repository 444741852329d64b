"""The CSV the tool writes (``report --csv``, ``export --format csv``), safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (some also after a leading
tab or carriage return), so text from an event (a path, a metadata value, a visitor id) could make the reader's
spreadsheet fetch a URL or run a command: CSV injection. As OWASP recommends, a text cell that starts with one
of those characters is written with a single quote in front (``=HYPERLINK(...)`` -> ``'=HYPERLINK(...)``), which
spreadsheets show as text. Numbers the tool writes as numbers (counts, estimates, rates, a JSON number in
metadata) stay as they are: ``-3`` is data, not a formula. A program reading the CSV drops the leading ``'`` of a
text cell that starts with ``'`` followed by one of those characters to get the stored text back.

Rows end with ``\\n``; a row holding a carriage return anywhere in a text cell has every cell quoted (the csv
module quotes only the line terminator's characters, and a bare CR would start a new row, and a new cell, in a
spreadsheet).
"""

from __future__ import annotations

import csv
from typing import IO, Any

#: what a text cell may not start with (OWASP, "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows and never runs."""
    return "'" + text if text.startswith(FORMULA_START) else text


class SafeWriter:
    """csv.writer for the tool's CSV: text cells through :func:`text_cell`, numbers (and None: empty) as given."""

    def __init__(self, stream: IO[str]):
        self._minimal = csv.writer(stream, lineterminator="\n")
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, cells: list[Any], carriage: bool | None = None) -> None:
        """``carriage``: whether a cell may hold a CR (None: look; False only when the caller knows none does)."""
        row = ["'" + c if type(c) is str and c.startswith(FORMULA_START) else c for c in cells]
        if carriage is None:
            carriage = any(type(c) is str and "\r" in c for c in row)
        (self._quoted if carriage else self._minimal).writerow(row)
