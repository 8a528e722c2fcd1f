"""The tool contract, written once: tasks, the runner that makes one product set, the reporter.

Every YOUNG tool, stage 3 included, describes its work as
:class:`~young.contract.records.Task` objects (inputs, a primary product, the parameters) and runs each through
:func:`execute`, which owns what the contract promises (docs/architecture.md):

* a product newer than its inputs and made with the same parameters is
  skipped (``--force`` redoes it);
* everything is written in a hidden work folder beside the product and moved
  into place only when complete, the primary product last, so a killed run
  never leaves a half-written product;
* provenance keywords go into the primary product's header;
* the product's ``.log`` is the log of the run that made it; a failed or
  interrupted attempt writes ``<product>.failed.log`` and leaves an earlier
  good product and its log alone;
* a bad input fails alone, with one line naming it and the reason.

:class:`~young.contract.reporter.Reporter` prints products on stdout in input order and the one-line
problems and the summary on stderr.  :func:`run` is the driver of the
per-file tools (plan, CRDS prefetch, serial / ``--jobs`` / MPI farm);
``young.stage3.driver`` drives its groups with the same pieces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

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
from young.contract.records import Common, Job, Made, Outcome, Plan, Task, ToolSpec, resolve
from young.contract.reporter import Reporter

__all__ = ["Common", "Job", "Made", "Outcome", "Plan", "Reporter", "Task", "ToolSpec", "calibration", "check_config",
           "execute", "plan", "resolve", "run", "stale_reason"]


# --------------------------------------------------------------------------- worker side

#: :attr:`Outcome.message` of a product that did not need redoing
UP_TO_DATE = "up to date"
#: the CRDS settings each product's log records
CRDS_LOGGED = ("CRDS_PATH", "CRDS_CONTEXT", "CRDS_SERVER_URL", "CRDS_READONLY_CACHE")

def tune_malloc() -> None:
    """Keep freed large blocks for reuse (glibc), so big temporaries are not faulted in anew.

    glibc hands blocks above a dynamic threshold back to the kernel when they
    are freed, so each new full-frame temporary is page-faulted and zeroed
    again.  Fixing ``M_MMAP_THRESHOLD`` at its maximum (32 MiB) and
    ``M_TRIM_THRESHOLD`` high keeps them in the heap (docs/performance.md).
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


def _configure_logging(verbose: int) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    if verbose > 0:
        h = logging.StreamHandler(sys.stderr)
        h.setLevel(logging.INFO if verbose > 1 else logging.WARNING)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(h)
    else:  # library chatter goes to the product logs only, never to Python's last-resort stderr handler
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)
    try:  # CRDS keeps its own console handler: route it through logging instead
        from crds.core import log as crds_log

        crds_log.remove_console_handler()
    except Exception:  # noqa: BLE001 - crds not installed or changed: its messages stay on its handler
        pass


def worker_init(env: dict, verbose: int) -> None:
    """Set up a worker process: the tool's environment (CRDS), logging (jwst's log only with -v), malloc."""
    os.environ.update(env)
    tune_malloc()
    _configure_logging(verbose)


@contextlib.contextmanager
def in_this_process(env: dict, verbose: int):
    """:func:`worker_init` for work done in the calling process, undone afterwards.

    A serial run works in the tool's own process; when that process is a
    caller's (a test, a notebook), its environment and root log handlers are
    restored when the run ends.
    """
    saved_env = {k: os.environ.get(k) for k in env}
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("py.warnings").handlers[:])
    try:
        os.environ.update(env)
        tune_malloc()  # process-wide but harmless: it only changes when freed memory goes back to the system
        _configure_logging(verbose)
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for h in list(root.handlers):
            root.removeHandler(h)
        root.setLevel(saved[0])
        for h in saved[1]:
            root.addHandler(h)
        logging.captureWarnings(False)


def set_environment(changes: dict) -> None:
    """Apply environment changes in a worker process (e.g. CRDS compute mode after prefetch)."""
    os.environ.update(changes)


def rss_mb() -> float:
    """Peak resident memory of this process and its waited-for children (MB)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0


def calibration(spec: ToolSpec, context: str | None) -> dict:
    """What besides the parameters determines a product's pixels: the resume key's other half.

    ``algorithm`` (:attr:`ToolSpec.algorithm`), ``jwst`` (its version), ``crds_context``
    (the resolved ``.pmap`` of a tool that uses CRDS, else None) and ``references``
    (whether the product records jwst's reference files, to be compared on resume).
    """
    return {"algorithm": spec.algorithm, "jwst": provenance.package_version("jwst"),
            "crds_context": context if spec.uses_crds else None, "references": spec.runs_jwst_steps,
            "reftypes": spec.reftypes}


def stale_reason(task: Task, params: dict, calib: dict | None = None) -> str | None:
    """Why a task's product must be (re)made, or None when it is up to date.

    Up to date: every product exists and is newer than every input, and the
    primary records the same parameters (``YNGPHASH``), algorithm version
    (``YNGALGO``), jwst version (``YNGJWST``) and CRDS context (``YNGCRDS``)
    as this run; for products of jwst's pipelines made where the context is
    not known by name (a server's operational one), also the same references
    as CRDS selects now for the input (:func:`young.contract.crdsenv.changed_references`).

    Parameters
    ----------
    task : Task
    params : dict
        The run's parameters.
    calib : dict, optional
        :func:`calibration` of the run (without it only the parameters count).
    """
    try:
        oldest = min(Path(p).stat().st_mtime for p in (task.dst, *task.required))
        newest = max(Path(p).stat().st_mtime for p in (task.inputs or (task.src,)))
    except (FileNotFoundError, ValueError):
        return "no product yet"
    if oldest < newest:
        return "an input is newer than the product"
    if not task.required and _same_file(task.dst, task.src):
        return None   # passed on unchanged as a link to its input (Made.linked): the input's own file
    had = provenance.read_stamp(task.dst)
    if had.get("YNGPHASH") != provenance.params_hash(params):
        return "the parameters changed"
    calib = calib or {}
    had.setdefault("YNGALGO", "1")   # products of 0.1 predate the keyword: the first version of every tool
    for key, what, now in (("YNGALGO", "algorithm version", calib.get("algorithm")),
                           ("YNGJWST", "jwst version", calib.get("jwst")),
                           ("YNGCRDS", "CRDS context", calib.get("crds_context"))):
        if now is not None and str(had.get(key)) != str(now):
            return f"{what} {had.get(key, 'unrecorded')} -> {now}"
    # a context's mappings never change under its name: with the same context and input, CRDS selects
    # the same references; they are compared only when this run's context is not known by name
    if calib.get("references") and not calib.get("crds_context"):
        types = resolve(calib.get("reftypes"))
        changed = crdsenv.changed_references(task.src, task.dst, None, types(params) if types else None)
        if changed:
            return f"CRDS selects other references now: {', '.join(changed)}"
    return None


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _log_handler(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    return handler


def _move_into_place(work: Path, task: Task, skip: tuple[str, ...]) -> None:
    """Move the task's outputs (or every file ``process`` left in ``work``) into place, the primary last."""
    dst = Path(task.dst)
    if task.outputs:
        for final in map(Path, task.outputs):
            if (work / final.name).is_file():
                os.replace(work / final.name, final)
    else:
        for f in sorted(work.iterdir()):
            if f.name != dst.name and f.name not in skip and f.is_file():
                os.replace(f, dst.parent / f.name)
    os.replace(work / dst.name, dst)


def execute(payload) -> Outcome:
    """Make one task's products (runs in the worker).  Never raises for a bad input.

    ``payload`` is ``(spec, task, params, force, debug[, calibration])``
    (:func:`calibration`: the resume key's other half).
    """
    spec, task, params, force, debug, *more = payload
    calib = more[0] if more else {}
    t0 = time.monotonic()
    src, dst = Path(task.src), Path(task.dst)
    label = task.label or task.src
    out = Outcome(task.index, task.src, task.dst, "failed", rank=parallel.process_rank())
    logfile = Path(task.log) if task.log else naming.log_path(dst)
    failed_log = logfile.with_name(logfile.stem + ".failed.log")
    handler = None
    work: Path | None = None
    log = logging.getLogger(f"young.{spec.section}")
    try:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic.check_writable(dst.parent)
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"cannot write products to {dst.parent}: "
                             f"{getattr(exc, 'strerror', None) or exc}", src) from None
        header = spec.validate(src, params) if spec.validate else None
        if spec.applied_keyword and header is not None and header.get(spec.applied_keyword):
            # already this tool's product (by its header): a correction is never applied twice; the
            # input is passed on as it is, so a chain fed a mix of raw and corrected files goes on
            out.status, out.dst = "skipped", task.src
            out.message = f"already corrected ({spec.applied_keyword}={header.get(spec.applied_keyword)}): left alone"
            out.products = [task.src]
            return out
        # first: a writer killed after moving its product into place (before removing its work
        # folder) leaves a finished product whose temporaries only this cleans
        atomic.clean_stale(dst)
        atomic.clean_stale(logfile)
        reason = "--force" if force else stale_reason(task, params, calib)
        if reason is None:
            out.status, out.message = "skipped", UP_TO_DATE
            out.products = list(task.products or (task.dst,))
            return out
        work = atomic.tmp_name(dst)
        work.mkdir()
        handler = _log_handler(work / logfile.name)
        logging.getLogger().addHandler(handler)
        log.info("%s %s: %s -> %s", spec.name, __version__, label, dst)
        log.info("made because: %s", reason)
        log.info("parameters: %s", provenance.params_json(params))
        log.info("CRDS: %s", " ".join(f"{k}={os.environ[k]}" for k in CRDS_LOGGED if k in os.environ))
        job = Job(src, dst, work / dst.name, params, force, log, header, task)
        made = resolve(spec.process)(job)
        made = made if isinstance(made, Made) else Made(made or {})
        out.info, out.warnings = made.info, list(made.warnings)
        if made.linked:   # the input's own file under the product's name: nothing may be written into it
            log.info("passed on unchanged, linked to the input (no copy)")
        else:
            # a jwst product records the context jwst really used (CRDS_CTX): stamped from there
            provenance.stamp(job.tmp, spec.name, params, made.keywords, algorithm=calib.get("algorithm"),
                             crds_context=None if spec.runs_jwst_steps else calib.get("crds_context"))
        log.info("wrote %s", dst)
        logging.getLogger().removeHandler(handler)
        handler.close()
        handler = None
        _move_into_place(work, task, (logfile.name,))
        os.replace(work / logfile.name, logfile)
        failed_log.unlink(missing_ok=True)
        out.status = "done"
        out.products = list(task.products or (task.dst,))
    except SkipError as exc:
        out.status, out.message = "skipped", exc.line()
    except YoungError as exc:
        out.message = exc.line() if exc.path else f"{label}: {exc.line()}"
        if handler is not None:
            log.error("failed: %s", out.message)
        if debug:
            out.traceback = traceback.format_exc()
    except BaseException as exc:  # noqa: BLE001 - one failing input must not stop the others
        reason = crdsenv.missing_reference_message(exc, src) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            reason = f"interrupted ({type(exc).__name__})"
        out.message = f"{label}: {reason}" + (f" (log: {failed_log})" if handler is not None else "")
        out.traceback = traceback.format_exc()
        if handler is not None:
            log.error("failed: %s\n%s", reason, out.traceback)
        if not debug:
            out.traceback = None
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            _keep_failed_log(handler, work, logfile, failed_log)
            handler = None
            raise
    finally:
        _keep_failed_log(handler, work, logfile, failed_log)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        out.seconds = time.monotonic() - t0
        out.rss_mb = rss_mb()
    if out.status == "failed":
        out.dst = None
        out.products = []
    return out


def _keep_failed_log(handler, work: Path | None, logfile: Path, failed_log: Path) -> None:
    """A failed or interrupted attempt's log becomes ``<product>.failed.log`` (the good product's log stays)."""
    if handler is None:
        return
    logging.getLogger().removeHandler(handler)
    handler.close()
    if work is not None and (work / logfile.name).exists():
        os.replace(work / logfile.name, failed_log)


def _died(payload, reason: str) -> Outcome:
    _, task, *_ = payload
    return Outcome(task.index, task.src, None, "failed", f"{task.label or task.src}: {reason}",
                   rank=parallel.process_rank())


# --------------------------------------------------------------------------- driver side

def plan(spec: ToolSpec, common: Common, cli: dict, stdin=None) -> Plan:
    """Load config, work out the CRDS environment, build the task list (nothing is run or changed).

    Raises
    ------
    UsageError
    """
    cfg = configmod.load(common.config)
    check_config(spec, cfg)
    section = cfg.section(spec.section)
    warnings_: list[str] = list(cfg.warnings)
    env: dict[str, str] = {}
    ctx = None
    if spec.uses_crds:
        env = crdsenv.configure(section, common.crds_context, env=dict(os.environ))
        ctx = crdsenv.resolve_context(env)
        env = {k: v for k, v in env.items() if os.environ.get(k) != v}
    steps = cfg.step_parameters(spec.section)
    steps.update(configmod.parse_set(common.sets))
    if steps and not spec.runs_jwst_steps:
        raise UsageError(f"--set/steps: {spec.name} runs no jwst step (got {', '.join(sorted(steps))})")
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
                           warn=warnings_.append, recursive=common.recursive)
    tasks: list[Task] = []
    outcomes: list[Outcome] = []
    dsts: dict[Path, str] = {}
    for i, item in enumerate(items):
        if item.error is not None:
            outcomes.append(Outcome(i, str(item.path), None, "failed", item.error.line()))
            continue
        src = item.path
        try:
            level = naming.parse(src).suffix
        except ValueError:
            level = None   # a name jwst would not give: the file's own header decides (validate)
        if level is not None and level not in spec.consumes:
            reads = " or ".join(f"*_{c}.fits" for c in spec.consumes)
            outcomes.append(Outcome(i, str(src), None, "failed", f"{src}: wrong product level: "
                                    f"this is a {level} product, {spec.name} reads {reads}"))
            continue
        try:
            original = naming.original_path(src, spec.tag) if spec.tag else None
        except ValueError:
            original = None
        if original is not None:
            # this tool's own product (X_1f_rate to young-fnoise): never corrected again; traced back to its
            # input when that is there (so --force redoes it from there), else passed on as it is
            if not original.exists():
                outcomes.append(Outcome(i, str(src), str(src), "skipped",
                                        f"already corrected ({spec.tag} in its name): left alone",
                                        products=[str(src)]))
                continue
            src = original
        try:
            dst = spec.product(src, out_dir, params)
        except ValueError as exc:
            outcomes.append(Outcome(i, str(src), None, "failed", f"{src}: {exc}"))
            continue
        except YoungError as exc:
            outcomes.append(Outcome(i, str(src), None, "failed", exc.line()))
            continue
        if dst.resolve() == src.resolve():
            outcomes.append(Outcome(i, str(src), None, "failed",
                                    f"{src}: product would overwrite the input; inputs are never modified"))
            continue
        if dst in dsts:
            if dsts[dst] == str(src):  # the input and its product both listed: made (or checked) once
                outcomes.append(Outcome(i, str(item.path), None, "skipped",
                                        "already corrected (listed with its input): left alone"))
                continue
            outcomes.append(Outcome(i, str(src), None, "failed",
                                    f"{src}: makes the same product as {dsts[dst]} ({dst})"))
            continue
        dsts[dst] = str(src)
        tasks.append(Task(i, str(src), str(dst)))
    context = None
    needs = resolve(spec.needs_crds)
    if ctx is not None and (needs is None or needs(params)):
        if tasks and ctx.problem():   # after the inputs: a usage error of theirs comes first
            raise UsageError(ctx.problem())
        context = ctx.name if ctx.certain else None
    return Plan(tasks, outcomes, params, env, len(items), warnings_, calibration(spec, context))


def check_config(spec: ToolSpec, cfg: configmod.Config) -> None:
    """Every key of the config known, every section's too, before any work (:func:`young.contract.config.check_keys`).

    Raises
    ------
    UsageError
        Naming the file, the section and the key (with the closest known key).
    """
    sections = resolve(spec.config_sections)
    configmod.check_keys(cfg, sections() if sections is not None else {})


def run(spec: ToolSpec, common: Common, cli: dict, stdin=None) -> int:
    """Run a per-file tool over its inputs; return the exit status.

    Order of a parallel run with prefetch (a CRDS server is configured, see
    :func:`_wants_prefetch`): rank 0 plans and sends the plan;
    every other worker (MPI rank, or local ``--jobs`` process) starts and
    imports the tool's code (``ToolSpec.warm``) while rank 0's first worker
    validates the inputs and fetches the references; the updated plan (failed
    inputs, CRDS compute-mode environment) is sent again and the farm starts.
    Signals are the caller's business (the command-line entry handles them).
    """
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
    env = dict(result.env)
    first_slot, warmed = None, []
    in_parallel = comm is not None or common.jobs > 1
    checks_cache = spec.reftypes is not None and crdsenv.is_offline(env_view(env))
    if spec.uses_crds and result.tasks and not in_parallel and (checks_cache or _wants_prefetch(common, False, env)):
        with in_this_process(env, verbose):
            changed = guarded("checking the references", _prefetch, spec, common, result, None)
        if isinstance(changed, YoungError):
            return stopped(spec.name, changed, common, rank)
        env.update(changed)
    elif spec.uses_crds and result.tasks and (checks_cache or _wants_prefetch(common, in_parallel, env)):
        initargs = (env, verbose)
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
        env.update(changed)
        for w, fut in zip(warmed, warming):
            w.initargs = (env, verbose)  # for a replacement process
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - a failed warm-up only costs time: the file's own call reports it
                w.reset()
            w.call(set_environment, changed)
    elif spec.uses_crds and in_parallel and crdsenv.is_offline(env_view(env)):
        # serverless, no prefetch: parallel workers still never write to the shared cache
        env.update(crdsenv.compute_mode({}))
    reporter = Reporter(spec.name, result.n_inputs, common) if rank == 0 else None
    if reporter is not None:
        for w in result.warnings:
            reporter.warn(w)
        for o in result.outcomes:
            reporter.add(o)
    payloads = [(spec, t, result.params, common.force, common.debug, result.calibration) for t in result.tasks]
    emit = reporter.add if reporter else (lambda o: None)
    if comm is None and common.jobs <= 1:
        with in_this_process(env, verbose):
            parallel.run(execute, payloads, emit, jobs=1, died=_died)
    else:
        parallel.run(execute, payloads, emit, jobs=common.jobs, initializer=worker_init, initargs=(env, verbose),
                     died=_died, comm=comm, first_slot=first_slot, ready=warmed)
    status = reporter.finish() if reporter is not None else EXIT_OK
    if comm is not None:
        status = parallel.quiet_bcast(comm, status if rank == 0 else None)
    return status


def env_view(changes: dict) -> dict:
    """This process's environment with ``changes`` applied (a copy; nothing is set)."""
    return {**os.environ, **changes}


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
    resolve(spec.process)
    warm = resolve(spec.warm)
    if warm is not None:
        warm()


def _wants_prefetch(common: Common, in_parallel: bool, env: dict) -> bool:
    """Prefetch when asked, or by default when files run in parallel with a CRDS server to fetch from.

    Serially jwst fetches as it goes.  In serverless mode (``make all`` after
    ``young-refs``, or a cache-only set-up) there is nothing to fetch: the
    workers go straight to work on the read-only cache (:func:`run`), and a
    reference missing from it is named per file by the worker.
    """
    if common.prefetch is not None:
        return common.prefetch
    return in_parallel and not crdsenv.is_offline(env_view(env))


def _validate_and_prefetch(spec: ToolSpec, srcs: list[str], params: dict, context: str | None):
    """Worker side of the prefetch: validation errors first, then CRDS.

    Returns
    -------
    bad : dict
        ``{src: one-line error}``.
    missing : dict
        ``{"reftype (file)": [src, ...]}``: references neither the cache nor a server could give.
    """
    bad: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    good = []
    for src in srcs:
        try:
            if spec.validate is not None:
                spec.validate(Path(src), params)
            good.append(src)
        except InputError as exc:
            bad[src] = exc.line()
    types = resolve(spec.reftypes)(params) if spec.reftypes is not None else None
    for rep in crdsenv.prefetch(good, context=context, reftypes=types):
        if rep.error is not None:
            bad[str(rep.path)] = rep.error.line()
        for reftype, name in rep.missing:
            missing.setdefault(f"{reftype} ({name})", []).append(str(rep.path))
    return bad, missing


def _prefetch(spec: ToolSpec, common: Common, result: Plan, slot: parallel.WorkerSlot | None) -> dict:
    """Check (and fetch, with a server) the references before any work.

    Runs in ``slot`` (the first worker of a parallel run) or, without one, in
    this process.  Bad inputs become per-file outcomes; references missing
    from a cache that no server can fill stop the run.  Returns the
    environment changes of the CRDS compute mode (already applied to
    ``slot``) for the other workers.

    Raises
    ------
    UsageError
        References missing from a cache-only set-up, naming them, the cache and how many inputs need them.
    """
    # products that are up to date by the cheap tests need no references (a resume stays quick)
    cheap = {**result.calibration, "references": False}
    todo = [t.src for t in result.tasks if common.force or stale_reason(t, result.params, cheap) is not None]
    if not todo:
        return crdsenv.compute_mode({}) if crdsenv.is_offline(env_view(result.env)) else {}
    args = (spec, todo, result.params, common.crds_context)
    bad, missing = slot.call(_validate_and_prefetch, *args) if slot is not None else _validate_and_prefetch(*args)
    env = env_view(result.env)
    if missing and crdsenv.is_offline(env):
        n = len({s for srcs in missing.values() for s in srcs})
        cache = env.get("CRDS_PATH") or crdsenv.default_cache()
        raise UsageError(f"CRDS reference(s) missing from the cache {cache}, no server to fetch them, needed by "
                         f"{n} of {len(todo)} input(s) to do: {', '.join(sorted(missing))}")
    if bad:
        keep = []
        for t in result.tasks:
            if t.src in bad:
                result.outcomes.append(Outcome(t.index, t.src, None, "failed", bad[t.src]))
            else:
                keep.append(t)
        result.tasks = keep
    changed = crdsenv.compute_mode({})
    if slot is not None:
        slot.call(set_environment, changed)
    return changed
