"""young.sim.simulate and the young-sim tool: presets, file names, metadata, truth, templates,
bad input, determinism, and the 1/f truth against the real stage 1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from young.sim import instrument as inst
from young.sim.presets import plan_exposures, preset

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "young-sim"
NAME = re.compile(r"^jw\d{5}\d{3}\d{3}_\d{2}\d\d{2}_\d{5}_nrc(a[1-4]|b[1-4]|along|blong)_uncal\.fits$")


def _tool(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO / "shared"))
    env.pop("YOUNG_CONFIG", None)
    return subprocess.run([sys.executable, str(TOOL), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------- plans


@pytest.mark.parametrize("name, nfiles", [("tiny", 12), ("demo", 12), ("full", 80)])
def test_presets_plan_simultaneous_sw_lw_dithered_exposures(name, nfiles):
    plan = plan_exposures(preset(name), 1)
    specs = plan.specs
    assert len(specs) == nfiles
    assert all(NAME.match(s.filename) for s in specs)
    assert len({s.filename for s in specs}) == nfiles
    sw = {s.filter for s in specs if not s.det.is_long}
    lw = {s.filter for s in specs if s.det.is_long}
    assert len(sw) >= 2 and len(lw) >= 2
    by_exposure = {}
    for s in specs:
        by_exposure.setdefault(s.exposure_id, []).append(s)
    for group in by_exposure.values():
        # short and long wavelength detectors exposed together, with one attitude and one error
        assert {s.det.is_long for s in group} == {False, True}
        assert len({(s.start, s.attitude, s.pointing_error) for s in group}) == 1
    assert len({s.dither for s in specs}) >= 3
    if name == "full":
        assert {s.detector for s in specs} == set(inst.DETECTORS)


def test_preset_overrides_and_validation():
    assert preset("tiny", ngroups=7, readpatt="bright2").readpatt == "BRIGHT2"
    from young.contract.errors import UsageError

    for kw in ({"ngroups": 0}, {"ngroups": 11}, {"nints": 0}, {"readpatt": "FAST"}, {"wobble": 1}):
        with pytest.raises(UsageError):
            preset("tiny", **kw)
    with pytest.raises(UsageError, match="unknown preset"):
        preset("huge")


def test_pointing_errors_are_tens_of_mas_and_shared_by_the_exposure():
    specs = plan_exposures(preset("demo"), 7).specs
    errs = np.array([s.pointing_error for s in specs]) * 1e3
    assert 5 < np.abs(errs).max() < 100
    assert len({s.pointing_error for s in specs}) == len({s.exposure_id for s in specs})


def test_exposure_timing_follows_the_readout_pattern():
    spec = plan_exposures(preset("demo", readpatt="MEDIUM8", ngroups=4), 1).specs[0]
    tm = spec.times()
    assert tm["frame_time"] == pytest.approx(10.73676)
    assert tm["group_time"] == pytest.approx(10 * 10.73676)
    assert tm["integration_time"] == pytest.approx((4 * 8 + 3 * 2) * 10.73676)
    np.testing.assert_allclose(np.diff(spec.group_times()), tm["group_time"])


# ----------------------------------------------------------------------------- the tiny set on disk


def test_uncal_files_carry_the_metadata_assign_wcs_needs(tiny_set):
    from stdatamodels.jwst import datamodels as dm

    truth = Table.read(tiny_set.truth / "exposures.ecsv")
    assert [p.name for p in tiny_set.uncal] == list(truth["file"])
    for path, row in zip(tiny_set.uncal, truth):
        assert NAME.match(path.name)
        with dm.Level1bModel(path) as m:
            assert m.data.dtype == np.uint16 and m.data.shape == (1, 5, 256, 2048)
            meta = m.meta
            assert meta.exposure.type == "NRC_IMAGE" and meta.instrument.name == "NIRCAM"
            assert meta.instrument.detector == row["detector"] and meta.instrument.filter == row["filter"]
            assert (meta.subarray.name, meta.subarray.xstart, meta.subarray.ystart) == ("SUBGRISM256", 1, 1)
            assert meta.exposure.noutputs == 4
            det = inst.detector(row["detector"])
            assert (meta.subarray.fastaxis, meta.subarray.slowaxis) == (det.fastaxis, det.slowaxis)
            assert meta.exposure.readpatt == "RAPID" and meta.exposure.ngroups == 5
            assert meta.exposure.group_time == pytest.approx(1.34668)
            ap = inst.siaf_aperture(meta.aperture.name)
            assert meta.wcsinfo.v2_ref == pytest.approx(ap.V2Ref)
            assert meta.wcsinfo.v3_ref == pytest.approx(ap.V3Ref)
            assert meta.wcsinfo.v3yangle == pytest.approx(ap.V3IdlYAngle)
            assert meta.wcsinfo.vparity == ap.VIdlParity
            # the header carries the nominal pointing; truth = nominal + error
            assert meta.wcsinfo.ra_ref == pytest.approx(row["ra_ref_nominal"], abs=1e-10)
            d_e = (row["ra_ref_true"] - row["ra_ref_nominal"]) * np.cos(np.radians(row["dec_ref_nominal"])) * 3600
            d_n = (row["dec_ref_true"] - row["dec_ref_nominal"]) * 3600
            assert d_e == pytest.approx(row["pointing_error_east_arcsec"], abs=2e-4)
            assert d_n == pytest.approx(row["pointing_error_north_arcsec"], abs=2e-4)
            assert meta.observation.date == "2023-06-15"


def test_ramps_carry_bias_signal_and_saturated_stars(tiny_set):
    from stdatamodels.jwst import datamodels as dm

    truth = Table.read(tiny_set.truth / "exposures.ecsv")
    nsat = 0
    for path, row in zip(tiny_set.uncal, truth):
        det = inst.detector(row["detector"])
        arr = inst.detector_arrays(det.name, tiny_set.seed)
        sub = inst.subarray(det.name, "SUBGRISM256")
        with dm.Level1bModel(path) as m:
            data = m.data[0].astype(np.float32)
        first = data[0] - sub.cut(arr.bias)
        good = sub.cut(arr.dq) == 0
        assert abs(np.median(first[good])) < 10  # bias removed: only noise, 1/f and one frame of sky
        nsat += int(np.sum(data[-1] >= sub.cut(arr.saturation)))
        srcs = Table.read(tiny_set.truth / "sources" / f"{row['basename']}_sources.ecsv")
        inner = srcs[(srcs["kind"] == "star") & (srcs["x"] > 10) & (srcs["x"] < 2037)
                     & (srcs["y"] > 10) & (srcs["y"] < 245)]
        assert len(inner) >= 30, (row["basename"], len(inner))
    assert nsat > 0


def test_truth_folder_is_complete_and_documented(tiny_set):
    t = tiny_set.truth
    readme = (t / "README.md").read_text()
    for name in ("catalog.ecsv", "exposures.ecsv", "exposures.json", "oneoverf/", "sources/"):
        assert name in readme
    cat = Table.read(t / "catalog.ecsv")
    assert {"id", "kind", "ra", "dec", "flux_F150W", "flux_F200W", "flux_F277W", "flux_F444W"} <= set(cat.colnames)
    assert str(cat["flux_F150W"].unit) == "nJy"
    rows = Table.read(t / "exposures.ecsv")
    for col in rows.colnames:
        if col not in ("file", "basename", "exposure_id", "detector", "module", "channel", "filter", "pupil",
                       "subarray", "xstart", "ystart", "xsize", "ysize", "noutputs", "readpatt", "ngroups",
                       "nints", "activity", "exposure", "dither"):
            assert col in readme, f"{col} not documented in truth/README.md"
    meta = json.loads((t / "exposures.json").read_text())
    assert meta["young_sim"]["seed"] == 1 and meta["crds_context"] == "jwst_9001.pmap"
    for row in rows:
        with fits.open(t / row["oneoverf_truth"]) as h:
            assert h["SCI"].data.shape == (256, 2048) and h["SCI"].header["BUNIT"] == "DN/s"
            assert h["DQ"].data.dtype == np.uint8
    assert np.all(rows["oneoverf_rate_rms_dn_s"] > 0)
    assert np.all(rows["wisp_scale"][rows["detector"] == "NRCA3"] > 0)
    assert np.all(rows["wisp_scale"][rows["detector"] == "NRCALONG"] == 0)


def test_young_yaml_points_at_the_set(tiny_set):
    from young.contract import config

    cfg = config.load(tiny_set.config)
    assert not cfg.warnings, cfg.warnings
    assert Path(cfg.get("crds_path")) == tiny_set.crds_path
    assert cfg.get("crds_context") == "jwst_9001.pmap"
    assert "serverless" in cfg.get("crds_server_url")
    assert Path(cfg.get("wisp_directory")).is_dir() and Path(cfg.get("truth_directory")).is_dir()


def test_wisp_templates_have_the_stsci_layout(tiny_set):
    files = sorted(tiny_set.wisp_dir.glob("WISP_*.fits"))
    assert [f.name for f in files] == ["WISP_NRCA3_F150W_CLEAR.fits", "WISP_NRCA3_F200W_CLEAR.fits"]
    for f in files:
        with fits.open(f) as h:
            assert [x.name for x in h] == ["PRIMARY", "CAL", "RATE"]
            cal, rate = h["CAL"].data, h["RATE"].data
            assert cal.shape == rate.shape == (2048, 2048)
            assert h["CAL"].header["BUNIT"] == "MJy/sr" and h["RATE"].header["BUNIT"] == "DN/s"
            det, filt = h[0].header["DETECTOR"], h[0].header["FILTER"]
        flat = inst.flat_field(det, filt, tiny_set.seed)
        ok = flat > 0
        np.testing.assert_allclose(cal[ok], rate[ok] * inst.photmjsr(det, filt) / flat[ok], rtol=1e-5, atol=1e-9)
        assert rate.max() > 0 and np.all(rate[:4] == 0)


# ----------------------------------------------------------------------------- the tool


@pytest.mark.parametrize("args, what", [
    (["--ngroups", "0"], "--ngroups"),
    (["--ngroups", "abc"], "--ngroups"),
    (["--preset", "huge"], "--preset"),
    (["--readpatt", "FAST"], "--readpatt"),
    (["--nints", "0"], "--nints"),
    (["--bogus"], "--bogus"),
])
def test_young_sim_bad_options_one_line_exit_2(tmp_path, args, what):
    r = _tool(str(tmp_path / "set"), *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"young-sim: {what}: "), r.stderr
    assert not (tmp_path / "set").exists()


def test_young_sim_unwritable_or_occupied_dir(tmp_path):
    from helpers import unwritable_dir

    r = _tool(str(unwritable_dir(tmp_path) / "set"))
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("young-sim: "), r.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    r = _tool(str(tmp_path / "busy"))
    assert r.returncode == 2 and "--force" in r.stderr and len(r.stderr.splitlines()) == 1
    assert (tmp_path / "busy" / "keep.txt").exists()


def test_young_sim_version_and_help():
    r = _tool("--version")
    assert r.returncode == 0 and r.stdout.startswith("young-sim ")
    r = _tool("--help")
    assert r.returncode == 0 and "--preset" in r.stdout


@pytest.mark.slow
def test_young_sim_is_deterministic_with_seed(tiny_set, tmp_path):
    r = _tool(str(tmp_path / "again"), "--preset", "tiny", "--seed", "1", "-q", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""
    paths = [Path(p) for p in r.stdout.splitlines()]
    assert [p.name for p in paths] == [p.name for p in tiny_set.uncal]
    for a, b in zip(paths, tiny_set.uncal):
        np.testing.assert_array_equal(fits.getdata(a, "SCI"), fits.getdata(b, "SCI"))
    a, b = Table.read(tmp_path / "again/truth/catalog.ecsv"), Table.read(tiny_set.truth / "catalog.ecsv")
    assert a.colnames == b.colnames
    for col in a.colnames:
        np.testing.assert_array_equal(a[col], b[col])
    # refuses to overwrite, replaces with --force
    r = _tool(str(tmp_path / "again"), "-q")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_another_seed_gives_another_field():
    from young.sim.simulate import build_catalog

    a = build_catalog(plan_exposures(preset("tiny"), 1))
    b = build_catalog(plan_exposures(preset("tiny"), 2))
    assert len(a) != len(b) or not np.allclose(a["ra"], b["ra"])
    again = build_catalog(plan_exposures(preset("tiny"), 1))
    np.testing.assert_array_equal(a["ra"], again["ra"])


# ----------------------------------------------------------------------------- 1/f truth

DETECTOR1 = textwrap.dedent(r'''
    import glob, os, sys, warnings
    warnings.simplefilter("ignore")
    from jwst.pipeline import Detector1Pipeline
    for src, out in sys.argv_jobs:
        os.makedirs(out, exist_ok=True)
        for u in sorted(glob.glob(os.path.join(src, "raw", sys.argv_pattern + "_uncal.fits"))):
            Detector1Pipeline.call(u, output_dir=out, save_results=True)
''')


@pytest.mark.slow
def test_oneoverf_truth_is_what_stage1_leaves_in_the_rate(tiny_set, tmp_path, run_offline):
    """rate(with 1/f) - rate(same seed without 1/f) == truth pattern, within 2 % rms."""
    from young.sim.simulate import simulate

    pattern = "*_02101_00001_*"
    quiet = tmp_path / "no1f"
    simulate(quiet, "tiny", seed=tiny_set.seed, only=[pattern], one_over_f_dn=0.0, amp_offset_dn=0.0)
    jobs = [(str(tiny_set.root), str(tmp_path / "with")), (str(quiet), str(tmp_path / "without"))]
    code = f"import sys\nsys.argv_jobs = {jobs!r}\nsys.argv_pattern = {pattern!r}\n" + DETECTOR1
    r = run_offline(code, tiny_set, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.network_attempts == 0
    rates = sorted((tmp_path / "with").glob("*_rate.fits"))
    assert len(rates) == 2  # one SW and one LW detector
    for path in rates:
        base = path.name.replace("_rate.fits", "")
        with fits.open(path) as a, fits.open(tmp_path / "without" / path.name) as b, \
                fits.open(tiny_set.truth / "oneoverf" / f"{base}_1f_truth.fits") as t:
            diff = a["SCI"].data - b["SCI"].data
            truth, tdq = t["SCI"].data, t["DQ"].data
            good = (tdq == 0) & (a["DQ"].data == 0) & (b["DQ"].data == 0) & np.isfinite(diff)
        assert good.mean() > 0.9
        resid = np.std(diff[good] - truth[good]) / np.std(truth[good])
        print(f"\n{base}: rms(rate difference - truth) / rms(truth) = {resid:.4f}")
        assert resid < 0.02
