"""``BkgStep`` (``strun young_bkg``, ``young-bkg``): subtract the sky background from cal images.

The file side of the background correction (docs/algorithms.md,
"Background"); the maths is in :mod:`young.algorithms.background` and
:mod:`young.algorithms.masks`.  The parameters are declared in
:data:`young.steps.specs.BKG`.  One exposure at a time:

1. sources are masked with the tiered mask (``--mask-preset young|ceers``,
   every tier parameter overridable: ``--tier-nsigma 2,2,2,2`` ...);
2. ``--mode pedestal`` (default, the seed's behaviour) subtracts one robust
   sky value; ``--mode 2d`` subtracts a smooth large-box 2-D model
   (``--box``), for gradients a pedestal leaves;
3. VAR_RNOISE is rescaled to the measured sky variance (block sums, so
   correlated noise counts), and pixels whose VAR_RNOISE is zero, negative
   or not finite become +inf: drizzle's inverse-variance weight is then 0.
   SCI, VAR_RNOISE and ``meta.background`` change; ERR, DQ and the other
   variances are kept as they are.

Recorded: ``meta.background.level`` (the pedestal, or the median of the 2-D
model; data units), ``meta.background.subtracted = True`` and
``meta.background.method = 'young-bkg <mode>'`` (FITS ``BKGLEVEL``,
``BKGSUB``, ``BKGMETH``), and in the primary header ``YNGBKG`` (the mode:
its presence refuses a second application), ``YNGBKGL`` level, ``YNGBKGS`` sky sigma per pixel after
subtraction, ``YNGBKGR`` residual sky level, ``YNGBKGV`` VAR_RNOISE scale
factor, ``YNGBKGM`` mask preset, ``YNGBKGF`` masked fraction.

Note for stage 3: jwst's ``skymatch`` refuses images whose
``meta.background.subtracted`` differs from its own ``subtract`` parameter,
so Image3 must run ``skymatch`` with ``subtract=True`` on young-bkg products
(or skip it).

Side products beside the product (``X_bkg_cal.fits``): ``X_bkg_cal_mask.fits``
(``--save-mask``: 1 = masked, i.e. source, bad or non-finite pixel) and
``X_bkg_cal.png`` (``--plot``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from young.algorithms import background
from young.contract.errors import InputError
from young.contract.records import Job, Made
from young.steps import models, plots, specs
from young.steps.base import Correction, CorrectionStep, run_step

log = logging.getLogger(__name__)

TAG = "bkg"
KEYWORD = "YNGBKG"
#: mask parameters of the spec (each overrides the preset when given)
MASK_KEYS = ("tier_kernel_size", "tier_npixels", "tier_nsigma", "tier_dilate_size", "ring_radius_in", "ring_width")


class BkgStep(CorrectionStep):
    """Subtract the sky (a pedestal or a smooth 2-D model) from a NIRCam cal image; rescale VAR_RNOISE."""

    class_alias = "young_bkg"
    spec = specs.BKG
    tag = TAG
    keyword = KEYWORD
    levels = ("cal",)

    def correct(self, model) -> Correction:
        """Measure and subtract the background of ``model`` in place."""
        p = self.get_pars()
        var = model.var_rnoise if model.hasattr("var_rnoise") else None
        if var is not None and var.shape != model.data.shape:
            var = None
        if var is None:
            log.warning("no VAR_RNOISE array: variance not rescaled")
        t0 = time.perf_counter()
        before = np.array(model.data, copy=True) if p["plot"] else None
        try:
            corrected, var_new, bmodel, info = background.subtract_background(
                model.data, model.dq, var, mode=p["mode"], params=background_params(p))
        except ValueError as exc:  # the algorithm's own checks (no sky left, shapes)
            raise InputError(str(exc)) from None
        seconds = time.perf_counter() - t0
        judged = info["mask"]
        fig0 = background.large_scale_figure(np.asarray(model.data), judged)
        fig1 = background.large_scale_figure(np.asarray(corrected), judged)
        model.data = corrected
        if var_new is not None:
            model.var_rnoise = var_new
        model.meta.background.level = float(info["level"])
        model.meta.background.subtracted = True
        model.meta.background.method = f"young-bkg {p['mode']}"
        log.info("%s: sky %.6g (sigma %.4g, residual %.3g), variance x %.4f (block %d), %.1f%% masked, "
                 "%.2f s", p["mode"], info["level"], info["sky_sigma"], info["residual_level"],
                 info["variance_scale"], info["variance_block"], 100 * info["masked_fraction"], seconds)
        overridden = any(p.get(k) is not None for k in MASK_KEYS)
        keywords = {
            KEYWORD: (p["mode"], "young-bkg mode"),
            "YNGBKGL": (float(info["level"]), "sky level subtracted (model median)"),
            "YNGBKGS": (_finite(info["sky_sigma"]), "sky sigma per pixel"),
            "YNGBKGR": (_finite(info["residual_level"], 0.0), "sky level left after subtraction"),
            "YNGBKGV": (_finite(info["variance_scale"]), "VAR_RNOISE factor (-1: not rescaled)"),
            "YNGBKGM": (p["mask_preset"] + ("+" if overridden else ""), "mask preset (+: overridden)"),
            "YNGBKGF": (round(float(info["masked_fraction"]), 4), "fraction of pixels masked"),
            "YNGBKG0": (_finite(fig0), "large-scale sky figure before (block-median rms)"),
            "YNGBKG1": (_finite(fig1), "large-scale sky figure after"),
        }
        worse = f"large-scale sky figure {fig0:.4g} -> {fig1:.4g} (YNGBKG0/1)" if fig1 > fig0 else ""
        side = []
        if p["save_mask"]:
            side.append(("mask", ".fits", lambda path: write_mask(path, info["mask"], p)))
        if p["plot"]:
            side.append(("", ".png", lambda path: plots.bkg_plot(path, before, info["mask"], bmodel, info,
                                                                 title=f"{path.stem}  young-bkg --mode {p['mode']}")))
        return Correction(keywords, side, worse)


def process(job: Job) -> Made:
    """Make one background product (the tool contract's ``process``): :class:`BkgStep` on ``job.src``."""
    return run_step(BkgStep, job.params, job.src, job.tmp)


def background_params(params: dict) -> background.BackgroundParams:
    """:class:`young.algorithms.background.BackgroundParams` of the tool parameters."""
    over = {k: tuple(params[k]) if isinstance(params[k], list) else params[k] for k in MASK_KEYS
            if params.get(k) is not None}
    fields: dict[str, Any] = {"mask_preset": params["mask_preset"], "mask_overrides": over}
    if params.get("mode") == "2d" and params.get("box") is not None:
        fields["box"] = int(params["box"])
    return dataclasses.replace(background.BackgroundParams(), **fields)


def _finite(x: float, fallback: float = -1.0) -> float:
    return float(x) if x is not None and math.isfinite(x) else fallback


# --------------------------------------------------------------------------- side products


def write_mask(path: Path, mask: np.ndarray, params: dict) -> None:
    """The mask used (1 = not sky) as a FITS image, extension ``MASK``."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["EXTNAME"] = "MASK"
    hdr["YNGBKGM"] = params["mask_preset"]
    hdr["COMMENT"] = "1 = source, DQ-flagged or non-finite pixel (not sky); 0 = sky"
    models.write_hdus(path, [fits.PrimaryHDU(), fits.ImageHDU(mask.astype(np.uint8), hdr)])
