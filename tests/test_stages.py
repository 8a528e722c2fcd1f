"""young-stage1 / young-stage2 under the tool contract, on the simulated tiny set (real jwst)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from chain_fixtures import run_tool
from helpers import TOOLS, tool_env, unwritable_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pick(paths, n_sw=1, n_lw=1):
    sw = [p for p in paths if "long" not in Path(p).name][:n_sw]
    lw = [p for p in paths if "long" in Path(p).name][:n_lw]
    return sw + lw


def test_chain_products_and_provenance(tiny_set, tiny_rates, tiny_cals):
    """young-stage1 on the raw/ folder, its stdout piped into young-stage2: every exposure comes through."""
    assert len(tiny_rates) == len(tiny_set.uncal) == len(tiny_cals)
    assert [p.name for p in tiny_rates] == sorted(Path(u).name.replace("_uncal", "_rate") for u in tiny_set.uncal)
    assert [p.name for p in tiny_cals] == [p.name.replace("_rate", "_cal") for p in tiny_rates]
    for rate, cal in zip(tiny_rates, tiny_cals):
        h = fits.getheader(cal)
        assert h["YNGTOOL"] == "young-stage2" and h["YNGCRDS"] == "jwst_9001.pmap" == h["CRDS_CTX"]
        assert h["S_PHOTOM"] == "COMPLETE" and h["YNGJWST"] == h["CAL_VER"]
        assert fits.getheader(rate)["YNGTOOL"] == "young-stage1"
        assert (cal.parent / (cal.name[:-5] + ".log")).stat().st_size > 0
        # --jobs 2 on a serverless cache: no prefetch to wait for, but every worker computed read-only
        log = (rate.parent / (rate.name[:-5] + ".log")).read_text()
        assert "CRDS_READONLY_CACHE=1" in log and "serverless" in log, rate.name


def test_rates_match_injected_background(tiny_set, tiny_rates):
    """The sky level in every rate file equals the injected background (DN/s) within its noise."""
    from astropy.table import Table

    truth = Table.read(tiny_set.truth / "exposures.ecsv")
    for rate in tiny_rates:
        row = truth[truth["file"] == rate.name.replace("_rate", "_uncal")][0]
        with fits.open(rate) as h:
            sci, dq = h["SCI"].data, h["DQ"].data
        good = (dq == 0) & np.isfinite(sci)
        sky = np.median(sci[good])
        # median over >1e5 pixels of a sky with sources (<10% of pixels) and 1/f stripes: sources
        # bias the median up by a fraction of a sigma; allow 0.5 sigma of the per-pixel noise
        sigma = 1.4826 * np.median(np.abs(sci[good] - sky))
        expected = row["background_dn_s"]
        assert abs(sky - expected) < 0.5 * sigma + 0.02 * expected, (rate.name, sky, expected, sigma)


def test_pipe_from_stdin_resume_and_force(tiny_set, tmp_path):
    files = pick(tiny_set.uncal)
    before_sums = {f: sha(f) for f in files}
    cfg = tiny_set.config
    pipe = (f"printf '%s\\n' {' '.join(map(str, files))} | {sys.executable} {TOOLS / 'young-stage1'} -q "
            f"--config {cfg} -o {tmp_path} | {sys.executable} {TOOLS / 'young-stage2'} -q --config {cfg}")
    r = subprocess.run(["bash", "-c", pipe], capture_output=True, text=True, env=tool_env())
    assert r.returncode == 0, r.stderr
    cals = [Path(p) for p in r.stdout.split()]
    assert [c.name for c in cals] == [Path(f).name.replace("_uncal", "_cal") for f in files]
    stamp = {c: c.stat().st_mtime_ns for c in cals}
    # second run: everything up to date, nothing rewritten
    r = subprocess.run(["bash", "-c", pipe.replace(" -q ", " ")], capture_output=True, text=True, env=tool_env())
    assert r.returncode == 0 and "0 done, 2 up to date" in r.stderr
    assert {c: c.stat().st_mtime_ns for c in cals} == stamp
    # --force redoes stage 2 (and changes nothing in the science)
    before = fits.getdata(cals[0], "SCI")
    r = run_tool("young-stage2", "--config", cfg, "--force", *[c.with_name(c.name.replace("_cal", "_rate")) for c in cals])
    assert "2 done" in r.stderr and all(c.stat().st_mtime_ns > stamp[c] for c in cals)
    np.testing.assert_array_equal(fits.getdata(cals[0], "SCI"), before)
    # inputs are byte-identical after all of it
    assert {f: sha(f) for f in files} == before_sums


def test_mpi_matches_serial_and_isolates_bad_file(tiny_set, tiny_rates, tmp_path):
    files = pick(tiny_set.uncal, 2, 2)
    bad = tmp_path / "jw09001001001_02101_00009_nrca3_uncal.fits"
    bad.write_text("not a FITS file")
    # --prefetch: the path a real CRDS server takes (rank 1 loads jwst while rank 0 prefetches)
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, str(TOOLS / "young-stage1"), "--config", str(tiny_set.config),
           "--prefetch", "-o", str(tmp_path / "mpi"), *map(str, files[:2]), str(bad), *map(str, files[2:])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=900)
    assert r.returncode == 1, r.stderr
    out = [Path(p) for p in r.stdout.split()]
    assert [p.name for p in out] == [Path(f).name.replace("_uncal", "_rate") for f in files]
    assert sum(str(bad) in line and "not a FITS file" in line for line in r.stderr.splitlines()) == 1
    serial = {p.name: p for p in tiny_rates}
    for p in out:
        np.testing.assert_array_equal(fits.getdata(p, "SCI"), fits.getdata(serial[p.name], "SCI"))
        np.testing.assert_array_equal(fits.getdata(p, "DQ"), fits.getdata(serial[p.name], "DQ"))
    # every rank's worker (rank 1's warmed up while rank 0 prefetched) ran with CRDS serverless and
    # read-only (prefetched once on rank 0)
    for p in out:
        log = (tmp_path / "mpi" / (p.name[:-5] + ".log")).read_text()
        assert "CRDS_READONLY_CACHE=1" in log and "serverless" in log, p.name


def test_jobs_with_prefetch_matches_serial(tiny_set, tiny_rates, tiny_cals, tmp_path):
    """--jobs 2 --prefetch: the second worker loads jwst while the first prefetches; both then
    compute on the read-only serverless cache and give the same science as the fixture's run."""
    rates = pick(tiny_rates, 1, 1)
    r = run_tool("young-stage2", "--config", tiny_set.config, "--jobs", "2", "--prefetch",
                 "-o", tmp_path, *rates)
    out = [Path(p) for p in r.stdout.split()]
    assert [p.name for p in out] == [p.name.replace("_rate", "_cal") for p in rates]
    ref = {p.name: p for p in tiny_cals}
    for p in out:
        np.testing.assert_array_equal(fits.getdata(p, "SCI"), fits.getdata(ref[p.name], "SCI"))
        log = (p.parent / (p.name[:-5] + ".log")).read_text()
        assert "CRDS_READONLY_CACHE=1" in log and "serverless" in log, p.name


def _variant(src: Path, dst: Path, **cards) -> Path:
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as h:
        for k, v in cards.items():
            h[0].header[k] = v
    return dst


def test_bad_inputs_one_line_each(tiny_set, tiny_rates, tmp_path):
    good = Path(pick(tiny_set.uncal, 1, 0)[0])
    notfits = tmp_path / "jw09001001001_02101_00007_nrca3_uncal.fits"
    notfits.write_text("SIMPLE but not really")
    trunc = tmp_path / "jw09001001001_02101_00008_nrca3_uncal.fits"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    miri = _variant(good, tmp_path / "jw09001001001_02101_00011_mirimage_uncal.fits", INSTRUME="MIRI", EXP_TYPE="MIR_IMAGE")
    nirspec = _variant(good, tmp_path / "jw09001001001_02101_00012_nrs1_uncal.fits", INSTRUME="NIRSPEC", EXP_TYPE="NRS_MSASPEC")
    rate_as_uncal = tmp_path / tiny_rates[0].name.replace("_rate", "_x_uncal").replace("_x_uncal", "_uncal")
    shutil.copy(tiny_rates[0], rate_as_uncal)
    missing = tmp_path / "jw09001001001_02101_00013_nrca3_uncal.fits"
    inputs = [notfits, trunc, miri, nirspec, rate_as_uncal, missing]
    r = run_tool("young-stage1", "--config", tiny_set.config, "-o", tmp_path / "out", *inputs, check=False)
    assert r.returncode == 1 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("young-stage1: /")]
    assert len(lines) == len(inputs), r.stderr
    for path, words in ((notfits, "not a FITS file"), (trunc, "truncated"), (miri, "not NIRCam"),
                        (nirspec, "not NIRCam"), (rate_as_uncal, "wrong product level"), (missing, "no such file")):
        assert any(str(path) in ln and words in ln for ln in lines), (words, r.stderr)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").glob("*.fits")) == []


def test_unwritable_output_dir(tiny_set, tmp_path):
    f = pick(tiny_set.uncal, 1, 0)[0]
    r = run_tool("young-stage1", "--config", tiny_set.config, "-o", unwritable_dir(tmp_path), f, check=False)
    assert r.returncode == 1 and "cannot write products" in r.stderr and str(f) in r.stderr


@pytest.mark.parametrize("prefetch", ["--prefetch", "--no-prefetch"])
def test_missing_reference_in_readonly_cache_is_named(tiny_set, tmp_path, prefetch):
    cache = tmp_path / "crds"
    shutil.copytree(tiny_set.crds_path, cache)
    darks = sorted((cache / "references" / "jwst" / "nircam").glob("*dark*"))
    assert darks
    for d in darks:
        d.unlink()
    cfg = tmp_path / "young.yaml"
    cfg.write_text(f"crds_path: {cache}\ncrds_context: jwst_9001.pmap\n"
                   "crds_server_url: https://jwst-serverless-mode.stsci.edu\n")
    files = pick(tiny_set.uncal, 1, 1)
    r = run_tool("young-stage1", "--config", cfg, prefetch, "-o", tmp_path / "out", *files, check=False,
                 env=tool_env(CRDS_READONLY_CACHE="1"))
    # a cache-only set-up cannot get it: a usage error before any work, one line naming the references,
    # the cache and how many inputs need them (was: every file failed at run time, exit 1)
    assert r.returncode == 2 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(cache) in lines[0] and "2 of 2 input(s)" in lines[0], r.stderr
    assert sum(d.name in lines[0] for d in darks) >= 1, r.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_killed_mid_run_leaves_no_product_and_rerun_completes(tiny_set, tmp_path):
    f = pick(tiny_set.uncal, 1, 0)[0]
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, str(TOOLS / "young-stage1"), "--config", str(tiny_set.config), "-o", str(out), str(f)]
    p = subprocess.Popen(cmd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob(".*young-tmp-*")):
        time.sleep(0.2)
    time.sleep(2.0)  # jwst is now running inside the temporary folder
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    product = out / Path(f).name.replace("_uncal", "_rate")
    assert not product.exists()
    assert list(out.glob(".*young-tmp-*"))  # the killed run's scratch, hidden
    r = run_tool("young-stage1", "--config", tiny_set.config, "-o", out, f)
    assert r.stdout.split() == [str(product)] and product.exists()
    assert not list(out.glob(".*young-tmp-*"))  # stale scratch removed
    raw = fits.getheader(f, "SCI")
    assert fits.getdata(product, "SCI").shape == (raw["NAXIS2"], raw["NAXIS1"])
