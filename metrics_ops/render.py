"""One output convention for every command.

- a rich table on a terminal, plain tab-separated text when piped, one JSON document with ``--json``;
- ``-q``: nothing on success (cron mails only on trouble); errors always go to stderr, one line each;
- NO_COLOR is honoured; progress bars only on a terminal, never with --json or -q, and only once there is work.
rich is imported only when a table or a progress bar is actually drawn (start-up time).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _files(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"


def _human(n: int | None) -> str:
    """A size as ``ls -h`` shows it (1024 steps): 0, 900, 4.7K, 67K, 1.2M, 3.0G."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("", "K", "M", "G"):
        if size < 1024 or unit == "G":
            if not unit:
                return str(int(size))
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    return str(n)  # pragma: no cover


def _sizes(before: int | None, after: int | None) -> str:
    """before -> after, or the one that exists (a new file has no before, a planned one no after)."""
    if before is None or after is None:
        return _human(after if before is None else before)
    return f"{_human(before)} -> {_human(after)}"


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
        from metrics_ops.terminal import note

        note(self.stderr, line)

    def warn(self, line: str) -> None:
        if not self.quiet:
            self.error(line)

    def document(self, doc: Any) -> None:
        """The single JSON document of --json (always printed, even with -q: it was asked for)."""
        print(json.dumps(doc, indent=2, default=str), file=self.stdout)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              justify: Sequence[str] | None = None, whole: Sequence[str] = (),
              min_width: dict[str, int] | None = None, max_width: dict[str, int] | None = None,
              optional: dict[str, str] | None = None, drop_while: str = "broken") -> None:
        """A table on a terminal; piped, a header line and one tab-separated line per row.

        ``whole`` names the columns whose cells must never be broken across lines (file names, setting names,
        numbers): the other columns wrap at spaces, and after a "/" in a long path. ``optional`` columns (with the
        note the title gets instead) give way while the table is too wide (``drop_while``); piped, every column is
        there. The table has no vertical rules (see :func:`metrics_ops.terminal.table`).
        """
        if self.tty:
            from metrics_ops.terminal import table

            table(self.stdout, title, columns, rows, color=self.color, justify=justify, whole=whole,
                  min_width=min_width, max_width=max_width, optional=optional, drop_while=drop_while)
        else:
            print("\t".join(columns), file=self.stdout)
            for row in rows:
                print("\t".join("-" if v is None else str(v) for v in row), file=self.stdout)

    def progress(self, description: str, enabled: bool = True):
        """A byte progress bar on a terminal (stderr), else a no-op; use as a context manager."""
        if not enabled or self.json or self.quiet or not getattr(self.stderr, "isatty", lambda: False)():
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
        self._started = False

    def __exit__(self, *exc):
        if self._started:
            self._progress.stop()
        return False

    def add_total(self, n: int) -> None:
        """The bar appears with the first bytes to process: a pass with nothing to compress shows none."""
        if n <= 0:
            return
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=(task.total or 0) + n)
        if not self._started:
            self._started = True
            self._progress.start()

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


#: what each command calls its pass, and what it says when the pass has nothing to do
_PASS_WORDS = {
    ("rotate", "gzip", "prune", "budget"): ("rotate pass", "nothing to do"),
    ("rotate", "rollup", "gzip", "prune", "budget"): ("rotate pass", "nothing to do"),
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
    # Fit 80 columns without breaking a file name: the step is implied by the action (create, link: rotate;
    # gzip: gzip; delete: prune); a plan has no "after" and every status is "planned"; a pass shows the status
    # column only when an action was not done. --json has every field.
    if not out.tty:  # piped: every field, one line per action under a header line, for scripts
        columns = ("step", "action", "file", "before", "after", "status", "detail")
        rows = [(a.step, a.kind, a.file, _human(a.bytes_before), _human(a.bytes_after), a.status,
                 a.error or a.detail) for a in result.actions]
    elif result.dry_run:
        columns = ("action", "file", "size", "detail")
        rows = [(a.kind, a.file, _human(a.bytes_before), a.error or a.detail) for a in result.actions]
    else:
        with_status = any(a.status != "done" for a in result.actions)
        columns = ("action", "file", "size", "status", "detail") if with_status else ("action", "file", "size",
                                                                                      "detail")
        rows = [(a.kind, a.file, _sizes(a.bytes_before, a.bytes_after), *((a.status,) if with_status else ()),
                 a.error or a.detail) for a in result.actions]
    command, nothing = _PASS_WORDS.get(tuple(result.steps), (" + ".join(result.steps), "nothing to do"))
    title = f"{'plan (dry run) of ' if result.dry_run else ''}{command} for {result.day}"
    if rows:
        out.table(title, columns, rows, ["right" if c == "size" else "left" for c in columns],
                  whole=("action", "file", "size", "status"), min_width={"detail": 12})
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
    for line in getattr(result, "notes", ()):  # forget: the rollups it could not recount
        out.warn(line)


def _names(names: list[str], shown: int = 3) -> str:
    if not names:
        return "nothing"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)}: " + ", ".join(names[:shown]) + more


def _status_rows(report) -> list[tuple[str, str, str]]:
    """metrics-ops status as (section, item, value) rows."""
    from zoneinfo import ZoneInfo

    from metrics_ops.health import when

    zone = ZoneInfo(report.zone)
    rows = []
    inv = report.inventory
    if inv is not None:
        span = f" ({inv.oldest} .. {inv.newest})" if inv.days else ""
        rows += [("data", "days", f"{len(inv.days)}{span}"),
                 ("data", "plain", f"{_files(inv.plain_files)}, {_human(inv.plain_bytes)}"),
                 ("data", "archived", f"{_files(inv.archived_files)}, {_human(inv.archived_bytes)}"),
                 ("data", "shards", _files(inv.shard_files))]
        if inv.aside_files:
            rows.append(("data", "set aside", f"{_files(inv.aside_files)}, {_human(inv.aside_bytes)}"))
        if inv.rollup_files:
            rows.append(("data", "rollups", f"{_files(inv.rollup_files)}, {_human(inv.rollup_bytes)}"))
        rows.append(("data", "total", _human(inv.total_bytes)))
    if report.usage is not None:
        u = report.usage
        rows.append(("disk", "free", f"{_human(u.free)} of {_human(u.total)} ({u.free_percent:.0f} %)"))
        if report.max_total is not None:
            used = 100 * inv.total_bytes / report.max_total
            rows.append(("disk", "max total", f"{_human(report.max_total)} ({used:.0f} % used)"))
        if report.min_free is not None:
            rows.append(("disk", "min free", f"{_human(report.min_free)} (budget floor)"))
        rows.append(("disk", "serve floor", _human(report.serve_floor) if report.serve_floor else "off"))
    last = report.last_pass
    if last is not None:
        ago = report.now - last.time
        rows += [("last pass", "when", f"{when(last.time, zone)} ({ago:.0f} s ago)"),
                 ("last pass", "result", last.result + (f": {last.message}" if last.message else "")),
                 ("last pass", "last success", when(last.last_success, zone) if last.last_success else "never")]
        if last.archive:
            waiting = f"{_files(last.archive_waiting_files)} of {last.archive_waiting_days} day(s)" + (
                f", the oldest {last.archive_oldest_waiting}" if last.archive_oldest_waiting else "")
            rows += [("archive", "waiting", waiting), ("archive", "conflicts", str(last.archive_conflicts))]
    else:
        rows.append(("last pass", "when", "none recorded"))
    nxt = report.next_pass
    if nxt is not None:
        due = "now" if nxt.at <= report.now else f"{when(nxt.at, zone)} (in {nxt.at - report.now:.0f} s)"
        rows += [("next pass", "when", due), ("next pass", "compress", _names(nxt.compress)),
                 ("next pass", "delete", _names(nxt.delete)),
                 ("next pass", "budget deletes", _names(nxt.budget_delete))]
    if report.serve is not None:
        srv = report.serve
        health = ("unreachable" if not srv.get("reachable") else
                  "ok" if srv.get("healthz") == 200 else
                  f"{srv.get('healthz')}: {srv.get('reason')}" + (f" ({srv['detail']})" if srv.get("detail") else ""))
        rows.append(("serve", "healthz", health))
        for name, value in srv.get("counters", {}).items():
            rows.append(("serve", name, f"{value:,}"))
    return rows


def render_status(out: Output, report) -> None:
    """metrics-ops status: one screen; every line needing attention also on stderr."""
    for line in report.attention:
        out.error(line)
    if out.json:
        out.document(report.to_dict())
        return
    if out.quiet:
        return
    title = f"{report.directory}: {'everything fine' if report.ok else 'needs attention'}"
    rows = _status_rows(report)
    if out.tty:  # a section's name once, at its first row; piped, every line names its section (for grep)
        rows = [("" if i and rows[i - 1][0] == row[0] else row[0], *row[1:]) for i, row in enumerate(rows)]
    out.table(title, ("section", "item", "value"), rows, whole=("section", "item"))


def _number(x: float) -> str:
    return f"{x:,.0f}"


def render_report(out: Output, result, csv_format: bool = False) -> None:
    """report: a table (and a bar chart of the daily estimates on a terminal), tab-separated when piped, CSV with
    --csv, one JSON document with --json; notes and problems on stderr."""
    for line in result.problems:
        out.error(f"damaged: {line}")
    if out.json:
        _report_json(out, result)
    elif csv_format:
        from metrics_ops.csvcells import SafeWriter

        rows = [r.to_dict() for r in result.rows]
        columns = [*result.by, "events", "visitors", "estimate", "low", "high", "partial", "approximate"]
        writer = SafeWriter(out.stdout)  # a path or an event name is text from the data: never a formula
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c, "") for c in columns])
    else:
        _report_table(out, result)
    if not out.json:
        for note in result.notes:
            out.warn(note)


def _report_json(out: Output, result) -> None:
    """The document of :meth:`Output.document`, its rows written one at a time (orjson): a report of 200,000
    event names holds neither 200,000 row dicts nor the pure-Python encoder's pieces of them at once."""
    import orjson

    head, tail = json.dumps(result.to_dict(rows=False), indent=2, default=str).split('"rows": []', 1)
    write = out.stdout.write
    write(head + '"rows": [')
    for i, row in enumerate(result.rows):
        text = orjson.dumps(row.to_dict(), option=orjson.OPT_INDENT_2).decode().replace("\n", "\n    ")
        write(("," if i else "") + "\n    " + text)
    write(("\n  ]" if result.rows else "]") + tail + "\n")


def _report_table(out: Output, result) -> None:
    """On a terminal a row that may count too few shows ``~`` before its events; piped, an ``approximate`` column
    appears when any row or the ranking is approximate."""
    title = (f"report {result.since} .. {result.until}{', event ' + result.event if result.event else ''}"
             f"{' (approximate: see notes)' if result.approximate else ''}")  # one line: the columns say the grouping
    columns = [*result.by, "events", "visitors", "estimate", "95% interval"]
    rows = []
    for r in result.rows:
        keys = [r.keys[k] + (" *" if k == "day" and r.partial and out.tty else "") for k in result.by]
        visitors = "?" if r.est.visitors is None else _number(r.est.visitors)
        rows.append([*keys, ("~" if r.approximate else "") + _number(r.est.events), visitors,
                     _number(r.est.estimate), f"{_number(r.est.low)}-{_number(r.est.high)}"])
    if not out.tty:  # piped: plain numbers for scripts
        extra = ["approximate"] if result.approximate else []
        columns = [*result.by, "events", "visitors", "estimate", "low", "high", *extra]
        rows = [[*(r.keys[k] for k in result.by), r.est.events, "-" if r.est.visitors is None else r.est.visitors,
                 round(r.est.estimate, 1), round(r.est.low, 1), round(r.est.high, 1),
                 *(["yes" if r.approximate else "no"] if extra else [])] for r in result.rows]
    if not rows:
        print(f"{title}: no events", file=out.stdout if out.tty else out.stderr)
        return
    # event names and paths wrap (after a "/" or "_"), the numbers never; when the names would not fit whole, the
    # event column of a report of one event (the title names it) gives way, then the interval (--csv has it)
    optional = {"event": ""} if result.event else {}
    out.table(title, columns, rows, ["left"] * len(result.by) + ["right"] * 4 + ["left"] * (len(columns) - len(
        result.by) - 4), whole=tuple(c for c in columns if c not in ("event", "path")),
              optional={**optional, "95% interval": "95% intervals: see --csv"}, drop_while="squeezed")
    if out.tty and len(result.daily()) > 1:
        _daily_chart(out, result.daily())


def _daily_chart(out: Output, series, width: int = 40) -> None:
    """One bar per day, scaled to the largest estimate; partial days marked ``*``."""
    top = max((v for _, v, _ in series), default=0.0) or 1.0
    print("estimate per day (* still being written)", file=out.stdout)
    for day, value, partial in series:
        bar = "█" * int(round(value / top * width))
        print(f"{day.isoformat()}{'*' if partial else ' '} {bar:<{width}} {_number(value)}", file=out.stdout)
