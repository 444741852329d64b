"""The settings' fast check (metrics_ops.config.fast_values, no pydantic) against the reference model
(metrics_ops.settingsmodel, pydantic): the fast check may decline any value, but a value it takes must be one the
reference model takes, giving the same value of the same type. And the common forms must stay fast: a read-only
command that imports pydantic pays 0.1 s of start-up for it."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_ops.config import FIELDS, ConfigError, fast_values, load_settings
from metrics_ops.settingsmodel import reference_values


def _same(a, b) -> bool:
    """Equal values of the same types, all the way down (1 and 1.0 and True are not the same setting)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def _agree(values: dict) -> bool:
    """Check one set of values both ways; True when the fast check took it."""
    fast = fast_values(values)
    if fast is None:
        return False
    try:
        reference = reference_values(values, {})
    except ConfigError as exc:
        pytest.fail(f"the fast check took {values!r}, the reference model refuses it: {exc}")
    for field in FIELDS:
        if field == "host_id" and "host_id" not in values:
            continue  # the default is the host name, the same both ways
        assert _same(fast[field], reference[field]), (field, values, fast[field], reference[field])
    return True


# Tricky spellings, right and wrong, for every kind of setting (numbers as text the way the environment gives
# them, TOML's typed values, a flag's Python values).
TEXTS = ["", " ", "0", "1", "5", "07", " 5 ", "5 ", "+3", "-1", "1_000", "1.0", "1.", ".5", "0.5", "1e3", "1E-3",
         "0x10", "\u0663", "\uff15", "inf", "-inf", "nan", "NaN", "true", "false", "yes", "on", "0.0000001",
         "0.000001", "1.5", "99.999", "100", "65536", "65535", "65537", "123456789012345678901", "9" * 30,
         "0640", "640", "0o640", "0777", "0600", "0666", " 0644 ", "UTC", "utc", "Europe/Berlin", "Nowhere/Land",
         "../../etc/passwd", "/etc/localtime", "INFO", "info", "Warning", " debug ", "VISITOR", "random", "verbose",
         "127.0.0.1", "::1", "0.0.0.0", "host name", "a\nb", "a\x1bb", "\udcff", "~", "~/m", "~nosuchuser9/x",
         "/srv/metrics", "data", "s3://bucket", "s3://bucket/pre/fix", "s3://KEY:SECRET@bucket", "http://x",
         "https://a.example", "https://a.example/", "*", "null", "https://a.example,https://b.example",
         '["https://a.example"]', "[1]", "[", "a=0.5,b=1", "a=0.5,", "=0.5", "a", '{"a": 0.5}', '{"a": 2}', "{",
         "signup=0", "x" * 20, "x" * 300, "tok_en-.~+/=" * 2, "vm", "VM", "-vm", "a" * 64, "a" * 63]
TYPED = [None, True, False, 0, 1, 2, -1, 7, 416, 10**30, 0.0, 0.5, 1.0, 1.5, 2.5, 1e-7, 1e-6, 300.0, math.inf,
         math.nan, -0.0, [], ["https://a.example"], ["*"], [1], ["https://a.example/"], {}, {"a": 0.5}, {"a": 1},
         {"a": True}, {"": 0.5}, {"a": "0.5"}, {"a": math.nan}, {1: 0.5}, Path("/srv/m"), Path("~/m"), Path("")]
VALUES = TEXTS + TYPED


@pytest.mark.parametrize("field", list(FIELDS))
def test_every_tricky_value_of_every_setting_is_taken_alike_or_declined(field, tmp_path):
    taken = 0
    for value in VALUES:
        values = {field: value}
        if field in ("jsonl", "state_file", "status_file", "health_textfile") and isinstance(value, str | Path):
            values["dir"] = str(tmp_path)  # a relative path beside the default data directory, too
        taken += _agree(values)
    assert taken, f"the fast check took no value of {field} at all"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.sampled_from(VALUES) | st.text(max_size=12)
                       | st.integers(-10, 10**6) | st.floats(), max_size=6))
def test_any_mix_of_values_is_taken_alike_or_declined(values):
    _agree(values)


@pytest.mark.parametrize("values", [
    {},
    {"dir": "/srv/metrics"},
    {"dir": "~/metrics", "retention": "7", "gzip_after": "2", "sample_rate": "0.25", "tz": "Europe/Berlin"},
    {"dir": "/srv/m", "log_level": "INFO", "sample_mode": "VISITOR", "port": 8080, "workers": "1",
     "max_mb": "", "file_mode": "0600", "host": "0.0.0.0", "host_id": "web-1", "keep_query": True},
    {"dir": "/srv/m", "archive_url": "s3://bucket/pre", "min_free_mb": 1.5, "interval": "60", "lock_timeout": 0},
    {"dir": "/srv/m", "cors_origins": "https://a.example,https://b.example/", "sample_rates": "signup=1,view=0.1",
     "admin_token": "x" * 32, "sample_key": "k" * 80},
    {"dir": "/srv/m", "jsonl": "/srv/m/events.jsonl", "status_file": "/run/metrics.status"},
])
def test_the_common_forms_take_the_fast_check(values):
    """Whatever an operator usually writes (flags, digits from the environment, TOML numbers, empty for unset)
    is checked without pydantic, and gives what the reference model gives."""
    assert _agree(values)


def test_a_refused_value_is_worded_by_the_reference_model():
    with pytest.raises(ConfigError) as caught:
        load_settings({"gzip_level": 12}, spelled={"gzip_level": "--level"})
    assert caught.value.lines == ["--level 12 (from the command line): input should be less than or equal to 9"]


def test_a_read_only_command_never_imports_pydantic(tmp_path):
    """report, status and config show start without pydantic (0.1 s of a 0.3 s warm report); a refused value
    still gets pydantic's words."""
    probe = ("import atexit, sys; atexit.register(lambda: print('pydantic' in sys.modules, file=sys.stderr)); "
             "from metrics_ops.cli import main; sys.argv[0] = 'metrics-ops'; main()")
    for args in (["report", "--since", "2026-01-01", "--until", "2026-01-02"], ["status"], ["config", "show"]):
        r = subprocess.run([sys.executable, "-c", probe, "--data-dir", str(tmp_path), *args], capture_output=True,
                           text=True, cwd=tmp_path, timeout=60)
        assert r.stderr.splitlines()[-1] == "False", (args, r.stderr)
    r = subprocess.run([sys.executable, "-c", probe, "--data-dir", str(tmp_path), "report", "--since", "2026-01-01"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "METRICS_RETENTION": "0"})
    assert r.returncode == 2 and "METRICS_RETENTION=0 (from the environment): input should be greater than or " \
                                 "equal to 1" in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1] == "True"
