"""`metrics-ops status` (issue 14): is everything fine? Real directories, a real serve, a real terminal."""

import gzip
import json
import re
from datetime import date, timedelta

from metrics_ops.store import file_name

from .helpers import console_script, days_ago, run_in_pty
from .serve_process import Server

TODAY = date.today()


def lines(n: int) -> bytes:
    return b"".join(b'{"visitor_id":"v%d","event":"e"}\n' % i for i in range(n))


def test_a_healthy_directory_reads_fine_and_the_next_pass_is_planned_at_its_time(data_dir, run):
    (data_dir / file_name(days_ago(2))).write_bytes(lines(10))  # compressed by a pass in 1 day, not now
    (data_dir / file_name(days_ago(10), gz=True)).write_bytes(gzip.compress(lines(10)))
    (data_dir / file_name(days_ago(10), 1, gz=True)).write_bytes(gzip.compress(lines(10)))
    assert run("--data-dir", data_dir, "rotate", "--once", "-q", "--interval", 86400).exit_code == 0
    r = run("--data-dir", data_dir, "status", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["attention"] == []
    data = doc["data"]
    assert (data["days"], data["plain_files"], data["archived_files"], data["shard_files"]) == (3, 2, 2, 1)
    assert data["oldest"] == str(days_ago(10)) and data["newest"] == str(TODAY)
    assert doc["last_pass"]["result"] == "ok"
    nxt = doc["next_pass"]
    assert nxt["at"] == doc["last_pass"]["time"] + 86400  # the interval the rotator recorded
    assert nxt["compress"] == [file_name(days_ago(2))] and nxt["delete"] == [] and nxt["budget_delete"] == []
    assert doc["disk"]["free_bytes"] > 0 and doc["disk"]["serve_min_free_bytes"] == 64 * 1024 * 1024


def test_each_problem_is_one_line_and_exit_7(data_dir, run):
    r = run("--data-dir", data_dir, "status")
    assert r.exit_code == 7
    assert r.stderr == "metrics-ops: no maintenance pass has recorded a status yet (is the rotator running?)\n"
    (data_dir / file_name(days_ago(40))).write_bytes(lines(5000))
    (data_dir / (file_name(days_ago(5), gz=True) + ".corrupt")).write_bytes(b"not gzip")
    assert run("--data-dir", data_dir, "rotate", "--once", "-q", "--retention", 400).exit_code == 0
    r = run("--data-dir", data_dir, "status", env={"METRICS_MAX_TOTAL_MB": "0.001"})
    assert r.exit_code == 7
    assert len(r.stderr.splitlines()) == 2, r.stderr
    assert "over max_total_mb 1.0 KiB" in r.stderr and "set aside as unreadable" in r.stderr
    doc = json.loads(run("--data-dir", data_dir, "status", "--json", env={"METRICS_RETENTION": "30"}).stdout)
    assert doc["next_pass"]["delete"] == [file_name(days_ago(40), gz=True)]


def test_rejects_a_url_that_is_not_http(data_dir, run):
    r = run("--data-dir", data_dir, "status", "--url", "ftp://x")
    assert r.exit_code == 2 and r.stderr.startswith("metrics-ops: --url ftp://x: want an http:// or https:// URL")


def test_a_url_that_is_no_url_is_one_line_naming_it(data_dir, run):
    for url, why in [("http://[::1", "invalid IPv6 URL"), ("http://", "want an http:// or https:// URL"),
                     ("http://127.0.0.1:99999", "the port is not a number from 0 to 65535")]:
        r = run("--data-dir", data_dir, "status", "--url", url)
        assert (r.exit_code, r.stdout) == (2, ""), url
        assert r.stderr == f"metrics-ops: --url {url}: {why} (serve's base, e.g. http://127.0.0.1:8001)\n"


def test_a_status_file_that_cannot_be_read_is_one_line_not_two(data_dir, run):
    """It is there but not a status line (or a directory): that line alone, not also "no pass has recorded"."""
    status = data_dir / ".metrics-ops.status"
    status.mkdir()
    r = run("--data-dir", data_dir, "status")
    assert r.exit_code == 7 and r.stderr == f"metrics-ops: cannot read the status file {status}: Is a directory\n"
    status.rmdir()
    status.write_text("garbage\n")
    r = run("--data-dir", data_dir, "status")
    assert r.exit_code == 7
    assert r.stderr == f"metrics-ops: the status file {status} does not hold a metrics-ops status line\n"
    assert run("--data-dir", data_dir, "rotate", "--check").stderr == r.stderr  # the health check says the same


def test_asks_a_real_serve_for_its_health_and_counters(data_dir, tmp_path, run):
    server = Server(data_dir, tmp_path / "serve.log")
    try:
        for i in range(3):
            assert server.post_event({"visitor_id": f"v{i}", "event": "page_view"})[1]["stored"] == 1
        assert run("--data-dir", data_dir, "rotate", "--once", "-q").exit_code == 0
        r = run("--data-dir", data_dir, "status", "--json", "--url", f"http://127.0.0.1:{server.port}")
        # the event URL (what probe and sample-test take) names the same serve
        by_event_url = run("--data-dir", data_dir, "status", "--json", "--url",
                           f"http://127.0.0.1:{server.port}/api/metrics/event")
        elsewhere = run("--data-dir", data_dir, "status", "--url", f"http://127.0.0.1:{server.port}/some/prefix")
    finally:
        server.stop()
    assert r.exit_code == 0, r.output
    srv = json.loads(r.stdout)["serve"]
    assert srv["healthz"] == 200 and srv["counters"]["stored"] == 3 and srv["counters"]["received"] == 3
    assert by_event_url.exit_code == 0 and json.loads(by_event_url.stdout)["serve"]["url"] == srv["url"]
    assert elsewhere.exit_code == 7
    assert elsewhere.stderr.endswith("/some/prefix: /healthz 404: no serve /healthz there (HTTP 404); give serve's "
                                     "base URL, e.g. http://127.0.0.1:8001\n")
    r = run("--data-dir", data_dir, "status", "--url", f"http://127.0.0.1:{server.port}")
    assert r.exit_code == 7
    assert r.stderr == f"metrics-ops: serve at http://127.0.0.1:{server.port}: cannot connect: connection refused\n"


def test_one_screen_at_80_columns_on_a_terminal(data_dir, run):
    for age in range(0, 365):  # a year of files
        day = TODAY - timedelta(days=age)
        (data_dir / file_name(day, gz=age >= 3)).write_bytes(b"x")
        (data_dir / file_name(day, 1, gz=age >= 3)).write_bytes(b"x")
    assert run("--data-dir", data_dir, "rotate", "--once", "-q", "--retention", 400).exit_code == 0
    code, text = run_in_pty([console_script(), "--data-dir", data_dir, "status"])
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # NO_COLOR keeps bold and italic
    assert code == 0, text
    assert f"{data_dir}: everything fine" in " ".join(text.split())  # a long directory wraps the title line
    assert "365 (" in text and "730 files" not in text and "365 files" in text  # shards counted once
    assert max(len(line) for line in text.splitlines()) <= 80
    assert len(text.splitlines()) <= 24  # one screen
