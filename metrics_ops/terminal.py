"""Output that fits the terminal it goes to.

A line breaks at spaces; a word longer than the line (a path, a URL) breaks after a ``/``, so a name is never cut
in two (only a single name longer than the whole line is). Notes on stderr, a table's title and the cells of a
table's wrapping columns all break this way, and a table leaves out its optional columns (config show's
environment names, sample-test's counts) rather than break a whole column. Piped output is not touched: one
line per note and per row, for scripts and logs. rich is imported only when a table is drawn.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

PREFIX = "metrics-ops: "
CONTINUATION = "  "  # the indent of a note's continued lines
_NAMES = re.compile(r"[^/]*/+|[^/]+")  # a path's names, each with the slashes that follow it
_PARTS = re.compile(r"[^-_.:,]*[-_.:,]+|[^-_.:,]+")  # a name's parts (metrics-2026-11-20.jsonl, signup_done)


def width_of(stream) -> int | None:
    """The columns of the terminal ``stream`` writes to, or None when it is not a terminal. COLUMNS wins, as it
    does for click and rich."""
    try:
        if not stream.isatty():
            return None
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    text = os.environ.get("COLUMNS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return os.get_terminal_size(fd).columns or None
    except OSError:
        return None


def cells(text: str) -> int:
    """The columns ``text`` takes on a terminal (a wide character takes two)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _cut(part: str, width: int) -> tuple[str, str]:
    """``part`` cut after ``width`` columns (at least one character, so that it ends)."""
    if part.isascii():
        return part[:width], part[width:]
    n = next((i for i in range(1, len(part) + 1) if cells(part[:i]) > width), len(part) + 1) - 1
    return part[:max(n, 1)], part[max(n, 1):]


def _pieces(word: str, width: int) -> list[str]:
    """A word longer than ``width`` in as few lines as fit, broken after a ``/``; a name longer than a line
    breaks after a ``-``, ``_``, ``.``, ``:`` or ``,``, and is cut only where a part is longer than a line."""
    lines, line = [], ""
    for name in _NAMES.findall(word):
        for part in [name] if cells(name) <= width else _PARTS.findall(name):
            if cells(line) + cells(part) > width and line:
                lines.append(line)
                line = ""
            while cells(part) > width:
                head, part = _cut(part, width)
                lines.append(head)
            line += part
    return lines + ([line] if line else [])


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces (a word that does not fit on the line it
    would end starts the next one, where it fits whole if it can); continued lines start with ``indent``."""
    width = max(width, len(indent) + 8)
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and cells(line) + 1 + cells(word) <= width:
            line += " " + word
            continue
        if line:
            lines.append(line)
        lead = indent if lines else ""
        parts = _pieces(word, width - len(lead))
        lines += [lead + part for part in parts[:-1]]
        line = lead + parts[-1]
    return lines + [line] if line or not lines else lines


def fit(text: str, width: int | None) -> str:
    """A note (``metrics-ops: ...``) as it should be written: wrapped on a terminal, one line otherwise."""
    return text if width is None else "\n".join(wrap(text, width, CONTINUATION))


def note(stream, text: str) -> None:
    """One note on ``stream`` (stderr): ``metrics-ops: text``, wrapped to the terminal's width."""
    print(fit(PREFIX + text, width_of(stream)), file=stream)


def narrowest(text: str, parts: bool = True) -> int:
    """The narrowest column :func:`wrap` can put ``text`` in without cutting a part of a name (``parts``), or
    without breaking a name at all."""
    names = [name for word in text.split() for name in _NAMES.findall(word)]
    return max((cells(p) for name in names for p in (_PARTS.findall(name) if parts else [name])), default=0)


class Cell:
    """A table cell that breaks as :func:`wrap` does (rich breaks a long word anywhere). ``parts``: whether a
    table may make its column narrower than a whole name of it (then the name breaks after a - _ . : ,)."""

    def __init__(self, text: str, parts: bool = True):
        self.text, self.parts = text, parts

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement(min(narrowest(self.text, self.parts), options.max_width),
                           min(cells(self.text), options.max_width))

    def __rich_console__(self, console, options):
        from rich.text import Text

        yield Text("\n".join(wrap(self.text, options.max_width)), justify=options.justify, no_wrap=True,
                   overflow="crop", end="")


def table(stream, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, color: bool,
          justify: Sequence[str] | None = None, whole: Sequence[str] = (), min_width: dict[str, int] | None = None,
          max_width: dict[str, int] | None = None, optional: dict[str, str] | None = None,
          drop_while: str = "broken") -> None:
    """A rich table on a terminal: ``whole`` columns never break (file and setting names, numbers), the others
    break as :func:`wrap` does. The ``optional`` columns are left out in their order, each adding its note (if
    any) to a line under the table, while the table is wider than the terminal: unbroken (``drop_while=
    "broken"``: room for whole paths first), or even with its cells broken (``"squeezed"``: a whole column would
    be cut). The title breaks as a note does."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, no_color=not color, highlight=False)
    shown, notes = list(columns), []
    while True:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
        for col in shown:
            keep = col in whole
            t.add_column(col, justify=(justify[columns.index(col)] if justify else "left"), no_wrap=keep,
                         overflow="ellipsis" if keep else "fold", min_width=(min_width or {}).get(col),
                         max_width=(max_width or {}).get(col))
        wrapping: list[Cell] = []  # measured with their names whole, to decide; drawn breaking names if need be
        for row in rows:
            cells = {col: "" if v is None else str(v) for col, v in zip(columns, row, strict=True)}
            wrapping += [Cell(cells[col], parts=False) for col in shown if col not in whole]
            it = iter(wrapping[len(wrapping) - sum(col not in whole for col in shown):])
            t.add_row(*(cells[col] if col in whole else next(it) for col in shown))
        left = [col for col in (optional or {}) if col in shown]
        unbounded = Measurement.get(console, console.options.update_width(1 << 20), t)
        if not left or (unbounded.maximum if drop_while == "broken" else unbounded.minimum) <= console.width:
            break
        shown.remove(left[0])
        notes += [optional[left[0]]] if optional[left[0]] else []
    for cell in wrapping:
        cell.parts = True
    for line in wrap(title, console.width):
        console.print(Text(line, style="table.title"), no_wrap=True, overflow="crop")
    console.print(t)
    for line in wrap("; ".join(notes), console.width) if notes else ():
        console.print(Text(line, style="table.caption"), no_wrap=True, overflow="crop")
