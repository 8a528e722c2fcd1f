"""Stage 3's driver (``young-stage3``): per-filter mosaics, segmentation maps and catalogs on one common grid.

What it does (docs/algorithms.md, "Stage 3"):

1. The cal files are grouped by FILTER and PUPIL
   (:func:`young.stage3.exposures.group_exposures`); an unknown filter is an error.
2. The reference group -- the longest wavelength that can be aligned, or
   ``--reference-filter`` -- is reduced first.  With ``--refcat`` (a file with
   RA/DEC columns, or a Gaia catalog name when the network is reachable) it is
   aligned to that catalog, otherwise only internally.
3. Its mosaic fixes the grid (``<product>_grid.asdf``, resample's
   ``output_wcs`` of every other group) and its catalog becomes
   ``<product>_refcat.ecsv``, the ``abs_refcat`` of every other group.
4. The other groups then run in parallel (local processes or MPI ranks)
   within a memory budget (``--max-memory``); a group whose estimate does not
   fit in memory runs with jwst's on-disk mode.

Each group is a task of the tool contract (:mod:`young.stage3.group` under
:func:`young.contract.runner.execute`): resume, atomic products, one log per
group, one-line failures; the :class:`~young.contract.reporter.Reporter` prints
the products in group order.  A failing group is reported and the others keep
their products.
"""

from __future__ import annotations

import os
import re
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from young.contract import config as configmod
from young.contract import crdsenv, inputs, parallel
from young.contract.errors import EXIT_OK, InputError, UsageError, YoungError
from young.contract.pipelinecheck import check_steps
from young.contract.runner import (
    Common,
    Outcome,
    Reporter,
    calibration,
    check_config,
    env_view,
    execute,
    guarded,
    set_environment,
    stopped,
    worker_init,
)
from young.stage3.exposures import Exposure, Group, group_exposures, read_exposure, reference_order
from young.stage3.grid import covering_parameters
from young.stage3.group import STAGE3, TOOL, GroupRun, parameters, reference_info, task
from young.stage3.memory import (
    available_memory,
    group_estimates,
    mosaic_pixels,
    parse_memory,
    plan_memory,
    tile_size_for,
)
from young.stage3.params import GRID_PARAMETERS, IMAGE3_STEPS, parse_extract, step_parameters, truthy
from young.stage3.refcat import RefcatSpec, resolve_refcat
from young.stage3.tiles import DEFAULT_MARGIN, DEFAULT_MARGIN_BOXES

#: jwst's source_catalog bkg_boxsize default (jwst 3.0)
JWST_BKG_BOXSIZE = 1000


@dataclass
class Stage3Plan:
    """What the driver found before running anything."""

    groups: list[Group]
    failed_inputs: list[tuple[str, str]]          # (path, message)
    steps: dict
    extract: list
    qa: bool
    refcat: RefcatSpec
    out_dir: Path
    budget: int
    jobs: int
    env: dict
    reference: str | None
    warnings: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    tile_size: int | None = None      # core size of the tiles (None: untiled)
    margin: int = DEFAULT_MARGIN
    align: int = 1000                 # tile cores: multiples of the source catalog's bkg_boxsize
    stitch: bool = False


def default_out_dir(paths: Sequence[str | Path]) -> Path:
    """Default output folder: the inputs' common folder."""
    parents = {Path(p).resolve().parent for p in paths}
    if len(parents) == 1:
        return parents.pop()
    return Path(os.path.commonpath([str(p) for p in parents]))


def make_plan(common: Common, refcat: str | None, extract: str | None, max_memory: str | None,
              reference: str | None, qa: bool = True, stdin=None, tile_size: str | None = None,
              margin: int | None = None, stitch: bool | None = None) -> Stage3Plan:
    """Read config and inputs, group the files, resolve the reference catalog and the budget.

    Raises
    ------
    UsageError
    """
    cfg = configmod.load(common.config)
    check_config(STAGE3, cfg)
    section = cfg.section("stage3")
    warnings_ = list(cfg.warnings)
    env = dict(os.environ)
    crdsenv.configure(section, common.crds_context, env)
    context = crdsenv.resolve_context(env)
    env = {k: v for k, v in env.items() if os.environ.get(k) != v}
    user_steps = {**cfg.step_parameters("stage3"), **configmod.parse_set(common.sets)}
    steps = step_parameters(section, user_steps)
    for key in steps:
        if key.split(".")[0] not in IMAGE3_STEPS:
            raise UsageError(f"--set/config: Image3Pipeline has no step '{key.split('.')[0]}' "
                             f"(steps: {', '.join(IMAGE3_STEPS)})")
    if user_steps:   # parameter names and values against the steps' own specs (imports jwst)
        check_steps("Image3Pipeline", user_steps)
    ext = parse_extract(extract, section)
    budget = parse_memory(max_memory if max_memory is not None else section.get("max_memory"))
    # tiles follow the source catalog's background mesh (jwst's default box: 1000 pixels)
    align = int(float(steps.get("source_catalog.bkg_boxsize", JWST_BKG_BOXSIZE)))
    margin = margin if margin is not None else section.get("tile_margin")
    margin = int(margin) if margin is not None else DEFAULT_MARGIN_BOXES * align
    if margin < 0:
        raise UsageError(f"--tile-margin {margin}: must be 0 or more pixels")
    stitched = bool(stitch if stitch is not None else truthy(section.get("stitch", False)))
    requested = parse_tile_size(tile_size if tile_size is not None else section.get("tile_size"), align)
    if requested not in (None, "auto") and ext:
        raise UsageError("--extract works on untiled mosaics only; with --tile-size use --stitch (SCI, ERR and "
                         "WHT in one file) or read the tiles' i2d files")
    if budget is None:
        budget = int(available_memory() * 0.8)
    jobs = common.jobs if common.jobs > 1 else int(section.get("jobs") or 1)
    items = inputs.collect(common.inputs, ("cal",), stdin=stdin, warn=warnings_.append, recursive=common.recursive)
    refcat_value = refcat if refcat is not None else section.get("refcat")
    spec = resolve_refcat(refcat_value, min_sources=int(steps.get("tweakreg.abs_minobj", 15)))
    failed: list[tuple[str, str]] = []
    exposures: list[Exposure] = []
    instruments: dict[str, int] = {}
    for item in items:
        if item.error is not None:
            failed.append((str(item.path), item.error.line()))
            continue
        try:
            e = read_exposure(item.path)
            exposures.append(e)
            instruments[e.instrument] = instruments.get(e.instrument, 0) + 1
        except InputError as exc:
            failed.append((str(item.path), exc.line()))
            m = re.search(r"INSTRUME=(\w+)", exc.message)
            if m:
                instruments[m.group(1)] = instruments.get(m.group(1), 0) + 1
    if len(instruments) > 1:
        warnings_.append("the inputs mix instruments (" + ", ".join(f"{k}: {v}" for k, v in sorted(instruments.items()))
                         + "); only the NIRCam imaging files are combined")
    out_dir = common.output_dir or section.get("output_dir")
    out_dir = Path(out_dir) if out_dir else (default_out_dir([e.path for e in exposures]) if exposures else Path("."))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder: {exc.strerror}", out_dir) from None
    groups = group_exposures(exposures)
    subtracted = [e.path for e in exposures if e.bkg_subtracted]
    if subtracted:
        # jwst's skymatch refuses images whose meta.background.subtracted (BKGSUB, set by young-bkg)
        # differs from its own `subtract` (default False); with subtract=True it matches what is left
        # of their sky and leaves the other inputs' levels consistent too
        user = steps.get("skymatch.subtract")
        if user is None:
            steps["skymatch.subtract"] = True
        elif str(user).strip().lower() in ("false", "0", "no") and not truthy(steps.get("skymatch.skip")):
            raise UsageError(f"skymatch.subtract=False cannot run on {len(subtracted)} background-subtracted "
                             f"input(s) (BKGSUB=T, e.g. {Path(subtracted[0]).name}): drop it or set "
                             "skymatch.skip=true")
    if not any(k.startswith("resample.pixel_scale") for k in steps) and not steps.get("resample.output_wcs"):
        scales = [g.pixel_scale for g in groups if g.pixel_scale]
        if scales:  # one scale for all filters: the finest native one (keeps the SW resolution)
            steps["resample.pixel_scale"] = round(min(scales), 6)
    if reference and groups:
        reference_order(groups, reference, True)  # validates the name
    user_grid = any(k.split(".", 1)[1] in GRID_PARAMETERS[2:] for k in steps if k.startswith("resample."))
    scale = steps.get("resample.pixel_scale")
    if groups and not user_grid and scale:
        # every filter on the one grid: widened beyond the reference's own footprint where needed
        first = reference_order(groups, reference, True)[0]
        cover = covering_parameters([e.footprint for e in exposures], first.footprint, float(scale))
        if cover is not None:
            steps.update({f"resample.{k}": v for k, v in cover.items()})
            warnings_.append(f"some exposures lie outside the {first.name} footprint: all filters go on a "
                             f"north-up grid of {cover['output_shape'][0]} x {cover['output_shape'][1]} pixels "
                             "covering every input")
    if groups and context.problem():   # after the inputs and options: their usage errors come first
        raise UsageError(context.problem())
    # a mosaic's references are its members': the context decides them (no per-product comparison)
    calib = {**calibration(STAGE3, context.name if context.certain else None), "references": False}
    plan = Stage3Plan(groups, failed, steps, ext, qa, spec, out_dir, budget, max(1, jobs), env, reference,
                      warnings_, calib)
    plan.align, plan.margin, plan.stitch = align, margin, stitched
    plan.tile_size = requested if requested != "auto" else auto_tile_size(plan)
    if plan.tile_size is not None and ext:
        why = ("--extract works on untiled mosaics only; with tiles use --stitch (SCI, ERR and WHT in one file) "
               "or read the tiles' i2d files")
        plan.warnings.append(f"a filter does not fit in memory untiled, so stage 3 runs in tiles of "
                             f"{plan.tile_size} pixels: {why}")
        plan.extract = []
    return plan


def parse_tile_size(value, align: int) -> int | str | None:
    """``--tile-size``: a number of pixels, ``auto`` (the default) or ``none`` (-> None).

    Raises
    ------
    UsageError
        Not a number, ``auto`` or ``none``, or fewer pixels than one background box (``align``).
    """
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    if text in ("", "none", "0", "off"):
        return None
    if text == "auto":
        return "auto"
    try:
        size = int(float(text))
    except ValueError:
        raise UsageError(f"--tile-size {value!r}: expected a number of pixels, 'auto' or 'none'") from None
    if size < align:
        raise UsageError(f"--tile-size {value!r}: tile cores are multiples of the source catalog's background box "
                         f"(source_catalog.bkg_boxsize={align}); give at least {align} or a smaller "
                         "bkg_boxsize with --set")
    return size


def auto_tile_size(plan: Stage3Plan) -> int | None:
    """``--tile-size auto``: None (untiled) when every group's untiled Image3 run fits in the memory budget
    (shared by the ``--jobs`` workers), else the core size of the largest tiles whose run does
    (:func:`young.stage3.memory.tile_size_for`), rounded down to the background box times a power of
    two -- so the layout, hence resume, does not change with small changes of free memory.  One
    layout serves every filter (they share the grid).
    """
    share = plan.budget / max(1, plan.jobs)
    sizes = []
    for g in plan.groups:
        im, _ = group_estimates(g, mosaic_pixels(g, plan.steps))
        if im > share:
            sizes.append(tile_size_for(g, int(share), plan.margin, plan.align))
    if not sizes:
        return None
    size = plan.align
    while size * 2 <= min(sizes):
        size *= 2
    if min(sizes) <= plan.align:
        plan.warnings.append(f"even tiles of {plan.align} pixels (source_catalog.bkg_boxsize) may not fit the memory "
                             f"budget of {share / 1024**3:.1f} GB per process; give more memory (--max-memory) or "
                             "fewer --jobs, or a smaller bkg_boxsize")
    return size


def prefetch_references(paths: Sequence[str]) -> dict[str, str]:
    """Fetch Image3's CRDS references for the groups' files (worker side); returns {path: error line}."""
    from jwst.pipeline import Image3Pipeline

    types = {f"pars-{Image3Pipeline.__name__.lower()}"}
    for step in Image3Pipeline.step_defs.values():
        types.update(getattr(step, "reference_file_types", []) or [])
        types.add(f"pars-{step.__name__.lower()}")
    bad = {}
    for rep in crdsenv.prefetch(paths, reftypes=sorted(types)):
        if rep.error is not None:
            bad[str(rep.path)] = rep.error.line()
    return bad


def prefetch_in(slot: parallel.WorkerSlot, plan: Stage3Plan, reporter: Reporter) -> None:
    """Fetch the groups' references in ``slot`` (a worker), then switch the run to offline mode."""
    bad = slot.call(prefetch_references, [g.members[0] for g in plan.groups])
    for msg in bad.values():
        reporter.warn(msg)
    changed = crdsenv.compute_mode({})
    plan.env.update(changed)
    slot.call(set_environment, changed)


def _payload(index: int, run: GroupRun, common: Common, plan: Stage3Plan):
    return (STAGE3, task(index, run), parameters(run), common.force, common.debug, plan.calibration)


def _died(payload, reason: str) -> Outcome:
    _, t, *_ = payload
    return Outcome(t.index, t.src, None, "failed", f"{t.label}: {reason}", rank=parallel.process_rank())


def _call(slot: parallel.WorkerSlot, payload) -> Outcome:
    """Run one group in ``slot``; a dead worker fails the group and the slot is renewed."""
    try:
        return slot.call(execute, payload)
    except BrokenProcessPool:
        slot.reset()
        return _died(payload, "worker process died (killed or crashed, e.g. out of memory) while reducing it")


def _run(plan: Stage3Plan, common: Common, index: int, role: str, in_memory: bool, refcat: RefcatSpec,
         reference: str = "", info: dict | None = None) -> GroupRun:
    info = info or {}
    return GroupRun(plan.groups[index], str(plan.out_dir), plan.steps, role, in_memory, plan.extract, plan.qa,
                    refcat, reference, info.get("grid_file", ""), info.get("grid_digest", ""))


def reduce_reference(plan: Stage3Plan, common: Common, slot: parallel.WorkerSlot, reporter: Reporter,
                     prefetch: bool) -> tuple[GroupRun | None, dict, dict[int, Outcome]]:
    """Reduce the reference group: the first candidate of :func:`reference_order` that succeeds.

    Returns
    -------
    (run, info, failed)
        The reference group's run and its grid/catalog (:func:`young.stage3.group.reference_info`),
        None and {} if no group could be the reference; the candidates that failed, by group index.
    """
    if prefetch:
        prefetch_in(slot, plan, reporter)
    alone = plan.refcat.kind != "none" or bool(plan.steps.get("tweakreg.skip"))
    candidates = reference_order(plan.groups, plan.reference, alone)
    failed: dict[int, Outcome] = {}
    if not candidates:
        msg = ("too small to align: no filter has two or more exposures for tweakreg; "
               "give an external catalog (--refcat FILE) or skip alignment (--set tweakreg.skip=true)")
        for i, g in enumerate(plan.groups):
            failed[i] = Outcome(i, str(plan.out_dir / g.name), None, "failed", f"{plan.out_dir / g.name}: {msg}")
        return None, {}, failed
    if plan.reference and candidates[0].name != reference_order(plan.groups, plan.reference, True)[0].name:
        reporter.warn(f"--reference-filter {plan.reference}: that group has a single exposure "
                      "and cannot be aligned on its own; using the longest wavelength that can")
    for g in candidates:
        i = plan.groups.index(g)
        im, _ = group_estimates(g, mosaic_pixels(g, plan.steps))
        if im > plan.budget:
            reporter.say(f"{TOOL}: reference group {g.name} uses jwst's on-disk mode to stay within the memory budget")
        run = _run(plan, common, i, "reference", im <= plan.budget, plan.refcat)
        res = _call(slot, _payload(i, run, common, plan))
        if res.status in ("done", "skipped"):
            reporter.add(res)
            return run, reference_info(run), failed
        failed[i] = res
        reporter.warn(f"reference group {g.name} failed; trying the next longest wavelength")
    return None, {}, failed


def member_runs(plan: Stage3Plan, common: Common, ref: GroupRun, info: dict, failed, jobs: int,
                budget: int) -> tuple[list[tuple[int, GroupRun]], int]:
    """Runs of the groups after the reference, and how many run at once within ``budget``."""
    ref_index = plan.groups.index(ref.group)
    rest = [i for i in range(len(plan.groups)) if i != ref_index and i not in failed]
    ny, nx = info["shape"]
    ests = [group_estimates(plan.groups[i], ny * nx) for i in rest]
    k, in_mem = plan_memory(ests, budget, jobs)
    refspec = RefcatSpec("file", info["refcat_file"], info["refcat_digest"])
    return [(i, _run(plan, common, i, "member", im, refspec, ref.group.name, info)) for i, im in zip(rest, in_mem)], k


def run(common: Common, refcat: str | None = None, extract: str | None = None, max_memory: str | None = None,
        reference: str | None = None, qa: bool = True, stdin=None, tile_size: str | None = None,
        margin: int | None = None, stitch: bool | None = None) -> int:
    """The ``young-stage3`` tool: returns the exit status (0 all groups done, 1 some failed, 2 usage).

    Under ``mpiexec``/``srun`` rank 0 plans and reduces the reference group,
    then every rank takes groups from a dynamic queue (``--max-memory`` is then
    the budget of one rank); otherwise ``--jobs N`` local processes share the
    budget.
    """
    comm = parallel.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    verbose = 0 if common.quiet else common.verbose
    plan: Stage3Plan | YoungError | None = None
    if rank == 0:
        plan = guarded("reading the inputs", make_plan, common, refcat, extract, max_memory, reference,
                       qa=qa, stdin=stdin, tile_size=tile_size, margin=margin, stitch=stitch)
    if comm is not None:  # rank 0 always sends something: no rank may wait for a rank that gave up
        plan = parallel.quiet_bcast(comm, plan)
    if isinstance(plan, YoungError):
        return stopped(TOOL, plan, common, rank)
    reporter = Reporter(TOOL, len(plan.groups), common, unit="group(s) ", details=True) if rank == 0 else None
    if reporter is not None:
        for w in plan.warnings:
            reporter.warn(w)
        for _, msg in plan.failed_inputs:
            reporter.reject(msg)
    if not plan.groups:
        return reporter.finish() if reporter is not None else EXIT_OK

    if plan.tile_size is not None:
        from young.stage3.tiled_driver import run_tiled

        return run_tiled(plan, common, comm, reporter, verbose, _died, prefetch_in)
    slot = parallel.WorkerSlot(worker_init, (plan.env, verbose)) if rank == 0 else None
    shared = None
    if rank == 0:
        in_parallel = comm is not None or plan.jobs > 1
        got = guarded("reducing the reference group", reduce_reference, plan, common, slot, reporter,
                      prefetch=in_parallel and not crdsenv.is_offline(env_view(plan.env)))
        if isinstance(got, YoungError):
            shared = got
        else:
            ref, info, failed = got
            for res in failed.values():
                reporter.add(res)
            if ref is None:
                for i, g in enumerate(plan.groups):
                    if i not in failed:
                        reporter.add(Outcome(i, str(plan.out_dir / g.name), None, "failed",
                                             f"{plan.out_dir / g.name}: not reduced: no reference group could be "
                                             "reduced"))
            shared = (ref, info, failed, plan.env)
    if comm is not None:
        shared = parallel.quiet_bcast(comm, shared)
    if isinstance(shared, YoungError):
        if slot is not None:
            slot.close()
        if reporter is not None:
            reporter.finish()
        return stopped(TOOL, shared, common, rank)
    ref, info, failed, env = shared
    if ref is not None:
        size = comm.Get_size() if comm is not None else 1
        jobs = size if comm is not None else plan.jobs
        runs, k = member_runs(plan, common, ref, info, failed, jobs, plan.budget * size)
        payloads = [_payload(i, r, common, plan) for i, r in runs]
        if rank == 0 and runs:
            if comm is None and k < min(jobs, len(runs)):
                reporter.warn(f"the memory budget ({plan.budget / 1024**3:.1f} GB) lets {k} "
                              f"group(s) run at once instead of {min(jobs, len(runs))}")
            n_disk = sum(1 for _, r in runs if not r.in_memory)
            if n_disk:
                reporter.say(f"{TOOL}: {n_disk} group(s) use jwst's on-disk mode to stay within the memory budget")
        on_result = reporter.add if reporter is not None else (lambda o: None)
        if payloads and comm is not None:
            parallel.run(execute, payloads, on_result, initializer=worker_init, initargs=(env, verbose),
                         died=_died, comm=comm, first_slot=slot)
            slot = None
        elif payloads and k > 1:
            parallel.run(execute, payloads, on_result, jobs=k, initializer=worker_init,
                         initargs=(env, verbose), died=_died, first_slot=slot)
            slot = None
        else:
            for p in payloads:
                on_result(_call(slot, p))
    if slot is not None:
        slot.close()
    status = reporter.finish() if reporter is not None else EXIT_OK
    if comm is not None:
        status = parallel.quiet_bcast(comm, status)
    return status

