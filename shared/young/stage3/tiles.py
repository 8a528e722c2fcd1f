"""Tiles of the common mosaic grid: where each tile lies, which exposures it needs, its WCS.

A tiled stage 3 (docs/algorithms.md, "Tiled stage 3") cuts the grid every
filter shares into tiles.  A tile is a *core* (the pixels it owns) plus a
*margin* on every side where the grid continues: its products are computed
on core + margin, and only the core is kept when catalogs are merged or a
mosaic is stitched.  Cores tile the grid without gaps or overlaps, so every
pixel and every source (by its centroid) belongs to exactly one tile.

Core sizes and tile origins are multiples of ``align`` pixels (the source
catalog's background box, ``bkg_boxsize``): the background mesh of a tile then
coincides with the untiled mosaic's over its core, which keeps tile catalogs
equal to untiled ones when the margin is two boxes (the mesh's 3 x 3 filter
and its spline interpolation reach that far).

The geometry here is plain arithmetic; :func:`offset_wcs` needs gwcs and
astropy's modeling (imported when called).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

#: default margin (mosaic pixels) on each side of a tile core, in background boxes of jwst's source
#: catalog: a tile's background mesh, its 3 x 3 filter and its interpolation then see the same boxes
#: as the untiled mosaic over the core, and a source whose centroid lies in the core lies wholly
#: inside the tile unless it is larger than the margin
DEFAULT_MARGIN_BOXES = 2
DEFAULT_MARGIN = 200
#: tile origins and core sizes are multiples of this by default (a background box of 100 pixels)
DEFAULT_ALIGN = 100


@dataclass(frozen=True)
class Tile:
    """One tile of a grid (0-based pixel indices of the full grid; ``x`` is the column).

    Attributes
    ----------
    row, col : int
        Position in the tile lattice.
    core : tuple of int
        ``(x0, x1, y0, y1)``: the pixels the tile owns, ``x0 <= x < x1``, ``y0 <= y < y1``.
    outer : tuple of int
        ``(x0, x1, y0, y1)``: core plus margin, clipped to the grid: the pixels the tile computes.
    """

    row: int
    col: int
    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """``r02c05``: row and column, zero-padded (sorts in raster order)."""
        return f"r{self.row:02d}c{self.col:02d}"

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the tile's arrays (core + margin)."""
        x0, x1, y0, y1 = self.outer
        return (y1 - y0, x1 - x0)

    @property
    def origin(self) -> tuple[int, int]:
        """(x0, y0): the full grid's pixel of the tile's pixel (0, 0)."""
        return (self.outer[0], self.outer[2])

    def owns(self, x: float, y: float) -> bool:
        """Whether full-grid position (x, y) (pixel centres at integers) lies in the core.

        A pixel covers ``[i - 0.5, i + 0.5)``: a position is owned by the tile whose core holds the
        pixel it falls in, so each position belongs to exactly one tile.
        """
        x0, x1, y0, y1 = self.core
        return x0 - 0.5 <= x < x1 - 0.5 and y0 - 0.5 <= y < y1 - 0.5

    def core_in_tile(self) -> tuple[slice, slice]:
        """Slices (y, x) of the core within the tile's own arrays."""
        ox, oy = self.origin
        x0, x1, y0, y1 = self.core
        return slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)

    def core_in_grid(self) -> tuple[slice, slice]:
        """Slices (y, x) of the core within the full grid's arrays."""
        x0, x1, y0, y1 = self.core
        return slice(y0, y1), slice(x0, x1)


def core_size(requested: int, align: int = DEFAULT_ALIGN) -> int:
    """The core size used for a requested tile size: a multiple of ``align``, at least ``align``."""
    return max(align, int(round(requested / align)) * align)


def plan_tiles(shape: Sequence[int], tile: int, margin: int = DEFAULT_MARGIN,
               align: int = DEFAULT_ALIGN) -> list[Tile]:
    """Cut a grid of ``shape`` (ny, nx) into tiles with cores of ``tile`` pixels (rounded to ``align``).

    The last core of a row or column takes what is left (up to half a core more rather than a
    sliver: a remainder under half a core joins the previous one).  A grid no larger than one core
    (plus half) is a single tile whose core is the whole grid.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the full grid.
    tile : int
        Requested core size (pixels).
    margin : int
        Pixels added on each side of a core (clipped at the grid's edges).
    align : int
        Core sizes and starts are multiples of this.

    Returns
    -------
    list of Tile
        In raster order (rows of constant y, x increasing).

    Raises
    ------
    ValueError
        Non-positive shape, tile size or negative margin.
    """
    ny, nx = int(shape[0]), int(shape[1])
    if ny <= 0 or nx <= 0 or tile <= 0 or margin < 0 or align <= 0:
        raise ValueError(f"invalid tiling: shape {shape}, tile {tile}, margin {margin}, align {align}")
    size = core_size(tile, align)
    xs, ys = _edges(nx, size), _edges(ny, size)
    out = []
    for r, (y0, y1) in enumerate(ys):
        for c, (x0, x1) in enumerate(xs):
            outer = (max(0, x0 - margin), min(nx, x1 + margin), max(0, y0 - margin), min(ny, y1 + margin))
            out.append(Tile(r, c, (x0, x1, y0, y1), outer))
    return out


def _edges(n: int, size: int) -> list[tuple[int, int]]:
    k = max(1, n // size)
    if n - k * size >= size // 2 and n > size:
        k += 1
    starts = [i * size for i in range(k)]
    ends = starts[1:] + [n]
    return list(zip(starts, ends))


def tiles_for_memory(shape: Sequence[int], budget: int, bytes_per_pixel: float, fixed: int,
                     margin: int = DEFAULT_MARGIN, align: int = DEFAULT_ALIGN) -> int:
    """The largest core size whose tile fits in ``budget`` bytes (at least ``align``).

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the grid (a tile never needs to be larger).
    budget : int
        Bytes one process may use.
    bytes_per_pixel : float
        Memory per output pixel of a tile (its arrays and the median's share).
    fixed : int
        Bytes independent of the tile size (the interpreter, the input exposures in memory).
    """
    room = max(0.0, budget - fixed) / max(bytes_per_pixel, 1.0)
    side = int(math.sqrt(room)) - 2 * margin
    side = (side // align) * align
    return int(max(align, min(side, max(shape) + align)))


def overlapping(boxes: Iterable[tuple[float, float, float, float]], tile: Tile, pad: float = 1.0) -> list[int]:
    """Indices of the boxes (x0, x1, y0, y1 in full-grid pixels) that touch ``tile``'s outer area.

    ``pad`` (pixels) widens the tile so a drizzle footprint at its edge is not missed.
    """
    x0, x1, y0, y1 = tile.outer
    out = []
    for i, (bx0, bx1, by0, by1) in enumerate(boxes):
        if bx1 >= x0 - 0.5 - pad and bx0 <= x1 - 0.5 + pad and by1 >= y0 - 0.5 - pad and by0 <= y1 - 0.5 + pad:
            out.append(i)
    return out


def offset_wcs(wcs, x0: float, y0: float, shape: Sequence[int]):
    """``wcs`` of a full grid, as the WCS of its sub-array starting at pixel (x0, y0) of ``shape`` (ny, nx).

    The new WCS's pixel (i, j) is the full grid's pixel (i + x0, j + y0).  A FITS-like imaging
    transform (what jwst's resample makes, gwcs' ``FITSImagingWCSTransform``) gets its reference
    pixel shifted -- the form jwst's resample requires of a custom output WCS; any other transform
    is prefixed with a shift.  Frames are kept; bounding box and array shape are the sub-array's.
    """
    from astropy.modeling.models import Shift
    from gwcs import WCS
    from gwcs.fitswcs import FITSImagingWCSTransform

    fwd = wcs.forward_transform
    if isinstance(fwd, FITSImagingWCSTransform):
        crpix = [float(fwd.crpix.value[0]) - float(x0), float(fwd.crpix.value[1]) - float(y0)]
        new = FITSImagingWCSTransform(fwd.projection.copy(), crpix=crpix, crval=list(fwd.crval.value),
                                      cdelt=list(fwd.cdelt.value), pc=fwd.pc.value.copy())
    else:
        new = (Shift(float(x0)) & Shift(float(y0))) | fwd
    steps = wcs.pipeline
    out = WCS([(steps[0].frame, new), (steps[-1].frame, None)])
    ny, nx = int(shape[0]), int(shape[1])
    out.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    out.array_shape = (ny, nx)
    return out


def box_in_grid(wcs_in, shape_in: Sequence[int], wcs_grid, n: int = 9) -> tuple[float, float, float, float]:
    """Bounding box (x0, x1, y0, y1) in ``wcs_grid`` pixels of an image of ``shape_in`` (ny, nx) with ``wcs_in``.

    The image's edge is sampled at ``n`` points per side (pixel-centre outline at +-0.5).
    """
    import numpy as np

    ny, nx = int(shape_in[0]), int(shape_in[1])
    t = np.linspace(0.0, 1.0, n)
    xe = np.concatenate([-0.5 + t * nx, np.full(n, nx - 0.5), -0.5 + t * nx, np.full(n, -0.5)])
    ye = np.concatenate([np.full(n, -0.5), -0.5 + t * ny, np.full(n, ny - 0.5), -0.5 + t * ny])
    ra, dec = wcs_in(xe, ye, with_bounding_box=False)
    gx, gy = wcs_grid.invert(ra, dec, with_bounding_box=False)
    return (float(np.nanmin(gx)), float(np.nanmax(gx)), float(np.nanmin(gy)), float(np.nanmax(gy)))
