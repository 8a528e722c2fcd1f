"""Tests of young.sim.artifacts: background, amplifiers, 1/f noise, wisps, cosmic rays."""

import numpy as np
import pytest
from young.sim import artifacts as A


def test_frame_time_matches_nircam():
    assert A.frame_time(2048, 2048, 4) == pytest.approx(10.73676, rel=1e-6)
    assert A.frame_time(640, 640, 1) == pytest.approx(4.18, abs=0.01)


def test_background_rate_gradient_and_description():
    rate, model = A.background_rate((100, 200), 0.25, gx=1e-4, gy=-2e-4, x0=100, y0=50)
    assert rate.dtype == np.float32 and rate.shape == (100, 200)
    assert rate[50, 100] == pytest.approx(0.25)
    assert rate[50, 199] - rate[50, 100] == pytest.approx(99e-4, rel=1e-4)
    assert rate[99, 100] - rate[50, 100] == pytest.approx(-49 * 2e-4, rel=1e-4)
    assert model["level"] == 0.25 and model["gx"] == 1e-4 and model["model"] == "poly2"
    curved, m2 = A.background_rate((100, 200), 0.25, cxx=1e-6, x0=100, y0=50)
    assert curved[50, 0] == pytest.approx(0.25 + 1e-6 * 100 ** 2, rel=1e-5)
    assert m2["cxx"] == 1e-6


def test_amp_slices_and_directions():
    sl = A.amp_slices(2048, 4)
    assert [(s.start, s.stop) for s in sl] == [(0, 512), (512, 1024), (1024, 1536), (1536, 2048)]
    assert A.amp_slices(640, 1) == [slice(0, 640)]
    assert A.read_directions(4, 1) == [1, -1, 1, -1]
    assert A.read_directions(4, -1) == [1, -1, 1, -1]
    assert A.read_directions(1, 1) == [1] and A.read_directions(1, -1) == [-1]
    with pytest.raises(ValueError):
        A.amp_slices(2048, 3)
    with pytest.raises(ValueError):
        A.read_directions(4, 2)


def test_readout_time_map_follows_directions():
    t = A.readout_time_map(8, 2048, 4)
    assert t[0, 0] == 0 and t[0, 1023] == 0 and t[0, 1024] == 0 and t[0, 2047] == 0
    assert t[0, 511] == pytest.approx(511e-5) and t[0, 512] == pytest.approx(511e-5)
    assert t[1, 0] == pytest.approx(524e-5)
    down = A.readout_time_map(8, 64, 1, fastaxis=-1, slowaxis=-2)
    assert down[7, 63] == 0 and down[0, 0] == down.max()


def row_means(cube, noutputs):
    """(nints*ngroups, noutputs, ny) row means per amplifier."""
    sl = A.amp_slices(cube.shape[-1], noutputs)
    c = cube.reshape(-1, *cube.shape[-2:])
    return np.stack([c[:, :, s].mean(axis=2) for s in sl], axis=1)


@pytest.fixture(scope="module")
def fnoise():
    rng = np.random.default_rng(11)
    return A.one_over_f_cube(rng, 2, 4, 1024, 2048, 4, amplitude_dn=2.5, common_fraction=0.5)


def test_one_over_f_amplitude_definition(fnoise):
    assert fnoise.dtype == np.float32 and fnoise.shape == (2, 4, 1024, 2048)
    rm = row_means(fnoise, 4)
    rms = np.sqrt(np.mean(rm ** 2))
    assert rms == pytest.approx(2.5, rel=0.10)
    # Each amplifier separately.
    for k in range(4):
        assert np.sqrt(np.mean(rm[:, k] ** 2)) == pytest.approx(2.5, rel=0.15)
    # Pixels vary within a row too, but stripes dominate the low frequencies.
    intra = (fnoise[0, 0, :, :512] - rm[0, 0][:, None]).std()
    assert 0.3 * 2.5 < intra < 2.0 * 2.5


def loglog_slope(series, lo, hi):
    """Power-law index of the mean periodogram of rows of ``series`` between bins lo..hi."""
    p = np.mean(np.abs(np.fft.rfft(series - series.mean(axis=-1, keepdims=True), axis=-1)) ** 2, axis=0)
    k = np.arange(p.size)
    sel = (k >= lo) & (k <= hi)
    return np.polyfit(np.log(k[sel]), np.log(p[sel]), 1)[0]


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_one_over_f_spectrum(alpha):
    rng = np.random.default_rng(5)
    cube = A.one_over_f_cube(rng, 1, 6, 1024, 2048, 4, 3.0, alpha=alpha, common_fraction=0.3)
    # Along rows (time sampled at the row period).
    rm = row_means(cube, 4).reshape(-1, 1024)
    assert loglog_slope(rm, 2, 200) == pytest.approx(-alpha, abs=0.2)
    # Along the fast direction (pixel clock), within rows of one amplifier.
    pix = cube[:, :, :, :512].reshape(-1, 512)
    assert loglog_slope(pix, 2, 200) == pytest.approx(-alpha, abs=0.2)


def test_one_over_f_amplifier_structure():
    rng = np.random.default_rng(8)
    cube = A.one_over_f_cube(rng, 1, 6, 1024, 2048, 4, 3.0, common_fraction=0.5)
    rm = row_means(cube, 4)
    corr = np.mean([np.corrcoef(rm[i, 0], rm[i, 1])[0, 1] for i in range(rm.shape[0])])
    assert 0.3 < corr < 0.7                      # partly common, rows differ between amps
    assert np.abs(rm[:, 0] - rm[:, 1]).mean() > 0.5
    # Fully common: the same stripes in every amplifier, mirrored by the read directions.
    full = A.one_over_f_cube(np.random.default_rng(8), 1, 1, 256, 2048, 4, 3.0, common_fraction=1.0)[0, 0]
    np.testing.assert_allclose(full[:, :512], full[:, 1023:511:-1], atol=1e-5)
    np.testing.assert_allclose(full[:, :512], full[:, 1024:1536], atol=1e-5)
    # Independent amplifiers.
    ind = row_means(A.one_over_f_cube(np.random.default_rng(9), 1, 6, 1024, 2048, 4, 3.0,
                                      common_fraction=0.0), 4)
    corr0 = np.mean([np.corrcoef(ind[i, 0], ind[i, 2])[0, 1] for i in range(ind.shape[0])])
    assert abs(corr0) < 0.25


def test_one_over_f_offsets_and_determinism():
    kw = dict(nints=1, ngroups=3, ny=64, nx=2048, noutputs=4, amplitude_dn=2.0)
    a = A.one_over_f_cube(np.random.default_rng(1), **kw)
    b, off = A.one_over_f_cube(np.random.default_rng(1), amp_offset_dn=5.0, return_offsets=True, **kw)
    c = A.one_over_f_cube(np.random.default_rng(1), **kw)
    assert np.array_equal(a, c)
    assert off.shape == (1, 3, 4) and 0 < np.abs(off).max() < 40
    for k, s in enumerate(A.amp_slices(2048, 4)):
        diff = b[:, :, :, s] - a[:, :, :, s]
        np.testing.assert_allclose(diff, np.broadcast_to(off[:, :, k, None, None], diff.shape), atol=1e-4)


def test_one_over_f_subarray_one_output():
    rng = np.random.default_rng(2)
    cube = A.one_over_f_cube(rng, 1, 8, 160, 160, 1, 4.0, fastaxis=-1, slowaxis=-2)
    assert cube.shape == (1, 8, 160, 160)
    rm = row_means(cube, 1)
    assert np.sqrt(np.mean(rm ** 2)) == pytest.approx(4.0, rel=0.25)


def test_ols_slope_exact_for_linear_cube():
    t = np.array([10.7, 21.5, 32.2, 42.9, 53.7])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 30, 40))
    cube = (a[None] + b[None] * t[:, None, None]).astype(np.float32)
    np.testing.assert_allclose(A.ols_slope(cube, t), b, atol=1e-4)
    four = np.stack([cube, 2 * cube])
    s = A.ols_slope(four, t)
    assert s.shape == (2, 30, 40)
    np.testing.assert_allclose(s[1], 2 * b, atol=2e-4)
    with pytest.raises(ValueError):
        A.ols_slope(cube, t[:3])


@pytest.mark.parametrize("det", ["NRCA3", "A4", "nrcb3", "NRCB4"])
def test_wisp_template_unit_peak(det):
    w = A.wisp_template(det, "F150W")
    assert w.dtype == np.float32 and w.shape == (2048, 2048)
    assert w.max() == pytest.approx(1.0) and w.min() >= 0
    assert not w[:4].any() and not w[-4:].any() and not w[:, :4].any() and not w[:, -4:].any()
    assert 0.02 < (w > 0.1).mean() < 0.5              # extended but not everywhere
    # Smooth: neighbouring pixels differ little.
    assert np.abs(np.diff(w[4:-4, 4:-4], axis=1)).max() < 0.02
    assert A.wisp_strength(det, "F150W") > 0


@pytest.mark.parametrize("det", ["NRCA1", "NRCA2", "NRCB1", "NRCB2", "NRCALONG", "NRCBLONG"])
def test_wisp_template_zero_elsewhere(det):
    assert not A.wisp_template(det, "F200W", shape=(64, 64)).any()
    assert A.wisp_strength(det, "F200W") == 0.0


def test_wisp_filter_dependence_subarray_and_rng():
    w150 = A.wisp_template("B4", "F150W")
    w070 = A.wisp_template("B4", "F070W")
    assert 0 < np.abs(w150 - w070).max() < 0.5               # weakly filter dependent
    assert A.wisp_strength("B4", "F070W") < A.wisp_strength("B4", "F150W")
    assert A.wisp_strength("A4", "F150W") < A.wisp_strength("B4", "F150W")
    sub = A.wisp_template("B4", "F150W", shape=(400, 300), origin=(200, 500))
    np.testing.assert_allclose(sub, w150[200:600, 500:800], atol=1e-6)
    p1 = A.wisp_template("B4", "F150W", rng=np.random.default_rng(1))
    p2 = A.wisp_template("B4", "F150W", rng=np.random.default_rng(1))
    assert np.array_equal(p1, p2) and p1.max() == pytest.approx(1.0)
    assert 0 < np.abs(p1 - w150).max() < 0.6


def test_cosmic_rays_rate_and_fields():
    rng = np.random.default_rng(4)
    shape, texp = (2048, 2048), 1000.0
    hits = A.cosmic_rays(rng, shape, texp)
    assert hits.dtype == A.CR_DTYPE
    nev = np.unique(hits["event"]).size
    expected = 5.0 * 2048 ** 2 * (18e-4) ** 2 * texp
    assert nev == pytest.approx(expected, rel=0.05)
    strong = hits[hits["electrons"] >= 100]                   # ~4 sigma of CDS read noise
    frac = np.unique(strong["y"].astype(np.int64) * 2048 + strong["x"]).size / 2048 ** 2
    assert 0.02 < frac < 0.10                                 # a few % of pixels in 1000 s
    assert np.all((hits["time"] >= 0) & (hits["time"] < texp))
    assert np.all(hits["electrons"] >= 1.0) and np.median(hits["electrons"]) > 20
    assert np.all(np.diff(hits["time"]) >= 0)
    two = A.cosmic_rays(np.random.default_rng(4), (256, 256), 100.0, nints=2)
    assert set(np.unique(two["int"])) <= {0, 1}
