"""1/f noise, method ``gradient``: row differences integrated and anchored on the sky, for fields of extended light.

See :func:`measure_gradient`; the entry point is :func:`young.algorithms.fnoise.correct`.
"""

from __future__ import annotations

import numpy as np

from young.algorithms.fnoise_base import Diagnostics, FnoiseParams, amp_segments, expand_amps, fill_missing
from young.algorithms.stats import clipped_median, mode_level, regular_sample, transposed


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
                     slices: list[slice], params: FnoiseParams | None = None) -> Diagnostics:
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
       medians do not telescope like means; their errors random walk).
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
    p = params or FnoiseParams()
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
    sta = clipped_median(amp_segments(D, slices), p.diff_clip_sigma, p.diff_clip_maxiters)
    st_a = sta.median
    st_r = clipped_median(D, p.diff_clip_sigma, p.diff_clip_maxiters).median
    src_frac = 1.0 - amp_segments(free, slices).sum(axis=2) / float(w)        # (ny, namp)
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
    row_pattern, missing_rows = fill_missing(row_pattern)
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
        yimg = image - expand_amps(row_pattern, slices, nx)
        y = np.where(use, yimg, np.nan).astype(np.float32)
        E = transposed(y[:, 1:] - y[:, :-1])                                 # (nx-1, ny)
        e = clipped_median(E, p.diff_clip_sigma, p.diff_clip_maxiters).median
        colp, _ = _integrate_and_anchor(e[:, None], transposed(yimg),
                                        transposed(free), 1, p, sigma)
        col_pattern, missing_cols = fill_missing(colp[:, 0])

    return Diagnostics(
        method="gradient", amp_slices=slices, row_pattern=row_pattern, col_pattern=col_pattern,
        fallback=fallback, fallback_masked=np.zeros_like(fallback),
        fallback_outlier=np.zeros_like(fallback), masked_fraction=src_frac,
        sigma_pixel=np.full(namp, sigma),
        anchors_used=anchors, missing_rows=missing_rows, missing_cols=missing_cols,
    )
