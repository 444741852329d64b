"""Values out of the calendar's or the clock's range (issue 18 item 3): one line and exit 2, never a traceback.

Every setting that counts days, seconds or sizes has bounds in the Settings model; --since/--until accept the days
from 1970-01-01 to 9999-12-31; a status file with impossible times is unreadable, not an overflow.
"""

import json

import pytest

from metrics_ops.store import file_name

from .helpers import data_file, days_ago


@pytest.mark.parametrize("args, named", [
    (["report", "--since", "1000000d"], "--since 1000000d"),
    (["report", "--since", "9" * 40 + "d"], "--since 9999"),
    (["report", "--until", "0001-01-03"], "--until 0001-01-03"),
    (["report", "--since", "0001-01-01", "--until", "0001-01-03"], "--until 0001-01-03"),
    (["export", "--since", "1000000d"], "--since 1000000d"),
    (["export", "--until", "0001-01-03"], "--until 0001-01-03"),
    (["rotate", "--interval", "1e10"], "--interval 1e+10"),
    (["rotate", "--once", "--interval", "1e300"], "--interval 1e+300"),
    (["rotate", "--check", "--interval", "1e300"], "--interval 1e+300"),
    (["status", "--interval", "1e12"], "--interval 1e+12"),
    (["rotate", "--once", "--retention", "1000000"], "--retention 1000000"),
    (["rotate", "--once", "--min-free-mb", "1e300"], "--min-free-mb 1e+300"),
    (["rotate", "--once", "--lock-timeout", "1e300"], "--lock-timeout 1e+300"),
])
def test_a_flag_out_of_range_is_one_line_and_exit_2(data_dir, run, args, named):
    kept = data_file(data_dir / file_name(days_ago(2)), [{"visitor_id": "v", "event": "e"}])
    r = run("--data-dir", data_dir, *args)
    assert r.exit_code == 2, r.output
    [line] = r.stderr.splitlines()
    assert line.startswith(f"metrics-ops: {named}"), line
    assert r.stdout == "" and (data_dir / file_name(days_ago(2))).read_text() == kept[0] + "\n"


@pytest.mark.parametrize("name, value", [
    ("METRICS_INTERVAL", "1e12"), ("METRICS_INTERVAL", "0"), ("METRICS_RETENTION", "1000000"),
    ("METRICS_GZIP_AFTER", "1000000"), ("METRICS_ROLLUP_RETENTION", "100000000"), ("METRICS_MAX_MB", "1e300"),
    ("METRICS_MAX_TOTAL_MB", "1e300"), ("METRICS_MIN_FREE_MB", "1e300"), ("METRICS_SERVE_MIN_FREE_MB", "1e300"),
    ("METRICS_LOCK_TIMEOUT", "1e300"),
])
def test_a_setting_out_of_range_is_one_line_and_exit_2_with_status(data_dir, run, name, value):
    r = run("--data-dir", data_dir, "status", env={name: value})
    assert r.exit_code == 2, r.output
    [line] = r.stderr.splitlines()
    assert line.startswith(f"metrics-ops: {name}={value} (from the environment): input should be "), line


def test_the_day_range_stays_in_the_calendar(data_dir, run):
    r = run("--data-dir", data_dir, "report", "--until", "1970-01-02", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["since"], doc["until"]) == ("1970-01-01", "1970-01-02")  # the default week, cut at the epoch
    r = run("--data-dir", data_dir, "report", "--since", "9999-12-31", "--until", "9999-12-31", "--json")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("line", [
    '{"time":1e300,"result":"ok","last_success":1e300,"duration":0,"interval":300}',
    '{"time":1796304987,"result":"ok","last_success":1796304987,"duration":0,"interval":1e300}',
    '{"time":NaN,"result":"ok","last_success":null,"duration":0,"interval":300}',
    '{"time":"x","result":"ok","last_success":null,"duration":0,"interval":300}',
])
def test_a_status_file_with_impossible_times_is_unreadable_not_an_overflow(data_dir, run, line):
    (data_dir / ".metrics-ops.status").write_text(line + "\n")
    for args in (["rotate", "--check"], ["status"]):
        r = run("--data-dir", data_dir, *args)
        assert r.exit_code == 7, r.output
        assert f"metrics-ops: the status file {data_dir}/.metrics-ops.status does not hold a metrics-ops status " \
               "line" in r.stderr.splitlines()
