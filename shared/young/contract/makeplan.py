"""The Makefile's view of an input tree: ``python -m young.contract.makeplan``.

``make all INPUT=dir`` asks this module once per run which exposures to reduce,
from which product each starts, where its products go and what every product
of the chain is called; make then owns the rules and their order.  The
answer is one line of make assignments separated by ``@@`` (``$(shell)``
folds newlines); the Makefile turns the separators back into newlines and
``$(eval)``s it.  Nothing is written: ``make -n all`` creates nothing.

Skipped files and duplicates are listed on stderr (once per run).  A problem
that stops the run (no such folder, a damaged file, a bad setting) comes back
as ``Y_ERROR := <one line>`` for the Makefile's ``$(error)``.

Settings come from the make variables, else from the config file (the seed's
keys included), else the defaults:

=====================  ============================================  =========================
make variable          config key(s)                                 default
=====================  ============================================  =========================
``INPUT``              ``data_directory`` / ``input_directory``      (required)
``OUTPUT``             ``output_directory``                          ``young-out``
``LAYOUT``             ``layout``; ``group_by_directory: true`` is   ``combined``
                       ``directory``, ``combine_observations`` true
                       is ``combined``, false (or
                       ``program_subdirs: true``) is ``program``
``NAME``               ``name`` / ``custom_name``                    none (the output folder)
``DIR_PREFIX``         ``dir_prefix``                                none (every folder)
``START``              ``start``                                     earliest product present
=====================  ============================================  =========================
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from young.contract import config as configmod
from young.contract import naming, tree
from young.contract.errors import UsageError, YoungError

SEP = "@@"


@dataclass
class Settings:
    """The resolved settings of one ``make`` run (see the module docstring)."""

    input: Path
    output: Path
    layout: str
    name: str
    dir_prefix: str | None
    start: str | None
    skip: frozenset[str]


def settings(args: argparse.Namespace) -> Settings:
    """Make variables over config keys over defaults.

    Raises
    ------
    UsageError
        A missing input, an unknown layout or start level, a name that is not a plain folder name.
    """
    cfg = configmod.load(args.config) if args.config else configmod.Config()
    d = cfg.data
    where = f"{cfg.path}: " if cfg.path else ""

    def pick(var: str | None, *keys: str) -> str | None:
        if var:
            return var
        for k in keys:
            if d.get(k) not in (None, ""):
                return str(d[k])
        return None

    inp = pick(args.input, "data_directory", "input_directory")
    if not inp:
        raise UsageError("give INPUT=dir (a folder of *_uncal.fits, *_rate.fits or *_cal.fits, "
                                   "searched recursively), or data_directory in the config")
    layout = args.layout or d.get("layout")
    if not layout:
        if d.get("group_by_directory") is True:
            layout = "directory"
        elif d.get("combine_observations") is True:
            layout = "combined"
        elif d.get("combine_observations") is False or d.get("program_subdirs") is True:
            layout = "program"
        else:
            layout = "combined"
    if layout not in tree.LAYOUTS:
        raise UsageError(f"{'LAYOUT' if args.layout else where + 'layout'} must be "
                                   f"{', '.join(repr(x) for x in tree.LAYOUTS)}, not {layout!r}")
    name = pick(args.name, "name", "custom_name") or ""
    if name and (name.startswith(".") or "/" in name or name != name.strip()):
        raise UsageError(f"NAME must be a plain folder name, not {name!r}")
    start = pick(args.start, "start")
    if start is not None and start not in tree.START_LEVELS:
        raise UsageError(f"START must be one of {', '.join(tree.START_LEVELS)}, not {start!r}")
    skip = frozenset(args.skip.split()) if args.skip else frozenset()
    return Settings(Path(inp), Path(pick(args.output, "output_directory") or "young-out").absolute(),
                    layout, name, pick(args.dir_prefix, "dir_prefix"), start, skip)


@dataclass
class Chain:
    """The chain of one exposure: its start file and the names of its products (absolute paths)."""

    src: Path
    level: str
    dest: Path
    base: str
    first: Path           # the chain's first file in dest: stage 1's rate, or the start file linked
    frate: Path | None    # after the 1/f step (None when it starts from a cal)
    cal: Path
    wcal: Path
    bcal: Path


def chain(f: tree.Found, dest: Path, skip: frozenset[str]) -> Chain:
    """Product names of one exposure in ``dest`` with the steps in ``skip`` left out."""
    b = f.name.base
    t1f = "" if "fnoise" in skip else "_1f"
    tw = "" if "wisp" in skip else "_wisp"
    tb = "" if "bkg" in skip else "_bkg"
    if f.name.suffix == "cal":
        return Chain(f.path, "cal", dest, b, dest / f"{b}_cal.fits", None, dest / f"{b}_cal.fits",
                     dest / f"{b}{tw}_cal.fits", dest / f"{b}{tw}{tb}_cal.fits")
    return Chain(f.path, f.name.suffix, dest, b, dest / f"{b}_rate.fits", dest / f"{b}{t1f}_rate.fits",
                 dest / f"{b}{t1f}_cal.fits", dest / f"{b}{t1f}{tw}_cal.fits", dest / f"{b}{t1f}{tw}{tb}_cal.fits")


def plan(s: Settings) -> tuple[list[Chain], tree.Survey]:
    """The chains of every exposure of the tree, and the survey (skipped files, duplicates)."""
    if not s.input.is_dir():
        raise UsageError(f"INPUT={s.input}: no such folder")
    found = tree.survey(s.input, dir_prefix=s.dir_prefix, exclude=[s.output])
    chains = []
    for f in tree.starts(found.found, s.start):
        group = tree.group_of(f, s.layout, s.name)
        chains.append(chain(f, s.output / group if group else s.output, s.skip))
    return chains, found


def assignments(s: Settings, chains: list[Chain]) -> list[str]:
    """The make assignments describing ``chains`` (see the Makefile for how each is used)."""
    def words(paths) -> str:
        return " ".join(str(p) for p in paths)

    by_key = {(c.dest, c.base): c for c in chains}
    partners = []
    if "wisp" not in s.skip:
        for c in chains:
            lw = naming.lw_base(c.base)
            if lw and (c.dest, lw) in by_key:
                partners.append(f"{c.wcal}|{by_key[(c.dest, lw)].cal}")
    s2 = [c for c in chains if c.level != "cal"]
    out = {
        "Y_OUT": str(s.output),
        "Y_DIRS": words(sorted({c.dest for c in chains})),
        "Y_SOURCES": words(c.src for c in chains),
        "Y_STAGE1": " ".join(f"{c.src}|{c.first}" for c in chains if c.level == "uncal"),
        "Y_LINKS": " ".join(f"{c.src}|{c.first}" for c in chains if c.level != "uncal" and c.src != c.first),
        "Y_RATES": words(c.first for c in s2),
        "Y_FRATES": words(c.frate for c in s2),
        "Y_S2OUT": words(c.cal for c in s2),
        "Y_CALS": words(c.cal for c in chains),
        "Y_WCALS": words(c.wcal for c in chains),
        "Y_BCALS": words(c.bcal for c in chains),
        "Y_PARTNERS": " ".join(partners),
        "Y_COUNTS": " ".join(f"{lv}={sum(c.level == lv for c in chains)}" for lv in tree.START_LEVELS),
    }
    return [f"{k} := {v}" for k, v in out.items()]


def main(argv: list[str] | None = None) -> int:
    """Print the plan as make assignments; errors as ``Y_ERROR := ...``."""
    ap = argparse.ArgumentParser(prog="python -m young.contract.makeplan")
    for opt in ("input", "output", "layout", "name", "dir-prefix", "start", "skip", "config"):
        ap.add_argument(f"--{opt}", default=None)
    args = ap.parse_args(argv)
    try:
        s = settings(args)
        chains, found = plan(s)
        for line in found.messages():
            print(f"make all: {line}", file=sys.stderr)
        if not chains:
            n = len(found.skipped)
            raise UsageError(
                f"INPUT={s.input}: no NIRCam imaging *_uncal.fits, *_rate.fits or *_cal.fits found"
                + (f" ({n} other file{'s' * (n != 1)} skipped)" if n else "")
                + (f" in folders starting with {s.dir_prefix!r}" if s.dir_prefix else ""))
        print(SEP.join(assignments(s, chains)))
    except YoungError as exc:
        print(f"Y_ERROR := make all: {exc.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
