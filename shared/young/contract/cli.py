"""Command-line front end shared by every tool (typer).

A tool file declares its own options and a ``main(common, **own)`` function;
:func:`tool_app` adds the common options (docs/architecture.md: ``--config``,
``--output-dir``, ``--force``, ``--set``, ``--crds-context``, ``--jobs``,
``-v/-q``, ``--debug``, ``--version``, ``--help``) so no tool repeats them,
turns :class:`~young.errors.UsageError` into exit status 2 with one line, and
keeps tracebacks for ``--debug``.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any, Callable, Optional

import typer

from young.contract import parallel, provenance
from young.contract.errors import EXIT_USAGE, UsageError, YoungError, internal
from young.contract.runner import Common


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def common_parameters(tool: str, file_inputs: bool = True) -> list[inspect.Parameter]:
    """The common options as typer parameters."""

    def version_cb(value: bool):
        if value:
            print(provenance.version_line(tool))
            raise typer.Exit(0)

    params = []
    if file_inputs:
        params.append(_param("inputs", Annotated[Optional[list[str]], typer.Argument(
            help="Input files or directories; none: read paths from stdin.", show_default=False)], None))
    params += [
        _param("config", Annotated[Optional[str], typer.Option(
            "--config", "-c", help="YAML configuration (default: $YOUNG_CONFIG).", metavar="FILE")], None),
        _param("output_dir", Annotated[Optional[str], typer.Option(
            "--output-dir", "-o", help="Write products here instead of beside the inputs.", metavar="DIR")], None),
        _param("force", Annotated[bool, typer.Option(
            "--force", "-f", help="Redo products that are up to date.")], False),
        _param("sets", Annotated[Optional[list[str]], typer.Option(
            "--set", help="jwst step parameter STEP.PARAM=VALUE (repeatable).", metavar="STEP.PARAM=VALUE")], None),
        _param("crds_context", Annotated[Optional[str], typer.Option(
            "--crds-context", help="Pin the CRDS context, e.g. jwst_1322.pmap.", metavar="PMAP")], None),
        _param("jobs", Annotated[int, typer.Option(
            "--jobs", "-j", min=1, help="Local worker processes (ignored under mpiexec/srun: one file per rank).")], 1),
        _param("verbose", Annotated[int, typer.Option(
            "--verbose", "-v", count=True, help="More talk on stderr (-vv: jwst's log).")], 0),
        _param("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")], False),
        _param("debug", Annotated[bool, typer.Option("--debug", help="Show tracebacks.")], False),
        _param("version", Annotated[Optional[bool], typer.Option(
            "--version", callback=version_cb, is_eager=True, help="Print tool, jwst and CRDS versions.")], None),
    ]
    return params


COMMON_NAMES = ("inputs", "config", "output_dir", "force", "sets", "crds_context", "jobs", "verbose",
                "quiet", "debug", "version")


def tool_app(tool: str, help: str, main: Callable[..., int], own: list[inspect.Parameter],
             file_inputs: bool = True) -> typer.Typer:
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
    """
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})

    def command(**kw):
        common_kw = {k: kw.pop(k) for k in COMMON_NAMES if k in kw}
        common_kw.pop("version", None)
        common = Common(
            inputs=list(common_kw.get("inputs") or []), config=common_kw.get("config"),
            output_dir=common_kw.get("output_dir"), force=common_kw.get("force", False),
            sets=list(common_kw.get("sets") or []), crds_context=common_kw.get("crds_context"),
            jobs=common_kw.get("jobs", 1), verbose=common_kw.get("verbose", 0),
            quiet=common_kw.get("quiet", False), debug=common_kw.get("debug", False),
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
    command.__doc__ = help
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


def launch(app: typer.Typer) -> None:
    """Run a tool's app: SIGTERM handled, unexpected errors in one line unless ``--debug``.

    The only place a tool installs a signal handler: library calls
    (:func:`young.contract.runner.run`) leave the caller's handlers alone.
    """
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        err = internal(exc)
        if "--debug" in sys.argv:
            print(err.details.rstrip(), file=sys.stderr)
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: {err.line()}", file=sys.stderr)
        parallel.abort_world(1)
        sys.exit(1)
