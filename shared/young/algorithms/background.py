"""Sky background of ``_cal`` images (pure functions on arrays).

docs/algorithms.md, "Background": sources are masked with the tiered mask of
:mod:`young.algorithms.masks` (the one implementation, imported here); then either one
scalar sky value is subtracted (``mode='pedestal'``, the baseline) or a smooth
large-box 2-D model (``mode='2d'``, for gradients the pedestal leaves), and
VAR_RNOISE is rescaled so that drizzle's inverse-variance weights reflect the
measured sky variance, with zero variances becoming +inf (zero weight).

Arrays are ``(ny, nx)`` in the orientation of the product; masks are boolean
with ``True`` = not sky (source, bad pixel).  Nothing here reads files, sets
up logging or talks to CRDS, and no input array is modified.

Public API
----------
``BackgroundParams``     parameters of the whole correction
``pedestal``             one robust sky value: Gaussian fit to the histogram peak
``background_2d``        smooth large-box model (photutils ``Background2D``)
``clean_mesh``           robust rejection of outlying boxes of that model
``rescale_variance``     VAR_RNOISE scaled to the measured sky variance
``subtract_background``  the entry point the ``young-bkg`` tool calls
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.stats import SigmaClip, biweight_midvariance

from young.algorithms import masks
from young.algorithms.dq import DEFAULT_BAD_BITS
from young.algorithms.dq import bad as dq_bad

__all__ = [
    "MODES",
    "BackgroundParams",
    "pedestal",
    "background_2d",
    "clean_mesh",
    "rescale_variance",
    "subtract_background",
]

#: The ``--mode`` values of ``young-bkg``.
MODES = ("pedestal", "2d")


@dataclass(frozen=True)
class BackgroundParams:
    """Parameters of :func:`subtract_background`.

    Attributes
    ----------
    mask_preset : {'young', 'ceers'}
        Tiered-mask preset (:data:`young.algorithms.masks.PRESETS`) used when no mask
        is given.
    mask_overrides : dict
        Fields of :class:`young.algorithms.masks.MaskParams` to override in the preset.
    dq_bits : int, str or None
        DQ bits that exclude a pixel from every statistic; None = the
        default of :func:`young.algorithms.dq.bad`.
    window : (float, float)
        Pedestal: the Gaussian is fitted to the histogram between
        ``mode - window[0] * sigma`` and ``mode + window[1] * sigma``.
        Asymmetric because what the mask misses (faint source wings) is a
        positive tail; a fit of the peak *shape* inside the window is not
        biased by the truncation, unlike a clipped mean or median.
    max_samples : int
        Pedestal: at most about this many sky pixels (a regular subsample)
        are histogrammed; the statistical error of the mode goes as ~1.5
        sigma / sqrt(N), far below the 0.1 sigma requirement for the default
        (docs/algorithms.md, "Background").
    box : int
        2-D mode: box size (pixels) of the ``Background2D`` mesh.  Large (256
        = 8 x 8 boxes on a full frame) so only structure on scales of
        hundreds of pixels is modelled; galaxies and intracluster light are
        excluded by the mask and cannot be followed by so coarse a mesh.
        Clipped to half the image size for small subarrays.
    filter_size : int
        2-D mode: median filter (in boxes) applied to the mesh (odd; 1 =
        none, the default -- see :func:`background_2d`).
    exclude_percentile : float
        2-D mode: a box with more than this percentage of its pixels masked
        is replaced by interpolation from its neighbours.  90 as the
        baseline: even 10 % of a 256^2 box is 6500 pixels, plenty for a
        biweight location.
    sigma : float or None
        2-D mode: sigma clipping inside each box before the biweight
        (``astropy`` ``SigmaClip``); None (default) = none.  The baseline
        clipped at 3 sigma, but the biweight location already gives zero
        weight beyond 6 MADs (~4 sigma), so the clipping only costs time
        (docs/algorithms.md, "Background").
    degree, reject : int, float
        2-D mode: boxes deviating more than ``reject`` robust sigmas from a
        robust polynomial surface of total degree ``degree`` are replaced by
        it (:func:`clean_mesh`).
    variance_block : int
        Side of the blocks whose sums measure the sky variance (7 as the
        baseline; sums over blocks include the pixel-to-pixel correlations --
        IPC, residual 1/f -- that per-pixel statistics would miss).
    min_block_pairs : int
        Fewer pairs of clean adjacent blocks than this and the variance is
        measured on pixel pairs instead (``info['variance_block']`` says so).
    """

    mask_preset: str = "young"
    mask_overrides: dict = field(default_factory=dict)
    dq_bits: Any = None
    window: tuple[float, float] = (2.5, 1.5)
    max_samples: int = 2**20
    box: int = 256
    filter_size: int = 1
    exclude_percentile: float = 90.0
    sigma: float | None = None
    degree: int = 3
    reject: float = 3.0
    variance_block: int = 7
    min_block_pairs: int = 200


# --------------------------------------------------------------------------
# helpers


def _check_2d(name: str, a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"background: {name} must be a 2-D image, got shape {a.shape}")
    return a


def _check_same_shape(name: str, a: Any, ref: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != ref.shape:
        raise ValueError(
            f"background: {name} shape {a.shape} does not match the data shape {ref.shape}"
        )
    return a


def _subsample(data: np.ndarray, good: np.ndarray, max_samples: int) -> np.ndarray:
    """About ``max_samples`` of the ``good`` pixels: every k-th of the flat image.

    A regular stride (k coprime with the row length, so it does not fall on
    a few columns) instead of a random choice: as good for sky noise and
    cheaper than ``rng.choice`` without replacement.
    """
    ngood = int(np.count_nonzero(good))
    k = max(1, ngood // max(int(max_samples), 1))
    if k > 1:
        while np.gcd(k, data.shape[1]) != 1:
            k += 1
    return data.ravel()[::k][good.ravel()[::k]]


def _gauss_peak(values: np.ndarray, center: float, sigma: float, window, nbins_per_sigma=8):
    """One Gaussian fit to the histogram peak inside an asymmetric window.

    Hand-written (instead of ``curve_fit`` on a Gaussian) because a Gaussian
    is a parabola in log(counts): a weighted linear fit (weights = counts,
    the inverse Poisson variance of log n) is exact and has no starting
    values to go wrong.  Returns (mu, sigma) or None.
    """
    lo, hi = center - window[0] * sigma, center + window[1] * sigma
    nbins = max(int(round((window[0] + window[1]) * nbins_per_sigma)), 8)
    counts, edges = np.histogram(values, bins=nbins, range=(lo, hi))
    x = 0.5 * (edges[1:] + edges[:-1]) - center
    use = counts > 0
    if use.sum() < 5:
        return None
    w = np.sqrt(counts[use].astype(float))  # sqrt: lstsq weights multiply residuals
    a = np.vstack([np.ones(use.sum()), x[use], x[use] ** 2]).T * w[:, None]
    coef, *_ = np.linalg.lstsq(a, np.log(counts[use]) * w, rcond=None)
    c0, c1, c2 = coef
    if not c2 < 0:
        return None
    mu = center - c1 / (2 * c2)
    sig = np.sqrt(-1.0 / (2 * c2))
    if not (np.isfinite(mu) and np.isfinite(sig) and lo < mu < hi):
        return None
    return float(mu), float(sig)


# --------------------------------------------------------------------------
# pedestal


def pedestal(
    data: np.ndarray,
    mask: np.ndarray,
    window: tuple[float, float] = (2.5, 1.5),
    max_samples: int = 2**20,
) -> tuple[float, float]:
    """One robust sky value: the mode of the sky-pixel distribution.

    Starting from the median and MAD-sigma of the unmasked pixels, a
    Gaussian is fitted to the histogram within ``[mode - window[0] sigma,
    mode + window[1] sigma]`` and the window re-centred on the fit until the
    mode moves by less than 10^-4 sigma (at most 10 times).  This is the
    baseline's "Gaussian-fit mode after asymmetric clipping": the asymmetric
    window drops the positive tail of faint unmasked sources, and fitting
    the peak's shape (not a clipped mean) leaves the mode unbiased by the
    truncation.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image (e.g. MJy/sr).
    mask : ndarray of bool, shape (ny, nx)
        ``True`` = not sky.  Non-finite data are never used.
    window : (float, float)
        Fit window below / above the mode in units of the fitted sigma.
    max_samples : int
        Beyond this many sky pixels a regular subsample of about this size
        is used (see :class:`BackgroundParams`).

    Returns
    -------
    level : float
        Sky level, data units.
    sigma : float
        Standard deviation of the sky-pixel noise from the same fit, data
        units (per pixel).

    Raises
    ------
    ValueError
        Fewer than 100 sky pixels.
    """
    data = _check_2d("data", data)
    mask = _check_same_shape("mask", mask, data).astype(bool)
    values = _subsample(data, ~mask & np.isfinite(data), max_samples)
    if values.size < 100:
        raise ValueError(
            f"background: only {values.size} unmasked sky pixels; cannot measure the sky"
        )
    values = values.astype(np.float64)
    center = float(np.median(values))
    sigma = float(1.482602218505602 * np.median(np.abs(values - center)))
    if not sigma > 0:  # quantised or constant sky: the median is the mode
        return center, 0.0
    for _ in range(10):
        fit = _gauss_peak(values, center, sigma, window)
        if fit is None:
            break
        mu, sig = fit
        done = abs(mu - center) < 1e-4 * sigma
        center, sigma = mu, sig
        if done:
            break
    return center, sigma


# --------------------------------------------------------------------------
# 2-D model


def _poly_terms(y: np.ndarray, x: np.ndarray, deg_y: int, deg_x: int) -> np.ndarray:
    """Monomials y**i x**j with i <= deg_y, j <= deg_x and i + j <= max(deg_y, deg_x)."""
    top = max(deg_y, deg_x)
    return np.stack(
        [y**i * x**j for i in range(deg_y + 1) for j in range(deg_x + 1) if i + j <= top], axis=-1
    )


def clean_mesh(
    mesh: np.ndarray, yc: np.ndarray, xc: np.ndarray, degree: int = 3, reject: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Replace outlying boxes of a background mesh by a robust smooth fit.

    A 2-D polynomial of total degree ``degree`` (per axis at most the
    number of boxes along it minus one) is fitted to the mesh by
    iteratively reweighted least squares with Tukey biweight weights
    (tuning 4.685 MAD-sigma); boxes whose residual exceeds ``reject`` times
    the robust scatter of the residuals are replaced by the polynomial.
    Hand-written (photutils offers only a median filter over the mesh for
    this): a large galaxy or intracluster light whose faint wings escape the
    source mask raises a few neighbouring boxes, which an interpolating model
    would follow, while a gradient of the sky moves all boxes together and
    is kept (docs/algorithms.md, "Background").

    Parameters
    ----------
    mesh : ndarray, shape (my, mx)
        Box background values (data units).
    yc, xc : ndarray, shapes (my,), (mx,)
        Box centres (pixels).
    degree : int
        Total degree of the polynomial, clipped per axis to what the mesh
        supports: a 2 x 8 mesh (a 2048 x 256 strip) gets degree 3 along x
        and 1 along y, not a plane -- with a plane, a gradient curved along
        the strip inflates the residual scatter so much that the boxes of an
        extended galaxy are not rejected (docs/algorithms.md, "Background").
        Rejection is skipped when the mesh has fewer than twice as many boxes
        as the polynomial has terms.
    reject : float
        Rejection threshold in robust sigmas of the mesh residuals.

    Returns
    -------
    cleaned : ndarray, shape (my, mx)
        The mesh with outlying boxes replaced.
    rejected : ndarray of bool, shape (my, mx)
        Which boxes were replaced.
    """
    my, mx = mesh.shape
    deg_y, deg_x = int(min(degree, my - 1)), int(min(degree, mx - 1))
    rejected = np.zeros(mesh.shape, dtype=bool)
    if max(deg_y, deg_x) < 1:
        return mesh.copy(), rejected
    # coordinates scaled to about [-1, 1] keep the design well conditioned
    sy, sx = max(np.ptp(yc), 1.0) / 2, max(np.ptp(xc), 1.0) / 2
    yy, xx = np.meshgrid((yc - yc.mean()) / sy, (xc - xc.mean()) / sx, indexing="ij")
    design = _poly_terms(yy.ravel(), xx.ravel(), deg_y, deg_x)
    if mesh.size < 2 * design.shape[1]:
        return mesh.copy(), rejected
    z = mesh.ravel()
    w = np.ones_like(z)
    fit = np.zeros_like(z)
    scale = 0.0
    for _ in range(30):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], z * sw, rcond=None)
        new_fit = design @ coef
        res = z - new_fit
        scale = 1.482602218505602 * np.median(np.abs(res - np.median(res)))
        if not scale > 0:
            fit = new_fit
            break
        u = res / (4.685 * scale)
        w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        converged = np.max(np.abs(new_fit - fit)) < 1e-3 * scale
        fit = new_fit
        if converged:
            break
    if scale > 0:
        rejected = (np.abs(z - fit) > reject * scale).reshape(mesh.shape)
    cleaned = np.where(rejected, fit.reshape(mesh.shape), mesh)
    return cleaned, rejected


def background_2d(
    data: np.ndarray,
    mask: np.ndarray,
    box: int = 256,
    filter_size: int = 1,
    exclude_percentile: float = 90.0,
    sigma: float | None = None,
    degree: int = 3,
    reject: float = 3.0,
    return_info: bool = False,
):
    """Smooth large-scale background model.

    1. The mesh comes from ``photutils.background.Background2D``: a biweight
       location per ``box`` x ``box`` box (optionally after ``sigma``
       clipping), boxes masked beyond ``exclude_percentile`` filled by
       photutils' IDW interpolation, an optional ``filter_size`` median
       filter.
    2. Boxes that stand out from a robust polynomial surface are replaced by
       it (:func:`clean_mesh`): extended light that escaped the mask must not
       become "background".
    3. The mesh is expanded to full resolution with a bicubic interpolating
       spline through the box centres that *extrapolates* to the image edges
       (scipy ``RectBivariateSpline``).  Hand-written instead of photutils'
       default zoom interpolation, which reflects at the edges: with 256-px
       boxes it flattens a gradient over the outer 128 px
       (docs/algorithms.md, "Background").

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image (data units).
    mask : ndarray of bool, shape (ny, nx)
        ``True`` = not sky (sources, bad pixels); non-finite data are masked
        too.  Masked pixels never enter a box statistic.
    box : int
        Box size in pixels; clipped to half the image size (rounded up) so
        that a subarray still gets two boxes per axis and a gradient.
    filter_size : int
        photutils median filter over the mesh, in boxes (odd; 1 = none, the
        default: the filter is NaN-padded at the mesh edges and bends
        gradients in the corner boxes; :func:`clean_mesh` does its job).
    exclude_percentile : float
        Boxes with more masked pixels than this percentage are interpolated.
    sigma : float or None
        Sigma-clipping threshold inside each box; None = no clipping (see
        :class:`BackgroundParams`).
    degree, reject : int, float
        See :func:`clean_mesh`; ``reject=inf`` disables the cleaning.
    return_info : bool
        Also return a dict with the mesh shape, box size and the number of
        rejected boxes.

    Returns
    -------
    model : ndarray, shape (ny, nx), float32
        Background model in data units (finite everywhere).
    info : dict
        Only with ``return_info``: ``box`` (used), ``mesh_shape``,
        ``rejected_boxes``.

    Raises
    ------
    ValueError
        Every box is masked beyond ``exclude_percentile``.
    """
    from photutils.background import Background2D, BiweightLocationBackground
    from scipy.interpolate import RectBivariateSpline, make_interp_spline

    data = _check_2d("data", data)
    mask = _check_same_shape("mask", mask, data).astype(bool) | ~np.isfinite(data)
    ny, nx = data.shape
    by = max(1, min(int(box), -(-ny // 2)))
    bx = max(1, min(int(box), -(-nx // 2)))
    nmy, nmx = -(-ny // by), -(-nx // bx)
    fy = max(1, min(int(filter_size), nmy - (1 - nmy % 2)))
    fx = max(1, min(int(filter_size), nmx - (1 - nmx % 2)))
    fy, fx = fy - (1 - fy % 2), fx - (1 - fx % 2)  # odd
    work = np.where(mask, 0.0, data).astype(np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-masked boxes are expected
            bkg = Background2D(
                work,
                (by, bx),
                mask=mask,
                filter_size=(fy, fx),
                exclude_percentile=exclude_percentile,
                sigma_clip=None if sigma is None else SigmaClip(sigma=sigma, maxiters=5),
                bkg_estimator=BiweightLocationBackground(),
            )
            mesh = np.asarray(bkg.background_mesh, dtype=np.float64)
    except ValueError as exc:  # photutils: all boxes excluded
        reason = " ".join(str(exc).split())
        raise ValueError(f"background: cannot build a 2-D model ({reason})") from None
    if mesh.shape != (nmy, nmx) or not np.all(np.isfinite(mesh)):
        raise ValueError("background: cannot build a 2-D model (no usable sky box)")

    # box centres: centroid of the real pixels (the last box may be partial)
    def centres(n, b, m):
        start = np.arange(m) * b
        return (start + np.minimum(start + b, n) - 1) / 2.0

    yc, xc = centres(ny, by, nmy), centres(nx, bx, nmx)
    mesh, rejected = clean_mesh(mesh, yc, xc, degree, reject)
    info = {"box": (by, bx), "mesh_shape": mesh.shape, "rejected_boxes": int(rejected.sum())}
    if nmy == 1 and nmx == 1:
        model = np.full((ny, nx), mesh[0, 0], dtype=np.float32)
    elif nmy == 1 or nmx == 1:  # one row/column of boxes: 1-D spline
        c, v, n = (xc, mesh[0], nx) if nmy == 1 else (yc, mesh[:, 0], ny)
        line = make_interp_spline(c, v, k=min(3, c.size - 1))(np.arange(n))
        out = np.broadcast_to(line[None, :] if nmy == 1 else line[:, None], (ny, nx))
        model = np.array(out, dtype=np.float32)
    else:
        spline = RectBivariateSpline(
            yc, xc, mesh,
            bbox=[min(0.0, yc[0]), max(ny - 1.0, yc[-1]), min(0.0, xc[0]), max(nx - 1.0, xc[-1])],
            kx=min(3, nmy - 1), ky=min(3, nmx - 1), s=0,
        )
        model = spline(np.arange(ny, dtype=float), np.arange(nx, dtype=float)).astype(np.float32)
    return (model, info) if return_info else model


# --------------------------------------------------------------------------
# variance


def rescale_variance(
    var_rnoise: np.ndarray,
    data: np.ndarray,
    mask: np.ndarray,
    block: int = 7,
    min_pairs: int = 200,
) -> tuple[np.ndarray, float, int]:
    """Scale VAR_RNOISE so that it matches the measured sky variance.

    The image is cut into ``block`` x ``block`` blocks; for pairs of
    adjacent blocks that are entirely sky (unmasked, finite data, finite
    positive variance) the difference of their data sums is formed.  Its
    biweight midvariance, divided by the median of the summed VAR_RNOISE of
    the two blocks, is the scale factor.  Block sums carry the pixel-to-pixel
    correlations (IPC, residual 1/f) into the measured variance; differencing
    neighbours (our addition to the baseline's block sums) cancels the sky
    level and any gradient the pedestal left, which would otherwise inflate
    the variance of the sums.

    Parameters
    ----------
    var_rnoise : ndarray, shape (ny, nx)
        VAR_RNOISE array ((data units)^2).
    data : ndarray, shape (ny, nx)
        Image (data units), background-subtracted or not.
    mask : ndarray of bool, shape (ny, nx)
        ``True`` = not sky.
    block : int
        Block side in pixels (baseline 7).
    min_pairs : int
        With fewer clean block pairs, single pixels are paired instead
        (``block_used`` = 1 in the return value).

    Returns
    -------
    var_new : ndarray, shape (ny, nx), float32
        ``factor * var_rnoise``; pixels whose VAR_RNOISE is zero, negative
        or not finite become +inf (zero weight in drizzle).
    factor : float
        The scale factor (1.0 when nothing could be measured).
    block_used : int
        Block size actually used (``block``, 1, or 0 = not measured).
    """
    var = _check_2d("var_rnoise", var_rnoise)
    data = _check_same_shape("data", data, var)
    mask = _check_same_shape("mask", mask, var).astype(bool)
    usable = ~mask & np.isfinite(data) & np.isfinite(var) & (var > 0)
    factor, block_used = 1.0, 0
    for b in (int(block), 1) if int(block) > 1 else (1,):
        f = _variance_factor(data, var, usable, b, min_pairs)
        if f is not None:
            factor, block_used = f, b
            break
    var_new = (var * factor).astype(np.float32)
    var_new[~(np.isfinite(var) & (var > 0))] = np.inf
    return var_new, float(factor), block_used


def _variance_factor(data, var, usable, b, min_pairs):
    ny, nx = (s // b * b for s in data.shape)
    if ny < b or nx < 2 * b:
        return None

    def blocks(a, how):
        a = a[:ny, :nx].reshape(ny // b, b, nx // b, b)
        return a.sum(axis=(1, 3), dtype=np.float64) if how == "sum" else a.all(axis=(1, 3))

    clean = blocks(usable, "all")
    s = blocks(np.where(usable, data, 0.0), "sum")
    v = blocks(np.where(usable, var, 0.0), "sum")
    diffs, expect = [], []
    for sl_a, sl_b in (
        ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
    ):
        ok = clean[sl_a] & clean[sl_b]
        diffs.append((s[sl_a] - s[sl_b])[ok])
        expect.append((v[sl_a] + v[sl_b])[ok])
    d, e = np.concatenate(diffs), np.concatenate(expect)
    if d.size < min_pairs:
        return None
    measured = biweight_midvariance(d)
    expected = np.median(e)
    if not (np.isfinite(measured) and expected > 0):
        return None
    return float(measured / expected)


# --------------------------------------------------------------------------
# entry point


def large_scale_figure(data: np.ndarray, bad: np.ndarray, block: int = 64) -> float:
    """How much sky structure an image holds on large scales: rms about zero of block medians (data units).

    Medians of the usable pixels (``~bad``: sources and flags left out) of
    ``block`` x ``block`` blocks with at least a quarter of their pixels usable;
    the rms is about zero, so the sky level counts as much as its gradients.
    Before a background subtraction it is about the sky; after, what is left
    of it (``YNGBKG0``/``YNGBKG1``).

    Returns
    -------
    float
        NaN without a usable block.
    """
    ny, nx = data.shape
    by, bx = ny // block, nx // block
    if by == 0 or bx == 0:
        block = min(ny, nx)
        by, bx = ny // block, nx // block
    x = np.where(bad, np.nan, data)[: by * block, : bx * block].astype(np.float32)
    b = x.reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by, bx, block * block)
    n = np.isfinite(b).sum(axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(b, axis=2)
    v = med[(n >= block * block // 4) & np.isfinite(med)]
    return float(np.sqrt(np.mean(v * v))) if v.size else float("nan")


def subtract_background(
    data: np.ndarray,
    dq: np.ndarray | None,
    var_rnoise: np.ndarray | None,
    mode: str = "pedestal",
    mask: np.ndarray | None = None,
    params: BackgroundParams | None = None,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, dict]:
    """Mask sources, subtract the sky, rescale VAR_RNOISE.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        SCI array of a ``_cal`` (MJy/sr); full frame or subarray.
    dq : ndarray of int, shape (ny, nx), or None
        DQ array; pixels with ``params.dq_bits`` set are never sky.
    var_rnoise : ndarray, shape (ny, nx), or None
        VAR_RNOISE array; None skips the rescaling (returned as None).
    mode : {'pedestal', '2d'}
        ``'pedestal'``: subtract one value (:func:`pedestal`); ``'2d'``:
        subtract :func:`background_2d`.
    mask : ndarray of bool, shape (ny, nx), optional
        Source mask (``True`` = source).  Default: the tiered mask of
        :func:`young.algorithms.masks.tiered_source_mask` with ``params.mask_preset``.
        DQ-flagged and non-finite pixels are added either way.
    params : BackgroundParams, optional
        Parameters; keyword ``overrides`` replace single fields.

    Returns
    -------
    corrected : ndarray, shape (ny, nx), float32
        ``data - model``; NaN data stay NaN.
    var_rnoise_new : ndarray, shape (ny, nx), float32, or None
        See :func:`rescale_variance`.
    model : ndarray, shape (ny, nx), float32
        What was subtracted (a constant image in pedestal mode).
    info : dict
        ``method`` (the mode), ``level`` (the pedestal, or the median of
        the 2-D model; data units), ``sky_sigma`` (per-pixel sky noise after
        subtraction, data units), ``residual_level`` (mode of the corrected
        sky pixels, data units: ~0 when all is well), ``model_min`` /
        ``model_max``, ``masked_fraction``, ``mask_preset`` (or ``'given'``),
        ``variance_scale``, ``variance_block``, in 2-D mode ``box`` (used,
        (y, x)), ``mesh_shape``, ``rejected_boxes``, ``filter_size``,
        ``degree``, ``reject``; and ``mask`` (the boolean mask used, for
        ``--save-mask``).

    Raises
    ------
    ValueError
        Unknown mode, mask preset or mask parameter.
    ValueError
        Shapes that differ, or no sky left to measure.
    """
    p = params or BackgroundParams()
    if overrides:
        p = dataclasses.replace(p, **overrides)
    if mode not in MODES:
        raise ValueError(f"background: unknown mode {mode!r} (use one of {', '.join(MODES)})")
    data = _check_2d("data", data)
    bits = DEFAULT_BAD_BITS if p.dq_bits is None else p.dq_bits
    if dq is not None:
        dq = _check_same_shape("dq", dq, data)
    if var_rnoise is not None:
        var_rnoise = _check_same_shape("var_rnoise", var_rnoise, data)

    bad = ~np.isfinite(data)
    if dq is not None:
        bad |= dq_bad(dq, bits)
    if mask is None:
        try:
            mparams = masks.params_for(p.mask_preset, **p.mask_overrides)
        except ValueError as exc:
            raise ValueError(f"background: {exc}") from None
        if p.dq_bits is not None:
            mparams = dataclasses.replace(mparams, dq_bits=p.dq_bits)
        src = masks.tiered_source_mask(data, dq, params=mparams)
        preset = p.mask_preset
    else:
        src = _check_same_shape("mask", mask, data).astype(bool)
        preset = "given"
    full_mask = src | bad
    if full_mask.all():
        raise ValueError("background: every pixel is masked; no sky to measure")

    info: dict[str, Any] = {"method": mode, "mask_preset": preset}
    if mode == "pedestal":
        level, _ = pedestal(data, full_mask, p.window, p.max_samples)
        model = np.full(data.shape, level, dtype=np.float32)
    else:
        model, minfo = background_2d(
            data, full_mask, p.box, p.filter_size, p.exclude_percentile, p.sigma,
            p.degree, p.reject, return_info=True,
        )
        level = float(np.median(model))
        info.update(
            minfo, filter_size=int(p.filter_size), degree=int(p.degree), reject=float(p.reject)
        )
    corrected = (data - model).astype(np.float32)
    residual, sky_sigma = pedestal(corrected, full_mask, p.window, p.max_samples)

    var_new = None
    factor, block_used = float("nan"), 0
    if var_rnoise is not None:
        var_new, factor, block_used = rescale_variance(
            var_rnoise, corrected, full_mask, p.variance_block, p.min_block_pairs
        )
    info.update(
        level=float(level),
        sky_sigma=float(sky_sigma),
        residual_level=float(residual),
        model_min=float(np.min(model)),
        model_max=float(np.max(model)),
        masked_fraction=float(full_mask.mean()),
        variance_scale=factor,
        variance_block=block_used,
        mask=full_mask,
    )
    return corrected, var_new, model, info
