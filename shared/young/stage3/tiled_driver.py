"""Orchestration of the tiled stage 3: the phases of :mod:`young.stage3.tiled`, farmed over workers or ranks.

Phases, each a farm of tasks over the ``--jobs`` workers or the MPI ranks
(the workers stay up from one phase to the next, so jwst is imported once):

1. the reference group's align task;
2. its tiles;
3. its merge (catalog, tile index, ``--stitch``; its reference catalog);
4. every other group's align task (aligned to that catalog, on the reference's grid);
5. all their tiles;
6. their merges.

A group whose align or tile task fails is reported as failed with the task's
one-line reason; the other groups go on.  Under MPI rank 0 plans each phase
and sends every rank the same task list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from young.contract import crdsenv, parallel
from young.contract.errors import EXIT_OK
from young.contract.runner import Common, Outcome, Reporter, env_view, execute, set_environment, worker_init
from young.stage3.exposures import reference_order
from young.stage3.memory import group_estimates
from young.stage3.refcat import RefcatSpec, positions_digest, read_table
from young.stage3.tiled import (
    ALIGN,
    MERGE,
    TILE,
    MergeWork,
    TiledRun,
    align_paths,
    align_task,
    merge_paths,
    merge_task,
    read_align_table,
    tile_task,
    tile_works,
)

# ``plan`` below is the driver's Stage3Plan: the driver calls this module and passes its own helpers
# in, so nothing here imports the driver (no import cycle)


class _Farm:
    """Runs one phase's payloads on every rank / worker and collects the outcomes on rank 0."""

    def __init__(self, plan, comm, verbose: int, died: Callable):
        self.plan, self.comm, self.verbose, self.died = plan, comm, verbose, died
        self.rank = comm.Get_rank() if comm is not None else 0
        # every rank (or the one local process) starts one worker now; a phase may add more
        self.slots: list[parallel.WorkerSlot] = [parallel.WorkerSlot(worker_init, (plan.env, verbose))]

    def run(self, payloads: list | None) -> list[Outcome]:
        """Run ``payloads`` (rank 0's list; the others pass None); outcomes in payload order on rank 0."""
        if self.comm is not None:
            payloads = parallel.quiet_bcast(self.comm, payloads)
        if not payloads:
            return []
        got: dict[int, Outcome] = {}
        index = {p[1].index: k for k, p in enumerate(payloads)}

        def on_result(o: Outcome) -> None:
            got[index[o.index]] = o

        if self.comm is None and self.plan.jobs <= 1:   # serial: in the one worker, which keeps jwst imported
            from concurrent.futures.process import BrokenProcessPool

            for p in payloads:
                try:
                    on_result(self.slots[0].call(execute, p))
                except BrokenProcessPool:
                    self.slots[0].reset()
                    on_result(self.died(p, "worker process died (killed or crashed, e.g. out of memory)"))
        else:
            kept: list[parallel.WorkerSlot] = []
            first, rest = (self.slots[0], self.slots[1:]) if self.slots else (None, [])
            parallel.run(execute, payloads, on_result, jobs=self.plan.jobs, initializer=worker_init,
                         initargs=(self.plan.env, self.verbose), died=self.died, comm=self.comm, first_slot=first,
                         ready=rest, keep=kept)
            self.slots = kept
        return [got[k] for k in sorted(got)] if self.rank == 0 else []

    def close(self) -> None:
        for s in self.slots:
            s.close()
        self.slots = []


def _payloads(tasks_params, spec, common: Common, plan) -> list:
    return [(spec, t, params, common.force, common.debug, plan.calibration) for t, params in tasks_params]


def run_tiled(plan, common: Common, comm, reporter: Reporter | None, verbose: int, died: Callable,
              prefetch_in: Callable) -> int:
    """Reduce every group tile by tile; returns the exit status (as :func:`young.stage3.driver.run`).

    ``died(payload, reason)`` makes the outcome of a task whose worker died; ``prefetch_in(slot, plan,
    reporter)`` fetches the references in a worker (the driver's own).
    """
    rank = comm.Get_rank() if comm is not None else 0
    farm = _Farm(plan, comm, verbose, died)
    try:
        if rank == 0 and (comm is not None or plan.jobs > 1) and not crdsenv.is_offline(env_view(plan.env)):
            prefetch_in(farm.slots[0], plan, reporter)   # then offline: rank 0's worker and plan.env
        if comm is not None:   # every rank's worker computes offline too (as rank 0 decided)
            env = parallel.quiet_bcast(comm, plan.env if rank == 0 else None)
            if rank != 0:
                changed = {k: v for k, v in env.items() if plan.env.get(k) != v}
                plan.env.update(env)
                if changed:
                    farm.slots[0].call(set_environment, changed)
        _phases(plan, common, farm, reporter)
    finally:
        farm.close()
    status = reporter.finish() if reporter is not None else EXIT_OK
    if comm is not None:
        status = parallel.quiet_bcast(comm, status)
    return status


def _runs(plan) -> tuple[int | None, list[TiledRun]]:
    alone = plan.refcat.kind != "none" or bool(plan.steps.get("tweakreg.skip"))
    candidates = reference_order(plan.groups, plan.reference, alone)
    if not candidates:
        return None, []
    ref = plan.groups.index(candidates[0])
    runs = []
    share = plan.budget / max(1, plan.jobs)   # --jobs workers share the budget (an MPI rank has its own)
    for i, g in enumerate(plan.groups):
        # the align task holds the group's models in memory only when they fit in a process's share
        # of the budget; otherwise jwst's on-disk models (slower: each aligned model is written out)
        im, _ = group_estimates(g, 0)
        runs.append(TiledRun(g, str(plan.out_dir), plan.steps, "reference" if i == ref else "member", im <= share,
                             plan.refcat if i == ref else RefcatSpec("none"), plan.tile_size, plan.margin,
                             plan.stitch, align=plan.align))
    return ref, runs


def _fail(reporter: Reporter, i: int, run: TiledRun, message: str) -> None:
    folder = str(Path(run.out_dir) / run.group.name)
    reporter.add(Outcome(i, folder, None, "failed", message if message.startswith(folder) else f"{folder}: {message}"))


def _phases(plan, common: Common, farm: _Farm, reporter: Reporter | None) -> None:
    """The six phases (rank 0 plans; every rank farms)."""
    lead = farm.rank == 0
    ref, runs = _runs(plan) if lead else (None, [])
    if lead and ref is None:
        for i, r in enumerate(runs or [TiledRun(g, str(plan.out_dir), {}, "member", True, RefcatSpec("none"), 0, 0,
                                                False) for g in plan.groups]):
            _fail(reporter, i, r, "too small to align: no filter has two or more exposures for tweakreg; give an "
                                  "external catalog (--refcat FILE) or skip alignment (--set tweakreg.skip=true)")
    if farm.comm is not None:
        ref = parallel.quiet_bcast(farm.comm, ref)
    if ref is None:
        return
    alive: set[int] = set(range(len(runs))) if lead else set()
    # 1-3: the reference group
    info = _group_phases([ref], runs, plan, common, farm, reporter, alive)
    members = [i for i in range(len(plan.groups)) if i != ref]
    if lead:
        if ref not in alive:
            for i in members:
                _fail(reporter, i, runs[i], "not reduced: the reference group could not be reduced")
            members = []
        else:
            grid = str(align_paths(runs[ref])["grid"])
            refcat = merge_paths(runs[ref])["refcat"]
            spec = RefcatSpec("file", str(refcat.resolve()), positions_digest(read_table(refcat)))
            for i in members:
                runs[i] = TiledRun(plan.groups[i], str(plan.out_dir), plan.steps, "member", runs[i].in_memory, spec,
                                   plan.tile_size, plan.margin, plan.stitch, runs[ref].group.name,
                                   str(Path(grid).resolve()), info.get("grid_digest", ""), plan.align)
    if farm.comm is not None:
        members = parallel.quiet_bcast(farm.comm, members)
    # 4-6: every other group
    _group_phases(members, runs, plan, common, farm, reporter, alive)


def _group_phases(which: list[int], runs: list[TiledRun], plan, common: Common, farm: _Farm,
                  reporter: Reporter | None, alive: set[int]) -> dict:
    """Align, tile and merge the groups ``which`` (indices into ``plan.groups``); returns the last grid's digest."""
    lead = farm.rank == 0
    info: dict = {}
    if not which:
        return info
    # align
    payloads = _payloads([align_task(i, runs[i]) for i in which], ALIGN, common, plan) if lead else None
    outs = farm.run(payloads)
    shapes: dict[int, list[int]] = {}
    peak: dict[int, float] = {}   # a group's largest process (align and tiles), reported with its merge
    for i, o in zip(which, outs):
        _warn(reporter, o)
        peak[i] = o.rss_mb
        if o.status == "failed":
            alive.discard(i)
            _fail(reporter, i, runs[i], o.message)
        else:
            shapes[i] = _grid_shape(runs[i])
    # tiles
    works = []
    if lead:
        for i in which:
            if i in alive:
                p = align_paths(runs[i])
                table = read_align_table(p["table"])
                ws = tile_works(runs[i], table, shapes[i], str(p["grid"]), str(p["median"]))
                works += [(i, w) for w in ws]
        info["grid_digest"] = _digest(runs[which[0]]) if which[0] in alive else ""
    tps = [tile_task(k, w) for k, (_, w) in enumerate(works)]
    outs = farm.run(_payloads(tps, TILE, common, plan) if lead else None)
    failed_tiles: dict[int, list[str]] = {}
    for (i, _), o in zip(works, outs):
        _warn(reporter, o)
        peak[i] = max(peak.get(i, 0.0), o.rss_mb)
        if o.status == "failed":
            failed_tiles.setdefault(i, []).append(o.message)
    for i, msgs in failed_tiles.items():
        alive.discard(i)
        _fail(reporter, i, runs[i], f"{len(msgs)} tile(s) failed (rerun to redo only those): {msgs[0]}")
    # merge
    merges = []
    if lead:
        for i in which:
            if i in alive:
                tiles = tuple(w.tile for j, w in works if j == i)
                merges.append((i, MergeWork(runs[i], tiles, str(align_paths(runs[i])["grid"]), tuple(shapes[i]))))
    outs = farm.run(_payloads([merge_task(i, m) for i, m in merges], MERGE, common, plan) if lead else None)
    for (i, _), o in zip(merges, outs):
        if o.status == "failed":
            alive.discard(i)
        o.rss_mb = max(o.rss_mb, peak.get(i, 0.0))
        reporter.add(o)
    return info


def _warn(reporter: Reporter | None, o: Outcome) -> None:
    if reporter is not None:
        for w in o.warnings:
            reporter.warn(w)


def _grid_shape(run: TiledRun) -> list[int]:
    import asdf

    with asdf.open(str(align_paths(run)["grid"])) as af:
        return [int(n) for n in af.tree["array_shape"]]


def _digest(run: TiledRun) -> str:
    import hashlib

    return hashlib.sha1(Path(align_paths(run)["grid"]).read_bytes()).hexdigest()[:16]
