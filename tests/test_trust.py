"""A contract users can trust: every point a new user hit on the tiny set, the failing command first.

Resume knows the calibration (parameters, algorithm version, jwst version, the CRDS context resolved
to its ``.pmap``); a context or reference missing from a cache-only set-up stops the run before any
work (exit 2, one line naming it and the cache); typos anywhere in the config, in ``--set`` and on the
command line are one line and exit 2 before work; ``--help`` is plain text with examples;
``--version`` shows the context a run would use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chain_fixtures import run_tool
from helpers import tool_env

FILE_TOOLS = ("young-stage1", "young-fnoise", "young-stage2", "young-wisp", "young-bkg", "young-stage3",
              "young-refs")
ALL_TOOLS = FILE_TOOLS + ("young-sim",)


def _config(tmp_path: Path, tiny_set, extra: str = "", cache: Path | None = None, name="young.yaml") -> Path:
    cfg = tmp_path / name
    cfg.write_text(f"crds_path: {cache or tiny_set.crds_path}\ncrds_context: jwst_9001.pmap\n"
                   "crds_server_url: https://jwst-serverless-mode.stsci.edu\n"
                   f"wisp_directory: {tiny_set.wisp_dir}\n" + extra)
    return cfg


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _new_context(cache: Path, name: str = "jwst_9002.pmap") -> None:
    """A second context in ``cache``: the same rules under a new name (checksum updated as CRDS requires)."""
    from crds.refactoring import checksum

    maps = cache / "mappings" / "jwst"
    text = (maps / "jwst_9001.pmap").read_text().replace("jwst_9001.pmap", name)
    (maps / name).write_text(text)
    checksum.update_checksum(str(maps / name))


@pytest.fixture
def rate(tmp_path, tiny_rates) -> Path:
    """One tiny rate file of its own (products land beside it)."""
    src = next(p for p in tiny_rates if "nrca3" in p.name)
    dst = tmp_path / "in" / src.name
    dst.parent.mkdir()
    shutil.copy2(src, dst)
    return dst


def test_resume_knows_the_calibration(tmp_path, tiny_set, rate):
    """Was: `young-stage2 --crds-context jwst_9999.pmap X` said "1 up to date" (exit 0)."""
    from astropy.io import fits

    cache = tmp_path / "cache"
    shutil.copytree(tiny_set.crds_path, cache)
    cfg = _config(tmp_path, tiny_set, cache=cache)
    first = run_tool("young-stage2", "-c", cfg, "-v", rate)
    cal = Path(first.stdout.strip())
    made = cal.stat().st_mtime_ns
    again = run_tool("young-stage2", "-c", cfg, rate)
    assert "0 done, 1 up to date" in again.stderr

    r = run_tool("young-stage2", "-c", cfg, "--crds-context", "jwst_9999.pmap", rate, check=False)
    assert r.returncode == 2 and r.stdout == ""
    line = _one_line(r.stderr)
    assert "jwst_9999.pmap" in line and str(cache) in line and "not in the cache" in line, line
    r = run_tool("young-stage2", "-c", cfg, "--crds-context", "jwst_9999.pmap", "--force", rate, check=False)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert cal.stat().st_mtime_ns == made

    _new_context(cache)
    r = run_tool("young-stage2", "-c", cfg, "--crds-context", "jwst_9002.pmap", rate)
    assert "1 done, 0 up to date" in r.stderr, r.stderr
    assert fits.getval(cal, "YNGCRDS") == "jwst_9002.pmap" and fits.getval(cal, "CRDS_CTX") == "jwst_9002.pmap"
    log = cal.with_name(cal.name.replace(".fits", ".log")).read_text()
    assert "made because: CRDS context jwst_9001.pmap -> jwst_9002.pmap" in log

    # a product of another jwst (or another algorithm version) is redone too
    fits.setval(cal, "YNGJWST", value="1.0.0")
    r = run_tool("young-stage2", "-c", cfg, "--crds-context", "jwst_9002.pmap", rate)
    assert "1 done" in r.stderr
    assert "made because: jwst version 1.0.0 ->" in cal.with_name(cal.name.replace(".fits", ".log")).read_text()
    assert fits.getval(cal, "YNGALGO") == "1"


def test_references_crds_selects_now_are_compared(tmp_path, tiny_set, tiny_cals, tiny_rates, monkeypatch):
    """Where the context is not known by name, resume compares the product's references with CRDS's choice."""
    from astropy.io import fits
    from young.contract import crdsenv

    for k, v in tiny_set.crds_env().items():
        monkeypatch.setenv(k, v)
    i = next(i for i, p in enumerate(tiny_rates) if "nrca3" in p.name)
    assert crdsenv.changed_references(tiny_rates[i], tiny_cals[i], "jwst_9001.pmap") == []
    alt = tmp_path / tiny_cals[i].name
    shutil.copy2(tiny_cals[i], alt)
    old = fits.getval(alt, "R_PHOTOM").rsplit("/", 1)[-1]
    fits.setval(alt, "R_PHOTOM", value="crds://jwst_nircam_photom_0001.fits")
    assert crdsenv.changed_references(tiny_rates[i], alt, "jwst_9001.pmap") == [
        f"photom: jwst_nircam_photom_0001.fits -> {old}"]


def test_a_reference_missing_from_the_cache_stops_before_work(tmp_path, tiny_set, rate):
    """Was: every file failed at run time (exit 1) with jwst's tracebacks on stderr."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_set.crds_path, cache)
    for f in (cache / "references" / "jwst" / "nircam").glob("jwst_nircam_photom_*"):
        f.unlink()
    cfg = _config(tmp_path, tiny_set, cache=cache)
    out = tmp_path / "out"
    for jobs in ("1", "2"):
        r = run_tool("young-stage2", "-c", cfg, "-o", out, "-j", jobs, "--force", rate, check=False)
        assert r.returncode == 2 and r.stdout == ""
        line = _one_line(r.stderr)
        assert "photom (jwst_nircam_photom_9001.fits)" in line and str(cache) in line and "1 of 1" in line, line
        assert not out.exists() or not any(out.iterdir())


def test_config_typos_at_every_level_stop_every_tool(tmp_path, tiny_set, rate):
    """Was: misspelled keys inside a section were ignored; `bkg: {mode: 3d}` was reported as --mode."""
    typo = _config(tmp_path, tiny_set, "fnoise: {mask_tresh: 0.5, metod: gradient}\n", name="typo.yaml")
    top = _config(tmp_path, tiny_set, "wisp_dir: /somewhere\n", name="top.yaml")
    for tool in FILE_TOOLS:
        r = run_tool(tool, "-c", typo, rate, check=False)
        assert r.returncode == 2, (tool, r.stderr)
        assert _one_line(r.stderr) == f"{tool}: {typo}: fnoise: unknown key 'mask_tresh' (did you mean mask_thresh?)"
        r = run_tool(tool, "-c", top, rate, check=False)
        assert r.returncode == 2
        assert _one_line(r.stderr) == f"{tool}: {top}: unknown key 'wisp_dir' (did you mean wisp_directory?)"
    bad = _config(tmp_path, tiny_set, "bkg: {mode: 3d}\n", name="bad.yaml")
    r = run_tool("young-bkg", "-c", bad, rate, check=False)
    assert r.returncode == 2
    assert _one_line(r.stderr) == f"young-bkg: {bad}: bkg.mode: use one of pedestal, 2d, not '3d'"
    assert not list(rate.parent.glob("*_bkg_*")) and len(list(rate.parent.iterdir())) == 1


@pytest.mark.parametrize("tool, setting, expected", [
    ("young-stage1", "jump.rejection_treshold=5", "jump: no parameter 'rejection_treshold' "
                                                  "(did you mean rejection_threshold?)"),
    ("young-stage2", "flat_feild.skip=true", "Image2Pipeline: no step 'flat_feild' (did you mean flat_field?)"),
    ("young-stage2", "flat_field.skip=maybe", "flat_field: Config parameter 'skip': the value \"maybe\" is of "
                                              "the wrong type"),
    ("young-wisp", "foo.bar=1", "young-wisp runs no jwst step (got foo.bar)"),
    ("young-bkg", "x.y=1", "young-bkg runs no jwst step (got x.y)"),
])
def test_step_parameters_are_checked_before_any_work(tmp_path, tiny_set, rate, tool, setting, expected):
    """Was: a wrong jwst parameter failed every file at run time; --set on young-wisp/young-bkg exited 0."""
    r = run_tool(tool, "-c", _config(tmp_path, tiny_set), "-o", tmp_path / "out", "--set", setting, rate,
                 check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert expected in _one_line(r.stderr)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_a_bad_option_is_one_line(tool):
    """Was: a multi-line box in seven tools."""
    for args, what in ((["--bogus"], "--bogus: no such option"), (["--jobs", "zero"], "--jobs:")):
        if tool == "young-sim" and args[0] == "--jobs":
            args, what = ["x", "--seed", "zero"], "--seed:"
        r = run_tool(tool, *args, check=False)
        assert r.returncode == 2
        line = _one_line(r.stderr)
        assert line.startswith(f"{tool}: {what}") and line.endswith("(see --help)"), line


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_help_is_plain_with_examples(tool):
    """Was: `<bool>` after flags, `<int>` after -v, boxes, "the seed's" jargon, no examples."""
    r = run_tool(tool, "--help")
    text = r.stdout
    for junk in ("<bool>", "<int>", "<str>", "<list", "╭", "seed's", "baseline"):
        assert junk not in text, (tool, junk)
    assert "Examples:" in text and text.count(tool.split()[0]) >= 2
    for other in ("--qa", "--templates "):
        assert other not in text


def test_one_name_per_idea_across_tools():
    texts = {t: run_tool(t, "--help").stdout for t in ("young-fnoise", "young-wisp", "young-stage3")}
    assert "--wisp-templates" in texts["young-fnoise"] and "--wisp-templates" in texts["young-wisp"]
    assert all("--plot" in t for t in texts.values())


def test_version_shows_the_context_in_force(tmp_path, tiny_set):
    """Was: "CRDS context default" even with the context pinned."""
    cfg = _config(tmp_path, tiny_set)
    env = tool_env()
    for k in ("CRDS_CONTEXT", "CRDS_PATH"):
        env.pop(k, None)
    r = run_tool("young-stage2", "--version", "-c", cfg, env=env)
    assert r.stdout.strip().endswith(f"CRDS context jwst_9001.pmap (config {cfg}))")
    r = run_tool("young-stage2", "--version", "--crds-context", "jwst_1322.pmap", env=env)
    assert r.stdout.strip().endswith("CRDS context jwst_1322.pmap (--crds-context))")
    r = run_tool("young-fnoise", "--version", env={**env, "CRDS_CONTEXT": "jwst_1400.pmap"})
    assert r.stdout.strip().endswith("CRDS context jwst_1400.pmap ($CRDS_CONTEXT))")
    r = run_tool("young-fnoise", "--version", env={**env, "CRDS_PATH": str(tiny_set.crds_path)})
    assert r.stdout.strip().endswith("CRDS context jwst_9001.pmap (the context the cache records))")


def test_a_file_of_the_wrong_level_is_named(tmp_path, tiny_set, rate):
    r = run_tool("young-stage1", "-c", _config(tmp_path, tiny_set), rate, check=False)
    assert r.returncode == 1
    assert f"{rate}: wrong product level: this is a rate product, young-stage1 reads *_uncal.fits" in r.stderr
