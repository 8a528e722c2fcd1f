"""Input trees as MAST delivers them (docs/architecture.md, "Input trees").

A MAST download nests every exposure in its own folder
(``MAST_<date>/JWST/jw01345001001_02101_00001_nrca1/..._uncal.fits``, or
``mastDownload/JWST/<obs id>/...`` from astroquery) and mixes NIRCam imaging
with target acquisitions, grism and coronagraphic exposures, calibration
exposures and other instruments' parallels.  This module turns such a tree
into the list of exposures the chain reduces:

* **discovery** -- every ``*_uncal.fits``, ``*_rate.fits`` and ``*_cal.fits``
  under the folder, recursively (hidden folders skipped; ``dir_prefix``
  restricts the search to the top-level folders whose name starts with it);
* **selection** -- only ``EXP_TYPE = NRC_IMAGE`` enters the chain; everything
  else is reported once as skipped, with its type;
* **duplicates** -- the same file name found at two paths (two downloads of
  one file) is used once, with one warning naming both;
* **starting point** -- per exposure, the earliest product present
  (``uncal`` before ``rate`` before ``cal``), or the earliest at or after a
  chosen level;
* **layout** -- which output tree an exposure belongs to: one per
  ``PROGRAM`` header (``program``), one for everything (``combined``), or
  one per top-level input folder (``directory``).

Only primary headers are read (with the truncation check of
:func:`young.contract.fitscheck.read_primary`), never the data arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from young.contract import naming
from young.contract.errors import InputError, UsageError

#: product levels a tree may start from, in chain order
START_LEVELS = ("uncal", "rate", "cal")
#: exposure types that enter the chain.  NRC_TSIMAGE (time series) is reduced by jwst's tso3 and
#: NRC_CORON by coron3, not into mosaics; NRC_FLAT/NRC_DARK are calibration exposures a tool accepts
#: when named explicitly, but never part of a science mosaic.
CHAIN_EXP_TYPES = ("NRC_IMAGE",)
LAYOUTS = ("combined", "program", "directory")


@dataclass(frozen=True)
class Found:
    """One candidate file and what its primary header says.

    Attributes
    ----------
    path : Path
    name : naming.ProductName
    exp_type, instrument, program, date : str
        ``EXP_TYPE``, ``INSTRUME``, ``PROGRAM`` (5 digits) and ``DATE`` (file creation) headers.
    top : str
        The top-level folder under the searched root (the root's own name for files directly in it).
    """

    path: Path
    name: naming.ProductName
    exp_type: str
    instrument: str
    program: str
    date: str
    top: str


@dataclass
class Survey:
    """What a tree holds.

    Attributes
    ----------
    found : list of Found
        The NIRCam imaging files, one per file name (duplicates dropped).
    skipped : list of (Path, str)
        Files that are not NIRCam imaging and their type (``NRC_TACQ``, ``MIR_IMAGE``...).
    duplicates : list of (Path, Path, str)
        (used, dropped, why) for the same file name found twice.
    """

    found: list[Found] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path, str]] = field(default_factory=list)

    def messages(self) -> list[str]:
        """One line per skipped file and per duplicate, for stderr."""
        lines = [f"skipped (not NIRCam imaging): {p}: {t}" for p, t in self.skipped]
        lines += [f"duplicate: {used.name} found twice ({why}): using {used}, not {dropped}"
                  for used, dropped, why in self.duplicates]
        return lines


def walk(root: str | os.PathLike, *, recursive: bool = True, dir_prefix: str | None = None,
         exclude: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Every ``.fits`` file under ``root`` whose name is a start product, in sorted order.

    Parameters
    ----------
    root : path
        Folder to search.
    recursive : bool
        Descend into sub-folders (hidden ones never).
    dir_prefix : str, optional
        Only the top-level sub-folders whose name starts with it are searched (files directly in
        ``root`` then are not).
    exclude : paths
        Folders left out (the output tree when it lies inside the input tree).
    """
    root = Path(root)
    skip = {Path(e).resolve() for e in exclude}
    seen: set[Path] = set()

    def visit(folder: Path, depth: int) -> Iterator[Path]:
        real = folder.resolve()
        if real in seen or (depth > 0 and real in skip):
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                if recursive and (depth > 0 or not dir_prefix or e.name.startswith(dir_prefix)):
                    subdirs.append(Path(e.path))
            elif e.name.endswith(".fits") and (depth > 0 or not dir_prefix) and e.is_file():
                try:
                    pn = naming.parse(e.name)
                except ValueError:
                    continue
                if not pn.tags and pn.suffix in START_LEVELS:
                    yield Path(e.path)
        for d in subdirs:
            yield from visit(d, depth + 1)

    yield from visit(root, 0)


def read(path: Path, root: Path) -> Found:
    """The headers of one candidate.  Raises InputError if the file is damaged or not FITS."""
    from young.contract.fitscheck import read_primary

    header, _ = read_primary(path)
    rel = path.relative_to(root).parts
    top = rel[0] if len(rel) > 1 else root.resolve().name

    def h(key: str) -> str:
        return str(header.get(key, "") or "").strip()

    program = h("PROGRAM")
    return Found(path, naming.parse(path), h("EXP_TYPE"), h("INSTRUME"),
                 program.zfill(5) if program.isdigit() else program, h("DATE"), top)


def survey(root: str | os.PathLike, *, recursive: bool = True, dir_prefix: str | None = None,
           exclude: Iterable[str | os.PathLike] = ()) -> Survey:
    """Discover, select and de-duplicate the start products under ``root``.

    Raises
    ------
    InputError
        A candidate file is damaged (truncated download, not FITS): named, before any work.
    """
    root = Path(root)
    out = Survey()
    by_name: dict[str, Found] = {}
    for path in walk(root, recursive=recursive, dir_prefix=dir_prefix, exclude=exclude):
        f = read(path, root)
        if f.instrument != "NIRCAM" or f.exp_type not in CHAIN_EXP_TYPES:
            out.skipped.append((path, f.exp_type or f"INSTRUME={f.instrument or 'missing'}"))
            continue
        other = by_name.get(path.name)
        if other is None:
            by_name[path.name] = f
            continue
        same = _same_file(other.path, path)
        if same:
            used, dropped, why = other, f, "identical"
        elif f.date > other.date:
            used, dropped, why = f, other, f"they differ; the newer (DATE {f.date}) is used"
        else:
            used, dropped, why = other, f, f"they differ; the newer (DATE {other.date}) is used"
        by_name[path.name] = used
        out.duplicates.append((used.path, dropped.path, why))
    out.found = sorted(by_name.values(), key=lambda f: (f.name.base, START_LEVELS.index(f.name.suffix)))
    return out


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` hold the same bytes (size first, then content in 1 MiB blocks)."""
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ba, bb = fa.read(1 << 20), fb.read(1 << 20)
                if ba != bb:
                    return False
                if not ba:
                    return True
    except OSError:
        return False


def starts(found: Iterable[Found], start: str | None = None) -> list[Found]:
    """Per exposure, the earliest product present (at or after ``start`` when given).

    Parameters
    ----------
    found : iterable of Found
    start : {'uncal', 'rate', 'cal'}, optional
        Ignore products earlier than this level (``rate``: begin at the 1/f step even where the
        ramps were downloaded too).
    """
    if start is not None and start not in START_LEVELS:
        raise UsageError(f"START must be one of {', '.join(START_LEVELS)}, not {start!r}")
    first = START_LEVELS.index(start) if start else 0
    best: dict[str, Found] = {}
    for f in found:
        rank = START_LEVELS.index(f.name.suffix)
        if rank < first:
            continue
        if f.name.base not in best or rank < START_LEVELS.index(best[f.name.base].name.suffix):
            best[f.name.base] = f
    return [best[b] for b in sorted(best)]


def group_of(f: Found, layout: str, name: str | None = None) -> str:
    """The output tree (a folder name under the output folder, ``''`` for the folder itself).

    ``program``: ``jw<PROGRAM>`` from the header; ``combined``: ``name`` (or the output folder
    itself); ``directory``: the top-level input folder.
    """
    if layout == "program":
        if not f.program:
            raise InputError("no PROGRAM header: cannot place it in a per-program tree", f.path)
        return f"jw{f.program}"
    if layout == "directory":
        return f.top
    if layout == "combined":
        return name or ""
    raise UsageError(f"LAYOUT must be one of {', '.join(LAYOUTS)}, not {layout!r}")
