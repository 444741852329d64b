"""Values of single settings as the operator writes them: the case of a choice, a serve host with control
characters, a .env that is no regular file. Each through the real CLI (a subprocess), as an operator meets it."""

import json
import os
import socket
import subprocess
import urllib.request

import pytest

from .helpers import CLI, cli, free_port, wait_healthy


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


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_toml_infinity_for_a_whole_number_is_one_line(isolated_env, tmp_path, value):
    """rollup_min_visitors = inf (valid TOML) ended in a traceback: its check turned the value into an integer."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(f"rollup_min_visitors = {value}\nretention = {value}\n")
    r = cli("--config", cfg, "config", "show")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    finite = "input should be a finite number"
    assert sorted(r.stderr.splitlines()) == [f"metrics-ops: retention = {value} (from {cfg}): {finite}",
                                             f"metrics-ops: rollup_min_visitors = {value} (from {cfg}): {finite}"]


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


def _dotenv_refused(cwd) -> str:
    """The one error line of `config show` in ``cwd`` (a FIFO opened for reading would wait for ever: the timeout
    is the test's guard)."""
    return _one_error(cli("config", "show", cwd=cwd, timeout=30))


def test_a_dotenv_that_is_a_dangling_symlink_is_one_line(isolated_env):
    """It was skipped in silence: the settings the operator meant to give were never read, and nothing said so."""
    (isolated_env / ".env").symlink_to(isolated_env / "settings.env")
    assert _dotenv_refused(isolated_env) == (
        f".env: a dangling symlink (to {isolated_env / 'settings.env'}, which does not exist); give it a file or "
        "remove it")
    (isolated_env / "loop").symlink_to("loop")
    (isolated_env / ".env").unlink()
    (isolated_env / ".env").symlink_to("loop")
    assert _dotenv_refused(isolated_env) == ".env: a symlink loop; give it a file or remove it"


def test_a_dotenv_that_is_a_fifo_a_socket_or_a_device_is_one_line_never_opened(isolated_env, tmp_path):
    os.mkfifo(isolated_env / ".env")
    assert _dotenv_refused(isolated_env) == ".env: a FIFO, not a file of settings; give it a file or remove it"
    (isolated_env / ".env").unlink()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(isolated_env / ".env"))
    try:
        assert _dotenv_refused(isolated_env) == ".env: a socket, not a file of settings; give it a file or remove it"
    finally:
        sock.close()
    (isolated_env / ".env").unlink()
    (isolated_env / ".env").symlink_to("/dev/zero")
    assert _dotenv_refused(isolated_env) == (
        ".env: a symlink to a character device (/dev/zero), not a file of settings; give it a file or remove it")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (isolated_env / ".env").unlink()
    (isolated_env / ".env").symlink_to(fifo)
    assert _dotenv_refused(isolated_env) == (
        f".env: a symlink to a FIFO ({fifo}), not a file of settings; give it a file or remove it")


def test_a_dotenv_directory_or_dev_null_is_no_dotenv_as_before(isolated_env, tmp_path):
    """A virtualenv is often named .env: a directory of that name is no settings file and stays ignored, linked
    or not; /dev/null is the empty file it is for --config too."""
    (isolated_env / ".env").mkdir()
    (isolated_env / ".env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert _shown(env={"METRICS_RETENTION": "9"})["retention"]["value"] == 9
    r = cli("config", "show", cwd=isolated_env)
    assert r.returncode == 0 and r.stderr == ""
    (isolated_env / ".env" / "pyvenv.cfg").unlink()
    (isolated_env / ".env").rmdir()
    (isolated_env / ".env").symlink_to(tmp_path, target_is_directory=True)
    r = cli("config", "show", cwd=isolated_env)
    assert r.returncode == 0 and r.stderr == ""
    (isolated_env / ".env").unlink()
    (isolated_env / ".env").symlink_to(os.devnull)
    r = cli("config", "show", cwd=isolated_env)
    assert r.returncode == 0 and r.stderr == ""


def test_a_dotenv_over_a_mebibyte_is_no_settings_file_like_a_toml_file(isolated_env):
    """The .env is read by the same reader as --config: the same cap, the same one line."""
    (isolated_env / ".env").write_bytes(b"# padding\n" * 110_000)
    assert _dotenv_refused(isolated_env) == ".env: larger than 1 MiB: not a settings file"


# Values that ended in a traceback (exit 1) instead of one line (found by attacking the settings' fast check):
# Python's own limits (recursion, integer digits, float range), symlink loops, NUL and undecodable bytes.
HOSTILE_ENV = [
    ({"METRICS_CORS_ORIGINS": "[" * 3000}, "METRICS_CORS_ORIGINS=[[[[", "not valid JSON: nested too deep"),
    ({"METRICS_SAMPLE_RATES": '{"a":' * 3000}, "METRICS_SAMPLE_RATES={", "not valid JSON: nested too deep"),
    ({"METRICS_SAMPLE_RATES": '{"a": 1' + "0" * 400 + "}"}, "METRICS_SAMPLE_RATES=", "input should be"),
    ({"METRICS_DIR": "~\udcff"}, "METRICS_DIR=~\\xff (from the environment): ~\\xff is no user", ""),
    ({"METRICS_SAMPLE_RATES": "\udcff=2"}, "METRICS_SAMPLE_RATES=\\xff=2 (from the environment): ", "not UTF-8"),
    ({"METRICS_SAMPLE_RATES": '{"\udcff": true}'}, "METRICS_SAMPLE_RATES=", "must be a number, not true"),
    ({"METRICS_CORS_ORIGINS": "https://\udcff"}, "METRICS_CORS_ORIGINS=https://\\xff (from the environment): ",
     "not UTF-8"),
]


@pytest.mark.parametrize(("env", "start", "words"), HOSTILE_ENV)
def test_a_hostile_variable_is_one_line(env, start, words):
    line = _one_error(cli("config", "show", env=env))
    assert line.startswith(start) and words in line, line


def test_a_symlink_loop_for_a_path_is_one_line(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for variable, value in (("METRICS_DIR", loop), ("METRICS_STATUS_FILE", loop),
                            ("METRICS_HEALTH_TEXTFILE", loop / "x"), ("METRICS_STATE_FILE", loop)):
        for command in (("config", "show"), ("status",), ("rotate", "--once")):
            line = _one_error(cli(*command, env={variable: str(value)}, cwd=tmp_path))
            assert line == f"{variable}={value} (from the environment): the path is a symlink loop, or goes through one"


@pytest.mark.parametrize(("toml", "words"), [
    ("interval = 1" + "0" * 400, "interval = 1000"),
    ("retention = 1" + "0" * 5000, "malformed TOML: an integer of over 4300 digits"),
    ("cors_origins = " + "[" * 400 + "]" * 400, "cors_origins = [[[[[[[[[...]]]]]]]]]"),
    ("cors_origins = " + "[" * 3000 + "]" * 3000, "malformed TOML: nested too deep"),
    ('dir = "/tmp/a\\u0000b"', "dir = '/tmp/a\\x00b' (from m.toml): a path cannot hold a NUL character"),
])
def test_a_hostile_toml_value_is_one_line(tmp_path, toml, words):
    cfg = tmp_path / "m.toml"
    cfg.write_text(toml + "\n")
    line = _one_error(cli("--config", "m.toml", "config", "show", cwd=tmp_path))
    assert words in line, line


def test_a_nul_in_a_path_from_dotenv_is_one_line(tmp_path):
    (tmp_path / ".env").write_bytes(b"METRICS_STATUS_FILE=/tmp/a\x00b\n")
    line = _one_error(cli("config", "show", cwd=tmp_path))
    assert line.endswith("a path cannot hold a NUL character"), line


def test_every_pair_of_settings_that_cannot_go_together_gets_its_line(tmp_path):
    """The link, the state file, the status file and the health textfile all wrong at once: one line each, not
    only the first (an operator fixed one and met the next at the next start)."""
    d = tmp_path / "data"
    env = {"METRICS_DIR": str(d), "METRICS_JSONL": str(tmp_path / "m.jsonl"), "METRICS_STATE_FILE": str(d / "x"),
           "METRICS_STATUS_FILE": str(d / "metrics-2026-01-01.jsonl"),
           "METRICS_HEALTH_TEXTFILE": str(d / "rollups" / "h.prom")}
    r = cli("config", "show", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    named = [f"metrics-ops: {name}={env[name]}" for name in ("METRICS_JSONL", "METRICS_STATUS_FILE",
                                                             "METRICS_HEALTH_TEXTFILE")]
    assert [line.split(" (from")[0] for line in lines] == named, lines  # the state file may be in the directory
    assert lines[0].endswith("the link must be a file directly inside the data directory")
    assert "cannot be a data file" in lines[1] and "cannot be inside the data directory" in lines[2]


# Found by a second attack: paths the kernel will not look up or read, and settings that name one file twice.
def test_a_path_that_cannot_be_looked_up_is_one_line_never_a_traceback(tmp_path):
    long_dir = tmp_path / ("a" * 300)  # a name over 255 bytes: ENAMETOOLONG
    (tmp_path / "file").write_text("")
    for env, words in (({"METRICS_DIR": str(long_dir)}, "cannot be looked up: File name too long"),
                       ({"METRICS_DIR": str(tmp_path / "file" / "x")}, "does not exist (a part of its path is a file)"),
                       ({"METRICS_CONFIG": str(long_dir)}, "cannot read it: File name too long"),
                       ({"METRICS_CONFIG": str(tmp_path / "file" / "m.toml")}, "cannot read it: Not a directory")):
        for command in (("status",), ("report", "--since", "2026-01-01"), ("rotate", "--once")):
            r = cli(*command, env=env, cwd=tmp_path)
            assert r.returncode in (1, 2) and "Traceback" not in r.stderr and words in r.stderr, (command, r.stderr)
            assert r.stderr.count("\n") == 1, r.stderr


def test_one_file_for_two_of_the_tools_files_is_refused(tmp_path):
    env = {"METRICS_STATE_FILE": str(tmp_path / "s"), "METRICS_STATUS_FILE": str(tmp_path / "s"),
           "METRICS_HEALTH_TEXTFILE": f"{tmp_path}//s"}
    r = cli("--data-dir", tmp_path / "data", "config", "show", env=env, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 3, r.stderr
    assert all(line.endswith("two of the tool's files cannot be one file") for line in r.stderr.splitlines())


@pytest.mark.parametrize("link", ["data/..", "data/.", "data"])
def test_the_link_cannot_be_the_data_directory_or_its_parent(tmp_path, link):
    (tmp_path / "data").mkdir()
    line = _one_error(cli("--data-dir", "data", "config", "show", env={"METRICS_JSONL": link}, cwd=tmp_path))
    assert line.endswith("the link must be a file directly inside the data directory"), line


def test_a_status_file_that_is_a_fifo_or_a_device_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "status.fifo"
    os.mkfifo(fifo)
    (tmp_path / "data").mkdir()
    for status_file in (fifo, "/dev/zero"):
        for command in (("status",), ("rotate", "--check")):
            r = cli("--data-dir", tmp_path / "data", *command, env={"METRICS_STATUS_FILE": str(status_file)},
                    timeout=60)
            assert r.returncode == 7, r.stderr  # needs attention: the status cannot be read
            assert r.stderr == f"metrics-ops: cannot read the status file {status_file}: it is a FIFO, socket or " \
                               "device\n"


def test_serve_hands_its_workers_the_directory_it_checked_through_a_symlink_and_dotdot(tmp_path):
    """METRICS_DIR=link/.. is the parent of link's target for the kernel (and report, rotate); serve's workers were
    handed the text's parent instead (abspath drops .. by the text) and stored the events elsewhere."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "link").symlink_to("../real/sub")
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], cwd=tmp_path / "here", stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "METRICS_DIR": "link/..", "METRICS_STATUS_FILE": "st"})
    try:
        wait_healthy(port, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/metrics/event", method="POST",
                                     data=b'{"visitor_id":"v1","event":"page_view"}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["stored"] == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"(data directory {tmp_path / 'real'}, 2 workers)" in err, err
    assert [p.name for p in (tmp_path / "real").glob("metrics-*.jsonl")] != []
    assert list((tmp_path / "here").glob("metrics-*")) == []
