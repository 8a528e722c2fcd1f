"""Quality figures of the 1/f correction against a simulator's injected truth.

One definition of the *residual stripe fraction*, shared by the tests
(``tests/test_fnoise_tool.py``) and the benchmark (``bench/fnoise``), so the
numbers they print mean the same thing.  Pure functions over numpy arrays.

Definition (all on ``good`` pixels: source-free, unflagged, finite, not
reference pixels):

* ``residual = truth - removed``, where ``removed`` is what the correction
  subtracted, in the truth's units (rate DN/s): ``original - corrected`` for a
  rate file, ``(original - corrected) * flat / PHOTMJSR`` for a cal file.  This
  is ``corrected - (original - truth)``: the stripes left plus the stripes
  the correction invented, and no image noise of its own.
* per amplifier and row, the median of ``residual`` over the good pixels
  (rows with fewer than ``min_pixels`` good pixels are left out); minus the
  median of all these values (a constant common to the whole image is sky,
  which a 1/f correction must keep, not a stripe); rms over rows and
  amplifiers.  Per-amplifier offsets therefore count as residual.
* the same rms of the truth pattern itself is the injected stripe rms; the
  **fraction** is their ratio (0 = perfect, 1 = nothing removed).

The **statistical floor** is what a per-amplifier row median of the data
could not avoid: the error of a median of ``n`` pixels with Gaussian noise
``sigma`` is ``sqrt(pi / 2) sigma / sqrt(n)``; rms over the same rows, with
``sigma`` the robust pixel noise of the stripe-free image (``original -
truth``) from row-to-row differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from young.algorithms import fnoise, masks
from young.algorithms.dq import DEFAULT_BAD_BITS
from young.algorithms.dq import bad as dq_bad

#: error of a median relative to the error of a mean, for Gaussian noise
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)


@dataclass
class StripeResidual:
    """Result of :func:`stripe_residual`.

    Attributes
    ----------
    fraction : float
        ``residual_rms / injected_rms``.
    residual_rms, injected_rms : float
        rms of the row medians (truth units), see the module docstring.
    per_amp : ndarray, shape (namp,)
        ``fraction`` of each amplifier alone (about the same global median).
    amp_offsets : ndarray, shape (namp,)
        Median over rows of each amplifier's residual row medians (about the
        global median): per-amplifier offsets left.
    rows : int
        Number of (row, amplifier) values used.
    """

    fraction: float
    residual_rms: float
    injected_rms: float
    per_amp: np.ndarray
    amp_offsets: np.ndarray
    rows: int


def row_medians(image: np.ndarray, good: np.ndarray, noutputs: int, min_pixels: int = 32) -> np.ndarray:
    """Per-row, per-amplifier median of the good pixels.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
    good : ndarray of bool, shape (ny, nx)
        Pixels to use.
    noutputs : int
        1 or 4 amplifiers (:func:`young.algorithms.fnoise.amp_slices`).
    min_pixels : int
        Rows of an amplifier with fewer good pixels are NaN.

    Returns
    -------
    ndarray, shape (ny, noutputs)
    """
    slices = fnoise.amp_slices(image.shape[1], noutputs)
    x = np.where(good, image, np.nan).astype(np.float64)
    out = np.full((image.shape[0], len(slices)), np.nan)
    for k, sl in enumerate(slices):
        seg = x[:, sl]
        n = np.count_nonzero(good[:, sl], axis=1)
        ok = n >= min_pixels
        if ok.any():
            out[ok, k] = np.nanmedian(seg[ok], axis=1)
    return out


def _rms(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(v * v))) if v.size else float("nan")


def stripe_residual(removed: np.ndarray, truth: np.ndarray, good: np.ndarray, noutputs: int,
                    min_pixels: int = 32) -> StripeResidual:
    """Residual stripe fraction of a 1/f correction (definition in the module docstring).

    Parameters
    ----------
    removed : ndarray, shape (ny, nx)
        What the correction subtracted, in the truth's units.
    truth : ndarray, shape (ny, nx)
        Injected 1/f pattern (``truth/oneoverf/<basename>_1f_truth.fits``).
    good : ndarray of bool, shape (ny, nx)
        Source-free, unflagged science pixels (:func:`sky_pixels`).
    noutputs : int
        Number of amplifiers.
    min_pixels : int
        Minimum good pixels for a row of an amplifier to count.

    Returns
    -------
    StripeResidual
    """
    good = good & np.isfinite(removed) & np.isfinite(truth)
    res = row_medians(truth - removed, good, noutputs, min_pixels)
    inj = row_medians(truth, good, noutputs, min_pixels)
    both = np.isfinite(res) & np.isfinite(inj)
    res = np.where(both, res, np.nan)
    inj = np.where(both, inj, np.nan)
    res -= np.nanmedian(res)
    inj -= np.nanmedian(inj)
    r_rms, i_rms = _rms(res), _rms(inj)
    per_amp = np.array([_rms(res[:, k]) / _rms(inj[:, k]) for k in range(res.shape[1])])
    offsets = np.nanmedian(res, axis=0)
    return StripeResidual(r_rms / i_rms, r_rms, i_rms, per_amp, offsets, int(both.sum()))


def pixel_sigma(image: np.ndarray, good: np.ndarray) -> float:
    """Robust pixel noise: 1.4826 MAD of row-to-row differences / sqrt(2) (smooth light cancels)."""
    d = image[1:] - image[:-1]
    ok = good[1:] & good[:-1] & np.isfinite(d)
    v = d[ok]
    if not v.size:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))) / math.sqrt(2.0))


def median_floor(clean: np.ndarray, good: np.ndarray, noutputs: int, min_pixels: int = 32,
                 truth: np.ndarray | None = None) -> float:
    """rms error of per-amplifier row medians of an image with pixel noise like ``clean``.

    Parameters
    ----------
    clean : ndarray
        The stripe-free image (``original - truth``), for its pixel noise.
    good, noutputs, min_pixels
        As in :func:`stripe_residual`.
    truth : ndarray, optional
        The injected 1/f pattern: its variation along each amplifier row
        (about the row's median) is noise to a row estimate too and is added
        to the pixel noise.

    Returns
    -------
    float
        ``sqrt(mean over rows and amplifiers of (sqrt(pi/2) sigma_a)^2 / n)``,
        truth units; ``sigma_a`` per amplifier: :func:`pixel_sigma` of
        ``clean``, with the along-row scatter of ``truth`` added in quadrature.
    """
    slices = fnoise.amp_slices(clean.shape[1], noutputs)
    var = []
    for sl in slices:
        sig = pixel_sigma(clean[:, sl], good[:, sl])
        if truth is not None:
            rows = row_medians(truth[:, sl], good[:, sl], 1, min_pixels)
            dev = np.where(good[:, sl], truth[:, sl] - rows, np.nan)
            v = dev[np.isfinite(dev)]
            if v.size:
                sig = float(np.hypot(sig, 1.4826 * np.median(np.abs(v - np.median(v)))))
        n = np.count_nonzero(good[:, sl], axis=1)
        n = n[n >= min_pixels]
        var.append((MEDIAN_EFFICIENCY * sig) ** 2 / n)
    v = np.concatenate(var)
    return float(np.sqrt(np.mean(v))) if v.size else float("nan")


def oracle_floor(data: np.ndarray, truth: np.ndarray, good: np.ndarray, noutputs: int,
                 min_pixels: int = 32) -> StripeResidual:
    """The statistical floor: :func:`stripe_residual` of an oracle per-amplifier row median.

    The oracle subtracts, from every amplifier row, the plain median of the
    data over exactly the metric's ``good`` pixels (it knows where the
    sources are).  What it leaves is the noise of a per-amplifier row median
    -- with this image's real pixel noise, correlations and source-free
    pixel counts -- and nothing else; a correction cannot be expected to do
    better.  (For white Gaussian noise this is :func:`median_floor`;
    docs/simulator.md gives how far stage-1 rate files are from it.)

    Parameters
    ----------
    data : ndarray
        The image with its stripes, in the truth's units (the rate, or a
        cal converted back to DN/s).
    truth, good, noutputs, min_pixels
        As in :func:`stripe_residual`.
    """
    est = row_medians(data, good, noutputs, min_pixels)
    removed = np.repeat(est, data.shape[1] // noutputs, axis=1)
    return stripe_residual(removed, truth, good, noutputs, min_pixels)


def true_sky_pixels(sources: np.ndarray, sigma: float, bad: np.ndarray, level: float = 0.1,
                    grow: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Pixels free of source light by the simulator's truth, and the true source footprint.

    Parameters
    ----------
    sources : ndarray
        The noiseless source image (``SOURCES`` of a 1/f truth file), same units as ``sigma``.
    sigma : float
        Pixel noise (:func:`pixel_sigma`).
    bad : ndarray of bool
        Pixels no statistic may use (flagged, non-finite, reference pixels).
    level : float
        A pixel belongs to a source where the source light exceeds ``level`` x ``sigma``:
        below that it moves a median of hundreds of pixels by far less than its noise.
    grow : int
        The footprint is grown by this many pixels (centroid and PSF-model differences).

    Returns
    -------
    good : ndarray of bool
        Science pixels outside the footprint.
    footprint : ndarray of bool
    """
    from scipy import ndimage

    foot = np.asarray(sources) > level * sigma
    if grow > 0:
        foot = ndimage.binary_dilation(foot, structure=np.ones((3, 3), bool), iterations=grow)
    return ~foot & ~bad, foot


@dataclass
class Floor:
    """The statistical floor of a per-amplifier row estimate (:func:`truth_figures`).

    Attributes
    ----------
    fraction : float
        Floor as a fraction of the injected stripe rms (comparable with
        :attr:`StripeResidual.fraction`).
    rms : float
        Floor in truth units.
    footprint : float
        Fraction of the usable science pixels inside the true source footprint.
    sigma : float
        Pixel noise of the stripe-free image.
    """

    fraction: float
    rms: float
    footprint: float
    sigma: float


def truth_figures(original: np.ndarray, corrected: np.ndarray, truth: np.ndarray, truth_dq: np.ndarray,
                  sources: np.ndarray, dq: np.ndarray | None = None, noutputs: int = 4, scale=1.0,
                  exclude: np.ndarray | None = None, level: float = 0.1,
                  grow: int = 2) -> tuple[StripeResidual, Floor, np.ndarray]:
    """The residual stripe fraction of a 1/f correction and its statistical floor, both from the truth.

    Parameters
    ----------
    original, corrected : ndarray
        The image before and after the correction (its own units).
    truth, truth_dq, sources : ndarray
        ``SCI``, ``DQ`` and ``SOURCES`` of the set's 1/f truth file (DN/s).
    dq : ndarray, optional
        The image's DQ (flagged pixels are out).
    noutputs : int
        Amplifiers.
    scale : float or ndarray
        Image units -> truth units (1 for a rate; flat / PHOTMJSR for a cal).
    exclude : ndarray of bool, optional
        More pixels to leave out of both figures.
    level, grow : float, int
        The true footprint (:func:`true_sky_pixels`).

    Returns
    -------
    residual : StripeResidual
        On the truly source-free pixels.
    floor : Floor
        :func:`median_floor` over the same pixels, with the along-row 1/f
        scatter counted as noise -- what a per-amplifier row median that knew
        exactly where the sources are could not beat.
    good : ndarray of bool
        The truly source-free, usable pixels.
    """
    data = np.asarray(original, dtype=np.float64) * scale
    clean = data - truth
    bad = ~np.isfinite(clean) | dq_bad(dq, DEFAULT_BAD_BITS, clean.shape) | (np.asarray(truth_dq) != 0)
    bad |= fnoise.reference_pixels(clean.shape, dq)
    sigma = pixel_sigma(clean, ~bad)
    good, foot = true_sky_pixels(sources, sigma, bad, level, grow)
    if exclude is not None:
        good &= ~exclude
    removed = (np.asarray(original, dtype=np.float64) - corrected) * scale
    res = stripe_residual(removed, truth, good, noutputs)
    rms = median_floor(clean, good, noutputs, truth=truth)
    sci = ~bad
    return res, Floor(rms / res.injected_rms, rms, float(foot[sci].mean()), sigma), good


def sky_pixels(clean: np.ndarray, dq: np.ndarray | None = None, truth_dq: np.ndarray | None = None,
               preset: str = "young") -> np.ndarray:
    """Source-free, unflagged science pixels of a simulated image.

    Parameters
    ----------
    clean : ndarray
        The stripe-free image (``original - truth``, flat-fielded or not):
        sources are found on it with the tiered mask of ``preset``, so the
        metric does not depend on the mask of the correction being judged.
    dq : ndarray, optional
        The product's DQ (pixels with :data:`young.DEFAULT_BAD_BITS` are out).
    truth_dq : ndarray, optional
        The truth file's DQ (saturated ramps, cosmic rays, reference and bad
        pixels are out: the truth is approximate there).

    Returns
    -------
    ndarray of bool
    """
    bad = ~np.isfinite(clean) | dq_bad(dq, DEFAULT_BAD_BITS, clean.shape)
    bad |= fnoise.reference_pixels(clean.shape, dq)
    if truth_dq is not None:
        bad |= np.asarray(truth_dq) != 0
    src = masks.tiered_source_mask(np.where(bad, np.nan, clean), None, masks.params_for(preset))
    return ~(src | bad)
