"""The whole chain driven by make (issue 8): `make all INPUT=dir` on real tiny data, killed with SIGKILL
mid-stage and rerun, SKIP, the dry run, the layouts and the argument checks.

The data: the first visit of the ``tiny`` preset (F150W on NRCA3 + F277W on NRCALONG, 3 dithers, 6
SUBGRISM256 exposures), linked into an input folder, through every tool of the chain with the real jwst
pipeline (~1.5 min at ``-j 2``).
"""

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
from helpers import make_env
from young.contract import fitscheck, naming

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
VISIT = "jw09001001001_02101"
CHAIN = ("rate", "1f_rate", "1f_cal", "1f_wisp_cal", "1f_wisp_bkg_cal")


def make_cmd(*args) -> list[str]:
    venv = Path(sys.executable).parent.parent
    return ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), f"VENV={venv}", *map(str, args)]


def make(*args, cwd: Path, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
    r = subprocess.run(make_cmd(*args), cwd=cwd, capture_output=True, text=True, env=make_env(), timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"make {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr[-4000:]}")
    return r


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_complete_fits(out: Path) -> list[Path]:
    """Every FITS product under ``out`` is whole (structure and sizes).

    Files inside hidden folders are a writer's temporaries (a killed writer leaves its own; the rerun
    removes them, asserted separately), not products.
    """
    products = sorted(p for p in out.rglob("*.fits")
                      if not any(part.startswith(".") for part in p.relative_to(out).parts))
    for p in products:
        fitscheck.read_primary(p)  # raises InputError on truncation or a damaged structure
        with fits.open(p) as h:
            for hdu in h:
                if hdu.data is not None:
                    assert hdu.data.size > 0
    return products


@pytest.fixture(scope="module")
def visit(tiny_set, tmp_path_factory):
    """The 6 uncal files of the first visit, linked into a folder of their own, and their checksums."""
    inp = tmp_path_factory.mktemp("make") / "in"
    inp.mkdir()
    for p in sorted(Path(tiny_set.root, "raw").glob(f"{VISIT}_*_uncal.fits")):
        (inp / p.name).symlink_to(p)
    files = sorted(inp.iterdir())
    assert len(files) == 6
    return {"inp": inp, "config": tiny_set.config, "sums": {p: sha(p) for p in files}}


@pytest.fixture(scope="module")
def killed_then_rerun(visit):
    """`make all -j 2` SIGKILLed (make and its tools) while stage 1 is writing, then the same command again."""
    work = visit["inp"].parent
    out = work / "out"
    args = ["all", f"INPUT={visit['inp']}", f"OUTPUT={out}", f"CONFIG={visit['config']}", "-j", "2"]
    proc = subprocess.Popen(make_cmd(*args), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=make_env(), start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("*_rate.fits"))) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "make finished before it could be killed:\n" + proc.stderr.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    killed = {"rates": sorted(out.glob("*_rate.fits")), "fits": assert_complete_fits(out),
              "hidden": sorted(p.name for p in out.iterdir() if ".young-tmp-" in p.name)}
    t0 = time.monotonic()
    rerun = make(*args, cwd=work)
    return {"out": out, "killed": killed, "rerun": rerun, "rerun_s": time.monotonic() - t0, "args": args,
            "work": work}


def test_killed_make_all_leaves_no_corrupt_product_and_rerun_completes(visit, killed_then_rerun):
    """SIGKILL mid-stage-1: what exists is whole; the rerun finishes every exposure's chain and the mosaics,
    removes the dead writers' temporary folders, and the inputs are byte-identical."""
    k = killed_then_rerun
    out = k["out"]
    assert 1 <= len(k["killed"]["rates"]) < 6
    print(f"killed with {len(k['killed']['rates'])} rate files done, hidden temporaries "
          f"{k['killed']['hidden']}; rerun {k['rerun_s']:.0f} s")
    products = assert_complete_fits(out)
    for uncal in visit["sums"]:
        base = naming.parse(uncal).base
        for tag in CHAIN:
            assert (out / f"{base}_{tag}.fits").is_file(), f"{base}_{tag}.fits missing"
    assert not [p for p in out.rglob("*") if ".young-tmp-" in p.name], "temporary folders left behind"
    listed = [Path(p) for p in (out / "mosaics" / "young-stage3.list").read_text().split()]
    names = sorted(p.name for p in listed)
    assert names == sorted(f"jw09001_nircam_{f}_{s}" for f in ("f150w", "f277w")
                           for s in ("i2d.fits", "segm.fits", "cat.ecsv"))
    assert all(p.is_file() and p.parent.parent == out / "mosaics" for p in listed)
    # one grid for both filters (the reference is F277W)
    w = [fits.getheader(p, "SCI") for p in listed if p.name.endswith("_i2d.fits")]
    for key in ("NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "PC1_1", "PC1_2"):
        if key in w[0]:
            assert w[0][key] == pytest.approx(w[1][key], rel=1e-9, abs=1e-12), key
    # each stage's provenance is in the final cal: the whole chain ran on it
    h = fits.getheader(out / f"{VISIT}_00001_nrca3_1f_wisp_bkg_cal.fits")
    assert h["YNG1F"] and h["YNGWISP"] and h["YNGBKG"]
    # logs: one per product, one per filter
    assert (out / f"{VISIT}_00001_nrca3_rate.log").is_file()
    assert (out / "mosaics" / "f150w" / "jw09001_nircam_f150w.log").is_file()
    assert {p: sha(p) for p in visit["sums"]} == visit["sums"]
    assert len(products) >= 6 * len(CHAIN) + 4


def test_rerun_of_a_finished_chain_does_nothing(killed_then_rerun):
    r = make(*killed_then_rerun["args"], "-n", cwd=killed_then_rerun["work"])
    ran = [ln for ln in r.stdout.splitlines() if "/bin/young-" in ln]
    assert ran == [], r.stdout


def test_skip_removes_steps_and_the_rest_completes(visit, killed_then_rerun, tmp_path):
    """SKIP="fnoise wisp bkg": stage 2 on the plain rate files and the mosaics from plain cal files.

    The rate files of the full run are copied in (mtimes kept, so make does not redo stage 1).
    """
    out = tmp_path / "skip"
    out.mkdir()
    for p in killed_then_rerun["out"].glob("*_rate.fits"):
        if not p.name.endswith("_1f_rate.fits"):
            shutil.copy2(p, out / p.name)
    make("all", f"INPUT={visit['inp']}", f"OUTPUT={out}", f"CONFIG={visit['config']}", "SKIP=fnoise wisp bkg",
         "-j", "2", cwd=tmp_path)
    names = sorted(p.name for p in out.glob("*.fits"))
    assert not [n for n in names if any(t in n for t in ("_1f_", "_wisp_", "_bkg_"))], names
    assert len([n for n in names if n.endswith("_cal.fits")]) == 6
    listed = (out / "mosaics" / "young-stage3.list").read_text().split()
    assert len(listed) == 6 and all(Path(p).is_file() for p in listed)
    i2d = next(Path(p) for p in listed if p.endswith("f150w_i2d.fits"))
    # the F150W strip covers ~20 % of the grid it shares with F277W (1.3x larger footprint, 2x finer pixels)
    assert np.isfinite(fits.getdata(i2d, "SCI")).mean() > 0.15
    cat = next(Path(p) for p in listed if p.endswith("f150w_cat.ecsv"))
    assert len(cat.read_text().splitlines()) > 50


def test_keep_final_deletes_intermediates_and_resume_still_works(visit, killed_then_rerun, tmp_path):
    """KEEP=final: only the last cal of each exposure and the mosaics stay; the rerun has nothing to do.

    Was: every intermediate product kept (the issue's 61 MB of uncal became 932 MB). The rate files of the
    full run are copied in (mtimes kept), so stage 1 is not redone; once stage 3 is done they go too.
    """
    out = tmp_path / "final"
    out.mkdir()
    for p in killed_then_rerun["out"].glob("*_rate.fits"):
        if not p.name.endswith("_1f_rate.fits"):
            shutil.copy2(p, out / p.name)
    args = ["all", f"INPUT={visit['inp']}", f"OUTPUT={out}", f"CONFIG={visit['config']}", "KEEP=final", "-j", "2"]
    make(*args, cwd=tmp_path)
    names = sorted(p.name for p in out.glob("*.fits"))
    assert len([n for n in names if n.endswith("_1f_wisp_bkg_cal.fits")]) == 6
    assert not [n for n in names if n.endswith(("_rate.fits", "_1f_cal.fits", "_1f_wisp_cal.fits"))], names
    listed = (out / "mosaics" / "young-stage3.list").read_text().split()
    assert len(listed) == 6 and all(Path(p).is_file() for p in listed)
    r = make(*args, "-n", cwd=tmp_path)
    assert [ln for ln in r.stdout.splitlines() if "/bin/young-" in ln] == [], r.stdout

    # bytes on disk: a hard link (young-wisp's pass-through) counts once
    unique = {q.stat().st_ino: q for q in killed_then_rerun["out"].rglob("*.fits")}
    full = sum(p.stat().st_size for p in unique.values())
    final = sum(p.stat().st_size for p in out.rglob("*.fits"))
    print(f"disk, 6 tiny exposures: every product {full / 1e6:.0f} MB, KEEP=final {final / 1e6:.0f} MB "
          f"(uncal {sum(p.resolve().stat().st_size for p in visit['inp'].iterdir()) / 1e6:.0f} MB)")
    assert final < 0.5 * full


def test_dry_run_layouts_and_mpi(visit, tmp_path):
    """`make -n` prints the chain and runs nothing, one tool process per step (or per file with BATCH=0);
    LAYOUT=program puts products under jwPPPPP/; MPI=N runs the stage tools under the MPI launcher."""
    out = tmp_path / "dry"
    base = ["all", f"INPUT={visit['inp']}", f"OUTPUT={out}", f"CONFIG={visit['config']}", "-n"]
    r = make(*base, cwd=tmp_path)
    for tool in ("young-refs", "young-stage1", "young-fnoise", "young-stage2", "young-wisp", "young-bkg",
                 "young-stage3"):
        assert tool in r.stdout, tool
    # one process per step (BATCH=1, the default), or per file and step (BATCH=0)
    assert r.stdout.count("young-stage1 ") == 1 and r.stdout.count("young-wisp ") == 1
    assert r.stdout.count("young-stage1 -q --config") == 1 and r.stdout.count("_uncal.fits") >= 6
    r = make(*base, "BATCH=0", cwd=tmp_path)
    assert r.stdout.count("young-stage1 ") == 6 and r.stdout.count("young-wisp ") == 6
    assert not out.exists()
    r = make(*base, "LAYOUT=program", cwd=tmp_path)
    assert f"{out}/jw09001/mosaics/young-stage3.list" in r.stdout
    assert f"-o {out}/jw09001 " in r.stdout
    r = make(*base, "MPI=2", "MPIRUN=srun", cwd=tmp_path)
    assert r.stdout.count("srun -n 2 ") == 3  # stage 1, stage 2 and stage 3 (its groups or tiles), one launch each
    stage3 = next(line for line in r.stdout.splitlines() if "young-stage3" in line)
    assert "srun -n 2 " in stage3 and "--tile-size auto" in r.stdout and "--jobs" not in stage3
    assert "young-fnoise" in r.stdout
    assert not out.exists()


@pytest.mark.parametrize("extra, words", [
    (["SKIP=fnoise bogus"], "unknown step(s) 'bogus'"),
    (["LAYOUT=flat"], "LAYOUT must be"),
    (["OUTPUT=my out"], "OUTPUT has a space"),
    (["BATCH=2"], "BATCH must be"),
])
def test_bad_make_arguments_are_errors(visit, tmp_path, extra, words):
    r = make("all", f"INPUT={visit['inp']}", f"OUTPUT={tmp_path / 'o'}", *extra, cwd=tmp_path, check=False)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.returncode != 0 and words in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_missing_or_empty_input_folder(tmp_path):
    r = make("all", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "give INPUT=dir" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = make("all", f"INPUT={empty}", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "no NIRCam imaging" in r.stderr and str(empty) in r.stderr


def test_one_line_pipe_of_all_tools_over_a_tree(visit, killed_then_rerun):
    """README's `find ... | young-stage1 -o out | young-fnoise | young-stage2 | young-wisp | young-bkg |
    young-stage3` over the folder make filled: with the same config every tool finds its products up to
    date (the pipe and make agree on names and parameters), passes the paths on, and the last one prints
    the mosaics."""
    out = killed_then_rerun["out"]
    bins = Path(sys.executable).parent
    tools = ROOT / "tools"
    py = sys.executable
    pipe = (f"find '{visit['inp']}' -name '*_uncal.fits' | '{py}' '{tools}/young-stage1' -o '{out}' "
            f"| '{py}' '{tools}/young-fnoise' | '{py}' '{tools}/young-stage2' | '{py}' '{tools}/young-wisp' "
            f"| '{py}' '{tools}/young-bkg' | '{py}' '{tools}/young-stage3' -o '{out}/mosaics'")
    env = make_env(YOUNG_CONFIG=str(visit["config"]), PATH=f"{bins}{os.pathsep}{os.environ.get('PATH', '')}")
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.fits")}
    r = subprocess.run(["bash", "-o", "pipefail", "-c", pipe], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = sorted(Path(p).name for p in r.stdout.split())
    made = (out / "mosaics" / "young-stage3.list").read_text().split()
    assert len(listed) == 6 and listed == sorted(Path(p).name for p in made)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.fits")} == before  # nothing redone
