"""Reliability across the tools (issue 8): bad input of every class gets one line naming the file and
the problem, the right exit status, no partial product, and the other inputs are still processed;
inputs are byte-identical afterwards."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from astropy.io import fits
from chain_fixtures import run_tool
from helpers import unwritable_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _copy(src: Path, dst: Path, **cards) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    if cards:
        with fits.open(dst, mode="update") as h:
            for k, v in cards.items():
                h[0].header[k] = v
    return dst


def _bad_inputs(good: Path, wrong_level: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """Every class of bad input, named like the tool's own inputs, with the words its error must contain."""
    def name(i):  # another exposure number, same detector, tags and suffix
        parts = good.name.split("_")
        parts[2] = f"{i:05d}"
        return "_".join(parts)

    bad = tmp / "bad"
    bad.mkdir()
    empty = bad / name(61)
    empty.write_bytes(b"")
    notfits = bad / name(62)
    notfits.write_text("this is a text file, not FITS\n")
    trunc = bad / name(63)
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    miri = _copy(good, bad / name(64), INSTRUME="MIRI", EXP_TYPE="MIR_IMAGE")
    level = _copy(wrong_level, bad / name(65))
    return {
        "empty file": (empty, "empty file"),
        "not FITS": (notfits, "not a FITS file"),
        "truncated FITS": (trunc, "truncated"),
        "MIRI file": (miri, "not NIRCam"),
        "wrong product level": (level, "wrong product level"),
        "missing file": (bad / name(66), "no such file"),
    }


CASES = {
    # tool: (good input, input of the wrong level, extra options)
    "young-stage1": (lambda s, r, c: Path(s.uncal[0]), lambda s, r, c: r[0], []),
    "young-fnoise": (lambda s, r, c: r[0], lambda s, r, c: Path(s.uncal[0]), []),
    "young-stage2": (lambda s, r, c: r[0], lambda s, r, c: c[0], []),
    "young-bkg": (lambda s, r, c: c[0], lambda s, r, c: r[0], []),
    "young-wisp": (lambda s, r, c: c[0], lambda s, r, c: Path(s.uncal[0]), []),
}


@pytest.mark.parametrize("tool", list(CASES))
def test_bad_inputs_across_tools(tool, tiny_set, tiny_rates, tiny_cals, tmp_path):
    good_of, wrong_of, extra = CASES[tool]
    good = good_of(tiny_set, tiny_rates, tiny_cals)
    spaced = _copy(good, tmp_path / "with spaces" / good.name)
    if tool == "young-wisp":  # the LW partner travels with it
        lw = next(c for c in tiny_cals if "long" in c.name and c.name.split("_")[2] == good.name.split("_")[2]
                  and c.name.split("_")[1] == good.name.split("_")[1])
        _copy(lw, spaced.parent / lw.name)
    bad = _bad_inputs(good, wrong_of(tiny_set, tiny_rates, tiny_cals), tmp_path)
    args = [spaced, spaced, *[p for p, _ in bad.values()]]
    before = {p: sha(p) for p in (spaced, good)}
    out = tmp_path / "out"
    r = run_tool(tool, "--config", tiny_set.config, "-o", out, *extra, *args, check=False)
    assert r.returncode == 1, r.stderr
    # the good input (given twice, with spaces in its path) is processed once
    produced = [Path(p) for p in r.stdout.split()]
    assert len(produced) == 1 and produced[0].parent == out and produced[0].exists(), r.stdout + r.stderr
    assert sum("listed more than once" in ln for ln in r.stderr.splitlines()) == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{tool}: /")]
    assert len(errors) == len(bad), r.stderr
    for what, (path, words) in bad.items():
        assert sum(str(path) in ln and words in ln for ln in errors) == 1, (what, r.stderr)
    assert "Traceback" not in r.stderr
    # no partial products, no leftovers, inputs byte-identical
    # (stage 1 drops jwst's per-integration X_rateints.fits: it is kept only with --rateints)
    assert {p.name for p in out.iterdir() if p.suffix == ".fits"} == {produced[0].name}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert {p: sha(p) for p in before} == before


@pytest.mark.parametrize("tool", list(CASES))
def test_readonly_output_and_empty_directory(tool, tiny_set, tiny_rates, tiny_cals, tmp_path):
    good = CASES[tool][0](tiny_set, tiny_rates, tiny_cals)
    r = run_tool(tool, "--config", tiny_set.config, "-o", unwritable_dir(tmp_path), good, check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert any(str(good) in ln and "cannot write" in ln for ln in r.stderr.splitlines()), r.stderr
    empty = tmp_path / "nothing here"
    empty.mkdir()
    r = run_tool(tool, "--config", tiny_set.config, empty, check=False)
    assert r.returncode == 1 and str(empty) in r.stderr and "no *_" in r.stderr, r.stderr


@pytest.mark.parametrize("tool", list(CASES))
def test_no_input_is_usage_error(tool, tiny_set):
    r = run_tool(tool, "--config", tiny_set.config, stdin="", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no inputs" in r.stderr
