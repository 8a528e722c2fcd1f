"""The corrections as stpipe Steps: the same pixels from the tools, from ``strun`` and as jwst pipeline hooks.

``young-wisp`` and ``young-bkg`` run the same :class:`WispStep` / :class:`BkgStep`
that a jwst user hangs on ``calwebb_image2`` (``post_hooks`` of its last
step, photom): on a tiny exposure both routes must give the same SCI and
VAR_RNOISE to float32 rounding, and record the same header keywords.
``strun young_bkg`` finds the step through the ``stpipe.steps`` entry point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from chain_fixtures import run_tool
from helpers import tool_env, write_flipped_wisp_template

pytestmark = pytest.mark.slow

HOOKED = r'''
import json, sys
from jwst.pipeline import Image2Pipeline
from young.steps.bkg_step import BkgStep
from young.steps.wisp_step import WispStep
rate, out, templates = sys.argv[1:4]
hooks = [WispStep(wisp_templates=templates, use_lw=False), BkgStep(mode="pedestal")]
Image2Pipeline.call(rate, output_dir=out, save_results=True, configure_log=False,
                    steps={"resample": {"skip": True}, "photom": {"post_hooks": hooks}})
print(json.dumps("done"))
'''


@pytest.fixture(scope="module")
def routes(tmp_path_factory, tiny_set, tiny_rates):
    """One NRCA3 rate through young-stage2 | young-wisp | young-bkg, and through calwebb_image2 with the hooks."""
    root = tmp_path_factory.mktemp("steps")
    tmpl = root / "tmpl"
    tmpl.mkdir()
    write_flipped_wisp_template(tiny_set.root, tmpl, 40.0)
    rate = next(p for p in tiny_rates if p.name.endswith("_00001_nrca3_rate.fits"))
    tools = root / "tools"
    tools.mkdir()
    env = tool_env(**tiny_set.crds_env())
    cal = Path(run_tool("young-stage2", "-q", "-o", tools, rate, env=env).stdout.strip())
    wisp = Path(run_tool("young-wisp", "-q", "--wisp-templates", tmpl, "--no-lw", cal, env=env).stdout.strip())
    bkg = Path(run_tool("young-bkg", "-q", wisp, env=env).stdout.strip())
    hooked = root / "hooked"
    hooked.mkdir()
    import subprocess

    r = subprocess.run([sys.executable, "-c", HOOKED, str(rate), str(hooked), str(tmpl)], capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1]) == "done", r.stderr[-3000:]
    return {"tools": bkg, "hooked": hooked / rate.name.replace("_rate", "_cal"), "cal": cal, "env": env,
            "root": root}


def test_hooks_on_image2_give_the_tools_pixels(routes):
    with fits.open(routes["tools"]) as a, fits.open(routes["hooked"]) as b:
        for ext in ("SCI", "VAR_RNOISE"):
            x, y = a[ext].data, b[ext].data
            ok = np.isfinite(x)
            assert np.array_equal(ok, np.isfinite(y)), ext
            # float32 rounding of the same arithmetic (tools save and re-read the cal in between)
            np.testing.assert_allclose(y[ok], x[ok], rtol=2e-6, atol=1e-6 * np.max(np.abs(x[ok])), err_msg=ext)
        np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data)
        ha, hb = a[0].header, b[0].header
        for key in ("YNGWISP", "YNGWISPS", "YNGWISPT", "YNGBKG", "YNGBKGL", "YNGBKGF"):
            assert ha[key] == pytest.approx(hb[key]) if isinstance(ha[key], float) else ha[key] == hb[key], key
        assert hb["YNGWISP"] == "SUBTRACTED" and hb["BKGSUB"] is True


def test_strun_finds_the_step_and_names_the_product_the_young_way(routes, tmp_path):
    out = tmp_path / "strun"
    out.mkdir()
    strun = Path(sys.executable).parent / "strun"
    import subprocess

    r = subprocess.run([str(strun), "young_bkg", str(routes["cal"]), f"--output_dir={out}", "--mode=2d",
                        "--save_mask=True"], capture_output=True, text=True, env=routes["env"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    prod = out / routes["cal"].name.replace("_cal.fits", "_bkg_cal.fits")
    assert prod.exists() and (out / prod.name.replace(".fits", "_mask.fits")).exists(), sorted(out.iterdir())
    h = fits.getheader(prod, 0)
    assert h["YNGBKG"] == "2d" and h["BKGSUB"] is True
    # the same step refuses a second application
    r = subprocess.run([str(strun), "young_bkg", str(prod), f"--output_dir={out}"], capture_output=True, text=True,
                       env=routes["env"], timeout=600)
    assert r.returncode != 0 and "already corrected (YNGBKG=2d)" in r.stderr
