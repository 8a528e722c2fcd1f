"""One group of stage 3: jwst's Image3Pipeline on one filter, in the runner's work folder, its products finished.

A group is a task of the tool contract (:mod:`young.contract.runner`): the
runner checks resume, gives the run a hidden work folder inside
``OUT/<name>/``, keeps its log, stamps the mosaic and moves the products
into place when everything succeeded (the mosaic last).  :func:`process`
runs the pipeline there and finishes the products: the grid check of a
member group, the reference group's grid and catalog, extracted images, QA.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from young.contract import provenance
from young.contract.config import nest_steps
from young.contract.errors import InputError
from young.contract.records import Job, Made, Task, ToolSpec
from young.stage3 import alignment, qa
from young.stage3.exposures import Group, write_association
from young.stage3.grid import check_same_grid, grid_of, save_grid
from young.stage3.params import EXTRACTS, GRID_PARAMETERS
from young.stage3.refcat import RefcatSpec, at_coverage_edge, positions_digest, read_table, select_reference_sources

TOOL = "young-stage3"
log = logging.getLogger("young.stage3")

#: keys of :func:`product_paths` printed on stdout
PRINTED = ("i2d", "segm", "cat") + EXTRACTS

STAGE3 = ToolSpec(name=TOOL, section="stage3", consumes=("cal",), product=None,
                  process="young.stage3.group:process", uses_crds=True, runs_jwst_steps=True,
                  config_sections="young.steps.specs:section_params")


@dataclass(frozen=True)
class GroupRun:
    """What one group's run needs (picklable; sent to the worker with its task).

    Attributes
    ----------
    group : Group
        Its cal files, filter and product stem.
    out_dir : str
        The output folder (the group writes ``out_dir/<name>/``).
    steps : dict
        Image3 step parameters (``{'tweakreg.snr_threshold': 10}``).
    role : str
        ``'reference'`` (fixes the grid, its catalog aligns the others) or ``'member'``.
    in_memory : bool
        jwst's ``in_memory`` (False: the on-disk mode, to stay in the memory budget).
    extract : list of str
        i2d extensions also written as single images.
    qa : bool
        Write the QA plots.
    refcat : RefcatSpec
        What the group aligns to absolutely (kind ``none``: internally only).
    reference_name, grid_file, grid_digest : str
        Members: the reference group, its grid ASDF and the grid's hash.
    """

    group: Group
    out_dir: str
    steps: dict
    role: str
    in_memory: bool
    extract: list
    qa: bool
    refcat: RefcatSpec
    reference_name: str = ""
    grid_file: str = ""
    grid_digest: str = ""


def folder(run) -> Path:
    """``OUT/<name>/`` of a group's run (untiled or tiled)."""
    return Path(run.out_dir) / run.group.name


def product_paths(run: GroupRun) -> dict[str, Path]:
    """Final paths of a group's files (products, log, association, QA, the reference's grid and catalog)."""
    d, stem = folder(run), run.group.product
    paths = {"i2d": d / f"{stem}_i2d.fits", "segm": d / f"{stem}_segm.fits", "cat": d / f"{stem}_cat.ecsv"}
    for ext in run.extract:
        paths[ext] = d / f"{stem}_{ext}.fits"
    paths["asn"] = d / f"{stem}_asn.json"
    paths["log"] = d / f"{stem}.log"
    if run.qa:
        paths["qa_align"] = d / f"{stem}_align.png"
        paths["qa_preview"] = d / f"{stem}_preview.png"
    if run.role == "reference":
        paths["grid"] = d / f"{stem}_grid.asdf"
        paths["refcat"] = d / f"{stem}_refcat.ecsv"
    return paths


def run_parameters(run) -> dict[str, Any]:
    """What shapes every product of a group's run, untiled (:class:`GroupRun`) or tiled
    (:class:`young.stage3.tiled.TiledRun`): steps, role, members, reference catalog and grid."""
    return {
        "steps": run.steps,
        "role": run.role,
        "members": sorted(str(Path(m).resolve()) for m in run.group.members),
        "refcat": {"kind": run.refcat.kind, "digest": run.refcat.digest} if run.refcat.kind != "none" else None,
        "reference": run.reference_name or None,
        "grid": run.grid_digest or None,
    }


def parameters(run: GroupRun) -> dict[str, Any]:
    """The parameters that shape a group's products (hashed for resume, written to the header)."""
    return {**run_parameters(run), "extract": list(run.extract)}


def task(index: int, run: GroupRun) -> Task:
    """The runner's task of one group: inputs the members, the mosaic last, everything else beside it."""
    paths = product_paths(run)
    required = tuple(str(paths[k]) for k in paths if k not in ("i2d", "log", "qa_align", "qa_preview"))
    return Task(index, str(folder(run)), str(paths["i2d"]), inputs=tuple(run.group.members), required=required,
                products=tuple(str(paths[k]) for k in PRINTED if k in paths),
                outputs=tuple(str(p) for k, p in paths.items() if k not in ("i2d", "log")),
                label=str(folder(run)), log=str(paths["log"]), context=run)


def reference_info(run: GroupRun) -> dict[str, str]:
    """Grid and catalog of a finished reference group, with their hashes (for the member groups)."""
    paths = product_paths(run)
    grid = grid_of(paths["i2d"])
    return {"grid_file": str(paths["grid"].resolve()), "grid_digest": grid.digest(), "shape": grid.shape,
            "refcat_file": str(paths["refcat"].resolve()),
            "refcat_digest": positions_digest(read_table(paths["refcat"]))}


def process(job: Job) -> Made:
    """Reduce one group with Image3Pipeline in ``job.work`` and finish its products (the runner's ``process``)."""
    import warnings

    from jwst.pipeline import Image3Pipeline

    run: GroupRun = job.task.context
    paths = product_paths(run)
    work = job.work.resolve()
    log.info("group %s (FILTER=%s PUPIL=%s, %d files, %d exposures), role %s", run.group.name, run.group.filter,
             run.group.pupil, len(run.group.members), run.group.n_exposures, run.role)
    asn = write_association(run.group, work / paths["asn"].name)
    steps = nest_steps(run.steps)
    tw = steps.setdefault("tweakreg", {})
    if run.refcat.kind != "none" and not tw.get("skip"):
        # relative alignment by tweakreg, then YOUNG's absolute pass (young.stage3.alignment)
        user = {k.split(".", 1)[1]: v for k, v in run.steps.items() if k.startswith("tweakreg.")}
        tw.update(abs_refcat="", save_catalogs=True, catalog_format="ecsv",
                  post_hooks=[alignment.hook(run.refcat.value, work, user)])
    rs = steps.setdefault("resample", {})
    rs["in_memory"] = run.in_memory
    if run.role == "member":  # the reference grid replaces every other output-WCS parameter
        for key in GRID_PARAMETERS:
            rs.pop(key, None)
        rs["output_wcs"] = run.grid_file
    log.info("running Image3Pipeline on %s (in_memory=%s)", asn.name, run.in_memory)
    cwd = os.getcwd()
    os.chdir(work)  # jwst's on-disk mode keeps its temporaries in the working directory
    try:
        with warnings.catch_warnings():  # YOUNG's associations name their members by absolute path
            warnings.filterwarnings("ignore", message="Input association file contains path information")
            Image3Pipeline.call(str(asn), output_dir=str(work), save_results=True, steps=steps,
                                in_memory=run.in_memory, configure_log=False)
    finally:
        os.chdir(cwd)
    made = {k: work / paths[k].name for k in ("i2d", "segm", "cat")}
    missing = [p.name for p in made.values() if not p.exists()]
    if missing:
        why = " (no sources detected in the mosaic?)" if made["i2d"].exists() else ""
        raise InputError(f"Image3Pipeline wrote no {', '.join(missing)}{why}; see {paths['log']}", folder(run))
    return finish(run, work, paths, job.params, alignment.read_result(work))


def finish(run: GroupRun, work: Path, paths: dict[str, Path], params: dict, aligned: dict) -> Made:
    """Check the grid, stamp provenance, extract images, write the reference files and QA (all in ``work``)."""
    from astropy.io import fits

    out = Made()
    i2d = work / paths["i2d"].name
    with fits.open(i2d) as hdul:
        twk = str(hdul[0].header.get("S_TWKREG", "")).strip() or "NOT RUN"
    mode = aligned.get("mode") or ("relative" if twk == "COMPLETE" else "none")
    out.warnings += [f"{folder(run)}: {w}" for w in aligned.get("warnings", [])]
    if twk != "COMPLETE" and mode == "none" and not run.steps.get("tweakreg.skip"):
        out.warnings.append(f"{folder(run)}: tweakreg did not align this group (S_TWKREG={twk}); "
                            f"the mosaic keeps the input pointing (see {paths['log']})")
    if run.role == "member":
        diffs = check_same_grid(i2d, run.grid_file)
        if diffs:
            raise RuntimeError("mosaic is not on the reference grid: " + "; ".join(diffs))
        log.info("grid check: pixel-identical to the reference grid %s", run.grid_file)
    stamped = {
        "YNGROLE": (run.role, "stage 3: reference or member group"),
        "YNGREF": (run.reference_name or run.group.name, "reference group (grid, catalog)"),
        "YNGALIGN": (mode, "tweakreg alignment done"),
        "YNGRFCAT": ((run.refcat.kind if run.refcat.kind != "name" else run.refcat.value)[:20],
                     "absolute reference catalog"),
    }
    if run.role == "reference":
        grid = save_grid(i2d, work / paths["grid"].name)
        stamped["YNGGRID"] = (grid.digest(), "hash of the mosaic grid")
        from astropy.io import fits
        from astropy.table import Table

        edge = at_coverage_edge(Table.read(work / paths["cat"].name), fits.getdata(i2d, "WHT"))
        write_refcat(work / paths["cat"].name, work / paths["refcat"].name, edge)
    else:
        stamped["YNGGRID"] = (run.grid_digest, "hash of the mosaic grid")
    provenance.stamp(i2d, TOOL, params, stamped)
    provenance.stamp(work / paths["segm"].name, TOOL, params, stamped)
    out.keywords = stamped
    for ext in run.extract:
        extract_image(i2d, ext, work / paths[ext].name)
    try:
        out.info["astrometry"] = alignment_figures(run, work, paths)
        out.info["summary"] = f"{run.group.name}: {qa.summary_line(out.info['astrometry'])}"
    except Exception as exc:  # noqa: BLE001 - QA must not cost the products
        out.warnings.append(f"{folder(run)}: alignment figures failed: {type(exc).__name__}: {exc}")
        log.warning("alignment figures failed: %s", traceback.format_exc())
    return out


def write_refcat(cat: Path, dst: Path, edge=None) -> None:
    """The reference group's catalog cut to well-measured sources: the ``abs_refcat`` of the other groups.

    ``edge`` marks the catalog's sources cut by the edge of the data (:func:`young.stage3.refcat.at_coverage_edge`),
    which are left out.
    """
    from astropy.table import Table

    table = select_reference_sources(Table.read(cat), exclude=edge)
    table.meta["comments"] = [f"absolute reference positions for young-stage3, from {cat.name}"]
    table.write(dst, format="ascii.ecsv", overwrite=True)
    log.info("reference catalog: %d sources -> %s", len(table), dst.name)
    if len(table) < 15:
        log.warning("the reference catalog holds only %d sources; other groups may fail to align", len(table))


def alignment_figures(run: GroupRun, work: Path, paths: dict[str, Path]) -> dict:
    """A group's alignment statistics (logged, and shown in the tool's summary); with ``--plot`` also its PNGs."""
    i2d = work / paths["i2d"].name
    ref = None
    if run.role == "member":
        ref = Path(run.grid_file).with_name(Path(run.grid_file).name.replace("_grid.asdf", "_refcat.ecsv"))
    elif run.refcat.kind == "file":
        ref = Path(run.refcat.value)
    residuals = qa.alignment_residuals(work / paths["cat"].name, ref, sorted(work.glob("*_crf.fits")))
    stats = residuals["stats"]
    log.info("alignment: %s (%s)", qa.summary_line(stats), json.dumps(stats))
    if run.qa:
        qa.preview_png(i2d, work / paths["qa_preview"].name, title=f"{run.group.product}")
        qa.alignment_plot(residuals, work / paths["qa_align"].name,
                          title=f"{run.group.product}: alignment ({run.role}"
                                + (f", reference {run.reference_name}" if run.reference_name else "") + ")")
    return stats


def extract_image(i2d: str | Path, ext: str, dst: str | Path) -> Path:
    """Write one extension of an i2d as a single-extension FITS image.

    The primary HDU holds the data with the SCI header's celestial WCS and
    the main primary keywords (TELESCOP, INSTRUME, FILTER, PUPIL, BUNIT,
    PHOTMJSR, PIXAR_SR...).  ``ext`` is ``sci``, ``err``, ``wht`` or ``con``.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    dst = Path(dst)
    with fits.open(i2d, memmap=False) as hdul:
        sci = hdul["SCI"].header
        data = hdul[ext.upper()].data
        if data is None:
            raise RuntimeError(f"{Path(i2d).name} has no {ext.upper()} extension")
        h = WCS(sci, naxis=2).to_header(relax=True)
        for k in ("TELESCOP", "INSTRUME", "FILTER", "PUPIL", "PROGRAM", "TARGPROP", "DATE-OBS", "CRDS_CTX",
                  "YNGTOOL", "YNGVER", "YNGPHASH"):
            if k in hdul[0].header:
                h[k] = hdul[0].header[k]
        for k in ("BUNIT", "PHOTMJSR", "PHOTUJA2", "PIXAR_SR", "PIXAR_A2"):
            if k in sci and ext in ("sci", "err"):
                h[k] = sci[k]
        h["EXTNAME"] = (ext.upper(), "extracted from the i2d")
        h["YNGSRC"] = (Path(i2d).name, "source i2d")
        fits.PrimaryHDU(data=data, header=h).writeto(dst, overwrite=True)
    return dst
