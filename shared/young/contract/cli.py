"""Command-line front end shared by every tool (typer).

A tool file declares its own options and a ``main(common, **own)`` function;
:func:`tool_app` adds the common options (docs/architecture.md: ``--config``,
``--output-dir``, ``--force``, ``--set``, ``--crds-context``, ``--jobs``,
``-v/-q``, ``--debug``, ``--version``, ``--help``) so no tool repeats them,
turns :class:`~young.errors.UsageError` into exit status 2 with one line, and
keeps tracebacks for ``--debug``.  Help is plain text (typer's rich boxes
show type placeholders such as ``<bool>`` after flags); a bad option or value
is one line on stderr and status 2 (:func:`run_app`).
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any, Callable, Optional

import typer

from young.contract import parallel, provenance
from young.contract.errors import EXIT_USAGE, UsageError, YoungError, internal
from young.contract.records import Common


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def common_parameters(tool: str, file_inputs: bool = True) -> list[inspect.Parameter]:
    """The common options as typer parameters."""

    def version_cb(value: bool):
        if value:
            print(provenance.version_line(tool, *context_in_force(sys.argv[1:])))
            raise typer.Exit(0)

    params = []
    if file_inputs:
        params.append(_param("inputs", Annotated[Optional[list[str]], typer.Argument(
            metavar="FILE|DIR", hidden=True, show_default=False)], None))
    params += [
        _param("config", Annotated[Optional[str], typer.Option(
            "--config", "-c", help="YAML configuration (default: $YOUNG_CONFIG).", metavar="FILE")], None),
        _param("output_dir", Annotated[Optional[str], typer.Option(
            "--output-dir", "-o", help="Write products here instead of beside the inputs.", metavar="DIR")], None),
        *([_param("no_recursive", Annotated[bool, typer.Option(
            "--no-recursive", help="Search a folder given as input without its sub-folders (default: with them, "
                                   "hidden ones excepted).")], False)] if file_inputs else []),
        _param("force", Annotated[bool, typer.Option(
            "--force", "-f", help="Redo products that are up to date (always from the original input).")], False),
        _param("sets", Annotated[Optional[list[str]], typer.Option(
            "--set", help="jwst step parameter, repeatable (stage tools only).", metavar="STEP.PARAM=VALUE")], None),
        _param("crds_context", Annotated[Optional[str], typer.Option(
            "--crds-context", help="Pin the CRDS context, e.g. jwst_1322.pmap (default: the config's crds_context, "
                                   "$CRDS_CONTEXT, else the context the cache records).", metavar="PMAP")], None),
        _param("jobs", Annotated[int, typer.Option(
            "--jobs", "-j", min=1, show_default=False, metavar="N",
            help="Local worker processes (default: 1; under mpiexec/srun: one file per rank).")], 1),
        _param("verbose", Annotated[int, typer.Option(
            "--verbose", "-v", count=True, show_default=False,
            help="More talk on stderr: -v one line per file, -vv jwst's log too.")], 0),
        _param("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")], False),
        _param("debug", Annotated[bool, typer.Option("--debug", help="Show tracebacks on stderr.")], False),
        _param("version", Annotated[Optional[bool], typer.Option(
            "--version", callback=version_cb, is_eager=True,
            help="Print the tool, jwst and crds versions and the CRDS context in force.")], None),
    ]
    return params


def context_in_force(argv: list[str]) -> tuple[str | None, str | None]:
    """(context, where it comes from) as a run with these arguments would use it, for ``--version``.

    ``--version`` is handled while the command line is being parsed, before
    the other options have values, so ``--crds-context`` and ``--config`` are
    read from ``argv`` here.
    """
    import os

    def value(*names: str) -> str | None:
        for i, a in enumerate(argv):
            for n in names:
                if a == n and i + 1 < len(argv):
                    return argv[i + 1]
                if a.startswith(n + "="):
                    return a.split("=", 1)[1]
        return None

    ctx = value("--crds-context")
    if ctx:
        return ctx, "--crds-context"
    cfg_path = value("--config", "-c") or os.environ.get("YOUNG_CONFIG")
    cache = os.environ.get("CRDS_PATH")
    if cfg_path:
        from young.contract import config as configmod

        try:
            cfg = configmod.load(cfg_path)
        except YoungError:
            cfg = None
        if cfg is not None:
            if cfg.data.get("crds_context"):
                return str(cfg.data["crds_context"]), f"config {cfg_path}"
            cache = str(cfg.data.get("crds_path") or cache or "")
    if os.environ.get("CRDS_CONTEXT"):
        return os.environ["CRDS_CONTEXT"], "$CRDS_CONTEXT"
    from young.contract import crdsenv

    found = crdsenv.cached_context(cache or crdsenv.default_cache())
    return (found, "the context the cache records") if found else (None, None)


COMMON_NAMES = ("inputs", "config", "output_dir", "no_recursive", "force", "sets", "crds_context", "jobs", "verbose",
                "quiet", "debug", "version")


def tool_app(tool: str, help: str, main: Callable[..., int], own: list[inspect.Parameter],
             file_inputs: bool = True, examples: list[str] | None = None) -> typer.Typer:
    """Build the typer app of a tool.

    Parameters
    ----------
    tool : str
        Tool name (``young-stage1``).
    help : str
        Help text (first line is the summary).
    main : callable
        ``main(common: Common, **own_options) -> int`` exit status.
    own : list of inspect.Parameter
        The tool's own options (keyword-only, typer annotations).
    file_inputs : bool
        Whether the tool takes file paths (all but young-sim).
    examples : list of str, optional
        Command lines shown under "Examples" in ``--help``.
    """
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})

    def command(**kw):
        common_kw = {k: kw.pop(k) for k in COMMON_NAMES if k in kw}
        common_kw.pop("version", None)
        common = Common(
            inputs=list(common_kw.get("inputs") or []), config=common_kw.get("config"),
            output_dir=common_kw.get("output_dir"), force=common_kw.get("force", False),
            sets=list(common_kw.get("sets") or []), crds_context=common_kw.get("crds_context"),
            jobs=common_kw.get("jobs", 1), verbose=common_kw.get("verbose", 0),
            quiet=common_kw.get("quiet", False), debug=common_kw.get("debug", False),
            recursive=not common_kw.get("no_recursive", False),
        )
        try:
            status = main(common, **kw)
        except UsageError as exc:
            if common.debug:
                raise
            print(f"{tool}: {exc.line()}", file=sys.stderr)
            status = EXIT_USAGE
        except YoungError as exc:
            if common.debug:
                raise
            print(f"{tool}: {exc.line()}", file=sys.stderr)
            status = 1
        raise typer.Exit(status)

    command.__signature__ = inspect.Signature(common_parameters(tool, file_inputs) + own)
    text = help
    if file_inputs:
        text += ("\n\nFILE|DIR: input files, or folders searched for them with their sub-folders (a MAST "
                 "download tree as it comes; only NIRCam imaging, EXP_TYPE NRC_IMAGE, is taken from a folder, the "
                 "rest listed as skipped); none: paths are read from stdin, one per line.")
    if examples:
        text += "\n\n\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)
    command.__doc__ = text
    app.command(name=tool)(command)
    return app


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A tool's own option: ``option('method', Annotated[str, typer.Option(...)], 'amp')``."""
    return _param(name, annotation, default)


#: metavar of a spec type on the command line
_METAVARS = {"float": "F", "integer": "N", "string": "TEXT"}


def spec_options(params: dict, flags: dict | None = None, metavars: dict | None = None) -> list[inspect.Parameter]:
    """Command-line options for the parameters of a step's spec (:func:`young.contract.spec.parse_spec`).

    Each option defaults to None ("not given": the config or the spec's
    default applies) and shows the spec's comment and default as its help.
    Booleans are ``--x/--no-x`` flags, options list their choices, list
    types take comma-separated values (``string_list``: the option repeats).

    Parameters
    ----------
    params : dict of str to Param
    flags : dict, optional
        Option declarations per parameter where they differ from ``--name``
        (``{'method': ('--method', '-m'), 'use_lw': ('--lw/--no-lw',)}``).
    metavars : dict, optional
        Value placeholders per parameter (``{'user_mask': 'FITS'}``).
    """
    from young.contract.spec import describe_default

    flags, metavars = flags or {}, metavars or {}
    out = []
    for name, p in params.items():
        decl = flags.get(name) or ((f"{p.flag}/--no-{p.flag[2:]}",) if p.kind == "boolean" else (p.flag,))
        help_text = " ".join(x for x in (p.help, describe_default(p)) if x)
        if p.kind == "boolean":
            ann = Annotated[Optional[bool], typer.Option(*decl, help=help_text, show_default=False)]
        elif p.kind == "string_list":
            ann = Annotated[Optional[list[str]], typer.Option(*decl, help=help_text, show_default=False,
                                                               metavar=metavars.get(name, "TEXT"))]
        else:
            meta = metavars.get(name) or ("|".join(p.choices) if p.kind == "option" else
                                          "V1,V2,..." if p.is_list else _METAVARS.get(p.kind, "VALUE"))
            ann = Annotated[Optional[str], typer.Option(*decl, help=help_text, show_default=False, metavar=meta)]
        out.append(_param(name, ann, None))
    return out


def _terminate(signum, frame):
    """SIGTERM (a batch system's time limit) ends the tool like Ctrl-C: work folders are removed on the way out."""
    raise SystemExit(128 + signum)


def describe_usage_error(exc) -> tuple[str, str]:
    """(what, problem) of a command-line parsing error (click's), each on one line.

    ``what`` names the option or argument (``--method``, ``DIR``), or is empty.
    """
    from young.contract.clicompat import BadParameter, NoSuchOption

    param = getattr(exc, "param", None)
    what = ""
    if param is not None:
        if param.param_type_name == "argument":
            what = (param.metavar or param.name or "").upper()
        else:
            what = param.opts[0] if param.opts else (param.name or "")
    elif getattr(exc, "option_name", None):
        what = exc.option_name
    if isinstance(exc, NoSuchOption):
        msg = "no such option"
        if exc.possibilities:
            msg += f" (did you mean {', '.join(sorted(exc.possibilities))}?)"
    elif isinstance(exc, BadParameter) and param is not None and exc.message:
        msg = exc.message
    elif type(exc).__name__ == "MissingParameter":
        msg = f"missing {getattr(param, 'param_type_name', 'parameter')}"
    else:
        msg = exc.format_message()
        if what:
            msg = msg.replace(f"'{what}' ", "").replace(f"Option {what} ", "")
    msg = " ".join(str(msg).split()).rstrip(".")
    return what, msg[:1].lower() + msg[1:]


def run_app(app: typer.Typer, tool: str, argv: list[str] | None = None) -> int:
    """Parse the command line and run ``app``; return the exit status.

    Every usage problem (unknown option, bad value, missing argument) is one
    line on stderr, ``tool: --option: problem (see --help)``, and status 2;
    an unexpected error is one line and status 1 (the traceback with ``--debug``).
    """
    from young.contract.clicompat import ClickException

    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = command.main(args, prog_name=tool, standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print(f"{tool}: interrupted", file=sys.stderr)
        return 130
    except ClickException as exc:
        what, msg = describe_usage_error(exc)
        print(f"{tool}: {what}: {msg} (see --help)" if what else f"{tool}: {msg} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001
        if "--debug" in args:
            raise
        print(f"{tool}: {internal(exc).line()}", file=sys.stderr)
        parallel.abort_world(1)   # under MPI, the other ranks must not wait for this one
        return 1


def launch(app: typer.Typer, tool: str | None = None) -> None:
    """Run a tool's app as a command (:func:`run_app`) with SIGTERM handled, and exit with its status.

    The only place a tool installs a signal handler: library calls
    (:func:`young.contract.runner.run`) leave the caller's handlers alone.
    """
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    tool = tool or sys.argv[0].rsplit("/", 1)[-1]
    sys.exit(run_app(app, tool))
