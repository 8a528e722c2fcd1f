"""What the 1/f measurement must not see: sources, extended light and the wisp.

Preparation for :func:`young.algorithms.fnoise.correct` (pure functions on
arrays, like it): the measurement mask is the tiered source mask of a roughly
destriped image (:func:`rough_destripe`, :func:`measurement_mask`), and on the
wisp detectors the wisp's scale is fitted first so that its smooth light is not
taken for stripes (:func:`provisional_wisp_scale`).  docs/algorithms.md
("1/f noise") explains why each is needed.
"""

from __future__ import annotations

import numpy as np

from young.algorithms import fnoise, masks
from young.algorithms.dq import bad as dq_bad
from young.algorithms.stats import clipped_median
from young.algorithms.wisp import fit_scale

__all__ = ["rough_destripe", "measurement_mask", "provisional_wisp_scale"]


def rough_destripe(image: np.ndarray, bad: np.ndarray, noutputs: int) -> np.ndarray:
    """``image`` minus a quick per-amplifier row level (3-sigma clipped median of the row's good pixels).

    Only for building the source mask: with the stripes left in, the tiered
    mask's wide tiers detect bright stripe bands as sources and mask exactly
    the rows that need measuring (docs/algorithms.md, "1/f noise", has what
    this gains).
    """
    slices = fnoise.amp_slices(image.shape[1], noutputs)
    x = np.where(bad, np.nan, image).astype(np.float32)
    # every other column: the level is only for the mask, whose tiers threshold at 1.5 sigma of
    # the raw pixels; its noise (1.25 sigma / sqrt(w / 2) per amplifier row) stays far below
    level = clipped_median(fnoise.amp_segments(x, slices)[:, :, ::2], 3.0, 3).median     # (ny, namp)
    level = np.where(np.isfinite(level), level, 0.0).astype(np.float32)
    return np.asarray(image, dtype=np.float32) - fnoise.expand_amps(level, slices, image.shape[1])


def measurement_mask(data: np.ndarray, dq: np.ndarray, flat: np.ndarray | None, fp: fnoise.FnoiseParams,
                noutputs: int = 4, extended: bool = False, wisp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The measurement mask: tiered source mask of the roughly destriped measured image.

    With ``extended`` the smooth extended light (:func:`young.algorithms.masks.extended_light_mask`) is
    masked too, unless ``wisp`` says a wisp model will be subtracted first (the caller then
    masks extended light on the image without the wisp).

    Same exclusions as :func:`young.algorithms.fnoise.correct` makes without a mask
    (DQ ``fp.dq_bits``, non-finite, reference pixels), but the sources are
    detected after :func:`rough_destripe`.

    Returns
    -------
    source : ndarray of bool
        Tiered source mask (``fp.mask_preset``), bad pixels included.
    bad : ndarray of bool
        DQ-flagged, non-finite and reference pixels.
    """
    meas = fnoise.measured_image(data, flat)
    bad = ~np.isfinite(meas) | dq_bad(dq, fp.dq_bits, data.shape) \
        | fnoise.reference_pixels(data.shape, dq, fp.ref_border)
    mparams = masks.params_for(fp.mask_preset, **fp.mask_overrides)
    img = rough_destripe(meas, bad, noutputs)
    source = masks.tiered_source_mask(np.where(bad, np.nan, img), None, mparams)
    if extended and not wisp:
        source |= masks.extended_light_mask(img, source)
    return source, bad




def _row_means(image: np.ndarray, use: np.ndarray, noutputs: int, min_pixels: int = 20) -> np.ndarray:
    """Mean of each amplifier row over the ``use`` pixels, on the image's grid (0 where too few)."""
    out = np.zeros(image.shape, np.float32)
    for sl in fnoise.amp_slices(image.shape[1], noutputs):
        u = use[:, sl]
        n = u.sum(axis=1)
        tot = np.where(u, image[:, sl], 0.0).sum(axis=1, dtype=np.float64)
        out[:, sl] = np.where(n >= min_pixels, tot / np.maximum(n, 1), 0.0).astype(np.float32)[:, None]
    return out


def provisional_wisp_scale(image: np.ndarray, template: np.ndarray, mask: np.ndarray, region: np.ndarray,
                           noutputs: int) -> float:
    """Scale of the wisp in ``image``, fitted so that 1/f stripes cannot bias it.

    Why: a wisp is smoother than the tiered mask's 40-pixel ring filter, so the
    mask does not see it, and per-amplifier row medians take the part of it
    that is constant along an amplifier row for stripes, and young-wisp then
    finds little wisp left to fit.  Masking the template region instead
    fails where the region fills whole amplifier rows (the full-row fallback
    then has nothing left).  Here image and template both lose their mean
    over the same unmasked pixels of each amplifier row: linear, so any
    stripe pattern cancels exactly and the noise does not bias the scale
    (row *medians* do: a median of wisp + noise is not the wisp's median);
    sources are excluded by ``mask``.  Then
    :func:`young.algorithms.wisp.fit_scale` (biweight scatter, bounded search)
    fits the scale over the template region.  The 1/f pattern is measured on
    ``image - scale * template``; the wisp itself is left for young-wisp.
    """
    use = ~mask & np.isfinite(image) & np.isfinite(template)
    d = np.where(use, image - _row_means(image, use, noutputs), np.nan).astype(np.float32)
    t = (template - _row_means(template, use, noutputs)).astype(np.float32)
    scale, _, _ = fit_scale(d, t, ~use, region, correct_rows=False, bounds=(0.0, 3.0))
    return float(scale)
