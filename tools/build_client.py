"""Build the shipped browser script from its readable source.

    python tools/build_client.py          # metrics_ops/client/metrics.src.js -> metrics.js and metrics.mjs
    python tools/build_client.py --check  # exit 1 if the shipped files were not built from the current source

The readable source gzips to ~1.4 KB, over the 1 KB budget (tests/test_client.py); terser's minifier brings it
under. Both shipped files carry the source's SHA-256 in their first line, so the tests (which need no node)
notice a source edited without a rebuild. A development tool: needs node's npx (terser is fetched from npm, at
the pinned version, so a rebuild of the same source gives the same bytes). Not part of the installed package.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "metrics_ops" / "client"
SOURCE = CLIENT / "metrics.src.js"
TERSER = "terser@5.51.4"
# The ES module is the script plus named exports of what the script puts on window.metricsOps.
EXPORTS = "export const{configure,sendEvent,track,pageView,flush}=window.metricsOps;\n"


def header(name: str, source: bytes) -> str:
    digest = hashlib.sha256(source).hexdigest()[:16]
    return f"/*! metrics-ops {name} MIT; readable source: metrics.src.js sha256:{digest} */\n"


def expected_header(name: str) -> str:
    return header(name, SOURCE.read_bytes())


def minify(source: Path) -> str:
    done = subprocess.run(["npx", "--yes", TERSER, str(source), "--compress", "--mangle", "--ecma", "2020",
                           "--comments", "false"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"build_client: terser failed: {done.stderr.strip()}")
    return done.stdout.strip() + "\n"


def main(argv: list[str]) -> int:
    targets = {CLIENT / "metrics.js": "", CLIENT / "metrics.mjs": EXPORTS}
    if "--check" in argv:
        stale = [p.name for p in targets if not p.read_text().startswith(expected_header(p.name))]
        for name in stale:
            print(f"{name} was not built from the current metrics.src.js: run python tools/build_client.py")
        return 1 if stale else 0
    body = minify(SOURCE)
    for path, tail in targets.items():
        path.write_text(expected_header(path.name) + body + tail)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
