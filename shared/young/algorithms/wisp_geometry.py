"""Where a wisp is: the template's significant region, subarray cuts, and long-wave masks on short-wave pixels.

Geometry for the wisp fit (:mod:`young.algorithms.wisp`): pure functions on
arrays and WCS objects (anything callable as ``wcs(x, y)`` with an
``invert``), no files.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.interpolate import RectBivariateSpline

from young.algorithms.masks import dilate

__all__ = ["template_region", "pixel_mapper", "map_mask", "cut_template"]


def _check_2d(name: str, a: np.ndarray) -> None:
    if np.ndim(a) != 2:
        raise ValueError(f"wisp: {name} must be a 2-D image, got shape {tuple(np.shape(a))}")


def template_region(template: np.ndarray, nsigma: float = 2.0, smooth: float = 3.0) -> np.ndarray:
    """Pixels where the wisp template is significant.

    Parameters
    ----------
    template : ndarray, shape (ny, nx)
        Wisp template (units of the science data, e.g. MJy/sr).  Non-finite
        pixels are never in the region.
    nsigma : float
        Threshold above the template median in units of its robust standard
        deviation.
    smooth : float
        Gaussian sigma (pixels) of the copy of the template that is compared
        with the threshold; 0 compares the template itself (the baseline).
        The v3 templates are stacks with pixel noise: selecting on the noisy
        pixels keeps those whose noise is high near the threshold, which
        biases the fitted scale (docs/algorithms.md, "Wisps").  Only the
        selection is smoothed, never the fitted template.

    Returns
    -------
    region : ndarray of bool, shape (ny, nx)
        ``smoothed(template) > median + nsigma * sigma`` with median and
        ``sigma`` (1.4826 MAD) of the finite template pixels.  The baseline
        used a 3-sigma-clipped std; the MAD gives the same threshold on a
        template that is mostly empty, in one pass.
    """
    _check_2d("template", template)
    t = np.asarray(template, dtype=np.float32)
    finite = np.isfinite(t)
    values = t[finite]
    if values.size == 0:
        return np.zeros(t.shape, dtype=bool)
    med = np.median(values)
    sigma = 1.482602218505602 * np.median(np.abs(values - med))
    if smooth and smooth > 0:
        from scipy.ndimage import gaussian_filter

        t = gaussian_filter(np.where(finite, t, med), float(smooth), mode="nearest")
    return finite & (t > med + nsigma * sigma)


def pixel_mapper(sw_wcs: Any, lw_wcs: Any) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """Function mapping short-wave pixel coordinates to long-wave ones.

    Parameters
    ----------
    sw_wcs, lw_wcs : gwcs.wcs.WCS or astropy.wcs.WCS
        WCS of the short-wave and the long-wave exposure (pixel -> sky).
        gwcs objects (``model.meta.wcs`` of a ``_cal``) are evaluated without
        their bounding boxes, so the mapping is smooth everywhere and pixels
        falling off the LW detector are dealt with by :func:`map_mask`; any
        other object must offer the APE 14 ``pixel_to_world_values`` /
        ``world_to_pixel_values`` methods.

    Returns
    -------
    sw_to_lw : callable
        ``sw_to_lw(x, y) -> (x_lw, y_lw)``: 0-based pixel coordinates (pixel
        centres at integers), vectorised over arrays of any shape.
    """

    def _is_gwcs(wcs) -> bool:
        # a gwcs WCS is called and inverted without its bounding box (pixels off the
        # detector must map too); any other WCS answers the astropy APE 14 interface
        return callable(wcs) and hasattr(wcs, "invert")

    def _forward(wcs, x, y):
        if _is_gwcs(wcs):
            return wcs(x, y, with_bounding_box=False)
        return wcs.pixel_to_world_values(x, y)

    def _inverse(wcs, a, d):
        if _is_gwcs(wcs):
            return wcs.invert(a, d, with_bounding_box=False)
        return wcs.world_to_pixel_values(a, d)

    def sw_to_lw(x, y):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ra, dec = _forward(sw_wcs, x, y)
        xl, yl = _inverse(lw_wcs, ra, dec)
        return np.asarray(xl, dtype=float), np.asarray(yl, dtype=float)

    return sw_to_lw


def map_mask(
    lw_mask: np.ndarray,
    sw_to_lw: Callable[[np.ndarray, np.ndarray], tuple],
    sw_shape: tuple[int, int],
    dilate_px: float = 3,
    step: int = 16,
) -> np.ndarray:
    """Resample a long-wave source mask onto the short-wave pixel grid.

    Every SW pixel centre is mapped into the LW frame and takes the value of
    the LW pixel it falls in (nearest neighbour).  Pulling SW pixels back,
    rather than pushing LW pixels forward as the baseline did, leaves no holes
    even though an LW pixel (0.063") covers about 2x2 SW pixels (0.031").

    Parameters
    ----------
    lw_mask : ndarray of bool, shape (ny_lw, nx_lw)
        Source mask of the long-wave exposure, ``True`` = source.
    sw_to_lw : callable
        ``(x_sw, y_sw) -> (x_lw, y_lw)``, 0-based pixel coordinates,
        vectorised (see :func:`pixel_mapper`).
    sw_shape : (int, int)
        Shape ``(ny, nx)`` of the short-wave image.
    dilate_px : float
        Radius (SW pixels) of the disk the mapped mask is dilated by
        (:func:`young.algorithms.masks.dilate`), to cover
        the nearest-neighbour rounding (<= 0.5 LW px = 1 SW px) and the wider
        wings of sources at shorter wavelengths.  0 disables it.
    step : int
        The mapping is evaluated exactly on a grid every ``step`` SW pixels
        and interpolated in between with a bicubic spline: the SW->LW map is
        a smooth distortion polynomial, so the interpolation error is far
        below 0.01 px while a full-frame gwcs evaluation (4 M pixels through
        the distortion and its inverse) would be slow.  If the mapper
        returns non-finite values on that grid every pixel is mapped exactly.

    Returns
    -------
    sw_mask : ndarray of bool, shape ``sw_shape``
        ``True`` where the SW pixel sees an LW-masked pixel.  SW pixels that
        fall outside the LW detector are ``False`` (no information).
    """
    _check_2d("lw_mask", lw_mask)
    lw_mask = np.asarray(lw_mask, dtype=bool)
    ny, nx = (int(n) for n in sw_shape)
    step = max(int(step), 1)
    ys = np.unique(np.r_[0:ny:step, ny - 1]).astype(float)
    xs = np.unique(np.r_[0:nx:step, nx - 1]).astype(float)
    x_lw = y_lw = None
    if min(ys.size, xs.size) >= 2 and (ys.size, xs.size) != (ny, nx):
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        cx, cy = (np.asarray(c, dtype=float) for c in sw_to_lw(gx, gy))
        if np.all(np.isfinite(cx)) and np.all(np.isfinite(cy)):
            ky, kx = min(3, ys.size - 1), min(3, xs.size - 1)
            yy, xx = np.arange(ny, dtype=float), np.arange(nx, dtype=float)
            x_lw = RectBivariateSpline(ys, xs, cx, kx=kx, ky=ky)(yy, xx)
            y_lw = RectBivariateSpline(ys, xs, cy, kx=kx, ky=ky)(yy, xx)
    if x_lw is None:  # tiny image or non-finite nodes: map every pixel exactly
        yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
        x_lw, y_lw = (np.asarray(c, dtype=float) for c in sw_to_lw(xx, yy))

    ny_lw, nx_lw = lw_mask.shape
    ok = np.isfinite(x_lw) & np.isfinite(y_lw)
    ix = np.full((ny, nx), -1, dtype=np.int64)
    iy = np.full((ny, nx), -1, dtype=np.int64)
    ix[ok] = np.floor(x_lw[ok] + 0.5).astype(np.int64)
    iy[ok] = np.floor(y_lw[ok] + 0.5).astype(np.int64)
    inside = ok & (ix >= 0) & (ix < nx_lw) & (iy >= 0) & (iy < ny_lw)
    sw_mask = np.zeros((ny, nx), dtype=bool)
    sw_mask[inside] = lw_mask[iy[inside], ix[inside]]
    if dilate_px and dilate_px > 0:
        sw_mask = dilate(sw_mask, dilate_px)  # the masks module's disk dilation
    return sw_mask


# --------------------------------------------------------------------------
# row pattern (temporary, for the fit only)


def cut_template(
    template_full: np.ndarray, xstart: int, ystart: int, xsize: int, ysize: int
) -> np.ndarray:
    """Cut the subarray of a full-frame template.

    Parameters
    ----------
    template_full : ndarray, shape (2048, 2048)
        Full-frame template.
    xstart, ystart : int
        1-based first column / row of the subarray in full-frame pixels
        (``meta.subarray.xstart`` / ``ystart``, FITS ``SUBSTRT1/2``).
    xsize, ysize : int
        Subarray width / height (``SUBSIZE1/2``).

    Returns
    -------
    template : ndarray, shape (ysize, xsize)
        A copy of ``template_full[ystart-1:ystart-1+ysize, xstart-1:xstart-1+xsize]``.

    Raises
    ------
    ValueError
        The template is not 2-D or the subarray does not fit inside it.
    """
    _check_2d("template", template_full)
    ny, nx = np.shape(template_full)
    xstart, ystart, xsize, ysize = (int(v) for v in (xstart, ystart, xsize, ysize))
    if (
        xstart < 1
        or ystart < 1
        or xsize < 1
        or ysize < 1
        or xstart - 1 + xsize > nx
        or ystart - 1 + ysize > ny
    ):
        raise ValueError(
            f"wisp: subarray x {xstart}..{xstart + xsize - 1}, y {ystart}..{ystart + ysize - 1} "
            f"(1-based) does not fit the {nx}x{ny} template"
        )
    return np.array(template_full[ystart - 1 : ystart - 1 + ysize, xstart - 1 : xstart - 1 + xsize])
