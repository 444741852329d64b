"""What an operator sees on an 80-column terminal (a real pty, the real CLI) and what a pipe gets."""

import re
import sys
from datetime import UTC, datetime, timedelta

import pytest

from metrics_ops.config import Settings, env_name

from .helpers import console_script, run_in_pty, write_lines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen(*args, columns=80) -> tuple[int, list[str]]:
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    code, text = run_in_pty([exe, *args], columns=columns)
    return code, ANSI.sub("", text).splitlines()


def cells(lines: list[str]) -> set[str]:
    """Every whitespace-separated word on the screen: a name broken across lines is not among them whole."""
    return {word for line in lines for word in line.split()}


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


@pytest.mark.parametrize("dry_run", [True, False], ids=["plan", "pass"])
def test_rotate_table_keeps_every_file_name_whole_at_80_columns(busy_dir, dry_run):
    data_dir, names = busy_dir
    code, lines = screen("--data-dir", data_dir, "rotate", "--once", *(["--dry-run"] if dry_run else []))
    assert code == 0, lines
    assert all(len(line) <= 80 for line in lines), lines
    assert set(names) <= cells(lines), "\n".join(lines)
    assert not [line for line in lines if "0/0" in line]


def test_no_progress_bar_when_there_is_nothing_to_compress(data_dir):
    for args in (["rotate", "--once"], ["gzip"], ["rotate", "--once"]):
        code, lines = screen("--data-dir", data_dir, *args)
        assert code == 0
        assert not [line for line in lines if "compressing" in line or "bytes" in line], lines


def test_sample_test_table_reads_at_80_columns():
    code, lines = screen("sample-test", "--seed", "1", "--events", "300")
    assert code == 4
    assert all(len(line) <= 80 for line in lines), lines
    words = cells(lines)
    assert {"PASS", "INCONCLUSIVE", "exact", "observed", "verdict", "standard", "configured"} <= words
    intervals = re.findall(r"\[\d\.\d{4}, \d\.\d{4}\]", "\n".join(lines))
    assert len(intervals) == 4  # whole on one line each: the 0.5, 0.5, 0.25 and 0.125 rows
    assert "metrics-ops: INCONCLUSIVE: about 6768 events per row would decide within +-0.02" in lines


def test_config_show_keeps_setting_and_variable_names_whole_at_80_columns():
    code, lines = screen("config", "show")
    assert code == 0
    assert all(len(line) <= 80 for line in lines), lines
    words = cells(lines)
    for name in Settings.model_fields:
        assert name in words and env_name(name) in words, name


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
