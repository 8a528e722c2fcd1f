"""The README's runnable shell blocks run as they stand, so the documentation cannot drift from the tools.

A fenced ``bash`` block right after a ``<!-- runnable -->`` line is run with ``bash -euo pipefail``
in a fresh folder, with the tools of this checkout first on ``PATH`` and the network guard on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO, TOOLS, tool_env

BLOCK = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_runnable_blocks():
    assert runnable_blocks(), "README.md: no <!-- runnable --> block"


@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_a_readme_block_runs_as_written(tmp_path, index):
    block = runnable_blocks()[index]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in TOOLS.glob("young-*"):
        (bindir / tool.name).symlink_to(tool)
    env = tool_env()
    env["PATH"] = os.pathsep.join([str(bindir), os.path.dirname(sys.executable), env.get("PATH", "")])
    for k in ("CRDS_PATH", "CRDS_CONTEXT", "CRDS_SERVER_URL", "YOUNG_CONFIG"):
        env.pop(k, None)
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, f"README block {index} failed:\n{block}\n{r.stderr[-3000:]}"
    if "young-stage3" in block:
        mosaics = sorted((work / "mosaics").rglob("*_i2d.fits"))
        catalogs = sorted((work / "mosaics").rglob("*_cat.ecsv"))
        assert len(mosaics) >= 2 and len(catalogs) == len(mosaics), r.stderr[-2000:]
        assert [p for p in r.stdout.split() if p.endswith("_i2d.fits")], r.stdout
