"""The command group: help, version, the loop under signals, error paths without tracebacks."""

import json
import os
import signal
import subprocess
import time

import click
import pytest

from metrics_ops import __version__
from metrics_ops.cli import cli as cli_group

from .helpers import CLI, cli, free_port


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path, cmd", list(_commands(cli_group)),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example(run, path, cmd):
    r = run(*path, "-h")
    assert r.exit_code == 0
    assert "Example" in r.stdout, f"{' '.join(path)} --help has no example"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


def test_version(run):
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"metrics-ops, version {__version__}\n"


def test_python_dash_m_and_output_options_after_the_command(tmp_path):
    (tmp_path / "d").mkdir()
    r = cli("--data-dir", tmp_path / "d", "rotate", "--once", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and [a["kind"] for a in doc["actions"]] == ["create", "link"]


def test_unknown_option_is_a_usage_error(run):
    r = run("rotate", "--bogus")
    assert r.exit_code == 2 and "No such option" in r.stderr


def _start_loop(d, *extra):
    """rotate in a loop every 0.2 s, its stdout and stderr in files beside ``d`` (read while it runs)."""
    proc_out, proc_err = d.parent / "loop.out", d.parent / "loop.err"
    with open(proc_out, "w") as out, open(proc_err, "w") as err:  # the child keeps its own descriptors
        proc = subprocess.Popen([*CLI, "--data-dir", d, "rotate", "--create", "--interval", "0.2", *extra],
                                stdout=out, stderr=err, text=True)
    proc.out, proc.err = proc_out, proc_err
    return proc


def _until(proc, path, text: str, count: int, timeout: float = 30) -> None:
    """Until ``text`` appears ``count`` times in the file (a loaded machine may start the loop slowly)."""
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_loop_stops_cleanly_on_signal(tmp_path, sig):
    d = tmp_path / "d"
    proc = _start_loop(d, "--json", "-v")  # -v: every pass, those with nothing to do included
    _until(proc, proc.out, '"steps"', 2)  # a few passes
    proc.send_signal(sig)
    proc.wait(timeout=10)
    out, err = proc.out.read_text(), proc.err.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.count('"steps"') >= 2  # one JSON document per pass


def test_loop_reports_a_failing_pass_and_goes_on(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    # a directory in place of the link: every pass fails to point it, and the loop must keep going
    (d / "metrics.jsonl").mkdir()
    proc = _start_loop(d)
    _until(proc, proc.err, "neither a symlink nor a regular file", 2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    err = proc.err.read_text()
    assert proc.returncode == 0
    failures = [line for line in err.splitlines() if "neither a symlink nor a regular file" in line]
    assert len(failures) >= 2, err
    assert "Traceback" not in err


def test_once_exit_status_says_the_pass_failed(tmp_path, run):
    d = tmp_path / "d"
    d.mkdir()
    (d / "metrics.jsonl").mkdir()
    r = run("--data-dir", d, "rotate", "--once")
    assert r.exit_code == 1
    assert r.stderr.startswith("metrics-ops: rotate link metrics.jsonl: ")


def test_unwritable_data_dir_is_one_line(tmp_path, run):
    target = "/proc/metrics-ops-cannot-exist"  # not even root can create a directory in /proc
    r = run("--data-dir", target, "rotate", "--once", "--create")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"metrics-ops: cannot create data directory {target}: ")
    assert len(r.stderr.splitlines()) == 1


def test_data_dir_and_config_are_accepted_after_the_command_too(tmp_path, run):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    r = run("rotate", "--once", "--data-dir", after, "--json")
    assert r.exit_code == 0, r.stderr
    assert (after / "metrics.jsonl").is_symlink()
    r = run("--data-dir", before, "rotate", "--once", "-q", "--data-dir", after)  # after the command wins
    assert r.exit_code == 0, r.stderr
    assert not (before / "metrics.jsonl").exists()
    toml = tmp_path / "m.toml"
    toml.write_text("retention = 61\n")
    r = run("config", "show", "--json", "--config", toml)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["retention"] == {"value": 61, "source": "toml", "env": "METRICS_RETENTION",
                                                 "file": str(toml)}
    for command in (("gzip",), ("prune",), ("serve",), ("sample-test",), ("config", "show")):
        help_text = run(*command, "-h").stdout
        assert "--data-dir" in help_text and "--config" in help_text, command


@pytest.mark.parametrize("command", [("rotate", "--once"), ("rotate", "--interval", "1"), ("gzip",), ("prune",)])
def test_maintenance_never_invents_a_data_directory(tmp_path, monkeypatch, command):
    home = tmp_path / "home"  # cron's working directory, without METRICS_DIR
    home.mkdir()
    monkeypatch.chdir(home)
    r = cli(*command, "-q", timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    hint = "rotate --create makes it" if command[0] != "rotate" else "add --create to make it"
    assert r.stderr == (f"metrics-ops: data directory {home / 'data'} does not exist (the default ./data in the "
                        f"working directory {home}; set METRICS_DIR or --data-dir); {hint}\n")
    assert list(home.iterdir()) == []


def test_missing_data_dir_names_where_the_setting_came_from(tmp_path, run):
    target = tmp_path / "srv" / "metrics"
    r = run("rotate", "--once", env={"METRICS_DIR": str(target)})
    assert r.exit_code == 1
    assert r.stderr == (f"metrics-ops: data directory {target} does not exist (METRICS_DIR={target} (from the "
                        "environment)); add --create to make it\n")
    assert not target.exists()
    r = run("rotate", "--once", "--create", "-q", env={"METRICS_DIR": str(target)})
    assert r.exit_code == 0 and r.stderr == ""
    assert (target / "metrics.jsonl").is_symlink()


def test_top_level_help_says_what_each_command_is_for_at_80_columns():
    r = cli("--help", env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0
    assert "rotate, gzip and prune the event files" not in r.stdout
    commands = r.stdout.split("Commands:\n", 1)[1].splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1] for line in commands if line.strip()}
    # probe is the alias, not a second command
    assert set(listed) == {"archive", "client", "completion", "config", "export", "forget", "gzip", "prune",
                           "ratelimit-probe", "report", "rotate", "sample-test", "serve", "status"}
    assert "alias: probe" in listed["ratelimit-probe"]
    assert not [line for line in commands if line.endswith("...") or len(line) > 80]  # nothing cut off
    assert run_probe_alias_help() == cli("ratelimit-probe", "--help").stdout.replace("ratelimit-probe", "probe")


def run_probe_alias_help() -> str:
    return cli("probe", "--help", check=True).stdout


@pytest.mark.parametrize("command", [("rotate", "--once"), ("rotate", "--once", "--create"), ("gzip",), ("prune",),
                                     ("report",), ("export",), ("forget", "v1")])
@pytest.mark.parametrize("given", ["flag", "env"])
def test_a_data_directory_that_is_a_file_is_one_line_naming_it(tmp_path, command, given):
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    args, env = (["--data-dir", afile], {}) if given == "flag" else ([], {"METRICS_DIR": str(afile)})
    r = cli(*args, *command, env=env, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    said = f"--data-dir {afile} (from the command line)" if given == "flag" else \
        f"METRICS_DIR={afile} (from the environment)"
    assert r.stderr == f"metrics-ops: data directory {afile} is not a directory ({said})\n"
    assert afile.read_text() == "not a directory\n"


def test_serve_and_status_name_a_data_directory_that_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = cli("--data-dir", afile, "serve", "--port", free_port(), timeout=30)
    assert (r.returncode, r.stderr) == (1, f"metrics-ops: data directory {afile} is not a directory\n")
    r = cli("--data-dir", afile, "status", timeout=30)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"metrics-ops: data directory {afile} is not a directory (--data-dir {afile} (from the "
                        "command line))\n")


#: every command that reads or maintains a data directory, and what its line adds after the directory's origin
DATA_DIR_COMMANDS = {
    ("rotate", "--once"): "; add --create to make it",
    ("rotate", "--interval", "1"): "; add --create to make it",
    ("rotate", "--check"): "; rotate --create makes it",
    ("gzip",): "; rotate --create makes it",
    ("prune",): "; rotate --create makes it",
    ("archive",): "; rotate --create makes it",
    ("status",): "; rotate --create makes it",
    ("forget", "v1"): "",
    ("report",): "",
    ("export",): "",
    ("sample-test", "--url", "{url}", "--events", "5"): "",  # live: the lines of the run are counted there
}
#: commands with --data-dir that do not need it to exist, and why
DATA_DIR_EXEMPT = {
    "serve": "creates it (its own preflight words the same line when it is a file)",
    "config": "shows the settings, including a data directory not made yet",
    "sample-test": "simulated without --url: reads no directory (with --url: above)",
    "client": "prints the browser script: reads no directory",
}


def test_every_command_with_a_data_directory_is_in_the_missing_directory_loop():
    with_option = {name for name, cmd in cli_group.commands.items()
                   if any(p.name == "data_dir" for p in cmd.params)
                   or isinstance(cmd, click.Group) and any(p.name == "data_dir" for sub in cmd.commands.values()
                                                            for p in sub.params)}
    assert with_option == {c[0] for c in DATA_DIR_COMMANDS} | set(DATA_DIR_EXEMPT) - {"probe"}


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_missing_data_directory_is_one_line_and_exit_1_for_every_command(tmp_path, dead_url, kind):
    """The same line everywhere, with the exit status the man pages document for it; before anything is sent
    (sample-test --url: exit 1, not 5 for the dead URL) and nothing is created."""
    from metrics_ops.exitcodes import EXIT_STATUS_DOC, ExitCode

    assert "the data directory does not exist" in EXIT_STATUS_DOC[ExitCode.FAILURE]
    target = tmp_path / "nowhere" / "data"
    if kind == "a file":
        target = tmp_path / "afile"
        target.write_text("not a directory\n")
    why = "does not exist" if kind == "missing" else "is not a directory"
    for command, hint in DATA_DIR_COMMANDS.items():
        args = [a.format(url=dead_url) for a in command]
        r = cli("--data-dir", target, *args, timeout=60)
        hint = hint if kind == "missing" else ""  # the hints make a directory, never replace a file
        assert (r.returncode, r.stdout, r.stderr) == (
            ExitCode.FAILURE, "",
            f"metrics-ops: data directory {target} {why} (--data-dir {target} (from the command line)){hint}\n"
        ), command
    assert not (tmp_path / "nowhere").exists() if kind == "missing" else target.read_text() == "not a directory\n"
