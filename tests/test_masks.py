"""Tests of young.algorithms.masks (tiered source masks), on arrays built here."""


import numpy as np
import pytest
from scipy import ndimage
from young.algorithms import masks
from young.algorithms.dq import bad as dq_bad
from young.algorithms.masks import (
    PRESETS,
    MaskParams,
    dilate,
    params_for,
    tiered_source_mask,
)

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4


def gaussian_sources(shape, sources):
    """Sum of circular Gaussians; ``sources`` = [(y, x, total_flux, sigma), ...]."""
    yy, xx = np.indices(shape, dtype=np.float32)
    img = np.zeros(shape, np.float32)
    for y0, x0, flux, s in sources:
        r = int(6 * s) + 1
        sl = (slice(max(int(y0) - r, 0), int(y0) + r + 1), slice(max(int(x0) - r, 0), int(x0) + r + 1))
        img[sl] += flux / (2 * np.pi * s * s) * np.exp(
            -((yy[sl] - y0) ** 2 + (xx[sl] - x0) ** 2) / (2 * s * s))
    return img


def field(shape=(512, 512), nsrc=40, sigma=1.0, seed=0):
    """Sky (100) + Gaussian noise (sigma) + compact sources at least 5 sigma peak."""
    rng = np.random.default_rng(seed)
    srcs = [(rng.uniform(20, shape[0] - 20), rng.uniform(20, shape[1] - 20),
             rng.uniform(50, 2000) * sigma, rng.uniform(1.0, 4.0)) for _ in range(nsrc)]
    img = 100 + gaussian_sources(shape, srcs) + rng.normal(0, sigma, shape).astype(np.float32)
    return img, srcs


# ---------------------------------------------------------------- parameters

def test_presets_match_algorithms_md():
    y, c = PRESETS["young"], PRESETS["ceers"]
    for p in (y, c):
        assert p.ring_radius_in == 40 and p.ring_width == 3
        assert tuple(p.tier_kernel_size) == (25, 15, 5, 2)
    assert tuple(y.tier_npixels) == (15, 10, 3, 1)
    assert tuple(c.tier_npixels) == (15, 15, 5, 2)
    assert tuple(y.tier_dilate_size) == (33, 25, 21, 19)
    assert tuple(c.tier_dilate_size) == (0, 0, 0, 3)
    assert tuple(y.tier_nsigma) == (1.5,) * 4
    assert tuple(c.tier_nsigma) == (3.0,) * 4


def test_params_for_overrides_and_errors():
    p = params_for("ceers", tier_nsigma=[2, 2, 2, 2], ring_block=4)
    assert p.tier_nsigma == (2, 2, 2, 2) and p.ring_block == 4
    assert p.tier_dilate_size == (0, 0, 0, 3)          # rest of the preset kept
    assert PRESETS["ceers"].tier_nsigma == (3.0,) * 4  # preset not modified
    with pytest.raises(ValueError, match="unknown mask preset"):
        params_for("hst")
    with pytest.raises(ValueError, match="unknown mask parameter"):
        params_for("young", nsigma=3)
    with pytest.raises(ValueError, match="one per tier"):
        MaskParams(tier_kernel_size=(25, 15), tier_npixels=(1, 1, 1))


def test_dq_bad_names_and_ints():
    dq = np.array([[0, DO_NOT_USE, SATURATED, JUMP_DET, 2**31]], dtype=np.uint32)
    assert dq_bad(dq).tolist() == [[False, True, True, False, True]]
    assert dq_bad(dq, "DO_NOT_USE+JUMP_DET").tolist() == [[False, True, False, True, False]]
    assert dq_bad(dq, 0).sum() == 0
    assert dq_bad(None, shape=(2, 3)).shape == (2, 3)


# ---------------------------------------------------------------- building blocks

@pytest.mark.parametrize("radius", [1, 1.5, 3, 5])
def test_dilate_small_radii_exact(radius):
    rng = np.random.default_rng(1)
    m = rng.random((200, 230)) < 0.003
    m[0, 5] = m[199, 229] = True  # seeds on the edges
    exact = ndimage.distance_transform_edt(~m) <= radius
    assert np.array_equal(dilate(m, radius), exact)


@pytest.mark.parametrize("radius", [19, 21, 25, 33])
def test_dilate_octagon_close_to_disk(radius):
    rng = np.random.default_rng(2)
    m = rng.random((300, 300)) < 0.0005
    m[150:170, 100:190] = True  # an extended seed region
    m[0, 0] = True
    d = ndimage.distance_transform_edt(~m)
    out = dilate(m, radius)
    # Documented geometry: inradius 0.961 r, vertex radius 1.040 r; +-1 px of rounding.
    assert out[d <= 0.961 * radius - 1].all()
    assert not out[d > 1.040 * radius + 1].any()
    added_exact = (d <= radius).sum() - m.sum()
    added = out.sum() - m.sum()
    assert abs(added / added_exact - 1) < 0.03  # area within 3 % (documented 2.5 %)
    assert dilate(m, 0).sum() == m.sum()


def test_detect_equals_photutils():
    from photutils.segmentation import detect_sources
    img, _ = field((200, 200), nsrc=25, seed=3)
    sm = ndimage.gaussian_filter(img - 100, 2)
    excl = np.zeros(img.shape, bool)
    excl[50:60, :] = True
    for npix in (1, 5, 15):
        seg = detect_sources(sm, 0.5, n_pixels=npix, mask=excl)
        ref = np.zeros(img.shape, bool) if seg is None else seg.data > 0
        assert np.array_equal(masks._detect(sm, 0.5, npix, excl), ref)


@pytest.mark.parametrize("sigma", [2.0, 5.0, 15.0, 25.0])
def test_smooth_matches_gaussian_filter(sigma):
    img, _ = field((256, 300), nsrc=30, seed=4)
    fast = masks._smooth(img, sigma, fill=100.0)
    exact = ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="constant",
                                    cval=100.0, truncate=6.0)
    # Same convolution; differences are float32 rounding and the sampled vs
    # analytic Gaussian (relative 1e-4 of the smoothed structure).
    amp = exact.max() - 100.0
    assert np.abs(fast - exact).max() < 1e-3 * amp


def test_ring_background_block_vs_exact():
    """The 8x8 block version estimates the background as well as the exact ring."""
    ny = nx = 256
    yy, xx = np.indices((ny, nx))
    noise = np.random.default_rng(5).normal(0, 1, (ny, nx))
    bad = np.zeros((ny, nx), bool)
    inner = (slice(48, -48), slice(48, -48))

    def rms(a):
        return float(np.sqrt(np.mean(a[inner] ** 2)))

    # Flat sky + noise: the error is sampling noise, 1.25/sqrt(780) = 0.045
    # for the exact ring, ~1.25 x 1.25/8/sqrt(44) = 0.03 for 44 block medians.
    sky = np.full((ny, nx), 100.0)
    fast = masks.ring_median_background(sky + noise, bad, block=8)
    exact = masks.ring_median_background(sky + noise, bad, block=1)
    assert rms(fast - sky) < 0.045
    assert rms(fast - sky) <= rms(exact - sky)
    # A strong smooth gradient (5 sigma over 90 px): both rings are biased by
    # the curvature (exact: ~0.23 rms here); the block ring (radius 40-48 px
    # instead of 40-43) differs from the exact one by < 5 % of the amplitude.
    sky = 100 + 5 * np.sin(xx / 90.0) + 3 * np.cos(yy / 70.0)
    fast = masks.ring_median_background(sky + noise, bad, block=8)
    exact = masks.ring_median_background(sky + noise, bad, block=1)
    assert rms(fast - exact) < 0.25
    assert abs(np.median((fast - exact)[inner])) < 0.1
    # With compact sources in the field the two still agree to 0.3 sigma rms.
    src, _ = field((ny, nx), nsrc=20, seed=5)
    img = sky + noise + src - 100
    fast = masks.ring_median_background(img, bad, block=8)
    exact = masks.ring_median_background(img, bad, block=1)
    assert rms(fast - exact) < 0.3


# ---------------------------------------------------------------- the mask

def test_dq_and_nan_always_masked_and_input_untouched():
    rng = np.random.default_rng(6)
    img = rng.normal(10, 1, (128, 128)).astype(np.float32)
    img[5, 7] = np.nan
    img[9, 9] = np.inf
    dq = np.zeros(img.shape, np.uint32)
    dq[20, 30] = DO_NOT_USE
    dq[21, 30] = SATURATED
    dq[22, 30] = JUMP_DET  # not a "bad" bit by default
    before, dq_before = img.copy(), dq.copy()
    m = tiered_source_mask(img, dq, params_for("ceers", tier_nsigma=(1e6,) * 4))
    assert m[5, 7] and m[9, 9] and m[20, 30] and m[21, 30]
    assert not m[22, 30]
    assert m.sum() == 4  # nothing detected with an absurd threshold
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(dq, dq_before)
    assert tiered_source_mask(np.full((16, 16), np.nan)).all()


@pytest.mark.parametrize("preset", ["young", "ceers"])
def test_pure_noise_gives_empty_mask(preset):
    # Thresholds are nsigma x the *pixel* rms applied to smoothed images; the
    # smoothed noise has rms <= 1/(2 sqrt(pi) 2) = 0.14 of it, so even 1.5
    # pixel-sigma is > 10 smoothed sigma: no false detections expected.
    rng = np.random.default_rng(7)
    img = rng.normal(0, 1, (384, 384)).astype(np.float32)
    assert tiered_source_mask(img, None, preset).mean() < 1e-4


@pytest.mark.parametrize("preset", ["young", "ceers"])
def test_sources_masked(preset):
    img, srcs = field((512, 512), nsrc=30, seed=8)
    mask, tiers = tiered_source_mask(img, None, preset, return_tiers=True)
    assert len(tiers) == 4
    np.testing.assert_array_equal(np.logical_or.reduce(tiers), mask)
    for y0, x0, flux, s in srcs:
        # every source centre (peak >= 50/(2 pi 16) = 0.5 sigma after 2-px smoothing
        # and >= 1 sigma per pixel for the faintest) is masked
        assert mask[int(round(y0)), int(round(x0))]
    # YOUNG dilates by 19-33 px: a much larger mask than CEERS (3 px)
    frac = mask.mean()
    assert (0.2 < frac < 0.9) if preset == "young" else (0.01 < frac < 0.2)


def test_young_dilation_covers_radius():
    img = np.random.default_rng(9).normal(0, 1, (256, 256)).astype(np.float32)
    img += gaussian_sources(img.shape, [(128, 128, 3000, 1.5)])
    m = tiered_source_mask(img, None, "young")
    d = np.hypot(*(np.indices(img.shape) - 128))
    # detected core (>= a few px) dilated by >= 0.96 x 19 px in every direction
    assert m[d <= 0.96 * 19].all()
    assert not m[d > 80].any()


@pytest.mark.filterwarnings("ignore::photutils.utils.exceptions.NoDetectionsWarning")
def test_agrees_with_reference_implementation():
    """Compare with the literal CEERS recipe (full-resolution ring median,
    full-resolution smoothing, photutils detect_sources and circular
    footprints); the fast path differs only in the approximations documented
    in young.algorithms.masks."""
    from astropy.convolution import Ring2DKernel
    from astropy.stats import biweight_location, biweight_scale
    from photutils.segmentation import detect_sources
    from photutils.utils import circular_footprint

    img, _ = field((320, 320), nsrc=25, seed=10)
    for preset in ("ceers", "young"):
        p = params_for(preset)
        filled = img.astype(np.float64)
        bkg = ndimage.median_filter(filled, footprint=Ring2DKernel(40, 3).array > 0)
        x = filled - bkg
        ref = np.zeros(img.shape, bool)
        for s, n, ns, d in zip(p.tier_kernel_size, p.tier_npixels, p.tier_nsigma,
                               p.tier_dilate_size):
            good = x[~ref]
            loc = biweight_location(good)
            rms = biweight_scale(good)
            sm = ndimage.gaussian_filter(np.where(ref, loc, x), s, truncate=4.0)
            seg = detect_sources(sm, loc + ns * rms, n_pixels=n, mask=ref)
            if seg is not None:
                ref |= (seg.make_source_mask(footprint=circular_footprint(d)) if d
                        else seg.data > 0)
        fast = tiered_source_mask(img, None, p)
        iou = (fast & ref).sum() / (fast | ref).sum()
        assert iou > 0.85, (preset, iou)
        assert abs(fast.mean() - ref.mean()) < 0.1 * ref.mean()


@pytest.mark.parametrize("shape", [(64, 64), (160, 200), (2048, 64)])
def test_subarray_shapes(shape):
    img, _ = field(shape, nsrc=3, seed=11)
    m = tiered_source_mask(img)
    assert m.shape == shape and m.dtype == bool


def test_full_frame_masks_reference_border():
    """A 2048 x 2048 frame with 600 sources: the reference border is always masked (speed is
    benchmarked in bench/fnoise, not asserted here: ~0.8 s of CPU on a 2-core EPYC)."""
    rng = np.random.default_rng(12)
    srcs = [(rng.uniform(0, 2048), rng.uniform(0, 2048), rng.uniform(20, 2000),
             rng.uniform(1, 6)) for _ in range(600)]
    img = gaussian_sources((2048, 2048), srcs) + rng.normal(0, 1, (2048, 2048)).astype(np.float32)
    dq = np.zeros(img.shape, np.uint32)
    dq[:4], dq[-4:], dq[:, :4], dq[:, -4:] = 2**31, 2**31, 2**31, 2**31
    for preset in ("young", "ceers"):
        m = tiered_source_mask(img, dq, preset)
        assert m[:4].all() and m[:, -4:].all()


# --------------------------------------------------------------------------- extended light


def _smooth_field(seed, shape=(1024, 1024)):
    """Pixel noise of sigma 1 plus compact sources masked by the tiered mask."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 1.0, shape).astype(np.float32)
    return img, tiered_source_mask(img)


def test_extended_light_found_and_grown():
    """An exponential blob (r_e = 100 px, 0.3 sigma per pixel at r_e) that the tiered mask misses
    (its ring median removes it) is masked: block noise is 1.25/32 = 0.04 sigma, 0.007 after the
    smoothing, so the blob is > 3 sigma out to ~2.5 r_e and that core grows by its own radius
    (to ~5 r_e); nothing beyond 6 r_e."""
    img, compact = _smooth_field(1)
    yy, xx = np.indices(img.shape)
    r = np.hypot(xx - 600, yy - 400)
    blob = (0.3 * np.exp(-1.68 * (r / 100 - 1))).astype(np.float32)
    found = tiered_source_mask(img + blob)
    assert found[r < 100].mean() < 0.5  # the tiered mask alone misses most of it
    ext = masks.extended_light_mask(img + blob, found)
    print(f"masked: r < 100 {(ext | found)[r < 100].mean():.2f}, 100-200 {(ext | found)[(r > 100) & (r < 200)].mean():.2f}, "
          f"beyond 600 {ext[r > 600].mean():.3f}")
    assert (ext | found)[r < 300].mean() > 0.95
    assert ext[r > 600].mean() < 0.01
    assert not (ext & found).any()


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_extended_light_not_in_noise_or_small_images(seed):
    img, compact = _smooth_field(seed)
    assert not masks.extended_light_mask(img, compact).any()
    small = img[:200, :640]  # 6 x 20 blocks: too few to tell extended light from the sky
    assert not masks.extended_light_mask(small + 5.0 * (np.arange(640) > 320), compact[:200, :640]).any()


def test_block_nanmedian_matches_numpy():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(70, 66)).astype(np.float32)
    a[rng.random(a.shape) < 0.4] = np.nan
    a[:8, :8] = np.nan
    got = masks._block_nanmedian(a, 8, 0.25)
    blocks = a[:64, :64].reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(8, 8, 64)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(blocks, axis=2)
    want[np.isfinite(blocks).sum(axis=2) < 16] = np.nan
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.isnan(got[0, 0])
