"""Up-the-ramp accumulation of NIRCam MULTIACCUM exposures (raw ``_uncal`` SCI cubes).

Pure numpy: no file I/O, randomness only through an explicit
:class:`numpy.random.Generator`.

Conventions
-----------
* Time: frame k (0-based, counting read and skipped frames) of an integration
  is read at ``(k + 1) * frame_time`` after the reset.  Group g averages frames
  ``g (nframes + groupgap) ... + nframes - 1``; the ``groupgap`` frames that
  follow are not read.  :func:`group_times` gives the mean read time of each
  group (only differences matter to a slope).
* Read noise: ``readnoise_dn`` is the **CDS read noise in DN**, the quantity
  stored in jwst ``READNOISE`` reference files (stcal's ramp fit converts it to
  a per-group noise as ``readnoise * gain / sqrt(2 * nframes)`` electrons).
  A single frame read has ``readnoise_dn / sqrt(2)``; a group that averages
  ``nframes`` frames has ``readnoise_dn / sqrt(2 nframes)``.
* Signal: photo-electrons (``rate_dn_s * gain``) and dark current accumulate
  with Poisson statistics frame by frame; charge stops growing at the full well,
  set just above ``(saturation_dn - bias_dn) * gain`` (by 6 sigma of the group
  read noise + 1 DN), and the digitised value is clipped to
  ``min(saturation_dn, 65535)``: saturated reads sit at exactly that value.
* Output DN = bias + charge / gain + additive cube + read noise, rounded to
  integers.  No non-linearity, IPC or persistence is applied.
"""

from __future__ import annotations

import numpy as np

from young.sim.artifacts import frame_time  # noqa: F401  (re-exported: readout timing)

__all__ = [
    "READPATT",
    "frame_time",
    "frame_indices",
    "group_times",
    "make_ramps",
    "expected_rate_sigma",
]

#: NIRCam readout patterns: frames averaged per group, frames skipped between
#: groups, and the maximum number of groups allowed.
READPATT: dict[str, dict[str, int]] = {
    "RAPID": {"nframes": 1, "groupgap": 0, "max_groups": 10},
    "BRIGHT1": {"nframes": 1, "groupgap": 1, "max_groups": 10},
    "BRIGHT2": {"nframes": 2, "groupgap": 0, "max_groups": 10},
    "SHALLOW2": {"nframes": 2, "groupgap": 3, "max_groups": 10},
    "SHALLOW4": {"nframes": 4, "groupgap": 1, "max_groups": 10},
    "MEDIUM2": {"nframes": 2, "groupgap": 8, "max_groups": 10},
    "MEDIUM8": {"nframes": 8, "groupgap": 2, "max_groups": 10},
    "DEEP2": {"nframes": 2, "groupgap": 18, "max_groups": 20},
    "DEEP8": {"nframes": 8, "groupgap": 12, "max_groups": 20},
}


def frame_indices(ngroups: int, nframes: int, groupgap: int) -> np.ndarray:
    """Frame numbers (0-based from reset) averaged into each group.

    Returns
    -------
    ndarray, int, shape (ngroups, nframes)
    """
    g = np.arange(ngroups)[:, None] * (nframes + groupgap)
    return g + np.arange(nframes)[None, :]


def group_times(ngroups: int, nframes: int, groupgap: int, frame_time: float) -> np.ndarray:
    """Mean read time (s after reset) of the frames of each group, shape (ngroups,).

    Consecutive groups are ``(nframes + groupgap) * frame_time`` apart (the
    ``TGROUP`` keyword).
    """
    return (frame_indices(ngroups, nframes, groupgap).mean(axis=1) + 1.0) * frame_time


def _as_float32(value, shape):
    a = np.asarray(value, dtype=np.float32)
    if a.ndim and a.shape != tuple(shape):
        raise ValueError(f"array of shape {a.shape} does not match the frame shape {tuple(shape)}")
    return a


def make_ramps(rng: np.random.Generator, rate_dn_s, ngroups: int, nints: int, nframes: int,
               groupgap: int, frame_time: float, bias_dn, dark_dn_s, gain_e_dn, readnoise_dn,
               saturation_dn, additive_cube=None, cosmic_rays=None, *,
               poisson: bool = True) -> np.ndarray:
    """Simulate raw MULTIACCUM ramps.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    rate_dn_s : ndarray, shape (ny, nx)
        Photo-current (sources + sky + wisps) in DN/s; negative values count
        as zero.  Set reference pixels to zero.
    ngroups, nints : int
        Groups per integration and integrations.
    nframes, groupgap : int
        Frames averaged per group and frames skipped between groups
        (see :data:`READPATT`).
    frame_time : float
        Frame time, s (:func:`frame_time`).
    bias_dn : float or ndarray (ny, nx)
        Bias level (superbias), DN.
    dark_dn_s : float or ndarray (ny, nx)
        Dark current, DN/s (Poisson, like the photo-current).
    gain_e_dn : float or ndarray (ny, nx)
        Gain, electrons per DN.
    readnoise_dn : float or ndarray (ny, nx)
        CDS read noise, DN (jwst READNOISE convention; white, independent per
        frame).
    saturation_dn : float or ndarray (ny, nx)
        Raw DN level (bias included) at which a pixel saturates.
    additive_cube : ndarray, shape (nints, ngroups, ny, nx) or (ngroups, ny, nx), optional
        DN added to each group after accumulation (e.g. 1/f noise from
        :func:`young.sim.artifacts.one_over_f_cube`); a 3-D cube is used for
        every integration.
    cosmic_rays : structured ndarray, optional
        Hits from :func:`young.sim.artifacts.cosmic_rays` (fields ``int``,
        ``y``, ``x``, ``time``, ``electrons``): the charge is added to every
        frame read after ``time``, so a jump appears in the group containing
        the hit (partially, when the group averages several frames) and
        persists in all later groups.
    poisson : bool
        False accumulates the expected charge without shot noise (with
        ``readnoise_dn = 0`` the ramps are then noiseless up to rounding).

    Returns
    -------
    ndarray, uint16, shape (nints, ngroups, ny, nx)
        Raw DN.
    """
    rate = np.asarray(rate_dn_s, dtype=np.float32)
    if rate.ndim != 2 or not np.isfinite(rate).all():
        raise ValueError("rate_dn_s must be a finite 2-D array (DN/s)")
    shape = rate.shape
    ny, nx = shape
    bias = _as_float32(bias_dn, shape)
    gain = _as_float32(gain_e_dn, shape)
    dark = _as_float32(dark_dn_s, shape)
    sat = _as_float32(saturation_dn, shape)
    rn_group = _as_float32(readnoise_dn, shape) / np.float32(np.sqrt(2.0 * nframes))
    if additive_cube is not None:
        add = np.asarray(additive_cube)
        if add.ndim == 3:
            add = add[None]
        if add.shape[1:] != (ngroups, ny, nx) or add.shape[0] not in (1, nints):
            raise ValueError(f"additive_cube shape {np.shape(additive_cube)} does not match "
                             f"({nints}, {ngroups}, {ny}, {nx})")
    clip_dn = np.minimum(sat, np.float32(65535.0))
    # The well fills a little above the clip level so that saturated reads are
    # pinned at exactly clip_dn whatever the read noise.
    full_well_e = np.maximum((clip_dn - bias + 6.0 * rn_group + 1.0) * gain, 0.0).astype(np.float32)
    lam_frame = (np.maximum(rate, 0.0) + np.maximum(dark, 0.0)) * gain * np.float32(frame_time)
    lam_frame = np.broadcast_to(lam_frame, shape).astype(np.float64)
    lam_gap = lam_frame * groupgap if groupgap else None
    lam32 = lam_frame.astype(np.float32)
    inv_gain = (np.float32(1.0) / gain).astype(np.float32)

    if cosmic_rays is not None and len(cosmic_rays):
        cr = np.asarray(cosmic_rays)
        cr_frame = np.floor(cr["time"] / frame_time).astype(np.int64)
    else:
        cr, cr_frame = None, None

    out = np.empty((nints, ngroups, ny, nx), np.uint16)
    charge = np.empty(shape, np.float32)
    acc = np.empty(shape, np.float32)
    for i in range(nints):
        charge[:] = 0.0
        if cr is not None:
            sel = cr["int"] == i
            ci_frame, ci_y, ci_x = cr_frame[sel], cr["y"][sel], cr["x"][sel]
            ci_e = cr["electrons"][sel].astype(np.float32)
        frame = 0
        for g in range(ngroups):
            acc[:] = 0.0
            for _ in range(nframes):
                charge += rng.poisson(lam_frame).astype(np.float32) if poisson else lam32
                if cr is not None:
                    _add_hits(charge, ci_frame, ci_y, ci_x, ci_e, frame, frame)
                np.minimum(charge, full_well_e, out=charge)
                acc += charge
                frame += 1
            dn = acc * (inv_gain / np.float32(nframes))
            dn += bias
            if additive_cube is not None:
                dn += add[i if add.shape[0] > 1 else 0, g]
            if np.any(rn_group):
                dn += rn_group * rng.standard_normal(shape, dtype=np.float32)
            np.rint(dn, out=dn)
            np.clip(dn, 0.0, clip_dn, out=dn)
            out[i, g] = dn
            if groupgap and g < ngroups - 1:
                charge += rng.poisson(lam_gap).astype(np.float32) if poisson else lam32 * groupgap
                if cr is not None:
                    _add_hits(charge, ci_frame, ci_y, ci_x, ci_e, frame, frame + groupgap - 1)
                np.minimum(charge, full_well_e, out=charge)
                frame += groupgap
    return out


def _add_hits(charge, frames, ys, xs, es, first, last):
    """Add cosmic-ray charge of hits in frames first..last (inclusive)."""
    m = (frames >= first) & (frames <= last)
    if np.any(m):
        np.add.at(charge, (ys[m], xs[m]), es[m])


def expected_rate_sigma(rate_dn_s, ngroups: int, nframes: int, groupgap: int, frame_time: float,
                        gain_e_dn, readnoise_dn, nints: int = 1):
    """Expected noise of an unweighted least-squares slope of :func:`make_ramps` ramps.

    Exact for the model of :func:`make_ramps` (Poisson charge accumulated frame
    by frame and averaged over ``nframes``, white read noise of
    ``readnoise_dn / sqrt(2 nframes)`` per group), without saturation or
    cosmic rays.  jwst's OLS ramp fit uses uniform weights at low S/N, where
    this is its noise; at high S/N its optimal weighting does slightly better.

    Parameters
    ----------
    rate_dn_s : float or ndarray
        Total Poisson rate (source + sky + dark), DN/s.
    ngroups, nframes, groupgap : int
        Readout (``ngroups >= 2``).
    frame_time : float
        Frame time, s.
    gain_e_dn : float or ndarray
        Gain, e/DN.
    readnoise_dn : float or ndarray
        CDS read noise, DN.
    nints : int
        Integrations averaged with equal weights.

    Returns
    -------
    float or ndarray
        Standard deviation of the rate, DN/s.
    """
    if ngroups < 2:
        raise ValueError("a slope needs at least 2 groups")
    idx = frame_indices(ngroups, nframes, groupgap) + 1          # frames since reset, 1-based
    t = group_times(ngroups, nframes, groupgap, frame_time)
    w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    # Cov of group-averaged accumulated counts, in units of (electrons per frame):
    # cov(Q_a, Q_b) = lambda * min(a, b).
    mins = np.minimum(idx[:, :, None, None], idx[None, None, :, :]).mean(axis=(1, 3))
    poisson_coef = float(w @ mins @ w)                           # * lambda_e / gain^2  [DN^2/s^2]
    read_coef = float(w @ w)                                     # * sigma_group^2
    rate = np.asarray(rate_dn_s, dtype=float)
    gain = np.asarray(gain_e_dn, dtype=float)
    rn = np.asarray(readnoise_dn, dtype=float)
    var = (np.maximum(rate, 0.0) * frame_time / gain) * poisson_coef \
        + rn ** 2 / (2.0 * nframes) * read_coef
    return np.sqrt(var / nints)
