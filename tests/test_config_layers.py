"""The settings layers read without pydantic-settings (issue 21 goal 2): what a command imports at start, and the
corner cases of the environment and .env layers that the layer test in test_config.py does not pin."""

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from metrics_ops.config import ConfigError, load_settings, origins_of
from metrics_ops.store import file_name

from .helpers import cli, data_file


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


def _one_error(r) -> str:
    """The one error line of a refused start: exit 2, a single line on stderr, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("metrics-ops: "), r.stderr
    return r.stderr[len("metrics-ops: "):-1]


def test_a_value_with_a_line_break_is_shown_on_its_one_line(isolated_env):
    """A value printed back cannot split its error line, nor forge a line of its own under it."""
    line = _one_error(cli("config", "show", env={"METRICS_TZ": "Europe/Berlin\nmetrics-ops: all good\t"}))
    assert line == ("METRICS_TZ=Europe/Berlin\\nmetrics-ops: all good\\t (from the environment): unknown time zone "
                    "(want an IANA name such as Europe/Berlin)")
    (isolated_env / ".env").write_text('METRICS_SAMPLE_RATES="{\\"a\\nb\\": 2}"\n')
    assert "\\n" in _one_error(cli("config", "show"))


def test_bytes_that_are_not_utf8_are_refused_in_one_line_except_in_a_path(isolated_env, data_dir):
    """The environment holds bytes: a byte that is no UTF-8 is shown as the operator sent it (\\xff); a path may
    hold it (as a file name may), any other setting refuses it at start, before serve or sample-test hash with it
    (the sample key failed with a traceback in serve's workers and in sample-test)."""
    line = _one_error(cli("config", "show", env={b"METRICS_TZ": b"Europe/\xff"}))
    assert line.startswith("METRICS_TZ=Europe/\\xff (from the environment): not UTF-8 text")
    r = cli("sample-test", "--mode", "visitor", "--client-rate", "0.5", "--events", "100",
            env={b"METRICS_SAMPLE_KEY": b"k\xffey"})
    assert _one_error(r).startswith("METRICS_SAMPLE_KEY=(hidden) (from the environment): not UTF-8 text")
    odd = os.fsencode(data_dir) + b"/d\xff"
    os.mkdir(odd)
    r = cli("config", "show", "--json", env={b"METRICS_DIR": odd})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dir"]["source"] == "environment"


def test_a_toml_value_of_the_wrong_type_never_shows_a_credential(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text('archive_url = ["s3://AKIAKEY:TOPSECRET@bucket", {u = "s3://K2:S2@b"}]\n')
    line = _one_error(cli("--config", cfg, "config", "show"))
    assert "TOPSECRET" not in line and "S2" not in line and "AKIAKEY" not in line
    assert line.startswith(f"archive_url = ['s3://***@bucket', {{ u = 's3://***@b' }}] (from {cfg}): ")


@pytest.mark.parametrize("toml, expected", [
    ("retention = true", "retention = true (from {cfg}): want a number, not true"),
    ("sample_rate = false", "sample_rate = false (from {cfg}): want a number, not false"),
    ("sample_rates = {page_view = true}", "sample_rates = {{ page_view = true }} (from {cfg}): the rate of page_view "
                                          "must be a number, not true"),
    ("tz = 2024-01-01", "tz = 2024-01-01 (from {cfg}): input should be a valid string"),
    ("dir = 5", "dir = 5 (from {cfg}): want a path, as a string"),
    ("tz = true", "tz = true (from {cfg}): input should be a valid string"),
    ("max_mb = true", "max_mb = true (from {cfg}): want a number, not true"),
])
def test_toml_types_are_kept_and_named_as_toml(tmp_path, toml, expected):
    """TOML has booleans: `retention = true` is no retention of 1 day. A value is written back as TOML."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(toml + "\n")
    assert _one_error(cli("--config", cfg, "config", "show")) == expected.format(cfg=cfg)


def test_the_problems_of_a_lists_items_share_one_line():
    line = _one_error(cli("config", "show", env={"METRICS_CORS_ORIGINS": "[1, 2]"}))
    assert line == ("METRICS_CORS_ORIGINS=[1, 2] (from the environment): item 1: input should be a valid string; "
                    "item 2: input should be a valid string")


@pytest.mark.parametrize("value", ['["https://a.example/", " https://b.example:8443/ "]',
                                  "https://a.example/, https://b.example:8443"])
def test_cors_origins_are_kept_as_a_browser_sends_them_in_every_form(tmp_path, monkeypatch, value):
    """The Origin header never ends in /: the JSON and TOML lists cut it off, as the comma list always did."""
    monkeypatch.setenv("METRICS_CORS_ORIGINS", value)
    assert load_settings().cors_origins == ["https://a.example", "https://b.example:8443"]
    monkeypatch.delenv("METRICS_CORS_ORIGINS")
    cfg = tmp_path / "m.toml"
    cfg.write_text('cors_origins = ["https://a.example/", "*", "null"]\n')
    assert load_settings(config_file=cfg).cors_origins == ["https://a.example", "*", "null"]


@pytest.mark.parametrize("value", ["shop.example", "https://shop.example/metrics", '{"a": 1}'])
def test_a_cors_origin_no_browser_could_send_is_refused(value):
    """Such an origin would never equal an Origin header: every request from the site would get 403, no hint."""
    line = _one_error(cli("config", "show", env={"METRICS_CORS_ORIGINS": value}))
    assert line.startswith(f"METRICS_CORS_ORIGINS={value} (from the environment): ")
    assert "is not an origin: want scheme://host[:port]" in line


@pytest.mark.parametrize("value", ["=0.5", "page_view=0.5, =1", '{"": 0.5}'])
def test_a_sample_rate_without_an_event_name_is_refused(value):
    line = _one_error(cli("config", "show", env={"METRICS_SAMPLE_RATES": value}))
    assert line == (f"METRICS_SAMPLE_RATES={value} (from the environment): an event name cannot be empty (=rate "
                    "with no name)")


@pytest.mark.parametrize("line", ["METRICS_CONFIG=site.toml", "METRICS_SERVE_SETTINGS={}"])
def test_a_dotenv_naming_the_config_file_is_refused_not_ignored(isolated_env, line):
    """METRICS_CONFIG is read from the environment only: in .env it named a TOML file that was never read (its
    settings silently missing); empty, it is nothing, as in the environment."""
    (isolated_env / "site.toml").write_text("retention = 77\n")
    (isolated_env / ".env").write_text(line + "\n")
    name = line.partition("=")[0]
    assert _one_error(cli("config", "show")).startswith(f"{line} (from .env): ")
    (isolated_env / ".env").write_text(name + "=\n")
    assert cli("config", "show").returncode == 0


def test_a_path_starting_with_a_tilde_is_in_the_home_directory_from_every_layer(tmp_path, monkeypatch):
    """The shell expands ~ only in an unquoted word: from .env, TOML, quotes or --data-dir=~/x it was a directory
    named ~ in the working directory. A TOML path with ~ is not relative to the file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    monkeypatch.setenv("METRICS_DIR", "~/metrics")
    assert load_settings().dir == home / "metrics"
    monkeypatch.delenv("METRICS_DIR")
    (tmp_path / "cwd" / ".env").write_text("METRICS_JSONL=~/site/metrics.jsonl\n")
    s = load_settings()
    assert (s.dir, s.link_path) == (home / "site", home / "site" / "metrics.jsonl")
    (tmp_path / "cwd" / ".env").unlink()
    cfg = tmp_path / "etc" / "m.toml"
    cfg.parent.mkdir()
    cfg.write_text('dir = "~/d"\nhealth_textfile = "~/prom/metrics.prom"\n')
    s = load_settings(config_file=cfg)
    assert (s.dir, s.health_textfile) == (home / "d", home / "prom" / "metrics.prom")
    assert load_settings({"dir": "~/flag"}).dir == home / "flag"
    cfg.write_text('status_file = "~no-such-user-here/s"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert err.value.lines == [f"status_file = '~no-such-user-here/s' (from {cfg}): ~no-such-user-here is no user "
                               "with a home directory"]


@pytest.mark.parametrize("text, lines", [("METRICS_RETENTION 5\n", [1]),
                                         ("METRICS_TZ=UTC\nMETRICS_ADMIN_TOKEN='s3cr3t-s3cr3t-s3cr3t\n==x\n", [2, 3]),
                                         ('METRICS_RETENTION="5" days\n', [1])])
def test_a_dotenv_line_that_cannot_be_parsed_is_refused_not_skipped(isolated_env, text, lines):
    """python-dotenv skips such a line with a warning of its own and the setting on it was lost (exit 0 with the
    default retention); each is one line naming where it is, never what it holds (it may be a secret)."""
    (isolated_env / ".env").write_text(text)
    r = cli("config", "show")
    assert r.returncode == 2
    assert r.stderr == "".join(f"metrics-ops: .env line {n}: cannot read it as NAME=value (nothing on it would be "
                               "read); fix or remove it\n" for n in lines)


def test_a_misspelt_variable_name_with_a_byte_that_is_not_utf8_is_named_as_sent():
    r = cli("config", "show", env={b"METRICS_RETENTON\xff": b"3"})
    assert r.returncode == 0
    assert r.stderr == "metrics-ops: ignoring METRICS_RETENTON\\xff; did you mean METRICS_RETENTION?\n"


def test_a_toml_key_spelled_as_its_variable_names_the_key(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text("METRICS_RETENTION = 5\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert err.value.lines == [f"--config {cfg}: unknown key 'METRICS_RETENTION'; did you mean 'retention'?"]


def test_serve_refuses_a_sample_key_that_is_not_utf8_before_binding(data_dir):
    """Its workers hashed the first visitor with it and died with a traceback each; now serve stops at start, in
    one line, and the port was never bound."""
    import socket

    from .helpers import free_port

    port = free_port()
    r = cli("--data-dir", data_dir, "serve", "--port", port, "--sample-mode", "visitor",
            env={b"METRICS_SAMPLE_KEY": b"\xffkey"}, timeout=60)
    assert _one_error(r).startswith("METRICS_SAMPLE_KEY=(hidden) (from the environment): not UTF-8 text")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_config_show_keeps_a_value_with_a_line_break_or_an_escape_on_its_row():
    """A value is printed escaped: its line break cannot split its row, an escape sequence never reaches the
    terminal (the row of a value from the environment that may hold them: a path; serve's host refuses them)."""
    r = cli("config", "show", env={"METRICS_STATE_FILE": "/tmp/a\nb\x1b[31mred"})
    assert r.returncode == 0 and "\x1b" not in r.stdout
    assert "state_file\t/tmp/a\\nb\\x1b[31mred\tenvironment\tMETRICS_STATE_FILE\n" in r.stdout


@pytest.mark.parametrize("toml, shown", [("file_mode = 0o640", "416"), ("file_mode = 640", "640")])
def test_a_file_mode_from_toml_must_be_text(tmp_path, toml, shown):
    cfg = tmp_path / "m.toml"
    cfg.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert err.value.lines == [f'file_mode = {shown} (from {cfg}): want the mode as text, such as "0640" (a number '
                               "loses its octal digits)"]
    cfg.write_text('file_mode = "0640"\n')
    assert load_settings(config_file=cfg).file_mode_bits == 0o640


def test_serve_hands_its_workers_a_directory_name_that_is_not_utf8_and_origins_as_sent(tmp_path):
    """A path may hold any byte, as a file name may: serve's ready line shows it as \\xff (it was a traceback) and
    the worker stores into exactly that directory; the JSON list's https://a.example/ allows https://a.example."""
    import urllib.request

    from .helpers import CLI, free_port, wait_healthy

    data = os.fsencode(tmp_path) + b"/d\xff"
    os.mkdir(data)
    port = free_port()
    env = {**os.environb, b"METRICS_DIR": data, b"METRICS_WORKERS": b"1",
           b"METRICS_CORS_ORIGINS": b'["https://a.example/"]'}
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/metrics/event", method="POST",
                                     data=json.dumps({"event": "page_view", "visitor_id": "v1"}).encode(),
                                     headers={"Content-Type": "application/json", "Origin": "https://a.example"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202 and resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert f"(data directory {tmp_path}/d\\xff, 1 worker)" in stderr and "Traceback" not in stderr
    assert [n for n in os.listdir(data) if n.startswith(b"metrics-")]


def test_a_huge_value_is_cut_in_its_error_line(tmp_path):
    """100,000 characters printed back made a 100 kB line, which journald splits (48 KiB): the line shows the start
    and the length. A TOML string is shown quoted, its line break escaped once."""
    line = _one_error(cli("config", "show", env={"METRICS_RETENTION": "9" * 100_000}))
    assert line == (f"METRICS_RETENTION={'9' * 256}... (100,000 characters) (from the environment): unable to parse "
                    "input string as an integer, exceeded maximum size")
    cfg = tmp_path / "m.toml"
    cfg.write_text('tz = "Europe/Berlin\\nx"\n')
    line = _one_error(cli("--config", cfg, "config", "show"))
    assert line.startswith(f"tz = 'Europe/Berlin\\nx' (from {cfg}): unknown time zone")


def test_a_config_file_that_is_a_fifo_a_device_or_huge_is_one_line(tmp_path):
    """A FIFO made --config wait for a writer for ever, /dev/zero read until memory ran out (a MemoryError
    traceback); /dev/null stays the empty file it always was."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        assert _one_error(cli("--config", path, "config", "show", timeout=30)) == (
            f"--config {path}: not a regular file (a FIFO, socket or device); give a TOML file")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\nretention = 9\n")
    assert _one_error(cli("config", "show", env={"METRICS_CONFIG": str(big)})) == (
        f"METRICS_CONFIG={big}: larger than 1 MiB: not a settings file")
    assert load_settings(config_file="/dev/null").retention == 30


def test_the_config_file_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.toml").write_text('retention = 44\ndir = "d"\n')
    r = cli("config", "show", "--json", env={"METRICS_CONFIG": "~/m.toml"})
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["retention"]["value"] == 44 and shown["dir"]["value"] == str(tmp_path / "d")


def test_a_dotenv_value_from_a_variable_is_named_as_written_and_as_expanded(isolated_env, monkeypatch):
    """`METRICS_RETENTION=${KEEP_DAYS}` with KEEP_DAYS unset was reported as `METRICS_RETENTION=`, a line the
    operator never wrote; the line shows both. A secret stays hidden either way."""
    (isolated_env / ".env").write_text("METRICS_RETENTION=${KEEP_DAYS}\nMETRICS_ADMIN_TOKEN=${TOKEN}\n")
    monkeypatch.setenv("TOKEN", "t" * 20)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.lines == ['METRICS_RETENTION=${KEEP_DAYS} (which gave ""; from .env): input should be a valid '
                               "integer, unable to parse string as an integer"]
    monkeypatch.setenv("KEEP_DAYS", "45")
    monkeypatch.setenv("TOKEN", "short")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.lines[0].startswith("METRICS_ADMIN_TOKEN=(hidden) (from .env): the admin token must be")
