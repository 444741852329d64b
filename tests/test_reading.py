"""The recipes for reading the data back by hand (docs/reading.md), run exactly as written there, over a real
data directory: plain day files, a shard, a .gz archive, the metrics.jsonl link, and test traffic to leave out."""

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .helpers import data_file, doc_section

SECTION = doc_section("reading.md", "Reading by hand: jq and DuckDB")


def readme_block(lang: str) -> str:
    [block] = re.findall(rf"```{lang}\n(.*?)```", SECTION, re.S)
    return block.strip()


def record(visitor, event, received_at, test_run=None, timestamp=None):
    rec = {"visitor_id": visitor, "event": event}
    if timestamp is not None:
        rec["timestamp"] = timestamp
    rec["metadata"] = {"path": "/"} if test_run is None else {"test_run": test_run, "n": 0}
    rec.update(received_at=received_at, ts=received_at)
    return json.dumps(rec, separators=(",", ":")) + "\n"


@pytest.fixture
def store(tmp_path):
    """-> (directory holding data/, the counts a correct reader gives)"""
    data = tmp_path / "data"
    data.mkdir()
    expected = Counter()

    def day(name, lines):
        rows = []
        for visitor, event, at, *extra in lines:
            rows.append(record(visitor, event, at, *extra))
            if not extra or extra[0] is None:
                expected[(at[:10], event)] += 1
        return rows

    old = day("2026-11-22", [("v1", "page_view", "2026-11-22T08:00:00.000001Z", None, 1764072000123),
                             ("v2", "page_view", "2026-11-22T09:00:00.000001Z", None, "2026-11-22T09:00:00Z"),
                             ("v2", "signup", "2026-11-22T09:01:00.000001Z")])
    data_file(data / "metrics-2026-11-22.jsonl.gz", old, gz=True)
    data_file(data / "metrics-2026-11-24.jsonl", day("2026-11-24", [
        ("v3", "page_view", "2026-11-24T10:00:00.000001Z"),
        ("probe-3f2a9c01b7de-0", "ratelimit_probe", "2026-11-24T10:00:01.000001Z", "3f2a9c01b7de")]))
    data_file(data / "metrics-2026-11-24.1.jsonl", day("2026-11-24", [
        ("v4", "page_view", "2026-11-24T11:00:00.000001Z"), ("v4", "click", "2026-11-24T11:00:02.000001Z")]))
    data_file(data / "metrics-2026-11-25.jsonl", day("2026-11-25", [
        ("v5", "page_view", "2026-11-25T07:00:00.000001Z"), ("v6", "page_view", "2026-11-25T07:30:00.000001Z"),
        ("st-0123456789ab-7", "sample_test", "2026-11-25T07:31:00.000001Z", "0123456789ab")]))
    os.symlink("metrics-2026-11-25.jsonl", data / "metrics.jsonl")  # the link to today's file
    assert sum(expected.values()) == 8
    return tmp_path, expected


def run_jq(cwd: Path, command: str) -> Counter:
    r = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    counts = Counter()
    for line in r.stdout.splitlines():
        n, rest = line.split(None, 1)
        day, event = rest.split("\t")
        counts[(day, event)] = int(n)
    return counts


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (.ci/run installs it)")
def test_readme_jq_recipe_counts_each_event_once_and_leaves_out_test_traffic(store):
    cwd, expected = store
    command = readme_block("sh")
    assert run_jq(cwd, command) == expected
    # the glob the recipe warns about counts today's file twice, through the link
    wrong = run_jq(cwd, command.replace("data/metrics-*.jsonl*", "data/*.jsonl*"))
    assert wrong[("2026-11-25", "page_view")] == 2 * expected[("2026-11-25", "page_view")]


def test_readme_duckdb_recipe_counts_each_event_once_and_leaves_out_test_traffic(store, monkeypatch):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -e '.[test]')")
    cwd, expected = store
    monkeypatch.chdir(cwd)
    sql = readme_block("sql")
    rows = duckdb.connect().sql(sql).fetchall()
    assert Counter({(day, event): n for day, event, n in rows}) == expected
    assert rows == sorted(rows)  # ORDER BY ALL
    wrong = duckdb.connect().sql(sql.replace("data/metrics-*.jsonl*", "data/*.jsonl*")).fetchall()
    assert sum(n for *_, n in wrong) == sum(expected.values()) + 2  # today's two page views, twice


def test_ts_reads_as_one_typed_column_where_timestamp_is_mixed(store, monkeypatch):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -e '.[test]')")
    cwd, _ = store
    monkeypatch.chdir(cwd)
    [(kind, n)] = duckdb.connect().sql(
        "SELECT typeof(ts), count(*) FROM read_json('data/metrics-*.jsonl*', format = 'newline_delimited', "
        "columns = {ts: 'TIMESTAMPTZ'}) GROUP BY ALL").fetchall()
    assert kind == "TIMESTAMP WITH TIME ZONE" and n == 10


# ----------------------------------------------------------------------------- what a killed pass leaves behind
KILLED_AT_RENAME = """
import os, sys
from pathlib import Path
os.rename = lambda *args: os._exit(9)  # SIGKILL-like: the temp file is complete, the rename never happens
from metrics_ops import archive
from metrics_ops.forget import visitor_rule
data, what, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if what == "gzip":
    archive.compress(data, name)
else:
    archive.rewrite_without(data, name, visitor_rule(frozenset({"v4"})))
"""


@pytest.fixture
def leftovers(store):
    """The store, plus what killed processes leave: a gzip killed before its rename (a whole temp archive), a
    forget killed before its rename (a whole filtered copy), and an unreadable archive a reconcile set aside."""
    import sys

    from metrics_ops.archive import finish_compress

    cwd, expected = store
    data = cwd / "data"
    for what, name in (("gzip", "metrics-2026-11-24.jsonl"), ("forget", "metrics-2026-11-24.1.jsonl")):
        r = subprocess.run([sys.executable, "-c", KILLED_AT_RENAME, str(data), what, name], capture_output=True)
        assert r.returncode == 9, r.stderr
    data_file(data / "metrics-2026-11-23.jsonl", [record("v7", "page_view", "2026-11-23T10:00:00.000001Z")])
    (data / "metrics-2026-11-23.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not an archive")
    assert finish_compress(data, "metrics-2026-11-23.jsonl")[0].startswith("archive unreadable, set aside")
    expected[("2026-11-23", "page_view")] += 1
    left = sorted(p.name for p in data.iterdir() if ".tmp" in p.name or ".corrupt" in p.name)
    assert len(left) == 3, left
    return cwd, expected


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (.ci/run installs it)")
def test_readme_jq_recipe_is_right_whatever_a_killed_pass_left_behind(leftovers):
    cwd, expected = leftovers
    assert run_jq(cwd, readme_block("sh")) == expected


def test_readme_duckdb_recipe_is_right_whatever_a_killed_pass_left_behind(leftovers, monkeypatch):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -e '.[test]')")
    cwd, expected = leftovers
    monkeypatch.chdir(cwd)
    rows = duckdb.connect().sql(readme_block("sql")).fetchall()
    assert Counter({(day, event): n for day, event, n in rows}) == expected


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (.ci/run installs it)")
def test_a_pass_after_an_upgrade_clears_what_earlier_versions_left_in_the_glob(store):
    """Earlier versions named their temp and set-aside files metrics-...: the next pass removes the temps and
    renames the set-aside archive out of the glob; the recipes are right again."""
    from datetime import date

    from freezegun import freeze_time

    from metrics_ops.maintenance import run_pass
    from metrics_ops.store import Store

    cwd, expected = store
    data = cwd / "data"
    (data / "metrics-2026-11-22.jsonl.gz.corrupt").write_bytes(b"\x1f\x8b\x08\x00 not an archive")
    (data / "metrics-2026-11-24.jsonl.gz.tmp").write_bytes((data / "metrics-2026-11-22.jsonl.gz").read_bytes())
    (data / "metrics-2026-11-24.1.jsonl.forget.tmp").write_bytes((data / "metrics-2026-11-24.1.jsonl").read_bytes())
    with freeze_time("2026-11-25 12:00:00"):
        result = run_pass(Store(data, ZoneInfo("UTC")), now=datetime.now(UTC).timestamp(), steps=("gzip",),
                          gzip_after=30)
    assert result.ok and date(2026, 11, 25).isoformat() == result.day
    assert sorted((a.kind, a.file) for a in result.actions) == [
        ("remove-temp", "metrics-2026-11-24.1.jsonl.forget.tmp"), ("remove-temp", "metrics-2026-11-24.jsonl.gz.tmp"),
        ("rename", "metrics-2026-11-22.jsonl.gz.corrupt")]
    assert (data / ".metrics-2026-11-22.jsonl.gz.corrupt").exists()
    assert run_jq(cwd, readme_block("sh")) == expected


def test_duckdb_reads_past_a_torn_line_only_with_ignore_errors_and_counts_lines_report_calls_damaged(
        store, monkeypatch):
    """docs/reading.md, "DuckDB and damaged lines": a line cut off by a crash stops the recipe; with
    ignore_errors it is a row of NULLs; a NaN rate is an event to DuckDB and a damaged line to report."""
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -e '.[test]')")
    from .helpers import cli

    cwd, expected = store
    monkeypatch.chdir(cwd)
    shard = cwd / "data" / "metrics-2026-11-24.1.jsonl"
    nan = record("v9", "click", "2026-11-24T12:00:00.000001Z").replace('"metadata"', '"client_rate":NaN,"metadata"')
    shard.write_text(shard.read_text() + '{"visitor_id":"v8","ev\n' + nan)
    sql = readme_block("sql")
    with pytest.raises(duckdb.InvalidInputException, match="Malformed JSON"):
        duckdb.connect().sql(sql).fetchall()
    lenient = sql.replace("'JSON'})", "'JSON'}, ignore_errors = true)")
    rows = duckdb.connect().sql(lenient).fetchall()
    assert (None, None, 1) in rows  # the torn line
    tolerant = lenient.replace("IS NULL", "IS NULL AND event IS NOT NULL")
    rows = duckdb.connect().sql(tolerant).fetchall()
    assert Counter({(day, event): n for day, event, n in rows}) == expected + Counter({("2026-11-24", "click"): 1})
    r = cli("--data-dir", cwd / "data", "report", "--since", "2026-11-22", "--until", "2026-11-25", "--no-rollups",
            "--json")
    doc = json.loads(r.stdout)
    assert sum(row["events"] for row in doc["rows"]) == sum(expected.values()) and doc["damaged"] == 2, r.stderr
