"""Wisp template fitting and subtraction (pure functions on arrays).

Wisps are scattered-light features on the short-wave detectors NRCA3, NRCA4,
NRCB3 and NRCB4.  YOUNG removes them with the STScI v3 templates (Sunnquist):
one scale factor per exposure, fitted by minimising a robust scatter of
``data - s * template`` over the unmasked template region, then ``s * template``
is subtracted (or its strong pixels flagged in DQ).  See docs/algorithms.md, "Wisps".

Where YOUNG departs from the baseline (docs/algorithms.md, "Wisps", has the
figures behind each):

* a bounded Brent search instead of a 200-point scan;
* the biweight midvariance instead of the MAD as the scatter (default; the
  MAD stays available): a smoother objective whose minimum scatters less
  between noise realisations;
* an uncertainty (spatial block jackknife), recorded with the scale;
* the template region selected on a lightly smoothed template (less bias of
  the scale), the row pattern removed from template and data alike, and
  measured per amplifier row (1/f stripes differ between amplifiers).

Everything here works on numpy arrays in the orientation of the ``_cal``
product (DMS, ``(ny, nx)``, row = y); nothing reads files, logs or talks to
CRDS.  Masks are boolean arrays, ``True`` = excluded from the fit.

Public API
----------
``row_pattern``         per-row robust offsets (1/f residuals), for the fit only
``amp_row_pattern``     the same per amplifier row, as an image
``remove_row_pattern``  ``data`` minus that pattern
``fit_scale``           bounded 1-D minimiser + block-jackknife uncertainty
``grid_scan_scale``     the baseline: scan 0..2 step 0.01 + degree-5 polynomial
``wisp_model``          ``scale * template`` (non-finite template pixels -> 0)
``subtract``            ``data - wisp_model``
``flag``                DQ with strong-wisp pixels flagged
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from young.algorithms.dq import DO_NOT_USE, OTHER_BAD_PIXEL
from young.algorithms.wisp_geometry import template_region

__all__ = [
    "WISP_DETECTORS",
    "WISP_DQ_FLAG",
    "WispFitParams",
    "row_pattern",
    "amp_row_pattern",
    "remove_row_pattern",
    "fit_scale",
    "grid_scan_scale",
    "wisp_model",
    "subtract",
    "flag",
]

#: Detectors the v3 templates exist for; every other detector passes through.
WISP_DETECTORS = frozenset({"NRCA3", "NRCA4", "NRCB3", "NRCB4"})

#: DQ value OR'ed into strong-wisp pixels by :func:`flag`: DO_NOT_USE, so the
#: default ``good_bits`` of resample/outlier_detection drop them from the
#: mosaic, plus OTHER_BAD_PIXEL to say why (the same pairing as
#: outlier_detection's DO_NOT_USE + OUTLIER); 2**30 + 1.  Pass ``bits=`` to
#: choose another (the baseline's default was DO_NOT_USE alone).
WISP_DQ_FLAG = DO_NOT_USE | OTHER_BAD_PIXEL


@dataclass(frozen=True)
class WispFitParams:
    """Parameters of :func:`fit_scale`.

    Attributes
    ----------
    bounds : (float, float)
        Allowed range of the scale factor (dimensionless), as the baseline.
    statistic : {'biweight', 'mad'}
        Robust scatter of ``data - s * template`` that is minimised.
        ``'biweight'`` (default): the biweight midvariance (tuning constant
        9 MAD, as astropy's ``biweight_midvariance``), robust to outliers
        beyond ~6 sigma and a smooth function of ``s``.  ``'mad'``: the median
        absolute deviation of the baseline.  Minimising a MAD is a
        least-median-type regression (cube-root convergence), so its scale
        scatters more between noise realisations (docs/algorithms.md,
        "Wisps"); it stays available for comparison with the baseline.
    correct_rows : bool
        Remove the per-row pattern (1/f residuals) before fitting; the pattern
        is measured outside the template region and never leaves the fit.
    max_pixels : int
        At most this many template-region pixels enter the objective (a fixed
        random subsample beyond it).  The statistical error of the scale goes
        as ``1/sqrt(N)``; with the default it stays below what the template
        shape itself is good for, and one evaluation costs a fraction of one
        over the whole region of a full frame (docs/algorithms.md, "Wisps").
    n_coarse : int
        Points of a coarse scan over ``bounds`` that pick the bracket of the
        bounded Brent search (guards against a secondary minimum).
    xatol : float
        Absolute tolerance of the Brent search on the scale; 5e-4 is well
        below the scale's statistical error (see ``max_pixels``).
    n_groups : int
        Groups of the spatial block jackknife that gives the uncertainty;
        0 disables it (uncertainty NaN).
    tile : int
        Side of the square tiles (pixels) assigned whole to jackknife groups,
        so spatially correlated misfit (sky structure, template mismatch)
        stays inside one group and shows up in the uncertainty.
    min_pixels : int
        Fewer usable region pixels than this is an :class:`ValueError`.
    seed : int
        Seed of the subsample and of the group assignment (reproducible).
    noutputs : int
        Amplifiers of the readout (``meta.exposure.noutputs``, 1 or 4): the
        row pattern is measured per amplifier row, since 1/f stripes differ
        between amplifiers.
    """

    bounds: tuple[float, float] = (0.0, 2.0)
    statistic: str = "biweight"
    correct_rows: bool = True
    max_pixels: int = 100_000
    n_coarse: int = 11
    xatol: float = 5e-4
    n_groups: int = 8
    tile: int = 128
    min_pixels: int = 100
    seed: int = 0
    noutputs: int = 1


# --------------------------------------------------------------------------
# helpers


def _check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"wisp: {name_a} shape {tuple(np.shape(a))} does not match "
            f"{name_b} shape {tuple(np.shape(b))}"
        )


def _check_2d(name: str, a: np.ndarray) -> None:
    if np.ndim(a) != 2:
        raise ValueError(f"wisp: {name} must be a 2-D image, got shape {tuple(np.shape(a))}")


def _mad(values: np.ndarray) -> float:
    """Median absolute deviation (unscaled) of a 1-D finite array."""
    med = np.median(values)
    return float(np.median(np.abs(values - med)))


def _biweight_midvariance(values: np.ndarray, c: float = 9.0) -> float:
    """Biweight midvariance of a 1-D finite array (data units squared).

    Same definition as ``astropy.stats.biweight_midvariance`` (location = the
    median, tuning constant ``c`` MADs, sample size = all values), written out
    because the objective is evaluated many times per fit and astropy's
    version sorts, with NaN handling and float64 conversions not needed here.
    """
    n = values.size
    half = n // 2
    med = np.partition(values, half)[half]
    dev = values - med
    mad = np.partition(np.abs(dev), half)[half]
    if not mad > 0:
        return float(np.mean(dev * dev, dtype=np.float64))
    u2 = (dev / (c * mad)) ** 2
    a = np.clip(1.0 - u2, 0.0, None)  # 0 beyond c MADs: the point drops out
    num = np.sum(dev * dev * a**4, dtype=np.float64)
    den = np.sum(a * (1.0 - 5.0 * u2), dtype=np.float64)
    return float(n * num / (den * den))


_STATISTICS = {"biweight": _biweight_midvariance, "mad": _mad}


# --------------------------------------------------------------------------
# row patterns (1/f residuals), removed for the fit only


def amp_row_pattern(data: np.ndarray, mask: np.ndarray, noutputs: int = 1, min_pixels: int = 20) -> np.ndarray:
    """Per-row, per-amplifier median offset of the unmasked pixels, as a full image.

    :func:`row_pattern` of each amplifier's column block; an amplifier row
    with fewer than ``min_pixels`` usable pixels takes the whole row's value
    plus the amplifier's typical offset from it (median over rows), so a
    row the wisp region fills in one amplifier still gets that row's stripe.

    Returns
    -------
    ndarray, shape (ny, nx)
        The pattern at every pixel (``noutputs=1``: :func:`row_pattern`
        broadcast along the rows).
    """
    _check_2d("data", data)
    _check_same_shape("mask", mask, "data", data)
    ny, nx = data.shape
    full = row_pattern(data, mask, min_pixels)
    if noutputs <= 1 or nx % noutputs:
        return np.broadcast_to(full[:, None], (ny, nx))
    w = nx // noutputs
    out = np.empty((ny, nx))
    usable = ~np.asarray(mask, bool) & np.isfinite(data)
    for k in range(noutputs):    # <= 4 amplifiers
        sl = slice(k * w, (k + 1) * w)
        own = row_pattern(data[:, sl], mask[:, sl], min_pixels)
        good = usable[:, sl].sum(axis=1) >= max(int(min_pixels), 1)
        offset = float(np.median(own[good] - full[good])) if good.any() else 0.0
        out[:, sl] = np.where(good, own, full + offset)[:, None]
    return out


def row_pattern(data: np.ndarray, mask: np.ndarray, min_pixels: int = 20) -> np.ndarray:
    """Per-row median offset of the unmasked pixels (1/f residual stripes).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image (any units).
    mask : ndarray of bool, shape (ny, nx)
        ``True`` = pixel not used (sources, DQ, wisp region).  Non-finite data
        are never used.
    min_pixels : int
        Rows with fewer usable pixels get the median of the other rows'
        offsets (the sky level), so they stay consistent with their
        neighbours instead of keeping their pedestal.

    Returns
    -------
    pattern : ndarray, shape (ny,)
        Median of each row over its usable pixels, same units as ``data``
        (it includes the sky pedestal; only differences between rows matter
        to the wisp fit).
    """
    _check_2d("data", data)
    _check_same_shape("mask", mask, "data", data)
    work = np.where(np.asarray(mask, bool) | ~np.isfinite(data), np.nan, data)
    # Hand-written row median: NaNs sort last, so the median of row i is the
    # middle of its first n_i sorted values.  np.nanmedian(axis=1) gives the
    # same numbers, more slowly.
    srt = np.sort(work, axis=1)
    n = np.sum(np.isfinite(work), axis=1)
    rows = np.arange(work.shape[0])
    lo = np.clip((n - 1) // 2, 0, work.shape[1] - 1)
    hi = np.clip(n // 2, 0, work.shape[1] - 1)
    pattern = 0.5 * (srt[rows, lo].astype(float) + srt[rows, hi].astype(float))
    good = n >= max(int(min_pixels), 1)
    fill = float(np.median(pattern[good])) if good.any() else 0.0
    pattern[~good] = fill
    return pattern


def remove_row_pattern(data: np.ndarray, mask: np.ndarray, min_pixels: int = 20) -> np.ndarray:
    """Return ``data`` minus its per-row median pattern (see :func:`row_pattern`).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
    mask : ndarray of bool, shape (ny, nx)
        ``True`` = not used to measure the pattern.
    min_pixels : int
        See :func:`row_pattern`.

    Returns
    -------
    corrected : ndarray, shape (ny, nx), float
        A new array; ``data`` is not modified.  Meant for fitting only: the
        wisp product itself never has this pattern removed.
    """
    return np.asarray(data, dtype=float) - row_pattern(data, mask, min_pixels)[:, None]


# --------------------------------------------------------------------------
# scale fit


def _fit_inputs(data, template, mask, region, correct_rows, smooth=3.0, noutputs=1):
    _check_2d("data", data)
    _check_same_shape("template", template, "data", data)
    data = np.asarray(data)
    template = np.asarray(template)
    bad = ~np.isfinite(data) | ~np.isfinite(template)
    if mask is not None:
        _check_same_shape("mask", mask, "data", data)
        bad |= np.asarray(mask, dtype=bool)
    if region is None:
        region = template_region(template, 2.0, smooth)
    else:
        _check_same_shape("region", region, "data", data)
        region = np.asarray(region, dtype=bool)
    pattern = None
    if correct_rows:
        # Measured outside the template region, as the baseline does, so the
        # wisp itself does not leak into the row offsets.
        pattern = amp_row_pattern(data, bad | region, noutputs)
    return bad, region, pattern


def _brent(objective, bracket, xatol):
    res = minimize_scalar(objective, bounds=bracket, method="bounded", options={"xatol": xatol})
    return float(res.x), float(res.fun)


def fit_scale(
    data: np.ndarray,
    template: np.ndarray,
    mask: np.ndarray | None = None,
    region: np.ndarray | None = None,
    params: WispFitParams | None = None,
    **overrides: Any,
) -> tuple[float, float, dict]:
    """Fit the wisp scale factor of one exposure.

    Minimises a robust scatter of ``data - s * template`` over the unmasked
    template-region pixels (row pattern removed) with a bounded Brent search
    (``scipy.optimize.minimize_scalar(method='bounded')``) inside the best
    bracket of a coarse scan over ``bounds``.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Science image (e.g. MJy/sr), sky included: the scatter ignores any
        constant.
    template : ndarray, shape (ny, nx)
        Wisp template in the same units (already cut to the subarray).
    mask : ndarray of bool, shape (ny, nx), optional
        ``True`` = excluded (sources, DQ-flagged pixels).  Non-finite data or
        template pixels are always excluded.
    region : ndarray of bool, shape (ny, nx), optional
        Template region; default :func:`template_region` ``(template, 2)``.
        Pass it when fitting many exposures with one template.  For a
        subarray pass the cut of the full-frame region
        (``cut_template(template_region(full), ...)``): a region thresholded
        on a subarray centred on the wisp keeps only its top and leaves the
        rest to bias the row pattern.
    params : WispFitParams, optional
        Fit parameters; keyword ``overrides`` replace single fields, e.g.
        ``fit_scale(d, t, m, bounds=(0, 3), statistic='mad')``.

    Returns
    -------
    scale : float
        Best-fit scale factor (dimensionless).
    uncertainty : float
        1-sigma uncertainty of ``scale`` from a grouped (delete-a-group)
        jackknife: the pixels are split into ``n_groups`` groups of whole
        ``tile`` x ``tile`` tiles, the scale is refitted with each group left
        out, and ``var = (K-1)/K * sum((s_k - mean(s_k))**2)``.  Preferred to
        the curvature of the objective (also returned, see below) because
        whole tiles carry spatially correlated misfit -- sky structure, faint
        unmasked sources, template mismatch -- into the error, which a
        curvature (white pixel noise) error cannot see; deleting groups of
        ~N/K pixels rather than single pixels also keeps the jackknife
        consistent for the median-type ``'mad'`` statistic (Shao & Wu 1989).
        On pure white noise the two agree (``tests/test_wisp.py``).  NaN when
        ``n_groups < 2``.
    diagnostics : dict
        ``method`` (``'brent-biweight'`` / ``'brent-mad'``), ``n_region``
        (usable region pixels), ``n_used`` (after subsampling),
        ``scatter_best`` / ``scatter_zero`` (robust sigma of the residual at
        the fit and at s = 0, data units), ``at_bound`` (fit within 10 xatol
        of a bound: the true scale may lie outside), ``uncertainty_curvature``
        (white-noise error from the curvature of the objective),
        ``jackknife`` (leave-one-group-out scales), ``bracket``,
        ``coarse_scale`` / ``coarse_objective``, ``nfev`` and
        ``row_pattern_rms`` (data units; 0 when rows are not corrected).

    Raises
    ------
    ValueError
        Bounds not increasing, or an unknown statistic.
    ValueError
        Shapes differ, or fewer than ``min_pixels`` region pixels are usable.
    """
    p = params or WispFitParams()
    if overrides:
        p = dataclasses.replace(p, **overrides)
    lo_b, hi_b = (float(b) for b in p.bounds)
    if not hi_b > lo_b:
        raise ValueError(f"wisp: scale bounds must be increasing, got {p.bounds}")
    try:
        stat = _STATISTICS[p.statistic]
    except KeyError:
        raise ValueError(
            f"wisp: unknown fit statistic {p.statistic!r} (use one of {sorted(_STATISTICS)})"
        ) from None

    bad, region, pattern = _fit_inputs(data, template, mask, region, p.correct_rows, noutputs=p.noutputs)
    iy, ix = np.nonzero(region & ~bad)
    n_region = iy.size
    if n_region < p.min_pixels:
        raise ValueError(
            f"wisp: only {n_region} usable template-region pixels "
            f"(need >= {p.min_pixels}); cannot fit the scale"
        )
    rng = np.random.default_rng(p.seed)
    if n_region > p.max_pixels:
        keep = np.sort(rng.choice(n_region, size=p.max_pixels, replace=False))
        iy, ix = iy[keep], ix[keep]
    # float32 values: the objective is evaluated many times and partition /
    # arithmetic are cheaper in float32; sums accumulate in float64.
    d0 = np.asarray(data)[iy, ix].astype(np.float32)
    t0 = np.asarray(template)[iy, ix].astype(np.float32)
    d, t = d0, t0
    if pattern is not None:
        # The row medians outside the region still contain the faint wisp
        # wings, s * P(template).  Removing the same row pattern from the
        # template as from the data keeps data and model filtered alike
        # (exact for a linear filter, close for a median; why the pattern is
        # not re-measured on data - s * template: docs/algorithms.md, "Wisps").
        t_pattern = amp_row_pattern(template, bad | region, p.noutputs)
        d = d0 - pattern[iy, ix].astype(np.float32)
        t = t0 - t_pattern[iy, ix].astype(np.float32)
    nfev = 0

    def objective(dd, tt):
        def f(s):
            nonlocal nfev
            nfev += 1
            return stat(dd - np.float32(s) * tt)

        return f

    f = objective(d, t)
    grid = np.linspace(lo_b, hi_b, max(int(p.n_coarse), 3))
    coarse = np.array([f(s) for s in grid])
    k = int(np.argmin(coarse))
    bracket = (float(grid[max(k - 1, 0)]), float(grid[min(k + 1, grid.size - 1)]))
    scale, fbest = _brent(f, bracket, p.xatol)

    # scatter as a robust sigma (data units), whatever the statistic
    def as_sigma(v):
        return float(np.sqrt(v)) if p.statistic == "biweight" else 1.482602218505602 * v

    # White-noise error from the curvature: for an objective that behaves as
    # a variance V(s) = V0 + (s - s0)**2 * var(t) (least squares), the error
    # is sqrt(2 V0 / (N V'')).  h = 0.05: the objective is ~quadratic well
    # beyond that and the second difference stands clear of float32 noise.
    h = 0.05
    v0 = as_sigma(fbest) ** 2
    v2 = (as_sigma(f(scale + h)) ** 2 + as_sigma(f(scale - h)) ** 2 - 2 * v0) / h**2
    sigma_curv = float(np.sqrt(2 * v0 / (d.size * v2))) if v2 > 0 else float("nan")

    jack = np.array([])
    uncertainty = float("nan")
    if p.n_groups and p.n_groups >= 2:
        groups = _tile_groups(iy, ix, p.n_groups, p.tile, rng)
        # Leave-one-out fits search +-10 curvature sigmas around the full fit
        # (fewer Brent steps than the whole bracket; the MAD curvature means
        # nothing, so 'mad' keeps the coarse bracket); one ending at that
        # edge is refitted over the full bounds.
        width = bracket[1] - bracket[0]
        if p.statistic == "biweight" and np.isfinite(sigma_curv):
            width = min(width, 10 * sigma_curv)
        width = max(width, 20 * p.xatol)
        jb = (max(lo_b, scale - width), min(hi_b, scale + width))
        est = []
        for g in range(p.n_groups):
            sel = groups != g
            if sel.all() or sel.sum() < p.min_pixels:
                continue
            fg = objective(d[sel], t[sel])
            sg, _ = _brent(fg, jb, p.xatol)
            if min(sg - jb[0], jb[1] - sg) < 2 * p.xatol and (jb[0] > lo_b or jb[1] < hi_b):
                sg, _ = _brent(fg, (lo_b, hi_b), p.xatol)
            est.append(sg)
        jack = np.asarray(est)
        if jack.size >= 2:
            kk = jack.size
            uncertainty = float(np.sqrt((kk - 1) / kk * np.sum((jack - jack.mean()) ** 2)))

    diagnostics = {
        "method": f"brent-{p.statistic}",
        "n_region": int(n_region),
        "n_used": int(d.size),
        "scatter_best": as_sigma(fbest),
        "scatter_zero": as_sigma(f(0.0)),
        "at_bound": bool(scale - lo_b < 10 * p.xatol or hi_b - scale < 10 * p.xatol),
        "uncertainty_curvature": sigma_curv,
        "jackknife": jack,
        "bracket": bracket,
        "coarse_scale": grid,
        "coarse_objective": coarse,
        "nfev": int(nfev),
        "row_pattern_rms": 0.0 if pattern is None else float(np.std(pattern)),
    }
    return scale, uncertainty, diagnostics


def _tile_groups(iy, ix, n_groups, tile, rng):
    """Assign pixels to ``n_groups`` groups by whole ``tile`` x ``tile`` tiles.

    Tiles are shuffled and cut into groups of about equal pixel count.
    """
    tile = max(int(tile), 1)
    tid = (iy // tile) * (int(ix.max()) // tile + 1) + ix // tile
    uniq, inverse, counts = np.unique(tid, return_inverse=True, return_counts=True)
    if uniq.size < n_groups:  # too few tiles (small subarray): random pixels
        return rng.integers(0, n_groups, size=iy.size)
    order = rng.permutation(uniq.size)
    cum = np.cumsum(counts[order])
    group_of_tile = np.empty(uniq.size, dtype=np.int64)
    group_of_tile[order] = np.minimum((cum - 1) * n_groups // cum[-1], n_groups - 1)
    return group_of_tile[inverse]


def grid_scan_scale(
    data: np.ndarray,
    template: np.ndarray,
    mask: np.ndarray | None = None,
    region: np.ndarray | None = None,
    bounds: tuple[float, float] = (0.0, 2.0),
    step: float = 0.01,
    poly_degree: int = 5,
    correct_rows: bool = True,
) -> tuple[float, float, dict]:
    """The baseline scale fit (Sunnquist v3 ``subtract_wisp.py``), for comparison.

    Scans ``s = bounds[0], bounds[0] + step, ... < bounds[1]``, computes the
    MAD of ``data - s * template`` over all unmasked region pixels (the
    row pattern of the data outside the region removed, as the baseline),
    fits a polynomial of
    ``poly_degree`` to that curve and returns the scanned ``s`` where the
    polynomial is lowest (``poly_degree=0``: the raw minimum).

    Parameters
    ----------
    data, template, mask
        As :func:`fit_scale`.
    region : ndarray of bool, shape (ny, nx), optional
        Template region; default the baseline's, ``template_region(template,
        2, smooth=0)``.
    bounds : (float, float)
        Scan range (upper bound excluded, as ``np.arange``).
    step : float
        Scan step.
    poly_degree : int
        Degree of the polynomial smoothing the MAD curve (baseline 5).
    correct_rows : bool
        Remove the row pattern before fitting.

    Returns
    -------
    scale : float
    uncertainty : float
        Always NaN: the baseline gives none (same return shape as
        :func:`fit_scale` so callers can swap them).
    diagnostics : dict
        ``factors``, ``residuals`` (the MAD curve), ``n_region``, ``method`` =
        ``'grid-scan'``.
    """
    bad, region, pattern = _fit_inputs(data, template, mask, region, correct_rows, smooth=0.0)
    iy, ix = np.nonzero(region & ~bad)
    if iy.size < 1:
        raise ValueError("wisp: no usable template-region pixels; cannot fit the scale")
    d = np.asarray(data)[iy, ix].astype(float)
    if pattern is not None:
        d -= pattern[iy, ix]
    t = np.asarray(template)[iy, ix].astype(float)
    factors = np.arange(bounds[0], bounds[1], step)
    residuals = np.array([_mad(d - s * t) for s in factors])
    if poly_degree:
        fn = np.poly1d(np.polyfit(factors, residuals, poly_degree))
        scale = float(factors[np.argmin(fn(factors))])
    else:
        scale = float(factors[np.argmin(residuals)])
    return scale, float("nan"), {
        "method": "grid-scan",
        "factors": factors,
        "residuals": residuals,
        "n_region": int(iy.size),
    }


def template_residual(data: np.ndarray, template: np.ndarray, bad: np.ndarray, region: np.ndarray,
                      noutputs: int = 1) -> float:
    """Amplitude of the template's shape in ``data`` (data units at the template's peak).

    The least-squares projection of the data onto the template over the
    usable pixels of the template region, after each amplifier row of both
    loses its mean over those pixels (so stripes and the sky level do not
    project).  Before a subtraction it is about the wisp's peak; after, what
    is left of it (``YNGWISP0``/``YNGWISP1``).

    Parameters
    ----------
    data, template : ndarray, shape (ny, nx)
    bad : ndarray of bool
        Pixels not to use (sources, flags).
    region : ndarray of bool
        Template region.
    noutputs : int
        Amplifiers (row means per amplifier row).

    Returns
    -------
    float
        ``|a| * max(template)``; NaN without usable pixels.
    """
    use = region & ~bad & np.isfinite(data) & np.isfinite(template)
    if use.sum() < 10:
        return float("nan")
    d = np.where(use, data, 0.0).astype(np.float64)
    t = np.where(use, template, 0.0).astype(np.float64)
    nx = data.shape[1]
    w = nx // noutputs
    for k in range(noutputs):
        sl = slice(k * w, (k + 1) * w)
        n = use[:, sl].sum(axis=1)
        nz = np.maximum(n, 1)
        d[:, sl] -= (d[:, sl].sum(axis=1) / nz)[:, None]
        t[:, sl] -= (t[:, sl].sum(axis=1) / nz)[:, None]
    d[~use] = 0.0
    t[~use] = 0.0
    tt = float(np.sum(t * t))
    if tt <= 0:
        return float("nan")
    return abs(float(np.sum(t * d)) / tt) * float(np.nanmax(template))


# --------------------------------------------------------------------------
# applying the fit


def wisp_model(template: np.ndarray, scale: float, min_wisp: float | None = None) -> np.ndarray:
    """The wisp model ``scale * template``.

    Parameters
    ----------
    template : ndarray, shape (ny, nx)
        Wisp template (data units).
    scale : float
        Fitted scale factor.
    min_wisp : float, optional
        Model values below this (data units) are set to 0 (baseline option).

    Returns
    -------
    model : ndarray, shape (ny, nx), float32
        Non-finite template pixels give 0 (nothing subtracted there).
    """
    _check_2d("template", template)
    model = np.asarray(template, dtype=np.float32) * np.float32(scale)
    model[~np.isfinite(model)] = 0.0
    if min_wisp is not None:
        model[model < min_wisp] = 0.0
    return model


def subtract(
    data: np.ndarray, template: np.ndarray, scale: float, min_wisp: float | None = None
) -> np.ndarray:
    """Subtract the scaled wisp template.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Science image.
    template : ndarray, shape (ny, nx)
        Wisp template in the units of ``data``.
    scale : float
        Scale factor (from :func:`fit_scale`).
    min_wisp : float, optional
        See :func:`wisp_model`.

    Returns
    -------
    corrected : ndarray, shape (ny, nx)
        ``data - wisp_model(template, scale)``, a new array of ``data``'s
        floating dtype (NaN data stay NaN).
    """
    _check_2d("data", data)
    _check_same_shape("template", template, "data", data)
    data = np.asarray(data)
    dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float32
    return (data - wisp_model(template, scale, min_wisp)).astype(dtype, copy=False)


def flag(
    dq: np.ndarray,
    template: np.ndarray,
    scale: float,
    threshold: float,
    bits: int = WISP_DQ_FLAG,
) -> np.ndarray:
    """Flag strong-wisp pixels in a DQ array instead of subtracting.

    Parameters
    ----------
    dq : ndarray of uint32, shape (ny, nx)
        Pixel DQ array of the exposure.
    template : ndarray, shape (ny, nx)
        Wisp template (data units).
    scale : float
        Scale factor.
    threshold : float
        Pixels whose model ``scale * template`` exceeds this (data units) are
        flagged.
    bits : int
        DQ bits OR'ed in; default :data:`WISP_DQ_FLAG` (DO_NOT_USE +
        OTHER_BAD_PIXEL).

    Returns
    -------
    new_dq : ndarray, shape (ny, nx)
        A new array with ``dq``'s dtype.
    """
    _check_2d("dq", dq)
    _check_same_shape("template", template, "dq", dq)
    dq = np.asarray(dq)
    strong = wisp_model(template, scale) > threshold
    out = dq.copy()
    out[strong] |= np.asarray(bits).astype(dq.dtype)
    return out
