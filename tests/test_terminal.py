"""What an operator sees on an 80-column terminal (a real pty, the real CLI, no COLUMNS: the width comes from the
terminal) and what a pipe gets. Every --help, table and note on stderr fits 80 columns; no name is split: a path
longer than the room breaks after a "/", a table leaves out its optional columns rather than break a whole one."""

import http.server
import json
import re
import sys
import threading
from datetime import UTC, datetime, timedelta

import click
import pytest

from metrics_ops.cli import cli
from metrics_ops.config import Settings, env_name
from metrics_ops.terminal import wrap

from .helpers import console_script, free_port, run_in_pty, wait_healthy, write_lines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: a temporary directory as long as CI's (/tmp/metrics-ops-ci.XXXXXX/pt-latest/test_x0/...)
CI_LIKE = "metrics-ops-ci.k3J9xQ/pt-latest/test_the_operator_reads_it_at_80_0"


def screen(*args, columns=80, env=None, **stop) -> tuple[int, list[str]]:
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    code, text = run_in_pty([exe, *args], columns=columns, env=env, **stop)
    return code, ANSI.sub("", text).splitlines()


def cells(lines: list[str]) -> set[str]:
    """Every whitespace-separated word on the screen: a name broken across lines is not among them whole."""
    return {word for line in lines for word in line.split()}


def fits(lines: list[str], width: int = 80) -> bool:
    return all(len(line) <= width for line in lines)


def _path_from(lines: list[str], i: int, col: int, rest: str) -> bool:
    """Whether ``rest`` reads from line ``i``, column ``col`` on: whole, or up to a "/" that ends the line's text
    there and goes on below, in the same column (a table cell) or at a note's indent."""
    text = lines[i][col:] if i < len(lines) else ""
    if text.startswith(rest) and text[len(rest):len(rest) + 1] in ("", " ", ":", ",", ")", ";", "'", "\""):
        return True
    cuts = [k for k in range(1, len(rest)) if rest[k - 1] == "/" and text[:k] == rest[:k]
            and text[k:k + 1] in ("", " ")]
    return any(_path_from(lines, i + 1, c, rest[k:]) for k in cuts for c in {col, 2})


def assert_whole_path(lines: list[str], path: str) -> None:
    """``path`` is on the screen with every name whole: on one line, or broken only right after a "/" (the rest
    below it, in its table column or at a note's indent)."""
    first = re.match(r"/?[^/]*/?", path).group()
    starts = [(i, m.start()) for i, line in enumerate(lines) for m in re.finditer(re.escape(first), line)]
    assert any(_path_from(lines, i, c, path) for i, c in starts), (
        f"{path} is not whole on the screen:\n" + "\n".join(lines))


def _days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


@pytest.fixture
def busy_dir(data_dir):
    names = [f"metrics-{_days_ago(n)}.jsonl" for n in (3, 4, 5, 40)] + [f"metrics-{_days_ago(5)}.1.jsonl"]
    for name in names:
        write_lines(data_dir / name, "page_view", 500)
    (data_dir / f"metrics-{_days_ago(0)}.jsonl").write_text("")
    (data_dir / f"metrics-{_days_ago(0)}.1.jsonl").write_text("")  # the link's target: the longest name
    return data_dir, names + [f"metrics-{_days_ago(0)}.1.jsonl"]


@pytest.fixture
def ci_dir(tmp_path):
    """A data directory whose path is as long as CI's temporary directories make it (about 100 characters)."""
    d = tmp_path / CI_LIKE / "data"
    d.mkdir(parents=True)
    return d


# ------------------------------------------------------------------------------------------ --help
def _command_paths():
    out = [()]
    for name, cmd in sorted(cli.commands.items()):  # the probe alias too
        out.append((name,))
        for sub in sorted(getattr(cmd, "commands", {})):
            out.append((name, sub))
    return out


def _examples(cmd: click.Command) -> list[str]:
    text = cmd.help or ""
    block = text.split("\b", 1)[1] if "\b" in text else ""
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().endswith(":")]


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "metrics-ops")
def test_every_help_fits_80_columns_with_its_examples_whole(path):
    code, lines = screen(*path, "--help")
    assert code == 0, lines
    assert fits(lines), [line for line in lines if len(line) > 80]
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]
    shown = {line.strip() for line in lines}
    assert [e for e in _examples(cmd) if e not in shown] == []  # each example on one line of its own


# ------------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize("dry_run", [True, False], ids=["plan", "pass"])
def test_rotate_table_keeps_every_file_name_whole_at_80_columns(busy_dir, dry_run):
    data_dir, names = busy_dir
    code, lines = screen("--data-dir", data_dir, "rotate", "--once", *(["--dry-run"] if dry_run else []))
    assert code == 0, lines
    assert fits(lines), lines
    assert set(names) <= cells(lines), "\n".join(lines)
    assert not [line for line in lines if "0/0" in line]


def test_no_progress_bar_when_there_is_nothing_to_compress(data_dir):
    for args in (["rotate", "--once"], ["gzip"], ["rotate", "--once"]):
        code, lines = screen("--data-dir", data_dir, *args)
        assert code == 0
        assert not [line for line in lines if "compressing" in line or "bytes" in line], lines


def _table_rows(lines: list[str], header: str) -> list[list[str]]:
    """The rows under a table's header and rule, split at runs of 2+ spaces (a cell holds single spaces)."""
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [header])
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(re.split(r" {2,}", line.strip()))
    return rows


def test_sample_test_table_has_one_line_per_row_at_80_columns():
    code, lines = screen("sample-test", "--seed", "1", "--events", "300")
    assert code == 4
    assert fits(lines), lines
    assert lines[0].startswith("sampling test") and "300" in lines[0]  # the title: one line
    header = lines[2].split()
    rows = _table_rows(lines, "pair")
    assert len(rows) == 6 and all(len(row) == len(header) - 1 for row in rows), rows  # "99.9% interval": 2 words
    assert [row[0] for row in rows] == ["standard 1 x 1", "standard 0.5 x 1", "standard 1 x 0.5",
                                        "standard 0.5 x 0.5", "standard 0.25 x 0.5", "configured 1 x 1"]
    intervals = re.findall(r"\[\d\.\d{4}, \d\.\d{4}\]", "\n".join(lines))
    assert len(intervals) == 4  # whole on one line each: the 0.5, 0.5, 0.25 and 0.125 rows
    assert "metrics-ops: INCONCLUSIVE: about 6768 events per row would decide within +-0.02" in lines


def test_sample_test_with_per_event_rates_and_odd_rates_keeps_one_line_per_row():
    env = {"METRICS_SAMPLE_RATES": '{"newsletter_signup": 0.5, "page_view": 0.125}',
           "METRICS_CLIENT_SAMPLE_RATE": "0.3333"}
    code, lines = screen("sample-test", "--seed", "2", "--events", "20000", "--mode", "visitor", env=env)
    assert code in (0, 4), lines
    assert fits(lines), lines
    rows = _table_rows(lines, "pair")
    assert [row[0] for row in rows][-3:] == ["configured 0.3333 x 1", "event newsletter_signup", "event page_view"]
    assert len({len(row) for row in rows}) == 1, rows  # every row whole on its line: the same number of cells


def test_config_show_keeps_setting_names_and_paths_whole_at_80_columns(ci_dir):
    code, lines = screen("config", "show", env={"METRICS_DIR": str(ci_dir)})
    assert code == 0
    assert fits(lines), lines
    words = cells(lines)
    assert set(Settings.fields) <= words
    assert "environment variables: METRICS_ and the setting in capitals" in lines  # the column that gave way
    for path in (ci_dir, ci_dir / "metrics.jsonl", ci_dir / ".metrics-ops.status", ci_dir / ".metrics-ops.state"):
        assert_whole_path(lines, str(path))


def test_config_show_puts_a_data_directory_that_fits_on_one_line(isolated_env):
    relative = "srv/metrics-ops/production-eu-west-1/data"  # 41 characters
    code, lines = screen("config", "show", env={"METRICS_DIR": relative})
    assert code == 0 and fits(lines), lines
    assert [line for line in lines if line.split()[:2] == ["dir", relative]]
    wide_code, wide = screen("config", "show", env={"METRICS_DIR": relative}, columns=160)
    assert {env_name(name) for name in Settings.fields} <= cells(wide)  # room enough: the column is back


def _report_dir(data_dir):
    event = "newsletter_signup_confirmed"
    path = "/blog/2026/11/analytics-without-cookies"
    for n in range(0, 8):
        day = _days_ago(n)
        rows = [{"visitor_id": f"v{i}", "event": event if i % 3 else "page_view",
                 "metadata": {"path": path if i % 2 else "/"}, "received_at": f"{day}T1{i % 10}:30:00.000001Z",
                 "ts": f"{day}T10:30:00Z", "client_rate": 0.5, "server_rate": 0.25} for i in range(400 + 37 * n)]
        (data_dir / f"metrics-{day}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return event, path


@pytest.mark.parametrize("by", ["day", "event", "day,event", "day,hour,event,path", "event,path"])
def test_report_title_is_one_line_and_names_stay_whole_at_80_columns(ci_dir, by):
    event, path = _report_dir(ci_dir)
    code, lines = screen("--data-dir", ci_dir, "report", "--since", "7d", "--by", by, "--event", event)
    assert code == 0, lines
    assert fits(lines), lines
    assert lines[0] == f"report {_days_ago(7)} .. {_days_ago(0)}, event {event}", lines[:2]  # one line
    if by == "event":
        assert event in cells(lines)
    if "path" in by:
        assert_whole_path(lines, path)


def test_status_names_a_long_data_directory_whole_at_80_columns(ci_dir):
    (ci_dir / f"metrics-{_days_ago(1)}.jsonl").write_text('{"event":"x"}\n')
    code, lines = screen("--data-dir", ci_dir, "status")
    assert code == 7, lines  # no pass recorded yet
    assert fits(lines), lines
    assert_whole_path(lines, str(ci_dir))


class _Limited(http.server.BaseHTTPRequestHandler):
    """202 for the first 5 requests, then 429: an edge with burst 4, nodelay."""

    protocol_version = "HTTP/1.1"
    seen = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen += 1
        status = 202 if type(self).seen <= 5 else 429
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_probe_table_fits_80_columns(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Limited)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/metrics/event/with/a/rather/long/path/for/the/title"
    try:
        code, lines = screen("probe", url, "--requests", "12", "--expect-rate", "1", "--expect-burst", "4",
                             env={"XDG_STATE_HOME": str(tmp_path)})
    finally:
        server.shutdown()
    assert code == 0, lines
    assert fits(lines), lines
    assert_whole_path(lines, url)
    assert [line for line in lines if "MATCH" in line]


# ------------------------------------------------------------------------------------------ notes on stderr
def test_a_note_naming_a_long_path_breaks_between_words_not_inside_the_path(ci_dir):
    missing = ci_dir / "not-here"
    for args in (["rotate", "--once"], ["report"], ["gzip"], ["forget", "v1"]):
        code, lines = screen("--data-dir", missing, *args)
        assert code == 1, lines
        assert fits(lines), lines
        assert lines[0].startswith("metrics-ops: data directory")
        assert all(line.startswith("  ") for line in lines[1:]), lines  # continued lines are indented
        assert_whole_path(lines, str(missing))


def test_clicks_own_usage_errors_fit_80_columns_too(ci_dir, data_dir):
    code, lines = screen("--data-dir", data_dir, "export", "--output", ci_dir)  # a directory: click says no
    assert code == 2 and fits(lines), lines
    assert lines[0].startswith("Usage: metrics-ops export")
    assert [line for line in lines if line.startswith("Error: Invalid value for '--output'")]
    assert_whole_path(lines, str(ci_dir))
    code, lines = screen("sample-test", "--mode", "per-visitor-of-course")
    assert code == 2 and fits(lines), lines


def test_serve_ready_line_fits_80_columns(ci_dir):
    port = free_port()
    code, lines = screen("--data-dir", ci_dir, "serve", "--port", port, "--workers", "1", stop_at="worker)",
                         before_stop=lambda proc: wait_healthy(port, proc))  # (a SIGTERM before can hang serve)
    assert code == 0, lines
    assert fits(lines), lines
    assert lines[0].startswith(f"metrics-ops: serve ready on http://127.0.0.1:{port}"), lines
    assert_whole_path(lines, str(ci_dir))


def test_wrap_breaks_at_spaces_then_after_a_slash_then_inside_a_name_only_when_it_must():
    path = "/var/lib/metrics-ops/a-directory-name-of-forty-characters-xx/metrics.jsonl"
    assert wrap(f"cannot open {path}: no such file", 40) == [
        "cannot open", "/var/lib/metrics-ops/", "a-directory-name-of-forty-characters-xx/",
        "metrics.jsonl: no such file"]
    assert wrap("event signup_completed_successfully", 20) == ["event", "signup_completed_", "successfully"]
    assert wrap("x" * 25, 20) == ["x" * 20, "x" * 5]
    assert wrap("a note", 80, "  ") == ["a note"]
    assert wrap("/blog/页面浏览/x", 10) == ["/blog/", "页面浏览/x"]  # a wide character takes two columns


# ------------------------------------------------------------------------------------------ pipes
@pytest.mark.parametrize("args, header", [
    (("config", "show"), "setting\tvalue\tsource\tenvironment"),
    (("sample-test", "--seed", "1"), "pair\trate\tevents\tkept\tobserved\t99.9% interval\tverdict"),
    (("rotate", "--once"), "step\taction\tfile\tbefore\tafter\tstatus\tdetail"),
])
def test_piped_output_starts_with_a_header_line(run, data_dir, args, header):
    r = run("--data-dir", data_dir, *args)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == header
    assert all(line.count("\t") == header.count("\t") for line in lines)


def test_piped_notes_stay_one_line_each(run, ci_dir):
    r = run("--data-dir", ci_dir / "not-here", "rotate", "--once")
    assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1 and str(ci_dir / "not-here") in r.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="pty sizes via TIOCSWINSZ")
def test_the_pty_helper_really_is_80_columns_wide():
    code, lines = screen("--help")
    assert code == 0 and max(len(line) for line in lines) <= 80
    code, wide = screen("--help", columns=200)
    assert max(len(line) for line in wide) > 80  # the short helps use the room: the width came through


def test_export_says_its_final_size_into_a_file_and_nothing_when_stdout_is_the_data(data_dir, tmp_path):
    """On a terminal: into --output FILE, the last line is the file's real size (it said "exported 0.0 MB" for
    135 kB); with the data on stdout, on the terminal or redirected, no line of ours is mixed into it."""
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    today = datetime.now(UTC).date().isoformat()
    lines = write_lines(data_dir / f"metrics-{today}.jsonl", "page_view_with_a_long_name", 2000)
    out = tmp_path / "out.jsonl"
    code, text = run_in_pty([exe, "--data-dir", data_dir, "export", "--output", out])
    size = out.stat().st_size
    assert code == 0 and 100_000 < size < 1_000_000
    assert text.endswith(f"\rmetrics-ops: exported 2,000 lines ({size / 1e3:.1f} kB) to {out}\n"), text[-200:]
    code, text = run_in_pty([exe, "--data-dir", data_dir, "export", "--format", "csv", "--output", tmp_path / "o.csv"])
    assert code == 0 and f"({(tmp_path / 'o.csv').stat().st_size / 1e3:.1f} kB) to {tmp_path / 'o.csv'}\n" in text
    code, text = run_in_pty([exe, "--data-dir", data_dir, "export"])
    assert code == 0 and text.splitlines() == lines  # the data, and nothing else
    redirected = tmp_path / "redirected.jsonl"
    code, text = run_in_pty(["sh", "-c", '"$0" --data-dir "$1" export > "$2"', exe, data_dir, redirected])
    assert (code, text) == (0, "") and redirected.read_bytes() == out.read_bytes()
