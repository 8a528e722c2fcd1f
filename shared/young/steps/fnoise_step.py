"""``FnoiseStep`` (``strun young_fnoise``, ``young-fnoise``): remove 1/f noise from NIRCam rate and cal files.

The file side of the 1/f correction (docs/algorithms.md, "1/f noise"); the
maths is in :mod:`young.algorithms.fnoise` and :mod:`young.algorithms.fnoise_mask`.
The parameters are declared in :data:`young.steps.specs.FNOISE`.  One exposure
at a time:

1. **Level.**  ``X_rate.fits -> X_1f_rate.fits`` and ``X_cal.fits ->
   X_1f_cal.fits`` (any tags kept: ``X_wisp_cal -> X_wisp_1f_cal``).  A file
   that already carries ``YNG1F`` (corrected by this tool, including a cal
   made by Image2 from an ``X_1f_rate``) or whose jwst
   ``clean_flicker_noise`` step is COMPLETE is refused: 1/f is never removed
   twice.
2. **Flat.**  "Measure on a flat-fielded copy, subtract from the original":
   for a rate file the pattern is measured on ``data / flat`` with the FLAT
   reference jwst's flat_field step would use (``crds.getreferences`` for
   reftype ``flat`` with the file's CRDS parameters, from the configured
   cache/context; cut to the subarray), and converted back to DN/s with each
   amplifier's median flat.  ``--no-flat`` measures on the rate itself (no
   CRDS needed).  Cal files are already flat-fielded.
3. **Mask.**  The tiered source mask (``--mask-preset young|ceers``) of the
   measured image after a quick per-amplifier row destriping
   (:func:`young.algorithms.fnoise_mask.rough_destripe`: with the stripes left in, bright stripe bands are
   detected as sources), plus DQ-flagged, non-finite and reference pixels,
   plus ``--user-mask`` (nonzero pixels of a FITS image).  The tiered mask
   does not see light smoother than its 40-pixel ring filter (cluster light,
   large halos): such light is removed with the stripes unless it is masked
   with ``--user-mask``; across a masked region that fills amplifier rows,
   ``--method gradient`` keeps the amplifier's own stripes (``amp`` falls back
   to the full row there).
4. **Wisps.**  On A3/A4/B3/B4 with a wisp template for the filter
   (``--wisp-templates DIR``, else the config's ``wisp_directory``) the
   wisp's scale is fitted first with a stripe-proof fit
   (:func:`young.algorithms.fnoise_mask.provisional_wisp_scale`) and the stripes are measured on the
   data minus that wisp; the wisp stays in the product for young-wisp.
   Without this the amplifier row medians take the smooth wisp for stripes
   and remove most of it (``--no-wisp-model`` shows it).
5. **Method.**  ``--method amp`` (per-amplifier row medians with the
   two-sided, noise-based full-row fallback, then a column pattern) or
   ``gradient`` (medians of row differences, integrated and anchored on the
   sky: for fields filled by extended light).  Default: ``amp`` for rate
   files and :data:`CAL_METHOD` for cal files (see there for why).  Row
   medians are clipped at 3 sigma (``clip_sigma``; the algorithm's default is
   Bagley's 2, docs/algorithms.md says why).
   Amplifiers come from ``meta.exposure.noutputs`` (full frame and 4-output
   subarrays: 4 column blocks; 1-output subarrays: the whole width).
6. **Apply.**  SCI loses the pattern; ERR is unchanged (the pattern's own
   error, ~0.06 sigma per row, adds < 0.3 % to the variance); DQ only gains
   DO_NOT_USE where the result is not finite (never a silent zero);
   reference pixels are untouched.

Header keywords (primary; :func:`young.contract.provenance.stamp` adds the tool,
version, parameter hash and the full parameters as HISTORY):
``YNG1F`` method applied (its presence refuses a second application),
``YNG1FLVL`` rate/cal, ``YNG1FNOU`` amplifiers, ``YNG1FFLT`` flat used,
``YNG1FMSK`` mask preset, ``YNG1FTHR`` mask_thresh, ``YNG1FK`` fallback k,
``YNG1FMF`` masked fraction, ``YNG1FFB`` full-row fallback rows per
amplifier, ``YNG1FPED`` pedestal, ``YNG1FRMS`` rms of the subtracted row
pattern (data units), ``YNG1FNAN`` pixels newly flagged DO_NOT_USE, ``YNG1FWSP`` wisp template fitted
beside the stripes (``none``), ``YNG1FWSS`` its provisional scale, ``YNG1FSP0``/``YNG1FSP1`` the
stripe figure before and after (:func:`young.algorithms.fnoise.stripe_figure`; the tool warns when
the after is larger).

Side products beside the product (``X_1f_rate.fits`` ->):
``X_1f_rate_model.fits`` (``--save-correction``: the subtracted pattern, data
units, plus the row pattern and fallback rows per amplifier),
``X_1f_rate_mask.fits`` (``--save-mask``: 1 = source, 2 = bad pixel) and
``X_1f_rate.png`` (``--plot``: before, after, pattern, row profile per
amplifier).  The product suffix stays in their names so the rate and cal of
one exposure corrected in the same folder do not overwrite each other's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from young.algorithms import fnoise, fnoise_mask, masks
from young.contract.errors import InputError
from young.contract.records import Job, Made
from young.steps import models, plots, references, specs
from young.steps.base import Correction, CorrectionStep, run_step

log = logging.getLogger(__name__)

TAG = "1f"
KEYWORD = "YNG1F"
#: Default method for cal files.  ``amp``: on every simulated set it leaves the
#: smaller residual (docs/algorithms.md), and cal files differ from rate files
#: only by the flat.  ``gradient`` is the choice for fields filled by extended
#: light that is masked (``--user-mask``): there ``amp`` falls back to the full row.
CAL_METHOD = "amp"
#: :class:`young.algorithms.fnoise.FnoiseParams` fields that are step parameters too
TUNABLE = ("clip_sigma", "clip_maxiters", "fallback_k", "fallback_interp", "fallback_blend", "columns", "row_segments",
           "bright_percentile", "grad_mask_thresh", "anchor_step", "hp_scale", "anchor_estimator")


def fnoise_params(params: dict) -> fnoise.FnoiseParams:
    """:class:`young.algorithms.fnoise.FnoiseParams` of the step parameters."""
    return fnoise.FnoiseParams(mask_thresh=params["mask_thresh"], mask_preset=params["mask_preset"],
                               **{k: params[k] for k in TUNABLE if k in params})


def method_for(params: dict, level: str) -> str:
    """The method used for a product of ``level`` (``'rate'`` or ``'cal'``)."""
    method = params.get("method") or "auto"
    return method if method != "auto" else ("amp" if level == "rate" else CAL_METHOD)


class FnoiseStep(CorrectionStep):
    """Remove 1/f noise (horizontal stripes, per amplifier) from a NIRCam rate or cal image."""

    class_alias = "young_fnoise"
    spec = specs.FNOISE
    tag = TAG
    keyword = KEYWORD
    reference_file_types = ["flat"]

    def correct(self, model) -> Correction:
        """Measure and subtract the 1/f pattern of ``model`` (in place)."""
        p = self.get_pars()
        if getattr(model.meta.cal_step, "clean_flicker_noise", None) == "COMPLETE":
            raise InputError("jwst's clean_flicker_noise already removed 1/f noise from this file; "
                             "a correction is never applied twice")
        level = models.product_level(model)
        flat_path = references.flat_reference(model, self) if (level == "rate" and p["flat"]) else None
        if level == "rate" and p["flat"] and flat_path is None:
            log.warning("no FLAT reference applies (N/A in CRDS): measuring on the rate itself")
        before = np.array(model.data, copy=True) if p["plot"] else None
        user = references.read_user_mask(p["user_mask"], model) if p["user_mask"] else None
        template, region, wisp_name = references.wisp_template(model, p["wisp_templates"] if p["wisp_model"] else None)
        try:
            res = correct_model(model, p, flat_path, user, None if template is None else (template, region))
        except ValueError as exc:  # the algorithm's own checks (shapes, outputs)
            raise InputError(str(exc)) from None
        slices = fnoise.amp_slices(res.corrected.shape[1], res.noutputs)
        fig0 = fnoise.stripe_figure(np.asarray(model.data), res.bad, slices)
        fig1 = fnoise.stripe_figure(res.corrected, res.bad, slices)
        model.data = res.corrected
        model.dq = res.dq
        d = res.diagnostics
        if res.wisp_scale is not None:
            log.info("stripes measured beside the wisp of %s (provisional scale %.3f, left in the product "
                     "for young-wisp)", wisp_name, res.wisp_scale)
        log.info("%s on %s (%d outputs, flat %s): pedestal %.4g, fallback rows per amp %s, "
                 "%.1f%% masked, %d pixels flagged, %.2f s", res.method, res.level, res.noutputs, res.flat,
                 d.pedestal, d.fallback_counts(), 100 * float(np.mean(res.mask)), d.n_flagged, res.seconds)
        kw = _keywords(res, p)
        kw["YNG1FWSP"] = (wisp_name[:60], "wisp template fitted beside the stripes")
        if res.wisp_scale is not None:
            kw["YNG1FWSS"] = (round(res.wisp_scale, 5), "provisional wisp scale (wisp left in the data)")
        kw["YNG1FSP0"] = (round(fig0, 6), "stripe figure before (row+column median rms)")
        kw["YNG1FSP1"] = (round(fig1, 6), "stripe figure after")
        worse = f"stripe figure {fig0:.4g} -> {fig1:.4g} (YNG1FSP0/1)" if fig1 > fig0 else ""
        side = []
        bunit = model.meta.bunit_data
        if p["save_correction"]:
            side.append(("model", ".fits", lambda path: write_model(path, res, bunit)))
        if p["save_mask"]:
            side.append(("mask", ".fits", lambda path: write_mask(path, res)))
        if p["plot"]:
            side.append(("", ".png", lambda path: plots.fnoise_plot(
                path, before, res, title=f"{path.stem}  young-fnoise --method {res.method}")))
        return Correction(kw, side, worse)


def process(job: Job) -> Made:
    """Make one 1/f product (the tool contract's ``process``): :class:`FnoiseStep` on ``job.src``."""
    return run_step(FnoiseStep, job.params, job.src, job.tmp)


# --------------------------------------------------------------------------- the correction on arrays


@dataclasses.dataclass
class Result:
    """What :func:`correct_model` did (for the header, the log, side products)."""

    method: str
    level: str
    noutputs: int
    flat: str
    corrected: np.ndarray
    dq: np.ndarray
    model: np.ndarray
    mask: np.ndarray
    bad: np.ndarray
    diagnostics: Any
    seconds: float
    wisp_scale: float | None = None


def correct_model(model, params: dict, flat_path: str | None = None,
                  user_mask: np.ndarray | None = None,
                  wisp: tuple[np.ndarray, np.ndarray] | None = None) -> Result:
    """Measure and subtract the 1/f pattern of an open ImageModel (arrays only; nothing saved).

    Parameters
    ----------
    model : ImageModel
        Rate or cal product; not modified.
    params : dict
        The step's parameters (``FnoiseStep.get_pars()``).
    flat_path : str, optional
        FLAT reference to measure a rate file on (``None``: no flat); ignored
        for cal files.
    user_mask : ndarray of bool, optional
        More pixels not to measure (ORed with the tiered mask).
    wisp : (template, region), optional
        Wisp template of this exposure (data units) and its region: the
        stripes are measured on the data minus a provisional wisp fit
        (:func:`young.algorithms.fnoise_mask.provisional_wisp_scale`); the wisp stays in the product.

    Returns
    -------
    Result
    """
    t0 = time.perf_counter()
    level = models.product_level(model)
    method = method_for(params, level)
    nout = models.noutputs(model)
    data = np.asarray(model.data)
    dq = np.asarray(model.dq)
    if data.ndim != 2:
        raise InputError(f"SCI is {data.ndim}-D; young-fnoise corrects 2-D rate/cal images")
    if data.shape[1] % nout:
        raise InputError(f"{data.shape[1]} columns cannot be read by {nout} amplifiers (NOUTPUTS)")
    flat = references.flat_for(model, flat_path) if (level == "rate" and flat_path) else None
    fp = fnoise_params(params)
    extended = bool(params.get("extended_mask", True))
    mask, bad = fnoise_mask.measurement_mask(data, dq, flat, fp, nout, extended, wisp is not None)
    if user_mask is not None:
        mask = mask | user_mask
    wisp_scale = wisp_model = None
    if wisp is not None:  # the mask is the same with or without the wisp (smoother than its ring filter)
        template, region = wisp
        wisp_scale = fnoise_mask.provisional_wisp_scale(fnoise.measured_image(data, flat),
                                                        fnoise.measured_image(template, flat), mask, region, nout)
        wisp_model = (wisp_scale * template).astype(np.float32)
        data = data - wisp_model
    if extended and wisp is not None:  # after the wisp: a wisp is extended light with a model of its own
        destriped = fnoise_mask.rough_destripe(fnoise.measured_image(data, flat), bad, nout)
        mask = mask | masks.extended_light_mask(destriped, mask)
    if mask.all():
        raise InputError("no unmasked science pixel to measure the 1/f pattern on")
    corrected, dq_out, pattern, diag = fnoise.correct(
        data, dq, None, method, nout, mask=mask, flat=flat, params=fp)
    if wisp_model is not None:
        corrected = (corrected + wisp_model).astype(np.float32)
    flat_name = Path(flat_path).name if flat is not None else ("none (cal: flat-fielded)" if level == "cal"
                                                                else "none")
    return Result(method, level, nout, flat_name, corrected, dq_out, pattern, mask, bad, diag,
                  time.perf_counter() - t0, wisp_scale)


def _keywords(res: Result, params: dict) -> dict:
    d = res.diagnostics
    counts = d.fallback_counts()
    rows = d.row_pattern * d.gain[None, :] if d.row_pattern is not None else np.zeros(1)
    rms = float(np.sqrt(np.nanmean((rows - np.nanmean(rows)) ** 2)))
    mf = float(np.mean(res.mask))
    return {
        KEYWORD: (res.method, "1/f correction applied (young-fnoise method)"),
        "YNG1FLVL": (res.level, "product level the 1/f was measured on"),
        "YNG1FNOU": (res.noutputs, "amplifiers (NOUTPUTS) of the 1/f model"),
        "YNG1FFLT": (res.flat[:60], "flat the 1/f was measured through"),
        "YNG1FMSK": (params["mask_preset"], "tiered source-mask preset"),
        "YNG1FEXT": (bool(params["extended_mask"]), "smooth extended light masked too"),
        "YNG1FTHR": (params["mask_thresh"], "amp: masked fraction -> full-row value"),
        "YNG1FK": (float(fnoise_params(params).fallback_k), "amp: two-sided outlier fallback, sigma"),
        "YNG1FMF": (round(mf, 4), "fraction of pixels masked"),
        "YNG1FFB": (",".join(map(str, counts)), "full-row fallback rows per amplifier"),
        "YNG1FPED": (float(d.pedestal), "pedestal (measured units), kept"),
        "YNG1FRMS": (rms, "rms of the subtracted row pattern (data units)"),
        "YNG1FNAN": (int(d.n_flagged), "pixels newly flagged DO_NOT_USE (NaN result)"),
    }


# --------------------------------------------------------------------------- side products


def write_model(path: Path, res: Result, bunit: str | None) -> None:
    """The subtracted pattern (``MODEL``, data units), the row pattern and fallback rows per amplifier."""
    from astropy.io import fits

    d = res.diagnostics
    prim = fits.PrimaryHDU()
    prim.header[KEYWORD] = (res.method, "1/f method")
    prim.header["YNG1FFLT"] = res.flat[:60]
    m = fits.ImageHDU(res.model, name="MODEL")
    m.header["BUNIT"] = bunit or ""
    m.header["COMMENT"] = "Subtracted 1/f pattern: product = input - MODEL (0 on reference pixels)."
    rows = fits.ImageHDU((d.row_pattern * d.gain[None, :]).astype(np.float32), name="ROWPAT")
    rows.header["COMMENT"] = "Row pattern (ny, namp) in data units, as subtracted (column pattern not included)."
    hdus = [prim, m, rows]
    if d.fallback is not None:
        fb = fits.ImageHDU(d.fallback.astype(np.uint8), name="FALLBACK")
        fb.header["COMMENT"] = "1 = the amplifier row took the full-row value (amp) / whole-row difference."
        hdus.append(fb)
    models.write_hdus(path, hdus)


def write_mask(path: Path, res: Result) -> None:
    """The measurement mask: 1 = source (tiered mask), 2 = bad (DQ, non-finite, reference pixel)."""
    from astropy.io import fits

    m = np.where(res.bad, 2, np.where(res.mask, 1, 0)).astype(np.uint8)
    h = fits.Header()
    h["EXTNAME"] = "MASK"
    h["MASKPRE"] = res.diagnostics.params.get("mask_preset", "")
    h["COMMENT"] = "0 = sky used for the 1/f measurement, 1 = source, 2 = bad pixel"
    models.write_hdus(path, [fits.PrimaryHDU(), fits.ImageHDU(m, h)])
