"""Input lists: arguments, stdin and directories (docs/architecture.md, "The tool contract").

Paths come as arguments; with none and stdin not a terminal, one path per
line on stdin (blank lines and ``#`` comments ignored).  A directory argument
expands, with its sub-folders unless ``--no-recursive``, to the NIRCam imaging
files of the kind the tool consumes: for each exposure the most-processed
accepted product (so a folder holding ``X_rate.fits`` and
``X_1f_rate.fits`` gives ``young-stage2`` only ``X_1f_rate.fits``).

Problems with single entries (missing file, empty directory) do not stop the
others: they come back as :class:`Item` objects carrying an
:class:`~young.errors.InputError`, reported in input order by the runner.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TextIO

from young.contract import naming
from young.contract.errors import InputError, UsageError


@dataclass
class Item:
    """One entry of the work list.

    Attributes
    ----------
    path : Path
        The input file (or the directory/entry that failed).
    error : InputError or None
        Set when the entry cannot be processed at all.
    """

    path: Path
    error: InputError | None = None


def read_stdin_paths(stream: TextIO) -> list[str]:
    """Paths from a newline-separated stream; blank lines and ``#`` comments dropped."""
    out = []
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def expand_directory(
    folder: Path, suffixes: Iterable[str], accept: Callable[[naming.ProductName], bool] | None = None,
    *, recursive: bool = True, warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Files of ``folder`` a tool consumes, the deepest product per exposure.

    Parameters
    ----------
    folder : Path
        Directory to scan: recursively unless ``recursive`` is False (a MAST download nests every
        exposure in its own folder); hidden files and folders are ignored.
    suffixes : iterable of str
        JWST suffixes the tool reads (``('uncal',)``, ``('rate', 'cal')``).
    accept : callable, optional
        Extra filter on the parsed name (e.g. "not already 1/f corrected").
    recursive : bool
        Search sub-folders too.
    warn : callable, optional
        Receives one line per file left out because it is not NIRCam imaging (EXP_TYPE NRC_IMAGE;
        see :mod:`young.contract.tree`) and per file name found in two folders (the first in path
        order is used).

    Returns
    -------
    list of Path, sorted.
    """
    from young.contract import tree

    suffixes = tuple(suffixes)
    best: dict[str, tuple[tuple[int, int], Path]] = {}
    first_seen: dict[str, Path] = {}
    for p in _fits_files(folder, recursive):
        try:
            pn = naming.parse(p)
        except ValueError:
            continue
        if pn.suffix not in suffixes or (accept is not None and not accept(pn)):
            continue
        if p.name in first_seen:
            if warn:
                warn(f"{p}: the same file name as {first_seen[p.name]}; using that one")
            continue
        first_seen[p.name] = p
        d = naming.depth(p)
        if pn.base not in best or d > best[pn.base][0]:
            best[pn.base] = (d, p)
    out = []
    for _, p in sorted(best.values(), key=lambda t: t[1]):
        try:
            f = tree.read(p, folder)
        except InputError:
            out.append(p)   # damaged: the tool's own check names the problem
            continue
        if f.instrument == "NIRCAM" and f.exp_type in tree.CHAIN_EXP_TYPES:
            out.append(p)
        elif warn:
            warn(f"skipped (not NIRCam imaging): {p}: {f.exp_type or 'INSTRUME=' + (f.instrument or 'missing')}")
    return out


def _fits_files(folder: Path, recursive: bool) -> list[Path]:
    """``*.fits`` files of ``folder`` (and its sub-folders), hidden entries left out, sorted by path."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if recursive:
                out.extend(_fits_files(p, True))
        elif p.name.endswith(".fits") and p.is_file():
            out.append(p)
    return out


def collect(
    args: Iterable[str] | None,
    suffixes: Iterable[str],
    *,
    accept: Callable[[naming.ProductName], bool] | None = None,
    stdin: TextIO | None = None,
    warn: Callable[[str], None] | None = None,
    recursive: bool = True,
) -> list[Item]:
    """Build the work list from arguments or stdin.

    Parameters
    ----------
    args : iterable of str or None
        Command-line paths (files or directories).
    suffixes : iterable of str
        Suffixes consumed when expanding directories.
    accept : callable, optional
        Name filter for directory expansion.
    stdin : text stream, optional
        Read when ``args`` is empty and the stream is not a terminal
        (default ``sys.stdin``).
    warn : callable, optional
        Receives one-line warnings (duplicate inputs, files of a directory left out).
    recursive : bool
        Directories are searched with their sub-folders (default) or alone.

    Returns
    -------
    list of Item
        In input order, duplicates removed (with a warning).

    Raises
    ------
    UsageError
        When there is no input at all.
    """
    args = list(args or [])
    stdin = sys.stdin if stdin is None else stdin
    if not args:
        if stdin is None or stdin.closed or stdin.isatty():
            raise UsageError("no inputs: give files or directories as arguments or on stdin")
        args = read_stdin_paths(stdin)
        if not args:
            raise UsageError("no inputs: stdin was empty")
    suffixes = tuple(suffixes)
    items: list[Item] = []
    seen: set[Path] = set()
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = expand_directory(p, suffixes, accept, recursive=recursive, warn=warn)
            if not found:
                kinds = ", ".join(f"*_{s}.fits" for s in suffixes)
                items.append(Item(p, InputError(f"directory holds no {kinds} files to process", p)))
            entries = found
        else:
            entries = [p]
        for e in entries:
            key = Path(e).resolve() if e.exists() else e.absolute()
            if key in seen:
                if warn:
                    warn(f"{e}: listed more than once; processed once")
                continue
            seen.add(key)
            if not e.exists():
                items.append(Item(e, InputError("no such file", e)))
            elif not e.is_file():
                items.append(Item(e, InputError("not a regular file", e)))
            else:
                items.append(Item(e))
    return items
