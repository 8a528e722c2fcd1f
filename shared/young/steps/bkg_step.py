"""``young-bkg``: subtract the sky background from cal files.

The file side of the background correction (ALGORITHMS.md, "Background");
the maths is in :mod:`young.algorithms.background` and :mod:`young.algorithms.masks`.  One
exposure at a time:

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
its presence makes the contract refuse a second application unless
``--force``), ``YNGBKGL`` level, ``YNGBKGS`` sky sigma per pixel after
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
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from young.algorithms import background, masks
from young.contract import atomic, naming
from young.contract.errors import InputError, UsageError
from young.contract.runner import Job, ToolSpec
from young.steps import models as correction

TAG = "bkg"
KEYWORD = "YNGBKG"
#: tier parameters of the source mask that the tool exposes (tuples, one value per tier)
TIER_KEYS = ("tier_kernel_size", "tier_npixels", "tier_nsigma", "tier_dilate_size")
#: scalar mask parameters the tool exposes
RING_KEYS = ("ring_radius_in", "ring_width")
DEFAULTS = {
    "mode": "pedestal",
    "mask_preset": "young",
    "box": 256,
    "save_mask": False,
    "plot": False,
}


# --------------------------------------------------------------------------- parameters


def _numbers(value: Any, what: str, kind=float) -> tuple:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"--{what.replace('_', '-')}: expected comma-separated numbers, got {value!r}") from None
    if not out:
        raise UsageError(f"--{what.replace('_', '-')}: no values given")
    return out


def build_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a background product (hashed for resume, recorded in the header).

    Command-line values beat the ``bkg:`` config section, which beats the
    top level.  Tier parameters are comma-separated lists with one value per
    tier of the preset (4 for both presets).

    Raises
    ------
    UsageError
        Unknown mode or preset, or mask parameters the mask module rejects.
    """

    def pick(key):
        if cli.get(key) is not None:
            return cli[key]
        if section.get(key) is not None:
            return section[key]
        return DEFAULTS.get(key)

    p = dict(DEFAULTS)
    p["mode"] = str(pick("mode"))
    if p["mode"] not in background.MODES:
        raise UsageError(f"--mode: use one of {', '.join(background.MODES)}, not {p['mode']!r}")
    p["mask_preset"] = str(pick("mask_preset"))
    overrides: dict[str, Any] = {}
    for key in TIER_KEYS:
        value = pick(key)
        if value is not None:
            overrides[key] = _numbers(value, key, int if key in ("tier_npixels",) else float)
    for key in RING_KEYS:
        value = pick(key)
        if value is not None:
            overrides[key] = _numbers(value, key)[0]
    try:
        masks.params_for(p["mask_preset"], **overrides)
    except ValueError as exc:
        raise UsageError(f"mask: {exc}") from None
    p["mask_overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(overrides.items())}
    try:
        p["box"] = int(pick("box"))
    except (TypeError, ValueError):
        raise UsageError(f"--box: not an integer: {pick('box')!r}") from None
    if p["box"] < 8:
        raise UsageError("--box: must be at least 8 pixels")
    if p["mode"] != "2d":
        p.pop("box")  # does not shape a pedestal product
    p["save_mask"] = bool(pick("save_mask"))
    p["plot"] = bool(pick("plot"))
    return p


def background_params(params: dict) -> background.BackgroundParams:
    """:class:`young.algorithms.background.BackgroundParams` of the tool parameters."""
    over = {k: tuple(v) if isinstance(v, list) else v for k, v in params["mask_overrides"].items()}
    fields: dict[str, Any] = {"mask_preset": params["mask_preset"], "mask_overrides": over}
    if "box" in params:
        fields["box"] = int(params["box"])
    return dataclasses.replace(background.BackgroundParams(), **fields)


# --------------------------------------------------------------------------- names


def product(src: Path, output_dir: Path | None, params: dict) -> Path:
    """``X_cal -> X_bkg_cal``."""
    return naming.product_path(src, tag=TAG, output_dir=output_dir)


def validate(src: Path, params: dict):
    """A NIRCam imaging cal file (the sky is measured in surface brightness); returns its primary header."""
    return correction.validate_image(src, ("cal",))


def extra_path(dst: Path, kind: str, ext: str = ".fits") -> Path:
    """Side product beside ``dst``, named after it: ``X_bkg_cal.fits -> X_bkg_cal_<kind><ext>``.

    The product's full stem (suffix included) keeps the side products of a
    rate and a cal of one exposure apart; ``_<kind>`` is not a JWST suffix,
    so directory expansion never takes them for products.
    """
    stem = naming.parse(dst).stem
    return dst.with_name(f"{stem}_{kind}{ext}" if kind else f"{stem}{ext}")


# --------------------------------------------------------------------------- the correction


def _finite(x: float, fallback: float = -1.0) -> float:
    return float(x) if x is not None and math.isfinite(x) else fallback


def process(job: Job) -> dict:
    """Make one background product (the contract's ``ToolSpec.process``)."""
    p = job.params
    with correction.open_model(job.src) as model:
        var = model.var_rnoise if model.hasattr("var_rnoise") else None
        if var is not None and var.shape != model.data.shape:
            var = None
        if var is None:
            job.log.warning("no VAR_RNOISE array: variance not rescaled")
        t0 = time.perf_counter()
        before = np.array(model.data, copy=True) if p["plot"] else None
        try:
            corrected, var_new, bmodel, info = background.subtract_background(
                model.data, model.dq, var, mode=p["mode"], params=background_params(p))
        except ValueError as exc:  # the algorithm's own checks (no sky left, shapes)
            raise InputError(str(exc)) from None
        seconds = time.perf_counter() - t0
        model.data = corrected
        if var_new is not None:
            model.var_rnoise = var_new
        model.meta.background.level = float(info["level"])
        model.meta.background.subtracted = True
        model.meta.background.method = f"young-bkg {p['mode']}"
        job.log.info("%s: sky %.6g (sigma %.4g, residual %.3g), variance x %.4f (block %d), %.1f%% masked, "
                     "%.2f s", p["mode"], info["level"], info["sky_sigma"], info["residual_level"],
                     info["variance_scale"], info["variance_block"], 100 * info["masked_fraction"], seconds)
        correction.save(model, job)
        if p["save_mask"]:
            write_mask(extra_path(job.dst, "mask"), info["mask"], p)
        if p["plot"]:
            qa_plot(extra_path(job.dst, "", ".png"), before, info["mask"], bmodel, info,
                    title=f"{job.dst.name}  young-bkg --mode {p['mode']}")
    return {
        KEYWORD: (p["mode"], "young-bkg mode"),
        "YNGBKGL": (float(info["level"]), "sky level subtracted (model median)"),
        "YNGBKGS": (_finite(info["sky_sigma"]), "sky sigma per pixel"),
        "YNGBKGR": (_finite(info["residual_level"], 0.0), "sky level left after subtraction"),
        "YNGBKGV": (_finite(info["variance_scale"]), "VAR_RNOISE factor (-1: not rescaled)"),
        "YNGBKGM": (p["mask_preset"] + ("+" if p["mask_overrides"] else ""), "mask preset (+: overridden)"),
        "YNGBKGF": (round(float(info["masked_fraction"]), 4), "fraction of pixels masked"),
    }


# --------------------------------------------------------------------------- side products


def write_mask(path: Path, mask: np.ndarray, params: dict) -> None:
    """The mask used (1 = not sky) as a FITS image, extension ``MASK``, written atomically."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["EXTNAME"] = "MASK"
    hdr["YNGBKGM"] = params["mask_preset"]
    hdr["COMMENT"] = "1 = source, DQ-flagged or non-finite pixel (not sky); 0 = sky"
    with atomic.atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(mask.astype(np.uint8), hdr)]).writeto(tmp)


def _display(img: np.ndarray, max_size: int = 512) -> np.ndarray:
    import warnings

    f = max(1, int(math.ceil(max(img.shape) / max_size)))
    ny, nx = (s // f * f for s in img.shape)
    a = np.asarray(img[:ny, :nx], dtype=np.float32).reshape(ny // f, f, nx // f, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=(1, 3))


def qa_plot(path: Path, before: np.ndarray, mask: np.ndarray, model: np.ndarray, info: dict,
            title: str = "") -> None:
    """QA PNG: the image, the mask, the background model, the sky histogram with the fitted sky.

    The histogram is of the unmasked pixels (in 2-D mode with the model's
    variation removed, i.e. ``data - model + level``) with the fitted
    Gaussian sky (level, sigma) drawn over it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level, sigma = float(info["level"]), float(info["sky_sigma"]) or 1.0
    aspect = before.shape[0] / before.shape[1]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2 if aspect < 0.5 else 5.0))
    kw = dict(origin="lower", interpolation="nearest", aspect="auto" if aspect < 0.5 else "equal")
    im = axes[0].imshow(_display(before), cmap="gray", vmin=level - 3 * sigma, vmax=level + 5 * sigma, **kw)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.02)
    axes[0].set_title("image")
    axes[1].imshow(_display(mask.astype(np.float32)), cmap="gray_r", vmin=0, vmax=1, **kw)
    axes[1].set_title(f"mask ({100 * info['masked_fraction']:.1f}% masked)")
    m = _display(model)
    im = axes[2].imshow(m, cmap="viridis", **kw)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    axes[2].set_title(f"model ({info['method']}), {np.nanmin(m):.4g} .. {np.nanmax(m):.4g}")
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    sky = ~mask & np.isfinite(before)
    values = (before - model + level)[sky]
    if values.size > 2**20:
        values = values[:: values.size // 2**20 + 1]
    lo, hi = level - 5 * sigma, level + 5 * sigma
    ax = axes[3]
    counts, edges, _ = ax.hist(values, bins=100, range=(lo, hi), color="0.6", label="sky pixels")
    x = np.linspace(lo, hi, 400)
    width = edges[1] - edges[0]
    gauss = values.size * width / (sigma * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x - level) / sigma) ** 2)
    ax.plot(x, gauss, color="C3", label=f"sky {level:.4g}, sigma {sigma:.3g}")
    ax.axvline(level, color="C3", ls="--")
    ax.set_xlabel("pixel value" + (" - model + level" if info["method"] == "2d" else ""))
    ax.legend(fontsize=8)
    ax.set_title("sky histogram")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- the tool


BKG = ToolSpec(
    name="young-bkg", section="bkg", consumes=("cal",),
    product=product, process=process, validate=validate,
    accept=correction.not_tagged(TAG), build_params=build_params, applied_keyword=KEYWORD,
)


def app():
    """The typer app of ``young-bkg``."""
    from typing import Annotated, Optional

    import typer

    from young.contract import runner as contract
    from young.contract.cli import option, tool_app

    def tier(name, what):
        return option(name, Annotated[Optional[str], typer.Option(
            "--" + name.replace("_", "-"), metavar="V1,V2,...",
            help=f"{what}, one value per tier (overrides the preset).")], None)

    own = [
        option("mode", Annotated[Optional[str], typer.Option(
            "--mode", "-m", metavar="pedestal|2d",
            help="pedestal: one robust sky value (the seed's behaviour); 2d: a smooth large-box model "
                 "(default pedestal).")], None),
        option("mask_preset", Annotated[Optional[str], typer.Option(
            "--mask-preset", metavar="young|ceers",
            help="Tiered source-mask preset: young (aggressive, protects ICL) or ceers (default young).")], None),
        tier("tier_kernel_size", "Gaussian smoothing sigma (px) of each tier"),
        tier("tier_npixels", "Minimum connected area (px) of a detection in each tier"),
        tier("tier_nsigma", "Detection threshold (robust sigma) of each tier"),
        tier("tier_dilate_size", "Dilation radius (px) of each tier's detections, 0 = none"),
        option("ring_radius_in", Annotated[Optional[float], typer.Option(
            "--ring-radius", metavar="PX", help="Inner radius of the ring median filter (default 40).")], None),
        option("ring_width", Annotated[Optional[float], typer.Option(
            "--ring-width", metavar="PX", help="Width of the ring median filter (default 3).")], None),
        option("box", Annotated[Optional[int], typer.Option(
            "--box", metavar="PX", help="2d mode: box size of the background mesh (default 256).")], None),
        option("save_mask", Annotated[Optional[bool], typer.Option(
            "--save-mask", help="Also write the mask used, X_bkg_cal_mask.fits (1 = not sky).")], None),
        option("plot", Annotated[Optional[bool], typer.Option(
            "--plot", help="Also write a QA plot, X_bkg_cal.png (image, mask, model, sky histogram).")], None),
    ]

    def main(common, **own_values):
        return contract.run(BKG, common, own_values)

    return tool_app(
        "young-bkg",
        "Subtract the sky background from *_cal.fits files (arguments, directories or stdin) and rescale "
        "VAR_RNOISE to the measured sky noise; write X_bkg_cal.fits beside each input (or in --output-dir) "
        "and print the product paths.",
        main, own)
