"""The synthetic CRDS cache: layout, checksums, offline resolution of every reftype,
consistency with the injected detector, and a killed writer leaving nothing that looks complete."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from young.sim import crds_cache
from young.sim import instrument as inst

REPO = Path(__file__).resolve().parents[2]


def _index(sim_set) -> dict:
    return json.loads((sim_set.crds_path / "young-sim-references.json").read_text())


def _ref(sim_set, reftype: str, *match: str) -> Path:
    for e in _index(sim_set)["references"]:
        if e["reftype"] == reftype and all(m in str(h).split("|") for h, m in zip(e["match"], match)):
            return sim_set.crds_path / "references" / "jwst" / "nircam" / e["file"]
    raise KeyError((reftype, match))


# ----------------------------------------------------------------------------- layout


def test_layout_and_server_config(tiny_set):
    root = tiny_set.crds_path
    assert crds_cache.is_complete(root)
    assert (root / "config/jwst/ref_cache_subdir_mode").read_text().strip() == "instrument"
    info = ast.literal_eval((root / "config/jwst/server_config").read_text())
    assert info["observatory"] == "jwst"
    assert info["operational_context"] == info["latest_context"] == "jwst_9001.pmap"
    assert info["force_remote_mode"] is False
    for name in info["mappings"]:
        assert (root / "mappings/jwst" / name).is_file(), name
    assert "'NIRCAM' : 'jwst_nircam_9001.imap'" in (root / "mappings/jwst/jwst_9001.pmap").read_text()
    refs = list((root / "references/jwst/nircam").iterdir())
    assert refs and all(p.name.startswith("jwst_nircam_") for p in refs)


def test_imap_lists_every_reftype_and_unused_ones_are_na(tiny_set):
    import importlib.resources

    text = (tiny_set.crds_path / "mappings/jwst/jwst_nircam_9001.imap").read_text()
    selector = ast.literal_eval(text.split("selector =", 1)[1].strip())
    specs = json.loads((importlib.resources.files("crds.jwst") / "specs" / "combined_specs.json").read_text())
    wanted = {k for k in specs["nircam"] if k != "all"} | {k for v in specs.values() for k in v if k.startswith("pars-")}
    wanted |= {"pars-refpixstep", "pars-image3pipeline", "emicorr", "refpix", "sirskernel", "psf"}
    assert wanted <= set(selector), sorted(wanted - set(selector))
    assert all(v == "N/A" for k, v in selector.items() if k.startswith("pars-"))
    used = {"mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise", "distortion",
            "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset"}
    assert {k for k, v in selector.items() if v != "N/A"} == used
    for k in ("ipc", "persat", "trapdensity", "trappars", "refpix", "sirskernel", "specwcs", "bkg"):
        assert selector[k] == "N/A"


def test_mapping_checksums_are_what_crds_computes(tiny_set, tmp_path):
    from crds.core import exceptions, rmap

    mapdir = tiny_set.crds_path / "mappings/jwst"
    for path in mapdir.iterdir():
        if path.suffix == ".rmap":
            rmap.ReferenceMapping.from_file(str(path))  # checks the sha1sum
    bad = tmp_path / "jwst_nircam_gain_9001.rmap"
    bad.write_text((mapdir / bad.name).read_text().replace("2022-01-01", "2022-01-02"))
    with pytest.raises(exceptions.ChecksumError):
        rmap.ReferenceMapping.from_file(str(bad))


# ----------------------------------------------------------------------------- resolution

RESOLVE = textwrap.dedent(r'''
    import json, os, sys, inspect, warnings
    warnings.simplefilter("ignore")
    import crds
    from stdatamodels.jwst import datamodels
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline
    types = set()
    for pipe in (Detector1Pipeline, Image2Pipeline, Image3Pipeline):
        types.add("pars-" + pipe.__name__.lower())
        for step in pipe.step_defs.values():
            types.add("pars-" + step.__name__.lower())
            types.update(step.reference_file_types)
    out = {}
    for path in sys.argv_files:
        with datamodels.open(path) as m:
            params = m.get_crds_parameters()
        got = crds.getreferences(params, reftypes=sorted(types), context="jwst_9001.pmap", observatory="jwst")
        out[os.path.basename(path)] = got
    from crds.bestrefs import BestrefsScript
    errors = BestrefsScript("crds.bestrefs --jwst --files " + " ".join(sys.argv_files) + " --verbosity=-1")()
    print(json.dumps({"refs": out, "bestrefs_errors": errors}))
''')


def test_every_reftype_resolves_offline(tiny_set, run_offline):
    files = [str(p) for p in tiny_set.uncal[:2]]  # one SW, one LW detector
    code = f"import sys\nsys.argv_files = {files!r}\n" + RESOLVE
    r = run_offline(code, tiny_set, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.network_attempts == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["bestrefs_errors"] == 0
    refdir = str(tiny_set.crds_path / "references" / "jwst" / "nircam")
    for name, refs in result["refs"].items():
        assert len(refs) > 60
        for reftype, value in refs.items():
            assert value.startswith(refdir) or value.lower() == "not found n/a", (name, reftype, value)
        for reftype in ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise",
                        "distortion", "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset"):
            assert refs[reftype].startswith(refdir), (name, reftype, refs[reftype])
            assert Path(refs[reftype]).is_file()


# ----------------------------------------------------------------------------- content


def test_references_hold_the_injected_detector(tiny_set):
    from stdatamodels.jwst import datamodels as dm

    for det in ("NRCA3", "NRCALONG"):
        sub = inst.subarray(det, "SUBGRISM256")
        truth = inst.detector_arrays(det, tiny_set.seed)
        with dm.SuperBiasModel(_ref(tiny_set, "superbias", det)) as m:
            np.testing.assert_array_equal(m.data, sub.cut(truth.bias))
            assert (m.meta.subarray.name, m.meta.subarray.xsize, m.meta.subarray.ysize) == ("SUBGRISM256", 2048, 256)
        with dm.GainModel(_ref(tiny_set, "gain", det)) as m:
            np.testing.assert_array_equal(m.data, sub.cut(truth.gain))
        with dm.ReadnoiseModel(_ref(tiny_set, "readnoise", det)) as m:
            np.testing.assert_array_equal(m.data, sub.cut(truth.readnoise_cds))
        with dm.MaskModel(_ref(tiny_set, "mask", det)) as m:
            np.testing.assert_array_equal(m.dq, sub.cut(truth.dq))
            assert np.all(m.dq[:4] & inst.DQ_REFERENCE_PIXEL)  # SUBGRISM256 starts at row 1
            assert np.all(m.dq[:, :4] & inst.DQ_REFERENCE_PIXEL)
        with dm.SaturationModel(_ref(tiny_set, "saturation", det)) as m:
            np.testing.assert_array_equal(m.data, sub.cut(truth.saturation))
        with dm.DarkModel(_ref(tiny_set, "dark", det)) as m:
            pat = inst.read_pattern(m.meta.exposure.readpatt)
            t = inst.group_frame_times(pat, m.meta.exposure.ngroups, sub.frame_time)
            np.testing.assert_allclose(m.data, t[:, None, None] * sub.cut(truth.dark_rate)[None], rtol=1e-6)
            assert m.meta.exposure.ngroups == 5  # only as large as needed
        with dm.LinearityModel(_ref(tiny_set, "linearity", det)) as m:
            assert m.coeffs.shape == (3, 256, 2048)
            assert np.all(m.coeffs[1] == 1) and not m.coeffs[0].any() and not m.coeffs[2].any()


def test_photom_area_and_flat(tiny_set):
    from stdatamodels.jwst import datamodels as dm

    for det, filt in (("NRCA3", "F150W"), ("NRCALONG", "F444W")):
        d = inst.detector(det)
        with dm.NrcImgPhotomModel(_ref(tiny_set, "photom", det)) as m:
            row = m.phot_table[m.phot_table["filter"] == filt]
            assert len(row) == 1
            assert row["photmjsr"][0] == pytest.approx(inst.photmjsr(det, filt), rel=1e-6)
            assert (1.0 < row["photmjsr"][0] < 4.0) if not d.is_long else (0.2 < row["photmjsr"][0] < 1.0)
            assert m.meta.photometry.pixelarea_steradians == pytest.approx(d.pixar_sr)
        with dm.PixelAreaModel(_ref(tiny_set, "area", det)) as m:
            assert 0.95 < m.data.min() and m.data.max() < 1.05
            assert m.meta.photometry.pixelarea_steradians == pytest.approx(d.pixar_sr)
        with dm.FlatModel(_ref(tiny_set, "flat", det, "SUBGRISM256", filt)) as m:
            np.testing.assert_array_equal(m.data, inst.subarray(det, "SUBGRISM256").cut(
                inst.flat_field(det, filt, tiny_set.seed)))
            assert m.meta.instrument.filter == filt


def test_distortion_is_the_siaf_polynomial_and_invertible(tiny_set):
    from stdatamodels.jwst import datamodels as dm

    rng = np.random.default_rng(3)
    for det in ("NRCA3", "NRCALONG"):
        ap = inst.siaf_aperture(f"{inst.detector(det).siaf}_FULL")
        with dm.DistortionModel(_ref(tiny_set, "distortion", "NRC_IMAGE", det)) as m:
            model = m.model
        x, y = rng.uniform(0, 2047, 500), rng.uniform(0, 2047, 500)
        v2, v3 = model(x, y)
        s2, s3 = ap.sci_to_tel(x + 1, y + 1)  # SIAF science pixels are 1-based
        assert np.max(np.hypot(v2 - s2, v3 - s3)) < 1e-6  # arcsec
        xb, yb = model.inverse(v2, v3)
        assert np.max(np.hypot(xb - x, yb - y)) < 2e-3  # pixel


def test_subarray_and_readout_facts_from_the_siaf():
    a3 = inst.subarray("NRCA3", "SUBGRISM256")
    lw = inst.subarray("NRCALONG", "SUBGRISM256", "F277W")
    assert (a3.xstart, a3.ystart, a3.xsize, a3.ysize, a3.noutputs) == (1, 1, 2048, 256, 4)
    assert (lw.xstart, lw.ystart, lw.xsize, lw.ysize, lw.noutputs) == (1, 1, 2048, 256, 4)
    assert a3.aperture == "NRCA3_GRISMTS256" and lw.aperture == "NRCA5_GRISM256_F277W"
    assert a3.frame_time == pytest.approx(1.34668)
    assert inst.subarray("NRCA1", "FULL").frame_time == pytest.approx(10.73676)
    assert inst.subarray("NRCA3", "SUB640").noutputs == 1
    assert [len(s.amplifier_slices()) for s in (a3, inst.subarray("NRCA3", "SUB640"))] == [4, 1]
    axes = {d: (inst.detector(d).fastaxis, inst.detector(d).slowaxis) for d in inst.DETECTORS}
    assert axes["NRCA1"] == (-1, 2) and axes["NRCA2"] == (1, -2) and axes["NRCB1"] == (1, -2)
    assert axes["NRCALONG"] == (-1, 2) and axes["NRCBLONG"] == (1, -2)
    with pytest.raises(ValueError, match="not defined"):
        inst.subarray("NRCA2", "SUBGRISM256")


# ----------------------------------------------------------------------------- atomic writing

KILL = textwrap.dedent(r'''
    import os, signal, sys
    from young.sim import crds_cache
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    crds_cache._write_mappings = die
    ro = [crds_cache.Readout("NRCA3", "SUB160P", "RAPID", 3, ("F150W",))]
    crds_cache.write_crds_cache(sys.argv[1], ro, seed=5)
''')


def test_killed_writer_leaves_no_cache_that_looks_complete(tmp_path):
    root = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(REPO / "shared"))
    r = subprocess.run([sys.executable, "-c", KILL, str(root)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not root.exists()
    assert not crds_cache.is_complete(root)
    # and a finished cache can be written there afterwards
    ro = [crds_cache.Readout("NRCA3", "SUB160P", "RAPID", 3, ("F150W",))]
    crds_cache.write_crds_cache(root, ro, seed=5)
    assert crds_cache.is_complete(root)
    assert (root / "mappings/jwst/jwst_9001.pmap").is_file()
