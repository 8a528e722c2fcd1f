"""What the contract passes around: a tool's description, the common options, tasks, jobs and outcomes.

Plain records (no behaviour beyond :func:`resolve`), shared by the runner
(:mod:`young.contract.runner`), the reporter and stage 3's driver.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from young.contract import naming


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
    product : callable or None
        ``product(src, output_dir, params) -> Path`` (per-file tools; stage 3
        makes its tasks itself).
    process : callable or str
        ``process(job) -> dict | Made | None``: write the product to
        ``job.tmp`` (and any side product beside it in ``job.work``); return
        extra header keywords (or a :class:`Made`).  A ``"module:function"`` string is imported in the
        worker only, so a tool's start-up does not pay for what its files need.
    validate : callable, optional
        ``validate(src, params)``: raise :class:`InputError` for bad input;
        may return the primary header.
    accept : callable, optional
        Name filter for directory expansion.
    build_params : callable, optional
        ``build_params(section: dict, cli: dict) -> dict``: the parameters
        that shape the product (hashed for resume, recorded in the header).
    uses_crds : bool
        Prefetch references before parallel work and compute offline.
    applied_keyword : str, optional
        Header keyword that marks the correction as applied; an input that
        has it is refused (``--force`` overrides).
    warm : callable or str, optional
        Imports what ``process`` needs (jwst's pipelines are slow to import): run
        in the other workers while the prefetch runs.
    runs_jwst_steps : bool
        Whether ``--set STEP.PARAM=VALUE`` means anything to the tool.
    tag : str, optional
        The tag a correction adds to product names (``1f``): an input that
        carries it is this tool's product, traced back to its original input
        (:func:`plan`).
    algorithm : str
        Version of what the tool does to the pixels, bumped whenever a release
        changes them: products of another version are redone on resume.
    config_sections : callable or str, optional
        ``config_sections() -> {section: parameter names}`` for the config
        sections whose keys are step parameters (``fnoise``, ``wisp``,
        ``bkg``): with it every key of every section is checked before any
        work (:func:`young.contract.config.check_keys`).
    reftypes : callable or str, optional
        ``reftypes(params) -> [CRDS reference types]`` the tool's work needs: with a
        cache-only CRDS set-up they are looked up for every input before any
        work, and a reference missing from the cache stops the run (exit 2).
    needs_crds : callable or str, optional
        ``needs_crds(params) -> bool`` for a tool that uses CRDS only with some
        parameters (young-fnoise with ``--no-flat`` reads no reference): without
        it the CRDS context is neither checked nor part of the resume key.
    """

    name: str
    section: str
    consumes: tuple[str, ...]
    product: Callable[[Path, Path | None, dict], Path] | None
    process: Callable[["Job"], dict | None] | str
    validate: Callable[[Path, dict], Any] | None = None
    accept: Callable[[naming.ProductName], bool] | None = None
    build_params: Callable[[dict, dict], dict] | None = None
    uses_crds: bool = False
    applied_keyword: str | None = None
    warm: Callable[[], Any] | str | None = None
    runs_jwst_steps: bool = False
    tag: str | None = None
    algorithm: str = "1"
    config_sections: Callable[[], dict] | str | None = None
    reftypes: Callable[[dict], list[str]] | str | None = None
    needs_crds: Callable[[dict], bool] | str | None = None


def resolve(ref: Callable | str | None) -> Callable | None:
    """A callable, or the function a ``"module:function"`` string names (imported now)."""
    if ref is None or callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


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
    recursive: bool = True


@dataclass
class Task:
    """One product set to make.

    Attributes
    ----------
    index : int
        Position in the input order (stdout follows it).
    src : str
        The primary input (named in messages).
    dst : str
        The primary product: resume reads its header, it is moved into place last.
    inputs : tuple of str
        Every input the products depend on (default: ``src``).
    required : tuple of str
        Other products that must exist for the set to be up to date.
    products : tuple of str
        What stdout lists when the task succeeds (default: ``dst``).
    outputs : tuple of str
        The other files ``process`` makes in the work folder, moved beside
        ``dst`` (default: every file it leaves there).
    label : str
        How failures name the task (default: ``src``).
    log : str
        The log of the run that made the products (default: ``dst``'s ``.log``).
    context : object
        Whatever else ``process`` needs that does not shape the products (not hashed; picklable).
    """

    index: int
    src: str
    dst: str
    inputs: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    label: str = ""
    log: str = ""
    context: Any = None


@dataclass
class Job:
    """One task's work, as the tool's ``process`` function sees it."""

    src: Path
    dst: Path
    tmp: Path
    params: dict
    force: bool
    log: logging.Logger
    header: Any = None
    task: Task | None = None

    @property
    def work(self) -> Path:
        """The hidden work folder: whatever ``process`` writes here is moved beside ``dst``."""
        return self.tmp.parent


@dataclass
class Made:
    """What a tool's ``process`` may return besides nothing or a dict of header keywords.

    Attributes
    ----------
    keywords : dict
        Primary-header keywords of the primary product.
    info : dict
        Results the driver needs back (stage 3: grid and catalog of the
        reference group, astrometry); ``info['summary']`` is shown with ``-v``.
    warnings : list of str
        One line each, printed with the tool's name.
    linked : bool
        The product is the input itself under the product's name (a hard link,
        :func:`young.contract.atomic.link_or_copy`): a file the tool passes on
        unchanged costs no disk.  Nothing is stamped into it (that would
        change the input); it is up to date for as long as it is the input's
        file (:func:`young.contract.runner.stale_reason`).
    """

    keywords: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    linked: bool = False


@dataclass
class Outcome:
    """Result of one task."""

    index: int
    src: str
    dst: str | None
    status: str  # done | skipped | failed
    message: str = ""
    seconds: float = 0.0
    rss_mb: float = 0.0
    rank: int = 0
    traceback: str | None = None
    products: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass
class Plan:
    tasks: list[Task]
    outcomes: list[Outcome]
    params: dict
    env: dict
    n_inputs: int
    warnings: list[str]
    calibration: dict = field(default_factory=dict)
