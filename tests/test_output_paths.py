"""No output path points into the data directory's tree, and an empty data directory is an error (issue 18
item 14).

The rule: a file the tool writes for someone else (``METRICS_STATUS_FILE``, ``METRICS_HEALTH_TEXTFILE``,
``export --output``) may not be the data directory or lie anywhere under it, ``rollups/`` included, symlinks
resolved; the status file's own default place (``DIR/.metrics-ops.status``) is the one exception.
"""

import json
import os

import pytest

from metrics_ops.store import file_name

from .helpers import data_file, days_ago


@pytest.mark.parametrize("how", ["env", "flag", "toml"])
def test_an_empty_data_directory_is_an_error_not_the_working_directory(isolated_env, run, how, tmp_path):
    config = tmp_path / "metrics.toml"
    config.write_text('dir = ""\n')
    args, env, named = {
        "env": ([], {"METRICS_DIR": ""}, "METRICS_DIR= (from the environment)"),
        "flag": (["--data-dir", ""], None, "--data-dir  (from the command line)"),
        "toml": (["--config", config], None, f"dir = '' (from {config})"),
    }[how]
    r = run(*args, "rotate", "--once", "--create", env=env)
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"metrics-ops: {named}: the data directory cannot be empty (it would silently be the "
                        "working directory); give a path\n")
    assert os.listdir(isolated_env) == []  # nothing made in the working directory


@pytest.mark.parametrize("setting", ["METRICS_STATUS_FILE", "METRICS_HEALTH_TEXTFILE"])
@pytest.mark.parametrize("where", ["top", "rollups", "nested", "through a symlink"])
def test_monitoring_files_are_refused_anywhere_in_the_data_tree(data_dir, tmp_path, run, setting, where):
    (data_dir / "rollups").mkdir()
    if where == "through a symlink":
        (tmp_path / "looks-outside").symlink_to(data_dir / "rollups")
        path = tmp_path / "looks-outside" / "status"
    else:
        path = {"top": data_dir / "status.json", "rollups": data_dir / "rollups" / "rollup-2026-01-01.json",
                "nested": data_dir / "sub" / "x.prom"}[where]
    r = run("--data-dir", data_dir, "rotate", "--once", env={setting: str(path)})
    assert r.exit_code == 2, r.output
    label = "the status file" if setting == "METRICS_STATUS_FILE" else "the health textfile"
    assert r.stderr == (f"metrics-ops: {setting}={path} (from the environment): {label} cannot be inside the data "
                        f"directory {data_dir} (rollups/ included): passes, report and forget read and delete there; "
                        "put it elsewhere\n")
    assert not (data_dir / "metrics.jsonl").exists() and not path.exists()


def test_the_status_files_default_place_and_any_place_outside_are_fine(data_dir, tmp_path, run):
    r = run("--data-dir", data_dir, "rotate", "--once", "-q",
            env={"METRICS_STATUS_FILE": str(data_dir / ".metrics-ops.status"),
                 "METRICS_HEALTH_TEXTFILE": str(tmp_path / "metrics-ops.prom")})
    assert r.exit_code == 0, r.output
    assert (data_dir / ".metrics-ops.status").is_file() and (tmp_path / "metrics-ops.prom").is_file()


@pytest.mark.parametrize("where", ["a data file's name", "rollups", "through a symlink"])
def test_export_output_is_refused_in_the_data_tree(data_dir, tmp_path, run, where):
    lines = data_file(data_dir / file_name(days_ago(1)), [{"visitor_id": "v", "event": "e"}])
    (data_dir / "rollups").mkdir()
    (tmp_path / "looks-outside").symlink_to(data_dir)
    out = {"a data file's name": data_dir / file_name(days_ago(3)),
           "rollups": data_dir / "rollups" / "export.jsonl",
           "through a symlink": tmp_path / "looks-outside" / "export.jsonl"}[where]
    before = sorted(os.listdir(data_dir)), sorted(os.listdir(data_dir / "rollups"))
    r = run("--data-dir", data_dir, "export", "--since", "7d", "--output", out)
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"metrics-ops: --output {out}: inside the data directory {data_dir} (rollups/ included), "
                        "where passes, report and forget would take it for data; export elsewhere\n")
    assert (sorted(os.listdir(data_dir)), sorted(os.listdir(data_dir / "rollups"))) == before
    good = tmp_path / "export.jsonl"
    r = run("--data-dir", data_dir, "export", "--since", "7d", "--output", good, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) and good.read_text().splitlines() == lines
