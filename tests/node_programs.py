"""The Node programs of tests/node (token verifier, webhook receiver), with their locked npm packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_PROGRAMS = Path(__file__).resolve().parent / "node"


def node_programs(package: str, what: str) -> Path:
    """tests/node, ``package`` installed from its lockfile if missing; skips the test, naming ``what``,
    where node or npm is not installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are not installed on this machine: {what} cannot run")
    if not (NODE_PROGRAMS / "node_modules" / package).is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_PROGRAMS, check=True, timeout=300)
    return NODE_PROGRAMS
