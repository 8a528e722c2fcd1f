"""The package as the images install it (``make install EDITABLE=``: a plain copy, not the checkout).

A non-editable install of YOUNG into a temporary folder (its dependencies come
from this environment) must carry every module and the stpipe entry point:
every tool's ``--version`` runs from the installed scripts, a tiny stage-1 run
works, and ``strun young_fnoise/young_wisp/young_bkg`` find the installed steps.
A module or entry point missing from the package is caught here rather than
in the first image build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TOOLS = ("young-stage1", "young-fnoise", "young-stage2", "young-wisp", "young-bkg", "young-stage3", "young-refs",
         "young-sim")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps --target`` of a copy of the repository (no build isolation: offline)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "demo", "demo-out", "bench",
                                                             "__pycache__", "*.egg-info", "build"))
    target = root / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("YOUNG_CONFIG",)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "netguard"), str(target)])
    return {"target": target, "env": env}


def run(installed, argv, **extra):
    env = dict(installed["env"], **extra)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def test_installed_copy_is_what_runs(installed):
    r = run(installed, [sys.executable, "-c", "import young; print(young.__file__)"])
    assert r.returncode == 0 and r.stdout.strip().startswith(str(installed["target"])), r.stdout + r.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_reports_its_version(installed, tool):
    script = installed["target"] / "bin" / tool
    assert script.exists(), f"{tool} is not installed as a script"
    r = run(installed, [sys.executable, str(script), "--version"])
    assert r.returncode == 0 and r.stdout.startswith(f"{tool} "), r.stderr


def test_stage1_and_the_strun_steps_from_the_installed_package(installed, tiny_set, tmp_path):
    """young-stage1 on one tiny exposure, then the three corrections through ``strun`` and their aliases."""
    uncal = next(p for p in tiny_set.uncal if p.name.endswith("_00001_nrca3_uncal.fits"))
    crds = tiny_set.crds_env()
    bin_ = installed["target"] / "bin"
    r = run(installed, [sys.executable, str(bin_ / "young-stage1"), "-q", "-o", str(tmp_path), str(uncal)], **crds)
    assert r.returncode == 0, r.stderr[-3000:]
    rate = Path(r.stdout.strip())
    assert rate.name.endswith("_rate.fits") and rate.exists()
    strun = Path(sys.executable).parent / "strun"
    r = run(installed, [str(strun), "young_fnoise", str(rate), f"--output_dir={tmp_path}"], **crds)
    assert r.returncode == 0, r.stderr[-3000:]
    fixed = tmp_path / rate.name.replace("_rate", "_1f_rate")
    assert fixed.exists()
    from astropy.io import fits

    assert fits.getheader(fixed, 0)["YNG1F"] == "amp"
    # the aliases resolve to the installed classes (no checkout on the path)
    code = ("from stpipe.utilities import resolve_step_class_alias as r; "
            "import young.steps.wisp_step as w; "
            "print(r('young_fnoise'), r('young_wisp'), r('young_bkg'), w.__file__)")
    r = run(installed, [sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    names = r.stdout.split()
    assert names[:3] == ["young.steps.fnoise_step.FnoiseStep", "young.steps.wisp_step.WispStep",
                         "young.steps.bkg_step.BkgStep"]
    assert names[3].startswith(str(installed["target"]))
