"""The config layer: precedence of every layer, provenance, and the exact one-line errors (exit 2)."""

import json

import pytest

from metrics_ops.config import ConfigError, Settings, load_settings, origins_of


def test_defaults_keep_the_existing_systems_names_and_values():
    s = load_settings()
    assert (s.dir.as_posix(), s.link_path.as_posix()) == ("data", "data/metrics.jsonl")
    assert (s.sample_rate, s.ring_capacity, s.gzip_after, s.retention) == (1.0, 500, 3, 30)
    assert (s.max_mb, s.interval, s.tz) == (None, 300, "UTC")
    assert {o.source for o in origins_of(s).values()} == {"default"}


def _layers(tmp_path, monkeypatch, *, toml=None, dotenv=None, env=None):
    cfg = None
    if toml is not None:
        cfg = tmp_path / "m.toml"
        cfg.write_text(f"retention = {toml}\n")
    if dotenv is not None:
        (tmp_path / "cwd" / ".env").write_text(f"METRICS_RETENTION={dotenv}\n")
    if env is not None:
        monkeypatch.setenv("METRICS_RETENTION", str(env))
    return cfg


@pytest.mark.parametrize(
    "layers, flag, expected, source",
    [
        ({}, None, 30, "default"),
        ({"toml": 11}, None, 11, "toml"),
        ({"toml": 11, "dotenv": 12}, None, 12, ".env"),
        ({"toml": 11, "dotenv": 12, "env": 13}, None, 13, "environment"),
        ({"toml": 11, "dotenv": 12, "env": 13}, 14, 14, "flag"),
        ({"dotenv": 12}, 14, 14, "flag"),
        ({"toml": 11, "env": 13}, None, 13, "environment"),
    ],
)
def test_each_layer_beats_the_one_below(tmp_path, monkeypatch, layers, flag, expected, source):
    cfg = _layers(tmp_path, monkeypatch, **layers)
    s = load_settings({"retention": flag}, config_file=cfg)
    assert s.retention == expected
    assert origins_of(s)["retention"].source == source


def test_config_show_names_every_source(tmp_path, monkeypatch, run):
    cfg = tmp_path / "m.toml"
    cfg.write_text('gzip_after = 2\ntz = "Europe/Berlin"\n')
    (tmp_path / "cwd" / ".env").write_text("METRICS_INTERVAL=60\n")
    monkeypatch.setenv("METRICS_RETENTION", "45")
    r = run("--config", cfg, "--data-dir", tmp_path / "d", "config", "show", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["gzip_after"] == {"value": 2, "source": "toml", "env": "METRICS_GZIP_AFTER", "file": str(cfg)}
    assert doc["tz"]["source"] == "toml"
    assert doc["interval"]["source"] == ".env" and doc["interval"]["value"] == 60
    assert doc["retention"]["source"] == "environment" and doc["retention"]["value"] == 45
    assert doc["dir"] == {"value": str(tmp_path / "d"), "source": "flag", "env": "METRICS_DIR"}
    assert doc["sample_rate"]["source"] == "default"
    assert doc["jsonl"]["value"] == str(tmp_path / "d" / "metrics.jsonl")
    assert doc["state_file"] == {"value": str(tmp_path / "d" / ".metrics-ops.state"), "source": "default",
                                 "env": "METRICS_STATE_FILE"}


def test_config_show_prints_the_state_file_serve_will_use(tmp_path, run):
    r = run("--data-dir", tmp_path / "d", "config", "show")
    assert r.exit_code == 0, r.output
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in r.stdout.splitlines()}
    assert rows["state_file"] == [str(tmp_path / "d" / ".metrics-ops.state"), "default", "METRICS_STATE_FILE"]
    # the rotator's status file too: where it is, not "unset" (an operator would think none is written)
    assert rows["status_file"] == [str(tmp_path / "d" / ".metrics-ops.status"), "default", "METRICS_STATUS_FILE"]
    r = run("--data-dir", tmp_path / "d", "config", "show", env={"METRICS_STATE_FILE": str(tmp_path / "s")})
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in r.stdout.splitlines()}
    assert rows["state_file"] == [str(tmp_path / "s"), "environment", "METRICS_STATE_FILE"]


def test_toml_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "etc").mkdir()
    cfg = tmp_path / "etc" / "m.toml"
    cfg.write_text('dir = "../var/data"\n')
    s = load_settings(config_file=cfg)
    assert s.dir.resolve() == (tmp_path / "var" / "data").resolve()


def test_metrics_jsonl_alone_implies_its_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("METRICS_JSONL", str(tmp_path / "x" / "events.jsonl"))
    s = load_settings()
    assert s.dir == tmp_path / "x"
    assert s.link_path == tmp_path / "x" / "events.jsonl"


def test_empty_max_mb_means_unset(monkeypatch):
    monkeypatch.setenv("METRICS_MAX_MB", "")
    assert load_settings().max_mb is None
    monkeypatch.setenv("METRICS_MAX_MB", "0.5")
    assert load_settings().max_bytes == 512 * 1024


# Every bad value: the exact line (setting as the operator spelled it, value, source, why) and exit 2.
BAD_ENV = [
    ({"METRICS_SAMPLE_RATE": "1.5"},
     "METRICS_SAMPLE_RATE=1.5 (from the environment): input should be less than or equal to 1"),
    ({"METRICS_RETENTION": "-1"},
     "METRICS_RETENTION=-1 (from the environment): input should be greater than or equal to 1"),
    ({"METRICS_GZIP_AFTER": "40"},
     "METRICS_GZIP_AFTER=40 (from the environment) with METRICS_RETENTION=30 (default): gzip_after is greater "
     "than retention: files would be deleted before they are compressed"),
    ({"METRICS_TZ": "Mars/Olympus"},
     "METRICS_TZ=Mars/Olympus (from the environment): unknown time zone (want an IANA name such as Europe/Berlin)"),
    ({"METRICS_DIR": "/srv/a", "METRICS_JSONL": "/srv/b/metrics.jsonl"},
     "METRICS_JSONL=/srv/b/metrics.jsonl (from the environment) with METRICS_DIR=/srv/a (from the environment): "
     "the link must be a file directly inside the data directory"),
    ({"METRICS_RING_CAPACITY": "lots"},
     "METRICS_RING_CAPACITY=lots (from the environment): input should be a valid integer, unable to parse string "
     "as an integer"),
    ({"METRICS_MAX_MB": "-3"},
     "METRICS_MAX_MB=-3 (from the environment): input should be greater than 0"),
    ({"METRICS_GZIP_LEVEL": "10"},
     "METRICS_GZIP_LEVEL=10 (from the environment): input should be less than or equal to 9"),
    # a rate whose weight 1 / rate no reader can use (issue 18 item 1): the floor is events.MIN_RATE
    ({"METRICS_SAMPLE_RATE": "5e-324"},
     "METRICS_SAMPLE_RATE=5e-324 (from the environment): a rate must be 0 or at least 1e-06 (one in a million)"),
    ({"METRICS_SAMPLE_RATES": "click=1e-300"},
     "METRICS_SAMPLE_RATES=click=1e-300 (from the environment): rate of click must be 0 or between 1e-06 and 1"),
    ({"METRICS_CLIENT_SAMPLE_RATE": "1e-7"},
     "METRICS_CLIENT_SAMPLE_RATE=1e-7 (from the environment): a rate must be 0 or at least 1e-06 (one in a "
     "million)"),
    # the admin token is a secret: a bad one is refused without being shown
    ({"METRICS_ADMIN_TOKEN": "hunter2"},
     "METRICS_ADMIN_TOKEN=(hidden) (from the environment): the admin token must be 16 to 256 characters of A-Z a-z "
     "0-9 - . _ ~ + / = (what a bearer header carries), e.g. from: openssl rand -hex 32"),
    ({"METRICS_KEEP_QUERY": "maybe"},
     "METRICS_KEEP_QUERY=maybe (from the environment): input should be a valid boolean, unable to interpret input"),
]


@pytest.mark.parametrize("env, line", BAD_ENV, ids=[next(iter(e)) for e, _ in BAD_ENV])
def test_bad_environment_values(run, env, line):
    r = run("rotate", "--once", env=env)
    assert r.exit_code == 2
    assert r.stderr == f"metrics-ops: {line}\n"
    assert r.stdout == ""


def test_bad_flag_names_the_flag(run, data_dir):
    r = run("--data-dir", data_dir, "prune", "--retention", "-1")
    assert r.exit_code == 2
    assert r.stderr == ("metrics-ops: --retention -1 (from the command line): "
                        "input should be greater than or equal to 1\n")


def test_bad_dotenv_value_names_the_file(run):
    with open(".env", "w") as fh:
        fh.write("METRICS_SAMPLE_RATE=1.5\n")
    r = run("config", "show")
    assert r.exit_code == 2
    assert r.stderr == ("metrics-ops: METRICS_SAMPLE_RATE=1.5 (from .env): "
                        "input should be less than or equal to 1\n")


def test_bad_toml_value_names_file_and_key(run, tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text("sample_rate = 1.5\n")
    r = run("--config", cfg, "config", "show")
    assert r.exit_code == 2
    assert r.stderr == f"metrics-ops: sample_rate = 1.5 (from {cfg}): input should be less than or equal to 1\n"


def test_missing_config_file(run, tmp_path):
    r = run("--config", tmp_path / "nope.toml", "config", "show")
    assert r.exit_code == 2
    assert "--config" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.output


def test_malformed_toml(run, tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text("retention = \n")
    r = run("--config", cfg, "config", "show")
    assert r.exit_code == 2
    assert r.stderr == f"metrics-ops: --config {cfg}: malformed TOML: Invalid value (at line 1, column 13)\n"


def test_unknown_toml_key_is_an_error_not_a_silent_typo(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text("retension = 5\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config_file=cfg)
    assert exc.value.lines == [f"--config {cfg}: unknown key 'retension'; did you mean 'retention'?"]


def test_two_bad_values_give_two_lines(run):
    r = run("config", "show", env={"METRICS_SAMPLE_RATE": "2", "METRICS_TZ": "Nowhere/Land"})
    assert r.exit_code == 2
    assert len(r.stderr.splitlines()) == 2


def test_settings_model_validates_direct_construction_too():
    with pytest.raises(Exception, match="the link must be a file directly inside the data directory"):
        Settings(dir="/srv/a", jsonl="/srv/b/metrics.jsonl")


# The message names the option as the command defines it, whatever the setting behind it is called.
FLAG_SPELLINGS = [
    (("gzip", "--level", "12"), "--level 12 (from the command line): input should be less than or equal to 9"),
    (("sample-test", "--server-rate", "1.5"),
     "--server-rate 1.5 (from the command line): input should be less than or equal to 1"),
    (("sample-test", "--client-rate", "2"),
     "--client-rate 2 (from the command line): input should be less than or equal to 1"),
    (("serve", "--sample-rate", "-0.5"),
     "--sample-rate -0.5 (from the command line): input should be greater than or equal to 0"),
    (("rotate", "--once", "--gzip-after", "0"),
     "--gzip-after 0 (from the command line): input should be greater than or equal to 1"),
]


@pytest.mark.parametrize("args, line", FLAG_SPELLINGS, ids=[" ".join(a[:2]) for a, _ in FLAG_SPELLINGS])
def test_a_bad_flag_is_named_as_the_operator_typed_it(run, data_dir, args, line):
    r = run("--data-dir", data_dir, *args)
    assert (r.exit_code, r.stderr) == (2, f"metrics-ops: {line}\n")


def test_the_group_option_is_named_too(run, tmp_path):
    r = run("--data-dir", tmp_path / "d", "--config", tmp_path / "nothing.toml", "config", "show")
    assert r.exit_code == 2 and "nothing.toml" in r.stderr  # click's own check of --config
    f = tmp_path / "file"
    f.write_text("")
    r = run("--data-dir", f / "sub", "config", "show", env={"METRICS_JSONL": "/elsewhere/metrics.jsonl"})
    assert r.exit_code == 2
    assert r.stderr.startswith("metrics-ops: METRICS_JSONL=/elsewhere/metrics.jsonl (from the environment) with "
                               f"--data-dir {f / 'sub'} (from the command line): ")


def test_every_setting_a_command_takes_has_an_option_named_after_it():
    """option_for() finds options by name: a renamed parameter must fail here, not in front of an operator."""
    import click

    from metrics_ops.cli import cli
    from metrics_ops.cli.common import option_for

    for name in ("gzip", "prune", "rotate", "serve", "sample-test"):
        cmd = cli.commands[name]
        ctx = click.Context(cmd, parent=click.Context(cli, info_name="metrics-ops"), info_name=name)
        for param in cmd.params:
            if param.name in Settings.fields:
                assert option_for(ctx, param.name) in param.opts
        assert option_for(ctx, "dir") == "--data-dir"


def test_prune_alone_does_not_care_about_gzip_after(run, data_dir):
    r = run("--data-dir", data_dir, "prune", "--retention", "2")
    assert r.exit_code == 0, r.stderr
    r = run("--data-dir", data_dir, "gzip", "--gzip-after", "40")
    assert r.exit_code == 0, r.stderr


def test_rotate_which_does_both_refuses_gzip_after_beyond_retention(run, data_dir):
    r = run("--data-dir", data_dir, "rotate", "--once", "--retention", "2")
    assert r.exit_code == 2
    assert r.stderr == ("metrics-ops: METRICS_GZIP_AFTER=3 (default) with --retention 2 (from the command line): "
                        "gzip_after is greater than retention: files would be deleted before they are compressed\n")
    assert list(data_dir.iterdir()) == []  # nothing was changed


# --- settings that point at data, odd values (issue 9) -------------------------------------------------------
@pytest.mark.parametrize("name, why", [
    ("metrics-2026-11-20.jsonl", "the link cannot have a data file's name"),
    ("metrics-2026-11-20.3.jsonl.gz", "the link cannot have a data file's name"),
    (".metrics-ops.state", "the link cannot be the state file or a lock file"),
    (".metrics-ops.lock", "the link cannot be the state file or a lock file"),
])
def test_the_link_may_never_name_data_or_tool_files(tmp_path, monkeypatch, run, name, why):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metrics-2026-11-20.jsonl").write_text("1\n2\n3\n")
    monkeypatch.setenv("METRICS_JSONL", str(data / name))
    r = run("rotate", "--once")
    assert r.exit_code == 2
    assert r.stderr == f"metrics-ops: METRICS_JSONL={data / name} (from the environment): {why}" + \
        r.stderr.split(why, 1)[1]
    assert len(r.stderr.splitlines()) == 1
    assert (data / "metrics-2026-11-20.jsonl").read_text() == "1\n2\n3\n"  # nothing replaced by a symlink


def test_the_state_file_may_not_be_a_data_file_or_the_link(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_DIR", str(tmp_path))
    for target in ("metrics-2026-11-20.jsonl", "metrics.jsonl", ".metrics-ops.lock", "metrics-2026-11-26.jsonl.gz.tmp",
                   "metrics-2026-11-26.jsonl.forget.tmp", "metrics-2026-11-26.jsonl.gz.corrupt",
                   ".metrics-2026-11-26.jsonl.gz.tmp", ".metrics-2026-11-26.jsonl.forget.tmp",
                   ".metrics-2026-11-26.jsonl.gz.corrupt"):  # the hidden names this version gives them
        monkeypatch.setenv("METRICS_STATE_FILE", str(tmp_path / target))
        with pytest.raises(ConfigError) as err:
            load_settings()
        assert err.value.lines[0].startswith(f"METRICS_STATE_FILE={tmp_path / target} (from the environment): the "
                                             "state file cannot be")


@pytest.mark.parametrize("name, value", [("METRICS_MAX_MB", "inf"), ("METRICS_INTERVAL", "inf"),
                                         ("METRICS_LOCK_TIMEOUT", "nan"), ("METRICS_SAMPLE_RATE", "nan")])
def test_infinite_and_nan_numbers_are_one_line_exit_2(monkeypatch, run, name, value):
    monkeypatch.setenv(name, value)
    r = run("rotate", "--once", "--dry-run")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith(f"metrics-ops: {name}={value} (from the environment): input should be a finite number")


def test_a_dotenv_that_is_not_utf8_is_one_line(isolated_env, run):
    (isolated_env / ".env").write_bytes(b"METRICS_RETENTION=9\nMETRICS_TZ=Europe/Z\xfcrich\n")
    r = run("config", "show")
    assert r.exit_code == 2
    assert r.stderr == "metrics-ops: .env line 2: not UTF-8 text; save the file as UTF-8\n"


def test_an_unknown_key_in_dotenv_is_refused_like_one_in_toml(isolated_env, run):
    (isolated_env / ".env").write_text("METRICS_RETENSION=7\nOTHER_TOOL=1\nMETRICS_CONFIG=\n")
    r = run("config", "show")
    assert r.exit_code == 2
    assert r.stderr == ("metrics-ops: METRICS_RETENSION (from .env): unknown setting; did you mean "
                        "METRICS_RETENTION?\n")


@pytest.mark.parametrize("mode, ok", [("0640", True), ("644", True), ("0600", True), ("0755", False),
                                      ("0400", False), ("rw-r-----", False)])
def test_file_mode_is_octal_and_owner_writable(monkeypatch, mode, ok):
    monkeypatch.setenv("METRICS_FILE_MODE", mode)
    if ok:
        assert load_settings().file_mode_bits == int(mode, 8)
    else:
        with pytest.raises(ConfigError) as err:
            load_settings()
        assert err.value.lines[0].startswith(f"METRICS_FILE_MODE={mode} (from the environment): ")


# --- typos the operator would never notice, secrets never shown (issue 19 items 2-4) ---------------------------
def _config_show(*args, env=None, cwd=None):
    """`metrics-ops config show` in a process of its own (a warning is said once per process)."""
    from .helpers import cli

    return cli(*args, "config", "show", env=env, cwd=cwd, timeout=60)


@pytest.mark.parametrize("name, meant", [("METRICS_RETENTON", "METRICS_RETENTION"),
                                         ("METRICS_CORS_ORIGIN", "METRICS_CORS_ORIGINS"),
                                         ("metrics_dir", "METRICS_DIR"), ("Metrics_Retention", "METRICS_RETENTION")])
def test_a_near_miss_in_the_environment_is_one_warning_with_did_you_mean(tmp_path, name, meant):
    r = _config_show("--json", env={name: str(tmp_path / "x")}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"metrics-ops: ignoring {name}; did you mean {meant}?\n"
    assert all(v["source"] == "default" for k, v in json.loads(r.stdout).items() if k != "dir")


def test_environment_names_are_case_sensitive_and_other_programs_variables_are_left_alone(tmp_path):
    r = _config_show("--json", cwd=tmp_path, env={"metrics_retention": "60", "METRICS_API_URL": "https://x",
                                                    "METRICS_RETENTION": "45", "METRICS_CONFIG_DIR": "/etc/x"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["retention"] == {"value": 45, "source": "environment", "env": "METRICS_RETENTION"}
    assert r.stderr == "metrics-ops: ignoring metrics_retention; did you mean METRICS_RETENTION?\n"
    r = _config_show("--json", cwd=tmp_path, env={"metrics_retention": "60"})
    assert json.loads(r.stdout)["retention"]["value"] == 30  # never taken for METRICS_RETENTION


def test_a_lower_case_key_in_dotenv_is_refused_not_taken(isolated_env, run):
    (isolated_env / ".env").write_text("metrics_retention=7\n")
    r = run("config", "show")
    assert r.exit_code == 2
    assert r.stderr == "metrics-ops: metrics_retention (from .env): unknown setting; did you mean METRICS_RETENTION?\n"


def test_an_unknown_toml_key_is_one_line_of_80_columns_with_did_you_mean(tmp_path):
    (tmp_path / "m.toml").write_text("retension = 5\nmax_mbs = 3\nshoe_size = 44\n")
    r = _config_show("--config", "m.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "metrics-ops: --config m.toml: unknown key 'max_mbs'; did you mean 'max_mb'?",
        "metrics-ops: --config m.toml: unknown key 'retension'; did you mean 'retention'?",
        "metrics-ops: --config m.toml: unknown key 'shoe_size'; see `config show`",
    ]
    assert all(len(line) <= 80 for line in r.stderr.splitlines())


def test_a_missing_file_named_by_metrics_config_is_named_metrics_config(tmp_path):
    r = _config_show(env={"METRICS_CONFIG": str(tmp_path / "nope.toml")}, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == f"metrics-ops: METRICS_CONFIG={tmp_path / 'nope.toml'}: the file does not exist\n"
    (tmp_path / "m.toml").write_text("retention = \n")
    r = _config_show(env={"METRICS_CONFIG": str(tmp_path / "m.toml")}, cwd=tmp_path)
    assert r.stderr.startswith(f"metrics-ops: METRICS_CONFIG={tmp_path / 'm.toml'}: malformed TOML")
    r = _config_show("--config", tmp_path / "nope.toml", env={"METRICS_CONFIG": str(tmp_path / "m.toml")})
    assert r.stderr == f"metrics-ops: --config {tmp_path / 'nope.toml'}: the file does not exist\n"


def test_config_show_never_prints_a_secret_only_that_it_is_set_and_where_from(tmp_path, run):
    from metrics_ops.config import secret_fields

    assert "sample_key" in secret_fields()
    env = {f"METRICS_{name.upper()}": f"s3cr3t-{name}-value" for name in secret_fields()}
    table = run("--data-dir", tmp_path, "config", "show", env=env)
    document = run("--data-dir", tmp_path, "config", "show", "--json", env=env)
    assert table.exit_code == document.exit_code == 0
    for name in secret_fields():
        assert "s3cr3t" not in table.stdout + table.stderr + document.stdout + document.stderr
        row = next(line.split("\t") for line in table.stdout.splitlines() if line.startswith(name + "\t"))
        assert row[1:] == ["set (hidden)", "environment", f"METRICS_{name.upper()}"]
        assert json.loads(document.stdout)[name] == {"value": "(hidden)", "secret": True, "set": True,
                                                     "source": "environment", "env": f"METRICS_{name.upper()}"}
    cfg = tmp_path / "m.toml"
    cfg.write_text('sample_key = "s3cr3t-from-toml"\n')
    r = run("--config", cfg, "config", "show", "--json")
    assert "s3cr3t" not in r.stdout and json.loads(r.stdout)["sample_key"]["file"] == str(cfg)
    r = run("config", "show", "--json")
    assert json.loads(r.stdout)["sample_key"] == {"value": None, "secret": True, "set": False, "source": "default",
                                                  "env": "METRICS_SAMPLE_KEY"}


def test_a_bad_secret_value_is_named_but_never_shown():
    with pytest.raises(ConfigError) as err:
        load_settings({"sample_key": 12345678})
    assert err.value.lines == ["sample_key (hidden) (from the command line): input should be a valid string"]


@pytest.mark.parametrize("rate", ["0", "1e-6", "0.000001", "1"])
def test_server_rates_at_the_floor_or_off_are_accepted(monkeypatch, rate):
    monkeypatch.setenv("METRICS_SAMPLE_RATE", rate)
    monkeypatch.setenv("METRICS_SAMPLE_RATES", f"click={rate}")
    s = load_settings()
    assert s.sample_rate == float(rate) and s.sample_rates == {"click": float(rate)}


def test_the_admin_token_is_never_shown(run, tmp_path):
    token = "s3cret-token-0123456789"
    (tmp_path / "m.toml").write_text(f'admin_token = "{token}"\n')
    shown = run("--config", tmp_path / "m.toml", "config", "show", "--json")
    assert shown.exit_code == 0 and token not in shown.stdout
    doc = json.loads(shown.stdout)["admin_token"]
    assert (doc["value"], doc["secret"], doc["set"], doc["source"]) == ("(hidden)", True, True, "toml")
    assert load_settings(config_file=tmp_path / "m.toml").admin_token.get_secret_value() == token
    (tmp_path / "bad.toml").write_text('admin_token = "short"\n')
    bad = run("--config", tmp_path / "bad.toml", "config", "show")
    assert bad.exit_code == 2 and "short" not in bad.stderr
    assert bad.stderr.startswith(f"metrics-ops: admin_token = '(hidden)' (from {tmp_path / 'bad.toml'}): ")
    assert run("config", "show", env={"METRICS_ADMIN_TOKEN": ""}).stdout.count("unset") >= 1  # empty: unset


def test_a_bad_admin_token_is_named_but_never_shown(monkeypatch):
    monkeypatch.setenv("METRICS_ADMIN_TOKEN", "s3cr3t with spaces")
    with pytest.raises(ConfigError) as err:
        load_settings()
    [line] = err.value.lines
    assert line.startswith("METRICS_ADMIN_TOKEN=(hidden) (from the environment): ") and "s3cr3t" not in line
