"""Session fixtures: the simulated ``tiny`` set (conftest's ``tiny_set``) through the real jwst stages.

Registered in ``conftest.py`` (``pytest_plugins``).  The heavy work runs once per
test session and is shared by all tests, which must treat these files as
read-only inputs and write their own products with ``-o tmp_path``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TOOLS, tool_env

SEED = 1


def run_tool(name: str, *args, stdin: str | None = None, check: bool = True, env=None, timeout=1800):
    """Run a tool from the checkout with this interpreter; return the CompletedProcess."""
    cmd = [sys.executable, str(TOOLS / name), *map(str, args)]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env or tool_env(), timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{name} exited {r.returncode}:\n{r.stderr[-4000:]}")
    return r


@pytest.fixture(scope="session")
def tiny_rates(tiny_set) -> list[Path]:
    """Stage-1 rate files of every tiny exposure (young-stage1 --jobs 2 on the raw/ folder), in name order."""
    out = tiny_set.root / "stage1"
    out.mkdir(exist_ok=True)
    r = run_tool("young-stage1", "--config", tiny_set.config, "-o", out, "--jobs", "2", "-q",
                 tiny_set.root / "raw")
    return [Path(p) for p in r.stdout.split()]


@pytest.fixture(scope="session")
def tiny_cals(tiny_set, tiny_rates) -> list[Path]:
    """Stage-2 cal files of every tiny exposure (young-stage2 --jobs 2), same order as tiny_rates."""
    r = run_tool("young-stage2", "--config", tiny_set.config, "--jobs", "2", "-q",
                 stdin="\n".join(map(str, tiny_rates)) + "\n")
    return [Path(p) for p in r.stdout.split()]
