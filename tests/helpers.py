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


#: set by an outer make (`make test`); the makes the tests start must not inherit them
MAKE_VARS = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


def make_env(**extra) -> dict:
    """:func:`tool_env` (network guard on) for a `make` started by a test: no outer make's variables, no
    CRDS variables (the chain takes them from its CONFIG)."""
    env = {k: v for k, v in tool_env().items() if k not in MAKE_VARS + ("CRDS_PATH", "CRDS_CONTEXT")}
    env.update(extra)
    return env


def write_flipped_wisp_template(sim_root: Path, folder: Path, k: float,
                                name: str = "WISP_NRCA3_F150W_CLEAR.fits") -> Path:
    """The simulator's wisp template turned upside down and multiplied by ``k``, written into ``folder``.

    On the tiny set's SUBGRISM256 strips (bottom of NRCA3) the simulated template is ~1e-9 of its peak;
    flipped, its wisp falls on the strip, and ``k`` makes it a wisp of a few sigma.
    """
    import numpy as np
    from astropy.io import fits

    with fits.open(Path(sim_root) / "wisp_templates" / name) as h:
        hdus = [fits.PrimaryHDU(header=h[0].header)]
        hdus += [fits.ImageHDU(k * np.flipud(h[e].data).astype(np.float32), name=e) for e in ("CAL", "RATE")]
    dst = Path(folder) / name
    fits.HDUList(hdus).writeto(dst)
    return dst
