"""Input lists: arguments, stdin and directories (docs/architecture.md, "The tool contract").

Paths come as arguments; with none and stdin not a terminal, one path per
line on stdin (blank lines and ``#`` comments ignored).  A directory argument
expands to the files of the kind the tool consumes: for each exposure the
most-processed accepted product (so a folder holding ``X_rate.fits`` and
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
    folder: Path, suffixes: Iterable[str], accept: Callable[[naming.ProductName], bool] | None = None
) -> list[Path]:
    """Files of ``folder`` a tool consumes, the deepest product per exposure.

    Parameters
    ----------
    folder : Path
        Directory to scan (not recursive; hidden files are ignored).
    suffixes : iterable of str
        JWST suffixes the tool reads (``('uncal',)``, ``('rate', 'cal')``).
    accept : callable, optional
        Extra filter on the parsed name (e.g. "not already 1/f corrected").

    Returns
    -------
    list of Path, sorted by name.
    """
    suffixes = tuple(suffixes)
    best: dict[str, tuple[tuple[int, int], Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not p.name.endswith(".fits"):
            continue
        try:
            pn = naming.parse(p)
        except ValueError:
            continue
        if pn.suffix not in suffixes or (accept is not None and not accept(pn)):
            continue
        d = naming.depth(p)
        if pn.base not in best or d > best[pn.base][0]:
            best[pn.base] = (d, p)
    return sorted(p for _, p in best.values())


def collect(
    args: Iterable[str] | None,
    suffixes: Iterable[str],
    *,
    accept: Callable[[naming.ProductName], bool] | None = None,
    stdin: TextIO | None = None,
    warn: Callable[[str], None] | None = None,
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
        Receives one-line warnings (duplicate inputs).

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
            found = expand_directory(p, suffixes, accept)
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
