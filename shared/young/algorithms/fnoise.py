"""1/f noise ("striping") correction of NIRCam rate and cal images.

Pure functions over numpy arrays (stcal style): no file I/O, no logging
set-up, no CRDS.  ``young-fnoise`` opens the product, calls :func:`correct`
and writes the result.  docs/algorithms.md ("1/f noise") describes the method.

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
:func:`mode_level`); the timings are in docs/performance.md (bench/fnoise).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from young.algorithms import masks
from young.algorithms.dq import DO_NOT_USE
from young.algorithms.dq import bad as dq_bad
from young.algorithms.fnoise_base import (
    METHODS,
    Diagnostics,
    FnoiseParams,
    amp_segments,
    amp_slices,
    expand_amps,
    fill_missing,
    measured_image,
    reference_pixels,
)
from young.algorithms.fnoise_gradient import measure_gradient
from young.algorithms.stats import clipped_median, regular_sample, robust_mode, transposed

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



# --------------------------------------------------------------------------
# method "amp"
# --------------------------------------------------------------------------


def measure_amp(image: np.ndarray, exclude: np.ndarray, slices: list[slice],
                params: FnoiseParams | None = None) -> Diagnostics:
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
    Fallback (docs/algorithms.md, "1/f noise", step 4).  Let ``m_a(r)`` be the clipped median of
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

    Two refinements of the fallback value, both on by default (fallback_interp
    / fallback_blend = False gives the plain ``m(r) + c_a``): the amplifier's
    deviation from the full row is interpolated from the nearest rows that
    did not fall back and added; and rows that fall back only for being
    mostly masked combine their own median with the fallback value by
    inverse variance (``err_noise^2`` vs
    ``tau_a^2``).  Outlier rows always take the fallback value alone.
    """
    ny, nx = image.shape
    namp = len(slices)
    p = params or FnoiseParams()
    data = np.where(exclude, np.nan, image).astype(np.float32)
    seg = amp_segments(data, slices)                              # (ny, namp, w)
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
    # error of the median of the n unmasked pixels (docs/algorithms.md)
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
        # heavy-tailed than a Gaussian of the MAD width, so a MAD-based tau
        # is too small and triggers false fallbacks.
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
    # would add an error ~tau.  Contaminated rows are still caught
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
    row_pattern, missing_rows = fill_missing(row_pattern)

    resid = data - expand_amps(row_pattern, slices, nx)
    along = None
    width = slices[0].stop - slices[0].start
    if p.row_segments > 1 and width % p.row_segments == 0 and width // p.row_segments >= 16:
        along = along_row_pattern(resid, slices, p.row_segments, sigma_a, p, skip_rows=fallback)
        resid = resid - along
    col_pattern = np.zeros(nx)
    missing_cols = np.zeros(nx, dtype=bool)
    if p.columns:
        col_pattern, missing_cols = column_pattern(
            clipped_median(transposed(resid), p.clip_sigma, p.clip_maxiters), p.min_column_pixels)

    return Diagnostics(
        method="amp", amp_slices=slices, row_pattern=row_pattern, col_pattern=col_pattern,
        amp_rows=m_a, full_rows=m_r, amp_offsets=c_a, fallback=fallback,
        fallback_masked=fb_masked, fallback_outlier=fb_outlier, expected_error=err,
        sigma_pixel=sigma_a, tau=tau, masked_fraction=masked_frac, own_weight=w_own,
        missing_rows=missing_rows, missing_cols=missing_cols, along_rows=along,
    )



def stripe_figure(image: np.ndarray, bad: np.ndarray, slices: list[slice]) -> float:
    """How striped an image looks: rms of its per-amplifier row medians and column medians (data units).

    The medians run over every usable science pixel (``~bad``: sources
    included, so the figure does not depend on the 1/f mask being judged),
    each about its amplifier's median; rows use every other column and
    columns every other row (speed).  Computed before and after a
    correction, it shows whether the correction removed stripes or added
    them (``YNG1FSP0``/``YNG1FSP1``).

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
    bad : ndarray of bool, shape (ny, nx)
        Pixels to leave out (flagged, non-finite, reference pixels).
    slices : list of slice
        Amplifier column blocks.

    Returns
    -------
    float
        ``sqrt(rms(row medians)^2 + rms(column medians)^2)``; NaN if nothing is usable.
    """
    x = np.where(bad, np.nan, image).astype(np.float32)
    rows = clipped_median(amp_segments(x, slices)[:, :, ::2], 3.0, 0).median          # (ny, namp)
    rows = rows - np.nanmedian(rows, axis=0, keepdims=True)
    cols = clipped_median(transposed(x[::2]), 3.0, 0).median                            # (nx,)
    cols = cols - np.nanmedian(cols)
    r, c = rows[np.isfinite(rows)], cols[np.isfinite(cols)]
    if not r.size or not c.size:
        return float("nan")
    return float(np.sqrt(np.mean(r * r) + np.mean(c * c)))


def along_row_pattern(resid: np.ndarray, slices: list[slice], nseg: int, sigma: np.ndarray,
                      params: FnoiseParams, skip_rows: np.ndarray | None = None) -> np.ndarray:
    """The 1/f that varies along an amplifier row, kept as far as the data support it.

    1/f noise is a time series read out along the rows, so it also varies
    within a row: a per-row constant leaves that part.  Each amplifier row of
    ``resid`` (the image minus its row pattern) is cut into ``nseg`` segments;
    each segment's clipped median ``m`` has noise ``e^2 = (1.2533 sigma)^2 / n``
    (``n`` unmasked pixels).  Per amplifier, ``tau^2`` -- the variance of the
    true along-row pattern -- is the robust variance of the medians (1.4826
    MAD, squared) minus the median ``e^2``.  Each segment keeps
    ``tau^2 / (tau^2 + e^2)`` of its median: nothing where there is no such
    pattern above the noise; nothing for segments with fewer than
    ``params.min_column_pixels`` pixels, for rows in ``skip_rows`` (rows that
    fell back to the full row: contaminated or mostly masked) and for
    segments more than 5 expected deviations off (the light of a source the
    mask left, which a segment median sees more than a row median).  The
    profile is interpolated linearly between segment centres.

    Parameters
    ----------
    resid : ndarray, shape (ny, nx)
        Measured image minus the row pattern, NaN where excluded.
    slices : list of slice
        Amplifier column blocks.
    nseg : int
        Segments per amplifier row.
    sigma : ndarray, shape (namp,)
        Robust pixel noise per amplifier.
    params : FnoiseParams
    skip_rows : ndarray of bool, shape (ny, namp), optional
        Amplifier rows left without an along-row term.

    Returns
    -------
    ndarray of float32, shape (ny, nx)
        The along-row pattern (0 outside the amplifiers).
    """
    ny, nx = resid.shape
    namp = len(slices)
    w = slices[0].stop - slices[0].start
    ws = w // nseg
    seg = amp_segments(resid, slices).reshape(ny, namp, nseg, ws)
    st = clipped_median(seg, params.clip_sigma, params.clip_maxiters)
    m = np.asarray(st.median, dtype=np.float64)                          # (ny, namp, nseg)
    n = np.asarray(st.n_valid, dtype=np.float64)
    use = np.isfinite(m) & (n >= params.min_column_pixels)
    if skip_rows is not None:
        use &= ~np.asarray(skip_rows, bool)[:, :, None]
    dev = np.zeros(m.shape)
    for k in range(namp):   # <= 4 amplifiers
        uk = use[:, k]
        if uk.sum() < 16 or not np.isfinite(sigma[k]):
            continue
        mk = m[:, k][uk]
        e2 = (1.2533 * sigma[k]) ** 2 / n[:, k][uk]
        spread = 1.4826 * np.median(np.abs(mk - np.median(mk)))
        tau2 = max(spread ** 2 - float(np.median(e2)), 0.0)
        keep = np.abs(mk) <= 5.0 * np.sqrt(tau2 + e2)
        shrunk = np.zeros(m[:, k].shape)
        shrunk[uk] = np.where(keep, mk * (tau2 / (tau2 + e2)), 0.0)
        dev[:, k] = shrunk
    # piecewise linear between segment centres, flat beyond the outer ones
    centres = (np.arange(nseg) + 0.5) * ws - 0.5
    x = np.arange(w, dtype=np.float64)
    j = np.clip(np.searchsorted(centres, x) - 1, 0, nseg - 2)
    t = np.clip((x - centres[j]) / ws, 0.0, 1.0).astype(np.float32)
    out = np.zeros((ny, nx), np.float32)
    for k, sl in enumerate(slices):
        d = dev[:, k].astype(np.float32)
        out[:, sl] = d[:, j] * (1 - t)[None, :] + d[:, j + 1] * t[None, :]
    return out


def column_pattern(st, min_pixels: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The column pattern from per-column medians, kept only as far as the data support it.

    Each column's median carries its noise ``e_j = 1.2533 sigma_j / sqrt(n_j)``
    (``n_j`` unmasked pixels); the variance of a real column pattern is what
    the medians scatter beyond that noise, ``tau^2 = var(m) - mean(e^2)``.
    Each column keeps ``tau^2 / (tau^2 + e_j^2)`` of its median (the least-
    squares shrinkage): 0 everywhere when there is no pattern above the noise,
    ~1 for well-measured columns of a strong pattern, and 0 for columns with
    fewer than ``min_pixels`` unmasked pixels, whose median would paint a
    vertical stripe through a crowded region.

    Parameters
    ----------
    st : ClippedStats
        :func:`young.algorithms.stats.clipped_median` of the transposed residual (one row per column).
    min_pixels : int
        Columns with fewer unmasked pixels get no correction.

    Returns
    -------
    pattern : ndarray, shape (nx,)
        Zero-mean over the used columns.
    unused : ndarray of bool, shape (nx,)
        Columns left at zero for lack of pixels.
    """
    m = np.asarray(st.median, dtype=np.float64)
    n = np.asarray(st.n_valid, dtype=np.float64)
    use = np.isfinite(m) & (n >= min_pixels)
    pattern = np.zeros(m.shape)
    if use.sum() < 8:
        return pattern, ~use
    sig = np.nanmedian(np.asarray(st.sigma_iqr, dtype=np.float64)[use])
    e2 = (1.2533 * sig) ** 2 / n[use]
    level = np.median(m[use])
    dev = m[use] - level
    tau2 = max(float(np.mean(dev * dev) - np.mean(e2)), 0.0)
    pattern[use] = dev * (tau2 / (tau2 + e2))
    return pattern, ~use


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
        Defaults per docs/algorithms.md.
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
            # a regular sample of <= 2**18 pixels: enough for the median of a flat of a few % rms
            # (the gain scales the pattern; docs/algorithms.md, "1/f noise", gives the precision)
            v = regular_sample(flat[:, sl], okf[:, sl], 2**18)
            gain[k] = float(np.median(v)) if v.size else 1.0
    diag.gain = gain
    model = expand_amps(diag.row_pattern * gain[None, :], slices, nx)
    if diag.along_rows is not None:
        model += diag.along_rows * np.repeat(gain, nx // len(slices)).astype(np.float32)[None, :]
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
