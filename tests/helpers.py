"""Small helpers shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"


def unwritable_dir(tmp_path: Path) -> Path:
    """A folder nobody can create files in — also when the tests run as root (CI does).

    Root ignores permission bits, so for root use sysfs, which refuses new files.
    """
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    d = tmp_path / "readonly"
    d.mkdir(exist_ok=True)
    d.chmod(0o500)
    return d


#: every network attempt of a tool run by the tests lands here (tests/netguard/sitecustomize.py)
NETWORK_LOG = Path(os.environ.get("YOUNG_NETWORK_LOG") or f"/tmp/young-network-{os.getpid()}.log")


def tool_env(**extra) -> dict:
    """Environment for running tools from the checkout as subprocesses, with the network guard on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "tests" / "netguard"), str(REPO / "shared"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["YOUNG_NETWORK_LOG"] = str(NETWORK_LOG)
    env.pop("YOUNG_CONFIG", None)
    env.update(extra)
    return env
