"""Tests of young.sim.ramps: MULTIACCUM accumulation, noise, saturation, cosmic rays."""

import numpy as np
import pytest
from young.sim import artifacts as A
from young.sim import ramps as R

FT = A.frame_time(2048, 2048, 4)
BIAS, GAIN, SAT = 10000.0, 2.0, 60000.0


def test_readpatt_table():
    assert R.READPATT["RAPID"] == {"nframes": 1, "groupgap": 0, "max_groups": 10}
    assert (R.READPATT["MEDIUM8"]["nframes"], R.READPATT["MEDIUM8"]["groupgap"]) == (8, 2)
    assert (R.READPATT["DEEP8"]["nframes"], R.READPATT["DEEP8"]["groupgap"]) == (8, 12)
    assert (R.READPATT["SHALLOW2"]["nframes"], R.READPATT["SHALLOW2"]["groupgap"]) == (2, 3)
    for p in R.READPATT.values():
        assert p["nframes"] + p["groupgap"] in (1, 2, 5, 10, 20)


def test_group_times():
    t = R.group_times(4, 8, 2, FT)
    np.testing.assert_allclose(np.diff(t), 10 * FT)
    assert t[0] == pytest.approx(4.5 * FT)
    assert R.frame_indices(2, 2, 3).tolist() == [[0, 1], [5, 6]]


def ramp(rng, rate, patt="RAPID", ngroups=5, nints=1, rn=0.0, **kw):
    p = R.READPATT[patt]
    return R.make_ramps(rng, rate, ngroups, nints, p["nframes"], p["groupgap"], FT, BIAS,
                        0.0, GAIN, rn, SAT, **kw)


def slopes(r, patt="RAPID"):
    p = R.READPATT[patt]
    t = R.group_times(r.shape[1], p["nframes"], p["groupgap"], FT)
    return A.ols_slope(r.astype(np.float32) - BIAS, t)


@pytest.mark.parametrize("patt", ["RAPID", "BRIGHT2", "MEDIUM8"])
def test_noiseless_ramp_recovers_rate(patt):
    rate = np.full((20, 30), 53.7, np.float32)
    rate[:, :10] = 1.3
    r = ramp(np.random.default_rng(0), rate, patt, poisson=False)
    assert r.dtype == np.uint16 and r.shape == (1, 5, 20, 30)
    p = R.READPATT[patt]
    t = R.group_times(5, p["nframes"], p["groupgap"], FT)
    expect = BIAS + rate[None, None] * t[None, :, None, None]
    assert np.abs(r - expect).max() <= 0.5 + 1e-3
    np.testing.assert_allclose(slopes(r, patt)[0], rate, rtol=1e-3, atol=0.01)


def test_expected_sigma_matches_textbook_formula():
    # nframes = 1: read noise 12 s^2/(N(N^2-1)dt^2), Poisson 6(N^2+1)/(5N(N^2-1)) f/dt.
    for n in (2, 3, 5, 10):
        rn = R.expected_rate_sigma(0.0, n, 1, 0, FT, GAIN, 14.0)
        assert rn ** 2 == pytest.approx(12 * (14.0 ** 2 / 2) / (n * (n * n - 1) * FT ** 2))
        ph = R.expected_rate_sigma(3.0, n, 1, 0, FT, GAIN, 0.0)
        assert ph ** 2 == pytest.approx(6 * (n * n + 1) / (5 * n * (n * n - 1)) * 3.0 / (GAIN * FT))
    one = R.expected_rate_sigma(1.0, 5, 1, 0, FT, GAIN, 14.0)
    assert R.expected_rate_sigma(1.0, 5, 1, 0, FT, GAIN, 14.0, nints=4) == pytest.approx(one / 2)


@pytest.mark.parametrize("patt,rate,rn", [("RAPID", 0.05, 14.0),     # read-noise limited
                                          ("RAPID", 40.0, 14.0),     # shot-noise limited
                                          ("MEDIUM8", 0.3, 14.0),    # averaged frames, gaps
                                          ("SHALLOW4", 20.0, 10.0)])
def test_slope_variance_matches_expectation(patt, rate, rn):
    rng = np.random.default_rng(123)
    r = ramp(rng, np.full((200, 200), rate, np.float32), patt, ngroups=6, rn=rn)
    s = slopes(r, patt)[0]
    p = R.READPATT[patt]
    sigma = R.expected_rate_sigma(rate, 6, p["nframes"], p["groupgap"], FT, GAIN, rn)
    assert s.mean() == pytest.approx(rate, abs=5 * sigma / 200)
    assert s.std() == pytest.approx(sigma, rel=0.10)


def test_saturation_clipping():
    rate = np.array([[10000.0, 2000.0, 10.0]], np.float32)
    r = ramp(np.random.default_rng(1), rate, rn=14.0)[0, :, 0]
    assert np.all(r[:, 0] == SAT)                        # saturated from the first group
    first = np.argmax(r[:, 1] == SAT)
    assert 1 <= first <= 3                               # (60000 - 10000) / 2000 = 25 s
    assert np.all(r[first:, 1] == SAT) and np.all(r[:first, 1] < SAT)
    assert np.all(r[:, 2] < SAT) and r.max() <= SAT


def test_cosmic_ray_jump_in_later_groups_only():
    rate = np.full((16, 16), 1.0, np.float32)
    hit = np.zeros(2, A.CR_DTYPE)
    hit[0] = (0, 5, 7, 2.5 * FT, 3000.0, 0)              # between the reads of groups 1 and 2
    hit[1] = (0, 9, 3, 0.2 * FT, 800.0, 1)               # before the first read
    clean = ramp(np.random.default_rng(9), rate, rn=14.0).astype(float)
    hits = ramp(np.random.default_rng(9), rate, rn=14.0, cosmic_rays=hit).astype(float)
    d = hits - clean
    assert np.all(d[0, :2, 5, 7] == 0)
    np.testing.assert_allclose(d[0, 2:, 5, 7], 1500.0, atol=1.0)
    np.testing.assert_allclose(d[0, :, 9, 3], 400.0, atol=1.0)
    d[0, :, 5, 7] = d[0, :, 9, 3] = 0
    assert not d.any()
    # Averaged frames: a hit inside a group gives a partial jump there.
    hit2 = hit[:1].copy()
    hit2["time"] = 1.5 * FT                              # during frame 1 of SHALLOW4's group 0
    c4 = ramp(np.random.default_rng(2), rate, "SHALLOW4", ngroups=3, poisson=False)
    h4 = ramp(np.random.default_rng(2), rate, "SHALLOW4", ngroups=3, poisson=False, cosmic_rays=hit2)
    d4 = h4.astype(float) - c4
    assert d4[0, 0, 5, 7] == pytest.approx(1500.0 * 3 / 4, abs=1)
    np.testing.assert_allclose(d4[0, 1:, 5, 7], 1500.0, atol=1)


def test_cosmic_rays_from_generator_only_raise_values():
    rng = np.random.default_rng(3)
    shape = (64, 64)
    hits = A.cosmic_rays(rng, shape, 5 * FT, rate_per_cm2_s=500.0)
    assert len(hits)
    rate = np.full(shape, 0.5, np.float32)
    clean = ramp(np.random.default_rng(4), rate, rn=0.0, poisson=False).astype(float)
    hit = ramp(np.random.default_rng(4), rate, rn=0.0, poisson=False, cosmic_rays=hits).astype(float)
    d = hit - clean
    assert np.all(d >= -1) and np.all(np.diff(d, axis=1) >= -1)   # jumps persist
    assert (d[0, -1] > 10).sum() > 0


def test_additive_cube_and_multiple_integrations():
    rng = np.random.default_rng(5)
    rate = np.full((32, 64), 0.2, np.float32)
    cube = A.one_over_f_cube(rng, 2, 4, 32, 64, 1, 5.0)
    base = ramp(np.random.default_rng(6), rate, ngroups=4, nints=2, poisson=False)
    plus = ramp(np.random.default_rng(6), rate, ngroups=4, nints=2, poisson=False, additive_cube=cube)
    assert plus.shape == (2, 4, 32, 64)
    assert np.abs(plus.astype(float) - base - cube).max() <= 1.0
    same = ramp(np.random.default_rng(6), rate, ngroups=4, nints=2, poisson=False,
                additive_cube=cube[0])
    assert np.abs(same[1].astype(float) - base[1] - cube[0]).max() <= 1.0
    with pytest.raises(ValueError):
        ramp(rng, rate, ngroups=4, additive_cube=cube[:, :3])


def test_determinism_with_seed():
    rate = np.random.default_rng(0).uniform(0, 5, (40, 40)).astype(np.float32)
    a = ramp(np.random.default_rng(77), rate, "BRIGHT2", rn=14.0)
    b = ramp(np.random.default_rng(77), rate, "BRIGHT2", rn=14.0)
    c = ramp(np.random.default_rng(78), rate, "BRIGHT2", rn=14.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_per_pixel_reference_arrays():
    shape = (8, 8)
    rate = np.zeros(shape, np.float32)
    bias = np.full(shape, 12000.0, np.float32)
    bias[0] = 15000.0
    r = R.make_ramps(np.random.default_rng(0), rate, 3, 1, 1, 0, FT, bias, 0.0,
                     np.full(shape, 2.1), 0.0, np.full(shape, 58000.0), poisson=False)
    assert np.all(r[0, :, 0] == 15000) and np.all(r[0, :, 1:] == 12000)
    with pytest.raises(ValueError):
        R.make_ramps(np.random.default_rng(0), rate, 3, 1, 1, 0, FT, np.zeros((4, 4)), 0.0,
                     2.0, 10.0, 60000.0)
