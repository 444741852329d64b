"""Each man page says what its own command does: the exit statuses it can return and the environment it reads
(declared on the command with @declares, checked here against real runs), in 80 columns at MANWIDTH=80."""

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from metrics_ops import config
from metrics_ops.cli import cli
from metrics_ops.cli.common import VARIABLES_DOC, environment, exit_statuses
from metrics_ops.config import Settings, env_name
from metrics_ops.exitcodes import ExitCode
from metrics_ops.store import LOCK_NAME, file_name

from .helpers import days_ago, free_port, write_lines
from .wsgi_client import call

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.name for p in (ROOT / "man").glob("*.1"))


def section(page: str, name: str) -> str:
    text = (ROOT / "man" / page).read_text().replace("\\-", "-")
    return text.split(f"\n.SH {name}\n", 1)[1].split("\n.SH ", 1)[0]


def listed_statuses(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\.B (\d+)$", section(page, "EXIT STATUS"), re.M)]


def listed_variables(page: str) -> list[str]:
    return re.findall(r"^\.B ([A-Z_]+)$", section(page, "ENVIRONMENT"), re.M)


def command(page: str):
    words = page.removesuffix(".1").removeprefix("metrics-ops").strip("-")
    cmd = cli
    for word in ([words] if words in cli.commands else words.split("-") if words else []):
        cmd = cmd.commands[word]
    return cmd


def test_client_lists_neither_the_budget_status_nor_any_setting_and_rotate_lists_both():
    assert 6 not in listed_statuses("metrics-ops-client.1")
    assert listed_statuses("metrics-ops-client.1") == [0, 2]
    assert not [v for v in listed_variables("metrics-ops-client.1") if v.startswith("METRICS_")]
    assert listed_statuses("metrics-ops-rotate.1") == [0, 1, 2, 3, 6, 7]
    rotate_env = listed_variables("metrics-ops-rotate.1")
    assert {"METRICS_DIR", "METRICS_RETENTION", "METRICS_MAX_TOTAL_MB", "METRICS_STATUS_FILE"} <= set(rotate_env)
    assert not {"METRICS_PORT", "METRICS_SAMPLE_RATE", "METRICS_CORS_ORIGINS"} & set(rotate_env)


@pytest.mark.parametrize("page, present, absent", [
    ("metrics-ops-serve.1", {"METRICS_PORT", "METRICS_CORS_ORIGINS", "METRICS_SAMPLE_KEY", "METRICS_STATE_FILE"},
     {"METRICS_RETENTION", "METRICS_CLIENT_SAMPLE_RATE", "NO_COLOR", "XDG_STATE_HOME"}),
    ("metrics-ops-report.1", {"METRICS_DIR", "METRICS_TZ", "METRICS_CONFIG"}, {"METRICS_PORT", "METRICS_RETENTION"}),
    ("metrics-ops-sample-test.1", {"METRICS_CLIENT_SAMPLE_RATE", "METRICS_SAMPLE_RATES"}, {"METRICS_DIR"}),
    ("metrics-ops-probe.1", {"XDG_STATE_HOME"}, {"METRICS_DIR", "METRICS_CONFIG"}),
    ("metrics-ops-gzip.1", {"METRICS_GZIP_AFTER", "METRICS_GZIP_LEVEL"}, {"METRICS_RETENTION"}),
    ("metrics-ops-prune.1", {"METRICS_RETENTION"}, {"METRICS_GZIP_AFTER", "METRICS_GZIP_LEVEL"}),
])
def test_a_page_lists_the_variables_of_its_command_only(page, present, absent):
    listed = set(listed_variables(page))
    assert present <= listed and not absent & listed, sorted(listed)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_lists_what_its_command_declares(page):
    cmd = command(page)
    assert listed_statuses(page) == [int(c) for c in exit_statuses(cmd)]
    settings, other = environment(cmd)
    assert listed_variables(page) == [env_name(s) for s in settings] + other
    assert set(other) <= set(VARIABLES_DOC)


def test_the_group_page_lists_every_status_and_every_setting():
    assert listed_statuses("metrics-ops.1") == [int(c) for c in ExitCode]
    assert set(listed_variables("metrics-ops.1")) == {env_name(s) for s in Settings.fields} | set(VARIABLES_DOC)


# ------------------------------------------------------------------ the declarations hold for real runs
@pytest.fixture
def old_days(data_dir):
    for age in (40, 5, 4):
        write_lines(data_dir / file_name(days_ago(age), 0, False), "page_view", 200)
    return data_dir


@pytest.fixture
def held_lock(old_days):
    fd = os.open(old_days / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield old_days
    os.close(fd)


def test_each_status_a_command_really_returns_is_on_its_page(tmp_path, old_days, run, dead_url):
    missing, fresh = tmp_path / "missing", tmp_path / "fresh"
    fresh.mkdir()
    runs = [
        ("rotate", ExitCode.BUDGET, ["--data-dir", old_days, "rotate", "--once", "--max-total-mb", "0.0001"]),
        ("rotate", ExitCode.ATTENTION, ["--data-dir", fresh, "rotate", "--check"]),  # no pass recorded
        ("rotate", ExitCode.FAILURE, ["--data-dir", missing, "rotate", "--once"]),
        ("status", ExitCode.ATTENTION, ["--data-dir", old_days, "status", "--url", dead_url.split("/api")[0]]),
        ("sample-test", ExitCode.INCONCLUSIVE, ["sample-test", "--events", "50", "--seed", "1"]),
        ("sample-test", ExitCode.UNREACHABLE, ["sample-test", "--url", dead_url, "--events", "5"]),
        ("ratelimit-probe", ExitCode.UNREACHABLE, ["probe", dead_url, "--requests", "2"]),
        ("report", ExitCode.FAILURE, ["--data-dir", missing, "report"]),
        ("export", ExitCode.FAILURE, ["--data-dir", missing, "export"]),
        ("forget", ExitCode.FAILURE, ["--data-dir", missing, "forget", "v1"]),
        ("gzip", ExitCode.FAILURE, ["--data-dir", missing, "gzip"]),
        ("prune", ExitCode.FAILURE, ["--data-dir", missing, "prune"]),
        ("config-show", ExitCode.USAGE, ["config", "show"], {"METRICS_PORT": "eighty"}),
        ("client", ExitCode.USAGE, ["client", "--no-such-option"]),
    ]
    for name, code, args, *env in runs:
        r = run(*args, env=env[0] if env else None)
        assert r.exit_code == code, (args, r.output)
        assert int(code) in listed_statuses(f"metrics-ops-{name}.1"), (name, code)


@pytest.mark.parametrize("name", ["rotate", "gzip", "prune", "forget"])
def test_the_lock_status_is_on_the_page_of_every_command_that_waits_for_the_lock(held_lock, run, name):
    r = run("--data-dir", held_lock, name, *(["--once"] if name == "rotate" else ["v1"] if name == "forget" else []),
            "--lock-timeout", "0.1")
    assert r.exit_code == ExitCode.LOCKED, r.output
    assert int(ExitCode.LOCKED) in listed_statuses(f"metrics-ops-{name}.1")


class ReadSettings:
    """Which settings are read after a command has built them (validation reads every one: not counted)."""

    def __init__(self, monkeypatch):
        self.names: set[str] = set()
        self.on = False
        fields, original, recorder = set(Settings.fields), Settings.__getattribute__, self

        def getattribute(obj, name):
            if recorder.on and name in fields:
                recorder.names.add(name)
            return original(obj, name)

        load = config.load_settings

        def load_and_record(*args, **kwargs):
            settings = load(*args, **kwargs)
            recorder.on = True
            return settings

        monkeypatch.setattr(Settings, "__getattribute__", getattribute)
        monkeypatch.setattr(config, "load_settings", load_and_record)

    def clear(self):
        self.names, self.on = set(), False


#: what every Store is built from (Store.from_settings), used only by a command that writes data files
STORE = {"max_mb", "file_mode"}
#: what every maintenance pass is handed (_one_pass), read by the step that uses it
PASS = {"gzip_after", "retention", "gzip_level", "rollup_retention", "rollup_min_visitors", "max_total_mb",
        "min_free_mb", "min_free_percent"}


@pytest.mark.parametrize("args, allowed", [
    (["rotate", "--once"], set()),
    (["rotate", "--check"], set()),
    (["gzip"], STORE | PASS),
    (["prune"], STORE | PASS),
    (["forget", "v1"], STORE),
    (["report"], STORE),
    (["report", "--no-rollups", "--by", "day,event"], STORE),
    (["export", "--format", "csv"], STORE),
    (["status"], STORE),
    (["status", "--url", "http://127.0.0.1:9"], STORE),
    (["config", "show"], set()),
    (["sample-test", "--events", "100", "--seed", "1"], set()),
    (["client"], set()),
])
def test_a_command_reads_no_setting_its_page_does_not_list(monkeypatch, old_days, run, args, allowed):
    recorder = ReadSettings(monkeypatch)
    run("--data-dir", old_days, *args)
    assert recorder.names or args == ["client"], "nothing recorded: the settings were not built by load_settings"
    page = "metrics-ops-" + ("config-show" if args[0] == "config" else args[0]) + ".1"
    listed = set(listed_variables(page))
    unlisted = {name for name in recorder.names - allowed if env_name(name) not in listed}
    assert not unlisted, unlisted


def test_serve_reads_no_setting_its_page_does_not_list(monkeypatch, tmp_path):
    from metrics_ops.cli.serve import ready_line
    from metrics_ops.serve.app import make_app
    from metrics_ops.serve.runner import preflight

    recorder = ReadSettings(monkeypatch)
    s = config.load_settings({"dir": str(tmp_path / "served"), "port": free_port()})
    preflight(s)
    app = make_app(s)
    event = '{"event": "page_view", "visitor_id": "v1", "timestamp": "2026-01-01T00:00:00Z"}'
    assert call(app, "POST", "/api/metrics/event", event).status == 202
    for path in ("/healthz", "/metrics", "/api/metrics/snapshot", "/metrics.js"):
        assert call(app, "GET", path).status == 200
    ready_line(s)
    listed = set(listed_variables("metrics-ops-serve.1"))
    assert recorder.names and not {n for n in recorder.names if env_name(n) not in listed}


# ------------------------------------------------------------------ 80 columns
def rendered(page: str) -> list[str]:
    """The page as man(1) shows it at MANWIDTH=80, or groff at a line length of 80 when man is missing."""
    path = ROOT / "man" / page
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LANG": "C.UTF-8"})
    else:
        r = subprocess.run(["groff", "-man", "-Tutf8", "-rLL=80n", "-P-c", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return re.sub(r".\x08", "", r.stdout).splitlines()


@pytest.mark.skipif(shutil.which("man") is None and shutil.which("groff") is None, reason="neither man nor groff")
@pytest.mark.parametrize("page", PAGES)
def test_every_man_page_fits_80_columns(page):
    lines = rendered(page)
    assert len(lines) > 20
    assert [line for line in lines if len(line) > 80] == []
    assert [line for line in lines if line.endswith(("\u2010", "-"))] == []  # no word hyphenated across lines
    words = {w.strip(".,;()") for line in lines for w in line.split()}
    for name in listed_variables(page):
        assert name in words, name
