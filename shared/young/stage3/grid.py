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
