"""report: counts equal a brute-force count over a real directory (plain, shards, .gz, a gzip pair, the link),
estimates cover the truth of simulated days sampled by serve's own Sampler, and the CLI's outputs."""

import csv
import gzip
import io
import json
import math
import os
import random
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.report import run_report
from metrics_ops.sampling import Sampler
from metrics_ops.store import file_name

from .helpers import console_script, run_in_pty

UTC = ZoneInfo("UTC")
TODAY = date.today()


def rec(visitor, event, day, hour=12, c=1, s=1, path="/", test_run=None, rates=True):
    at = f"{day.isoformat()}T{hour:02d}:30:00.000001Z"
    r = {"visitor_id": visitor, "event": event, "metadata": {"path": path}, "received_at": at, "ts": at}
    if test_run:
        r["metadata"]["test_run"] = test_run
    if rates:
        r.update(client_rate=c, server_rate=s)
    return json.dumps(r, separators=(",", ":"))


def write(path, lines, gz=False):
    body = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(body) if gz else body)


@pytest.fixture
def populated(data_dir):
    """Four days: archives, shards, a plain+archive pair (a pass killed between rename and unlink, plus a late
    line), test traffic, lines without rates, the link. Returns every counted line."""
    rng = random.Random(7)
    counted = []

    def lines_for(day, n):
        out = []
        for i in range(n):
            event = rng.choice(["page_view", "click", "signup"])
            r = rec(f"v{rng.randrange(40)}", event, day, rng.randrange(24), 1, rng.choice([1, 0.5, 0.25]),
                    rng.choice(["/", "/a", "/b", "/c"]), rates=i % 17 != 0)
            out.append(r)
        counted.extend(out)
        return out

    d = [TODAY - timedelta(days=n) for n in (3, 2, 1, 0)]
    write(data_dir / (file_name(d[0]) + ".gz"), lines_for(d[0], 300), gz=True)
    write(data_dir / (file_name(d[0], 1) + ".gz"), lines_for(d[0], 50), gz=True)
    pair = lines_for(d[1], 200)
    write(data_dir / (file_name(d[1]) + ".gz"), pair, gz=True)
    late = lines_for(d[1], 3)
    write(data_dir / file_name(d[1]), pair + late)  # the source grew after its archive was written
    write(data_dir / file_name(d[2]), lines_for(d[2], 120) + [rec("probe-3f2a9c01b7de-0", "ratelimit_probe", d[2],
                                                                  test_run="3f2a9c01b7de")])
    write(data_dir / file_name(d[2], 1), lines_for(d[2], 80))
    write(data_dir / file_name(d[3]), lines_for(d[3], 60))
    os.symlink(file_name(d[3]), data_dir / "metrics.jsonl")
    return counted


def brute_force(lines, by):
    """The oracle: every counted line parsed on its own."""
    cells = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for line in lines:
        r = json.loads(line)
        key = tuple({"day": r["received_at"][:10], "event": r["event"], "hour": r["received_at"][11:13],
                     "path": r["metadata"]["path"]}[k] for k in by)
        w = 1 / (r["client_rate"] * r["server_rate"]) if "client_rate" in r else 1.0
        acc = cells[key][r["visitor_id"]]
        acc[0] += w
        acc[1] += 1
    return {key: (sum(n for _, n in v.values()), len(v), sum(z for z, _ in v.values()))
            for key, v in cells.items()}


@pytest.mark.parametrize("by", [("day", "event"), ("event",), ("hour",), ("day", "path"), ("day",)])
def test_report_counts_equal_a_brute_force_count(data_dir, populated, by):
    result = run_report(data_dir, since=TODAY - timedelta(days=6), until=TODAY, today=TODAY, zone=UTC, tz="UTC",
                        by=by, workers=2)
    got = {tuple(r.keys[k] for k in by): (r.est.events, r.est.visitors, round(r.est.estimate, 6))
           for r in result.rows}
    want = {k: (e, v, round(z, 6)) for k, (e, v, z) in brute_force(populated, by).items()}
    assert got == want
    assert result.test_lines == 1
    assert result.unweighted == sum(1 for line in populated if "client_rate" not in line)
    assert result.partial_days == [TODAY]
    assert result.problems == []


def test_event_filter_and_top_paths_fold_into_other(data_dir, populated):
    result = run_report(data_dir, since=TODAY - timedelta(days=6), until=TODAY, today=TODAY, zone=UTC, tz="UTC",
                        by=("path",), event="click", top=2)
    clicks = [line for line in populated if '"event":"click"' in line]
    want = brute_force(clicks, ("path",))
    top = sorted(want, key=lambda k: (-want[k][0], k))[:2]
    rows = {r.keys["path"]: r.est for r in result.rows}
    assert set(rows) == {top[0][0], top[1][0], "(other)"}
    assert sum(e.events for e in rows.values()) == len(clicks)
    others = {json.loads(line)["visitor_id"] for line in clicks if (json.loads(line)["metadata"]["path"],) not in top}
    assert rows["(other)"].visitors == len(others)  # a visitor of two folded paths is one visitor of other


def test_a_damaged_archive_is_reported_and_its_readable_part_counted(data_dir):
    day = TODAY - timedelta(days=2)
    whole = gzip.compress("".join(rec(f"v{i}", "page_view", day) + "\n" for i in range(2000)).encode())
    (data_dir / (file_name(day) + ".gz")).write_bytes(whole[: len(whole) // 2])
    result = run_report(data_dir, since=day, until=day, today=TODAY, zone=UTC, tz="UTC", by=("day",))
    assert not result.ok and "truncated" in result.problems[0]
    assert 0 < result.rows[0].est.events < 2000


# ----------------------------------------------------------------------------- the estimator against the truth
def simulate_days(data_dir, mode, days=100, seed=20261126):
    """``days`` days of a known number of events, sampled by serve's Sampler; returns the true totals per day.
    visitor: server stage at 0.2 hashing visitor ids (whole visitors kept); random: a client stage at 0.5 and a
    server stage at 0.5, each event on its own."""
    rng = random.Random(seed)
    client, server = (1.0, 0.2) if mode == "visitor" else (0.5, 0.5)
    client_stage = Sampler(client, mode, rng=random.Random(seed + 1).random)
    server_stage = Sampler(server, mode, key=b"k", rng=random.Random(seed + 2).random)
    truth = {}
    first = TODAY - timedelta(days=days + 1)
    for i in range(days):
        day = first + timedelta(days=i)
        lines, total = [], 0
        for v in range(300):
            vid = f"d{i}-v{v}"
            n = 1 + int(rng.expovariate(1 / 4))  # 1 .. ~30 events per visitor, mean ~4.5
            total += n
            for _ in range(n):
                if client_stage.keep(vid, "page_view") and server_stage.keep(vid, "page_view"):
                    lines.append(rec(vid, "page_view", day, c=client, s=server))
        write(data_dir / file_name(day), lines)
        truth[day.isoformat()] = total
    return truth


@pytest.mark.parametrize("mode", ["visitor", "random"])
def test_the_95_percent_interval_covers_the_true_total_on_about_95_of_100_days(data_dir, mode):
    truth = simulate_days(data_dir, mode)
    result = run_report(data_dir, since=TODAY - timedelta(days=101), until=TODAY, today=TODAY, zone=UTC, tz="UTC",
                        by=("day",))
    rows = {r.keys["day"]: r.est for r in result.rows}
    assert set(rows) == set(truth)
    covered = sum(rows[d].low <= t <= rows[d].high for d, t in truth.items())
    # P(Binomial(100, 0.95) < 88) is about 0.001: below that the interval is too narrow (it happened with
    # events as the sampled units in visitor mode: 41 of 100). Random mode may over-cover (see estimate.py).
    assert 88 <= covered <= 100, covered
    # ... and it is not covering by being needlessly wide: a 68 % interval (1 sd) covers clearly fewer days
    one_sd = sum(abs(rows[d].estimate - t) <= math.sqrt(rows[d].variance) for d, t in truth.items())
    assert one_sd < covered and (one_sd <= 85 if mode == "visitor" else one_sd <= 95), one_sd
    errors = [(rows[d].estimate - t) / t for d, t in truth.items()]
    assert abs(sum(errors) / len(errors)) < 0.05  # unbiased: the mean relative error is near 0


def test_events_as_units_would_fail_the_same_simulation(data_dir):
    """The test can fail: the interval of a per-event (binomial) variance misses far more than 5 of 100 days
    under visitor sampling, where visitors are the sampled clusters."""
    truth = simulate_days(data_dir, "visitor")
    result = run_report(data_dir, since=TODAY - timedelta(days=101), until=TODAY, today=TODAY, zone=UTC, tz="UTC",
                        by=("day",))
    rows = {r.keys["day"]: r.est for r in result.rows}
    w = 1 / 0.2
    per_event = sum(abs(rows[d].estimate - t) <= 1.96 * math.sqrt(rows[d].events * w * (w - 1))
                    for d, t in truth.items())
    assert per_event < 88


# ----------------------------------------------------------------------------- the command
def test_json_has_rows_with_keys_and_the_days_by_source(data_dir, populated, run):
    r = run("--data-dir", data_dir, "report", "--since", "6d", "--by", "day,event", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc["rows"][0]) >= {"day", "event", "events", "visitors", "estimate", "low", "high"}
    assert doc["days"]["raw"] == [(TODAY - timedelta(days=n)).isoformat() for n in (3, 2, 1, 0)]
    assert doc["partial_days"] == [TODAY.isoformat()]
    assert all(row.get("partial") for row in doc["rows"] if row["day"] == TODAY.isoformat())
    assert doc["unweighted"] > 0 and any("weight 1" in n for n in doc["notes"])


def test_csv_and_piped_output(data_dir, populated, run):
    r = run("--data-dir", data_dir, "report", "--since", "6d", "--by", "event", "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {row["event"] for row in rows} == {"page_view", "click", "signup"}
    assert sum(int(row["events"]) for row in rows) == len(populated)
    piped = run("--data-dir", data_dir, "report", "--since", "6d", "--by", "event")
    assert piped.stdout.splitlines()[0].split("\t") == ["event", "events", "visitors", "estimate", "low", "high"]
    assert "weight 1" in piped.stderr  # notes go to stderr, the table stays parseable


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "day,week"], "metrics-ops: --by day,week: unknown grouping 'week' (choose from day, hour, event, "
                           "path)"),
    (["--since", "2026-02-30"], "metrics-ops: --since 2026-02-30: want a day as YYYY-MM-DD, today, yesterday or Nd "
                                "(N days ago)"),
    (["--since", "2026-11-20", "--until", "2026-11-10"], "metrics-ops: --since 2026-11-20 is after --until "
                                                          "2026-11-10"),
])
def test_bad_options_are_one_line_and_exit_2(data_dir, run, args, message):
    r = run("--data-dir", data_dir, "report", *args)
    assert r.exit_code == 2 and r.stderr.strip() == message


def test_a_missing_data_directory_is_exit_1(tmp_path, run):
    r = run("--data-dir", tmp_path / "nope", "report")
    assert r.exit_code == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_terminal_table_and_daily_bars_fit_80_columns(data_dir, populated):
    script = console_script()
    if script is None:
        pytest.skip("metrics-ops is not installed with its scripts")
    status, text = run_in_pty([script, "--data-dir", data_dir, "report", "--since", "6d", "--by", "day,event,path"])
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert status == 0, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "estimate per day" in text and "█" in text and f"{TODAY.isoformat()}*" in text


def test_hours_are_local_to_the_zone_and_a_rollup_of_another_zone_is_not_used(data_dir):
    from metrics_ops import rollups

    day = TODAY - timedelta(days=3)
    write(data_dir / file_name(day), [rec("v1", "page_view", day, hour=22)])  # 22:30 UTC
    berlin = ZoneInfo("Europe/Berlin")
    r = run_report(data_dir, since=day, until=day, today=TODAY, zone=berlin, tz="Europe/Berlin", by=("hour",))
    local = datetime(day.year, day.month, day.day, 22, 30, tzinfo=ZoneInfo("UTC")).astimezone(berlin)
    assert [row.keys["hour"] for row in r.rows] == [f"{local.hour:02d}"] != ["22"]
    rollups.write(data_dir, rollups.rollup_name(day), UTC)
    again = run_report(data_dir, since=day, until=day, today=TODAY, zone=berlin, tz="Europe/Berlin", by=("hour",))
    assert again.raw_days == [day] and again.rollup_days == []
    assert any("not used" in n for n in again.notes)
    utc = run_report(data_dir, since=day, until=day, today=TODAY, zone=UTC, tz="UTC", by=("hour",))
    assert utc.rollup_days == [day] and [row.keys["hour"] for row in utc.rows] == ["22"]
