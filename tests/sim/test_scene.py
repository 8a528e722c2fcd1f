"""Tests of young.sim.scene: PSF model, catalogs and rendering (pure arrays)."""

import numpy as np
import pytest
from photutils.aperture import CircularAperture, aperture_photometry
from scipy import integrate
from young.sim import scene

FILTERS = ["F070W", "F090W", "F115W", "F150W", "F200W", "F277W", "F356W", "F410M",
           "F444W", "F162M", "F405N", "F466N"]
SCALE = {"SW": 0.031, "LW": 0.063}


def scale_of(f):
    return SCALE[scene.channel(f)]


@pytest.mark.parametrize("filt", FILTERS)
def test_psf_fwhm_matches_table(filt):
    fwhm = scene.psf_fwhm_arcsec(filt)
    assert 0.02 < fwhm < 0.16
    peak = scene.psf_profile(filt, 0.0)
    assert scene.psf_profile(filt, fwhm / 2) == pytest.approx(peak / 2, rel=1e-6)
    assert scene.psf_profile(filt, 0.45 * fwhm) > peak / 2 > scene.psf_profile(filt, 0.55 * fwhm)


def test_fwhm_values_are_jwst_like():
    assert scene.psf_fwhm_arcsec("F070W") == pytest.approx(0.023)
    assert scene.psf_fwhm_arcsec("F200W") == pytest.approx(0.064)
    assert scene.psf_fwhm_arcsec("F444W") == pytest.approx(0.140)
    # Increases with wavelength over the wide filters.
    wide = ["F070W", "F090W", "F115W", "F150W", "F200W", "F277W", "F356W", "F444W"]
    assert np.all(np.diff([scene.psf_fwhm_arcsec(f) for f in wide]) > 0)


@pytest.mark.parametrize("filt", ["F070W", "F200W", "F444W", "F405N"])
def test_psf_normalised_within_radius(filt):
    r_max = scene.PSF_RADIUS_ARCSEC
    total, _ = integrate.quad(lambda r: 2 * np.pi * r * scene.psf_profile(filt, r), 0, r_max,
                              points=[scene.psf_fwhm_arcsec(filt)], limit=200)
    assert total == pytest.approx(1.0, rel=1e-6)
    assert scene.encircled_energy(filt, r_max) == pytest.approx(1.0)
    assert scene.encircled_energy(filt, 10.0) == pytest.approx(1.0)
    assert scene.psf_profile(filt, r_max * 1.01) == 0.0
    r = np.linspace(0, r_max, 50)
    assert np.all(np.diff(scene.encircled_energy(filt, r)) > 0)
    half, _ = integrate.quad(lambda r: 2 * np.pi * r * scene.psf_profile(filt, r), 0, 0.3, limit=200)
    assert scene.encircled_energy(filt, 0.3) == pytest.approx(half, rel=1e-6)
    r50 = scene.ee_radius_arcsec(filt, 0.5)
    assert scene.encircled_energy(filt, r50) == pytest.approx(0.5, abs=1e-8)


def test_encircled_energy_is_realistic():
    # Core-dominated at long wavelengths, a WFE halo at short ones; few % beyond 1".
    ld = lambda f: scene.pivot_um(f) * 1e-6 / 6.5 * 206264.8  # noqa: E731
    for f in ("F200W", "F444W"):
        assert 0.65 < scene.encircled_energy(f, 1.22 * ld(f)) < 0.85
    assert scene.encircled_energy("F070W", 1.22 * ld("F070W")) < scene.encircled_energy(
        "F200W", 1.22 * ld("F200W"))
    for f in FILTERS:
        assert 0.95 < scene.encircled_energy(f, 1.0) < 1.0


def test_canonical_filter():
    assert scene.canonical_filter("f200w") == "F200W"
    assert scene.canonical_filter("F444W+F405N") == "F405N"
    assert scene.canonical_filter("F150W2/F162M") == "F162M"
    assert scene.canonical_filter("CLEAR+F200W") == "F200W"
    assert scene.channel("F277W") == "LW" and scene.channel("F200W") == "SW"
    with pytest.raises(ValueError, match="unknown NIRCam filter"):
        scene.canonical_filter("F999W")


@pytest.mark.parametrize("filt", ["F070W", "F200W", "F444W"])
@pytest.mark.parametrize("dx,dy", [(0.0, 0.0), (0.3, -0.45), (0.5, 0.5), (-0.17, 0.21)])
def test_psf_stamp_unit_sum_and_centroid(filt, dx, dy):
    st = scene.psf_stamp(filt, scale_of(filt), dx, dy)
    assert st.dtype == np.float32 and st.shape[0] % 2 == 1
    assert st.sum() == pytest.approx(1.0, abs=1e-5)
    c = (st.shape[0] - 1) // 2
    yy, xx = np.mgrid[:st.shape[0], :st.shape[1]] - c
    tol = 0.03 if filt == "F070W" else 0.005     # F070W is undersampled (pixel-phase bias)
    assert (st * xx).sum() == pytest.approx(dx, abs=tol)
    assert (st * yy).sum() == pytest.approx(dy, abs=tol)


def star_table(filt, fluxes):
    from astropy.table import Table
    n = len(fluxes)
    return Table({"kind": ["star"] * n, f"flux_{filt}": np.asarray(fluxes, float),
                  "r_eff_arcsec": np.zeros(n), "sersic_n": np.zeros(n), "axis_ratio": np.ones(n),
                  "theta_deg": np.zeros(n)})


@pytest.mark.parametrize("filt", ["F090W", "F200W", "F356W", "F444W"])
def test_rendered_star_flux(filt):
    scale = scale_of(filt)
    fluxes = [1000.0, 250.0, 40.0]
    x = np.array([150.23, 420.5, 700.91])
    y = np.array([160.77, 430.02, 300.4])
    conv = 0.037
    img = scene.render(star_table(filt, fluxes), filt, x, y, (600, 900), scale, conv)
    assert img.dtype == np.float32
    big = scene.PSF_RADIUS_ARCSEC / scale + 1.5
    for xi, yi, fl in zip(x, y, fluxes):
        phot = aperture_photometry(img, CircularAperture((xi, yi), big), method="exact")
        assert phot["aperture_sum"][0] == pytest.approx(fl * conv, rel=5e-3)
        r = 0.3
        phot = aperture_photometry(img, CircularAperture((xi, yi), r / scale), method="exact")
        assert phot["aperture_sum"][0] / (fl * conv) == pytest.approx(
            scene.encircled_energy(filt, r), rel=0.02)
        iy, ix = np.unravel_index(np.argmax(img[int(yi) - 3:int(yi) + 4, int(xi) - 3:int(xi) + 4]), (7, 7))
        assert (int(yi) - 3 + iy, int(xi) - 3 + ix) == (round(yi), round(xi))
    assert img.sum() == pytest.approx(sum(fluxes) * conv, rel=1e-4)


def test_rendered_star_fwhm_near_optical_fwhm():
    # Well-sampled LW filter: the pixel-integrated FWHM is only slightly wider.
    filt, scale = "F444W", 0.063
    img = scene.render(star_table(filt, [1.0]), filt, [50.0], [50.0], (101, 101), scale, 1.0)
    row = img[50].astype(float)
    half = row.max() / 2
    above = np.flatnonzero(row > half)
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - row[lo - 1]) / (row[lo] - row[lo - 1])
    right = hi + (row[hi] - half) / (row[hi] - row[hi + 1])
    fwhm_pix = right - left
    opt = scene.psf_fwhm_arcsec(filt) / scale
    assert opt < fwhm_pix < 1.15 * opt


def test_galaxy_flux_and_orientation():
    from astropy.table import Table
    cat = Table({"kind": ["galaxy", "galaxy", "galaxy"], "flux_F200W": [1000.0, 500.0, 200.0],
                 "r_eff_arcsec": [0.03, 0.3, 0.6], "sersic_n": [4.0, 1.0, 2.5],
                 "axis_ratio": [0.5, 0.3, 0.8], "theta_deg": [30.0, 0.0, 120.0]})
    x, y = [200.3, 600.0, 1100.6], [200.1, 500.0, 700.4]
    img = scene.render(cat, "F200W", x, y, (1200, 1500), 0.031, 1.0)
    assert img.sum() == pytest.approx(1700.0, rel=1e-3)
    assert img[100:300, 100:300].sum() == pytest.approx(1000.0, rel=1e-3)
    # theta = 0 (major axis north) with +y north: elongated along y.
    stamp = img[460:541, 560:641].astype(float)
    yy, xx = np.mgrid[-40:41, -40:41]
    assert (stamp * yy ** 2).sum() > 3 * (stamp * xx ** 2).sum()
    # Rotating the detector by 90 deg turns it along x.
    img2 = scene.render(cat[1:2], "F200W", [600.0], [500.0], (1200, 1500), 0.031, 1.0, y_axis_pa_deg=90)
    stamp = img2[460:541, 560:641].astype(float)
    assert (stamp * xx ** 2).sum() > 3 * (stamp * yy ** 2).sum()


def test_render_only_overlapping_sources():
    cat = star_table("F200W", [100.0, 100.0, 100.0])
    img = scene.render(cat, "F200W", [-500.0, 5000.0, np.nan], [10.0, 10.0, 10.0], (200, 200),
                       0.031, 1.0)
    assert not img.any()
    # A star just off the edge still spills its wing in; total < flux.
    img = scene.render(cat[:1], "F200W", [-3.0], [100.0], (200, 200), 0.031, 1.0)
    assert 0.0 < img.sum() < 100.0 * 0.2


def test_make_catalog_contents_and_isolation():
    rng = np.random.default_rng(42)
    filters = ["F090W", "F200W", "F444W"]
    cat = scene.make_catalog(rng, 53.16, -27.78, 0.02, filters, 80, 150, n_saturated=3,
                             blob=True, min_separation_arcsec=3.0)
    kinds = list(cat["kind"])
    assert kinds.count("star") == 83 and kinds.count("galaxy") == 150 and kinds.count("blob") == 1
    assert list(cat["id"]) == list(range(1, len(cat) + 1))
    for f in filters:
        assert np.all(cat[f"flux_{f}"] > 0)
    assert cat["saturated"].sum() == 3
    # Positions within the field (tangent plane ~ small-angle here).
    dra = (cat["ra"] - 53.16) * np.cos(np.radians(-27.78))
    assert np.all(np.abs(dra) < 0.0201) and np.all(np.abs(cat["dec"] + 27.78) < 0.0201)
    # Stars isolated from each other and from galaxies.
    stars = cat[cat["kind"] == "star"]
    gals = cat[cat["kind"] == "galaxy"]

    def sep(a, b):
        d1 = (a["ra"][:, None] - b["ra"][None, :]) * np.cos(np.radians(-27.78))
        d2 = a["dec"][:, None] - b["dec"][None, :]
        return np.hypot(d1, d2) * 3600

    ss = sep(stars, stars)
    np.fill_diagonal(ss, np.inf)
    assert ss.min() >= 3.0 * 0.999
    sg = sep(stars, gals)
    assert np.all(sg >= 3.0 + 3 * np.asarray(gals["r_eff_arcsec"])[None, :] - 1e-3)
    # Star S/N range: AB 19.5-26.5 at 2 um; saturated ones much brighter.
    f200 = np.asarray(stars["flux_F200W"])
    sat = np.asarray(stars["saturated"])
    assert f200[sat].min() > 10 * f200[~sat].max()
    assert f200[~sat].min() > 10 ** (-0.4 * (27.5 - 31.4))
    # Colours vary between sources and filters.
    ratio = np.asarray(cat["flux_F444W"] / cat["flux_F090W"])
    assert ratio.std() > 0.1
    # Galaxy shape columns.
    assert np.all((gals["r_eff_arcsec"] >= 0.03) & (gals["r_eff_arcsec"] <= 1.5))
    assert np.all((gals["sersic_n"] >= 0.5) & (gals["sersic_n"] <= 4.0))
    assert np.allclose(gals["ellip"], 1 - gals["axis_ratio"])
    blob = cat[cat["kind"] == "blob"][0]
    assert 8.0 <= blob["r_eff_arcsec"] <= 12.0 and blob["flux_F200W"] > 1e5


def test_make_catalog_deterministic_and_crowding_error():
    a = scene.make_catalog(np.random.default_rng(7), 10.0, 5.0, 0.01, ["F150W"], 20, 20)
    b = scene.make_catalog(np.random.default_rng(7), 10.0, 5.0, 0.01, ["F150W"], 20, 20)
    assert np.array_equal(a["ra"], b["ra"]) and np.array_equal(a["flux_F150W"], b["flux_F150W"])
    with pytest.raises(ValueError, match="isolated"):
        scene.make_catalog(np.random.default_rng(1), 10.0, 5.0, 0.001, ["F150W"], 500, 0)


def test_blob_is_large_and_smooth():
    cat = scene.make_catalog(np.random.default_rng(3), 0.0, 0.0, 0.005, ["F200W"], 0, 0,
                             n_saturated=0, blob=True)
    img = scene.render(cat, "F200W", [1024.0], [1024.0], (2048, 2048), 0.031, 0.04)
    prof = img[1024, 1024:]
    reff_pix = cat["r_eff_arcsec"][0] / 0.031
    assert reff_pix > 250
    assert prof[int(reff_pix)] > 0.05 * prof[0]     # extended over hundreds of pixels
    assert np.all(np.diff(prof[5:1000]) <= 0)
