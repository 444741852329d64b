"""Values of single settings as the operator writes them: the case of a choice, a serve host with control
characters, a .env that is no regular file. Each through the real CLI (a subprocess), as an operator meets it."""

import json

import pytest

from .helpers import cli, free_port


def _one_error(r) -> str:
    """The one error line of a refused start: exit 2, a single line on stderr, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("metrics-ops: "), r.stderr
    return r.stderr[len("metrics-ops: "):-1]


def _shown(*args, env=None) -> dict:
    r = cli(*args, "config", "show", "--json", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("METRICS_LOG_LEVEL", "INFO", "info"),
    ("METRICS_LOG_LEVEL", "Warning", "warning"),
    ("METRICS_LOG_LEVEL", " Debug ", "debug"),
    ("METRICS_SAMPLE_MODE", "VISITOR", "visitor"),
    ("METRICS_SAMPLE_MODE", "Random", "random"),
])
def test_a_choice_in_any_case_from_the_environment_is_taken_lowercased(variable, value, expected):
    """METRICS_LOG_LEVEL=INFO (how most tools spell a level) was refused: want 'debug', 'info', ..."""
    shown = _shown(env={variable: value})
    field = variable[len("METRICS_"):].lower()
    assert shown[field]["value"] == expected and shown[field]["source"] == "environment"


def test_a_choice_in_any_case_from_dotenv_and_toml_is_taken_lowercased(isolated_env, tmp_path):
    (isolated_env / ".env").write_text("METRICS_LOG_LEVEL=ERROR\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text('sample_mode = "Visitor"\n')
    shown = _shown("--config", cfg)
    assert shown["log_level"]["value"] == "error" and shown["sample_mode"]["value"] == "visitor"


def test_a_choice_flag_in_any_case_is_taken():
    """serve --log-level INFO and --sample-mode VISITOR passed click's choice check only in lowercase; here the
    start goes on to the next problem (--workers 0), which proves both flags were taken."""
    r = cli("serve", "--port", free_port(), "--log-level", "INFO", "--sample-mode", "Visitor", "--workers", "0",
            timeout=60)
    assert _one_error(r).startswith("--workers 0 (from the command line): ")
    r = cli("sample-test", "--mode", "VISITOR", "--client-rate", "0.5", "--events", "100")
    assert r.returncode != 2 and "Invalid value" not in r.stderr, r.stderr  # 100 events: 0 or 4, inconclusive


def test_a_choice_that_is_none_in_any_case_is_still_one_line():
    line = _one_error(cli("config", "show", env={"METRICS_LOG_LEVEL": "LOUD"}))
    assert line.startswith("METRICS_LOG_LEVEL=LOUD (from the environment): input should be 'debug', 'info'")
    r = cli("serve", "--log-level", "LOUD")
    assert r.returncode == 2 and "'LOUD' is not one of" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("args", "env", "shown"), [
    ((), {"METRICS_HOST": "127.0.0.1\nmetrics-ops: serve ready"},
     "METRICS_HOST=127.0.0.1\\nmetrics-ops: serve ready (from the environment)"),
    ((), {"METRICS_HOST": "\x1b[2J127.0.0.1"}, "METRICS_HOST=\\x1b[2J127.0.0.1 (from the environment)"),
    (("--host", "127.0.0.1\t"), {}, "--host 127.0.0.1\\t (from the command line)"),
])
def test_a_serve_host_with_a_control_character_is_refused_at_load_shown_escaped(data_dir, args, env, shown):
    """A host with a line break or an escape sequence went as it was to the bind, whose error printed it raw: a
    forged second line, or a terminal cleared by ESC[2J. It is refused when the settings are read, escaped, and
    the port is never bound."""
    port = free_port()
    line = _one_error(cli("--data-dir", data_dir, "serve", "--port", port, *args, env=env, timeout=60))
    assert line == f"{shown}: the host holds a control or other invisible character; give an IP address or a host name"
    assert "\x1b" not in line
    assert _one_error(cli("config", "show", env={"METRICS_HOST": "a\x07b"})).startswith("METRICS_HOST=a\\x07b ")


def test_a_host_serve_cannot_listen_on_is_one_line_shown_escaped(data_dir):
    """A host no resolver knows, or one that cannot even be encoded as a host name (a TypeError traceback), is
    one line naming the setting; the host in a bind error is shown escaped whatever it holds."""
    from metrics_ops.serve.runner import ServeError, check_port

    port = free_port()
    r = cli("--data-dir", data_dir, "serve", "--port", port, "--host", "no-such-host.invalid", timeout=60)
    line = _one_error(r)
    assert line.startswith(f"cannot listen on no-such-host.invalid:{port}: ")
    assert line.endswith("(--host / METRICS_HOST)")
    r = cli("--data-dir", data_dir, "serve", "--port", port, env={"METRICS_HOST": "\u00e9" * 70}, timeout=60)
    assert _one_error(r).startswith(f"cannot listen on {'é' * 70}:{port}: ")
    with pytest.raises(ServeError) as err:
        check_port("bad\nhost\x1b", port)
    assert str(err.value).startswith(f"cannot listen on bad\\nhost\\x1b:{port}: ") and err.value.exit_code == 2
