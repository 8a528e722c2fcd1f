"""Input trees as MAST delivers them (issue 16), on header-only files: discovery, selection, duplicates,
starting points, layouts, the Makefile's plan and the seed's config keys.  The whole chain on a simulated
MAST tree is tests/test_mast_tree.py."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from young.contract import inputs, makeplan, tree
from young.contract.errors import InputError, UsageError


def fake(path: Path, exp_type: str = "NRC_IMAGE", instrument: str = "NIRCAM", program: str = "01345",
         date: str = "2026-12-01T00:00:00", fill: float = 0.0) -> Path:
    """A small FITS file with the headers discovery reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = fits.Header()
    h["TELESCOP"], h["INSTRUME"], h["EXP_TYPE"], h["PROGRAM"], h["DATE"] = "JWST", instrument, exp_type, program, date
    fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(np.full((4, 4), fill, np.float32), name="SCI")]
                 ).writeto(path)
    return path


def exp(base: str, suffix: str = "uncal") -> str:
    return f"{base}/{base}_{suffix}.fits"


A1 = "jw01345001001_02101_00001_nrca1"
ALONG = "jw01345001001_02101_00001_nrcalong"
B4 = "jw02736001001_02101_00001_nrcb4"


@pytest.fixture
def download(tmp_path) -> Path:
    """Two downloads (portal and astroquery style), non-imaging files, a duplicate and hidden clutter."""
    root = tmp_path / "data"
    fake(root / "MAST_2026-12-01T0930/JWST" / exp(A1))
    fake(root / "MAST_2026-12-01T0930/JWST" / exp(ALONG))
    fake(root / "MAST_2026-12-01T0930/JWST" / exp(ALONG, "rate"))       # MAST's own rate beside the ramps
    fake(root / "MAST_2026-12-01T0930/JWST" / exp("jw01345002001_03101_00001_nrca3"), "NRC_TACQ")
    fake(root / "mastDownload/JWST" / exp(B4, "cal"), program="02736")
    fake(root / "mastDownload/JWST" / exp("jw02736002001_03101_00001_mirimage"), "MIR_IMAGE", "MIRI", "02736")
    fake(root / "MAST_2026-12-03T1412/JWST" / exp(A1))                  # the same file downloaded again
    fake(root / ".hidden/JWST" / exp("jw01345001001_02101_00002_nrca1"))
    (root / "mastDownload/JWST/notes.txt").write_text("not FITS, not a product name")
    return root


def test_discovery_selection_duplicates(download):
    s = tree.survey(download)
    names = [f.path.name for f in s.found]
    assert names == [f"{A1}_uncal.fits", f"{ALONG}_uncal.fits", f"{ALONG}_rate.fits", f"{B4}_cal.fits"]
    assert sorted(t for _, t in s.skipped) == ["MIR_IMAGE", "NRC_TACQ"]
    assert len(s.duplicates) == 1
    used, dropped, why = s.duplicates[0]
    assert "MAST_2026-12-01T0930" in str(used) and "MAST_2026-12-03T1412" in str(dropped) and why == "identical"
    lines = s.messages()
    assert len(lines) == 3 and sum("skipped" in x for x in lines) == 2
    assert str(used) in lines[-1] and str(dropped) in lines[-1]
    assert not any(".hidden" in str(f.path) for f in s.found)


def test_differing_duplicates_keep_the_newer(tmp_path):
    old = fake(tmp_path / "a/JWST" / exp(A1), date="2026-01-01T00:00:00")
    new = fake(tmp_path / "b/JWST" / exp(A1), date="2026-06-01T00:00:00", fill=1.0)
    s = tree.survey(tmp_path)
    assert [f.path for f in s.found] == [new]
    assert s.duplicates[0][:2] == (new, old) and "newer" in s.duplicates[0][2]


def test_dir_prefix_and_starting_points(download):
    s = tree.survey(download, dir_prefix="MAST_")
    assert {f.top for f in s.found} == {"MAST_2026-12-01T0930"}
    earliest = tree.starts(tree.survey(download).found)
    assert [(f.name.base, f.name.suffix) for f in earliest] == [(A1, "uncal"), (ALONG, "uncal"), (B4, "cal")]
    later = tree.starts(tree.survey(download).found, "rate")
    assert [(f.name.base, f.name.suffix) for f in later] == [(ALONG, "rate"), (B4, "cal")]
    with pytest.raises(UsageError, match="START"):
        tree.starts([], "ramp")


def test_layouts_from_headers_and_folders(download):
    found = {f.name.base: f for f in tree.starts(tree.survey(download).found)}
    assert tree.group_of(found[B4], "program") == "jw02736"          # from PROGRAM, not the name
    assert tree.group_of(found[A1], "directory") == "MAST_2026-12-01T0930"
    assert tree.group_of(found[A1], "combined", "field") == "field"
    assert tree.group_of(found[A1], "combined") == ""


def test_damaged_file_is_named_before_any_work(tmp_path):
    p = fake(tmp_path / "d/JWST" / exp(A1))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 2000])
    with pytest.raises(InputError) as err:
        tree.survey(tmp_path)
    assert str(p) in err.value.line()


def plan_args(**kw) -> argparse.Namespace:
    base = dict(input=None, output=None, layout=None, name=None, dir_prefix=None, start=None, skip="", config=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_makeplan_names_every_product_per_starting_point(download, tmp_path):
    s = makeplan.settings(plan_args(input=str(download), output=str(tmp_path / "out"), layout="program"))
    chains, _ = makeplan.plan(s)
    by = {c.base: c for c in chains}
    o = tmp_path / "out"
    assert by[A1].first == o / "jw01345" / f"{A1}_rate.fits" and by[A1].level == "uncal"
    assert by[A1].bcal.name == f"{A1}_1f_wisp_bkg_cal.fits"
    assert by[B4].level == "cal" and by[B4].first == o / "jw02736" / f"{B4}_cal.fits" and by[B4].frate is None
    assert by[B4].bcal.name == f"{B4}_wisp_bkg_cal.fits"                  # no 1/f tag: it started at cal
    text = "\n".join(makeplan.assignments(s, chains))
    assert f"{by[B4].src}|{by[B4].first}" in text                             # linked into its tree
    assert f"Y_PARTNERS := {by[A1].wcal}|{by[ALONG].cal}" in text            # SW wisp waits for its LW partner
    skipped = makeplan.settings(plan_args(input=str(download), output=str(o), skip="fnoise wisp"))
    chains, _ = makeplan.plan(skipped)
    assert {c.bcal.name for c in chains} == {f"{A1}_bkg_cal.fits", f"{ALONG}_bkg_cal.fits", f"{B4}_bkg_cal.fits"}
    assert "Y_PARTNERS := \n" in "\n".join(makeplan.assignments(skipped, chains)) + "\n"


def test_makeplan_settings_take_the_seed_keys(tmp_path, download):
    cfg = tmp_path / "young.yaml"
    cfg.write_text(f"data_directory: {download}\noutput_directory: out\ncombine_observations: true\n"
                   "custom_name: field\ndir_prefix: MAST_\n")
    s = makeplan.settings(plan_args(config=str(cfg)))
    assert (s.input, s.layout, s.name, s.dir_prefix) == (download, "combined", "field", "MAST_")
    assert s.output == tmp_path / "out"                                      # relative to the config file
    cfg.write_text(f"data_directory: {download}\ngroup_by_directory: true\n")
    assert makeplan.settings(plan_args(config=str(cfg))).layout == "directory"
    cfg.write_text(f"data_directory: {download}\ncombine_observations: false\n")
    assert makeplan.settings(plan_args(config=str(cfg))).layout == "program"
    # the make variables win over the file
    assert makeplan.settings(plan_args(config=str(cfg), layout="combined")).layout == "combined"


@pytest.mark.parametrize("kw, words", [
    (dict(layout="flat"), "LAYOUT must be"),
    (dict(name="a/b"), "NAME must be a plain folder name"),
    (dict(start="ramp"), "START must be one of"),
])
def test_makeplan_bad_settings(download, kw, words):
    with pytest.raises(UsageError, match=words):
        makeplan.settings(plan_args(input=str(download), **kw))


def test_makeplan_main_prints_one_error_line(tmp_path, capsys):
    assert makeplan.main(["--input", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Y_ERROR := make all: ") and "no such folder" in out and "\n" not in out


def test_tools_search_folders_recursively_unless_told(download):
    warned: list[str] = []
    found = inputs.expand_directory(download, ("uncal",), warn=warned.append)
    assert [p.name for p in found] == [f"{A1}_uncal.fits", f"{ALONG}_uncal.fits"]
    assert sum("skipped (not NIRCam imaging)" in w for w in warned) == 2
    assert sum("the same file name" in w for w in warned) == 1
    assert inputs.expand_directory(download, ("uncal",), recursive=False) == []
    flat = download / "MAST_2026-12-01T0930/JWST" / A1
    assert inputs.expand_directory(flat, ("uncal",), recursive=False) == [flat / f"{A1}_uncal.fits"]


def test_output_inside_the_input_is_not_searched(download):
    out = download / "young-out"
    fake(out / f"{A1}_rate.fits")   # a product of an earlier run, stage 1's name
    s = tree.survey(download, exclude=[out])
    assert not any(str(out) in str(f.path) for f in s.found)
    assert os.path.exists(out)
