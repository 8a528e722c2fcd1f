"""1/f noise ("striping") correction of NIRCam rate and cal images.

Pure functions over numpy arrays (stcal style): no file I/O, no logging
set-up, no CRDS.  ``young-fnoise`` opens the product, calls :func:`correct`
and writes the result.  ALGORITHMS.md ("1/f noise") is the specification.

Geometry: images are in DMS orientation, where each amplifier reads a block
of columns (:func:`amp_slices`) and 1/f noise shows as an offset per row and
amplifier (horizontal stripes) plus a weaker per-column pattern.

Two methods:

``amp``
    Bagley's *remstriping* with YOUNG's fallback: per row a sigma-clipped
    median of the unmasked pixels of each amplifier and of the full row; an
    amplifier row takes the full-row value when it is mostly masked or when
    its value is a two-sided, noise-based outlier; then a per-column
    sigma-clipped median of the residual.  See :func:`measure_amp`.
``gradient``
    For fields dominated by extended light: medians of row-to-row
    differences (smooth emission contributes only its small derivative),
    integrated, and tied to the source-free sky level (its mode) at anchor
    rows every few rows.  Across large masked sources it keeps the
    amplifier's own high-frequency stripes instead of falling back to the
    full row.  See :func:`measure_gradient`.

Reference pixels (the 4-pixel border of a full frame, or pixels flagged
REFERENCE_PIXEL in DQ) are never measured, corrected or flagged: they carry no
sky and jwst's ``refpix`` step has already used them, so they are passed
through unchanged (model 0 there).

Speed: the per-row and per-column statistics are computed for all rows and
amplifiers at once on sorted arrays (:func:`clipped_median`,
:func:`mode_level`): ~0.3 s of CPU per 2048 x 2048 image for ``amp`` and
~0.4 s for ``gradient`` on one core, plus ~0.35 s for the source mask unless
one is passed in (bench/fnoise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from young.algorithms import masks
from young.algorithms.dq import DEFAULT_BAD_BITS, DO_NOT_USE, REFERENCE_PIXEL
from young.algorithms.dq import bad as dq_bad
from young.algorithms.stats import (
    clipped_median,
    mode_level,
    regular_sample,
    robust_mode,
    transposed,
)

__all__ = [
    "METHODS",
    "FnoiseParams",
    "Diagnostics",
    "amp_slices",
    "reference_pixels",
    "measured_image",
    "measure_amp",
    "measure_gradient",
    "correct",
]

METHODS = ("amp", "gradient")
FULL_FRAME = (2048, 2048)


@dataclass(frozen=True)
class FnoiseParams:
    """Parameters of the 1/f corrections (defaults per ALGORITHMS.md).

    Attributes
    ----------
    clip_sigma, clip_maxiters : float, int
        Sigma clipping of every median (Bagley: 2 sigma, astropy's default 5
        iterations).
    mask_thresh : float
        ``amp``: an amplifier row with more than this fraction of its pixels
        masked takes the full-row value.
    fallback_k : float
        ``amp``: an amplifier row whose value deviates from the full-row value
        (after removing the amplifier's offset) by more than ``fallback_k``
        expected errors takes the full-row value; 0 disables.  For Gaussian
        errors k = 5 would already give 0.005 false triggers per full frame
        (2040 x 4 rows, two-sided p = 5.7e-7), but the rows of one 1/f
        realisation are heavier-tailed than that: on 24 simulated full frames
        with 1/f stripes of 1 sigma rms (half common) the false triggers were
        8, 3 and 0 for k = 5, 5.5 and 6.  k = 6 keeps clean data untouched and
        still catches a contaminated amplifier row whose median moves by
        ~0.4 sigma when the 1/f noise is mostly common (weak tau).
    fallback_interp : bool
        ``amp``: add to the fallback value the amplifier's deviation from the
        full row interpolated from the neighbouring rows that did not fall
        back (False: the constant amplifier offset only).
    fallback_blend : bool
        ``amp``: for rows that fall back only because they are mostly masked,
        combine the amplifier's own median and the fallback value with
        inverse-variance weights (noise error vs. the amplifiers' independent
        1/f rms ``tau``); False uses the fallback value alone (the seed).
    columns : bool
        Also measure and subtract the column pattern.
    bright_percentile : float
        ``gradient``: pixels above this percentile of the image are excluded
        from the difference medians.
    diff_clip_sigma, diff_clip_maxiters : float, int
        ``gradient``: clipping of the difference medians (default none: a
        plain median; the percentile cut already removes bright pixels).  A
        median of differences does not telescope like a mean, its errors add
        up as a random walk, and clipping makes each step noisier (per-step
        error 0.080 sigma plain, 0.105 sigma after 5 iterations of 2-sigma
        clipping, for 512 pixels).
    grad_mask_thresh : float
        ``gradient``: an amplifier segment in which more than this fraction of
        the difference pairs are excluded (bright or bad pixels) uses the
        whole-row difference; an anchor window more than this fraction
        source-masked is not used.
    anchor_step : int
        ``gradient``: spacing (rows, and columns for the column pattern) of
        the anchors where the integrated profile is tied to the source-free
        level; each anchor is the level of a window of that many rows.
    hp_scale : float
        ``gradient``: Gaussian sigma (rows/columns) separating the high
        frequencies taken from the differences alone from the low frequencies
        tied to the anchors (see :func:`_integrate_and_anchor`).
    anchor_estimator : {'mode', 'median'}
        ``gradient``: level of an anchor window: the sky mode
        (:func:`mode_level`, insensitive to bright emission the mask missed,
        even when it fills most of the window) or the sigma-clipped median.
    mode_width : float
        Half-width (in pixel sigma) of the mode refinement window.
    mode_start : {'hsm', 'median'}
        Start of the mode refinement (see :func:`mode_level`).
    mask_preset : str
        Tiered-mask preset used when no mask is passed.
    mask_overrides : dict
        :class:`young.algorithms.masks.MaskParams` fields overriding the preset.
    dq_bits : int or str
        DQ bits that exclude a pixel from every measurement.
    ref_border : int
        Width of the reference-pixel border of a full frame (2048 x 2048).
    """

    clip_sigma: float = 2.0
    clip_maxiters: int = 5
    mask_thresh: float = 0.8
    fallback_k: float = 6.0
    fallback_interp: bool = True
    fallback_blend: bool = True
    columns: bool = True
    bright_percentile: float = 98.0
    diff_clip_sigma: float = 3.0
    diff_clip_maxiters: int = 0
    grad_mask_thresh: float = 0.75
    anchor_step: int = 4
    hp_scale: float = 32.0
    anchor_estimator: str = "mode"
    mode_width: float = 1.5
    mode_start: str = "hsm"
    mask_preset: str = "young"
    mask_overrides: dict = field(default_factory=dict)
    dq_bits: int | str = DEFAULT_BAD_BITS
    ref_border: int = 4

    def __post_init__(self):
        if self.anchor_estimator not in ("mode", "median"):
            raise ValueError(f"anchor_estimator must be 'mode' or 'median', not {self.anchor_estimator!r}")
        if self.mode_start not in ("hsm", "median"):
            raise ValueError(f"mode_start must be 'hsm' or 'median', not {self.mode_start!r}")
        if not 0.0 < self.mask_thresh <= 1.0 or not 0.0 < self.grad_mask_thresh <= 1.0:
            raise ValueError("mask_thresh and grad_mask_thresh must lie in (0, 1]")
        if self.anchor_step < 1:
            raise ValueError("anchor_step must be >= 1")
        if not 0.0 < self.bright_percentile <= 100.0:
            raise ValueError("bright_percentile must lie in (0, 100]")

    def replace(self, **kw) -> "FnoiseParams":
        return dataclasses.replace(self, **kw)


@dataclass
class Diagnostics:
    """What a measurement found; everything a QA plot or a header needs.

    Arrays have ``ny`` rows, ``namp`` amplifiers, ``nx`` columns; pattern
    values are in the units of the measured (flat-fielded) image.
    """

    method: str
    amp_slices: list
    pedestal: float = 0.0
    row_pattern: np.ndarray | None = None      # (ny, namp)
    col_pattern: np.ndarray | None = None      # (nx,)
    amp_rows: np.ndarray | None = None         # (ny, namp) own-amplifier values
    full_rows: np.ndarray | None = None        # (ny,) full-row values
    amp_offsets: np.ndarray | None = None      # (namp,) median (amp - full row)
    fallback: np.ndarray | None = None         # (ny, namp) bool: full-row value used
    fallback_masked: np.ndarray | None = None  # (ny, namp) bool: > mask_thresh masked
    fallback_outlier: np.ndarray | None = None  # (ny, namp) bool: two-sided outlier
    expected_error: np.ndarray | None = None   # (ny, namp) error of amp - full row
    own_weight: np.ndarray | None = None       # (ny, namp) weight of the own median
    sigma_pixel: np.ndarray | None = None      # (namp,) robust pixel noise
    tau: np.ndarray | None = None              # (namp,) intrinsic amp-row scatter
    masked_fraction: np.ndarray | None = None  # (ny, namp)
    anchors_used: np.ndarray | None = None     # gradient: (nwin, namp) bool
    gain: np.ndarray | None = None             # (namp,) measured -> data units
    missing_rows: np.ndarray | None = None     # (ny, namp) bool: interpolated rows
    missing_cols: np.ndarray | None = None     # (nx,) bool: interpolated columns
    n_flagged: int = 0                         # pixels newly flagged DO_NOT_USE
    err: np.ndarray | None = None              # unchanged copy of the ERR input
    params: dict = field(default_factory=dict)

    def fallback_counts(self) -> list[int]:
        """Rows per amplifier that used the full-row value."""
        if self.fallback is None:
            return []
        return [int(c) for c in self.fallback.sum(axis=0)]


# --------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------


def amp_slices(nx: int, noutputs: int) -> list[slice]:
    """Column blocks read by each amplifier (DMS orientation).

    Parameters
    ----------
    nx : int
        Number of columns (2048 for a full frame).
    noutputs : int
        1 or 4 (``meta.exposure.noutputs``).

    Returns
    -------
    list of slice
        4 outputs: four equal blocks (full frame: columns 0-511, 512-1023,
        1024-1535, 1536-2047); 1 output: the whole width.
    """
    if noutputs not in (1, 4):
        raise ValueError(f"noutputs must be 1 or 4, not {noutputs}")
    if nx % noutputs:
        raise ValueError(f"{nx} columns cannot be split over {noutputs} outputs")
    w = nx // noutputs
    return [slice(k * w, (k + 1) * w) for k in range(noutputs)]


def reference_pixels(shape: tuple, dq: np.ndarray | None = None, border: int = 4) -> np.ndarray:
    """Reference pixels of an image.

    Parameters
    ----------
    shape : tuple
        ``(ny, nx)``.
    dq : ndarray of int, optional
        Pixels with the REFERENCE_PIXEL bit are reference pixels.
    border : int
        For a full frame (2048 x 2048) the outer ``border`` rows and columns
        are reference pixels whatever DQ says.  Subarrays only have them where
        they touch the detector edge: pass DQ (jwst flags them) or an explicit
        mask to :func:`correct`.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    ref = np.zeros(shape, dtype=bool)
    if dq is not None:
        ref |= dq_bad(dq, REFERENCE_PIXEL)
    if tuple(shape) == FULL_FRAME and border > 0:
        ref[:border] = ref[-border:] = True
        ref[:, :border] = ref[:, -border:] = True
    return ref


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def measured_image(data: np.ndarray, flat: np.ndarray | None) -> np.ndarray:
    """The image the pattern is measured on: ``data / flat`` (NaN where the flat is unusable) or ``data``."""
    if flat is None:
        return np.asarray(data, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(flat) & (flat > 0), data / flat, np.nan).astype(np.float32)


def _segments(a: np.ndarray, slices: list[slice]) -> np.ndarray:
    """(ny, nx) -> (ny, namp, w) view/copy of equal-width amplifier blocks."""
    start, stop = slices[0].start, slices[-1].stop
    w = slices[0].stop - slices[0].start
    return a[:, start:stop].reshape(a.shape[0], len(slices), w)


def _expand(per_amp: np.ndarray, slices: list[slice], nx: int) -> np.ndarray:
    """(ny, namp) -> (ny, nx) with each amplifier's value over its columns."""
    out = np.zeros((per_amp.shape[0], nx), dtype=np.float32)
    for k, sl in enumerate(slices):
        out[:, sl] = per_amp[:, k : k + 1]
    return out


# --------------------------------------------------------------------------
# method "amp"
# --------------------------------------------------------------------------


def measure_amp(image: np.ndarray, exclude: np.ndarray, slices: list[slice],
                params: FnoiseParams = FnoiseParams()) -> Diagnostics:
    """Measure row (per amplifier) and column patterns, method ``amp``.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Measured image (flat-fielded), pedestal already subtracted.
    exclude : ndarray of bool, shape (ny, nx)
        Pixels not to use: sources, DQ-flagged, non-finite, reference pixels.
    slices : list of slice
        Amplifier column blocks (:func:`amp_slices`).
    params : FnoiseParams

    Returns
    -------
    Diagnostics
        ``row_pattern`` (ny, namp) and ``col_pattern`` (nx,) in image units,
        and the fallback bookkeeping.

    Notes
    -----
    Fallback (ALGORITHMS.md step 4).  Let ``m_a(r)`` be the clipped median of
    amplifier ``a`` in row ``r`` over its ``n`` unmasked pixels and ``m(r)``
    that of the full row (pixels of every amplifier, each amplifier's offset
    ``c_a`` removed first).  The full-row value ``m(r) + c_a`` is used when
    more than ``mask_thresh`` of the amplifier row is masked, or when
    ``|m_a(r) - m(r) - c_a| > k * e_a(r)``, with

    * ``c_a`` the amplifier's offset, the median over rows of ``m_a - m``
      (constant amplifier offsets are real and must not trigger);
    * ``e_a(r)^2 = (1.253 sigma_a)^2 / n + tau_a^2``: the noise error of a
      median of ``n`` pixels of robust noise ``sigma_a`` (median over rows of
      the IQR-based sigma of each amplifier row), plus ``tau_a``, the
      intrinsic rms of ``m_a - m`` over rows beyond that noise (std of the
      deviations within 5 MAD, minus the noise part).  ``tau_a`` is 0 when
      the 1/f noise is common to all amplifiers, and then ``e_a`` is exactly
      the noise error; when amplifiers have their own 1/f, deviations of that
      size are stripes to be corrected, not contamination.

    Two refinements of the fallback value, both on by default and measured
    on simulated frames (fallback_interp / fallback_blend = False gives the
    plain ``m(r) + c_a``): the amplifier's deviation from the full row is
    interpolated from the nearest rows that did not fall back and added; and
    rows that fall back only for being mostly masked combine their own
    median with the fallback value by inverse variance (``err_noise^2`` vs
    ``tau_a^2``).  Outlier rows always take the fallback value alone.
    """
    ny, nx = image.shape
    namp = len(slices)
    p = params
    data = np.where(exclude, np.nan, image).astype(np.float32)
    seg = _segments(data, slices)                              # (ny, namp, w)
    w = seg.shape[2]
    st_amp = clipped_median(seg, p.clip_sigma, p.clip_maxiters)
    m_a = st_amp.median                                        # (ny, namp)
    masked_frac = 1.0 - st_amp.n_valid / float(w)
    has_row = st_amp.n_valid.sum(axis=1) > 0                   # rows with any science pixel
    fb_masked = (masked_frac > p.mask_thresh) & has_row[:, None]

    # Amplifier offsets c_a, first guess: median over rows of each
    # amplifier's value minus the mean of the amplifiers, on rows where all
    # are usable (refined below relative to the full-row value).
    c_a = np.zeros(namp)
    if namp > 1:
        full = ~fb_masked.any(axis=1) & np.isfinite(m_a).all(axis=1)
        if full.sum() >= 10:
            rel = m_a[full] - m_a[full].mean(axis=1, keepdims=True)
            c_a = np.median(rel, axis=0)
            c_a -= c_a.mean()
    # Full-row value: clipped median of the row with the amplifier offsets
    # removed (a plain full-row median of amplifiers at different levels
    # depends on how many pixels of each are unmasked).
    c_cols = np.repeat(c_a, w).astype(np.float32)
    m_r = clipped_median(data - c_cols[None, :], p.clip_sigma, p.clip_maxiters).median

    sigma_a = np.array([np.nanmedian(st_amp.sigma_iqr[:, k]) if np.isfinite(st_amp.sigma_iqr[:, k]).any()
                        else np.nan for k in range(namp)])
    # error of the median of the n unmasked pixels (ALGORITHMS.md)
    err_noise = 1.2533 * sigma_a[None, :] / np.sqrt(np.maximum(st_amp.n_valid, 1))
    dev = m_a - c_a[None, :] - m_r[:, None]                    # amplifier vs full row
    ok = ~fb_masked & np.isfinite(dev)
    tau = np.zeros(namp)
    for k in range(namp if namp > 1 else 0):   # <= 4 amplifiers
        d = dev[ok[:, k], k]
        if d.size < 10:
            continue
        # offset relative to the full-row value itself (c_a was relative to
        # the mean of the amplifiers; the full-row median differs slightly)
        shift = float(np.median(d))
        c_a[k] += shift
        dev[:, k] -= shift
        d = d - shift
        # std after a 5-MAD cut: the rows of one 1/f realisation are more
        # heavy-tailed than a Gaussian of the MAD width (MAD-based tau gave
        # 1.3 false triggers per simulated frame at k = 5).
        mad = 1.4826 * np.median(np.abs(d - np.median(d)))
        kept = d[np.abs(d - np.median(d)) <= 5.0 * mad] if mad > 0 else d
        scatter = float(np.std(kept))
        noise = np.median(err_noise[ok[:, k], k])
        tau[k] = np.sqrt(max(scatter**2 - noise**2, 0.0))
    err = np.sqrt(err_noise**2 + tau[None, :] ** 2)
    if namp > 1 and p.fallback_k > 0:
        fb_outlier = ok & (np.abs(dev) > p.fallback_k * err)
    else:
        fb_outlier = np.zeros_like(fb_masked)
    if namp > 1:
        fallback = (fb_masked | fb_outlier | ~np.isfinite(m_a)) & has_row[:, None]
    else:  # one output: the amplifier row is the full row
        fb_masked = np.zeros_like(fb_masked)
        fallback = np.zeros_like(fb_masked)
    # Fallback value: full-row value + the amplifier's offset + (optionally)
    # its deviation from the full row interpolated from the nearest rows that
    # did not fall back (1/f noise of one amplifier is correlated over
    # neighbouring rows, so this keeps most of the amplifier's own stripe).
    local = np.zeros((ny, namp))
    if p.fallback_interp and namp > 1:
        rows = np.arange(ny)
        for k in range(namp):   # <= 4 amplifiers
            good = ~fallback[:, k] & np.isfinite(dev[:, k])
            if good.sum() >= 2:
                local[:, k] = np.interp(rows, rows[good], dev[good, k])
    fb_value = m_r[:, None] + c_a[None, :] + local
    row_pattern = np.where(fallback, fb_value, m_a)
    # Soft fallback for mostly masked (but not outlier) rows: the amplifier's
    # own median (error err_noise, from its few unmasked pixels) and the
    # fallback value (error ~tau, the amplifier's own 1/f) are combined with
    # inverse-variance weights.  When the 1/f is common to all amplifiers
    # (tau ~ 0) this is exactly the full-row value; when amplifiers have
    # strong independent 1/f, replacing a usable median by the row value
    # would add an error ~tau (measured: 4.3 vs 1.6 for the own median on a
    # test field with tau = 0.6 sigma).  Contaminated rows are still caught
    # by the outlier test and take the plain fallback value.
    w_own = np.zeros((ny, namp))
    if p.fallback_blend and namp > 1:
        soft = fb_masked & ~fb_outlier & np.isfinite(m_a) & np.isfinite(fb_value)
        v_own = err_noise**2
        v_fb = np.broadcast_to(tau[None, :] ** 2, (ny, namp))
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(v_own + v_fb > 0, v_fb / (v_own + v_fb), 0.0)
        w_own = np.where(soft, w, 0.0)
        row_pattern = np.where(soft, w_own * m_a + (1 - w_own) * fb_value, row_pattern)
    row_pattern, missing_rows = _fill_missing(row_pattern)

    col_pattern = np.zeros(nx)
    missing_cols = np.zeros(nx, dtype=bool)
    if p.columns:
        resid = data - _expand(row_pattern, slices, nx)
        col_pattern = clipped_median(transposed(resid), p.clip_sigma,
                                     p.clip_maxiters).median
        col_pattern, missing_cols = _fill_missing(col_pattern)

    return Diagnostics(
        method="amp", amp_slices=slices, row_pattern=row_pattern, col_pattern=col_pattern,
        amp_rows=m_a, full_rows=m_r, amp_offsets=c_a, fallback=fallback,
        fallback_masked=fb_masked, fallback_outlier=fb_outlier, expected_error=err,
        sigma_pixel=sigma_a, tau=tau, masked_fraction=masked_frac, own_weight=w_own,
        missing_rows=missing_rows, missing_cols=missing_cols,
    )


def _fill_missing(pattern: np.ndarray):
    """Interpolate NaN entries of a pattern along its first axis.

    A row (or column) with no usable pixel at all has no measurement; its
    value is interpolated linearly from the nearest measured rows of the same
    amplifier (1/f noise is correlated over neighbouring rows), which is
    better than leaving the stripe or discarding the row.  Returns the filled
    pattern and a boolean array of the entries that were filled.  If nothing
    was measured the pattern stays NaN (the caller flags those pixels).
    """
    pat = np.array(pattern, dtype=np.float64)
    squeeze = pat.ndim == 1
    if squeeze:
        pat = pat[:, None]
    missing = ~np.isfinite(pat)
    idx = np.arange(pat.shape[0])
    for k in range(pat.shape[1]):   # one loop step per amplifier (<= 4)
        good = ~missing[:, k]
        if good.any() and not good.all():
            pat[~good, k] = np.interp(idx[~good], idx[good], pat[good, k])
    if squeeze:
        return pat[:, 0], missing[:, 0]
    return pat, missing


# --------------------------------------------------------------------------
# method "gradient"
# --------------------------------------------------------------------------


def _percentile_threshold(image: np.ndarray, good: np.ndarray, q: float,
                          max_samples: int = 2**18) -> float:
    v = regular_sample(image, good, max_samples)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else np.inf


def _anchor_levels(resid: np.ndarray, step: int, groups: int, min_free: float,
                   params: FnoiseParams, sigma: float):
    """Levels (mode or clipped median) of ``resid`` (NaN = not free) in windows of ``step`` rows.

    ``resid`` is (ny, groups * w); windows are [k step, (k+1) step) rows and
    each of the ``groups`` column blocks.  Returns the levels (nwin, groups),
    the anchor rows (nwin,) and which anchors have at least ``min_free`` of
    their pixels free.
    """
    ny, nx = resid.shape
    w = nx // groups
    nwin = -(-ny // step)
    pad = nwin * step - ny
    if pad:
        resid = np.concatenate([resid, np.full((pad, nx), np.nan, resid.dtype)])
    blocks = resid.reshape(nwin, step, groups, w).transpose(0, 2, 1, 3).reshape(nwin, groups, step * w)
    n_valid = np.count_nonzero(~np.isnan(blocks), axis=2)
    if params.anchor_estimator == "mode":
        level = mode_level(blocks, sigma, params.mode_width, start=params.mode_start)
    else:
        level = clipped_median(blocks, params.clip_sigma, params.clip_maxiters).median
    rows_in = np.full(nwin, step)
    rows_in[-1] = step - pad
    free = n_valid / (rows_in[:, None] * float(w))
    centres = np.arange(nwin) * step + (rows_in - 1) / 2.0
    valid = (free >= min_free) & np.isfinite(level)
    return level, centres, valid


def _integrate_and_anchor(diff_med: np.ndarray, image: np.ndarray, free: np.ndarray,
                          groups: int, params: FnoiseParams, sigma: float):
    """Integrate difference medians along axis 0 and tie them to anchor levels.

    ``diff_med`` (n-1, groups): median step between consecutive rows of each
    column group; ``image`` (n, groups * w); ``free`` its source-free pixels.

    With ``S`` the integrated steps, ``T`` = ``S`` smoothed with a Gaussian
    of ``hp_scale`` rows and ``L_k`` the level of ``image - S`` in anchor
    window ``k`` (centre ``c_k``), the pattern is

        ``P = (S - T) + interp_k(T(c_k) + L_k)``.

    Where anchors are dense (every ``anchor_step`` rows) this is ``S`` tied
    to the measured levels (``T`` varies little over a few rows).  Across a
    stretch without usable anchors (a segment mostly masked by a large
    source) the pattern keeps only the high-frequency part ``S - T`` of the
    segment's own differences -- its stripes on scales below ``hp_scale`` --
    and bridges the low frequencies linearly; the slow part of ``S`` there,
    which holds the random-walk drift of the medians and the light the
    extended source leaks into them through its row-to-row derivative, is
    not used.  Returns the pattern (n, groups) and the valid anchors.
    """
    from scipy.ndimage import gaussian_filter1d

    n = image.shape[0]
    d = np.where(np.isfinite(diff_med), diff_med, 0.0)
    S = np.zeros((n, groups))
    np.cumsum(d, axis=0, out=S[1:])
    if params.hp_scale > 0:
        T = gaussian_filter1d(S, params.hp_scale, axis=0, mode="nearest")
    else:  # no split: S tied to the (interpolated) anchor levels everywhere
        T = np.zeros_like(S)
    w = image.shape[1] // groups
    S_full = np.repeat(S, w, axis=1).astype(np.float32)
    resid = np.where(free, image - S_full, np.nan).astype(np.float32)
    levels, centres, valid = _anchor_levels(resid, params.anchor_step, groups,
                                            1.0 - params.grad_mask_thresh, params, sigma)
    rows = np.arange(n)
    base = np.full((n, groups), np.nan)
    for k in range(groups):   # <= 4 amplifier groups, or 1
        v = valid[:, k]
        if v.any():
            t_at = np.interp(centres[v], rows, T[:, k])
            base[:, k] = np.interp(rows, centres[v], t_at + levels[v, k])
    if groups > 1 and np.isnan(base).any():
        # A group with no usable anchor at all takes the mean of the others.
        bad = np.isnan(base[0])
        if (~bad).any():
            base[:, bad] = np.nanmean(base[:, ~bad] - T[:, ~bad], axis=1, keepdims=True) + T[:, bad]
    return S - T + base, valid


def measure_gradient(image: np.ndarray, bad: np.ndarray, source: np.ndarray,
                     slices: list[slice], params: FnoiseParams = FnoiseParams()) -> Diagnostics:
    """Measure row (per amplifier) and column patterns, method ``gradient``.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Measured image (flat-fielded), pedestal already subtracted.
    bad : ndarray of bool, shape (ny, nx)
        Pixels with no valid value (DQ, non-finite, reference pixels).
    source : ndarray of bool, shape (ny, nx)
        Source mask (True = source or bad), used for the anchors.
    slices : list of slice
        Amplifier column blocks.
    params : FnoiseParams

    Returns
    -------
    Diagnostics
        ``row_pattern`` (ny, namp), ``col_pattern`` (nx,), ``fallback`` =
        rows whose differences came from the whole row, ``anchors_used``.

    Notes
    -----
    1. Pixels above the ``bright_percentile`` percentile of the image, and
       bad pixels, are excluded from the differences; the source mask is not
       applied to them: a smooth extended source contributes only its small
       row-to-row derivative (that is what lets this method measure stripes
       across a large masked galaxy).
    2. ``d_a(r)`` = median over each amplifier's columns of
       ``image[r+1] - image[r]``.  An amplifier segment where more than
       ``grad_mask_thresh`` of the pairs are excluded uses the whole-row
       median instead (only that segment switches; the others keep their own,
       better, estimate).
    3. ``S_a`` = cumulative sum of ``d_a``: the stripes up to a drift (the
       medians do not telescope like means; their errors random walk, ~0.08
       sigma per row for 512 pixels).
    4. Baseline: in windows of ``anchor_step`` rows, the level
       (:func:`mode_level`, or the clipped median) of ``image - S_a`` over
       source-free pixels; windows more than ``grad_mask_thresh`` masked are
       skipped.  The high frequencies (below ``hp_scale`` rows) come from
       ``S_a`` alone, the low frequencies from the anchors, interpolated
       linearly over skipped windows (:func:`_integrate_and_anchor`).
    5. Columns: the same along the other axis on the row-corrected image
       (column differences over all rows, whole columns, anchor windows of
       ``anchor_step`` columns).
    The pixel sigma for the mode windows is 1.4826 MAD of the row
    differences / sqrt(2).
    """
    ny, nx = image.shape
    namp = len(slices)
    w = nx // namp
    p = params
    good = ~bad
    thr = _percentile_threshold(image, good, p.bright_percentile)
    use = good & (image <= thr)
    x = np.where(use, image, np.nan).astype(np.float32)
    free = ~source & good

    # ---- rows (per amplifier)
    D = x[1:] - x[:-1]
    # Pixel noise from the row differences (sky and smooth light cancel):
    # sigma = 1.4826 MAD(D) / sqrt(2), on a regular subsample.
    dv = regular_sample(D, np.isfinite(D), 2**18)
    sigma = float(1.4826 * np.median(np.abs(dv - np.median(dv))) / np.sqrt(2.0)) if dv.size else 1.0
    sta = clipped_median(_segments(D, slices), p.diff_clip_sigma, p.diff_clip_maxiters)
    st_a = sta.median
    st_r = clipped_median(D, p.diff_clip_sigma, p.diff_clip_maxiters).median
    src_frac = 1.0 - _segments(free, slices).sum(axis=2) / float(w)        # (ny, namp)
    # A segment whose differences are mostly unusable (bright or bad pixels)
    # takes the whole-row difference median.
    heavy = (1.0 - sta.n_valid / float(w)) > p.grad_mask_thresh
    if namp == 1:
        heavy[:] = False
    use_row = heavy | ~np.isfinite(st_a)
    d = np.where(use_row, st_r[:, None], st_a)
    img_amps = image[:, slices[0].start:slices[-1].stop]
    row_pattern, anchors = _integrate_and_anchor(d, img_amps, free[:, slices[0].start:slices[-1].stop],
                                                 namp, p, sigma)
    row_pattern, missing_rows = _fill_missing(row_pattern)
    # Bookkeeping: rows touched by a whole-row difference, ignoring pairs
    # with a row that has no science pixel at all (reference rows).
    has = good.any(axis=1)
    counted = use_row & (has[1:] & has[:-1])[:, None]
    fallback = np.zeros((ny, namp), dtype=bool)
    fallback[1:] |= counted
    fallback[:-1] |= counted

    # ---- columns (whole columns), on the row-corrected image
    col_pattern = np.zeros(nx)
    missing_cols = np.zeros(nx, dtype=bool)
    if p.columns:
        yimg = image - _expand(row_pattern, slices, nx)
        y = np.where(use, yimg, np.nan).astype(np.float32)
        E = transposed(y[:, 1:] - y[:, :-1])                                 # (nx-1, ny)
        e = clipped_median(E, p.diff_clip_sigma, p.diff_clip_maxiters).median
        colp, _ = _integrate_and_anchor(e[:, None], transposed(yimg),
                                        transposed(free), 1, p, sigma)
        col_pattern, missing_cols = _fill_missing(colp[:, 0])

    return Diagnostics(
        method="gradient", amp_slices=slices, row_pattern=row_pattern, col_pattern=col_pattern,
        fallback=fallback, fallback_masked=np.zeros_like(fallback),
        fallback_outlier=np.zeros_like(fallback), masked_fraction=src_frac,
        sigma_pixel=np.full(namp, sigma),
        anchors_used=anchors, missing_rows=missing_rows, missing_cols=missing_cols,
    )


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------


def correct(data: np.ndarray, dq: np.ndarray | None = None, err: np.ndarray | None = None,
            method: str = "amp", noutputs: int = 4, mask: np.ndarray | None = None,
            flat: np.ndarray | None = None, params: FnoiseParams | None = None,
            refpix: np.ndarray | None = None):
    """Measure and subtract the 1/f pattern of one image.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        SCI array of a rate (DN/s) or cal (MJy/sr) product, DMS orientation.
    dq : ndarray of int, shape (ny, nx), optional
        Data quality; pixels with ``params.dq_bits`` are not measured.
    err : ndarray, shape (ny, nx), optional
        ERR array.  The correction does not change it (the pattern's own error,
        ~1.25 sigma / sqrt(500) per row, adds < 0.3 % to the variance); an
        unchanged copy is returned as ``diagnostics.err``.
    method : {'amp', 'gradient'}
        See the module docstring.
    noutputs : int
        Number of amplifiers, 1 or 4 (``meta.exposure.noutputs``).
    mask : ndarray of bool, shape (ny, nx), optional
        Source mask (True = source).  Default: the tiered mask
        (:func:`young.algorithms.masks.tiered_source_mask`, ``params.mask_preset``) of
        the measured image.  DQ-flagged, non-finite and reference pixels are
        always excluded as well.
    flat : ndarray, shape (ny, nx), optional
        Flat field, for rate data: the pattern is measured on ``data / flat``
        (uniform sky) and converted back to ``data`` units with each
        amplifier's median flat (an additive stripe ``s`` is ``s / flat`` in
        the flat-fielded image, whose median over an amplifier row is
        ``s / median(flat)``).  None for cal data (already flat-fielded).
    params : FnoiseParams, optional
        Defaults per ALGORITHMS.md.
    refpix : ndarray of bool, shape (ny, nx), optional
        Reference pixels; default :func:`reference_pixels` (DQ bit, plus the
        4-pixel border of a full frame).

    Returns
    -------
    corrected : ndarray of float32, shape (ny, nx)
        ``data - model``.  Science pixels whose result is not finite (NaN
        input, or no measurement possible anywhere) are NaN and flagged
        DO_NOT_USE; reference pixels are returned unchanged.
    dq_out : ndarray, shape (ny, nx)
        Copy of ``dq`` (zeros if None) with those DO_NOT_USE flags added.
    model : ndarray of float32, shape (ny, nx)
        The subtracted pattern (rows + columns) in ``data`` units; 0 on
        reference pixels.
    diagnostics : Diagnostics
        Patterns (measured units), fallback rows per amplifier, pedestal,
        noise estimates, ``gain`` (measured -> data units), ``err`` (copy).

    Notes
    -----
    Inputs are never modified.  Steps: exclusion mask = source mask | DQ |
    non-finite | reference pixels; pedestal = robust mode of the unexcluded
    pixels; the pattern is measured on the pedestal-subtracted image, so the
    model has (nearly) zero mean over the sky and the sky level is kept.
    """
    if method not in METHODS:
        raise ValueError(f"unknown 1/f method {method!r}; choose one of {', '.join(METHODS)}")
    p = params or FnoiseParams()
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    for name, arr in (("dq", dq), ("err", err), ("mask", mask), ("flat", flat), ("refpix", refpix)):
        if arr is not None and np.shape(arr) != data.shape:
            raise ValueError(f"{name} shape {np.shape(arr)} differs from data shape {data.shape}")
    ny, nx = data.shape
    slices = amp_slices(nx, noutputs)

    ref = reference_pixels(data.shape, dq, p.ref_border) if refpix is None else np.asarray(refpix, bool)
    if flat is not None:
        flat = np.asarray(flat, dtype=np.float32)
    meas = measured_image(data, flat)
    bad = ~np.isfinite(meas) | dq_bad(dq, p.dq_bits, data.shape) | ref
    if mask is None:
        mparams = masks.params_for(p.mask_preset, **p.mask_overrides)
        source = masks.tiered_source_mask(np.where(bad, np.nan, meas), None, mparams)
    else:
        source = np.asarray(mask, dtype=bool)
    exclude = source | bad
    if exclude.all():
        raise ValueError("no unmasked science pixel left to measure the 1/f pattern on")

    pedestal = robust_mode(regular_sample(meas, ~exclude, 2**18))
    if not np.isfinite(pedestal):
        pedestal = 0.0
    img = meas - np.float32(pedestal)
    if method == "amp":
        diag = measure_amp(img, exclude, slices, p)
    else:
        diag = measure_gradient(img, bad, exclude, slices, p)
    diag.pedestal = float(pedestal)

    # Measured units -> data units (1 without a flat).
    gain = np.ones(len(slices))
    if flat is not None:
        okf = np.isfinite(flat) & (flat > 0) & ~ref
        for k, sl in enumerate(slices):
            # a regular sample of <= 2**18 pixels: the median of a flat of a few % rms is then
            # known to ~1e-4 (the gain scales the pattern, so that is 1e-4 of a stripe)
            v = regular_sample(flat[:, sl], okf[:, sl], 2**18)
            gain[k] = float(np.median(v)) if v.size else 1.0
    diag.gain = gain
    model = _expand(diag.row_pattern * gain[None, :], slices, nx)
    if diag.col_pattern is not None:
        col_gain = np.repeat(gain, nx // len(slices)).astype(np.float32)
        model += (diag.col_pattern * col_gain).astype(np.float32)[None, :]
    model[ref] = 0.0

    corrected = np.subtract(data, model, dtype=np.float32)   # model is 0 on reference pixels
    sci = ~ref
    nan_result = sci & ~np.isfinite(corrected)
    dq_out = np.zeros(data.shape, np.uint32) if dq is None else np.array(dq, copy=True)
    flag_new = nan_result & ((dq_out & DO_NOT_USE) == 0)
    dq_out[nan_result] |= np.asarray(DO_NOT_USE).astype(dq_out.dtype)
    corrected[nan_result] = np.nan  # +-inf inputs become NaN too
    diag.n_flagged = int(flag_new.sum())
    diag.err = None if err is None else np.array(err, copy=True)
    diag.params = dict(dataclasses.asdict(p), method=method, noutputs=noutputs,
                       flat=flat is not None, mask_given=mask is not None)
    return corrected, dq_out, model.astype(np.float32), diag
