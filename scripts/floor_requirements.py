#!/usr/bin/env python
"""Print pip requirements pinning the data libraries to the lowest versions ``pyproject.toml`` declares.

``make test`` installs them into a separate target folder and runs the unit suite once more with that folder
first on ``sys.path``, so the floors we promise (``pandas>=2.2`` and so on) are the versions we test. Only the
libraries whose behaviour our code depends on are pinned; everything else stays as installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PINNED = ("numpy", "pandas", "pyarrow", "psutil", "scikit-learn")
_FLOOR_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)")


def floors(pyproject: Path) -> dict[str, str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        match = _FLOOR_RE.match(dep)
        if match and match.group(1).lower() in PINNED:
            found[match.group(1).lower()] = match.group(2)
    missing = sorted(set(PINNED) - set(found))
    if missing:
        raise SystemExit(f"floor_requirements: no '>=' floor in pyproject.toml for {missing}")
    return found


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    for name, version in floors(root / "pyproject.toml").items():
        parts = version.split(".")
        # the lowest release series declared: '2.2' -> '2.2.*', '16' -> '16.*' (its newest patch release)
        print(f"{name}=={'.'.join(parts[:2]) if len(parts) > 1 else parts[0]}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
