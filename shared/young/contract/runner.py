"""The tool contract, written once (DESIGN.md, "The tool contract").

A tool describes its step with a :class:`ToolSpec` (what it consumes, how a
product is named, the function that makes one product) and calls :func:`run`.
Everything else is here: the input list, resume and ``--force``, atomic
writes, one ``.log`` per product, provenance keywords, CRDS prefetch before
parallel work, serial / ``--jobs N`` / MPI execution, product paths on stdout
in input order, one-line errors, the summary and the exit status.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from young import __version__
from young.contract import atomic, crdsenv, inputs, naming, parallel, provenance
from young.contract import config as configmod
from young.contract.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    InputError,
    InternalError,
    SkipError,
    UsageError,
    YoungError,
    internal,
)


@dataclass(frozen=True)
class ToolSpec:
    """What a per-file tool does.

    Attributes
    ----------
    name : str
        Tool name, e.g. ``young-stage1``.
    section : str
        Its configuration section (``stage1``).
    consumes : tuple of str
        JWST suffixes read when a directory is given.
    product : callable
        ``product(src, output_dir, params) -> Path``.
    process : callable
        ``process(job) -> dict | None``: write the product to ``job.tmp``;
        return extra header keywords.  Module-level (it is pickled).
    validate : callable, optional
        ``validate(src, params)``: raise :class:`InputError` for bad input.
    accept : callable, optional
        Name filter for directory expansion.
    build_params : callable, optional
        ``build_params(section: dict, cli: dict) -> dict`` the parameters
        that shape the product (hashed for resume, recorded in the header).
    uses_crds : bool
        Prefetch references before parallel work and compute offline.
    applied_keyword : str, optional
        Header keyword that marks the correction as applied; an input that
        has it is refused (``--force`` overrides).
    warm : callable, optional
        ``warm()`` imports what ``process`` needs (jwst's pipelines take
        seconds): run in the other workers while the prefetch runs.
    """

    name: str
    section: str
    consumes: tuple[str, ...]
    product: Callable[[Path, Path | None, dict], Path]
    process: Callable[["Job"], dict | None]
    validate: Callable[[Path, dict], Any] | None = None
    accept: Callable[[naming.ProductName], bool] | None = None
    build_params: Callable[[dict, dict], dict] | None = None
    uses_crds: bool = False
    applied_keyword: str | None = None
    warm: Callable[[], Any] | None = None


@dataclass
class Common:
    """The options every tool has."""

    inputs: list[str] = field(default_factory=list)
    config: str | None = None
    output_dir: str | None = None
    force: bool = False
    sets: list[str] = field(default_factory=list)
    crds_context: str | None = None
    jobs: int = 1
    verbose: int = 0
    quiet: bool = False
    debug: bool = False
    prefetch: bool | None = None


@dataclass
class Job:
    """One file's work, as the step's ``process`` function sees it."""

    src: Path
    dst: Path
    tmp: Path
    params: dict
    force: bool
    log: logging.Logger
    header: Any = None


@dataclass
class Task:
    index: int
    src: str
    dst: str


@dataclass
class Outcome:
    """Result of one input."""

    index: int
    src: str
    dst: str | None
    status: str  # done | skipped | failed
    message: str = ""
    seconds: float = 0.0
    rss_mb: float = 0.0
    rank: int = 0
    traceback: str | None = None


@dataclass
class Plan:
    tasks: list[Task]
    outcomes: list[Outcome]
    params: dict
    env: dict
    n_inputs: int
    warnings: list[str]


# --------------------------------------------------------------------------- worker side

def tune_malloc() -> None:
    """Keep freed large blocks for reuse (glibc), so big temporaries are not faulted in anew.

    glibc hands blocks above a dynamic threshold back to the kernel when they
    are freed, so each new full-frame temporary is page-faulted and zeroed
    again: ~34 000 minor faults and ~0.3 s of system time per young-fnoise
    image.  Fixing ``M_MMAP_THRESHOLD`` at its maximum (32 MiB) and
    ``M_TRIM_THRESHOLD`` high keeps them in the heap (measured: 3x fewer
    faults, young-fnoise ~5 % and Detector1 ~3 % faster per full frame).
    Peak memory is unchanged; the resident size stays at the peak until the
    process ends.  No-op off glibc, or with ``YOUNG_MALLOC_TUNE=0``.
    """
    if os.environ.get("YOUNG_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (its maximum on 64-bit)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        pass


def worker_init(env: dict, verbose: int) -> None:
    """Set up a worker process: environment, logging (jwst's INFO only with -v), malloc."""
    os.environ.update(env)
    tune_malloc()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    if verbose > 0:
        h = logging.StreamHandler(sys.stderr)
        h.setLevel(logging.INFO if verbose > 1 else logging.WARNING)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(h)
    logging.captureWarnings(True)
    try:  # CRDS keeps its own console handler: route it through logging instead
        from crds.core import log as crds_log

        crds_log.remove_console_handler()
    except Exception:
        pass


def set_environment(changes: dict) -> None:
    """Apply environment changes in a worker process (e.g. CRDS compute mode after prefetch)."""
    os.environ.update(changes)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def execute(payload) -> Outcome:
    """Make one product (runs in the worker).  Never raises for a bad input."""
    spec, task, params, force, debug = payload
    t0 = time.monotonic()
    src, dst = Path(task.src), Path(task.dst)
    out = Outcome(task.index, task.src, task.dst, "failed", rank=parallel.process_rank())
    logfile = naming.log_path(dst)
    handler = None
    tmp_log = None
    try:
        try:
            atomic.check_writable(dst.parent)
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"cannot write products to {dst.parent}: "
                             f"{getattr(exc, 'strerror', None) or exc}", src) from None
        header = spec.validate(src, params) if spec.validate else None
        if spec.applied_keyword and header is not None and header.get(spec.applied_keyword) and not force:
            raise InputError(
                f"already corrected ({spec.applied_keyword}={header.get(spec.applied_keyword)}); "
                "refusing to apply it twice (--force overrides)", src)
        # first: a writer killed after moving its product into place (before removing its temporary
        # folder) leaves a finished product whose temporaries only this cleans
        atomic.clean_stale(dst)
        atomic.clean_stale(logfile)
        if not force and up_to_date(src, dst, params):
            out.status, out.message = "skipped", "up to date"
            return out
        tmp_log = atomic.tmp_name(logfile, ".log")
        handler = logging.FileHandler(tmp_log, mode="w", encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        logging.getLogger().addHandler(handler)
        log = logging.getLogger(f"young.{spec.section}")
        log.info("%s %s: %s -> %s", spec.name, __version__, src, dst)
        log.info("parameters: %s", provenance.params_json(params))
        log.info("CRDS: %s", " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                      if k.startswith("CRDS_") and k != "CRDS_PATH_OVERRIDE"))
        with atomic.atomic_path(dst) as tmp:
            keywords = spec.process(Job(src, dst, tmp, params, force, log, header)) or {}
            provenance.stamp(tmp, spec.name, params, keywords)
        out.status = "done"
        log.info("wrote %s", dst)
    except SkipError as exc:
        out.status, out.message = "skipped", exc.line()
    except YoungError as exc:
        out.message = exc.line() if exc.path else f"{src}: {exc.line()}"
        if debug:
            out.traceback = traceback.format_exc()
    except BaseException as exc:  # noqa: BLE001 - one failing file must not stop the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        reason = crdsenv.missing_reference_message(exc, src) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        out.message = f"{src}: {reason}"
        out.traceback = traceback.format_exc()
        logging.getLogger(f"young.{spec.section}").error("failed: %s\n%s", reason, out.traceback)
        if not debug:
            out.traceback = None
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
            if tmp_log is not None and tmp_log.exists():
                os.replace(tmp_log, logfile)
        out.seconds = time.monotonic() - t0
        out.rss_mb = _rss_mb()
    if out.status != "done" and out.status != "skipped":
        out.dst = None
    return out


def up_to_date(src: Path, dst: Path, params: dict) -> bool:
    """A product newer than its input, made with the same parameters."""
    try:
        if dst.stat().st_mtime < src.stat().st_mtime:
            return False
    except FileNotFoundError:
        return False
    return provenance.read_stamp(dst).get("YNGPHASH") == provenance.params_hash(params)


def _died(payload, reason: str) -> Outcome:
    _, task, *_ = payload
    return Outcome(task.index, task.src, None, "failed", f"{task.src}: {reason}", rank=parallel.process_rank())


# --------------------------------------------------------------------------- driver side

def plan(spec: ToolSpec, common: Common, cli: dict, stdin=None) -> Plan:
    """Load config, set CRDS up, build the task list, prefetch references.

    Raises
    ------
    UsageError
    """
    cfg = configmod.load(common.config)
    section = cfg.section(spec.section)
    warnings_: list[str] = list(cfg.warnings)
    env_before = dict(os.environ)
    if spec.uses_crds:
        crdsenv.configure(section, common.crds_context)
    steps = cfg.step_parameters(spec.section)
    steps.update(configmod.parse_set(common.sets))
    cli = dict(cli)
    cli["steps"] = steps
    params = spec.build_params(section, cli) if spec.build_params else {k: v for k, v in cli.items() if v is not None}
    out_dir = common.output_dir or section.get("output_dir")
    if out_dir:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder: {exc.strerror}", out_dir) from None
    items = inputs.collect(common.inputs, spec.consumes, accept=spec.accept, stdin=stdin,
                           warn=warnings_.append)
    tasks: list[Task] = []
    outcomes: list[Outcome] = []
    dsts: dict[Path, str] = {}
    for i, item in enumerate(items):
        if item.error is not None:
            outcomes.append(Outcome(i, str(item.path), None, "failed", item.error.line()))
            continue
        try:
            dst = spec.product(item.path, out_dir, params)
        except ValueError as exc:
            outcomes.append(Outcome(i, str(item.path), None, "failed", f"{item.path}: {exc}"))
            continue
        except YoungError as exc:
            outcomes.append(Outcome(i, str(item.path), None, "failed", exc.line()))
            continue
        if dst.resolve() == item.path.resolve():
            outcomes.append(Outcome(i, str(item.path), None, "failed",
                                    f"{item.path}: product would overwrite the input; inputs are never modified"))
            continue
        if dst in dsts:
            outcomes.append(Outcome(i, str(item.path), None, "failed",
                                    f"{item.path}: makes the same product as {dsts[dst]} ({dst})"))
            continue
        dsts[dst] = str(item.path)
        tasks.append(Task(i, str(item.path), str(dst)))
    env = {k: v for k, v in os.environ.items() if env_before.get(k) != v}
    return Plan(tasks, outcomes, params, env, len(items), warnings_)


class Reporter:
    """Ordered stdout, one-line errors and progress on stderr, the summary."""

    def __init__(self, tool: str, n: int, common: Common, stdout=None, stderr=None):
        self.tool, self.n, self.common = tool, n, common
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.results: dict[int, Outcome] = {}
        self.next = 0
        self.t0 = time.monotonic()
        self.progress = None
        if not common.quiet and self.stderr.isatty() and n > 1:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
            )

            self.progress = Progress("[bold]" + tool, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=Console(file=self.stderr), transient=True)
            self.progress.start()
            self.bar = self.progress.add_task(tool, total=n)

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stderr, flush=True)

    def add(self, out: Outcome) -> None:
        self.results[out.index] = out
        if out.status == "failed":
            self.say(f"{self.tool}: {out.message}")
            if out.traceback and self.common.debug:
                self.say(out.traceback.rstrip())
        elif self.common.verbose and not self.common.quiet:
            self.say(f"{self.tool}: {out.status} {out.dst} ({out.seconds:.2f} s)")
        if self.progress is not None:
            self.progress.advance(self.bar)
        while self.next in self.results:
            r = self.results[self.next]
            if r.status in ("done", "skipped") and r.dst:
                print(r.dst, file=self.stdout, flush=True)
            self.next += 1

    def finish(self) -> int:
        if self.progress is not None:
            self.progress.stop()
        counts = {s: sum(1 for r in self.results.values() if r.status == s) for s in ("done", "skipped", "failed")}
        if not self.common.quiet:
            peak = max((r.rss_mb for r in self.results.values()), default=0.0)
            self.say(f"{self.tool}: {counts['done']} done, {counts['skipped']} up to date, "
                     f"{counts['failed']} failed in {time.monotonic() - self.t0:.1f} s"
                     + (f" (peak memory per process {peak:.0f} MB)" if peak else ""))
        return EXIT_FAILED if counts["failed"] else EXIT_OK


def _terminate(signum, frame):  # so atomic writes clean up on SIGTERM (Slurm time limits)
    raise SystemExit(128 + signum)


def run(spec: ToolSpec, common: Common, cli: dict, stdin=None) -> int:
    """Run a per-file tool over its inputs; return the exit status.

    Order of a parallel run with prefetch (a CRDS server is configured, see
    :func:`_wants_prefetch`): rank 0 plans and sends the plan;
    every other worker (MPI rank, or local ``--jobs`` process) starts and
    imports the tool's code (``ToolSpec.warm``) while rank 0's first worker
    validates the inputs and fetches the references; the updated plan (failed
    inputs, CRDS compute-mode environment) is sent again and the farm starts.
    """
    signal.signal(signal.SIGTERM, _terminate)
    comm = parallel.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    verbose = 0 if common.quiet else common.verbose
    result: Plan | UsageError
    if rank == 0:
        result = guarded("reading the inputs", plan, spec, common, cli, stdin=stdin)
    if comm is not None:  # rank 0 always sends something: no rank may wait for a rank that gave up
        result = parallel.quiet_bcast(comm, result if rank == 0 else None)
    if isinstance(result, YoungError):
        return stopped(spec.name, result, common, rank)
    os.environ.update(result.env)
    first_slot, warmed = None, []
    in_parallel = comm is not None or common.jobs > 1
    if spec.uses_crds and result.tasks and _wants_prefetch(common, in_parallel):
        initargs = (result.env, verbose)   # the same dict: _prefetch adds the compute-mode variables
        n_warm = 1 if comm is not None and rank > 0 else (0 if comm is not None else
                                                          min(common.jobs, len(result.tasks)) - 1)
        warmed = [parallel.WorkerSlot(worker_init, initargs) for _ in range(n_warm)]
        warming = [w.submit(warm_up, spec) for w in warmed]
        changed: dict | UsageError = {}
        if rank == 0:
            # prefetch inside the first worker process: it imports jwst once for both jobs
            first_slot = parallel.WorkerSlot(worker_init, initargs)
            changed = guarded("fetching the references", _prefetch, spec, common, result, first_slot)
        if comm is not None:
            sent = parallel.quiet_bcast(comm, (result, changed) if rank == 0 else None)
            if rank > 0:
                result, changed = sent
        if isinstance(changed, YoungError):
            for w in warmed + ([first_slot] if first_slot else []):
                w.close()
            return stopped(spec.name, changed, common, rank)
        os.environ.update(changed)
        for w, fut in zip(warmed, warming):
            w.initargs = (result.env, verbose)  # for a replacement process
            try:
                fut.result()
            except Exception:  # a failed warm-up only costs time: the file's own call reports the problem
                w.reset()
            w.call(set_environment, changed)
    elif spec.uses_crds and in_parallel and crdsenv.is_offline():
        # serverless, no prefetch: parallel workers still never write to the shared cache
        crdsenv.compute_mode(result.env)
        os.environ.update(result.env)
    reporter = Reporter(spec.name, result.n_inputs, common) if rank == 0 else None
    if reporter is not None:
        for w in result.warnings:
            reporter.say(f"{spec.name}: warning: {w}")
        for o in result.outcomes:
            reporter.add(o)
    payloads = [(spec, t, result.params, common.force, common.debug) for t in result.tasks]
    parallel.run(
        execute, payloads, (reporter.add if reporter else (lambda o: None)),
        jobs=common.jobs, initializer=worker_init, initargs=(result.env, verbose),
        died=_died, comm=comm, first_slot=first_slot, ready=warmed,
    )
    status = reporter.finish() if reporter is not None else EXIT_OK
    if comm is not None:
        status = parallel.quiet_bcast(comm, status if rank == 0 else None)
    return status


def guarded(during: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, or the :class:`YoungError` it raised, or an :class:`InternalError` for anything else.

    Rank 0's shared steps (planning, prefetch) go through this so that even a
    bug or a killed helper process reaches the other ranks as a message;
    an exception would leave them waiting at the broadcast until the job's
    time limit.
    """
    try:
        return fn(*args, **kwargs)
    except YoungError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 -- reported in one line, traceback with --debug
        return internal(exc, during)


def stopped(tool: str, err: YoungError, common: Common, rank: int = 0) -> int:
    """Report a run-stopping error once (rank 0) and return its exit status (2 usage, else 1)."""
    if rank == 0:
        if common.debug and isinstance(err, InternalError):
            print(err.details.rstrip(), file=sys.stderr)
        print(f"{tool}: {err.line()}", file=sys.stderr)
    return EXIT_USAGE if isinstance(err, UsageError) else EXIT_FAILED


def warm_up(spec: ToolSpec) -> None:
    """Worker side of the warm-up: import the tool's code while rank 0 prefetches."""
    import importlib

    importlib.import_module(spec.process.__module__)
    if spec.warm is not None:
        spec.warm()


def _wants_prefetch(common: Common, in_parallel: bool) -> bool:
    """Prefetch when asked, or by default when files run in parallel with a CRDS server to fetch from.

    Serially jwst fetches as it goes.  In serverless mode (``make all`` after
    ``young-refs``, or a cache-only set-up) there is nothing to fetch: the
    workers go straight to work on the read-only cache (:func:`run`), and a
    reference missing from it is named per file by the worker.
    """
    if common.prefetch is not None:
        return common.prefetch
    return in_parallel and not crdsenv.is_offline()


def _validate_and_prefetch(spec: ToolSpec, srcs: list[str], params: dict, context: str | None):
    """Worker side of the prefetch: validation errors first, then CRDS."""
    bad: dict[str, str] = {}
    good = []
    for src in srcs:
        try:
            if spec.validate is not None:
                spec.validate(Path(src), params)
            good.append(src)
        except InputError as exc:
            bad[src] = exc.line()
    for rep in crdsenv.prefetch(good, context=context):
        if rep.error is not None:
            bad[str(rep.path)] = rep.error.line()
    return bad


def _prefetch(spec: ToolSpec, common: Common, result: Plan, slot: parallel.WorkerSlot) -> dict:
    """Fetch references once before parallel work; failures become per-file outcomes.

    Returns the environment changes of the CRDS compute mode (already applied
    to ``slot`` and to ``result.env``) for the other workers.
    """
    bad = slot.call(_validate_and_prefetch, spec, [t.src for t in result.tasks], result.params,
                    common.crds_context)
    if bad:
        keep = []
        for t in result.tasks:
            if t.src in bad:
                result.outcomes.append(Outcome(t.index, t.src, None, "failed", bad[t.src]))
            else:
                keep.append(t)
        result.tasks = keep
    before = dict(os.environ)
    crdsenv.compute_mode()
    changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
    result.env.update(changed)
    slot.call(set_environment, changed)
    return changed
