"""Tiered source masks (after Ferguson's CEERS background code).

One function, :func:`tiered_source_mask`, shared by the 1/f, wisp and
background corrections: subtract a local background (ring median filter),
then for a list of tiers of Gaussian smoothing detect sources above
``nsigma`` times the robust pixel rms with a minimum area, optionally dilate
each tier's detections, and OR the tiers.  Pixels flagged in DQ and non-finite
pixels are always masked.  The parameters come in two presets (see
docs/algorithms.md):

``young``  aggressive (1.5 sigma, large dilations) -- protects cluster light/ICL
``ceers``  Ferguson's CEERS defaults (3 sigma, only the last tier dilated)

The tiers are iterative as in the CEERS code: every tier replaces the pixels
already masked by the robust background level before smoothing, measures the
rms on the still-unmasked pixels, and excludes masked pixels from detection.

Pure functions over numpy arrays: no file I/O, no logging set-up.

Speed: the three operations that make the original slow are replaced by
equivalent cheaper ones, each explained where it is done: the ring median runs
on an 8 x 8 block-median image, the Gaussian smoothings are float32 FFT
convolutions (the wide tiers on block means, :func:`_smooth_binned`), and the
large circular dilations are octagons built from doubling shifts (see
:func:`dilate`).  Their timings are in docs/algorithms.md, "Source masks".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from astropy.convolution import Ring2DKernel
from astropy.stats import biweight_location, biweight_scale
from scipy import fft as sp_fft
from scipy import ndimage

from young.algorithms.dq import DEFAULT_BAD_BITS
from young.algorithms.dq import bad as dq_bad
from young.algorithms.stats import regular_sample

__all__ = [
    "MaskParams",
    "PRESETS",
    "params_for",
    "ring_median_background",
    "dilate",
    "tiered_source_mask",
    "extended_light_mask",
]

@dataclass(frozen=True)
class MaskParams:
    """Parameters of :func:`tiered_source_mask`.

    All lengths are in detector pixels.  The four ``tier_*`` tuples must have
    the same length (one entry per tier, widest smoothing first).

    Attributes
    ----------
    ring_radius_in, ring_width : float
        Inner radius and width of the ring median filter that estimates the
        local background (CEERS: 40 and 3).
    tier_kernel_size : tuple of float
        Gaussian smoothing sigma of each tier.
    tier_npixels : tuple of int
        Minimum connected area (8-connected, pixels) of a detection.
    tier_nsigma : tuple of float
        Detection threshold in units of the robust rms of the unsmoothed,
        ring-filtered image (the CEERS convention).
    tier_dilate_size : tuple of int
        Dilation radius of each tier's detections; 0 means none.
    dq_bits : int or str
        DQ bits that mask a pixel; an int or flag names such as
        ``"DO_NOT_USE,SATURATED"`` (see :func:`young.algorithms.dq.bad`).
    ring_block : int
        Block size of the downsampled image on which the ring median runs.
    max_samples : int
        Largest number of pixels used for each robust statistic (a regular
        subsample of the unmasked pixels; docs/algorithms.md, "Source masks",
        gives the statistical error of the default).
    """

    ring_radius_in: float = 40.0
    ring_width: float = 3.0
    tier_kernel_size: tuple = (25.0, 15.0, 5.0, 2.0)
    tier_npixels: tuple = (15, 10, 3, 1)
    tier_nsigma: tuple = (1.5, 1.5, 1.5, 1.5)
    tier_dilate_size: tuple = (33, 25, 21, 19)
    dq_bits: int | str = DEFAULT_BAD_BITS
    ring_block: int = 8
    max_samples: int = 2**16

    def __post_init__(self):
        n = len(self.tier_kernel_size)
        for name in ("tier_npixels", "tier_nsigma", "tier_dilate_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have {n} entries (one per tier)")
        if self.ring_block < 1:
            raise ValueError("ring_block must be >= 1")

    @property
    def ntiers(self) -> int:
        return len(self.tier_kernel_size)


PRESETS: dict[str, MaskParams] = {
    # YOUNG (Scofield/Joo): aggressive, protects intracluster light.
    "young": MaskParams(
        tier_nsigma=(1.5, 1.5, 1.5, 1.5),
        tier_npixels=(15, 10, 3, 1),
        tier_dilate_size=(33, 25, 21, 19),
    ),
    # CEERS (Ferguson's SubtractBackground defaults).
    "ceers": MaskParams(
        tier_nsigma=(3.0, 3.0, 3.0, 3.0),
        tier_npixels=(15, 15, 5, 2),
        tier_dilate_size=(0, 0, 0, 3),
    ),
    # For row and column statistics (the 1/f correction): the sources' light where it moves a median,
    # and little more -- every masked pixel is one fewer in the median (docs/algorithms.md, "Source masks").
    "compact": MaskParams(
        tier_nsigma=(2.0, 2.0, 2.0, 2.0),
        tier_npixels=(15, 15, 5, 2),
        tier_dilate_size=(3, 3, 2, 2),
    ),
}


def params_for(preset: str = "young", **overrides) -> MaskParams:
    """Return the parameters of a preset with some fields overridden.

    Parameters
    ----------
    preset : {'young', 'ceers'}
        Name of the preset.
    **overrides
        Any :class:`MaskParams` field, e.g. ``tier_nsigma=(2, 2, 2, 2)``.
        Sequences are stored as tuples.

    Returns
    -------
    MaskParams
    """
    try:
        base = PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown mask preset {preset!r}; choose one of {sorted(PRESETS)}"
        ) from None
    fields = {f.name for f in dataclasses.fields(MaskParams)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown mask parameter(s): {', '.join(sorted(unknown))}")
    clean = {k: tuple(v) if isinstance(v, (list, np.ndarray)) else v for k, v in overrides.items()}
    return dataclasses.replace(base, **clean)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _robust_level_rms(values: np.ndarray, good: np.ndarray, max_samples: int):
    """Biweight location and scale of the good pixels (a regular subsample)."""
    s = regular_sample(values, good, max_samples)
    if s.size < 10:
        return 0.0, np.inf
    s = s.astype(np.float64)
    loc = float(biweight_location(s, c=6.0))
    scale = float(biweight_scale(s, c=9.0, M=loc))
    return loc, scale


def _pad_to(a: np.ndarray, f: int, fill: float | None = None) -> np.ndarray:
    """``a`` padded at the high ends to a multiple of ``f`` (edge values, or ``fill``)."""
    ny, nx = a.shape
    py, px = (-ny) % f, (-nx) % f
    if py or px:
        if fill is None:
            a = np.pad(a, ((0, py), (0, px)), mode="edge")
        else:
            a = np.pad(a, ((0, py), (0, px)), constant_values=np.float32(fill))
    return a


def _block_reduce(a: np.ndarray, f: int, func: str, fill: float | None = None) -> np.ndarray:
    """Block mean or median over f x f blocks (padded to a multiple of f, see :func:`_pad_to`).

    The mean is a sum of strided views and the median sorts each block, both
    cheaper than numpy's ``mean`` / ``median`` over the 4-D block view
    (docs/algorithms.md, "Source masks").  NaN must have been replaced before.
    """
    if f == 1:
        return a.astype(np.float32, copy=True)
    a = _pad_to(np.asarray(a, dtype=np.float32), f, fill)
    ny, nx = a.shape
    if func == "mean":
        rows = a[0::f].copy()
        for i in range(1, f):
            rows += a[i::f]
        out = rows[:, 0::f].copy()
        for j in range(1, f):
            out += rows[:, j::f]
        out *= np.float32(1.0 / (f * f))
        return out
    b = np.sort(a.reshape(ny // f, f, nx // f, f).transpose(0, 2, 1, 3).reshape(ny // f, nx // f, f * f),
                axis=2)
    k = f * f
    return (0.5 * (b[..., (k - 1) // 2] + b[..., k // 2])).astype(np.float32)


def _upsample_axis(low: np.ndarray, f: int, axis: int, n_out: int) -> np.ndarray:
    """Linear interpolation between block centres along axis 0 or 1 (clamped at the ends).

    Returns a C-contiguous float32 array.
    """
    low = np.asarray(low, dtype=np.float32)
    if axis == 0:
        prev = np.concatenate([low[:1], low[:-1]])
        nxt = np.concatenate([low[1:], low[-1:]])
    else:
        prev = np.concatenate([low[:, :1], low[:, :-1]], axis=1)
        nxt = np.concatenate([low[:, 1:], low[:, -1:]], axis=1)
    down, up = prev - low, nxt - low     # value = low + |o| * (neighbour - low)
    ny, nx = low.shape
    out = np.empty((ny, f, nx) if axis == 0 else (ny, nx, f), dtype=np.float32)
    # Output pixel p of block j sits (p + 0.5) / f - 0.5 blocks from the centre of block j.
    for p in range(f):
        o = (p + 0.5) / f - 0.5
        dst = out[:, p, :] if axis == 0 else out[:, :, p]
        np.multiply(down if o < 0 else up, np.float32(abs(o)), out=dst)
        dst += low
    if axis == 0:
        return out.reshape(ny * f, nx)[:n_out]
    return out.reshape(ny, nx * f)[:, :n_out]


def _upsample(low: np.ndarray, f: int, shape: tuple) -> np.ndarray:
    """Bilinear upsampling of a block image (block centres) back to ``shape``.

    Hand-written separable form (one vectorised pass per sub-block phase):
    the same values as ``scipy.ndimage.zoom(order=1, grid_mode=True)``, at a
    fraction of its cost.
    """
    low = np.asarray(low, dtype=np.float32)
    if f == 1:
        return low[: shape[0], : shape[1]]
    # columns first (on the few block rows), then rows: the big pass writes whole rows
    return _upsample_axis(_upsample_axis(low, f, 1, shape[1]), f, 0, shape[0])


def ring_median_background(data: np.ndarray, bad: np.ndarray, radius_in: float = 40.0,
                           width: float = 3.0, block: int = 8,
                           fill: float | None = None) -> np.ndarray:
    """Local background by a ring median filter.

    The CEERS code runs ``scipy.ndimage.median_filter`` with a
    ``Ring2DKernel(40, 3)`` footprint (~780 pixels) at full resolution, which
    is slow on a full frame.  The ring median is a background estimate
    on a 40-px scale, so it is computed here on an image of ``block x block``
    block medians with a ring of inner radius ``radius_in / block`` and width
    ``max(width / block, 1)`` blocks, and bilinearly upsampled.  ``block=1``
    gives the exact original.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image (any units).
    bad : ndarray of bool, shape (ny, nx)
        Pixels not to use; they are replaced by ``fill`` first.
    radius_in, width : float
        Ring inner radius and width in pixels.
    block : int
        Downsampling block size.
    fill : float, optional
        Replacement value for bad pixels (default: biweight location of the
        good pixels).

    Returns
    -------
    ndarray of float32, shape (ny, nx)
        The background estimate.
    """
    data = np.asarray(data, dtype=np.float32)
    if fill is None:
        fill, _ = _robust_level_rms(data, ~bad, 2**16)
    filled = np.where(bad, np.float32(fill), data)
    low = _block_reduce(filled, block, "median")
    r_in = radius_in / block
    w = max(width / block, 1.0)
    footprint = Ring2DKernel(r_in, w).array > 0
    low_bg = ndimage.median_filter(low, footprint=footprint, mode="reflect")
    return _upsample(low_bg, block, data.shape).astype(np.float32, copy=False)


_SQUARE = ndimage.generate_binary_structure(2, 2)


def _or_shifted(acc: np.ndarray, t: int, dy: int, dx: int) -> np.ndarray:
    """``acc`` OR ``acc`` moved by ``t * (dy, dx)`` pixels (zero fill)."""
    sy, sx = t * dy, t * dx
    ny, nx = acc.shape
    out = acc.copy()
    out[max(sy, 0):ny + min(sy, 0), max(sx, 0):nx + min(sx, 0)] |= \
        acc[max(-sy, 0):ny + min(-sy, 0), max(-sx, 0):nx + min(-sx, 0)]
    return out


def _dilate_line(mask: np.ndarray, h: int, dy: int, dx: int) -> np.ndarray:
    """Dilate by the segment {k (dy, dx) : |k| <= h} (van Herk-style doubling).

    The OR over a window of L = 2h + 1 shifts is built from windows of 1, 2,
    4, ... shifts, so the cost is ~log2(L) whole-array ORs whatever h is.
    The caller pads the array so nothing is pushed off its edges.
    """
    if h <= 0:
        return mask
    L = 2 * h + 1
    acc, p = mask, 1
    while 2 * p <= L:
        acc = _or_shifted(acc, p, dy, dx)
        p *= 2
    if p < L:
        acc = _or_shifted(acc, L - p, dy, dx)
    # acc[x] = OR_{k=0..L-1} mask[x - k d]: move back by h to centre the window.
    sy, sx = -h * dy, -h * dx
    ny, nx = acc.shape
    out = np.zeros_like(acc)
    out[max(sy, 0):ny + min(sy, 0), max(sx, 0):nx + min(sx, 0)] = \
        acc[max(-sy, 0):ny + min(-sy, 0), max(-sx, 0):nx + min(-sx, 0)]
    return out


def _octagon_sizes(radius: float) -> tuple[int, int]:
    """Diamond and square radii (a, b) of the octagon standing in for a disk.

    square(b) + diamond(a) is an octagon with inradius a + b (on the axes) and
    vertices at (a + b, b); it is regular for a = sqrt(2) b.  The inradius is
    set to 0.961 r, between equal area (0.974 r) and equal mean width
    (0.948 r, which sets the area added around large masked regions).
    """
    rho = 0.961 * radius
    b = int(round(rho / (1.0 + np.sqrt(2.0))))
    return int(round(rho - b)), b


_EXACT_BELOW = 6.0


def _dilate_small_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Exact dilation by the disk x^2 + y^2 <= radius^2 (small radii).

    The disk is the union of the rectangles [-w(h), w(h)] x [-h, h] at its
    "corners" (rows h where the half-width w drops), each rectangle a
    horizontal and a vertical line dilation.
    """
    r = int(np.floor(radius))
    w = np.floor(np.sqrt(np.maximum(radius**2 - np.arange(r + 1) ** 2, 0))).astype(int)
    pad = r + 1
    big = np.pad(mask, pad)
    out = np.zeros_like(big)
    for h in range(r + 1):
        if h == r or w[h + 1] < w[h]:
            out |= _dilate_line(_dilate_line(big, int(w[h]), 0, 1), h, 1, 0)
    return out[pad:-pad, pad:-pad]


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate a boolean mask by (approximately) a disk of the given radius.

    Exact circular dilation is slow for the radii used here (up to 33 px),
    whether by ``binary_dilation`` with a 67 x 67 footprint (photutils'
    ``make_source_mask(footprint=circular_footprint(33))``) or by
    ``distance_transform_edt``.  The disk is replaced by
    a regular octagon (radii >= 6; smaller disks are done exactly as a union
    of rectangles), the Minkowski sum of a square of radius ``b`` and a
    diamond (L1 ball) of radius ``a`` with ``a + b = 0.961 radius`` and
    ``a = sqrt(2) b`` (see :func:`_octagon_sizes`): its radial extent is within
    -4 % / +4 % of the disk's (+-1.3 px at radius 33), its area and mean
    width within 2.5 %.  The square and the
    diamond are themselves sums of line segments (horizontal, vertical, two
    diagonals, and a 3x3 cross for the diamond's odd/even parity), each done
    with doubling shifts, so the cost does not grow with the radius
    (docs/algorithms.md, "Source masks", has the timings).

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
        Pixels to grow.
    radius : float
        Disk radius in pixels; <= 0 returns a copy.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    if radius < _EXACT_BELOW:
        return _dilate_small_disk(mask, radius)
    a, b = _octagon_sizes(radius)
    pad = a + b + 1
    out = np.pad(mask, pad)
    out = _dilate_line(out, b, 0, 1)
    out = _dilate_line(out, b, 1, 0)
    if a > 0:
        m = (a - 1) // 2  # diag1(m) + diag2(m) + cross = diamond of radius 2m + 1
        out = _dilate_line(out, m, 1, 1)
        out = _dilate_line(out, m, 1, -1)
        for _ in range(1 + a - (2 * m + 1)):
            grown = out.copy()
            grown[1:] |= out[:-1]
            grown[:-1] |= out[1:]
            grown[:, 1:] |= out[:, :-1]
            grown[:, :-1] |= out[:, 1:]
            out = grown
    return out[pad:-pad, pad:-pad]


def _gauss_transfer(n: int, sigma: float, real: bool) -> np.ndarray:
    freq = sp_fft.rfftfreq(n) if real else sp_fft.fftfreq(n)
    return np.exp(-2.0 * (np.pi * sigma * freq) ** 2).astype(np.float32)


def _smooth(img: np.ndarray, sigma: float, fill: float = 0.0) -> np.ndarray:
    """Gaussian smoothing by FFT, outside the image filled with ``fill``.

    The CEERS code uses ``astropy.convolution.convolve_fft`` with a
    ``Gaussian2DKernel`` (boundary 'fill'); this is the same convolution done
    directly with ``scipy.fft`` in float32 with the kernel's analytic transfer
    function, whose cost does not depend on sigma (``gaussian_filter``'s grows
    with it).  The image is padded by 4 sigma (circular wrap-around then only
    sees ``fill``).
    """
    ny, nx = img.shape
    pad = int(np.ceil(4.0 * sigma))
    sy = sp_fft.next_fast_len(ny + pad, real=True)
    sx = sp_fft.next_fast_len(nx + pad, real=True)
    buf = np.full((sy, sx), fill, dtype=np.float32)
    buf[:ny, :nx] = img
    spec = sp_fft.rfft2(buf, workers=1, overwrite_x=True)
    spec *= _gauss_transfer(sy, sigma, real=False)[:, None]
    spec *= _gauss_transfer(sx, sigma, real=True)[None, :]
    return sp_fft.irfft2(spec, s=(sy, sx), workers=1, overwrite_x=True)[:ny, :nx]


#: smallest smoothing sigma per binning factor: a tier of sigma s is smoothed on
#: f x f block means for the largest power of two f <= s / _BIN_RATIO.
_BIN_RATIO = 2.5


def _bin_factor(sigma: float, shape: tuple) -> int:
    f = 1
    while 2 * f <= sigma / _BIN_RATIO and min(shape) >= 16 * 2 * f:
        f *= 2
    return f


def _smooth_binned(img: np.ndarray, sigma: float, fill: float = 0.0) -> np.ndarray:
    """:func:`_smooth` of a wide kernel, computed on ``f x f`` block means.

    A Gaussian of sigma >= 5 px hardly changes within a few pixels, so the
    wide tiers (sigma 25, 15, 5 -> f = 8, 4, 2) are smoothed on the block-mean
    image, which makes their FFTs 64 / 16 / 4 times smaller, and bilinearly
    interpolated back between block centres (so nothing moves: the
    misaligned "repeat" upsampling moves sources by half a block).  The block
    mean is a box of variance (f^2 - 1) / 12 and the linear interpolation
    adds f^2 / 6 on average over the sub-block phase; the low-resolution
    kernel is narrowed by both, so the net smoothing is the requested
    Gaussian (its difference from :func:`_smooth`: docs/algorithms.md,
    "Source masks").  Edges: partial blocks are filled with ``fill``, like
    the outside of the image.
    """
    f = _bin_factor(sigma, img.shape)
    if f == 1:
        return _smooth(img, sigma, fill)
    low = _block_reduce(img, f, "mean", fill)
    s_low = np.sqrt(max(sigma**2 - (f * f - 1) / 12.0 - f * f / 6.0, 0.25)) / f
    return _upsample(_smooth(low, s_low, fill), f, img.shape)


def _detect(smoothed: np.ndarray, threshold: float, npixels: int,
            exclude: np.ndarray) -> np.ndarray:
    """Pixels of 8-connected segments above ``threshold`` with >= npixels.

    Same as ``photutils.segmentation.detect_sources(...).data > 0`` with
    ``mask=exclude``, hand-written (``ndimage.label`` + ``bincount`` of the
    detected pixels) because photutils also relabels and keeps books the mask
    does not need.
    """
    above = smoothed > threshold
    above &= ~exclude
    if npixels <= 1:
        return above
    # Sizes and the lookup only over the detected pixels (a few % of the
    # frame), not over the labels of the whole frame.
    labels, n = ndimage.label(above, structure=_SQUARE)
    if n == 0:
        return above
    fg = labels[above].astype(np.intp)
    keep = np.bincount(fg, minlength=n + 1) >= npixels
    if keep[1:].all():
        return above
    above[above] = keep[fg]
    return above


# --------------------------------------------------------------------------
# the mask
# --------------------------------------------------------------------------


def tiered_source_mask(data: np.ndarray, dq: np.ndarray | None = None,
                       params: MaskParams | str | None = None,
                       return_tiers: bool = False):
    """Tiered source mask of an image.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image, e.g. a rate or cal SCI array (any units; flat-fielded data give
        the best masks).  Non-finite values are masked.
    dq : ndarray of int, shape (ny, nx), optional
        Data quality; pixels with any of ``params.dq_bits`` are masked.
    params : MaskParams or str, optional
        Parameters or a preset name (default ``'young'``).
    return_tiers : bool
        Also return the per-tier detection masks (after dilation).

    Returns
    -------
    mask : ndarray of bool, shape (ny, nx)
        True for source or bad pixels.
    tiers : list of ndarray of bool
        Only with ``return_tiers``: the pixels added by each tier.

    Notes
    -----
    For each tier: the rms and level are the biweight scale and location of
    the unmasked pixels of the ring-filtered image; masked pixels are replaced
    by the level; the image is smoothed with a Gaussian of ``tier_kernel_size``
    and pixels more than ``tier_nsigma * rms`` above the level, in segments of
    at least ``tier_npixels`` pixels and outside the current mask, are
    detected, dilated by ``tier_dilate_size`` and added to the mask.
    """
    if params is None:
        params = PRESETS["young"]
    elif isinstance(params, str):
        params = params_for(params)
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    if dq is not None and np.shape(dq) != data.shape:
        raise ValueError(f"dq shape {np.shape(dq)} differs from data shape {data.shape}")

    bad = ~np.isfinite(data) | dq_bad(dq, params.dq_bits, data.shape)
    if bad.all():
        return (bad, []) if return_tiers else bad
    img = np.asarray(data, dtype=np.float32)
    bkg = ring_median_background(img, bad, params.ring_radius_in, params.ring_width,
                                 params.ring_block)
    img = img - bkg  # finite wherever ~bad

    mask = bad.copy()
    tiers = []
    for sigma, npix, nsig, rdil in zip(params.tier_kernel_size, params.tier_npixels,
                                        params.tier_nsigma, params.tier_dilate_size):
        level, rms = _robust_level_rms(img, ~mask, params.max_samples)
        if not np.isfinite(rms) or rms <= 0:
            break
        filled = np.where(mask, np.float32(level), img)
        smoothed = _smooth_binned(filled, float(sigma), level)
        det = _detect(smoothed, level + nsig * rms, int(npix), mask)
        if rdil and rdil > 0:
            det = dilate(det, float(rdil))
        if return_tiers:
            tiers.append(det & ~mask)
        mask |= det
    return (mask, tiers) if return_tiers else mask


def _block_nanmedian(a: np.ndarray, f: int, min_fraction: float) -> np.ndarray:
    """Median of the finite pixels of each full f x f block (NaN with fewer than ``min_fraction`` of them).

    The sort puts NaN last, so the median of a block's ``n`` finite values is
    read at ``(n - 1) // 2`` and ``n // 2`` (cheaper than ``np.nanmedian`` over
    the blocks).  Partial blocks at the high edges are left out.
    """
    ny, nx = a.shape[0] // f, a.shape[1] // f
    b = np.sort(np.asarray(a[: ny * f, : nx * f], dtype=np.float32)
                .reshape(ny, f, nx, f).transpose(0, 2, 1, 3).reshape(ny, nx, f * f), axis=2)
    n = np.isfinite(b).sum(axis=2)
    lo = np.take_along_axis(b, np.maximum(n - 1, 0)[..., None] // 2, axis=2)[..., 0]
    hi = np.take_along_axis(b, (n // 2)[..., None], axis=2)[..., 0]
    med = 0.5 * (lo + np.where(n > 0, hi, np.nan))
    return np.where(n >= max(1, min_fraction * f * f), med, np.nan).astype(np.float32)


def extended_light_mask(image: np.ndarray, mask: np.ndarray, block: int = 32, nsigma: float = 3.0,
                        smooth: float = 1.5, min_blocks: int = 4, grow: float = 1.0,
                        min_grid: int = 8) -> np.ndarray:
    """Smooth extended light (intracluster light, large galaxy haloes) that the tiered mask misses.

    The tiered mask subtracts a 40-pixel ring median before detecting, so light
    that is smooth on larger scales never reaches its thresholds.  Here the
    median of the unmasked pixels of every ``block`` x ``block`` block is
    compared with the image's own robust level: the block image is smoothed
    with a Gaussian of ``smooth`` blocks (normalised over the usable blocks),
    and blocks whose significance (against the robust block scatter carried
    through the smoothing, block by block, so edges count right; or against
    the significances' own scatter where that is larger) exceeds ``nsigma``,
    in groups of at least ``min_blocks``, are
    detected, and each group grows by ``grow`` times its own equivalent radius
    (the detection finds the bright core; the wings are as wide again).

    For the 1/f correction ``image`` should be roughly destriped first (row
    stripes are not extended light); the scatter it measures then is the 1/f
    noise that varies along a row plus the pixel noise.  What this tier saves
    an extended source from the 1/f correction is in docs/algorithms.md,
    "Source masks".

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Image (NaN where unusable).
    mask : ndarray of bool
        Pixels already masked (compact sources, bad pixels): left out of the
        block medians.
    block, nsigma, smooth, min_blocks, grow : see above.
    min_grid : int
        Images with fewer blocks than this along either axis are too small to
        tell extended light from the sky: nothing is masked.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        The extended-light pixels (not including ``mask``).
    """
    image = np.asarray(image)
    out = np.zeros(image.shape, dtype=bool)
    if min(image.shape) // block < min_grid:
        return out
    # every other row and column: the noise of a block median then is ~2.5 / block pixel sigmas, still
    # below the 1/f that varies along rows (the scatter that sets the threshold), at a quarter of the sort
    sub = (slice(None, None, 2), slice(None, None, 2))
    blocks = _block_nanmedian(np.where(mask[sub], np.nan, image[sub]), block // 2, 0.25)
    usable = np.isfinite(blocks)
    if usable.sum() < min_grid * min_grid:
        return out
    v = blocks[usable].astype(np.float64)
    level = float(biweight_location(v))
    rms = float(biweight_scale(v, M=level))
    if not np.isfinite(rms) or rms <= 0:
        return out
    # normalised convolution (zero outside the image and on unusable blocks): its value is
    # sum(k u b) / sum(k u) and, for independent blocks, its noise rms sqrt(sum(k^2 u)) / sum(k u),
    # so the significance is sum(k u b) / (rms sqrt(sum(k^2 u))); k^2 is a Gaussian of
    # smooth / sqrt(2) over 4 pi smooth^2
    u = usable.astype(np.float64)
    weight = ndimage.gaussian_filter(u, smooth, mode="constant")
    smoothed = ndimage.gaussian_filter(np.where(usable, blocks - level, 0.0), smooth, mode="constant")
    k2 = ndimage.gaussian_filter(u, smooth / np.sqrt(2.0), mode="constant") / (4 * np.pi * smooth ** 2)
    signif = smoothed / (rms * np.sqrt(np.maximum(k2, 1e-9)))
    # blocks are not independent where the 1/f varies along rows: the significances' own scatter then
    # exceeds 1 and sets the threshold
    spread = max(1.0, float(biweight_scale(signif[usable])))
    det = (signif > nsigma * spread) & (weight > 0.25)
    labels, n = ndimage.label(det, structure=np.ones((3, 3)))
    if n == 0:
        return out
    sizes = ndimage.sum_labels(det, labels, index=np.arange(1, n + 1))
    low = np.zeros(det.shape, dtype=bool)
    for k in np.flatnonzero(sizes >= min_blocks):  # each group grows by its own size
        core = labels == k + 1
        low |= ndimage.distance_transform_edt(~core) <= grow * np.sqrt(sizes[k] / np.pi)
    ny, nx = low.shape
    out[: ny * block, : nx * block] = np.repeat(np.repeat(low, block, axis=0), block, axis=1)
    if out.shape[0] > ny * block:  # the partial edge blocks follow their neighbours
        out[ny * block:] = out[ny * block - 1]
    if out.shape[1] > nx * block:
        out[:, nx * block:] = out[:, nx * block - 1: nx * block]
    return out & ~mask
