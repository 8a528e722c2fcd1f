"""Detector and sky artifacts with known truth: background, 1/f noise, wisps, cosmic rays.

Pure numpy: no file I/O, randomness only through an explicit
:class:`numpy.random.Generator`.  Arrays are in DMS orientation (the orientation
of jwst ``_uncal``/``_rate`` products): full frame 2048 x 2048 including the
4-pixel reference border, amplifiers are column blocks.

Readout model (NIRCam SCA with a SIDECAR ASIC)
----------------------------------------------
* Pixels are clocked at 10 us (:data:`PIXEL_TIME_S`); each row of each output
  costs ``ncols/noutputs + 12`` pixel times (:data:`ROW_OVERHEAD_PIX`) and each
  frame one extra row, so the full-frame time is ``524 * 2049 * 10 us = 10.737 s``.
* The outputs are read **synchronously**; output k of the detector's native
  frame reads left to right for even k and right to left for odd k.  In DMS
  orientation ``fastaxis = -1`` mirrors the columns; for 4 outputs this maps the
  alternating pattern onto itself, so in DMS amplifier 0 (cols 0-511) always
  reads towards +x, 1 towards -x, 2 towards +x, 3 towards -x.  A single-output
  subarray reads towards ``sign(fastaxis)``.  Rows are read in increasing DMS y
  when ``slowaxis > 0``, decreasing when ``slowaxis < 0``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy import special

__all__ = [
    "PIXEL_TIME_S",
    "ROW_OVERHEAD_PIX",
    "WISP_DETECTORS",
    "frame_time",
    "background_rate",
    "amp_slices",
    "read_directions",
    "readout_time_map",
    "one_over_f_cube",
    "ols_slope",
    "wisp_template",
    "wisp_strength",
    "cosmic_rays",
    "CR_DTYPE",
]

PIXEL_TIME_S = 10e-6
ROW_OVERHEAD_PIX = 12
_FULL = 2048
_NREF = 4


def frame_time(ny: int, nx: int, noutputs: int) -> float:
    """NIRCam frame time in seconds.

    ``(nx / noutputs + 12) * (ny + 1) * 10 us``: 10.737 s for full frame
    (2048 x 2048, 4 outputs), 4.18 s for SUB640 (1 output).
    """
    return (nx // noutputs + ROW_OVERHEAD_PIX) * (ny + 1) * PIXEL_TIME_S


# --------------------------------------------------------------------------- background
def background_rate(shape, level: float, gx: float = 0.0, gy: float = 0.0, x0: float = 0.0,
                    y0: float = 0.0, cxx: float = 0.0, cyy: float = 0.0, cxy: float = 0.0):
    """Smooth sky count rate with a linear (optionally gently curved) gradient.

    ``B(x, y) = level + gx dx + gy dy + cxx dx**2 + cyy dy**2 + cxy dx dy``
    with ``dx = x - x0``, ``dy = y - y0`` in pixels (0-based, DMS).

    Parameters
    ----------
    shape : (int, int)
        (ny, nx).
    level : float
        Rate at (x0, y0), DN/s.
    gx, gy : float
        Gradients, DN/s per pixel.
    x0, y0 : float
        Reference pixel of the model (e.g. the detector centre, or the subarray
        offset so that a subarray continues a full-frame model).
    cxx, cyy, cxy : float
        Quadratic coefficients, DN/s per pixel**2.

    Returns
    -------
    rate : ndarray, float32, shape ``shape``
        Background in DN/s (no noise; reference pixels included, the caller
        zeroes them if wanted).
    model : dict
        JSON-serialisable description for the truth file (``model``,
        ``formula``, coefficients, ``units``, ``min``/``max``/``mean``).
    """
    ny, nx = shape
    dy = (np.arange(ny, dtype=np.float64) - y0)[:, None]
    dx = (np.arange(nx, dtype=np.float64) - x0)[None, :]
    rate = level + gx * dx + gy * dy
    if cxx or cyy or cxy:
        rate = rate + cxx * dx * dx + cyy * dy * dy + cxy * dx * dy
    rate = np.broadcast_to(rate, shape).astype(np.float32)
    model = {
        "model": "poly2",
        "formula": "level + gx*(x-x0) + gy*(y-y0) + cxx*(x-x0)**2 + cyy*(y-y0)**2 + cxy*(x-x0)*(y-y0)",
        "level": float(level), "gx": float(gx), "gy": float(gy),
        "x0": float(x0), "y0": float(y0),
        "cxx": float(cxx), "cyy": float(cyy), "cxy": float(cxy),
        "units": "DN/s; x, y 0-based pixels (DMS)",
        "min": float(rate.min()), "max": float(rate.max()), "mean": float(rate.mean(dtype=np.float64)),
    }
    return rate, model


# --------------------------------------------------------------------------- amplifiers
def amp_slices(nx: int, noutputs: int) -> list[slice]:
    """Column blocks read by each amplifier (DMS orientation).

    Parameters
    ----------
    nx : int
        Number of columns (2048 for full frame).
    noutputs : int
        1 or 4 (``meta.exposure.noutputs``).

    Returns
    -------
    list of slice
        ``noutputs`` slices along x: for full frame cols 0-511, 512-1023,
        1024-1535, 1536-2047; for a 1-output subarray the whole width.
    """
    if noutputs not in (1, 4):
        raise ValueError(f"noutputs must be 1 or 4, not {noutputs}")
    if nx % noutputs:
        raise ValueError(f"{nx} columns cannot be split over {noutputs} outputs")
    w = nx // noutputs
    return [slice(k * w, (k + 1) * w) for k in range(noutputs)]


def read_directions(noutputs: int, fastaxis: int = 1) -> list[int]:
    """Fast-read direction of each amplifier in DMS columns (+1 towards +x, -1 towards -x).

    Parameters
    ----------
    noutputs : int
        1 or 4.
    fastaxis : int
        ``meta.subarray.fastaxis`` (+-1 for NIRCam, where the fast axis is x).

    Returns
    -------
    list of int
        4 outputs: ``[+1, -1, +1, -1]`` whatever the sign of fastaxis (see module
        notes); 1 output: ``[sign(fastaxis)]``.
    """
    if abs(fastaxis) != 1:
        raise ValueError(f"fastaxis must be +-1 (x fast, as on NIRCam), not {fastaxis}")
    native = [1 if k % 2 == 0 else -1 for k in range(noutputs)]
    if fastaxis > 0:
        return native
    return [-d for d in native[::-1]]


def _amp_layout(ny, nx, noutputs, fastaxis, slowaxis):
    if abs(slowaxis) != 2:
        raise ValueError(f"slowaxis must be +-2 for NIRCam, not {slowaxis}")
    return amp_slices(nx, noutputs), read_directions(noutputs, fastaxis), slowaxis > 0


def readout_time_map(ny: int, nx: int, noutputs: int, fastaxis: int = 1, slowaxis: int = 2) -> np.ndarray:
    """Time (s, from the start of a frame) at which each pixel is read.

    Returns
    -------
    ndarray, float64, shape (ny, nx)
        ``(row_index * (nx/noutputs + 12) + col_index) * 10 us`` with row and
        column indices in read order of each amplifier.
    """
    slices, dirs, rows_up = _amp_layout(ny, nx, noutputs, fastaxis, slowaxis)
    w = nx // noutputs
    row_t = np.arange(ny) if rows_up else np.arange(ny)[::-1]
    tmap = np.empty((ny, nx))
    for sl, d in zip(slices, dirs):
        col_t = np.arange(w) if d > 0 else np.arange(w)[::-1]
        tmap[:, sl] = (row_t[:, None] * (w + ROW_OVERHEAD_PIX) + col_t[None, :]) * PIXEL_TIME_S
    return tmap


# --------------------------------------------------------------------------- 1/f noise
def _one_over_f_spectrum(nsamp, alpha, w):
    """Amplitudes of rfft bins for a 1/f**alpha series and the row-mean variance.

    The series is made as ``irfft(A * z, nsamp)`` with complex z of unit
    variance; the returned variance is that of the mean of ``w`` consecutive
    samples (exact for this construction).
    """
    k = np.arange(nsamp // 2 + 1, dtype=np.float64)
    amp = np.zeros_like(k)
    amp[1:] = k[1:] ** (-alpha / 2.0)
    x = np.pi * k[1:] / nsamp
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(x > 0, np.sin(w * x) / (w * np.sin(x)), 1.0)
    weight = np.full(k.size - 1, 2.0)
    if nsamp % 2 == 0:
        weight[-1] = 1.0                                  # Nyquist bin counted once
    var_mean = np.sum(weight * amp[1:] ** 2 * h * h) / nsamp ** 2
    return amp, var_mean


def one_over_f_cube(rng: np.random.Generator, nints: int, ngroups: int, ny: int, nx: int,
                    noutputs: int, amplitude_dn: float, alpha: float = 1.0,
                    common_fraction: float = 0.5, amp_offset_dn: float = 0.0,
                    fastaxis: int = 1, slowaxis: int = 2, return_offsets: bool = False):
    """Correlated (1/f) read noise of every group read, in DN.

    For each group of each integration and each output an independent
    time series with power spectrum ~ 1/f**alpha (frequencies from 1/(frame
    duration) to the 50 kHz Nyquist frequency) is sampled at the pixel clock
    along the readout order (10 us per pixel, 12 pixel times of overhead per
    row), and mapped onto the pixels of that amplifier with its read
    direction.  A fraction of the variance is common to all outputs: because
    the outputs are read synchronously, the common part appears mirrored in
    adjacent amplifiers.  The low frequencies make row-correlated stripes per
    amplifier; the higher frequencies make a smaller variation along each row.
    Reference pixels receive the same noise (they are read in the same stream).

    Amplitude definition: ``amplitude_dn`` is the expected rms, over rows, of
    the **row mean of one amplifier** (its ``nx/noutputs`` pixels) in one group
    read, common plus independent parts, offsets excluded.  The rms of single
    pixels is larger (the intra-row part adds ~0.8 x that variance for alpha = 1).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    nints, ngroups, ny, nx : int
        Cube shape.
    noutputs : int
        1 or 4 amplifiers.
    amplitude_dn : float
        Row-mean stripe rms per amplifier and group read, DN.
    alpha : float
        Spectral index of the power spectrum (1 = pink).
    common_fraction : float
        Fraction of the variance common to all amplifiers (0..1; ignored for
        one output).
    amp_offset_dn : float
        rms (DN) of a random constant offset per amplifier, group and
        integration (bias drifts: jwst's ``refpix`` step removes them using
        the reference pixels).  The offsets are drawn after the 1/f series, so
        the 1/f part of a seeded call does not depend on this value.
    fastaxis, slowaxis : int
        ``meta.subarray.fastaxis`` (+-1) and ``slowaxis`` (+-2).
    return_offsets : bool
        Also return the offsets.

    Returns
    -------
    cube : ndarray, float32, shape (nints, ngroups, ny, nx)
        Additive noise per group, DN.
    offsets : ndarray, float32, shape (nints, ngroups, noutputs)
        Only with ``return_offsets``: the per-amplifier offsets included in cube.
    """
    if not 0.0 <= common_fraction <= 1.0:
        raise ValueError("common_fraction must lie in [0, 1]")
    slices, dirs, rows_up = _amp_layout(ny, nx, noutputs, fastaxis, slowaxis)
    w = nx // noutputs
    row_len = w + ROW_OVERHEAD_PIX
    nsamp_used = (ny + 1) * row_len
    nsamp = sp_fft.next_fast_len(nsamp_used, real=True)
    amp, var_mean = _one_over_f_spectrum(nsamp, alpha, w)
    amp = amp * (amplitude_dn / math.sqrt(var_mean) / math.sqrt(2.0))   # complex z: unit var per part
    nseries = 1 if noutputs == 1 else noutputs + 1
    c = 1.0 if noutputs == 1 else common_fraction
    # Series 0 is the common part, 1..noutputs the amplifiers' own parts; the
    # mixing weights are folded into the spectra so the pixels are a plain sum.
    weights = np.empty((nseries, amp.size), np.float32)
    weights[0] = amp * math.sqrt(c)
    weights[1:] = amp * math.sqrt(1.0 - c)
    if nsamp % 2 == 0:                          # the Nyquist bin is real: keep its variance
        weights[:, -1] *= math.sqrt(2.0)

    cube = np.empty((nints, ngroups, ny, nx), np.float32)
    for i in range(nints):
        for g in range(ngroups):
            spec = rng.standard_normal((nseries, amp.size, 2), dtype=np.float32).view(np.complex64)[..., 0]
            spec *= weights
            if nsamp % 2 == 0:
                spec[:, -1].imag = 0.0
            series = sp_fft.irfft(spec, n=nsamp, axis=-1, overwrite_x=True)[:, :nsamp_used]
            series = series.reshape(nseries, ny + 1, row_len)[:, :ny, :w]
            if not rows_up:
                series = series[:, ::-1, :]
            for k, (sl, d) in enumerate(zip(slices, dirs)):
                dest = cube[i, g, :, sl] if d > 0 else cube[i, g, :, sl][:, ::-1]
                if nseries == 1:
                    dest[...] = series[0]
                else:
                    np.add(series[0], series[k + 1], out=dest)
    offsets = rng.normal(0.0, 1.0, (nints, ngroups, noutputs)).astype(np.float32) \
        * np.float32(amp_offset_dn)
    if amp_offset_dn:
        for k, sl in enumerate(slices):
            cube[:, :, :, sl] += offsets[:, :, k, None, None]
    return (cube, offsets) if return_offsets else cube


def ols_slope(cube, group_times) -> np.ndarray:
    """Unweighted least-squares slope per pixel of an additive per-group signal.

    This is what an additive cube (e.g. the 1/f noise) contributes to a
    ramp-fitted rate when the fit uses uniform weights, as jwst's OLS does at
    low signal-to-noise (read-noise limited pixels).

    Parameters
    ----------
    cube : ndarray, shape (nints, ngroups, ny, nx) or (ngroups, ny, nx)
        Per-group values, DN.
    group_times : array_like, shape (ngroups,)
        Time of each group, s (only differences matter).

    Returns
    -------
    ndarray, float32, shape (nints, ny, nx) or (ny, nx)
        Slope in DN/s.
    """
    t = np.asarray(group_times, dtype=np.float64)
    a = np.asarray(cube)
    squeeze = a.ndim == 3
    if squeeze:
        a = a[None]
    if a.shape[1] != t.size or t.size < 2:
        raise ValueError("group_times must have one entry per group (at least 2)")
    wt = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    out = np.zeros((a.shape[0],) + a.shape[2:], np.float32)
    for g in range(t.size):
        out += np.float32(wt[g]) * a[:, g].astype(np.float32, copy=False)
    return out[0] if squeeze else out


# --------------------------------------------------------------------------- wisps
#: Short-wave detectors that show wisps and their relative strengths.
WISP_DETECTORS = {"NRCA3": 0.7, "NRCA4": 0.35, "NRCB3": 0.5, "NRCB4": 1.0}

# Components in units of the full-frame size (u = x/2048, v = y/2048, DMS):
# ("lobe", u0, v0, sigma_major, sigma_minor, angle_deg, weight)
# ("arc", uc, vc, radius, width, phi_start_deg, phi_end_deg, weight)
_LOBES = {
    "NRCA3": [("lobe", 0.30, 0.78, 0.20, 0.09, 25, 1.0),
              ("arc", 0.05, 1.10, 0.55, 0.035, -80, -20, 0.8),
              ("arc", 0.05, 1.10, 0.42, 0.025, -75, -30, 0.5)],
    "NRCA4": [("lobe", 0.22, 0.25, 0.15, 0.07, -30, 1.0),
              ("arc", -0.10, -0.05, 0.50, 0.030, 15, 70, 0.7)],
    "NRCB3": [("lobe", 0.75, 0.70, 0.16, 0.08, -40, 1.0),
              ("arc", 1.10, 1.05, 0.52, 0.030, 200, 250, 0.7)],
    "NRCB4": [("lobe", 0.28, 0.30, 0.24, 0.11, 35, 1.0),
              ("lobe", 0.55, 0.18, 0.10, 0.05, 10, 0.5),
              ("arc", -0.05, -0.10, 0.60, 0.040, 20, 75, 0.9),
              ("arc", -0.05, -0.10, 0.46, 0.030, 25, 70, 0.6)],
}
# A second family, closer to the observed "streak" wisps: long narrow bands (very elongated
# lobes) across a corner of the detector on a faint, broad diffuse halo that reaches whole
# amplifier rows -- the shape a per-row 1/f estimate most easily takes for stripes.
_STREAKS = {
    "NRCA3": [("lobe", 0.35, 0.80, 0.40, 0.018, 18, 1.0), ("lobe", 0.45, 0.70, 0.35, 0.014, 22, 0.6),
              ("lobe", 0.40, 0.75, 0.45, 0.25, 20, 0.25)],
    "NRCA4": [("lobe", 0.25, 0.22, 0.38, 0.016, -25, 1.0), ("lobe", 0.30, 0.30, 0.30, 0.012, -20, 0.5),
              ("lobe", 0.28, 0.25, 0.42, 0.22, -22, 0.25)],
    "NRCB3": [("lobe", 0.72, 0.72, 0.40, 0.017, -35, 1.0), ("lobe", 0.65, 0.80, 0.32, 0.013, -30, 0.6),
              ("lobe", 0.70, 0.75, 0.45, 0.24, -32, 0.25)],
    "NRCB4": [("lobe", 0.30, 0.30, 0.42, 0.020, 32, 1.0), ("lobe", 0.40, 0.22, 0.34, 0.015, 28, 0.6),
              ("lobe", 0.33, 0.28, 0.48, 0.26, 30, 0.3)],
}
#: wisp shape families (``Preset.wisp_shape``): the simulated wisps and the templates written with them
WISP_SHAPE_FAMILIES = {"lobes": _LOBES, "streaks": _STREAKS}


def _detector_key(detector: str) -> str:
    d = str(detector).upper().replace("NRC", "")
    return "NRC" + d


def wisp_strength(detector: str, filt: str) -> float:
    """Relative wisp brightness (dimensionless, B4 in F150W = 1).

    Detector factor (B4 1.0, A3 0.7, B3 0.5, A4 0.35; 0 for others) times a
    filter factor peaking at 1.5-2 um (0.3 at F070W, 0.9 at F200W) as the
    observed wisps are strongest in F150W/F200W.  Multiply by the wisp peak in
    DN/s wanted for B4/F150W.
    """
    from young.sim.scene import pivot_um

    det = WISP_DETECTORS.get(_detector_key(detector), 0.0)
    lam = pivot_um(filt)
    return float(det * math.exp(-0.5 * ((lam - 1.7) / 0.6) ** 2))


def wisp_template(detector: str, filt: str, shape=(2048, 2048), rng: np.random.Generator | None = None,
                  origin=(0, 0), family: str = "lobes") -> np.ndarray:
    """Smooth, unit-peak wisp-like scattered-light pattern of a NIRCam detector.

    Diffuse lobes and arcs near the detector edge, as the wisps of A3, A4, B3
    and B4 (shapes are illustrative, not the STScI templates).  The shape
    scales weakly with wavelength (~3 %/um about 2 um); brightness is left to
    :func:`wisp_strength`.  Reference pixels (4-pixel border of the full frame)
    are zero; other detectors return zeros.

    Parameters
    ----------
    detector : str
        ``"NRCA3"`` / ``"A3"`` etc.
    filt : str
        NIRCam filter.
    shape : (int, int)
        (ny, nx) of the array returned.
    rng : numpy.random.Generator, optional
        If given, perturb positions (~1 % of the frame), sizes (~5 %) and
        component weights (~10 %), e.g. to inject a wisp that differs from the
        template used to correct it.
    origin : (int, int)
        Full-frame (y, x) of the array's [0, 0] (subarray offset, 0-based).
    family : str
        Shape family, a key of :data:`WISP_SHAPE_FAMILIES`.

    Returns
    -------
    ndarray, float32, shape ``shape``
        Max 1 over the full frame (a subarray shows its part of it), >= 0.
    """
    from young.sim.scene import pivot_um

    key = _detector_key(detector)
    ny, nx = shape
    out = np.zeros(shape, np.float32)
    shapes = WISP_SHAPE_FAMILIES[family]
    if key not in shapes:
        return out
    scale = 1.0 + 0.03 * (pivot_um(filt) - 2.0)
    comps = []
    for comp in shapes[key]:
        comp = list(comp)
        if rng is not None:
            comp[1] += rng.normal(0, 0.01)
            comp[2] += rng.normal(0, 0.01)
            comp[3] *= 1 + rng.normal(0, 0.05)
            comp[4] *= 1 + rng.normal(0, 0.05)
            comp[-1] *= 1 + rng.normal(0, 0.10)
        comps.append(comp)

    # Evaluate on a coarse full-frame grid (the pattern is smooth), then
    # interpolate bilinearly onto the requested pixels.
    step = 16
    g = np.arange(0, _FULL + step, step, dtype=np.float64)
    v, u = g[:, None] / _FULL, g[None, :] / _FULL
    coarse = np.zeros((g.size, g.size))
    for comp in comps:
        if comp[0] == "lobe":
            _, u0, v0, s1, s2, ang, wt = comp
            a = math.radians(ang)
            du, dv = u - u0, v - v0
            p = du * math.cos(a) + dv * math.sin(a)
            m = -du * math.sin(a) + dv * math.cos(a)
            coarse += wt * np.exp(-0.5 * ((p / (s1 * scale)) ** 2 + (m / (s2 * scale)) ** 2))
        else:
            _, uc, vc, rad, wid, p0, p1, wt = comp
            du, dv = u - uc, v - vc
            r = np.hypot(du, dv)
            phi = np.degrees(np.arctan2(dv, du))
            mid, half = 0.5 * (p0 + p1), 0.5 * (p1 - p0)
            dphi = (phi - mid + 180.0) % 360.0 - 180.0
            taper = 0.5 * special.erfc((np.abs(dphi) - half) / (0.25 * half))
            coarse += wt * taper * np.exp(-0.5 * ((r - rad * scale) / (wid * scale)) ** 2)
    coarse /= coarse.max()

    wy = _linear_weights(np.arange(origin[0], origin[0] + ny) / step, g.size)
    wx = _linear_weights(np.arange(origin[1], origin[1] + nx) / step, g.size)
    out[:] = wy @ coarse.astype(np.float32) @ wx.T
    # Zero the reference pixels of the full frame.
    yy = np.arange(origin[0], origin[0] + ny)
    xx = np.arange(origin[1], origin[1] + nx)
    out[(yy < _NREF) | (yy >= _FULL - _NREF), :] = 0.0
    out[:, (xx < _NREF) | (xx >= _FULL - _NREF)] = 0.0
    peak = out.max() if shape == (_FULL, _FULL) and tuple(origin) == (0, 0) else 1.0
    if peak > 0:
        out /= peak
    return out


def _linear_weights(pos, n):
    """Dense (len(pos), n) matrix of linear-interpolation weights onto nodes 0..n-1."""
    i0 = np.clip(np.floor(pos).astype(int), 0, n - 2)
    f = np.clip(pos - i0, 0.0, 1.0)
    w = np.zeros((pos.size, n), np.float32)
    rows = np.arange(pos.size)
    w[rows, i0] = 1.0 - f
    w[rows, i0 + 1] = f
    return w


# --------------------------------------------------------------------------- cosmic rays
CR_DTYPE = np.dtype([("int", "i4"), ("y", "i4"), ("x", "i4"), ("time", "f8"),
                     ("electrons", "f4"), ("event", "i4")])


def cosmic_rays(rng: np.random.Generator, shape, exposure_time: float,
                rate_per_cm2_s: float = 5.0, *, nints: int = 1, pixel_pitch_um: float = 18.0,
                median_electrons: float = 1500.0, spread_sigma_pix: float = 0.35) -> np.ndarray:
    """Cosmic-ray hits for ``nints`` integrations of ``exposure_time`` seconds each.

    Events follow a Poisson rate of ``rate_per_cm2_s`` hits/cm**2/s on the
    array (5/cm**2/s on 18 um pixels is 1.6e-5 hits/pixel/s, i.e. ~1.6 % of
    pixels hit directly in 1000 s, a few % with the charge spread).  Each event
    deposits a log-normal charge (median ``median_electrons``, sigma 0.8 in ln;
    2 % of events are heavy ions with 10x the charge) spread over the 3 x 3
    pixels around the hit by a Gaussian of ``spread_sigma_pix`` (diffusion +
    IPC-like), integrated over pixels.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    shape : (int, int)
        (ny, nx) of the array.
    exposure_time : float
        Duration of each integration, s (reset to last read).
    rate_per_cm2_s : float
        Event rate, hits/cm**2/s.
    nints : int
        Number of integrations.
    pixel_pitch_um : float
        Pixel size (18 um for NIRCam).
    median_electrons : float
        Median total charge of an event, electrons.
    spread_sigma_pix : float
        Gaussian sigma of the charge cloud, pixels.

    Returns
    -------
    ndarray, structured (:data:`CR_DTYPE`)
        One row per affected pixel: ``int`` (integration), ``y``, ``x``,
        ``time`` (s since the integration's reset), ``electrons`` and
        ``event`` (event index); sorted by integration and time.  Pixels
        receiving less than 1 electron are dropped.
    """
    ny, nx = shape
    area_cm2 = ny * nx * (pixel_pitch_um * 1e-4) ** 2
    nev = int(rng.poisson(rate_per_cm2_s * area_cm2 * exposure_time * nints))
    ints = rng.integers(0, nints, nev)
    times = rng.uniform(0.0, exposure_time, nev)
    yc = rng.uniform(-0.5, ny - 0.5, nev)
    xc = rng.uniform(-0.5, nx - 0.5, nev)
    charge = median_electrons * np.exp(rng.normal(0.0, 0.8, nev))
    charge *= np.where(rng.uniform(size=nev) < 0.02, 10.0, 1.0)
    order = np.lexsort((times, ints))
    ints, times, yc, xc, charge = ints[order], times[order], yc[order], xc[order], charge[order]

    iy, ix = np.rint(yc).astype(int), np.rint(xc).astype(int)
    off = np.array([-1, 0, 1])

    def frac(centre, pix):  # fraction of a 1-D Gaussian in pixel [pix-0.5, pix+0.5]
        s = spread_sigma_pix * math.sqrt(2.0)
        return 0.5 * (special.erf((pix + 0.5 - centre) / s) - special.erf((pix - 0.5 - centre) / s))

    py = iy[:, None] + off[None, :]
    px = ix[:, None] + off[None, :]
    wy, wx = frac(yc[:, None], py), frac(xc[:, None], px)
    e = charge[:, None, None] * wy[:, :, None] * wx[:, None, :]
    yy = np.broadcast_to(py[:, :, None], e.shape)
    xx = np.broadcast_to(px[:, None, :], e.shape)
    keep = (e >= 1.0) & (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
    ev = np.broadcast_to(np.arange(nev)[:, None, None], e.shape)
    hits = np.empty(int(keep.sum()), CR_DTYPE)
    hits["int"] = np.broadcast_to(ints[:, None, None], e.shape)[keep]
    hits["y"], hits["x"] = yy[keep], xx[keep]
    hits["time"] = np.broadcast_to(times[:, None, None], e.shape)[keep]
    hits["electrons"] = e[keep]
    hits["event"] = ev[keep]
    return hits
