"""The browser script as shipped: its size, its build, the package that carries it, serve's route, the command."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from metrics_ops.client import KINDS, accepts_gzip, client_file
from metrics_ops.config import load_settings
from metrics_ops.serve import make_app

from .wsgi_client import call

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 1024  # bytes, gzipped: the limit (Plausible's script is under 1 KB too)


@pytest.mark.parametrize("kind", ["script", "module"])
def test_shipped_script_is_at_most_1_kib_gzipped(kind):
    f = client_file(kind)
    size = len(gzip.compress(f.body, compresslevel=9, mtime=0))
    assert size <= BUDGET, f"{f.name} is {size} bytes gzipped, over the {BUDGET}-byte budget"
    assert f.summary()["gzip_bytes"] == size


def test_shipped_files_were_built_from_the_current_source():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_client
    finally:
        sys.path.pop(0)
    for kind in ("script", "module"):
        f = client_file(kind)
        assert f.body.decode().startswith(build_client.expected_header(f.name)), (
            f"{f.name} is stale: run python tools/build_client.py")
    module = client_file("module").body.decode()
    assert module.endswith(build_client.EXPORTS) and "export" not in client_file("script").body.decode()


def test_script_holds_no_cookie_code_and_no_third_party_address():
    for kind in ("script", "module"):
        text = client_file(kind).body.decode()
        assert "cookie" not in text.lower() and "http" not in text.replace("https?", "")


def test_a_non_editable_install_ships_the_client_files(tmp_path):
    source, wheels = tmp_path / "src", tmp_path / "wheels"  # a copy: a build writes build/ into its source
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "metrics_ops", source / "metrics_ops", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("metrics_ops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"metrics_ops/client/{name}" for name, _ in KINDS.values()} <= names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    # -S: no site-packages, so not the editable checkout: only what the wheel installed
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from metrics_ops.client import client_file as f;"
            "print(f('script').name, f('module').name, f('types').name, f('script').body == open(sys.argv[2], 'rb')"
            ".read(), f.__module__ and __import__('metrics_ops').__file__.startswith(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(target), str(ROOT / "metrics_ops/client/metrics.js")],
                         check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert out.split() == ["metrics.js", "metrics.mjs", "metrics.d.ts", "True", "True"]


@pytest.fixture
def app(data_dir):
    return make_app(load_settings({"dir": str(data_dir)}))


@pytest.mark.parametrize("path, kind", [("/metrics.js", "script"), ("/metrics.mjs", "module")])
def test_serve_answers_the_script_with_etag_cache_lifetime_and_gzip(app, path, kind):
    f = client_file(kind)
    plain = call(app, "GET", path, content_type=None)
    assert plain.status == 200 and plain.body == f.body
    assert plain.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert plain.headers["Cache-Control"] == "public, max-age=3600" and plain.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["ETag"] == f.etag and "Content-Encoding" not in plain.headers
    zipped = call(app, "GET", path, content_type=None, headers={"Accept-Encoding": "br, gzip;q=0.8, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.body) == f.body
    assert int(zipped.headers["Content-Length"]) == len(zipped.body) < len(f.body)
    assert zipped.headers["ETag"] != plain.headers["ETag"]  # two representations, two strong validators
    for tag in (plain.headers["ETag"], zipped.headers["ETag"], f'W/{f.etag}, "other"', "*"):
        r = call(app, "GET", path, content_type=None, headers={"If-None-Match": tag, "Accept-Encoding": "gzip"})
        assert (r.status, r.body, r.headers["ETag"]) == (304, b"", f.gzip_etag)
        assert "Content-Length" not in r.headers and r.headers["Cache-Control"] == "public, max-age=3600"
    stale = call(app, "GET", path, content_type=None, headers={"If-None-Match": '"an-old-release"'})
    assert stale.status == 200 and stale.body == f.body
    head = call(app, "HEAD", path, content_type=None)
    assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == str(len(f.body))
    post = call(app, "POST", path, "x")
    assert post.status == 405 and post.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("header, allowed", [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.5", True), ("*", True), ("GZIP", True),
    ("", False), ("identity", False), ("br", False), ("gzip;q=0", False), ("gzip;q=0.0, br", False),
    ("gzip;q=nonsense", False),
])
def test_accept_encoding(header, allowed):
    assert accepts_gzip(header) is allowed


def test_client_command_prints_the_script_module_and_types(run):
    for args, kind in (((), "script"), (("--module",), "module"), (("--types",), "types")):
        r = run("client", *args)
        assert r.exit_code == 0 and r.stdout == client_file(kind).body.decode()
    doc = json.loads(run("client", "--module", "--json").stdout)
    f = client_file("module")
    assert doc == {"kind": "module", "file": "metrics.mjs", "content_type": "text/javascript; charset=utf-8",
                   "bytes": len(f.body), "gzip_bytes": len(f.gzipped), "etag": f.etag}
    assert doc["gzip_bytes"] <= BUDGET


def test_types_declare_every_export_of_the_module():
    types = client_file("types").body.decode()
    exports = client_file("module").body.decode().rsplit("export const{", 1)[1].split("}")[0].split(",")
    for name in exports:
        assert f"export function {name}(" in types
