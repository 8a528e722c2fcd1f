"""1/f noise: the parameters, the diagnostics record and the geometry both measurement methods share.

Pure functions over numpy arrays; :mod:`young.algorithms.fnoise` is the
entry point (:func:`young.algorithms.fnoise.correct`), the methods are
:func:`young.algorithms.fnoise.measure_amp` and
:func:`young.algorithms.fnoise_gradient.measure_gradient`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from young.algorithms.dq import DEFAULT_BAD_BITS, REFERENCE_PIXEL
from young.algorithms.dq import bad as dq_bad

METHODS = ("amp", "gradient")
FULL_FRAME = (2048, 2048)


@dataclass(frozen=True)
class FnoiseParams:
    """Parameters of the 1/f corrections (docs/algorithms.md, "1/f noise").

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
        expected errors takes the full-row value; 0 disables (why 6:
        docs/algorithms.md, "1/f noise").
    fallback_interp : bool
        ``amp``: add to the fallback value the amplifier's deviation from the
        full row interpolated from the neighbouring rows that did not fall
        back (False: the constant amplifier offset only).
    fallback_blend : bool
        ``amp``: for rows that fall back only because they are mostly masked,
        combine the amplifier's own median and the fallback value with
        inverse-variance weights (noise error vs. the amplifiers' independent
        1/f rms ``tau``); False uses the fallback value alone (the seed).
    row_segments : int
        ``amp``: segments per amplifier row for the along-row term
        (:func:`young.algorithms.fnoise.along_row_pattern`); 1 disables.
    columns : bool
        Also measure and subtract the column pattern.
    min_column_pixels : int
        Columns with fewer unmasked pixels get no column correction (see
        :func:`young.algorithms.fnoise.column_pattern`).
    bright_percentile : float
        ``gradient``: pixels above this percentile of the image are excluded
        from the difference medians.
    diff_clip_sigma, diff_clip_maxiters : float, int
        ``gradient``: clipping of the difference medians (default none: a
        plain median; the percentile cut already removes bright pixels, and
        clipping makes each step of the integrated profile noisier).
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
    row_segments: int = 8
    columns: bool = True
    min_column_pixels: int = 32
    bright_percentile: float = 98.0
    diff_clip_sigma: float = 3.0
    diff_clip_maxiters: int = 0
    grad_mask_thresh: float = 0.75
    anchor_step: int = 4
    hp_scale: float = 32.0
    anchor_estimator: str = "mode"
    mode_width: float = 1.5
    mode_start: str = "hsm"
    mask_preset: str = "compact"
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
    along_rows: np.ndarray | None = None       # (ny, nx) along-row term (amp), measured units
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


def amp_segments(a: np.ndarray, slices: list[slice]) -> np.ndarray:
    """(ny, nx) -> (ny, namp, w) view/copy of equal-width amplifier blocks."""
    start, stop = slices[0].start, slices[-1].stop
    w = slices[0].stop - slices[0].start
    return a[:, start:stop].reshape(a.shape[0], len(slices), w)


def expand_amps(per_amp: np.ndarray, slices: list[slice], nx: int) -> np.ndarray:
    """(ny, namp) -> (ny, nx) with each amplifier's value over its columns."""
    out = np.zeros((per_amp.shape[0], nx), dtype=np.float32)
    for k, sl in enumerate(slices):
        out[:, sl] = per_amp[:, k : k + 1]
    return out


def fill_missing(pattern: np.ndarray):
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
