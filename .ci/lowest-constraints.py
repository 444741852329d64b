"""Print a pip constraints file pinning every dependency of pyproject.toml (runtime + the given extras) to the
lowest version it declares (">=X" -> "==X"), so CI can prove that the declared minimums really work.

    python3 .ci/lowest-constraints.py test > /tmp/lowest.txt
    pip install -c /tmp/lowest.txt -e '.[test]'
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += [r for r in project["optional-dependencies"][extra] if not r.startswith(project["name"])]
for req in requirements:
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^]]*\])?\s*([^;]*)", req)
    name, spec = m.group(1), m.group(3)
    low = re.search(r">=\s*([0-9][^,\s]*)", spec)
    if low is None:
        sys.exit(f"{req}: no >= minimum to test; declare one")
    print(f"{name}=={low.group(1)}")
