"""Tiles of the common grid (young.stage3.tiles) and the merge of tile catalogs (young.stage3.tiled), on arrays."""

import numpy as np
import pytest
from astropy.table import Table
from young.stage3.stitch import _layout
from young.stage3.tiled import merge_catalogs
from young.stage3.tiles import Tile, core_size, offset_wcs, overlapping, plan_tiles, tiles_for_memory


@pytest.mark.parametrize("shape,tile", [((300, 2100), 500), ((1000, 1000), 400), ((250, 120), 1000),
                                        ((4321, 3999), 1000)])
def test_cores_partition_the_grid(shape, tile):
    tiles = plan_tiles(shape, tile, margin=200)
    count = np.zeros(shape, int)
    for t in tiles:
        ys, xs = t.core_in_grid()
        count[ys, xs] += 1
        x0, x1, y0, y1 = t.outer
        assert 0 <= x0 <= t.core[0] and t.core[1] <= x1 <= shape[1]
        assert 0 <= y0 <= t.core[2] and t.core[3] <= y1 <= shape[0]
        assert t.core[0] % 100 == 0 and t.core[2] % 100 == 0 and t.outer[0] % 100 == 0
        assert t.shape == (y1 - y0, x1 - x0)
        cy, cx = t.core_in_tile()
        assert (cy.stop - cy.start, cx.stop - cx.start) == (t.core[3] - t.core[2], t.core[1] - t.core[0])
    assert (count == 1).all()  # every pixel in exactly one core
    size = core_size(tile)
    assert all(t.core[1] - t.core[0] < 1.5 * size + 1 for t in tiles) or len(tiles) == 1


def test_every_position_owned_once():
    tiles = plan_tiles((900, 1300), 400, margin=100)
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.5, [1299.49, 899.49], size=(5000, 2))
    pts = np.vstack([pts, [[399.5, 10.0], [399.49, 10.0], [-0.5, -0.5], [1299.4, 899.4]]])
    owners = [sum(t.owns(x, y) for t in tiles) for x, y in pts]
    assert set(owners) == {1}


def test_bad_tiling_and_memory_size():
    with pytest.raises(ValueError):
        plan_tiles((0, 10), 100)
    with pytest.raises(ValueError):
        plan_tiles((10, 10), 100, margin=-1)
    small = tiles_for_memory((20000, 20000), 4 * 1024**3, 80, 2 * 1024**3)
    large = tiles_for_memory((20000, 20000), 16 * 1024**3, 80, 2 * 1024**3)
    assert 100 <= small < large and small % 100 == 0
    # what it promises: a tile of that core plus margins fits the budget
    assert (small + 400) ** 2 * 80 + 2 * 1024**3 <= 4 * 1024**3


def test_overlapping_boxes():
    t = Tile(0, 1, (500, 1000, 0, 500), (300, 1200, 0, 700))
    boxes = [(0, 250, 0, 100), (0, 310, 0, 100), (1190, 2000, 650, 900), (1300, 2000, 0, 100)]
    assert overlapping(boxes, t) == [1, 2]


def test_offset_wcs_maps_like_the_full_grid():
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    tan = (models.Shift(-1000.0) & models.Shift(-800.0)) | (models.Scale(1e-5) & models.Scale(1e-5)) \
        | models.Pix2Sky_TAN() | models.RotateNative2Celestial(53.16, -27.78, 180.0)
    det = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    from astropy.coordinates import ICRS

    sky = cf.CelestialFrame(reference_frame=ICRS(), name="world", unit=(u.deg, u.deg))
    full = WCS([(det, tan), (sky, None)])
    sub = offset_wcs(full, 600, 300, (500, 700))
    xs, ys = np.meshgrid(np.arange(0, 700, 37.0), np.arange(0, 500, 41.0))
    r1, d1 = sub(xs, ys)
    r2, d2 = full(xs + 600, ys + 300)
    assert np.allclose(r1, r2, rtol=0, atol=1e-12) and np.allclose(d1, d2, rtol=0, atol=1e-12)
    assert sub.array_shape == (500, 700)
    bx, by = sub.invert(r1, d1)
    assert np.allclose(bx, xs, atol=1e-6) and np.allclose(by, ys, atol=1e-6)


def _catalog(xy, start=1):
    t = Table()
    t["label"] = np.arange(start, start + len(xy))
    t["xcentroid"] = [p[0] for p in xy]
    t["ycentroid"] = [p[1] for p in xy]
    t["bbox_xmin"] = [int(p[0]) - 2 for p in xy]
    t["bbox_xmax"] = [int(p[0]) + 2 for p in xy]
    t["bbox_ymin"] = [int(p[1]) - 2 for p in xy]
    t["bbox_ymax"] = [int(p[1]) + 2 for p in xy]
    t["nn_label"] = 0
    t["nn_dist"] = 0.0
    return t


@pytest.mark.parametrize("jitter", [0.0, 0.03])
def test_merge_keeps_each_source_once_in_grid_pixels(jitter):
    shape = (700, 1500)
    tiles = plan_tiles(shape, 500, margin=200)
    rng = np.random.default_rng(5)
    truth = rng.uniform([0, 0], [1499, 699], size=(400, 2))
    # sources on and next to the core borders (x = 499.5, 999.5; y = 499.5), where each tile's own
    # measurement may put the centroid on either side
    border = np.array([[499.5 + e, 100.0 + 13 * k] for k, e in enumerate(np.linspace(-0.04, 0.04, 9))]
                      + [[300.0 + 17 * k, 499.5 + e] for k, e in enumerate(np.linspace(-0.04, 0.04, 9))])
    truth = np.vstack([truth, border])
    tables = []
    for t in tiles:   # each tile sees every source inside core + margin, in its own pixels, measured its own way
        x0, x1, y0, y1 = t.outer
        inside = (truth[:, 0] >= x0 - 0.5) & (truth[:, 0] < x1 - 0.5) & (truth[:, 1] >= y0 - 0.5) & (truth[:, 1] < y1 - 0.5)
        seen = truth[inside] + rng.uniform(-jitter, jitter, size=(inside.sum(), 2))
        tables.append(_catalog(seen - [x0, y0], start=7))
    merged, maps, owner = merge_catalogs(tables, tiles)
    assert len(merged) == len(truth)   # none lost, none doubled
    got = np.column_stack([merged["xcentroid"], merged["ycentroid"]])
    from scipy.spatial import cKDTree

    d, _ = cKDTree(got).query(truth)
    assert d.max() <= 2 * jitter + 1e-9
    assert list(merged["label"]) == list(range(1, len(truth) + 1))
    assert len(owner) == len(merged) and set(owner) <= set(range(len(tiles)))
    # every tile label seen near a core maps to a merged source
    assert all(1 <= v <= len(merged) for m in maps for v in m.values())
    # nearest neighbours over the whole field, across tile borders
    dd, _ = cKDTree(got).query(got, k=2)
    assert np.allclose(merged["nn_dist"], dd[:, 1])


def test_layout_makes_a_valid_sparse_fits(tmp_path):
    from astropy.io import fits

    h = fits.Header()
    h["NAXIS1"], h["NAXIS2"], h["EXTNAME"] = 300, 200, "SCI"
    h2 = fits.Header()
    h2["NAXIS1"], h2["NAXIS2"], h2["EXTNAME"] = 300, 200, "WHT"
    prim = fits.Header()
    prim["TELESCOP"] = "JWST"
    _layout(tmp_path / "x.fits", prim, [(h, np.dtype(">f4")), (h2, np.dtype(np.int32))])
    with fits.open(tmp_path / "x.fits", mode="update") as f:
        assert f[1].data.shape == (200, 300) and f[1].data.dtype.kind == "f" and not f[1].data.any()
        f[1].data[10:20, 30:40] = 5.0
        f[2].data[:] = 7
    with fits.open(tmp_path / "x.fits") as f:
        f.verify("exception")
        assert f[0].header["TELESCOP"] == "JWST" and f[1].data.sum() == 500.0 and (f[2].data == 7).all()


def test_offset_wcs_of_a_fits_imaging_transform_shifts_crpix():
    from astropy import units as u
    from astropy.coordinates import ICRS
    from astropy.modeling import models
    from gwcs import WCS
    from gwcs import coordinate_frames as cf
    from gwcs.fitswcs import FITSImagingWCSTransform

    rot = np.radians(25.0)
    t = FITSImagingWCSTransform(models.Pix2Sky_TAN(), crpix=[1000.3, 800.7], crval=[53.16, -27.78],
                                cdelt=[8.6e-6, 8.6e-6], pc=[[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    det = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=ICRS(), name="world", unit=(u.deg, u.deg))
    full = WCS([(det, t), (sky, None)])
    sub = offset_wcs(full, 600, 300, (500, 700))
    assert isinstance(sub.forward_transform, FITSImagingWCSTransform)
    xs, ys = np.meshgrid(np.arange(0, 700, 37.0), np.arange(0, 500, 41.0))
    r1, d1 = sub(xs, ys)
    r2, d2 = full(xs + 600, ys + 300)
    assert np.allclose(r1, r2, rtol=0, atol=1e-12) and np.allclose(d1, d2, rtol=0, atol=1e-12)


def test_sources_at_the_coverage_edge():
    from young.stage3.refcat import at_coverage_edge, select_reference_sources

    w = np.ones((100, 200))
    w[:, 150:] = 0.0          # no data right of x = 150
    t = Table()
    t["xcentroid"] = [20.0, 100.0, 145.0, 3.0, 100.0]
    t["ycentroid"] = [50.0, 50.0, 50.0, 50.0, 97.0]
    t["isophotal_area"] = [np.pi * 4, np.pi * 4, np.pi * 4, np.pi * 4, np.pi * 4]   # radius 2 px
    assert list(at_coverage_edge(t, w)) == [False, False, True, True, True]
    # a tile's weights: positions in grid pixels, weights from the tile's origin
    assert list(at_coverage_edge(t, w[:, 10:], origin=(10, 0))) == [False, False, True, True, True]
    from astropy.coordinates import SkyCoord

    t["sky_centroid"] = SkyCoord(ra=np.arange(5) * 1e-3 + 53.0, dec=np.zeros(5) - 27.0, unit="deg")
    t["isophotal_flux"] = [5.0, 4.0, 3.0, 2.0, 1.0]
    t["isophotal_flux_err"] = 0.01
    kept = select_reference_sources(t, min_sources=1, exclude=at_coverage_edge(t, w))
    assert len(kept) == 2
