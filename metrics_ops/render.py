"""One output convention for every command.

- a rich table on a terminal, plain tab-separated text when piped, one JSON document with ``--json``;
- ``-q``: nothing on success (cron mails only on trouble); errors always go to stderr, one line each;
- NO_COLOR is honoured; progress bars only on a terminal, never with --json or -q.
rich is imported only when a table or a progress bar is actually drawn (start-up time).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


@dataclass
class Output:
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    stdout: Any = None
    stderr: Any = None

    def __post_init__(self):
        self.stdout = self.stdout or sys.stdout
        self.stderr = self.stderr or sys.stderr

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def color(self) -> bool:
        return self.tty and "NO_COLOR" not in os.environ

    def error(self, line: str) -> None:
        print(f"metrics-ops: {line}", file=self.stderr)

    def warn(self, line: str) -> None:
        if not self.quiet:
            print(f"metrics-ops: {line}", file=self.stderr)

    def document(self, doc: Any) -> None:
        """The single JSON document of --json (always printed, even with -q: it was asked for)."""
        print(json.dumps(doc, indent=2, default=str), file=self.stdout)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              justify: Sequence[str] | None = None) -> None:
        if self.tty:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title, title_justify="left")
            for i, col in enumerate(columns):
                t.add_column(col, justify=(justify[i] if justify else "left"), overflow="fold")
            for row in rows:
                t.add_row(*("" if v is None else str(v) for v in row))
            Console(file=self.stdout, no_color=not self.color, highlight=False).print(t)
        else:
            for row in rows:
                print("\t".join("-" if v is None else str(v) for v in row), file=self.stdout)

    def progress(self, description: str):
        """A byte progress bar on a terminal (stderr), else a no-op; use as a context manager."""
        if self.json or self.quiet or not getattr(self.stderr, "isatty", lambda: False)():
            return _NoProgress()
        return _RichProgress(description, self.stderr)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_total(self, n: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class _RichProgress(_NoProgress):
    def __init__(self, description: str, stream):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(file=stream, no_color="NO_COLOR" in os.environ),
            transient=True,
        )
        self._task = self._progress.add_task(description, total=0)

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()
        return False

    def add_total(self, n: int) -> None:
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=(task.total or 0) + n)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


#: what each command calls its pass, and what it says when the pass has nothing to do
_PASS_WORDS = {
    ("rotate", "gzip", "prune"): ("rotate pass", "nothing to do"),
    ("gzip",): ("gzip", "nothing to compress"),
    ("prune",): ("prune", "nothing to delete"),
    ("forget",): ("forget", "no file holds events of these visitors"),
}


def render_pass(out: Output, result) -> None:
    """A maintenance pass: the actions table, what was left alone, errors on stderr."""
    for a in result.actions:
        if a.status == "failed":
            out.error(f"{a.step} {a.kind} {a.file}: {a.error}")
    for line in result.errors:
        out.error(line)
    if out.json:
        out.document(result.to_dict())
        return
    if out.quiet and result.ok:
        return
    rows = [(a.step, a.kind, a.file, _human(a.bytes_before), _human(a.bytes_after),
             a.status, a.error or a.detail) for a in result.actions]
    command, nothing = _PASS_WORDS.get(tuple(result.steps), (" + ".join(result.steps), "nothing to do"))
    title = f"{'plan (dry run) of ' if result.dry_run else ''}{command} for {result.day}"
    if rows:
        out.table(title, ("step", "action", "file", "before", "after", "status", "detail"), rows,
                  ("left", "left", "left", "right", "right", "left", "left"))
    elif not out.quiet:
        print(f"{title}: {nothing}", file=out.stderr if not out.tty else out.stdout)
    if result.unknown and not out.quiet:
        shown = ", ".join(result.unknown[:10]) + (f" and {len(result.unknown) - 10} more"
                                                   if len(result.unknown) > 10 else "")
        out.warn(f"left alone (names outside the file grammar): {shown}")
    if out.verbose:
        for name, why in result.kept:
            out.warn(f"kept {name}: {why}")
    if result.interrupted:
        out.warn("stopped by a signal after the action in progress; the next pass finishes the rest")
