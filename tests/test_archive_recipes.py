"""docs/reading.md, "Reading the archive beyond this tool": the offline DuckDB recipe, run exactly as written there
(only the bucket and prefix replaced by the test's own), against a real S3 server (SeaweedFS) holding objects in
the archive's layout for two hosts and two days, with test traffic to leave out.

It needs `duckdb==1.5.5` and `duckdb-extension-httpfs==1.5.5` (not in the test extra: they would pin the test
environment's DuckDB); the test is skipped without them. Locally:
`pip install --target /tmp/duckdb155 duckdb==1.5.5 duckdb-extension-httpfs==1.5.5` and
`PYTHONPATH=/tmp/duckdb155 pytest tests/test_archive_recipes.py`."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import date

import pytest

from metrics_ops.objectstore import Bucket, file_digest, object_key, parse_archive_url

from .helpers import doc_section

SECTION = doc_section("reading.md", "Reading the archive beyond this tool")
DOC_URL = "s3://metrics-example/site-a"


def recipe() -> str:
    [block] = re.findall(r"```python\n(.*?)```", SECTION, re.S)[:1]
    assert f"'{DOC_URL}/day=*/host=*/*.jsonl.gz'" in block
    return block


def offline_duckdb() -> bool:
    code = ("import duckdb, duckdb_extension_httpfs, pathlib\n"
            "p = pathlib.Path(duckdb_extension_httpfs.__file__).parent / 'extensions' / f'v{duckdb.__version__}'\n"
            "assert (p / 'httpfs.duckdb_extension').exists()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_the_recipe_installs_the_versions_the_issue_names():
    assert "pip install duckdb==1.5.5 duckdb-extension-httpfs==1.5.5" in SECTION
    assert "day=*/host=*/*.jsonl.gz" in SECTION and "hive_partitioning = true" in SECTION


@pytest.mark.skipif(not offline_duckdb(), reason="needs duckdb==1.5.5 and duckdb-extension-httpfs==1.5.5")
def test_duckdb_recipe_reads_every_host_and_day_of_the_archive_from_the_bucket(tmp_path, archive_url):
    bucket = Bucket(parse_archive_url(archive_url))
    expected: Counter = Counter()
    visitors: dict[tuple[str, str], set[str]] = {}
    hosts: dict[tuple[str, str], set[str]] = {}
    for day in (date(2026, 11, 24), date(2026, 11, 25)):
        for h, host in enumerate(("web-1", "web-2")):
            lines = []
            for n in range(5 + h):
                visitor, event = f"v{n % 3}-{host}", ("page_view", "click")[n % 2]
                lines.append({"visitor_id": visitor, "event": event, "metadata": {"path": "/"},
                              "received_at": f"{day}T10:00:0{n}.000001Z"})
                expected[(str(day), event)] += 1
                visitors.setdefault((str(day), event), set()).add(visitor)
                hosts.setdefault((str(day), event), set()).add(host)
            lines.append({"visitor_id": "st-0123456789ab-1", "event": "sample_test",
                          "metadata": {"test_run": "0123456789ab"}, "received_at": f"{day}T11:00:00.000001Z"})
            name = f"metrics-{day}.jsonl.gz"
            path = tmp_path / host / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
            sha, size = file_digest(path)
            bucket.put_file(object_key(bucket.location, day, host, name), path, sha256=sha, size=size)
    code = recipe().replace(DOC_URL, archive_url)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.splitlines():
        day, event, events, n_visitors, n_hosts = line.split("\t")
        got[(day, event)] = (int(events), int(n_visitors), int(n_hosts))
    assert got == {key: (n, len(visitors[key]), len(hosts[key])) for key, n in expected.items()}
