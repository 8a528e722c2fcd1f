"""What jwst's stage 1 does to the injected 1/f noise: the truth the 1/f tests compare against.

The injected 1/f pattern is a per-read time series; what reaches the rate
file is what survives reference-pixel correction and the ramp fit.  This
module applies jwst's own refpix step and a ramp fit with jwst's weights to
the ramps with and without 1/f, so the truth is the difference the pipeline
would see (docs/simulator.md).
"""

from __future__ import annotations

import warnings

import numpy as np

from young.sim import exposures


def _refpix_params() -> dict:
    """The default parameters of jwst's RefPixStep (read from the step, so they stay in sync)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from jwst.refpix import RefPixStep

        step = RefPixStep()
    return {
        "odd_even_columns": step.odd_even_columns,
        "use_side_ref_pixels": step.use_side_ref_pixels,
        "side_smoothing_length": step.side_smoothing_length,
        "side_gain": step.side_gain,
        "odd_even_rows": step.odd_even_rows,
        "conv_kernel_params": {"refpix_algorithm": step.refpix_algorithm, "sirs_kernel_model": None,
                               "sigreject": step.sigreject, "gaussmooth": step.gaussmooth,
                               "halfwidth": step.halfwidth},
        "siglimit": step.siglimit,
    }


def apply_refpix(spec: exposures.ExposureSpec, cube: np.ndarray, pixeldq: np.ndarray) -> np.ndarray:
    """jwst's reference-pixel correction (RefPixStep defaults, no reference file) of a float cube.

    Parameters
    ----------
    spec : ExposureSpec
        Supplies the metadata the algorithm reads (detector, subarray, outputs, axes).
    cube : ndarray, float32 (nints, ngroups, ny, nx)
        Bias-subtracted ramps, DN.
    pixeldq : ndarray, uint32 (ny, nx)
        The MASK reference DQ (what dq_init puts in PIXELDQ).

    Returns
    -------
    ndarray, float32
        The corrected cube (a new array).
    """
    from stdatamodels.jwst.datamodels import RampModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from jwst.refpix import reference_pixels

        model = RampModel(data=np.array(cube, np.float32, copy=True),
                          pixeldq=pixeldq.astype(np.uint32),
                          groupdq=np.zeros(cube.shape, np.uint8), validate_on_assignment=False)
        exposures.set_meta(model, spec)
        import logging

        log = logging.getLogger("jwst.refpix.reference_pixels")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            reference_pixels.correct_model(model, **_refpix_params())
        finally:
            log.setLevel(level)
        out = np.asarray(model.data, np.float32).copy()
        model.close()
    return out


def ramp_fit_weights(signal_dn: np.ndarray, ngroups: int, gain: np.ndarray, readnoise_cds: np.ndarray,
                     nframes: int) -> np.ndarray:
    """Per-group weights of jwst's OLS_C "optimal" ramp fit for ramps without jumps.

    stcal's C slope fitter: S/N of the segment from its first-to-last
    difference ``d`` (DN), ``snr = d g / sqrt(rn^2 + d g)`` with
    ``rn = readnoise_cds * g / sqrt(2 nframes)`` (electrons); a power P from
    the S/N (0, 0.4, 1, 3, 6, 10 at 5/10/20/50/100); weights
    ``|(i - mid) / mid|**P``.

    Returns
    -------
    ndarray, float32, shape (ngroups, ny, nx)
    """
    rn_e = readnoise_cds * gain / np.sqrt(2.0 * nframes)
    d = signal_dn * gain
    den = rn_e ** 2 + d
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where((den > 0) & (gain > 0), d / np.sqrt(np.maximum(den, 1e-30)), 0.0)
    snr = np.maximum(snr, 0.0)
    power = np.select([snr < 5, snr < 10, snr < 20, snr < 50, snr < 100], [0.0, 0.4, 1.0, 3.0, 6.0], 10.0)
    mid = (ngroups - 1) / 2.0
    i = np.arange(ngroups, dtype=np.float64)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.abs((i - mid) / mid) ** power[None]
    # 0**0 = 1 (numpy agrees); keep float32
    return w.astype(np.float32)


def weighted_slopes(delta: np.ndarray, weights: np.ndarray, group_time: float, ngood: np.ndarray | None = None
                    ) -> np.ndarray:
    """Weighted least-squares slope (DN/s) of ``delta`` [ngroups, ny, nx] with per-group ``weights``.

    ``ngood`` (ny, nx), when given, limits each pixel's fit to its first
    ``ngood`` groups (saturation); pixels with fewer than 2 get NaN.
    """
    ng = delta.shape[0]
    x = np.arange(ng, dtype=np.float64)[:, None, None]
    w = weights.astype(np.float64)
    if ngood is not None:
        w = w * (x < ngood[None]).astype(np.float64)
    sw = w.sum(0)
    sx = (w * x).sum(0)
    sxx = (w * x * x).sum(0)
    sy = (w * delta).sum(0)
    sxy = (w * x * delta).sum(0)
    den = sw * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (sw * sxy - sx * sy) / den / group_time
    if ngood is not None:
        slope = np.where(ngood >= 2, slope, np.nan)
    return slope.astype(np.float32)


def first_saturated_group(ramp: np.ndarray, saturation: np.ndarray, grow: int = 1) -> np.ndarray:
    """Index of the first group jwst's saturation step flags in each pixel (``ngroups`` if none).

    A group is flagged when the raw value reaches the SATURATION reference,
    and so are all later groups and the ``grow``-pixel neighbourhood
    (``n_pix_grow_sat``, default 1) of flagged pixels.

    Parameters
    ----------
    ramp : ndarray (ngroups, ny, nx)
        Raw DN of one integration.
    saturation : ndarray (ny, nx)
    """
    from scipy.ndimage import maximum_filter

    sat = np.maximum.accumulate(ramp >= saturation[None], axis=0)
    if grow:
        sat = np.stack([maximum_filter(g, size=2 * grow + 1) for g in sat.astype(np.uint8)]).astype(bool)
    return np.where(sat.any(0), sat.argmax(0), ramp.shape[0])


def oneoverf_truth(spec: exposures.ExposureSpec, ramp_with: np.ndarray, ramp_without: np.ndarray,
                   bias: np.ndarray, dark_ref: np.ndarray, gain: np.ndarray, readnoise_cds: np.ndarray,
                   saturation: np.ndarray, pixeldq: np.ndarray) -> np.ndarray:
    """The 1/f pattern as it appears in the pipeline's rate (DN/s): rate(with) - rate(without).

    Both raw ramps (identical except for the 1/f cube, same random draws for
    everything else) go through what stage 1 does linearly -- superbias
    subtraction and jwst's own reference-pixel correction (run on each, so its
    medians and clipping see the real data) -- and the difference is fitted
    with the per-pixel weights jwst's OLS_C fit gives the *with* ramp (dark
    subtraction and the identity linearity cancel).  Saturated groups are
    left out as the pipeline does; cosmic-ray jumps are not modelled (their
    pixels are flagged in the truth file).

    Returns
    -------
    ndarray, float32 (ny, nx)
        Mean over integrations of the rate-equivalent pattern, DN/s.
    """
    pat = spec.pattern
    tgroup = spec.times()["group_time"]
    w_cube = apply_refpix(spec, ramp_with.astype(np.float32) - bias[None, None], pixeldq)
    wo_cube = apply_refpix(spec, ramp_without.astype(np.float32) - bias[None, None], pixeldq)
    out = np.zeros(spec.sub.shape, np.float64)
    for i in range(spec.nints):
        ngood = first_saturated_group(ramp_with[i], saturation)
        data = w_cube[i] - dark_ref[:spec.ngroups]
        last = np.clip(ngood - 1, 0, spec.ngroups - 1)
        signal = np.take_along_axis(data, last[None], 0)[0] - data[0]
        seglen = np.maximum(ngood, 2)
        # the weights depend on the segment length: compute per distinct length
        slope = np.full(spec.sub.shape, np.nan, np.float32)
        delta = w_cube[i] - wo_cube[i]
        for n in np.unique(seglen):
            sel = seglen == n
            if n < 2:
                continue
            wts = ramp_fit_weights(signal, int(n), gain, readnoise_cds, pat.nframes)
            full = np.zeros((spec.ngroups,) + spec.sub.shape, np.float32)
            full[:n] = wts
            s = weighted_slopes(delta, full, tgroup, np.minimum(ngood, n))
            slope[sel] = s[sel]
        out += slope
    return (out / spec.nints).astype(np.float32)
