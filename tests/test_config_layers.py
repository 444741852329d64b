"""The settings layers read without pydantic-settings (issue 21 goal 2): what a command imports at start, and the
corner cases of the environment and .env layers that the layer test in test_config.py does not pin."""

import subprocess
import sys
from datetime import date

import pytest

from metrics_ops.config import ConfigError, load_settings, origins_of
from metrics_ops.store import file_name

from .helpers import data_file


def _imported(args, cwd) -> set[str]:
    """The modules ``python -m metrics_ops ARGS`` imports, from its own -X importtime report."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "metrics_ops", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 50, r.stderr[-2000:]  # the report is there: a real run imports hundreds of modules
    return {line.rsplit("|", 1)[1].strip() for line in lines}


@pytest.mark.parametrize("command", [["report", "--by", "day,event", "--json"], ["config", "show"],
                                     ["rotate", "--once", "--dry-run"]])
def test_no_command_imports_pydantic_settings_or_asyncio(data_dir, isolated_env, command):
    """pydantic-settings imported asyncio, ssl and argparse at every start (~0.09 s); the settings are read
    without it, and nothing else may bring those back (a .env is read too: python-dotenv stays light)."""
    at = f"{date.today().isoformat()}T00:00:01.000000Z"
    data_file(data_dir / file_name(date.today()), [{"visitor_id": f"v{i}", "event": "page_view", "received_at": at,
                                                     "ts": at, "client_rate": 1, "server_rate": 1} for i in range(3)])
    (isolated_env / ".env").write_text("METRICS_RETENTION=40\n")
    names = _imported(["--data-dir", data_dir, *command], isolated_env)
    assert "metrics_ops.config" in names and "dotenv" in names
    assert not {"pydantic_settings", "asyncio", "ssl", "argparse"} & names


def test_an_empty_variable_hides_the_layers_below(tmp_path, monkeypatch):
    """METRICS_MAX_MB= in the environment is set, to nothing: max_mb is unset, whatever .env and TOML say."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("max_mb = 7\n")
    (tmp_path / "cwd" / ".env").write_text("METRICS_MAX_MB=5\n")
    monkeypatch.setenv("METRICS_MAX_MB", "")
    s = load_settings(config_file=cfg)
    assert s.max_mb is None and origins_of(s)["max_mb"].source == "environment"
    monkeypatch.delenv("METRICS_MAX_MB")
    assert load_settings(config_file=cfg).max_mb == 5


def test_a_dotenv_key_without_a_value_sets_nothing(tmp_path):
    """A bare ``METRICS_MAX_MB`` line (no ``=``) is no value: the TOML file's shows through; ``METRICS_MAX_MB=``
    is a value, the empty text (unset for max_mb, not a number for retention)."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("max_mb = 7\n")
    (tmp_path / "cwd" / ".env").write_text("METRICS_MAX_MB\n")
    s = load_settings(config_file=cfg)
    assert s.max_mb == 7 and origins_of(s)["max_mb"].source == "toml"
    (tmp_path / "cwd" / ".env").write_text("METRICS_MAX_MB=\n")
    s = load_settings(config_file=cfg)
    assert s.max_mb is None and origins_of(s)["max_mb"].source == ".env"
    (tmp_path / "cwd" / ".env").write_text("METRICS_RETENTION=\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert err.value.lines == ["METRICS_RETENTION= (from .env): input should be a valid integer, unable to parse "
                               "string as an integer"]


def test_dotenv_lines_ending_in_crlf_and_variables_in_values(tmp_path, monkeypatch):
    (tmp_path / "cwd" / ".env").write_bytes(b"METRICS_TZ=Europe/Berlin\r\nMETRICS_RETENTION=${KEEP_DAYS}\r\n")
    monkeypatch.setenv("KEEP_DAYS", "45")
    s = load_settings()
    assert (s.tz, s.retention) == ("Europe/Berlin", 45)
    assert origins_of(s)["retention"].raw == "45"


def test_a_lowercase_variable_is_not_a_setting(monkeypatch):
    """Names are exact, as on every Unix tool: metrics_retention is not METRICS_RETENTION."""
    monkeypatch.setenv("metrics_retention", "7")
    s = load_settings()
    assert s.retention == 30 and origins_of(s)["retention"].source == "default"


@pytest.mark.parametrize("value, expected", [('["https://a.example", "https://b.example"]',
                                              ["https://a.example", "https://b.example"]),
                                             ("https://a.example/, https://b.example", ["https://a.example",
                                                                                        "https://b.example"]),
                                             ("", [])])
def test_cors_origins_from_a_variable_are_json_or_a_comma_list(monkeypatch, value, expected):
    monkeypatch.setenv("METRICS_CORS_ORIGINS", value)
    assert load_settings().cors_origins == expected


def test_a_dotenv_that_cannot_be_read_is_one_line(isolated_env, run):
    """A .env that is a regular file but cannot be read (here: /proc/self/mem, which fails with EIO at offset 0
    even for root) is a one-line error, exit 2, never a traceback."""
    (isolated_env / ".env").symlink_to("/proc/self/mem")
    r = run("config", "show")
    assert r.exit_code == 2
    assert r.stderr == "metrics-ops: .env: cannot read it: Input/output error\n"
