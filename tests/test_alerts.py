"""deploy/prometheus/alerts.yml: valid rules, each expression tested on series that should and should not fire
(promtool from Debian's `prometheus` package, installed by .ci/run), and the metric names the rules use are the
ones metrics-ops exposes."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from metrics_ops.serve.counters import COUNTERS

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (.ci/run installs prometheus)")


@needs_promtool
def test_the_rules_are_valid():
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


@needs_promtool
def test_each_rule_fires_on_the_series_it_should_and_only_those():
    r = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=ROOT / "tests" / "prometheus",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "tests/prometheus/alerts_test.yml").read_text()))
    assert tested == set(re.findall(r"- alert: (\w+)", RULES.read_text()))  # every rule has a test


def test_the_rules_use_only_metrics_that_exist(data_dir, tmp_path, run):
    prom = tmp_path / "rotate.prom"
    assert run("--data-dir", data_dir, "rotate", "--once", "-q", env={"METRICS_HEALTH_TEXTFILE": str(prom)}
               ).exit_code == 0
    exposed = set(re.findall(r"^# TYPE (\w+)", prom.read_text(), re.M))
    exposed |= {f"metrics_ops_events_{name}_total" for name in COUNTERS if not name.startswith("rejected_")}
    used = {m for m in re.findall(r"\b(metrics_ops_\w+)", RULES.read_text()) if not m.endswith("_")}  # not "*_"
    assert used and used <= exposed, used - exposed
