from pathlib import Path

import pytest
from young.contract import naming

BASE = "jw01345001001_02101_00001_nrca3"


@pytest.mark.parametrize(
    "src, kw, expected",
    [
        (f"{BASE}_uncal.fits", dict(suffix="rate"), f"{BASE}_rate.fits"),
        (f"{BASE}_rate.fits", dict(tag="1f"), f"{BASE}_1f_rate.fits"),
        (f"{BASE}_1f_rate.fits", dict(suffix="cal"), f"{BASE}_1f_cal.fits"),
        (f"{BASE}_1f_cal.fits", dict(tag="wisp"), f"{BASE}_1f_wisp_cal.fits"),
        (f"{BASE}_1f_wisp_cal.fits", dict(tag="bkg"), f"{BASE}_1f_wisp_bkg_cal.fits"),
        (f"{BASE}_cal.fits", dict(tag="1f"), f"{BASE}_1f_cal.fits"),
    ],
)
def test_design_names(src, kw, expected):
    assert naming.product_path(Path("/d") / src, **kw) == Path("/d") / expected


def test_output_dir_and_log():
    p = naming.product_path(f"/in/{BASE}_rate.fits", tag="1f", output_dir="/out")
    assert p == Path(f"/out/{BASE}_1f_rate.fits")
    assert naming.log_path(p) == Path(f"/out/{BASE}_1f_rate.log")


def test_parse_tags_and_depth():
    pn = naming.parse(f"{BASE}_1f_wisp_cal.fits")
    assert (pn.base, pn.tags, pn.suffix) == (BASE, ("1f", "wisp"), "cal")
    assert naming.depth(f"{BASE}_1f_wisp_cal.fits") > naming.depth(f"{BASE}_1f_cal.fits")
    assert naming.depth(f"{BASE}_cal.fits") > naming.depth(f"{BASE}_1f_rate.fits")


@pytest.mark.parametrize("bad", ["image.fits", "notes.txt", f"{BASE}_foo.fits"])
def test_parse_rejects_non_products(bad):
    with pytest.raises(ValueError, match="not a JWST product name"):
        naming.parse(bad)
