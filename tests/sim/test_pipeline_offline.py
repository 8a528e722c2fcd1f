"""The real jwst Detector1 -> Image2 -> Image3 on the simulated ``tiny`` set, offline,
checked against the truth: count rates, background, alignment, source catalog.

Detector1 and Image2 are the session's young-stage1/young-stage2 runs (tests/chain_fixtures.py,
under the network guard); Image3 runs here once per module, plain jwst on STScI-style
associations, in a subprocess with the network guard (crds and jwst keep module state).
"""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
from astropy.table import Table

pytestmark = pytest.mark.slow

PIPELINE = textwrap.dedent(r'''
    import glob, json, logging, os, sys, time, warnings
    warnings.simplefilter("ignore")
    raw, out = sys.argv_raw, sys.argv_out
    t0 = time.monotonic()
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base
    from astropy.io import fits
    times = {"import": time.monotonic() - t0}
    # Detector1 and Image2 ran once for the whole session through young-stage1/young-stage2
    # (tests/chain_fixtures.py, network-guarded); their products are linked into `out`.
    groups = {}
    for c in sorted(glob.glob(os.path.join(out, "*_cal.fits"))):
        groups.setdefault(fits.getval(c, "FILTER"), []).append(c)
    t = time.monotonic()
    for filt, cals in sorted(groups.items()):
        asn = asn_from_list(cals, rule=DMS_Level3_Base, product_name=f"tiny_{filt.lower()}")
        name, text = asn.dump(format="json")
        path = os.path.join(out, f"tiny_{filt.lower()}_asn.json")
        with open(path, "w") as fh:
            fh.write(text)
        Image3Pipeline.call(path, output_dir=out, save_results=True)
    times["image3"] = time.monotonic() - t
    print(json.dumps(times))
''')


@pytest.fixture(scope="module")
def pipeline_run(tiny_set, tiny_rates, tiny_cals, tmp_path_factory, run_offline_module):
    out = tmp_path_factory.mktemp("tiny_pipeline")
    for p in (*tiny_rates, *tiny_cals):
        (out / p.name).symlink_to(p)
    run = run_offline_module
    code = f"import sys\nsys.argv_raw = {str(tiny_set.root / 'raw')!r}\nsys.argv_out = {str(out)!r}\n" + PIPELINE
    r = run(code, tiny_set, timeout=1800, cwd=out)
    (out / "pipeline.log").write_text(r.stderr)
    times = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
    return out, r, times


def _truth(tiny_set) -> Table:
    return Table.read(tiny_set.truth / "exposures.ecsv")


def test_pipelines_ran_offline_with_the_synthetic_cache(pipeline_run, tiny_set):
    out, r, times = pipeline_run
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.network_attempts == 0, r.stderr[-2000:]
    print("\njwst stage timings on tiny (s):", {k: round(v, 1) for k, v in times.items()})
    from astropy.io import fits

    truth = _truth(tiny_set)
    assert len(list(out.glob("*_rate.fits"))) == len(truth)
    assert len(list(out.glob("*_cal.fits"))) == len(truth)
    for filt in set(truth["filter"]):
        stem = f"tiny_{filt.lower()}"
        for suffix in ("_i2d.fits", "_cat.ecsv", "_segm.fits"):
            assert (out / (stem + suffix)).is_file(), stem + suffix
    rate = out / f"{truth['basename'][0]}_rate.fits"
    h = fits.getheader(rate)
    assert h["CRDS_CTX"] == "jwst_9001.pmap"
    assert h["R_DARK"] == "crds://" + h["R_DARK"].split("//")[-1] and "jwst_nircam_dark_9" in h["R_DARK"]
    for key in ("S_DQINIT", "S_SATURA", "S_SUPERB", "S_REFPIX", "S_LINEAR", "S_DARK", "S_JUMP", "S_RAMP"):
        assert h[key] == "COMPLETE", key


def _aperture_sum(img, x, y, r):
    ny, nx = img.shape
    x0, x1 = int(math.floor(x - r - 1)), int(math.ceil(x + r + 1))
    y0, y1 = int(math.floor(y - r - 1)), int(math.ceil(y + r + 1))
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    # sub-sampled circular aperture (5 x 5 per pixel)
    s = (np.arange(5) - 2) / 5.0
    w = np.zeros(yy.shape)
    for dy in s:
        for dx in s:
            w += ((xx + dx - x) ** 2 + (yy + dy - y) ** 2 <= r * r)
    w /= 25.0
    return float(np.nansum(img[y0:y1 + 1, x0:x1 + 1] * w)), w, (slice(y0, y1 + 1), slice(x0, x1 + 1))


def _expected_background(tiny_set, row, shape):
    """Injected sky + wisp (DN/s) of a truth row, as it is in the rate file."""
    from young.sim import instrument as inst

    meta = json.loads((tiny_set.truth / "exposures.json").read_text())
    rec = next(e for e in meta["exposures"] if e["basename"] == row["basename"])
    bm = rec["background_model"]
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    sky = bm["level"] + bm["gx"] * (xx - bm["x0"]) + bm["gy"] * (yy - bm["y0"])
    sub = inst.subarray(row["detector"], row["subarray"], row["filter"])
    flat = sub.cut(inst.flat_field(row["detector"], row["filter"], tiny_set.seed))
    bkg = sky * flat
    if row["wisp_template"]:
        from astropy.io import fits

        rate_t = fits.getdata(tiny_set.wisp_dir / row["wisp_template"], "RATE")
        bkg = bkg + row["wisp_scale"] * sub.cut(rate_t)
    return bkg


def test_rates_match_injected_star_count_rates_and_background(pipeline_run, tiny_set):
    from astropy.io import fits
    from young.sim import scene

    out, r, _ = pipeline_run
    assert r.returncode == 0
    cat = Table.read(tiny_set.truth / "catalog.ecsv")
    allxy = np.c_[np.asarray(cat["ra"]) * np.cos(np.radians(np.mean(cat["dec"]))), np.asarray(cat["dec"])] * 3600
    from scipy.spatial import cKDTree

    tree = cKDTree(allxy)
    ratios, pulls, bkg_offsets = [], [], []
    for row in _truth(tiny_set):
        with fits.open(out / f"{row['basename']}_rate.fits") as h:
            rate, err, dq = h["SCI"].data, h["ERR"].data, h["DQ"].data
        oneoverf = fits.getdata(tiny_set.truth / row["oneoverf_truth"], "SCI")
        clean = rate - oneoverf
        bkg = _expected_background(tiny_set, row, rate.shape)
        resid = clean - bkg
        srcs = Table.read(tiny_set.truth / "sources" / f"{row['basename']}_sources.ecsv")
        scale = 0.031 if row["channel"] == "SHORT" else 0.063
        # background: pixels away from every source
        mask = (dq == 0)
        yy, xx = np.mgrid[0:rate.shape[0], 0:rate.shape[1]]
        for s in srcs:
            rad = 2.0 / scale
            sl = (slice(max(0, int(s["y"] - rad)), int(s["y"] + rad) + 1),
                  slice(max(0, int(s["x"] - rad)), int(s["x"] + rad) + 1))
            mask[sl] &= (xx[sl] - s["x"]) ** 2 + (yy[sl] - s["y"]) ** 2 > rad ** 2
        n = mask.sum()
        bkg_offsets.append((np.mean(resid[mask]), np.std(resid[mask]) / math.sqrt(n), row["background_dn_s"]))
        # bright isolated unsaturated stars fully on the readout; a 0.4" aperture: big enough for
        # the pixel-integrated PSF to hold the analytic encircled energy (to 0.1 %)
        rap = 0.4 / scale
        for s in srcs[(srcs["kind"] == "star") & ~srcs["saturated"]]:
            if not (rap + 6 < s["x"] < rate.shape[1] - rap - 6 and rap + 6 < s["y"] < rate.shape[0] - rap - 6):
                continue
            xy = np.array([s["ra"] * np.cos(np.radians(np.mean(cat["dec"]))), s["dec"]]) * 3600
            if len(tree.query_ball_point(xy, 2.5)) > 1:
                continue
            total, w, sl = _aperture_sum(resid, s["x"], s["y"], rap)
            if np.any(dq[sl][w > 0] != 0):
                continue
            sigma = math.sqrt(float(np.nansum((err[sl] * w) ** 2)))
            expect = s["rate_dn_s"] * scene.encircled_energy(row["filter"], rap * scale)
            if expect < 30 * sigma:
                continue
            ratios.append(total / expect)
            pulls.append((total - expect) / math.hypot(sigma, 0.01 * expect))
    ratios, pulls = np.array(ratios), np.array(pulls)
    print(f"\n{len(ratios)} bright isolated stars: median measured/injected {np.median(ratios):.4f}, "
          f"rms pull {np.std(pulls):.2f}")
    assert len(ratios) >= 30
    assert abs(np.median(ratios) - 1) < 0.01
    assert np.mean(np.abs(pulls) < 4) > 0.9
    for mean, err_mean, level in bkg_offsets:
        assert abs(mean) < 5 * err_mean + 0.02 * level, (mean, err_mean, level)


def _tweak_shifts(out, truth):
    from stdatamodels.jwst import datamodels as dm

    shifts = {}
    for row in truth:
        crf = sorted(out.glob(f"{row['basename']}_*crf.fits"))
        assert crf, row["basename"]
        with dm.open(out / f"{row['basename']}_cal.fits") as cal, dm.open(crf[0]) as al:
            ny, nx = cal.data.shape
            r1, d1 = cal.meta.wcs(nx / 2, ny / 2)
            r2, d2 = al.meta.wcs(nx / 2, ny / 2)
        shifts[row["basename"]] = ((r2 - r1) * math.cos(math.radians(d1)) * 3.6e6, (d2 - d1) * 3.6e6)
    return shifts


def test_tweakreg_recovers_the_injected_pointing_errors(pipeline_run, tiny_set):
    out, r, _ = pipeline_run
    assert r.returncode == 0
    truth = _truth(tiny_set)
    shifts = _tweak_shifts(out, truth)
    for filt in sorted(set(truth["filter"])):
        rows = truth[truth["filter"] == filt]
        got = np.array([shifts[b] for b in rows["basename"]])
        injected = np.c_[rows["pointing_error_east_arcsec"], rows["pointing_error_north_arcsec"]] * 1e3
        # without an absolute catalog tweakreg aligns to one exposure: one common offset
        common = np.mean(got - injected, axis=0)
        resid = got - injected - common
        print(f"\n{filt}: tweakreg - injected (mas) after common offset {np.round(common, 1)}: "
              f"{np.round(resid, 2).tolist()}")
        assert np.ptp(injected, axis=0).max() > 10  # the test means something
        assert np.all(np.hypot(resid[:, 0], resid[:, 1]) < 5.0)


def test_source_catalog_recovers_the_injected_stars(pipeline_run, tiny_set):
    from scipy.spatial import cKDTree
    from stdatamodels.jwst import datamodels as dm
    from young.sim import scene

    out, r, _ = pipeline_run
    assert r.returncode == 0
    cat = Table.read(tiny_set.truth / "catalog.ecsv")
    cosd = np.cos(np.radians(np.mean(cat["dec"])))
    xy = np.c_[np.asarray(cat["ra"]) * cosd, np.asarray(cat["dec"])] * 3600
    nn = cKDTree(xy).query(xy, 2)[0][:, 1]
    for filt in sorted(set(_truth(tiny_set)["filter"])):
        stem = out / f"tiny_{filt.lower()}"
        found = Table.read(f"{stem}_cat.ecsv")
        with dm.open(f"{stem}_i2d.fits") as m:
            ny, nx = m.data.shape
            x, y = m.meta.wcs.backward_transform(np.asarray(cat["ra"]), np.asarray(cat["dec"]))
            wht, err = m.wht, m.err
            pixscale = math.sqrt(m.meta.photometry.pixelarea_arcsecsq)
        ok = np.isfinite(x) & np.isfinite(y)
        ix = np.clip(np.round(np.nan_to_num(x)).astype(int), 0, nx - 1)
        iy = np.clip(np.round(np.nan_to_num(y)).astype(int), 0, ny - 1)
        rap = scene.ee_radius_arcsec(filt, 0.7) / pixscale
        margin = int(rap) + 3
        inside = ok & (x > margin) & (x < nx - margin) & (y > margin) & (y < ny - margin)
        # the whole aperture must have data in the mosaic
        full = np.array([inside[i] and np.all(wht[max(0, iy[i] - margin):iy[i] + margin + 1,
                                                 max(0, ix[i] - margin):ix[i] + margin + 1] > 0)
                         for i in range(len(cat))])
        stars = full & (np.asarray(cat["kind"]) == "star") & (nn > 1.0)
        # expected S/N of the EE70 aperture from the mosaic's own error array
        flux_mjy = np.asarray(cat[f"flux_{filt}"])[stars] * 1e-15
        sig = np.array([math.sqrt(np.pi * rap ** 2) * np.nanmedian(err[max(0, iy[i] - margin):iy[i] + margin + 1,
                                                                         max(0, ix[i] - margin):ix[i] + margin + 1])
                        for i in np.flatnonzero(stars)])
        # i2d in MJy/sr: a source of F MJy sums to F / pixel area (sr)
        pix_sr = (pixscale / 206264.806) ** 2
        snr = 0.7 * flux_mjy / pix_sr / sig
        bright = snr > 20
        sky = found["sky_centroid"]
        fxy = np.c_[sky.ra.deg * cosd, sky.dec.deg] * 3600
        d, j = cKDTree(fxy).query(xy[stars][bright])
        # relative alignment only: the mosaic may sit off by the reference exposure's pointing error
        offset = np.median(fxy[j[d < 0.3]] - xy[stars][bright][d < 0.3], axis=0)
        d2, _ = cKDTree(fxy - offset).query(xy[stars][bright])
        frac = np.mean(d2 < 0.1)
        print(f"\n{filt}: {bright.sum()} isolated stars with S/N > 20, {frac:.1%} matched within 0.1\" "
              f"(mosaic offset {np.round(offset * 1e3, 1)} mas)")
        assert bright.sum() >= 30
        assert frac >= 0.9
        assert np.hypot(*offset) < 0.25
