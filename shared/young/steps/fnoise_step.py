"""``young-fnoise``: remove 1/f noise (horizontal stripes) from NIRCam rate and cal files.

The file side of the 1/f correction (ALGORITHMS.md, "1/f noise"); the maths
is in :mod:`young.algorithms.fnoise` and :mod:`young.algorithms.masks`.  One exposure at a time:

1. **Level.**  ``X_rate.fits -> X_1f_rate.fits`` and ``X_cal.fits ->
   X_1f_cal.fits`` (any tags kept: ``X_wisp_cal -> X_wisp_1f_cal``).  A file
   that already carries ``YNG1F`` (corrected by this tool, including a cal
   made by Image2 from an ``X_1f_rate``) or whose jwst
   ``clean_flicker_noise`` step is COMPLETE is refused: 1/f is never removed
   twice (``--force`` overrides).
2. **Flat.**  "Measure on a flat-fielded copy, subtract from the original":
   for a rate file the pattern is measured on ``data / flat`` with the FLAT
   reference jwst's flat_field step would use (``crds.getreferences`` for
   reftype ``flat`` with the file's CRDS parameters, from the configured
   cache/context; cut to the subarray), and converted back to DN/s with each
   amplifier's median flat.  ``--no-flat`` measures on the rate itself (no
   CRDS needed).  Cal files are already flat-fielded.
3. **Mask.**  The tiered source mask (``--mask-preset young|ceers``) of the
   measured image after a quick per-amplifier row destriping
   (:func:`rough_destripe`: with the stripes left in, bright stripe bands are
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
   (:func:`provisional_wisp_scale`) and the stripes are measured on the
   data minus that wisp; the wisp stays in the product for young-wisp.
   Without this the amplifier row medians take the smooth wisp for stripes
   and remove most of it (``--no-wisp-model`` shows it).
5. **Method.**  ``--method amp`` (per-amplifier row medians with the
   two-sided, noise-based full-row fallback, then a column pattern) or
   ``gradient`` (medians of row differences, integrated and anchored on the
   sky: for fields filled by extended light).  Default: ``amp`` for rate
   files and :data:`CAL_METHOD` for cal files (see there for why).  Row
   medians are clipped at 3 sigma (:data:`TOOL_DEFAULTS`; the algorithm's
   default is Bagley's 2).
   Amplifiers come from ``meta.exposure.noutputs`` (full frame and 4-output
   subarrays: 4 column blocks; 1-output subarrays: the whole width).
6. **Apply.**  SCI loses the pattern; ERR is unchanged (the pattern's own
   error, ~0.06 sigma per row, adds < 0.3 % to the variance); DQ only gains
   DO_NOT_USE where the result is not finite (never a silent zero);
   reference pixels are untouched.

Header keywords (primary; :func:`young.provenance.stamp` adds the tool,
version, parameter hash and the full parameters as HISTORY):
``YNG1F`` method applied (its presence refuses a second application),
``YNG1FLVL`` rate/cal, ``YNG1FNOU`` amplifiers, ``YNG1FFLT`` flat used,
``YNG1FMSK`` mask preset, ``YNG1FTHR`` mask_thresh, ``YNG1FK`` fallback k,
``YNG1FMF`` masked fraction, ``YNG1FFB`` full-row fallback rows per
amplifier, ``YNG1FPED`` pedestal, ``YNG1FRMS`` rms of the subtracted row
pattern (data units), ``YNG1FNAN`` pixels newly flagged DO_NOT_USE, ``YNG1FWSP`` wisp template fitted
beside the stripes (``none``), ``YNG1FWSS`` its provisional scale.

Side products beside the product (``X_1f_rate.fits`` ->):
``X_1f_rate_model.fits`` (``--save-model``: the subtracted pattern, data
units, plus the row pattern and fallback rows per amplifier),
``X_1f_rate_mask.fits`` (``--save-mask``: 1 = source, 2 = bad pixel) and
``X_1f_rate.png`` (``--plot``: before, after, pattern, row profile per
amplifier).  The product suffix stays in their names so the rate and cal of
one exposure corrected in the same folder do not overwrite each other's.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from young.algorithms import fnoise, fnoise_mask, masks
from young.contract import atomic, naming
from young.contract.errors import InputError, UsageError
from young.contract.runner import Job, ToolSpec
from young.steps import models as correction

TAG = "1f"
KEYWORD = "YNG1F"
#: Default method for cal files.  ``amp``: on every simulated set it leaves the
#: smaller residual (weak stripes: 0.95-1.0 x the floor of a per-amplifier row
#: median vs 1.05-1.6 x for ``gradient``; strong: 0.069 vs 0.10 of the injected
#: rms; bench/fnoise), and cal files differ from rate files only by the flat.
#: ``gradient`` is the choice for fields filled by extended light that is
#: masked (``--user-mask``): there ``amp`` falls back to the full row.
CAL_METHOD = "amp"
DEFAULTS: dict[str, Any] = {
    "method": None,          # None: amp on rate, CAL_METHOD on cal
    "mask_preset": "young",
    "mask_thresh": 0.8,
    "flat": True,
    "user_mask": None,       # FITS image, nonzero = masked (ORed with the tiered mask)
    "wisp_templates": None,  # wisp template folder: stripes measured beside a provisional wisp fit
    "wisp_model": True,
    "extended_mask": True,   # also mask smooth extended light (masks.extended_light_mask)
    "save_model": False,
    "save_mask": False,
    "plot": False,
}
#: :class:`young.algorithms.fnoise.FnoiseParams` fields that a config section may set
#: (``fnoise: {fallback_k: 5}``); the command line has the common ones.
#: Where the tool's defaults differ from :class:`young.algorithms.fnoise.FnoiseParams`.
#: ``clip_sigma`` 3 instead of Bagley's 2: iterated 2-sigma clipping shrinks
#: the retained run of each row to its core, whose median is noisier than
#: the row's; measured on simulated stage-1 rate files (stripe residual
#: fraction, ``amp``): full frame with stripes of one pixel sigma 0.112 ->
#: 0.094, weak full-frame stripes 0.162 -> 0.134 (a per-amplifier row median
#: of the true sky pixels leaves 0.132), SUBGRISM256 strips 0.110 -> 0.088.
TOOL_DEFAULTS: dict[str, Any] = {"clip_sigma": 3.0}
TUNABLE = ("clip_sigma", "clip_maxiters", "fallback_k", "fallback_interp", "fallback_blend", "columns",
           "bright_percentile", "grad_mask_thresh", "anchor_step", "hp_scale", "anchor_estimator")


# --------------------------------------------------------------------------- parameters


def build_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a 1/f product (hashed for resume, recorded in the header).

    Command-line values beat the ``fnoise:`` config section, which beats the
    top level.  The section may also set the :data:`TUNABLE` fields of
    :class:`young.algorithms.fnoise.FnoiseParams`.

    Raises
    ------
    UsageError
        Unknown method or preset, a threshold out of range, jwst step
        parameters (``--set``: this tool runs no jwst step).
    """

    def pick(key):
        if cli.get(key) is not None:
            return cli[key]
        if section.get(key) is not None:
            return section[key]
        return DEFAULTS[key]

    if cli.get("steps"):
        raise UsageError(f"--set/steps: young-fnoise runs no jwst step (got {', '.join(sorted(cli['steps']))})")
    p = dict(DEFAULTS)
    method = pick("method")
    if method is not None:
        method = str(method).lower()
        if method == "auto":
            method = None
        elif method not in fnoise.METHODS:
            raise UsageError(f"--method: use one of {', '.join(fnoise.METHODS)}, not {method!r}")
    p["method"] = method
    p["mask_preset"] = str(pick("mask_preset"))
    if p["mask_preset"] not in masks.PRESETS:
        raise UsageError(f"--mask-preset: use one of {', '.join(sorted(masks.PRESETS))}, not {p['mask_preset']!r}")
    try:
        p["mask_thresh"] = float(pick("mask_thresh"))
    except (TypeError, ValueError):
        raise UsageError(f"--mask-thresh: not a number: {pick('mask_thresh')!r}") from None
    if not 0.0 < p["mask_thresh"] <= 1.0:
        raise UsageError(f"--mask-thresh: must lie in (0, 1], got {p['mask_thresh']}")
    for key in ("flat", "extended_mask", "save_model", "save_mask", "plot"):
        p[key] = bool(pick(key))
    user_mask = pick("user_mask")
    if user_mask:
        path = Path(str(user_mask)).expanduser()
        if not path.is_file():
            raise UsageError("--user-mask: no such file", path)
        p["user_mask"] = {"path": str(path.resolve()), "mtime": path.stat().st_mtime}
    p["wisp_model"] = bool(pick("wisp_model"))
    templates = cli.get("wisp_templates") or section.get("wisp_templates") or section.get("wisp_directory")
    if templates and p["wisp_model"]:
        folder = Path(str(templates)).expanduser()
        if not folder.is_dir():
            raise UsageError("wisp template folder not found (--wisp-templates / wisp_directory)", folder)
        p["wisp_templates"] = str(folder.resolve())
    tuning = dict(TOOL_DEFAULTS)
    tuning.update({k: section[k] for k in TUNABLE if section.get(k) is not None})
    try:
        fnoise.FnoiseParams(**tuning)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"fnoise config: {exc}") from None
    p["tuning"] = dict(sorted(tuning.items()))
    return p


def fnoise_params(params: dict) -> fnoise.FnoiseParams:
    """:class:`young.algorithms.fnoise.FnoiseParams` of the tool parameters."""
    return fnoise.FnoiseParams(mask_thresh=params["mask_thresh"], mask_preset=params["mask_preset"],
                               **params.get("tuning", {}))


def method_for(params: dict, level: str) -> str:
    """The method used for a product of ``level`` (``'rate'`` or ``'cal'``)."""
    return params["method"] or ("amp" if level == "rate" else CAL_METHOD)


# --------------------------------------------------------------------------- names


def product(src: Path, output_dir: Path | None, params: dict) -> Path:
    """``X_rate -> X_1f_rate``, ``X_cal -> X_1f_cal``."""
    return naming.product_path(src, tag=TAG, output_dir=output_dir)


def validate(src: Path, params: dict):
    """A NIRCam imaging rate or cal file; returns its primary header."""
    return correction.validate_image(src, ("rate", "cal"))


def extra_path(dst: Path, kind: str, ext: str = ".fits") -> Path:
    """Side product beside ``dst``: ``X_1f_rate.fits -> X_1f_rate_<kind><ext>`` (not a JWST product name)."""
    stem = naming.parse(dst).stem
    return dst.with_name(f"{stem}_{kind}{ext}" if kind else f"{stem}{ext}")


# --------------------------------------------------------------------------- flat


@functools.lru_cache(maxsize=4)
def _read_flat(path: str, mtime: float) -> tuple[np.ndarray, int, int]:
    """SCI of a FLAT reference and its 1-based SUBSTRT1/2 (cached per worker process)."""
    from stdatamodels.jwst import datamodels

    with datamodels.FlatModel(path) as ref:
        data = np.asarray(ref.data, dtype=np.float32).copy()
        xs = int(ref.meta.subarray.xstart or 1)
        ys = int(ref.meta.subarray.ystart or 1)
    return data, xs, ys


def flat_reference(model) -> str | None:
    """Path of the FLAT reference jwst's flat_field step would use for ``model`` (None: N/A).

    Uses the CRDS environment the contract set up (``crds_path``,
    ``crds_context`` of the config; serverless after a prefetch).

    Raises
    ------
    InputError
        CRDS cannot provide it (missing from the cache and no server).
    """
    params = model.get_crds_parameters()
    context = os.environ.get("CRDS_CONTEXT") or None
    where = os.environ.get("CRDS_PATH", "the CRDS cache")
    from crds.core import log as crds_log
    from crds.core.exceptions import CrdsError

    # CRDS's logger does not propagate and its console handler is removed in
    # the workers: let its messages reach the product's .log, not stderr
    crds_logger = logging.getLogger(crds_log.THE_LOGGER.name)
    propagate = crds_logger.propagate
    crds_logger.propagate = True
    try:
        import crds

        got = crds.getreferences(params, reftypes=["flat"], context=context, observatory="jwst")
    except SystemExit:  # CRDS exits when it has neither a usable cache nor a server
        raise InputError(f"FLAT reference unavailable: no usable CRDS cache at {where} and no server; "
                         "--no-flat measures on the rate itself") from None
    except CrdsError as exc:
        text = " ".join(str(exc).split())
        if "NOT FOUND" in text.upper() and "N/A" in text.upper():
            return None
        raise InputError(f"FLAT reference unavailable from {where} ({text}); "
                         "--no-flat measures on the rate itself") from None
    finally:
        crds_logger.propagate = propagate
    path = got.get("flat")
    if not isinstance(path, str) or path.upper().startswith("NOT FOUND"):
        return None
    return path


def flat_for(model, path: str) -> np.ndarray:
    """The flat on the data's pixel grid (cut from a full-frame reference for subarrays).

    Raises
    ------
    InputError
        The reference does not cover the data's readout.
    """
    full, fxs, fys = _read_flat(path, os.stat(path).st_mtime)
    shape = model.data.shape
    sub = model.meta.subarray
    xs, ys = int(sub.xstart or 1), int(sub.ystart or 1)
    if full.shape == shape and (xs, ys) == (fxs, fys):
        return full
    x0, y0 = xs - fxs, ys - fys
    if x0 < 0 or y0 < 0 or y0 + shape[0] > full.shape[0] or x0 + shape[1] > full.shape[1]:
        raise InputError(f"FLAT reference {Path(path).name} ({full.shape[1]}x{full.shape[0]} at "
                         f"{fxs},{fys}) does not cover the {shape[1]}x{shape[0]} readout at {xs},{ys}")
    return full[y0:y0 + shape[0], x0:x0 + shape[1]]


# --------------------------------------------------------------------------- user mask


def read_user_mask(path: str, model) -> np.ndarray:
    """A user mask on the data's pixel grid (True = do not measure there).

    The ``MASK`` extension, else the first 2-D image of the file; nonzero
    pixels are masked (``--save-mask`` output, a segmentation map or a
    hand-drawn region around cluster light all work).  A full-frame mask is
    cut to a subarray readout (``SUBSTRT``).

    Raises
    ------
    InputError
        Unreadable, no 2-D image, or a shape that does not fit the data.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul["MASK"] if "MASK" in hdul else next(
                (h for h in hdul if h.data is not None and np.ndim(h.data) == 2), None)
            if hdu is None:
                raise InputError("--user-mask has no 2-D image", path)
            mask = np.asarray(hdu.data) != 0
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's file: one line
        raise InputError(f"--user-mask unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})",
                         path) from None
    shape = model.data.shape
    if mask.shape == shape:
        return mask
    sub = model.meta.subarray
    if mask.shape == fnoise.FULL_FRAME and sub.xstart and sub.ystart:
        y0, x0 = int(sub.ystart) - 1, int(sub.xstart) - 1
        if y0 + shape[0] <= mask.shape[0] and x0 + shape[1] <= mask.shape[1]:
            return mask[y0:y0 + shape[0], x0:x0 + shape[1]]
    raise InputError(f"--user-mask is {mask.shape[1]}x{mask.shape[0]}, the data {shape[1]}x{shape[0]}", path)


# --------------------------------------------------------------------------- wisp region


def wisp_template(model, folder: str | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The wisp template young-wisp would use for this exposure, on its pixel grid, and its region.

    ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits`` in ``folder``, the RATE or CAL
    extension by product level, cut to the subarray (:func:`young.wisp_step.template_for`).
    ``(None, None, 'none')`` for detectors without wisps, filters without a
    template, no folder, or a readout the template's region does not reach.

    Raises
    ------
    InputError
        The template exists but is unreadable or does not fit the readout.
    """
    from young.algorithms import wisp
    from young.steps import wisp_step

    det = str(model.meta.instrument.detector or "").upper()
    if not folder or det not in wisp.WISP_DETECTORS:
        return None, None, "none"
    filt = str(model.meta.instrument.filter or "").upper()
    pupil = str(model.meta.instrument.pupil or "CLEAR").upper()
    path = Path(folder) / wisp_step.template_name(det, filt, pupil)
    if not path.is_file():
        return None, None, "none"
    ext = "RATE" if correction.product_level(model) == "rate" else "CAL"
    template, region = wisp_step.template_for(path, ext, model)
    if np.count_nonzero(region) < wisp.WispFitParams().min_pixels:
        return None, None, "none"
    return template, region, path.name


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
        :func:`build_params` output.
    flat_path : str, optional
        FLAT reference to measure a rate file on (``None``: no flat); ignored
        for cal files.
    user_mask : ndarray of bool, optional
        More pixels not to measure (ORed with the tiered mask).
    wisp : (template, region), optional
        Wisp template of this exposure (data units) and its region: the
        stripes are measured on the data minus a provisional wisp fit
        (:func:`provisional_wisp_scale`); the wisp stays in the product.

    Returns
    -------
    Result
    """
    t0 = time.perf_counter()
    level = correction.product_level(model)
    method = method_for(params, level)
    nout = correction.noutputs(model)
    data = np.asarray(model.data)
    dq = np.asarray(model.dq)
    if data.ndim != 2:
        raise InputError(f"SCI is {data.ndim}-D; young-fnoise corrects 2-D rate/cal images")
    if data.shape[1] % nout:
        raise InputError(f"{data.shape[1]} columns cannot be read by {nout} amplifiers (NOUTPUTS)")
    flat = flat_for(model, flat_path) if (level == "rate" and flat_path) else None
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
        mask = mask | masks.extended_light_mask(fnoise_mask.rough_destripe(fnoise.measured_image(data, flat), bad, nout), mask)
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
        "YNG1FEXT": (bool(params.get("extended_mask", True)), "smooth extended light masked too"),
        "YNG1FTHR": (params["mask_thresh"], "amp: masked fraction -> full-row value"),
        "YNG1FK": (float(fnoise_params(params).fallback_k), "amp: two-sided outlier fallback, sigma"),
        "YNG1FMF": (round(mf, 4), "fraction of pixels masked"),
        "YNG1FFB": (",".join(map(str, counts)), "full-row fallback rows per amplifier"),
        "YNG1FPED": (float(d.pedestal), "pedestal (measured units), kept"),
        "YNG1FRMS": (rms, "rms of the subtracted row pattern (data units)"),
        "YNG1FNAN": (int(d.n_flagged), "pixels newly flagged DO_NOT_USE (NaN result)"),
    }


def process(job: Job) -> dict:
    """Make one 1/f product (the contract's ``ToolSpec.process``)."""
    p = job.params
    with correction.open_model(job.src) as model:
        cfn = getattr(model.meta.cal_step, "clean_flicker_noise", None)
        if cfn == "COMPLETE" and not job.force:
            raise InputError("jwst's clean_flicker_noise already removed 1/f noise from this file; "
                             "refusing to apply it twice (--force overrides)")
        level = correction.product_level(model)
        flat_path = flat_reference(model) if (level == "rate" and p["flat"]) else None
        if level == "rate" and p["flat"] and flat_path is None:
            job.log.warning("no FLAT reference applies (N/A in CRDS): measuring on the rate itself")
        before = np.array(model.data, copy=True) if p["plot"] else None
        user = read_user_mask(p["user_mask"]["path"], model) if p["user_mask"] else None
        template, region, wisp_name = wisp_template(model, p.get("wisp_templates"))
        try:
            res = correct_model(model, p, flat_path, user, None if template is None else (template, region))
        except ValueError as exc:  # the algorithm's own checks (shapes, outputs)
            raise InputError(str(exc)) from None
        model.data = res.corrected
        model.dq = res.dq
        d = res.diagnostics
        if res.wisp_scale is not None:
            job.log.info("stripes measured beside the wisp of %s (provisional scale %.3f, left in the product "
                         "for young-wisp)", wisp_name, res.wisp_scale)
        job.log.info("%s on %s (%d outputs, flat %s): pedestal %.4g, fallback rows per amp %s, "
                     "%.1f%% masked, %d pixels flagged, %.2f s", res.method, res.level, res.noutputs, res.flat,
                     d.pedestal, d.fallback_counts(), 100 * float(np.mean(res.mask)), d.n_flagged, res.seconds)
        correction.save(model, job)
        bunit = model.meta.bunit_data
    if p["save_model"]:
        write_model(extra_path(job.dst, "model"), res, bunit)
    if p["save_mask"]:
        write_mask(extra_path(job.dst, "mask"), res)
    if p["plot"]:
        qa_plot(extra_path(job.dst, "", ".png"), before, res, title=f"{job.dst.name}  young-fnoise --method "
                f"{res.method}")
    kw = _keywords(res, p)
    kw["YNG1FWSP"] = (wisp_name[:60], "wisp template fitted beside the stripes")
    if res.wisp_scale is not None:
        kw["YNG1FWSS"] = (round(res.wisp_scale, 5), "provisional wisp scale (wisp left in the data)")
    return kw


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
    with atomic.atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def write_mask(path: Path, res: Result) -> None:
    """The measurement mask: 1 = source (tiered mask), 2 = bad (DQ, non-finite, reference pixel)."""
    from astropy.io import fits

    m = np.where(res.bad, 2, np.where(res.mask, 1, 0)).astype(np.uint8)
    h = fits.Header()
    h["EXTNAME"] = "MASK"
    h["MASKPRE"] = res.diagnostics.params.get("mask_preset", "")
    h["COMMENT"] = "0 = sky used for the 1/f measurement, 1 = source, 2 = bad pixel"
    with atomic.atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(m, h)]).writeto(tmp)


def _display(img: np.ndarray, max_size: int = 512) -> np.ndarray:
    """Block-averaged copy at most ``max_size`` pixels on the long side (NaN-aware)."""
    import warnings

    f = max(1, int(math.ceil(max(img.shape) / max_size)))
    ny, nx = (max(s // f, 1) * f for s in img.shape)
    a = np.asarray(img[:ny, :nx], dtype=np.float32)
    if a.shape[0] < f:
        f = 1
    a = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=(1, 3))


def qa_plot(path: Path, before: np.ndarray, res: Result, title: str = "") -> None:
    """QA PNG: the image before and after (same stretch), the subtracted pattern, the row profile per amplifier.

    The stretch is median +- 3 robust sigma of the unmasked pixels after the
    correction; the row profile panel shows each amplifier's subtracted row
    pattern (data units) against the row number, with the rows that fell
    back to the full-row value marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    after = res.corrected
    sky = after[~res.mask & np.isfinite(after)]
    med = float(np.median(sky)) if sky.size else 0.0
    sig = float(1.4826 * np.median(np.abs(sky - med))) if sky.size else 1.0
    sig = sig if sig > 0 else 1.0
    d = res.diagnostics
    prof = d.row_pattern * d.gain[None, :]
    m = res.model[np.isfinite(res.model) & (res.model != 0)]
    pr = float(np.percentile(np.abs(m - np.median(m)), 99.5)) if m.size else 1.0
    pr = pr if pr > 0 else 1.0
    aspect = before.shape[0] / before.shape[1]
    wide = aspect < 0.5
    fig, axes = plt.subplots(4 if wide else 1, 1 if wide else 4, figsize=(12, 11) if wide else (20, 5))
    kw = dict(origin="lower", interpolation="nearest", aspect="auto" if wide else "equal")
    for ax, img, name, cmap, lo, hi in (
            (axes[0], before, "before", "gray", med - 3 * sig, med + 3 * sig),
            (axes[1], after, "after", "gray", med - 3 * sig, med + 3 * sig),
            (axes[2], res.model, f"subtracted pattern ({res.method})", "RdBu_r",
             float(np.median(m)) - pr if m.size else -pr, float(np.median(m)) + pr if m.size else pr)):
        im = ax.imshow(_display(img), cmap=cmap, vmin=lo, vmax=hi, **kw)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax = axes[3]
    rows = np.arange(prof.shape[0])
    level = np.nanmedian(prof, axis=0)
    spread = np.nanpercentile(np.abs(prof - level[None, :]), 99) if np.isfinite(prof).any() else 1.0
    step = 2.5 * spread if spread > 0 else 1.0
    counts = d.fallback_counts() or [0] * prof.shape[1]
    for k in range(prof.shape[1]):
        y = prof[:, k] - level[k] + k * step
        ax.plot(rows, y, lw=0.5, color=f"C{k}",
                label=f"amp {k + 1}: level {level[k]:+.3g}, {counts[k]} fallback rows")
        if d.fallback is not None and d.fallback[:, k].any():
            fb = d.fallback[:, k]
            ax.plot(rows[fb], y[fb], ".", ms=2, color="k")
    ax.set_xlabel("row")
    ax.set_ylabel("row pattern - amp level (data units)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("row profile per amplifier (black: full-row fallback)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- the tool


FNOISE = ToolSpec(
    name="young-fnoise", section="fnoise", consumes=("rate", "cal"),
    product=product, process=process, validate=validate,
    accept=correction.not_tagged(TAG), build_params=build_params, uses_crds=True, applied_keyword=KEYWORD,
)


def app():
    """The typer app of ``young-fnoise``."""
    from typing import Annotated, Optional

    import typer

    from young.contract import runner as contract
    from young.contract.cli import option, tool_app

    own = [
        option("method", Annotated[Optional[str], typer.Option(
            "--method", "-m", metavar="amp|gradient",
            help=f"amp: per-amplifier row medians with a full-row fallback; gradient: row differences "
                 f"anchored on the sky, for fields filled by extended light (default: amp on rate, "
                 f"{CAL_METHOD} on cal).")], None),
        option("mask_preset", Annotated[Optional[str], typer.Option(
            "--mask-preset", metavar="young|ceers",
            help="Tiered source-mask preset: young (aggressive) or ceers (default young).")], None),
        option("mask_thresh", Annotated[Optional[float], typer.Option(
            "--mask-thresh", metavar="F",
            help="amp: an amplifier row more than this fraction masked takes the full-row value "
                 "(default 0.8).")], None),
        option("flat", Annotated[Optional[bool], typer.Option(
            "--flat/--no-flat",
            help="Rate files: measure through the CRDS FLAT reference (default) or on the rate itself.")],
            None),
        option("user_mask", Annotated[Optional[str], typer.Option(
            "--user-mask", metavar="FITS",
            help="Also mask the nonzero pixels of this image (same shape, or full frame for subarrays), "
                 "e.g. cluster light the tiered mask misses; --save-mask output works.")], None),
        option("wisp_templates", Annotated[Optional[str], typer.Option(
            "--wisp-templates", metavar="DIR",
            help="Wisp template folder (default: the config's wisp_directory): on A3/A4/B3/B4 the stripes "
                 "are measured beside a provisional wisp fit, so the wisp is not taken for stripes (it is "
                 "left in the product for young-wisp).")], None),
        option("wisp_model", Annotated[Optional[bool], typer.Option(
            "--wisp-model/--no-wisp-model",
            help="Fit the wisp beside the stripes when a template applies (default on).")], None),
        option("save_model", Annotated[Optional[bool], typer.Option(
            "--save-model", help="Also write the subtracted pattern, X_1f_rate_model.fits.")], None),
        option("save_mask", Annotated[Optional[bool], typer.Option(
            "--save-mask", help="Also write the measurement mask, X_1f_rate_mask.fits (1 source, 2 bad).")],
            None),
        option("plot", Annotated[Optional[bool], typer.Option(
            "--plot", help="Also write a QA plot, X_1f_rate.png (before, after, pattern, row profiles).")],
            None),
        option("prefetch", Annotated[Optional[bool], typer.Option(
            "--prefetch/--no-prefetch",
            help="Fetch the CRDS references first (default: when running in parallel with a CRDS server).")], None),
    ]

    def main(common, prefetch=None, **own_values):
        common.prefetch = prefetch
        return contract.run(FNOISE, common, own_values)

    return tool_app(
        "young-fnoise",
        "Remove 1/f noise (horizontal stripes) from NIRCam *_rate.fits and *_cal.fits files (arguments, "
        "directories or stdin); write X_1f_rate.fits / X_1f_cal.fits beside each input (or in --output-dir) "
        "and print the product paths.",
        main, own)
