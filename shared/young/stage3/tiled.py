"""The tiled stage 3: a filter's mosaic made tile by tile, each tile a task of its own.

One untiled Image3 run needs memory that grows with the field.  The tiled
path (docs/algorithms.md, "Tiled stage 3") splits it into three kinds of task,
each a task of the tool contract (resume, atomic products, a log each):

``align`` (one per filter group)
    jwst's tweakreg (plus YOUNG's absolute pass) and skymatch on the whole
    group -- the same steps and parameters as Image3 runs -- with the models
    on disk when the group does not fit in memory.  Inputs are never
    modified: every exposure's corrected WCS and sky level go to a side file
    ``aligned/<exposure>_wcs.asdf``; a table ``aligned/<product>_align.fits``
    lists the exposures, the shift alignment applied to each and their
    bounding boxes on the grid.  The reference group also fixes the grid
    (``aligned/<product>_grid.asdf``, the same grid resample would make);
    every group saves the grid jwst's outlier detection would use for its
    median (``_median_grid.asdf``).
``tile`` (one per filter and tile)
    The exposures that overlap the tile, with their side files applied:
    outlier detection (its median on the group's median grid, cut to the
    tile), resample onto the tile's part of the common grid, the source
    catalog -- jwst's steps with the group's parameters.  A tile's memory
    depends on the tile size and the depth of the data, not on the field.
``merge`` (one per filter group)
    One catalog from the tile catalogs (a source belongs to the tile whose
    core holds its centroid; pixel columns in the full grid; labels and
    nearest neighbours renumbered), the tile index ``<product>_tiles.fits``
    with every tile's files and footprint, and with ``--stitch`` the full
    i2d and segmentation map written core by core into memory-mapped files.

The reference group goes first (align, its tiles, merge: its catalog is the
``abs_refcat`` of the others), then every other group's align tasks, then all
their tiles, then their merges; each phase is farmed over the local workers
or MPI ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from young.contract.config import nest_steps
from young.contract.errors import InputError
from young.contract.records import Job, Made, Task
from young.stage3 import alignment
from young.stage3.exposures import Group, write_association
from young.stage3.group import STAGE3, folder, run_parameters, write_refcat
from young.stage3.params import GRID_PARAMETERS
from young.stage3.refcat import RefcatSpec, at_coverage_edge
from young.stage3.stitch import stitch
from young.stage3.tiles import Tile, box_in_grid, offset_wcs, overlapping, plan_tiles

log = logging.getLogger("young.stage3")

# the align table and tile index are YOUNG's tables, not jwst products: they are stamped with the run's
# CRDS context (a jwst product records the context jwst used itself)
ALIGN = replace(STAGE3, process="young.stage3.tiled:process_align", runs_jwst_steps=False)
TILE = replace(STAGE3, process="young.stage3.tiled:process_tile")
MERGE = replace(STAGE3, process="young.stage3.tiled:process_merge", runs_jwst_steps=False)

@dataclass(frozen=True)
class TiledRun:
    """What one group's tiled reduction needs (picklable).

    Attributes
    ----------
    group : Group
    out_dir : str
        The output folder (the group writes ``out_dir/<name>/``).
    steps : dict
        Image3 step parameters (``{'outlier_detection.snr': '5.0 4.0'}``).
    role : str
        ``'reference'`` (fixes the grid, its catalog aligns the others) or ``'member'``.
    in_memory : bool
        Keep the whole group in memory while aligning (False: jwst's on-disk models, when the group
        does not fit in a process's share of the memory budget).
    refcat : RefcatSpec
        What the group aligns to absolutely.
    tile_size, margin : int
        Core size and margin of the tiles (pixels of the grid).
    align : int
        Tile origins and core sizes are multiples of this: the source catalog's ``bkg_boxsize``.
    stitch : bool
        Also write the full mosaic and segmentation map.
    reference_name, grid_file, grid_digest : str
        Members: the reference group, its grid ASDF and the grid's hash.
    """

    group: Group
    out_dir: str
    steps: dict
    role: str
    in_memory: bool
    refcat: RefcatSpec
    tile_size: int
    margin: int
    stitch: bool
    reference_name: str = ""
    grid_file: str = ""
    grid_digest: str = ""
    align: int = 1000


def align_paths(run: TiledRun) -> dict[str, Any]:
    """Files of a group's align task (``side`` maps each member to its WCS side file)."""
    d, stem = folder(run) / "aligned", run.group.product
    paths: dict[str, Any] = {"table": d / f"{stem}_align.fits", "median": d / f"{stem}_median_grid.asdf",
                             "log": d / f"{stem}_align.log", "asn": d / f"{stem}_asn.json"}
    paths["grid"] = d / f"{stem}_grid.asdf" if run.role == "reference" else Path(run.grid_file)
    paths["side"] = {m: d / f"{Path(m).name.removesuffix('.fits')}_wcs.asdf" for m in run.group.members}
    return paths


def tile_paths(run: TiledRun, tile: Tile) -> dict[str, Path]:
    """A tile's products: ``tiles/<product>_<rNNcNN>_i2d.fits``, ``_segm.fits``, ``_cat.ecsv``, its log."""
    d, stem = folder(run) / "tiles", f"{run.group.product}_{tile.name}"
    return {"i2d": d / f"{stem}_i2d.fits", "segm": d / f"{stem}_segm.fits", "cat": d / f"{stem}_cat.ecsv",
            "log": d / f"{stem}.log"}


def merge_paths(run: TiledRun) -> dict[str, Path]:
    """The group's merged products."""
    d, stem = folder(run), run.group.product
    paths = {"index": d / f"{stem}_tiles.fits", "cat": d / f"{stem}_cat.ecsv", "log": d / f"{stem}.log"}
    if run.stitch:
        paths["i2d"] = d / f"{stem}_i2d.fits"
        paths["segm"] = d / f"{stem}_segm.fits"
    if run.role == "reference":
        paths["refcat"] = d / f"{stem}_refcat.ecsv"
    return paths


# ---------------------------------------------------------------- tasks


def align_task(index: int, run: TiledRun) -> tuple[Task, dict]:
    """The align task of a group and its parameters."""
    p = align_paths(run)
    outputs = [str(p["median"]), *(str(s) for s in p["side"].values()), str(p["asn"])]
    if run.role == "reference":
        outputs.append(str(p["grid"]))
    inputs = tuple(run.group.members) + ((run.grid_file,) if run.role == "member" else ())
    task = Task(index, str(folder(run)), str(p["table"]), inputs=inputs,
                required=tuple(o for o in outputs if not o.endswith("_asn.json")),
                products=(), outputs=tuple(outputs), label=f"{folder(run)} (align)", log=str(p["log"]),
                context=run)
    return task, {**run_parameters(run), "phase": "align"}


@dataclass(frozen=True)
class TileWork:
    """A tile task's context: the group's run, the tile and the members that overlap it."""

    run: TiledRun
    tile: Tile
    members: tuple[str, ...]
    grid_file: str
    median_file: str


def tile_task(index: int, work: TileWork) -> tuple[Task, dict]:
    """The task of one tile (its inputs: its exposures, their side files and the grids, so a new
    alignment -- new side files -- redoes it)."""
    p = tile_paths(work.run, work.tile)
    side = align_paths(work.run)["side"]
    inputs = tuple(work.members) + tuple(str(side[m]) for m in work.members) + (work.grid_file, work.median_file)
    task = Task(index, str(folder(work.run)), str(p["i2d"]), inputs=inputs, required=(str(p["segm"]), str(p["cat"])),
                products=(), outputs=(str(p["segm"]), str(p["cat"])),
                label=f"{folder(work.run)} tile {work.tile.name}", log=str(p["log"]), context=work)
    params = {**run_parameters(work.run), "phase": "tile", "tile": [work.tile.core, work.tile.outer],
              "tile_members": sorted(str(Path(m).resolve()) for m in work.members)}
    return task, params


@dataclass(frozen=True)
class MergeWork:
    """A merge task's context: the group's run, its tiles and the grid."""

    run: TiledRun
    tiles: tuple[Tile, ...]
    grid_file: str
    shape: tuple[int, int]


def merge_task(index: int, work: MergeWork) -> tuple[Task, dict]:
    """The merge task of a group (its primary product is the tile index)."""
    p = merge_paths(work.run)
    inputs = tuple(str(tile_paths(work.run, t)[k]) for t in work.tiles for k in ("i2d", "cat", "segm"))
    keys = [k for k in ("i2d", "segm", "cat") if k in p] + (["index"] if not work.run.stitch else [])
    others = [k for k in p if k not in ("index", "log")]
    task = Task(index, str(folder(work.run)), str(p["index"]), inputs=inputs,
                required=tuple(str(p[k]) for k in others), products=tuple(str(p[k]) for k in keys),
                outputs=tuple(str(p[k]) for k in others), label=str(folder(work.run)), log=str(p["log"]),
                context=work)
    params = {**run_parameters(work.run), "phase": "merge", "tiles": [[t.core, t.outer] for t in work.tiles],
              "stitch": work.run.stitch}
    return task, params


# ---------------------------------------------------------------- align


def process_align(job: Job) -> Made:
    """Align one group (tweakreg, YOUNG's absolute pass, skymatch) and write its side files and grids."""
    from jwst.datamodels import ModelLibrary
    from jwst.skymatch import SkyMatchStep
    from jwst.tweakreg import TweakRegStep

    run: TiledRun = job.task.context
    work = job.work.resolve()
    p = align_paths(run)
    asn = write_association(run.group, work / p["asn"].name)
    steps = nest_steps(run.steps)
    tw = dict(steps.get("tweakreg", {}))
    if run.refcat.kind != "none" and not tw.get("skip"):
        user = {k.split(".", 1)[1]: v for k, v in run.steps.items() if k.startswith("tweakreg.")}
        tw.update(abs_refcat="", save_catalogs=True, catalog_format="ecsv",
                  post_hooks=[alignment.hook(run.refcat.value, work, user)])
    log.info("aligning group %s (%d files, in_memory=%s)", run.group.name, len(run.group.members), run.in_memory)
    cwd = os.getcwd()
    os.chdir(work)  # jwst's on-disk models keep their temporaries in the working directory
    try:
        lib = ModelLibrary(str(asn), on_disk=not run.in_memory)
        before = _centres(lib)
        lib = TweakRegStep.call(lib, configure_log=False, **tw)
        lib = SkyMatchStep.call(lib, configure_log=False, **steps.get("skymatch", {}))
        median, grid = _grids(lib, steps.get("resample", {}), run)
        rows = _write_side_files(lib, before, p, work, grid["wcs"])
    finally:
        os.chdir(cwd)
    _save_grid(work / p["median"].name, median)
    if run.role == "reference":
        _save_grid(work / p["grid"].name, grid)
    result = alignment.read_result(work)
    table = _align_table(rows)
    table.meta["YNGALIGN"] = result.get("mode") or ("relative" if not tw.get("skip") else "none")
    table.write(job.tmp, format="fits", overwrite=True)
    out = Made(keywords={"YNGALIGN": (table.meta["YNGALIGN"], "tweakreg alignment done")})
    out.warnings += [f"{folder(run)}: {w}" for w in result.get("warnings", [])]
    out.info["shape"] = list(grid["wcs"].array_shape)
    return out


def _centres(lib) -> list[tuple[float, float, float, bool]]:
    """Per model before alignment: the sky position (deg) of its centre, its sky level and whether it
    was subtracted (young-bkg's products arrive with BKGSUB=T and their level)."""
    out = []
    with lib:
        for i, model in enumerate(lib):
            ny, nx = model.data.shape
            ra, dec = (float(v) for v in model.meta.wcs((nx - 1) / 2, (ny - 1) / 2))
            bg = model.meta.background
            out.append((ra, dec, float(bg.level or 0.0), bool(bg.subtracted)))
            lib.shelve(model, i, modify=False)
    return out


def _grids(lib, resample_steps: dict, run: TiledRun) -> tuple[dict, dict]:
    """The group's median grid (as outlier detection makes it) and the mosaic grid (as resample would)."""
    from jwst.resample import ResampleStep
    from jwst.resample.resample_utils import load_custom_wcs, resampled_wcs_from_models

    wcs, _, ps, ratio = resampled_wcs_from_models(lib, pixel_scale_ratio=1.0)
    median = {"wcs": wcs, "pixel_scale": 3600.0 * ps, "pixel_scale_ratio": ratio}
    if run.role == "member":
        return median, load_custom_wcs(run.grid_file)
    # the reference: the grid ResampleStep computes from these models with the group's parameters
    step = ResampleStep(**{k: v for k, v in resample_steps.items() if k in GRID_PARAMETERS})
    pars = step.get_drizpars()
    if pars.get("output_wcs"):
        return median, pars["output_wcs"]
    wp = pars["wcs_pars"]
    scale = wp.get("pixel_scale")
    wcs, _, ps, ratio = resampled_wcs_from_models(
        lib, pixel_scale_ratio=wp.get("pixel_scale_ratio", 1.0), pixel_scale=None if scale is None else scale / 3600.0,
        output_shape=wp.get("output_shape"), rotation=wp.get("rotation"), crpix=wp.get("crpix"),
        crval=wp.get("crval"))
    return median, {"wcs": wcs, "pixel_scale": 3600.0 * ps, "pixel_scale_ratio": ratio}


def _save_grid(path: Path, grid: dict) -> None:
    import asdf

    wcs = grid["wcs"]
    tree = {"wcs": wcs, "pixel_scale": float(grid["pixel_scale"]), "array_shape": list(wcs.array_shape)}
    if grid.get("pixel_scale_ratio") is not None:
        tree["pixel_scale_ratio"] = float(grid["pixel_scale_ratio"])
    asdf.AsdfFile(tree).write_to(str(path))


def _write_side_files(lib, before, p: dict, work: Path, grid_wcs) -> list[dict]:
    import asdf
    import numpy as np

    rows = []
    side = p["side"]
    with lib:
        for i, model in enumerate(lib):
            member = _member_of(model, side)
            ny, nx = model.data.shape
            ra, dec = (float(v) for v in model.meta.wcs((nx - 1) / 2, (ny - 1) / 2))
            ra0, dec0, level0, subtracted0 = before[i]
            dx = (ra - ra0) * np.cos(np.radians(dec0)) * 3.6e6
            dy = (dec - dec0) * 3.6e6
            bg = model.meta.background
            # what skymatch took from the data: all of its level, or (on an input whose level was
            # already subtracted) only what it added to that level
            applied = 0.0
            if bg.subtracted and bg.level is not None:
                applied = float(bg.level) - (level0 if subtracted0 else 0.0)
            tree = {"wcs": model.meta.wcs, "wcsinfo": model.meta.wcsinfo.instance,
                    "background": {"level": bg.level, "subtracted": bg.subtracted, "method": bg.method,
                                   "applied": applied},
                    "cal_step": {"tweakreg": model.meta.cal_step.tweakreg, "skymatch": model.meta.cal_step.skymatch},
                    "source": Path(member).name}
            asdf.AsdfFile(tree).write_to(str(work / side[member].name))
            box = box_in_grid(model.meta.wcs, (ny, nx), grid_wcs)
            rows.append({"member": member, "exposure": str(model.meta.group_id or member), "side": str(side[member]),
                         "dra_mas": dx, "ddec_mas": dy, "x0": box[0], "x1": box[1], "y0": box[2], "y1": box[3]})
            lib.shelve(model, i, modify=False)
    return rows


def _member_of(model, side: dict) -> str:
    name = Path(model.meta.filename).name
    for member in side:
        if Path(member).name == name:
            return member
    raise RuntimeError(f"aligned model {name} is not a member of the group")


def _align_table(rows: list[dict]):
    from astropy.table import Table

    t = Table(rows=rows, names=("member", "exposure", "side", "dra_mas", "ddec_mas", "x0", "x1", "y0", "y1"))
    t["dra_mas"].unit = t["ddec_mas"].unit = "mas"
    t.meta["EXTNAME"] = "ALIGNED"
    return t


def read_align_table(path: str | Path):
    """The align table of a group (astropy Table: member, exposure, side, dra_mas, ddec_mas, x0, x1, y0, y1)."""
    from astropy.table import Table

    return Table.read(path, format="fits")


# ---------------------------------------------------------------- tile


def apply_side_file(model, side: str | Path) -> None:
    """Give ``model`` (an open cal model) the aligned WCS and sky level of its side file, as the align task left them.

    Where skymatch subtracted the sky (``subtract=True``), what it took from the data is taken here too.
    """
    import asdf

    with asdf.open(str(side), lazy_load=False) as af:
        tree = af.tree
        model.meta.wcs = tree["wcs"]
        model.meta.wcsinfo.instance.update(dict(tree["wcsinfo"]))
        bg = tree["background"]
        if bg.get("level") is not None:
            model.meta.background.level = bg["level"]
            model.meta.background.subtracted = bg.get("subtracted")
            model.meta.background.method = bg.get("method")
            if bg.get("applied"):
                model.data -= bg["applied"]
        for k, v in tree["cal_step"].items():
            if v is not None:
                setattr(model.meta.cal_step, k, v)


@contextlib.contextmanager
def median_on(grid: dict, wholes: list, cache: Path | None = None):
    """Make jwst's imaging outlier detection compute its median on ``grid`` as the untiled run does.

    jwst's ``detect_outliers`` derives the median's grid from the footprints of the images it is
    given and has no parameter for it.  A tile gives it only the exposures that overlap the tile,
    which would move that grid's pixel phase and so the median and the flags; with the group's own
    median grid cut to the tile (``grid``, {'wcs', 'pixel_scale'}) the median over the tile is the
    untiled one.  The threshold below which a drizzled exposure's weights are left out of the median
    (``maskpt`` times their clipped mean) is then taken over the part of the exposure inside the
    tile; for an exposure that reaches beyond it, ``wholes[i]`` (exposure group ``i`` in the
    library's order) is a cut of the median grid holding all of it, where its weights are drizzled
    again for the threshold the untiled run uses.  Everything else is jwst's.

    ``cache``: a folder where such a threshold is kept per exposure and drizzle parameters (a small
    JSON, written atomically), so the tiles of an exposure compute it once; one folder per alignment
    (:func:`threshold_cache`).
    """
    from jwst.outlier_detection import imaging, utils

    original, original_threshold = imaging.resample, utils.compute_weight_threshold
    state: dict = {"calls": 0}

    def resample_image(input_models, **kwargs):
        state["models"], state["kwargs"] = input_models, kwargs
        return original.ResampleImage(input_models, output_wcs=grid, **kwargs)

    def threshold(weight, maskpt):
        i = state["calls"]
        state["calls"] += 1
        whole = wholes[i] if i < len(wholes) else None
        if whole is None or "models" not in state:
            return original_threshold(weight, maskpt)
        lib = state["models"]
        name, indices = list(lib.group_indices.items())[i]
        key = None
        if cache is not None:
            import hashlib

            text = json.dumps([str(name), float(maskpt), {k: repr(v) for k, v in sorted(state["kwargs"].items())}])
            key = cache / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.json"
            if key.exists():
                return json.loads(key.read_text())["threshold"]
        again = original.ResampleImage(lib, output_wcs=whole, **state["kwargs"])
        value = float(original_threshold(again.resample_group(indices).wht, maskpt))
        if key is not None:
            tmp = key.with_name(f"{key.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps({"exposure": str(name), "threshold": value}))
            os.replace(tmp, key)
        return value

    shim = types.ModuleType(original.__name__)
    shim.__dict__.update(original.__dict__)
    shim.ResampleImage = resample_image
    imaging.resample, utils.compute_weight_threshold = shim, threshold
    try:
        yield
    finally:
        imaging.resample, utils.compute_weight_threshold = original, original_threshold


def threshold_cache(median_file: str | Path) -> Path:
    """``aligned/weights/<stamp>/``: the weight thresholds of one alignment (the median grid's write time)."""
    median_file = Path(median_file)
    d = median_file.parent / "weights" / str(median_file.stat().st_mtime_ns)
    d.mkdir(parents=True, exist_ok=True)
    return d


def whole_grids(models: list, groups: list, full: dict, crop: dict, pad: int = 8) -> list:
    """Per exposure group (lists of indices into ``models``): None when it lies inside ``crop`` (a cut of
    ``full``, the median grid), else the cut of ``full`` that holds the whole group (:func:`median_on`)."""
    cx, cy = crop["origin"]
    cny, cnx = crop["wcs"].array_shape
    ny, nx = full["wcs"].array_shape
    out = []
    for indices in groups:
        boxes = [box_in_grid(models[i].meta.wcs, models[i].data.shape, full["wcs"]) for i in indices]
        x0, x1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
        y0, y1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
        if x0 >= cx - 0.5 and x1 <= cx + cnx - 0.5 and y0 >= cy - 0.5 and y1 <= cy + cny - 0.5:
            out.append(None)
            continue
        ix0, iy0 = max(0, int(x0) - pad), max(0, int(y0) - pad)
        ix1, iy1 = min(nx, int(x1) + pad + 1), min(ny, int(y1) + pad + 1)
        out.append({**full, "wcs": offset_wcs(full["wcs"], ix0, iy0, (iy1 - iy0, ix1 - ix0))})
    return out


def crop_grid(grid: dict, outer_sky_wcs, outer_shape, pad: int = 8) -> dict:
    """The part of ``grid`` ({'wcs', 'pixel_scale'}) covering an image of ``outer_shape`` with ``outer_sky_wcs``."""
    x0, x1, y0, y1 = box_in_grid(outer_sky_wcs, outer_shape, grid["wcs"])
    ny, nx = grid["wcs"].array_shape
    ix0, iy0 = max(0, int(x0) - pad), max(0, int(y0) - pad)
    ix1, iy1 = min(nx, int(x1) + pad + 1), min(ny, int(y1) + pad + 1)
    if ix1 <= ix0 or iy1 <= iy0:
        raise RuntimeError("the tile lies outside the group's median grid")
    out = dict(grid)
    out["wcs"] = offset_wcs(grid["wcs"], ix0, iy0, (iy1 - iy0, ix1 - ix0))
    out["origin"] = (ix0, iy0)
    return out


def tile_parameters(wcs, shape) -> dict:
    """resample's ``crpix``, ``crval``, ``rotation``, ``pixel_scale`` and ``output_shape`` of a TAN grid (gwcs).

    Parameters
    ----------
    wcs : gwcs.WCS
        A grid made by resample (a ``FITSImagingWCSTransform``).
    shape : (int, int)
        (ny, nx).
    """
    import math

    t = wcs.forward_transform
    pc = t.pc.value * t.cdelt.value[:, None]
    scale = math.sqrt(abs(pc[0][0] * pc[1][1] - pc[0][1] * pc[1][0])) * 3600.0
    rotation = math.degrees(math.atan2(pc[0][1], pc[1][1]))   # resample's convention (see young.stage3.grid)
    return {"crpix": [float(v) for v in t.crpix.value], "crval": [float(v) for v in t.crval.value],
            "rotation": rotation, "pixel_scale": scale, "output_shape": [int(shape[1]), int(shape[0])]}


def _load_grid(path: str | Path) -> dict:
    from jwst.resample.resample_utils import load_custom_wcs

    g = load_custom_wcs(str(path))
    import asdf

    with asdf.open(str(path)) as af:
        if "pixel_scale_ratio" in af.tree:
            g["pixel_scale_ratio"] = float(af.tree["pixel_scale_ratio"])
    return g


def process_tile(job: Job) -> Made:
    """One tile: outlier detection, resample onto the tile's grid and the source catalog (jwst's steps)."""
    import asdf
    from jwst.datamodels import ModelLibrary
    from jwst.outlier_detection import OutlierDetectionStep
    from jwst.resample import ResampleStep
    from jwst.source_catalog import SourceCatalogStep
    from stdatamodels.jwst import datamodels

    tw: TileWork = job.task.context
    run, tile = tw.run, tw.tile
    work = job.work.resolve()
    p = tile_paths(run, tile)
    steps = nest_steps(run.steps)
    grid = _load_grid(tw.grid_file)
    tile_wcs = offset_wcs(grid["wcs"], tile.origin[0], tile.origin[1], tile.shape)
    tile_grid = work / f"{run.group.product}_{tile.name}_grid.asdf"
    asdf.AsdfFile({"wcs": tile_wcs, "pixel_scale": float(grid["pixel_scale"]),
                   "array_shape": list(tile.shape)}).write_to(str(tile_grid))
    full_median = _load_grid(tw.median_file)
    median = crop_grid(full_median, tile_wcs, tile.shape)
    side = align_paths(run)["side"]
    log.info("tile %s of %s: core %s, outer %s, %d exposures", tile.name, run.group.name, tile.core, tile.outer,
             len(tw.members))
    models = []
    for m in tw.members:
        model = datamodels.open(m)
        apply_side_file(model, side[m])
        models.append(model)
    lib = ModelLibrary(models, on_disk=False)
    wholes = whole_grids(models, list(lib.group_indices.values()), full_median, median)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        od = {k: v for k, v in steps.get("outlier_detection", {}).items() if k != "save_results"}
        with median_on({k: v for k, v in median.items() if k != "origin"}, wholes, threshold_cache(tw.median_file)):
            lib = OutlierDetectionStep.call(lib, configure_log=False, **od)
        rs = {k: v for k, v in steps.get("resample", {}).items() if k not in GRID_PARAMETERS and k != "in_memory"}
        if run.role == "reference" and not steps.get("resample", {}).get("output_wcs"):
            # as the untiled reference: the grid from parameters, which also sets the pixel-scale ratio
            # the source catalog's aperture corrections use; the members' ratio comes from a grid file,
            # as theirs do untiled (and the reference's when the user gave one)
            rs.update(tile_parameters(tile_wcs, tile.shape))
        else:
            rs["output_wcs"] = str(tile_grid)
        i2d = ResampleStep.call(lib, configure_log=False, **rs)
        del lib, models
        i2d.meta.filename = p["i2d"].name
        i2d.save(str(job.tmp))
        sc = {k: v for k, v in steps.get("source_catalog", {}).items() if k not in ("save_results", "output_dir")}
        SourceCatalogStep.call(i2d, save_results=True, output_dir=str(work), configure_log=False,
                               output_file=f"{run.group.product}_{tile.name}", **sc)
    finally:
        os.chdir(cwd)
    tile_grid.unlink(missing_ok=True)
    if not (work / p["cat"].name).exists() and not (work / p["segm"].name).exists():
        # jwst's source catalog writes nothing when it finds no source (an empty corner of the grid)
        log.info("no source in tile %s: empty catalog and segmentation map", tile.name)
        empty_products(work / p["cat"].name, work / p["segm"].name, tile.shape)
    for k in ("segm", "cat"):
        if not (work / p[k].name).exists():
            made = [f.name for f in work.iterdir()]
            raise InputError(f"source_catalog wrote no {p[k].name} for tile {tile.name} (made: {', '.join(made)})",
                             folder(run))
    return Made(keywords={"YNGTILE": (tile.name, "tile of the common grid"),
                          "YNGTORIG": (f"{tile.origin[0]} {tile.origin[1]}", "grid pixel (x y) of tile pixel 0 0")})


def empty_products(cat: Path, segm: Path, shape) -> None:
    """An empty catalog (jwst's position columns) and an all-zero segmentation map of ``shape`` (ny, nx)."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    Table(names=("label", "xcentroid", "ycentroid"), dtype=(int, float, float)).write(cat, format="ascii.ecsv")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(tuple(shape), np.int32), name="SCI")]).writeto(segm)


# ---------------------------------------------------------------- merge


#: pixel columns of jwst's source catalog, moved from tile to grid pixels when tiles are merged
X_COLUMNS = ("xcentroid", "bbox_xmin", "bbox_xmax")
Y_COLUMNS = ("ycentroid", "bbox_ymin", "bbox_ymax")


def merge_catalogs(tables: list, tiles: list[Tile], slack: float = 1.0, match: float = 0.5):
    """One catalog from the tiles' catalogs: each source once, from the tile whose core holds its centroid.

    Every tile measures a source near a core border on its own pixels, so two tiles may put its
    centroid on either side of the border by a few hundredths of a pixel.  Sources within ``slack``
    pixels of a tile's core are candidates; candidates of different tiles within ``match`` pixels
    are one source, kept from the tile that owns their mean position; a candidate no other tile
    saw is kept (else it would be lost).  Pixel columns (``xcentroid``, ``bbox_xmin``...) are moved
    to the full grid, labels renumbered from 1 in tile order, and ``nn_label``/``nn_dist`` (nearest
    neighbour) recomputed over the merged catalog.

    Returns
    -------
    merged : astropy.table.Table
    maps : list of dict
        Per tile, ``{tile label: merged label}`` (a duplicate maps to the label of the copy kept).
    owner : numpy.ndarray of int
        Per merged row, the index of the tile it was taken from.
    """
    import numpy as np
    from astropy.table import vstack
    from scipy.spatial import cKDTree

    parts, where = [], []
    for k, (table, tile) in enumerate(zip(tables, tiles)):
        if not len(table):
            continue
        ox, oy = tile.origin
        t = table.copy()
        for c in X_COLUMNS:
            if c in t.colnames:
                t[c] = t[c] + ox
        for c in Y_COLUMNS:
            if c in t.colnames:
                t[c] = t[c] + oy
        x0, x1, y0, y1 = tile.core
        x, y = np.asarray(t["xcentroid"], float), np.asarray(t["ycentroid"], float)
        near = (x >= x0 - 0.5 - slack) & (x < x1 - 0.5 + slack) & (y >= y0 - 0.5 - slack) & (y < y1 - 0.5 + slack)
        t = t[near]
        parts.append(t)
        where += [(k, int(lab), float(a), float(b)) for lab, a, b in zip(t["label"], x[near], y[near])]
    maps: list[dict] = [{} for _ in tiles]
    if not parts:
        return tables[0][:0], maps, np.zeros(0, int)
    cand = vstack(parts, metadata_conflicts="silent")
    xy = np.array([(a, b) for _, _, a, b in where])
    tile_of = np.array([k for k, _, _, _ in where])
    parent = list(range(len(cand)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in cKDTree(xy).query_pairs(match):
        if tile_of[i] != tile_of[j]:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(cand)):
        groups.setdefault(root(i), []).append(i)
    keep, alias = [], {}
    for members in groups.values():
        if len(members) == 1:
            chosen = members[0]
        else:
            mx, my = xy[members].mean(axis=0)
            owners = [i for i in members if tiles[tile_of[i]].owns(mx, my)]
            chosen = owners[0] if owners else members[0]
        keep.append(chosen)
        for i in members:
            alias[i] = chosen
    keep.sort()
    new_label = {i: n + 1 for n, i in enumerate(keep)}
    for i, (k, lab, _, _) in enumerate(where):
        maps[k][lab] = new_label[alias[i]]
    merged = cand[keep]
    merged["label"] = np.arange(1, len(keep) + 1)
    if len(merged) > 1 and "nn_label" in merged.colnames:
        mxy = np.column_stack([merged["xcentroid"], merged["ycentroid"]])
        d, j = cKDTree(mxy).query(mxy, k=2)
        merged["nn_label"] = merged["label"][j[:, 1]]
        if "nn_dist" in merged.colnames:
            merged["nn_dist"] = d[:, 1] * (merged["nn_dist"].unit or 1)
    return merged, maps, tile_of[keep]


def process_merge(job: Job) -> Made:
    """Merge a group's tiles: catalog, tile index, the stitched mosaic (``--stitch``), the reference catalog."""
    from astropy.table import Table

    mw: MergeWork = job.task.context
    run = mw.run
    work = job.work.resolve()
    p = merge_paths(run)
    tiles = list(mw.tiles)
    cats = [Table.read(tile_paths(run, t)["cat"], format="ascii.ecsv") for t in tiles]
    merged, maps, owner = merge_catalogs(cats, tiles)
    merged.meta["comments"] = [f"merged from {len(tiles)} tiles by young-stage3"]
    merged.write(work / p["cat"].name, format="ascii.ecsv", overwrite=True)
    log.info("catalog: %d sources from %d tiles", len(merged), len(tiles))
    if run.stitch:
        stitch(tiles, lambda t: tile_paths(run, t), tiles_of(mw.shape, run), mw.shape, maps, merged, cats,
               work / p["i2d"].name, work / p["segm"].name)
    if run.role == "reference":
        write_refcat(work / p["cat"].name, work / p["refcat"].name, edge_of(run, merged, tiles, owner))
    index = tile_index(run, tiles)
    index.write(job.tmp, format="fits", overwrite=True)
    stamped = {"YNGROLE": (run.role, "stage 3: reference or member group"),
               "YNGREF": (run.reference_name or run.group.name, "reference group (grid, catalog)"),
               "YNGNTILE": (len(tiles), "tiles of the common grid")}
    if run.stitch:
        from young.contract import provenance

        for k in ("i2d", "segm"):
            provenance.stamp(work / p[k].name, "young-stage3", job.params, stamped)
    return Made(keywords=stamped, info={"summary": f"{run.group.name}: {len(merged)} sources in {len(tiles)} tiles"})


def edge_of(run: TiledRun, merged, tiles: list[Tile], owner):
    """:func:`young.stage3.refcat.at_coverage_edge` of the merged catalog, each source on the weights of
    the tile it was taken from (``owner``: tile index per row)."""
    import numpy as np
    from astropy.io import fits

    edge = np.zeros(len(merged), bool)
    for k, t in enumerate(tiles):
        own = owner == k
        if own.any():
            edge[own] = at_coverage_edge(merged[own], fits.getdata(tile_paths(run, t)["i2d"], "WHT"), t.origin)
    return edge


def tile_index(run: TiledRun, tiles: list[Tile]):
    """The tile index: one row per tile with its files, core and outer boxes and the core's corners on the sky."""
    from astropy.table import Table

    rows = []
    for t in tiles:
        p = tile_paths(run, t)
        rows.append({"tile": t.name, "i2d": p["i2d"].name, "segm": p["segm"].name, "cat": p["cat"].name,
                     "core_x0": t.core[0], "core_x1": t.core[1], "core_y0": t.core[2], "core_y1": t.core[3],
                     "x0": t.outer[0], "x1": t.outer[1], "y0": t.outer[2], "y1": t.outer[3]})
    table = Table(rows=rows)
    table.meta["EXTNAME"] = "TILES"
    table.meta["YNGGROUP"] = run.group.name
    return table


def tiles_of(shape, run: TiledRun) -> list[Tile]:
    """The tiles of a group's grid."""
    return plan_tiles(shape, run.tile_size, run.margin, run.align)


def tile_works(run: TiledRun, table, shape, grid_file: str, median_file: str) -> list[TileWork]:
    """The tile tasks of a group from its align table; tiles no exposure overlaps are left out.

    A tile takes every file of each exposure that overlaps it (all detectors of that exposure, not
    only those over the tile): outlier detection's weight threshold is a mean over the whole
    exposure's drizzled weights, as in the untiled run.
    """
    boxes = [(float(r["x0"]), float(r["x1"]), float(r["y0"]), float(r["y1"])) for r in table]
    members = [str(r["member"]) for r in table]
    exposure = [str(r["exposure"]) if "exposure" in table.colnames else m for r, m in zip(table, members)]
    out = []
    for t in tiles_of(shape, run):
        idx = overlapping(boxes, t)
        if idx:
            hit = {exposure[i] for i in idx}
            out.append(TileWork(run, t, tuple(sorted(m for m, e in zip(members, exposure) if e in hit)), grid_file,
                                median_file))
    return out
