"""Tests of ``young-fnoise`` (young.steps.fnoise_step) on real pipeline products, against injected truth.

Data:

* ``tiny_rates`` / ``tiny_cals`` (shared fixtures): the ``tiny`` preset through the real jwst
  stages; 2048 x 256 four-output strips (SUBGRISM256), 6.7-s exposures.  The injected stripes
  are *weak*: rms of the per-amplifier row medians (offsets included) 0.6-1.0 DN/s against a
  pixel noise of 1.1-1.25 DN/s.
* ``strong_set`` (this module, ~1.5 min): two full-frame exposures of the ``demo`` preset
  (seed 6: NRCA3 and NRCALONG, 3 groups) with the 1/f amplitude raised to 10 DN
  (``one_over_f_dn``, default 2) and the ICL-like ``blob`` (it lands on NRCALONG).  The
  stripes are *strong*: row-median rms 0.54 DN/s on NRCA3 against a pixel noise of
  0.32 DN/s.  Stage 1 runs with ``jump.skip``: a 1/f noise this strong makes the jump step
  flag 7-17 % of the pixels, which splits their ramps in a way the simulator's 1/f truth
  (a linear emulation of stage 1) does not model -- rate minus truth then still shows
  stripes of half the injected rms.  Cosmic rays are switched off with it (unflagged, each
  would be masked as a source with a 19-pixel dilation).

Figures (``young.sim.metrics``, one definition shared with ``bench/fnoise``):

* residual stripe fraction: per amplifier and row, the median over source-free, unflagged
  pixels of ``corrected - (original - truth)``, minus the median of all of them, rms, divided
  by the same rms of the truth itself;
* statistical floor: the same figure for an oracle that subtracts the plain median of each
  amplifier row over exactly those source-free pixels (what a per-amplifier row median can
  do with this noise).

Measured on the build machine (jwst 3.0.0 and this repository's simulator; amp / gradient):
strong NRCA3 0.069 / 0.102 (floor 0.071); weak tiny strips 0.95-1.0 x the floor (gradient up
to 1.6x on the crowded LW strip); stars changed by < 0.1 %; across the masked blob the
gradient method leaves high-frequency stripes of 0.09 DN/s, the amp method (full-row
fallback) 0.44 DN/s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from chain_fixtures import run_tool
from helpers import write_flipped_wisp_template
from scipy.ndimage import uniform_filter1d
from young.contract import naming
from young.contract.errors import UsageError
from young.sim import metrics as qa_metrics
from young.steps import fnoise_step, models, references, tooling

DO_NOT_USE = 1
REFERENCE_PIXEL = 2**31
SW = "jw09001001001_02101_00001_nrca3"
LW = "jw09001001001_02101_00001_nrcalong"
STRONG_AMPLITUDE_DN = 10.0

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers


def base_of(path: Path) -> str:
    return naming.parse(path).base


def truth_of(root: Path, base: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The injected 1/f pattern, the truth's DQ and the noiseless source image (DN/s)."""
    with fits.open(root / "truth" / "oneoverf" / f"{base}_1f_truth.fits") as h:
        return h["SCI"].data.astype(np.float32), h["DQ"].data, h["SOURCES"].data.astype(np.float32)


def read(path: Path) -> dict:
    with fits.open(path) as h:
        out = {e: h[e].data.copy() for e in ("SCI", "ERR", "DQ")}
        out["header"] = h[0].header.copy()
    return out


def flat_path(crds_path: Path, product: Path) -> Path:
    """The FLAT reference a rate product was measured through (YNG1FFLT), in the set's cache."""
    name = fits.getheader(product, 0)["YNG1FFLT"]
    return crds_path / "references" / "jwst" / "nircam" / name


def open_model(path):
    from stdatamodels.jwst import datamodels

    return datamodels.ImageModel(str(path))


def to_rate_units(root: Path, base: str, level: str, flat: np.ndarray | None) -> np.ndarray | float:
    """Factor turning a difference of this product's SCI into DN/s (truth units)."""
    if level == "rate":
        return 1.0
    exps = Table.read(root / "truth" / "exposures.ecsv")
    photmjsr = float(exps[exps["basename"] == base][0]["photmjsr"])
    return flat / photmjsr


def offset_limit(res) -> float:
    """Largest acceptable amplifier offset left: half the rms of the residual rows.

    An offset below that does not stand out from the row-to-row residual; it is ~2-4x the
    noise of an amplifier's offset measured from residual rows that are themselves 1/f
    correlated (spread of the medians of 16 blocks of rows: 0.005 DN/s on the strong set).
    """
    return 0.6 * res.residual_rms


def figures(original, corrected, truth, truth_dq, sources, dq, scale=1.0, exclude=None):
    """(residual, statistical floor, truly source-free pixels) of one corrected image, in truth units."""
    return qa_metrics.truth_figures(original, corrected, truth, truth_dq, sources, dq, 4, scale, exclude)


def blob_geometry(root: Path, base: str):
    """Centre (x, y) and effective radius (pixels) of the simulated blob on this readout."""
    from young.sim import instrument

    src = Table.read(root / "truth" / "sources" / f"{base}_sources.ecsv")
    blob = src[src["kind"] == "blob"]
    assert len(blob) == 1, "the blob is expected on this readout"
    cat = Table.read(root / "truth" / "catalog.ecsv")
    reff_arcsec = float(cat[cat["kind"] == "blob"][0]["r_eff_arcsec"])
    scale = float(np.mean(instrument.detector(base.rsplit("_", 1)[1].upper()).pixel_scale))
    return float(blob["x"][0]), float(blob["y"][0]), reff_arcsec / scale


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def strong_set(tmp_path_factory):
    """Full-frame NRCA3 + NRCALONG with strong stripes and the blob, through young-stage1."""
    from young.sim.simulate import simulate

    root = tmp_path_factory.mktemp("fnoise") / "strong"
    simulate(root, "demo", seed=6, force=True, only=[f"*{SW[-22:]}", f"*{LW[-25:]}"], blob=True,
             cosmic_rays=False, ngroups=3, one_over_f_dn=STRONG_AMPLITUDE_DN)
    cfg = root / "fnoise-test.yaml"
    cfg.write_text(f"crds_path: {root / 'crds_cache'}\ncrds_context: jwst_9001.pmap\n"
                   "crds_server_url: https://jwst-serverless-mode.stsci.edu\n")
    out = root / "stage1"
    r = run_tool("young-stage1", "--config", cfg, "--set", "jump.skip=true", "-o", out, "-q", root / "raw")
    rates = {base_of(Path(p)): Path(p) for p in r.stdout.split()}
    assert set(rates) == {SW, LW}
    return {"root": root, "config": cfg, "rates": rates, "crds_path": root / "crds_cache"}


@pytest.fixture(scope="module")
def strong_runs(strong_set, tmp_path_factory):
    """young-fnoise on the strong set: amp (default, with side products) and gradient (NRCA3)."""
    out = tmp_path_factory.mktemp("fnoise_strong")
    cfg = strong_set["config"]
    amp = run_tool("young-fnoise", "--config", cfg, "-o", out / "amp", "--save-correction", "--save-mask", "--plot",
                   strong_set["rates"][SW], strong_set["rates"][LW])
    grad = run_tool("young-fnoise", "--config", cfg, "-o", out / "gradient", "--method", "gradient",
                    strong_set["rates"][SW])
    return {"amp": {base_of(Path(p)): Path(p) for p in amp.stdout.split()},
            "gradient": {base_of(Path(p)): Path(p) for p in grad.stdout.split()},
            "amp_stderr": amp.stderr}


@pytest.fixture(scope="module")
def tiny_inputs(tiny_rates, tiny_cals):
    """Rate and cal of both detectors of the first exposure of each filter pair (8 files)."""
    pick = [p for p in tiny_rates + tiny_cals if "_00001_" in p.name]
    assert len(pick) == 8
    return pick


@pytest.fixture(scope="module")
def tiny_run(tiny_set, tiny_inputs, tmp_path_factory):
    """young-fnoise (defaults, --jobs 2) on the 8 tiny products."""
    out = tmp_path_factory.mktemp("fnoise_tiny")
    r = run_tool("young-fnoise", "--config", tiny_set.config, "-o", out, "--jobs", "2", "--save-correction",
                 *tiny_inputs)
    return {"out": out, "products": [Path(p) for p in r.stdout.split()], "proc": r}


# --------------------------------------------------------------------------- contract on real products


def test_products_headers_and_order(tiny_run, tiny_inputs, tiny_set):
    """One product per input, in input order, named X_1f_<suffix>; the header says what was done."""
    prods = tiny_run["products"]
    assert [p.name for p in prods] == [naming.product_path(s, tag="1f").name for s in tiny_inputs]
    assert "8 done, 0 up to date, 0 failed" in tiny_run["proc"].stderr
    for src, prod in zip(tiny_inputs, prods):
        h = fits.getheader(prod, 0)
        level = naming.parse(src).suffix
        assert h["YNG1F"] == "amp"                       # default on rate, and on cal (CAL_METHOD)
        assert h["YNG1FLVL"] == level
        assert h["YNG1FNOU"] == 4                        # SUBGRISM256: four outputs, from NOUTPUTS
        assert h["YNGTOOL"] == "young-fnoise" and h["YNGPHASH"]
        if level == "rate":
            assert h["YNG1FFLT"].startswith("jwst_nircam_flat") and flat_path(tiny_set.crds_path, prod).is_file()
        else:
            assert h["YNG1FFLT"].startswith("none")
        assert h["YNG1FMSK"] == "compact" and h["YNG1FTHR"] == 0.8 and h["YNG1FK"] == 6.0
        hist = "".join(str(x) for x in h["HISTORY"])
        hist = hist[hist.rindex("young-fnoise "):]
        params = json.loads(hist[hist.index("{"):hist.rindex("}") + 1])
        assert params["clip_sigma"] == 3.0 and params["method"] == "auto"
        assert naming.log_path(prod).is_file()


def test_dq_err_preserved_and_reference_pixels_untouched(tiny_run, tiny_inputs):
    """ERR identical, DQ identical (no NaN results here), reference pixels unchanged, no new zeros."""
    for src, prod in zip(tiny_inputs, tiny_run["products"]):
        a, b = read(src), read(prod)
        assert np.array_equal(a["ERR"], b["ERR"], equal_nan=True)
        assert np.array_equal(a["DQ"], b["DQ"])
        ref = (a["DQ"] & REFERENCE_PIXEL) != 0
        assert ref.any() and np.array_equal(a["SCI"][ref], b["SCI"][ref], equal_nan=True)
        assert np.array_equal(np.isnan(a["SCI"]), np.isnan(b["SCI"]))
        # the product is the input minus the saved model, exactly
        model = fits.getdata(models.side_path(prod, "model"), "MODEL")
        ok = np.isfinite(a["SCI"])
        assert np.allclose(a["SCI"][ok] - model[ok], b["SCI"][ok], atol=1e-5)
        # no silent zeros: a new exact 0 only where the float32 input equals the pattern (a
        # one-in-10^7 coincidence of two noisy values, seen once), never from a non-finite input
        new_zero = (b["SCI"] == 0) & (a["SCI"] != 0)
        assert np.array_equal(a["SCI"][new_zero], model[new_zero]) and new_zero.sum() <= 2


# --------------------------------------------------------------------------- quality against truth


def test_weak_stripes_within_floor(tiny_set, tiny_run, tiny_inputs):
    """Weak stripes (rms < pixel noise): residual within 1.5x the floor, rate and cal (amp).

    The floor (oracle row median, see the module docstring) is 0.10-0.25 of the injected rms
    here; 1.5x leaves room for what the oracle is given and the tool is not (the true
    source-free pixels).  Measured: amp 0.95-1.0 x the floor.  The gradient method (rate files,
    in-process) gets 2x: on the crowded LW strip (55 % masked) its anchor windows are sparse
    and it leaves 1.6x the floor (SW: 1.05x) -- it is the method for extended light, not
    for crowded fields.  The amplifier offsets (0.5-1.3 DN/s
    injected) must be gone: their residual is below 5 % of the injected offsets' rms, about
    twice the noise of a median over ~250 rows.
    """
    crds = tiny_set.crds_path
    rates = {base_of(p): p for p in tiny_run["products"] if naming.parse(p).suffix == "rate"}
    for src, prod in zip(tiny_inputs, tiny_run["products"]):
        base, level = base_of(src), naming.parse(src).suffix
        truth, tdq, src_img = truth_of(tiny_set.root, base)
        fpath = flat_path(crds, rates[base])
        flat = references.flat_for(open_model(src), str(fpath))
        scale = to_rate_units(tiny_set.root, base, level, flat)
        a, b = read(src), read(prod)
        res, floor, good = figures(a["SCI"], b["SCI"], truth, tdq, src_img, a["DQ"], scale)
        inj_offsets = qa_metrics.row_medians(truth, good, 4)
        inj_offsets = np.nanmedian(inj_offsets, axis=0) - np.nanmedian(inj_offsets)
        print(f"{prod.name}: amp residual {res.fraction:.3f}, floor {floor.fraction:.3f}, "
              f"offsets left {np.round(res.amp_offsets, 3)} of {np.round(inj_offsets, 2)}")
        assert res.fraction <= 1.5 * floor.fraction
        assert np.max(np.abs(res.amp_offsets)) < offset_limit(res)
        if level == "rate":  # the gradient method in-process on the same file
            model = open_model(src)
            g = fnoise_step.correct_model(model, tooling.fnoise_params({}, {"method": "gradient"}), str(fpath))
            gres, _, _ = figures(a["SCI"], g.corrected, truth, tdq, src_img, a["DQ"])
            print(f"   gradient residual {gres.fraction:.3f}")
            assert gres.fraction <= 2.0 * floor.fraction


def test_strong_stripes_removed(strong_set, strong_runs):
    """Stripes of 1.7x the pixel noise: residual <= 10 % of the injected rms (amp, the default).

    The floor at this injection is 0.066 (an oracle row median); amp measured 0.066.  The
    gradient method (0.100 measured) random-walks between its anchors; its limit is 0.15.
    Amplifier offsets: within :func:`offset_limit` (measured 0.011 for 0.037 DN/s residual rows).
    """
    root = strong_set["root"]
    src = strong_set["rates"][SW]
    truth, tdq, src_img = truth_of(root, SW)
    a = read(src)
    assert fits.getheader(strong_runs["amp"][SW], 0)["YNG1FFB"] == "0,0,0,0"
    for method, limit in (("amp", 0.10), ("gradient", 0.15)):
        b = read(strong_runs[method][SW])
        res, floor, good = figures(a["SCI"], b["SCI"], truth, tdq, src_img, a["DQ"])
        sigma = qa_metrics.pixel_sigma(a["SCI"] - truth, good)
        inj = qa_metrics.row_medians(truth, good, 4)
        inj_off = np.nanmedian(inj, axis=0) - np.nanmedian(inj)
        print(f"{method}: residual {res.fraction:.3f} (floor {floor.fraction:.3f}), injected {res.injected_rms:.3f} "
              f"DN/s vs pixel noise {sigma:.3f}, offsets {np.round(res.amp_offsets, 4)} of {np.round(inj_off, 3)}")
        assert res.injected_rms >= sigma                  # the strong case indeed
        assert res.fraction <= limit
        assert np.max(np.abs(res.amp_offsets)) < offset_limit(res)


def test_stars_untouched(strong_set, strong_runs):
    """Stars lose no light to the 1/f model: mean flux change < 0.1 %, every star < 0.6 %.

    The same rate is corrected twice in-process, as it is and with the stars and galaxies removed
    (``SCI - SOURCES`` of the truth: same pixels, same noise, same 1/f): the difference of the two
    subtracted patterns is what the sources did to the model -- light taken for stripes, or rows
    and row segments measured on fewer pixels.  Change = aperture photometry (r = 4 px, annulus
    8-14 px) of that difference over the star's flux; stars are tested whose flux puts the
    aperture sum of a row estimate's noise 3x below 0.2 %.  The mean over the stars is the
    systematic part (light taken: it must vanish); one star's change is mostly the noise of the
    row segments its mask left with fewer pixels (measured: scatter 0.16 %, mean -0.04 % over
    22 stars with 8 segments per amplifier row; 0.05 % scatter with a constant per row, which
    then leaves the along-row 1/f: 1.2 % of these stars' flux against 0.5 % with the segments).
    """
    root = strong_set["root"]
    src = strong_set["rates"][SW]
    truth, tdq, src_img = truth_of(root, SW)
    a = read(src)
    clean = a["SCI"] - truth
    cat = Table.read(root / "truth" / "sources" / f"{SW}_sources.ecsv")
    R, A0, A1 = 4, 8, 14
    yy, xx = np.mgrid[-A1:A1 + 1, -A1:A1 + 1]
    rad = np.hypot(yy, xx)
    ap, ann = rad <= R, (rad >= A0) & (rad <= A1)

    def phot(img, x, y):
        ix, iy = int(round(x)), int(round(y))
        cut = img[iy - A1:iy + A1 + 1, ix - A1:ix + A1 + 1]
        return np.nansum(cut[ap]) - ap.sum() * np.nanmedian(cut[ann])

    fpath = str(flat_path(strong_set["crds_path"], strong_runs["amp"][SW]))
    xs, ys = np.asarray(cat["x"]), np.asarray(cat["y"])
    for method in ("amp", "gradient"):
        params = tooling.fnoise_params({}, {"method": method})
        with_src = fnoise_step.correct_model(open_model(src), params, fpath)
        bare = open_model(src)
        bare.data = (bare.data - src_img).astype(np.float32)
        without = fnoise_step.correct_model(bare, params, fpath)
        effect = (a["SCI"] - with_src.corrected) - (bare.data - without.corrected)
        res, _, _ = figures(a["SCI"], with_src.corrected, truth, tdq, src_img, a["DQ"])
        f_min = 3 * res.residual_rms * ap.sum() / np.sqrt(2 * R + 1) / 0.002
        changes = []
        for i, row in enumerate(cat):
            x, y = float(row["x"]), float(row["y"])
            d = np.hypot(xs - x, ys - y)
            d[i] = np.inf
            if row["kind"] != "star" or row["saturated"] or d.min() < 20 or not (20 < x < 2027 and 20 < y < 2027):
                continue
            flux = phot(clean, x, y)
            if flux > f_min:
                changes.append(phot(effect, x, y) / flux)
        changes = np.array(changes)
        print(f"{method}: {changes.size} stars brighter than {f_min:.0f} DN/s, mean flux change "
              f"{np.mean(changes):+.5f}, max |change| {np.max(np.abs(changes)):.5f}")
        assert changes.size >= 5
        assert abs(np.mean(changes)) < 0.001
        assert np.max(np.abs(changes)) < 0.006


# --------------------------------------------------------------------------- extended emission


def science_rows(d) -> np.ndarray:
    """Rows with any science pixel (reference rows are never a fallback)."""
    return (d.masked_fraction < 1).any(axis=1)


@pytest.fixture(scope="module")
def blob_case(strong_set, strong_runs):
    """NRCALONG with the blob: model, truth, the blob's geometry and sky pixels away from it."""
    root = strong_set["root"]
    src = strong_set["rates"][LW]
    truth, tdq, src_img = truth_of(root, LW)
    x0, y0, re = blob_geometry(root, LW)
    yy, xx = np.indices(truth.shape)
    r = np.hypot(xx - x0, yy - y0)
    model = open_model(src)
    flat = flat_path(strong_set["crds_path"], strong_runs["amp"][LW])
    good = qa_metrics.sky_pixels(model.data - truth, model.dq, tdq) & (r > 4 * re)
    truth_rows = qa_metrics.row_medians(truth, np.isfinite(truth) & ((model.dq & REFERENCE_PIXEL) == 0), 4, 1)
    return {"model": model, "truth": truth, "good": good, "r": r, "re": re, "flat": str(flat),
            "truth_rows": truth_rows}


def row_model_error(case, res) -> np.ndarray:
    """(ny, namp) subtracted row pattern minus the truth's row medians, about its median on blob-free rows."""
    d = res.diagnostics
    err = d.row_pattern * d.gain[None, :] - case["truth_rows"]
    free = case["good"].reshape(err.shape[0], err.shape[1], -1).any(axis=2)
    return err - np.nanmedian(err[free])


def high_pass(profile: np.ndarray) -> np.ndarray:
    """Minus a 17-row running mean: the stripes one sees."""
    return profile - uniform_filter1d(profile, 17, mode="nearest")


def test_gradient_does_not_carve_stripes_into_masked_blob(blob_case):
    """ICL-like blob (r_eff ~150 px), masked with --user-mask wide enough (3-4 r_eff) that it
    covers > 80 % of some amplifier's rows over >= 150 rows.  There the amp method must take
    the full-row value and leaves that amplifier's own stripes (the seed's failure); the
    gradient method keeps them from the row differences.  Figure: high-pass rms of the row
    model error (subtracted row pattern - the truth's row medians) on those rows.  Measured:
    amp 0.44 DN/s, gradient 0.09 DN/s (0.08 on blob-free rows) of 0.79 injected.  Limits:
    gradient <= half of amp, and <= 1.5x its own figure on blob-free rows.  (What the gradient
    method cannot recover under the mask is the slow part of that amplifier's 1/f: a mean
    offset of ~0.2 DN/s over those rows.)
    """
    c = blob_case
    for radius in (2.5, 3.0, 3.5, 4.0):
        user = c["r"] < radius * c["re"]
        cover = user.reshape(user.shape[0], 4, -1).mean(axis=2)
        k = int(np.argmax((cover > 0.8).sum(axis=0)))
        rows = np.flatnonzero(cover[:, k] > 0.8)
        if rows.size >= 150:
            break
    assert rows.size >= 150, "the simulated blob no longer covers whole amplifier rows"
    free = np.setdiff1d(np.arange(100, 1948), np.flatnonzero((c["r"] < (radius + 0.5) * c["re"]).any(axis=1)))
    assert free.size >= 300
    hp, hp_free = {}, {}
    for method in ("amp", "gradient"):
        res = fnoise_step.correct_model(c["model"], tooling.fnoise_params({}, {"method": method}),
                                        c["flat"], user)
        err = row_model_error(c, res)
        hp[method] = float(np.std(high_pass(err[rows, k])))
        hp_free[method] = float(np.std(high_pass(err[free, k])))
        d = res.diagnostics
        if method == "amp":  # the covered rows are exactly the full-row fallback rows
            assert d.fallback[rows, k].all()
            sr = science_rows(d)
            assert np.array_equal(d.fallback_masked[sr], d.masked_fraction[sr] > 0.8)
        print(f"{method}: mask {radius} r_eff, amplifier {k + 1}, {rows.size} covered rows: high-pass row error "
              f"{hp[method]:.3f} DN/s (blob-free rows {hp_free[method]:.3f}), mean {np.mean(err[rows, k]):+.3f}")
    assert hp["gradient"] <= 0.5 * hp["amp"]
    assert hp["gradient"] <= 1.5 * hp_free["gradient"]


def test_default_mask_keeps_blob_light(blob_case):
    """Without a user mask the blob's light must survive: within r_eff and within 2 r_eff, the
    median of ``injected - subtracted`` pattern stays within 0.03 DN/s of its value on the sky far
    from the blob (the blob is 0.1-0.9 DN/s above the sky there).  Measured: -0.18 / -0.11 DN/s
    with the tiered mask alone (its ring median removes the smooth light before detection),
    +0.001 / +0.003 with the extended-light tier (masks.extended_light_mask); and the tier off
    (``extended_mask: false``) must still show the loss, or this test could not fail."""
    c = blob_case
    for extended in (True, False):
        res = fnoise_step.correct_model(c["model"], tooling.fnoise_params({"extended_mask": extended}, {}),
                                        c["flat"])
        resid = c["truth"] - (c["model"].data - res.corrected)
        ok = np.isfinite(resid) & ~res.bad
        shift = [float(np.median(resid[(c["r"] < k * c["re"]) & ok]) - np.median(resid[c["good"]]))
                 for k in (1, 2)]
        far = res.mask & ~res.bad & (c["r"] > 4 * c["re"])
        print(f"extended mask {extended}: blob light removed {shift[0]:+.3f} (r_eff) {shift[1]:+.3f} (2 r_eff) "
              f"DN/s; masked far from the blob {far.mean():.3f}")
        if extended:
            assert max(map(abs, shift)) < 0.03
        else:
            assert shift[0] < -0.1 and shift[1] < -0.05


# --------------------------------------------------------------------------- fallback


def test_fallback_not_on_clean_rows(tiny_set, tiny_rates, strong_runs):
    """Clean real data: no two-sided outlier fallback at all; full-row values only where an
    amplifier row is more than mask_thresh masked (crowded LW strips: some rows are)."""
    assert fits.getheader(strong_runs["amp"][SW], 0)["YNG1FFB"] == "0,0,0,0"
    for src in [p for p in tiny_rates if "_00001_" in p.name]:
        m = open_model(src)
        res = fnoise_step.correct_model(m, tooling.fnoise_params({}, {"flat": False}))
        d = res.diagnostics
        print(f"{src.name}: fallback rows {d.fallback_counts()}, outliers {d.fallback_outlier.sum(axis=0)}")
        sr = science_rows(d)
        assert d.fallback_outlier.sum() == 0
        assert np.array_equal(d.fallback[sr], d.fallback_masked[sr])
        assert np.array_equal(d.fallback_masked[sr], d.masked_fraction[sr] > 0.8)


def test_fallback_on_contaminated_rows(tiny_set, tiny_rates):
    """Unmasked contamination over 75 % of an amplifier row (a bright or dark band of 3 pixel
    sigma, 30 rows): the amplifier's median moves by ~3 sigma, far beyond 6 x its expected
    error (~0.3 sigma here), so both signs must trigger the outlier fallback on those rows,
    and nowhere else.  The row model there (against the truth's row medians) must be much
    better than without the fallback: measured 0.24 / 0.76 DN/s (bright / dark band) with it,
    3.4 / 3.7 DN/s without; limit 0.3x."""
    src = next(p for p in tiny_rates if p.name.endswith("02101_00001_nrca3_rate.fits"))
    truth, tdq, src_img = truth_of(tiny_set.root, base_of(src))
    m = open_model(src)
    clean = m.data - truth
    sigma = qa_metrics.pixel_sigma(clean, np.isfinite(clean) & (m.dq == 0))
    for sign, rows in ((+1, slice(60, 90)), (-1, slice(160, 190))):
        model = open_model(src)
        band = np.zeros(model.data.shape, np.float32)
        band[rows, 1024 + 64:1536] = sign * 3 * sigma           # amplifier 3, 448 of 512 columns
        model.data = model.data + band
        out = {}
        truth_rows = qa_metrics.row_medians(truth, np.isfinite(truth) & ((m.dq & REFERENCE_PIXEL) == 0), 4)
        for k in (6.0, 0.0):
            params = tooling.fnoise_params({"fallback_k": k}, {"flat": False})
            res = fnoise_step.correct_model(model, params, None)
            d = res.diagnostics
            rows_model = d.row_pattern * d.gain[None, :]
            err = (rows_model - np.nanmedian(rows_model)) - (truth_rows - np.nanmedian(truth_rows))
            out[k] = (d, float(np.sqrt(np.nanmean(err[rows, 2] ** 2))))
        d = out[6.0][0]
        band_rows = np.zeros(d.fallback.shape[0], bool)
        band_rows[rows] = True
        print(f"sign {sign:+d}: fallback rows in band {d.fallback[band_rows, 2].sum()}/30, elsewhere "
              f"{d.fallback[~band_rows].sum()}; band residual {out[6.0][1]:.3f} vs {out[0.0][1]:.3f} without")
        assert d.fallback[band_rows, 2].sum() >= 27
        assert d.fallback_outlier[~band_rows].sum() <= 1
        assert out[6.0][1] < 0.3 * out[0.0][1]


# --------------------------------------------------------------------------- contract cases


def _cut_subarray(src: Path, dst: Path, cols: slice, noutputs: int, name: str, pattern: np.ndarray):
    """A subarray product cut from ``src`` (or the whole width), NOUTPUTS set, ``pattern`` added per row."""
    m = open_model(src)
    m.data = np.ascontiguousarray(m.data[:, cols]) + pattern[:, None].astype(np.float32)
    m.dq = np.ascontiguousarray(m.dq[:, cols])
    m.err = np.ascontiguousarray(m.err[:, cols])
    for ext in ("var_poisson", "var_rnoise", "var_flat"):
        if m.hasattr(ext) and getattr(m, ext) is not None and getattr(m, ext).shape[-1] == 2048:
            setattr(m, ext, np.ascontiguousarray(getattr(m, ext)[:, cols]))
    m.meta.exposure.noutputs = noutputs
    m.meta.subarray.name = name
    m.meta.subarray.xstart = int(m.meta.subarray.xstart) + (cols.start or 0)
    m.meta.subarray.xsize = m.data.shape[1]
    m.save(str(dst))


@pytest.fixture(scope="module")
def odd_inputs(tiny_set, tiny_rates, tmp_path_factory):
    """Edge-case inputs made from a tiny rate, all in one folder."""
    d = tmp_path_factory.mktemp("fnoise_odd")
    src = next(p for p in tiny_rates if p.name.endswith("02101_00001_nrca3_rate.fits"))
    rng = np.random.default_rng(5)
    pattern = np.cumsum(rng.normal(0, 1.0, 256)).astype(np.float32)   # a strong common row pattern
    pattern -= pattern.mean()
    files = {}
    files["one_output"] = d / "jw09001001001_02101_00001_nrca3sub_rate.fits"
    _cut_subarray(src, files["one_output"], slice(512, 1152), 1, "SUBGRISM256", pattern)
    files["noutputs1_fullwidth"] = d / "jw09001001001_02101_00001_nrca3w1_rate.fits"
    _cut_subarray(src, files["noutputs1_fullwidth"], slice(0, 2048), 1, "SUBGRISM256", pattern)
    m = open_model(src)
    nan = np.zeros(m.data.shape, bool)
    nan[100:103, 700:900] = True
    nan &= (m.dq & (DO_NOT_USE | REFERENCE_PIXEL)) == 0
    m.data[nan] = np.nan
    files["nan"] = d / "jw09001001001_02101_00001_nrca3nan_rate.fits"
    m.save(str(files["nan"]))
    m = open_model(src)
    m.meta.cal_step.clean_flicker_noise = "COMPLETE"
    files["cfn"] = d / "jw09001001001_02101_00001_nrca3cfn_rate.fits"
    m.save(str(files["cfn"]))
    files["not_fits"] = d / "jw09001001001_02101_00001_nrca3txt_rate.fits"
    files["not_fits"].write_text("not a FITS file\n")
    files["uncal"] = d / "jw09001001001_02101_00001_nrca3_uncal.fits"
    shutil.copy(tiny_set.uncal[0], files["uncal"])
    return {"dir": d, "files": files, "nan_pixels": nan, "pattern": pattern, "src": src}


@pytest.fixture(scope="module")
def odd_run(tiny_set, odd_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fnoise_odd_out")
    f = odd_inputs["files"]
    order = ["one_output", "not_fits", "noutputs1_fullwidth", "nan", "cfn", "uncal"]
    # a constant per amplifier row (no along-row term): the model's layout then shows the amplifiers alone
    r = run_tool("young-fnoise", "--config", tiny_set.config, "-o", out, "--row-segments", "1",
                 *[f[k] for k in order], check=False)
    return {"proc": r, "out": out, "order": order}


def test_bad_inputs_one_line_each_and_rest_produced(odd_run, odd_inputs):
    r = odd_run["proc"]
    f = odd_inputs["files"]
    assert r.returncode == 1
    errs = [ln for ln in r.stderr.splitlines() if not ln.startswith("young-fnoise: 3 done")]
    assert len(errs) == 3 and all(ln.startswith("young-fnoise: ") for ln in errs), r.stderr
    assert "Traceback" not in r.stderr
    assert any(str(f["not_fits"]) in ln and "not a FITS file" in ln for ln in errs)
    assert any(str(f["uncal"]) in ln and "wrong product level" in ln for ln in errs)
    assert any(str(f["cfn"]) in ln and "clean_flicker_noise" in ln and "never applied twice" in ln for ln in errs)
    assert "young-fnoise: 3 done, 0 up to date, 3 failed" in r.stderr
    made = [Path(p).name for p in r.stdout.split()]
    assert made == [naming.product_path(f[k], tag="1f").name for k in ("one_output", "noutputs1_fullwidth", "nan")]


def test_nan_becomes_do_not_use_never_zero(odd_run, odd_inputs):
    prod = odd_run["out"] / naming.product_path(odd_inputs["files"]["nan"], tag="1f").name
    a, b = read(odd_inputs["files"]["nan"]), read(prod)
    nan = odd_inputs["nan_pixels"]
    assert np.isnan(b["SCI"][nan]).all()
    assert ((b["DQ"][nan] & DO_NOT_USE) != 0).all()
    assert b["header"]["YNG1FNAN"] == int(nan.sum())
    other = ~nan
    assert np.array_equal(a["DQ"][other], b["DQ"][other])
    assert not (b["SCI"][nan] == 0).any()


def test_outputs_from_metadata(odd_run, odd_inputs, tiny_run, tiny_set):
    """NOUTPUTS decides the amplifiers: 1-output subarray and a full-width NOUTPUTS=1 file get
    one value per row across the width (and the injected common row pattern removed); the
    4-output tiny strips get four independent values."""
    pattern = odd_inputs["pattern"]
    truth, _, _ = truth_of(tiny_set.root, base_of(odd_inputs["src"]))
    for key, width, cols in (("one_output", 640, slice(512, 1152)), ("noutputs1_fullwidth", 2048, slice(0, 2048))):
        src = odd_inputs["files"][key]
        prod = odd_run["out"] / naming.product_path(src, tag="1f").name
        assert fits.getheader(prod, 0)["YNG1FNOU"] == 1
        a, b = read(src), read(prod)
        assert a["SCI"].shape[1] == width
        sci = (a["DQ"] & REFERENCE_PIXEL) == 0
        model = np.where(sci, a["SCI"] - b["SCI"], np.nan)[4:-4]
        c0 = int(np.flatnonzero(np.isfinite(model).all(axis=0))[0])
        # one amplifier: model(r, c) - model(r, c0) is the column pattern, the same in every row
        assert np.nanmax(np.nanstd(model - model[:, c0:c0 + 1], axis=0)) < 1e-3
        # what was removed: the injected common row pattern plus the file's own 1/f seen as one
        # output (the truth's row medians over these columns), to the noise of a row median
        # (1.25 x 1.25 DN/s / sqrt(~400 px) ~ 0.08 DN/s)
        got = model[:, c0]
        want = (pattern + np.nanmedian(truth[:, cols], axis=1))[4:-4]
        assert np.std((got - got.mean()) - (want - want.mean())) < 0.15
    prod = next(p for p in tiny_run["products"] if p.name.endswith("nrca3_1f_rate.fits"))
    rp = fits.getdata(models.side_path(prod, "model"), "ROWPAT")
    assert rp.shape == (256, 4) and np.min(np.std(np.diff(rp, axis=1), axis=0)) > 0.05


def test_second_application_never_even_forced(tiny_set, tiny_run, tiny_inputs, tmp_path):
    """A 1/f product given back to young-fnoise (by name, or renamed: by its header) is passed on untouched,
    --force or not; with its original input beside it, --force redoes the product from that input, once."""
    prod = next(p for p in tiny_run["products"] if p.name.endswith("nrca3_1f_rate.fits"))
    renamed = tmp_path / prod.name.replace("_1f_rate", "_rate").replace("nrca3", "nrca3x")
    shutil.copy(prod, renamed)
    for force in ([], ["--force"]):
        r = run_tool("young-fnoise", "--config", tiny_set.config, "-o", tmp_path, *force, prod, renamed)
        assert r.stdout.split() == [str(prod), str(renamed)], r.stderr
        assert "2 already corrected (left alone)" in r.stderr
        assert not list(tmp_path.glob("*_1f_1f_*")) and not list(tmp_path.glob("*nrca3x_1f_*"))
    # X_rate and X_1f_rate side by side, both listed (the natural glob): one product, made once
    pair = tmp_path / "pair"
    pair.mkdir()
    src = next(p for p in tiny_inputs if p.name.endswith("nrca3_rate.fits"))
    shutil.copy(src, pair / src.name)
    first = run_tool("young-fnoise", "--config", tiny_set.config, "--no-flat", pair / src.name)
    made = Path(first.stdout.strip())
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--no-flat", "--force", *sorted(pair.glob("*.fits")))
    assert r.stdout.split() == [str(made)], r.stderr
    assert "1 done" in r.stderr and not list(pair.glob("*_1f_1f_*"))


def test_directory_skips_corrected_products_and_resume(tiny_set, tiny_run, tmp_path):
    """A folder with X_rate and X_1f_rate: only X_rate is read; a second run is up to date, a
    changed parameter redoes it; paths also come from stdin."""
    src = next(p for p in tiny_run["products"] if p.name.endswith("nrca3_1f_rate.fits"))
    raw = next(s for s in Path(tiny_set.root / "stage1").glob("*02101_00001_nrca3_rate.fits"))
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(raw, d / raw.name)
    shutil.copy(src, d / src.name)
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--no-flat", d)
    assert [Path(p).name for p in r.stdout.split()] == [src.name] and "1 done" in r.stderr
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--no-flat", stdin=f"# list\n{d / raw.name}\n\n")
    assert "0 done, 1 up to date" in r.stderr and r.stdout.strip() == str(d / src.name)
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--no-flat", "--method", "gradient", d / raw.name)
    assert "1 done" in r.stderr and fits.getheader(d / src.name, 0)["YNG1F"] == "gradient"


def test_side_products_and_usage_errors(tiny_set, tiny_rates, tmp_path):
    src = next(p for p in tiny_rates if p.name.endswith("02101_00001_nrcalong_rate.fits"))
    mask_in = tmp_path / "user_mask.fits"
    um = np.zeros((256, 2048), np.uint8)
    um[:, 600:700] = 1
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(um, name="MASK")]).writeto(mask_in)
    r = run_tool("young-fnoise", "--config", tiny_set.config, "-o", tmp_path, "--save-correction", "--save-mask",
                 "--plot", "--user-mask", mask_in, "--mask-preset", "ceers", "--mask-thresh", "0.9", src)
    prod = Path(r.stdout.strip())
    h = fits.getheader(prod, 0)
    assert h["YNG1FMSK"] == "ceers" and h["YNG1FTHR"] == 0.9
    mask = fits.getdata(models.side_path(prod, "mask"), "MASK")
    assert mask.shape == (256, 2048) and (mask[:, 600:700] > 0).all() and set(np.unique(mask)) <= {0, 1, 2}
    png = models.side_path(prod, "", ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with fits.open(models.side_path(prod, "model")) as hm:
        assert hm["MODEL"].data.shape == (256, 2048) and hm["ROWPAT"].data.shape == (256, 4)
        assert hm["FALLBACK"].data.shape == (256, 4)
    for bad, what in ((["--method", "fft"], "--method"), (["--mask-thresh", "1.5"], "--mask-thresh"),
                      (["--set", "jump.skip=true"], "runs no jwst step"),
                      (["--user-mask", tmp_path / "nope.fits"], "--user-mask")):
        r = run_tool("young-fnoise", "--config", tiny_set.config, "-o", tmp_path, *bad, src, check=False)
        assert r.returncode == 2, (bad, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0], r.stderr


def test_flat_from_crds_or_a_clear_error(tiny_set, tiny_rates, tmp_path):
    """Rate files need the FLAT reference: an empty cache is one line naming it; --no-flat needs none."""
    src = next(p for p in tiny_rates if p.name.endswith("02101_00001_nrca3_rate.fits"))
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    cfg = tmp_path / "y.yaml"
    cfg.write_text(f"crds_path: {empty}\ncrds_context: jwst_9001.pmap\n"
                   "crds_server_url: https://jwst-serverless-mode.stsci.edu\n")
    r = run_tool("young-fnoise", "--config", cfg, "-o", tmp_path, src, check=False)
    assert r.returncode == 2 and r.stdout == ""   # the context itself is missing: before any work
    assert r.stderr.strip() == (f"young-fnoise: CRDS context jwst_9001.pmap is not in the cache {empty} "
                                "(mappings/jwst) and no CRDS server is configured to fetch it")
    # the context there, the FLAT not: one line naming it and the way round it
    shutil.copytree(tiny_set.crds_path / "mappings", empty / "mappings")
    shutil.copytree(tiny_set.crds_path / "config", empty / "config")
    r = run_tool("young-fnoise", "--config", cfg, "-o", tmp_path, src, check=False)
    assert r.returncode == 1 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if str(src) in ln]
    assert len(lines) == 1 and "FLAT" in lines[0] and "--no-flat" in lines[0], r.stderr
    shutil.rmtree(empty / "mappings")   # --no-flat reads no reference: no context needed either
    r = run_tool("young-fnoise", "--config", cfg, "-o", tmp_path, "--no-flat", src)
    assert fits.getheader(Path(r.stdout.strip()), 0)["YNG1FFLT"] == "none"


def test_build_params_validation():
    p = tooling.fnoise_params({"fallback_k": 5, "method": "gradient"}, {"mask_thresh": 0.7})
    assert p["method"] == "gradient" and p["mask_thresh"] == 0.7 and p["fallback_k"] == 5
    assert fnoise_step.fnoise_params(p).clip_sigma == 3.0
    assert fnoise_step.method_for(tooling.fnoise_params({}, {}), "cal") == fnoise_step.CAL_METHOD
    for section, cli in (({}, {"method": "median"}), ({}, {"mask_preset": "deep"}), ({"anchor_step": 0}, {}),
                         ({}, {"mask_thresh": 0.0})):
        with pytest.raises(UsageError):
            tooling.fnoise_params(section, cli)


# --------------------------------------------------------------------------- wisps are not stripes


WISP_K = 500.0       # template multiplier (as in tests/test_wisp_tool.py: puts a 2.6-6.7 sigma wisp on the strip)
WISP_S = {"00001": 0.8, "00002": 1.3}


@pytest.fixture(scope="module")
def wisp_case(tiny_set, tiny_rates, tmp_path_factory):
    """Tiny NRCA3/F150W rate files (their own stage-1 stripes kept) plus an injected wisp; young-fnoise with
    and without the provisional wisp fit, then young-wisp on both results.

    The simulator's NRCA3/F150W template turned upside down (its wisp then falls on the SUBGRISM256 strip,
    where its region covers 94-100 % of every amplifier: masking it would leave nothing to measure) and
    multiplied by WISP_K is the template given to both tools; each exposure gets ``s x`` its RATE
    extension added.
    """
    root = tmp_path_factory.mktemp("fnoise_wisp")
    tmpl, inp = root / "tmpl", root / "inp"
    tmpl.mkdir()
    inp.mkdir()
    sim_t = write_flipped_wisp_template(tiny_set.root, tmpl, WISP_K)
    t_rate = fits.getdata(sim_t, "RATE")[:256]
    srcs = {}
    for exp, s in WISP_S.items():
        src = next(p for p in tiny_rates if p.name.startswith(f"jw09001001001_02101_{exp}_nrca3"))
        dst = inp / src.name
        with fits.open(src) as h:
            h["SCI"].data = (h["SCI"].data + s * t_rate).astype(np.float32)
            h.writeto(dst)
        srcs[exp] = (src, dst)
    runs = {}
    for label, flag in (("fitted", "--wisp-model"), ("ignored", "--no-wisp-model")):
        f = run_tool("young-fnoise", "--config", tiny_set.config, "--wisp-templates", tmpl, flag,
                     "-o", root / label, "-q", *(d for _, d in srcs.values()))
        w = run_tool("young-wisp", "--config", tiny_set.config, "-t", tmpl, "-o", root / f"{label}_wisp", "-q",
                     stdin=f.stdout)
        runs[label] = {"fnoise": [Path(p) for p in f.stdout.split()], "wisp": [Path(p) for p in w.stdout.split()]}
    return {"root": root, "tmpl": sim_t, "t_rate": t_rate, "srcs": srcs, "runs": runs}


def test_wisp_is_not_taken_for_stripes(tiny_set, wisp_case):
    """young-fnoise measures the stripes beside a provisional wisp fit and leaves the wisp in: young-wisp then
    fits the injected scale, and the stripes are removed as well as without any wisp.

    The rate files keep their real stage-1 stripes (row-median rms 0.6-1.0 DN/s; the wisp is 1-8 DN/s).
    Without the wisp fit the amplifier row medians take the wisp for stripes: young-wisp then fits a scale
    of 0.03-0.08 for an injected 0.8-1.3.  Measured with it: provisional 0.794 / 1.285, young-wisp 0.788 /
    1.278 (+- 0.007-0.008), stripe residual 0.094 / 0.088 against floors of 0.101 / 0.089.  Bounds: 5 % of the scale (young-wisp's requirement) and 4x its
    own jackknife error; the run without the wisp fit must be far off (the fit is what makes the
    difference); the stripe residual against the injected 1/f truth within 1.5x the oracle floor of the
    same file without the wisp, as for these files without a wisp (test_weak_stripes_within_floor).
    """
    runs = wisp_case["runs"]
    for i, (exp, s_true) in enumerate(WISP_S.items()):
        src, inp = wisp_case["srcs"][exp]
        fitted = runs["fitted"]["fnoise"][i]
        h1 = fits.getheader(fitted)
        assert h1["YNG1FWSP"] == "WISP_NRCA3_F150W_CLEAR.fits"
        assert fits.getheader(runs["ignored"]["fnoise"][i])["YNG1FWSP"] == "none"
        hw = fits.getheader(runs["fitted"]["wisp"][i])
        s_m, e_m = hw["YNGWISPS"], hw["YNGWISPE"]
        s_u = fits.getheader(runs["ignored"]["wisp"][i])["YNGWISPS"]
        print(f"{exp}: injected {s_true}, provisional {h1['YNG1FWSS']:.3f}, young-wisp after the fit "
              f"{s_m:.3f} +- {e_m:.3f}, without it {s_u:.3f}")
        assert abs(s_m / s_true - 1) < 0.05
        assert abs(s_m - s_true) < 4 * e_m + 0.01
        assert abs(s_u / s_true - 1) > 0.3
        base = base_of(src)
        truth, tdq, src_img = truth_of(tiny_set.root, base)
        a, b, c = read(inp), read(fitted), read(src)
        res, _, _ = figures(a["SCI"], b["SCI"], truth, tdq, src_img, a["DQ"])
        _, floor, _ = figures(c["SCI"], c["SCI"], truth, tdq, src_img, c["DQ"])  # the oracle on the file without a wisp
        print(f"   stripe residual {res.fraction:.3f} (floor without the wisp {floor.fraction:.3f})")
        assert res.fraction <= 1.5 * floor.fraction


def test_bad_wisp_template_is_named_and_missing_folder_is_a_usage_error(tiny_set, tiny_rates, tmp_path):
    """A template that exists for the exposure but is not FITS: one line naming it, exit 1, no product (the
    file without a template still done); a --wisp-templates folder that does not exist: exit 2."""
    tmpl = tmp_path / "tmpl"
    tmpl.mkdir()
    broken = tmpl / "WISP_NRCA3_F150W_CLEAR.fits"
    broken.write_text("not a template\n")
    sw = next(p for p in tiny_rates if p.name.startswith(SW))
    lw = next(p for p in tiny_rates if p.name.startswith(LW))
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--wisp-templates", tmpl, "-o", tmp_path / "out",
                 sw, lw, check=False)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "young-fnoise: /" in ln]
    assert len(errors) == 1 and str(sw) in errors[0] and "unreadable wisp template" in errors[0] \
        and str(broken) in errors[0], r.stderr
    assert [Path(p).name for p in r.stdout.split()] == [f"{LW}_1f_rate.fits"]
    assert not (tmp_path / "out" / f"{SW}_1f_rate.fits").exists()
    r = run_tool("young-fnoise", "--config", tiny_set.config, "--wisp-templates", tmp_path / "nowhere", sw,
                 check=False)
    assert r.returncode == 2 and "wisp template folder not found" in r.stderr, r.stderr
