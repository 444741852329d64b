"""Attacks on the C line counter (metrics_ops/_linescan.c via metrics_ops/linecount.py): the real report over real
files answers as the reference (orjson line by line, tally._count_block), to the digit it prints."""

import json
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.estimate import Estimate
from metrics_ops.reading import read_day, shards
from metrics_ops.store import file_name
from metrics_ops.tally import DayTally, _count_block, _Hours, _key_of
from tests.helpers import cli

DAY = date(2026, 11, 25)


def reference_rows(directory, grouping: tuple[str, ...]) -> list[dict]:
    """The day's rows as the reference counts them (every line through _count_block), rounded as --json prints."""
    tally = DayTally(DAY, {grouping: {}})
    for block in read_day(directory, shards(directory)[DAY], tally.problems, tally.long_lines):
        _count_block(block, tally, [(tally.cells[grouping], _key_of(grouping))], None, _Hours(ZoneInfo("UTC")),
                     False, False)
    rows = []
    for cell in tally.cells[grouping].values():
        est = Estimate.of_visitors(cell)
        rows.append({"events": est.events, "visitors": est.visitors, "estimate": round(est.estimate, 1),
                     "low": round(est.low, 1), "high": round(est.high, 1)})
    return rows


@pytest.mark.parametrize("by", ["event", "day"])
def test_a_large_weight_then_many_small_ones_estimate_as_the_reference(data_dir, by):
    """One line of weight 10^12 (rates 1e-6 x 1e-6, the smallest weighed) then 3000 visitors at 1 / (0.3 x 0.7):
    the reference adds each visitor's weight to the running sum in file order (each addition rounded at the
    10^12 scale), the C counter's spread multiplies the 3000 equal weights first: 1000000014285.9 against
    1000000014285.7 in the printed estimate and interval."""
    lines = [{"visitor_id": "big", "event": "e", "client_rate": 1e-6, "server_rate": 1e-6,
              "received_at": "2026-11-25T12:00:00Z"}]
    lines += [{"visitor_id": f"v{i}", "event": "e", "client_rate": 0.3, "server_rate": 0.7,
               "received_at": "2026-11-25T12:00:00Z"} for i in range(3000)]
    (data_dir / file_name(DAY, 0)).write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = cli("report", "--data-dir", data_dir, "--since", DAY, "--until", DAY, "--no-rollups", "--json",
              "--by", by)
    assert got.returncode == 0, got.stderr
    rows = [{k: row[k] for k in ("events", "visitors", "estimate", "low", "high")}
            for row in json.loads(got.stdout)["rows"]]
    assert rows == reference_rows(data_dir, ("event",) if by == "event" else ())



def test_a_day_from_its_rollup_and_from_its_raw_lines_print_one_estimate(data_dir):
    """The same day as above after rotate --once wrote its rollup (counted the reference way, folding): report
    from the rollup and report --no-rollups from the raw lines (the C counter) must print one answer."""
    lines = [{"visitor_id": "big", "event": "e", "client_rate": 1e-6, "server_rate": 1e-6,
              "received_at": "2026-11-25T12:00:00Z"}]
    lines += [{"visitor_id": f"v{i}", "event": "e", "client_rate": 0.3, "server_rate": 0.7,
               "received_at": "2026-11-25T12:00:00Z"} for i in range(3000)]
    (data_dir / file_name(DAY, 0)).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cli("rotate", "--once", "-q", "--data-dir", data_dir).returncode == 0
    answers = []
    for flags in ([], ["--no-rollups"]):
        got = cli("report", "--data-dir", data_dir, "--since", DAY, "--until", DAY, "--json", "--by", "event",
                  *flags)
        assert got.returncode == 0, got.stderr
        doc = json.loads(got.stdout)
        answers.append([{k: row[k] for k in ("events", "visitors", "estimate", "low", "high")} for row in doc["rows"]])
    assert doc["days"]["raw"] == [str(DAY)]
    assert answers[0] == answers[1]


def report_rows(directory, by: str = "event") -> dict:
    """report --no-rollups --json over the day (a hang stops at the runner's 120 s): {key: (events, visitors,
    estimate)}, and the lines read."""
    got = cli("report", "--data-dir", directory, "--since", DAY, "--until", DAY, "--no-rollups", "--json",
              "--by", by)
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    return {row[by]: (row["events"], row["visitors"], row["estimate"]) for row in doc["rows"]}, doc["lines"]


def assert_as_the_reference(directory, got: dict) -> None:
    tally = DayTally(DAY, {("event",): {}})
    for block in read_day(directory, shards(directory)[DAY], tally.problems, tally.long_lines):
        _count_block(block, tally, [(tally.cells[("event",)], _key_of(("event",)))], None,
                     _Hours(ZoneInfo("UTC")), False, False)
    want = {ev: Estimate.of_visitors(cell) for ev, cell in tally.cells[("event",)].items()}
    assert got.keys() == want.keys()
    for ev, (events, visitors, estimate) in got.items():
        assert (events, visitors) == (want[ev].events, want[ev].visitors)
        assert abs(estimate - want[ev].estimate) <= 0.05 + 1e-9 * want[ev].estimate  # printed to 0.1


@pytest.mark.slow
def test_one_visitor_with_a_distinct_pair_of_rates_per_line_is_counted_in_linear_time(data_dir):
    """300,000 lines of one visitor, each with its own client_rate (an old client, or anyone posting to serve):
    each line searched every pair seen (past the last 64) and walked the visitor's list of pairs: quadratic, 40 s
    for 80,000 lines, about 10 minutes here; a hash of the pairs and of (entry, pair) takes a second."""
    n = 300_000
    (data_dir / file_name(DAY, 0)).write_bytes(b"".join(
        b'{"visitor_id":"v","event":"e","client_rate":0.%06d,"server_rate":0.5}\n' % (i + 1) for i in range(n)))
    got, lines = report_rows(data_dir)
    assert lines == n and got["e"][:2] == (n, 1)
    assert_as_the_reference(data_dir, got)


@pytest.mark.slow
def test_many_events_times_many_weights_spread_in_linear_time(data_dir):
    """600,000 visitors, one line each, over 500 events and 1,200 client rates: the spread's cells (event, weight,
    n) were placed by n * c ^ event * 31 ^ kind, a few thousand places for all of them: quadratic (28 s for
    200,000), minutes here; mixed, well under a second."""
    n = 600_000
    (data_dir / file_name(DAY, 0)).write_bytes(b"".join(
        b'{"visitor_id":"v%d","event":"e%d","client_rate":0.%06d}\n' % (i, i % 500, i // 500 + 1)
        for i in range(n)))
    got, lines = report_rows(data_dir)
    assert lines == n and len(got) == 500 and sum(v[0] for v in got.values()) == n
    assert_as_the_reference(data_dir, got)
