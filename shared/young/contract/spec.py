"""Parameters declared once, in an stpipe ``spec``, and read from the command line and the config.

A correction step (``young.steps``) declares its parameters the way every
stpipe ``Step`` does: one configobj line each, type, range and default, with
the help text as its comment::

    mask_thresh = float(min=0, max=1, default=0.8)  # amp: an amplifier row more than this fraction masked ...

This module reads such a spec without importing stpipe or jwst (configobj's
own parser and validator, which stpipe uses) so that the tools can build
their options, help text and validation from it before any heavy import:
:func:`parse_spec` gives :class:`Param` objects, :func:`resolve` merges the
config section and the command line into validated values and names the
source (option, or config file and key) of any bad value in one line.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from young.contract.errors import UsageError

#: spec types that hold a list; on the command line they are written comma-separated
LIST_TYPES = ("float_list", "int_list", "integer_list", "string_list", "list", "force_list")


@dataclass(frozen=True)
class Param:
    """One parameter of a spec.

    Attributes
    ----------
    name : str
        Parameter (and config key) name, e.g. ``mask_thresh``.
    check : str
        The configobj check, e.g. ``float(min=0, max=1, default=0.8)``.
    kind : str
        The check's function: ``float``, ``integer``, ``boolean``, ``string``,
        ``option``, or a list type (:data:`LIST_TYPES`).
    choices : tuple of str
        The values an ``option`` accepts (empty otherwise).
    default : object
        The default, converted to its type (None when the spec says None).
    help : str
        The comment after the declaration.
    """

    name: str
    check: str
    kind: str
    choices: tuple
    default: Any
    help: str

    @property
    def is_list(self) -> bool:
        return self.kind in LIST_TYPES

    @property
    def flag(self) -> str:
        """The command-line option: ``--mask-thresh``."""
        return "--" + self.name.replace("_", "-")


def _validator():
    from configobj.validate import Validator

    return Validator()


def parse_spec(text: str) -> dict[str, Param]:
    """The parameters of a spec string, in declaration order.

    Parameters
    ----------
    text : str
        A ``Step.spec`` (configobj lines, ``name = check(...)  # help``).

    Returns
    -------
    dict of str to Param
    """
    import textwrap

    from configobj import ConfigObj

    lines = textwrap.dedent(text).strip().splitlines()
    cfg = ConfigObj(lines, list_values=False, raise_errors=True)
    v = _validator()
    out: dict[str, Param] = {}
    for name, check in cfg.items():
        fun, args, _kwargs, default = v._parse_with_caching(check)
        value = v.check(check, None, missing=True) if default is not None else None
        comment = (cfg.inline_comments.get(name) or "").lstrip("#").strip()
        out[name] = Param(name, check, fun, tuple(args) if fun == "option" else (), value, comment)
    return out


def _split(value: Any) -> Any:
    """A comma- or space-separated string as a list (command line and YAML scalars); lists as they are."""
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value.strip()) if v]
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (list, type(None))):
        return value
    return [value]


def convert(param: Param, value: Any, source: str) -> Any:
    """``value`` checked against ``param``'s spec and converted to its type.

    Parameters
    ----------
    param : Param
    value : object
        From YAML (already typed) or the command line (strings).
    source : str
        Where the value came from, for the error (``--mask-thresh``,
        ``young.yaml: fnoise.mask_thresh``).

    Raises
    ------
    UsageError
        One line naming the source, the value and what is wrong.
    """
    from configobj.validate import ValidateError

    if value is None:
        return None
    if param.is_list:
        value = _split(value)
        if param.kind != "string_list":
            value = [str(v) for v in value]
    elif param.kind == "boolean" and isinstance(value, bool):
        return value
    elif not isinstance(value, str) and param.kind in ("float", "integer", "string", "option"):
        if param.kind == "string" or param.kind == "option":
            value = str(value)
        elif isinstance(value, bool):
            raise UsageError(f"{source}: expected a number, got {value!r}")
        else:
            value = str(value)
    try:
        return _validator().check(param.check, value)
    except ValidateError as exc:
        text = " ".join(str(exc).split()).rstrip(".")
        if param.kind == "option":
            text = f"use one of {', '.join(param.choices)}, not {value!r}"
        elif not text:
            text = f"invalid value {value!r}"
        kind = "" if param.kind == "option" else f" ({param.check.split('(')[0]})"
        raise UsageError(f"{source}: {text}{kind}") from None


def unknown_key_message(key: str, known: Iterable[str], where: str) -> str:
    """``where: unknown key 'mask_tresh' (did you mean mask_thresh?)``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{where}: unknown key {key!r}{hint}"


def resolve(params: Mapping[str, Param], config: Mapping[str, Any], cli: Mapping[str, Any],
            config_source: str = "config", cli_flags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validated values of every parameter: command line over config over the spec's default.

    Parameters
    ----------
    params : mapping of str to Param
        From :func:`parse_spec`.
    config : mapping
        The tool's config values (top level overlaid with its section); keys
        that are not parameters are the caller's business.
    cli : mapping
        Command-line values by parameter name (None = not given).
    config_source : str
        How to name the config in errors (``young.yaml: fnoise``).
    cli_flags : mapping, optional
        Option declarations per parameter where they are not :attr:`Param.flag`
        (a string or a tuple; the first long name is used in errors).

    Returns
    -------
    dict
        ``{name: value}`` for every parameter, in spec order.

    Raises
    ------
    UsageError
        A value of the wrong type or out of range, naming its source.
    """
    flags = {k: (v if isinstance(v, str) else v[0]).split("/")[0] for k, v in (cli_flags or {}).items()}
    out: dict[str, Any] = {}
    for name, p in params.items():
        if cli.get(name) is not None:
            out[name] = convert(p, cli[name], flags.get(name, p.flag))
        elif config.get(name) is not None:
            out[name] = convert(p, config[name], f"{config_source}.{name}")
        else:
            out[name] = p.default
    return out


def describe_default(p: Param) -> str:
    """The default as the help text shows it: ``(default: 0.8)``; empty when there is none."""
    if p.default is None or p.default == [] or p.default == "":
        return ""
    if p.kind == "boolean":
        return f"(default: {'on' if p.default else 'off'})"
    if p.is_list:
        return f"(default: {','.join(str(v) for v in p.default)})"
    return f"(default: {p.default})"
