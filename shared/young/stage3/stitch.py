"""The full mosaic and segmentation map of a tiled filter, written tile core by tile core.

A stitched mosaic of any size costs the memory of one tile: the files are laid out first (headers
and data areas of the full size, without writing the data) and then filled through memory maps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from young.stage3.tiles import Tile

#: i2d extensions a stitched mosaic holds (the context image is per tile only)
STITCHED = ("SCI", "ERR", "WHT")


def stitch(tiles: list[Tile], files: Callable[[Tile], dict], grid_tiles: list[Tile], shape, maps: list[dict], merged,
           tables: list, i2d_path: Path, segm_path: Path) -> None:
    """Write the full mosaic and segmentation map from the tiles' cores, one tile in memory at a time.

    The files are laid out first (headers, data areas of the full size) and then filled through
    memory maps, so a field of any size costs the memory of one tile.  The i2d holds SCI, ERR and
    WHT with the tiles' FITS WCS moved to the full grid (CRPIX shifted by the tile's origin); the
    segmentation map's labels are the merged catalog's.

    Parameters
    ----------
    tiles : list of Tile
        The tiles made, in the merged catalog's order.
    files : callable
        ``files(tile)`` -> {'i2d', 'segm', 'cat'} paths of a tile's products.
    grid_tiles : list of Tile
        Every tile of the grid (those not made -- no exposure overlaps them -- are left without data).
    shape : (int, int)
        (ny, nx) of the grid.
    maps : list of dict
        Per tile in ``tiles``: {tile label: merged label} (:func:`young.stage3.tiled.merge_catalogs`).
    merged : astropy.table.Table
        The merged catalog (grid pixels): a tile's segment of a source it did not measure near its
        core (the source lies beyond the core's slack) gets the label of the merged source at its
        centroid.
    tables : list of astropy.table.Table
        The tiles' own catalogs (tile pixels), in the order of ``tiles``.

    The files are plain FITS (no ASDF extension): the WCS is the SCI header's FITS WCS, exact for
    resample's TAN grids.  Keywords of the first tile that describe only it are removed.
    """
    import numpy as np
    from astropy.io import fits

    ny, nx = int(shape[0]), int(shape[1])
    first = files(tiles[0])
    with fits.open(first["i2d"]) as h:
        primary = _without_tile_keys(h[0].header.copy(), Path(i2d_path).name)
        heads = {e: _without_tile_keys(h[e].header.copy(), None) for e in STITCHED}
        dtypes = {e: h[e].data.dtype for e in STITCHED}
    ox, oy = tiles[0].origin
    for hd in heads.values():   # the WCS keywords are in SCI only (jwst puts none in ERR and WHT)
        hd["NAXIS1"], hd["NAXIS2"] = nx, ny
        if "CRPIX1" in hd:
            hd["CRPIX1"] = hd["CRPIX1"] + ox
            hd["CRPIX2"] = hd["CRPIX2"] + oy
    _layout(i2d_path, primary, [(heads[e], dtypes[e]) for e in STITCHED])
    with fits.open(first["segm"]) as h:
        sp = _without_tile_keys(h[0].header.copy(), Path(segm_path).name)
        shead = (h[1].header.copy() if len(h) > 1 and h[1].data is not None else None)
    segh = shead if shead is not None else sp
    segh = segh.copy()
    segh["NAXIS1"], segh["NAXIS2"] = nx, ny
    if "CRPIX1" in segh:
        segh["CRPIX1"] = segh["CRPIX1"] + ox
        segh["CRPIX2"] = segh["CRPIX2"] + oy
    _layout(segm_path, sp if shead is not None else fits.Header(), [(segh, np.dtype(np.int32))])
    from scipy.spatial import cKDTree

    finder = (cKDTree(np.column_stack([merged["xcentroid"], merged["ycentroid"]])), np.asarray(merged["label"])) \
        if len(merged) else None
    with fits.open(i2d_path, mode="update", memmap=True) as out, fits.open(segm_path, mode="update", memmap=True) as so:
        made = {t.name for t in tiles}
        for t in grid_tiles:   # tiles no exposure overlaps: no data (NaN), as resample leaves them
            if t.name not in made:
                gy, gx = t.core_in_grid()
                for e in ("SCI", "ERR"):
                    out[e].data[gy, gx] = np.nan
        for t, labels, table in zip(tiles, maps, tables):
            p = files(t)
            ys, xs = t.core_in_tile()
            gy, gx = t.core_in_grid()
            with fits.open(p["i2d"], memmap=True) as h:
                for e in STITCHED:
                    out[e].data[gy, gx] = h[e].data[ys, xs]
            with fits.open(p["segm"], memmap=False) as h:   # uint32 labels (BZERO): no memory map
                seg = (h[1].data if len(h) > 1 and h[1].data is not None else h[0].data)[ys, xs]
                lut = _label_lut(seg, labels, t, table, finder)
                so[-1].data[gy, gx] = lut[seg]
            out.flush()
            so.flush()


#: header keywords of a tile product that do not describe the stitched mosaic
TILE_KEYS = ("YNGTILE", "YNGTORIG", "S_REGION", "YNGPHASH", "YNGDATE")


def _without_tile_keys(header, filename: str | None):
    for k in TILE_KEYS:
        header.remove(k, ignore_missing=True, remove_all=True)
    if filename is not None and "FILENAME" in header:
        header["FILENAME"] = filename
    return header


def _label_lut(seg, labels: dict, tile: Tile, cat, finder):
    """Label map of a tile's segmentation core: merged labels of the tile's sources (``labels``), and for
    a segment the merge did not take from this tile, the merged source at its centroid (within 1 pixel)."""
    import numpy as np

    top = int(seg.max()) if seg.size else 0
    lut = np.zeros(top + 1, np.int32)
    for old, new in labels.items():
        if old <= top:
            lut[old] = new
    missing = [int(v) for v in np.unique(seg) if v and lut[v] == 0]
    if missing and finder is not None:
        pos = {int(lab): (float(x) + tile.origin[0], float(y) + tile.origin[1])
               for lab, x, y in zip(cat["label"], cat["xcentroid"], cat["ycentroid"])}
        tree, merged_labels = finder
        for v in missing:
            if v in pos:
                d, j = tree.query(pos[v])
                if d < 1.0:
                    lut[v] = merged_labels[j]
    return lut


def _layout(path: Path, primary, extensions) -> None:
    """Write a FITS file whose extensions have the given headers and zero-filled data of their NAXIS sizes.

    Only the headers are written; the data areas are made by extending the file (sparse where the
    file system allows), so laying out a mosaic of any size takes no memory.
    """
    import numpy as np
    from astropy.io import fits

    structural = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT",
                  "EXTEND", "BZERO", "BSCALE", "END", ""}
    bitpix = {np.dtype(np.float32): -32, np.dtype(np.float64): -64, np.dtype(np.int32): 32, np.dtype(np.int16): 16}

    def header_of(first: list, source) -> fits.Header:
        h = fits.Header(first)
        for card in source.cards:
            if card.keyword not in structural:
                h.append(card, end=True)
        return h

    with open(path, "wb") as f:
        ph = header_of([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)], primary)
        f.write(ph.tostring().encode("ascii"))
        for header, dtype in extensions:
            nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
            bp = bitpix[np.dtype(dtype).newbyteorder("=")]
            h = header_of([("XTENSION", "IMAGE"), ("BITPIX", bp), ("NAXIS", 2), ("NAXIS1", nx), ("NAXIS2", ny),
                           ("PCOUNT", 0), ("GCOUNT", 1)], header)
            f.write(h.tostring().encode("ascii"))
            size = nx * ny * abs(bp) // 8
            f.seek(-(-size // 2880) * 2880, os.SEEK_CUR)
        f.truncate()
