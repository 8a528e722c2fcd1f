"""The one output grid every filter shares: reading it from a mosaic, saving it for resample, checking it.

The reference group's mosaic fixes the grid; its gwcs is saved as an ASDF
``output_wcs`` (:func:`save_grid`) that resample uses for every other group,
and every finished mosaic is checked against it (:func:`check_same_grid`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class Grid:
    """A mosaic grid, as resample's custom-WCS parameters.

    Attributes
    ----------
    crpix : tuple of float
        0-based pixel (x, y) of the reference point (resample's ``crpix``).
    crval : tuple of float
        (RA, Dec) of the reference point (deg).
    rotation : float
        Position angle of the image +y axis east of north (deg), resample's ``rotation``.
    pixel_scale : float
        arcsec per pixel.
    shape : tuple of int
        (ny, nx); resample's ``output_shape`` is (nx, ny).
    """

    crpix: tuple[float, float]
    crval: tuple[float, float]
    rotation: float
    pixel_scale: float
    shape: tuple[int, int]

    def resample_parameters(self) -> dict[str, Any]:
        """The equivalent resample step parameters."""
        return {"crpix": list(self.crpix), "crval": list(self.crval), "rotation": self.rotation,
                "pixel_scale": self.pixel_scale, "output_shape": [self.shape[1], self.shape[0]]}

    def digest(self) -> str:
        """Short hash (values rounded far below a pixel), for resume."""
        text = json.dumps([[round(v, 6) for v in self.crpix], [round(v, 10) for v in self.crval],
                           round(self.rotation, 8), round(self.pixel_scale, 10), list(self.shape)])
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def grid_from_header(header: Mapping[str, Any], shape: tuple[int, int]) -> Grid:
    """The :class:`Grid` of a TAN image from its FITS WCS keywords.

    Parameters
    ----------
    header : mapping
        CRPIX1/2, CRVAL1/2 and either PC (with CDELT) or CD keywords.
    shape : tuple of int
        (ny, nx).
    """
    def get(k, d=None):
        v = header.get(k, d)
        return d if v is None else float(v)

    if "CD1_1" in header:
        cd = [[get("CD1_1"), get("CD1_2", 0.0)], [get("CD2_1", 0.0), get("CD2_2")]]
    else:
        c1, c2 = get("CDELT1", 1.0), get("CDELT2", 1.0)
        pc = [[get("PC1_1", 1.0), get("PC1_2", 0.0)], [get("PC2_1", 0.0), get("PC2_2", 1.0)]]
        cd = [[c1 * pc[0][0], c1 * pc[0][1]], [c2 * pc[1][0], c2 * pc[1][1]]]
    det = abs(cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0])
    scale = math.sqrt(det) * 3600.0
    # jwst's resample convention (stcal calc_rotation_matrix): PC1_2 = sin(rot), PC2_2 = cos(rot)
    rotation = math.degrees(math.atan2(cd[0][1], cd[1][1]))
    return Grid((get("CRPIX1") - 1.0, get("CRPIX2") - 1.0), (get("CRVAL1"), get("CRVAL2")),
                rotation, scale, (int(shape[0]), int(shape[1])))


def grid_of(i2d: str | Path) -> Grid:
    """The grid of an i2d file (its SCI header WCS)."""
    from astropy.io import fits

    h = fits.getheader(i2d, "SCI")
    return grid_from_header(h, (int(h["NAXIS2"]), int(h["NAXIS1"])))


def save_grid(i2d: str | Path, path: str | Path) -> Grid:
    """Save an i2d's output WCS to an ASDF file usable as resample's ``output_wcs``.

    The tree holds ``wcs`` (the mosaic's gwcs with its array shape),
    ``pixel_scale`` (arcsec), ``pixel_area`` (arcsec^2), ``array_shape`` and
    ``young_grid`` (the same grid as crpix/crval/rotation/pixel_scale/output_shape).

    Returns
    -------
    Grid
    """
    import asdf
    from stdatamodels.jwst import datamodels

    grid = grid_of(i2d)
    with datamodels.open(str(i2d)) as model:
        wcs = model.meta.wcs
        shape = tuple(int(n) for n in model.data.shape)
        wcs.array_shape = shape
        wcs.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
        area = model.meta.photometry.pixelarea_arcsecsq
        tree = {
            "wcs": wcs,
            "pixel_scale": float(grid.pixel_scale),
            "pixel_area": float(area) if area else float(grid.pixel_scale) ** 2,
            "array_shape": list(shape),
            "young_grid": {**grid.resample_parameters(), "source": Path(i2d).name},
        }
        asdf.AsdfFile(tree).write_to(str(path))
    return grid


def check_same_grid(i2d: str | Path, reference: str | Path, tol_pix: float = 1e-6) -> list[str]:
    """Differences between the pixel grids of two mosaics (empty when pixel-identical).

    Compares the array shapes and the FITS WCS of the SCI headers, then maps
    a 5 x 5 lattice of pixels of ``i2d`` to the sky with its own gwcs and back
    to pixels with ``reference``'s gwcs (or the ``output_wcs`` ASDF): every
    pixel must land on itself within ``tol_pix``.

    Parameters
    ----------
    i2d : path
        A mosaic.
    reference : path
        The reference mosaic, or a grid ASDF written by :func:`save_grid`.

    Returns
    -------
    list of str
        One line per difference.
    """
    import numpy as np
    from stdatamodels.jwst import datamodels

    problems: list[str] = []
    with datamodels.open(str(i2d)) as a:
        wa, shape_a = a.meta.wcs, tuple(a.data.shape)
        ref = Path(reference)
        if ref.suffix == ".asdf":
            from copy import deepcopy

            import asdf

            with asdf.open(str(ref)) as af:
                wb = deepcopy(af.tree["wcs"])
                shape_b = tuple(int(n) for n in af.tree["array_shape"])
        else:
            with datamodels.open(str(ref)) as b:
                wb, shape_b = b.meta.wcs, tuple(b.data.shape)
        if shape_a != shape_b:
            problems.append(f"shape {shape_a[1]}x{shape_a[0]} differs from the reference {shape_b[1]}x{shape_b[0]}")
            return problems
        ny, nx = shape_a
        xs, ys = np.meshgrid(np.linspace(0, nx - 1, 5), np.linspace(0, ny - 1, 5))
        ra, dec = wa(xs.ravel(), ys.ravel(), with_bounding_box=False)
        xb, yb = wb.invert(ra, dec, with_bounding_box=False)
        dev = float(np.nanmax(np.hypot(xb - xs.ravel(), yb - ys.ravel())))
        if not np.isfinite(dev) or dev > tol_pix:
            problems.append(f"pixels map to different sky positions (up to {dev:.3g} pixel apart)")
    if ref.suffix != ".asdf":
        ga, gb = grid_of(i2d), grid_of(ref)
        if not _grid_close(ga, gb):
            problems.append(f"FITS WCS differs from the reference ({ga} vs {gb})")
    return problems


def _grid_close(a: Grid, b: Grid) -> bool:
    return (a.shape == b.shape
            and all(abs(x - y) < 1e-6 for x, y in zip(a.crpix, b.crpix))
            and abs(a.crval[0] - b.crval[0]) < 1e-10 and abs(a.crval[1] - b.crval[1]) < 1e-10
            and abs(a.rotation - b.rotation) < 1e-8 and abs(a.pixel_scale - b.pixel_scale) < 1e-10)


def covering_parameters(footprints: list[list[tuple[float, float]]], reference: list[tuple[float, float]],
                        pixel_scale: float, tol_arcsec: float = 2.0, pad_pix: int = 8) -> dict[str, Any] | None:
    """Resample grid parameters covering every footprint, when the reference's own grid would not.

    The reference group's mosaic fixes the grid every filter shares.  Where some exposure lies outside
    the reference footprint (short-wave subarrays beside the long-wave one, programs that overlap only
    in part), the reference is drizzled onto a north-up grid holding all of them instead, so no filter
    loses the part of its field the reference filter did not see.

    Parameters
    ----------
    footprints : list of vertex lists
        (RA, Dec) polygons (deg) of every exposure of every filter.
    reference : list of (float, float)
        Vertices (deg) of the reference group's exposures.
    pixel_scale : float
        Output pixel scale (arcsec).
    tol_arcsec : float
        How far (arcsec) a vertex may lie beyond the reference's bounding box before the grid is widened.
    pad_pix : int
        Margin (output pixels) on every side.

    Returns
    -------
    dict or None
        ``crval``, ``crpix``, ``rotation`` (0: north up) and ``output_shape`` (nx, ny) for resample, or
        None when the reference's own grid covers every footprint (or a footprint is unknown).
    """
    allv = [v for fp in footprints for v in fp]
    if not reference or not allv or any(len(fp) < 3 for fp in footprints) or not pixel_scale:
        return None
    ra0 = math.degrees(math.atan2(sum(math.sin(math.radians(r)) for r, _ in allv),
                                  sum(math.cos(math.radians(r)) for r, _ in allv)))
    dec0 = sum(d for _, d in allv) / len(allv)

    def plane(vs):
        # gnomonic projection about (ra0, dec0), arcsec; xi east, eta north
        out = []
        for r, d in vs:
            a, dd, a0, d0 = map(math.radians, (r, d, ra0, dec0))
            c = math.sin(d0) * math.sin(dd) + math.cos(d0) * math.cos(dd) * math.cos(a - a0)
            xi = math.cos(dd) * math.sin(a - a0) / c
            eta = (math.cos(d0) * math.sin(dd) - math.sin(d0) * math.cos(dd) * math.cos(a - a0)) / c
            out.append((math.degrees(xi) * 3600, math.degrees(eta) * 3600))
        return out

    pa, pr = plane(allv), plane(reference)
    box = (min(x for x, _ in pr), max(x for x, _ in pr), min(y for _, y in pr), max(y for _, y in pr))
    if all(box[0] - tol_arcsec <= x <= box[1] + tol_arcsec and box[2] - tol_arcsec <= y <= box[3] + tol_arcsec
           for x, y in pa):
        return None
    x0, x1 = min(x for x, _ in pa), max(x for x, _ in pa)
    y0, y1 = min(y for _, y in pa), max(y for _, y in pa)
    nx = int(math.ceil((x1 - x0) / pixel_scale)) + 2 * pad_pix
    ny = int(math.ceil((y1 - y0) / pixel_scale)) + 2 * pad_pix
    xc, yc = math.radians((x0 + x1) / 2 / 3600), math.radians((y0 + y1) / 2 / 3600)
    # inverse gnomonic of the box centre
    a0, d0 = math.radians(ra0), math.radians(dec0)
    rho = math.hypot(xc, yc)
    if rho == 0:
        ra_c, dec_c = ra0, dec0
    else:
        cc = math.atan(rho)
        dec_c = math.degrees(math.asin(math.cos(cc) * math.sin(d0) + yc * math.sin(cc) * math.cos(d0) / rho))
        ra_c = math.degrees(a0 + math.atan2(xc * math.sin(cc),
                                            rho * math.cos(d0) * math.cos(cc) - yc * math.sin(d0) * math.sin(cc)))
    return {"crval": [ra_c % 360.0, dec_c], "crpix": [(nx - 1) / 2.0, (ny - 1) / 2.0], "rotation": 0.0,
            "output_shape": [nx, ny]}
