"""`make all` on a MAST download tree (issue 16): ``young-sim --preset mast`` writes two overlapping programs
(9001 on module A, 9002 on module B, F150W + F444W, two dithers each, SUB640) nested one folder per exposure
in a portal-style and an astroquery-style download, with a target acquisition, a WFSS, a coronagraphic and
a time-series NIRCam exposure, a MIRI parallel, and one exposure downloaded twice.

Through the real jwst pipeline: LAYOUT=program (one mosaic set per PROGRAM), LAYOUT=combined NAME=field
(both programs on one grid), the dry run and the rerun; then a tree of `_cal.fits` only, laid out as the
two downloads, with LAYOUT=directory (one set per top folder, stages 1-2 never run).  ~5 min at -j 2.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from astropy.io import fits
from test_make import make

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SKIPPED_TYPES = {"NRC_TACQ", "NRC_WFSS", "NRC_CORON", "NRC_TSIMAGE", "MIR_IMAGE"}
FILTERS = ("f150w", "f444w")


@pytest.fixture(scope="module")
def mast(tmp_path_factory) -> Path:
    from young.sim.simulate import simulate

    root = tmp_path_factory.mktemp("mast") / "set"
    simulate(root, "mast", seed=1, force=True)
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tools_run(stdout: str) -> list[str]:
    return re.findall(r"young-(stage1|fnoise|stage2|wisp|bkg|stage3|refs)\b", stdout)


def mosaics(tree: Path) -> dict[str, Path]:
    return {f: next((tree / "mosaics" / f).glob("*_i2d.fits")) for f in FILTERS}


def check_report(stderr: str, mast: Path) -> None:
    """Every file that is not NIRCam imaging listed once with its type; the duplicate once, both paths named."""
    skipped = [ln for ln in stderr.splitlines() if "skipped (not NIRCam imaging)" in ln]
    assert sorted(ln.rsplit(": ", 1)[1] for ln in skipped) == sorted(SKIPPED_TYPES), skipped
    dup = [ln for ln in stderr.splitlines() if "duplicate:" in ln]
    assert len(dup) == 1 and "MAST_2026-12-01T0930" in dup[0] and "MAST_2026-12-03T1412" in dup[0], dup


@pytest.fixture(scope="module")
def by_program(mast, tmp_path_factory):
    work = tmp_path_factory.mktemp("prog")
    before = snapshot(mast / "raw")
    dry = make("-n", "all", f"INPUT={mast / 'raw'}", f"OUTPUT={work / 'out'}", f"CONFIG={mast / 'young.yaml'}",
               "LAYOUT=program", cwd=work)
    assert not (work / "out").exists(), "make -n created the output tree"
    r = make("-j", "2", "all", f"INPUT={mast / 'raw'}", f"OUTPUT={work / 'out'}", f"CONFIG={mast / 'young.yaml'}",
             "LAYOUT=program", "JOBS=2", cwd=work)
    again = make("all", f"INPUT={mast / 'raw'}", f"OUTPUT={work / 'out'}", f"CONFIG={mast / 'young.yaml'}",
                 "LAYOUT=program", cwd=work)
    return dict(out=work / "out", dry=dry, run=r, again=again, before=before, after=snapshot(mast / "raw"))


def test_program_layout_one_mosaic_set_per_program(by_program, mast):
    out = by_program["out"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["jw09001", "jw09002"]
    for prog in ("jw09001", "jw09002"):
        found = mosaics(out / prog)
        for f, i2d in found.items():
            assert i2d.name == f"{prog}_nircam_{f}_i2d.fits"
            assert fits.getheader(i2d)["PROGRAM"] == prog[2:]
        # the 4 imaging exposures of the program, processed once (the duplicate too) and nothing else
        assert len(list((out / prog).glob("*_1f_wisp_bkg_cal.fits"))) == 4
    # stage 1 once per tree (a batch) on the 8 imaging exposures: the duplicate once, the other types never
    s1 = [ln for ln in by_program["run"].stdout.splitlines() if "bin/young-stage1 " in ln]
    assert len(s1) == 2 and sum(ln.count("_uncal.fits") for ln in s1) == 8, s1
    assert not any("MAST_2026-12-03T1412" in ln for ln in s1)
    assert not list(out.rglob("*mirimage*")) and not list(out.rglob("jw0900?002*"))
    check_report(by_program["run"].stderr, mast)
    assert by_program["before"] == by_program["after"], "the input tree changed"


def test_dry_run_prints_the_plan_and_rerun_does_nothing(by_program):
    dry = by_program["dry"].stdout
    assert dry.count("bin/young-stage1 ") == 2 and dry.count("bin/young-stage3 ") == 2   # one per tree
    assert tools_run(by_program["again"].stdout) == [], by_program["again"].stdout


def test_combined_layout_puts_both_programs_on_one_grid(mast, tmp_path):
    r = make("-j", "2", "all", f"INPUT={mast / 'raw'}", f"OUTPUT={tmp_path / 'out'}", f"CONFIG={mast / 'young.yaml'}",
             "LAYOUT=combined", "NAME=field", "JOBS=2", cwd=tmp_path)
    check_report(r.stderr, mast)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == ["field"]
    found = mosaics(tmp_path / "out" / "field")
    shapes = set()
    for f, i2d in found.items():
        assert i2d.name == f"jwmulti_nircam_{f}_i2d.fits"
        asn = json.loads(next(i2d.parent.glob("*_asn.json")).read_text())
        members = [m["expname"] for p in asn["products"] for m in p["members"]]
        assert {Path(m).name[:7] for m in members} == {"jw09001", "jw09002"}, members
        with fits.open(i2d) as h:
            shapes.add(h["SCI"].data.shape)
    assert len(shapes) == 1


def test_cal_only_tree_by_directory_runs_no_stage_1_or_2(by_program, mast, tmp_path):
    """The program run's 1/f-corrected cal files, renamed as MAST's *_cal.fits, in the two downloads' folders."""
    tops = {"jw09001": "MAST_2026-12-01T0930", "jw09002": "mastDownload"}
    src = tmp_path / "cals"
    for prog, top in tops.items():
        for cal in sorted((by_program["out"] / prog).glob("*_1f_cal.fits")):
            base = cal.name[: -len("_1f_cal.fits")]
            dst = src / top / "JWST" / base / f"{base}_cal.fits"
            dst.parent.mkdir(parents=True)
            shutil.copyfile(cal, dst)
    before = snapshot(src)
    r = make("-j", "2", "all", f"INPUT={src}", f"OUTPUT={tmp_path / 'out'}", f"CONFIG={mast / 'young.yaml'}",
             "LAYOUT=directory", "JOBS=2", cwd=tmp_path)
    assert set(tools_run(r.stdout)) == {"refs", "wisp", "bkg", "stage3"}, r.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(tops.values())
    for prog, top in tops.items():
        assert set(mosaics(out / top)) == set(FILTERS)
        assert not list((out / top).glob("*_rate.fits"))
        # the chain's names from a cal: X_cal (the input, linked) -> X_wisp_cal -> X_wisp_bkg_cal
        assert len(list((out / top).glob(f"{prog}*_wisp_bkg_cal.fits"))) == 4
    assert snapshot(src) == before, "the input tree changed"
