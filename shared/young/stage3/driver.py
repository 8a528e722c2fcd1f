"""Stage 3: per-filter mosaics, segmentation maps and catalogs on one common grid (``young-stage3``).

What it does (ALGORITHMS.md, "Stage 3"):

1. The cal files are grouped by FILTER and PUPIL (:func:`group_exposures`).  A
   pupil-wheel filter (F162M, F164N, F323N, F405N, F466N, F470N) is its own
   group, named after the pupil filter.  The pivot wavelength of every group
   comes from :data:`PIVOT_UM`; an unknown filter is an error.
2. One Image3 association per group is written by YOUNG itself
   (:func:`association`): any mix of programs and overlapping observations.
3. The reference group — the longest wavelength that can be aligned, or
   ``--reference-filter`` — is reduced first.  With ``--refcat`` (a file with
   RA/DEC columns, or a Gaia catalog name when the network is reachable) it is
   aligned to that catalog, otherwise only internally.
4. Its mosaic fixes the grid: the i2d's gwcs is saved to ``<product>_grid.asdf``
   and given to every other group as resample's ``output_wcs`` (pixel scale,
   rotation, CRPIX, CRVAL and shape all come with it; pixfrac and kernel are the
   same parameters for all groups).  Every finished mosaic is checked against
   that grid (:func:`check_same_grid`) and a group whose mosaic differs fails.
5. Its catalog (read with :class:`astropy.table.Table`) becomes
   ``<product>_refcat.ecsv`` (RA, DEC of well-measured sources), the
   ``abs_refcat`` of every other group, which then run in parallel (local
   processes or MPI ranks) within a memory budget (``--max-memory``); a group
   whose estimate does not fit in memory runs with jwst's on-disk mode.

Every group is reduced in a hidden temporary folder inside ``OUT/<name>/`` and
its products are moved into place only when complete; the group's log is
``OUT/<name>/<product>.log``.  A failing group is reported and the others keep
their products.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import resource
import shutil
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from young import __version__
from young.algorithms import astrometry
from young.contract import atomic, fitscheck, parallel, provenance
from young.contract.errors import (
    EXIT_FAILED,
    EXIT_OK,
    InputError,
    UsageError,
    YoungError,
)

TOOL = "young-stage3"
log = logging.getLogger("young.stage3")

# --------------------------------------------------------------------------- filters

#: Pivot wavelengths (micron) of the NIRCam imaging filters (JWST User Documentation,
#: "NIRCam Filters"), filter-wheel and pupil-wheel elements alike.
PIVOT_UM: dict[str, float] = {
    # short-wavelength channel
    "F070W": 0.704, "F090W": 0.901, "F115W": 1.154, "F140M": 1.404, "F150W": 1.501,
    "F162M": 1.626, "F164N": 1.644, "F150W2": 1.671, "F182M": 1.845, "F187N": 1.874,
    "F200W": 1.990, "F210M": 2.093, "F212N": 2.120,
    # long-wavelength channel
    "F250M": 2.503, "F277W": 2.786, "F300M": 2.996, "F322W2": 3.247, "F323N": 3.237,
    "F335M": 3.365, "F356W": 3.563, "F360M": 3.621, "F405N": 4.055, "F410M": 4.092,
    "F430M": 4.280, "F444W": 4.421, "F460M": 4.624, "F466N": 4.654, "F470N": 4.707,
    "F480M": 4.834,
}

#: Filters mounted in the pupil wheel, with the filter-wheel element they are used with.
PUPIL_FILTERS: dict[str, str] = {
    "F162M": "F150W2", "F164N": "F150W2", "F323N": "F322W2",
    "F405N": "F444W", "F466N": "F444W", "F470N": "F444W",
}
#: Pupil-wheel positions that leave the filter-wheel element alone.
CLEAR_PUPILS = ("CLEAR", "CLEARP")
#: Weak lenses: imaging through the filter, defocused (a group of their own).
LENS_PUPILS = ("WLP8", "WLM8")


def optical_element(filter_name: str, pupil: str | None) -> tuple[str, float]:
    """Group name and pivot wavelength of a FILTER/PUPIL combination.

    Parameters
    ----------
    filter_name : str
        FILTER keyword (filter wheel), e.g. ``F444W``.
    pupil : str or None
        PUPIL keyword, e.g. ``CLEAR`` or ``F405N``.

    Returns
    -------
    name : str
        Lower-case group (folder) name: ``f444w``; a pupil-wheel filter with
        its usual partner is named after itself (``F444W + F405N -> f405n``),
        other combinations join both (``f410m-f405n``, ``f200w-wlp8``).
    pivot_um : float
        Pivot wavelength (micron) of the element that defines the band.

    Raises
    ------
    ValueError
        Unknown filter or pupil.
    """
    f = (filter_name or "").strip().upper()
    p = (pupil or "CLEAR").strip().upper() or "CLEAR"
    known = ", ".join(sorted(PIVOT_UM, key=PIVOT_UM.get))
    if p in PUPIL_FILTERS:
        if f not in PIVOT_UM and f not in ("CLEAR",):
            raise ValueError(f"unknown NIRCam filter {f or '(missing FILTER)'} with pupil {p} (known: {known})")
        name = p.lower() if f in (PUPIL_FILTERS[p], "CLEAR") else f"{f}-{p}".lower()
        return name, PIVOT_UM[p]
    if f not in PIVOT_UM:
        raise ValueError(f"unknown NIRCam filter {f or '(missing FILTER)'} (known: {known})")
    if p in CLEAR_PUPILS:
        return f.lower(), PIVOT_UM[f]
    if p in LENS_PUPILS:
        return f"{f}-{p}".lower(), PIVOT_UM[f]
    raise ValueError(f"unknown or non-imaging NIRCam pupil {p} with filter {f} "
                     f"(imaging pupils: {', '.join(CLEAR_PUPILS + LENS_PUPILS + tuple(PUPIL_FILTERS))})")


# --------------------------------------------------------------------------- inputs and groups


@dataclass
class Exposure:
    """What stage 3 needs to know of one cal file (from its headers only).

    Attributes
    ----------
    path : str
        The cal file.
    instrument, filter, pupil : str
        INSTRUME, FILTER, PUPIL keywords.
    program : str
        PROGRAM keyword.
    exposure_id : str
        The exposure it belongs to (jwst's ``group_id``: program, observation,
        visit, visit group, sequence, activity, exposure number); detectors of
        one exposure share it and are aligned together.
    pixel_scale : float or None
        Nominal pixel scale (arcsec) from PIXAR_A2.
    shape : tuple of int
        SCI array shape (ny, nx).
    """

    path: str
    instrument: str
    filter: str
    pupil: str
    program: str
    exposure_id: str
    pixel_scale: float | None
    shape: tuple[int, int]
    footprint: list = field(default_factory=list)
    bkg_subtracted: bool = False


def parse_s_region(text: str | None) -> list[tuple[float, float]]:
    """Vertices (RA, Dec) of an ``S_REGION`` polygon (``POLYGON ICRS ra dec ra dec ...``); [] if none."""
    if not text:
        return []
    nums = []
    for tok in str(text).replace(",", " ").split():
        try:
            nums.append(float(tok))
        except ValueError:
            continue
    return [(nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2)]


def footprint_pixels(vertices: Sequence[tuple[float, float]], pixel_scale: float) -> int:
    """Pixels of the smallest axis-aligned box (tangent plane) holding all vertices, at ``pixel_scale`` arcsec."""
    if len(vertices) < 3 or not pixel_scale:
        return 0
    ra = [v[0] for v in vertices]
    dec = [v[1] for v in vertices]
    dec0 = math.radians(sum(dec) / len(dec))
    ra0 = ra[0]
    xs = [((r - ra0 + 180.0) % 360.0 - 180.0) * math.cos(dec0) * 3600.0 for r in ra]
    ys = [d * 3600.0 for d in dec]
    # any rotation of the output grid: bound by the box's diagonal-free estimate x 1.2
    w, h = (max(xs) - min(xs)) / pixel_scale, (max(ys) - min(ys)) / pixel_scale
    return int(w * h * 1.2) + 1


def exposure_id(header: Mapping[str, Any], path: str | Path) -> str:
    """jwst's ``group_id`` of an exposure from primary-header keywords (file name if missing)."""
    keys = ("PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID", "ACT_ID", "EXPOSURE")
    v = [str(header.get(k, "")).strip() for k in keys]
    if all(v):
        return f"jw{v[0]}{v[1]}{v[2]}_{v[3]}{v[4]}{v[5]}_{v[6]}"
    stem = Path(path).name
    return re.sub(r"_(nrc[ab][1-5]|nrc[ab]long)_.*$", "", stem, flags=re.I)


def read_exposure(path: str | Path) -> Exposure:
    """Validate a NIRCam imaging cal file and read what grouping needs.

    Raises
    ------
    InputError
        Not FITS, truncated, not NIRCam imaging (names INSTRUME), not a cal
        product, or a filter/pupil missing from :data:`PIVOT_UM`.
    """
    path = Path(path)
    header, hdus = fitscheck.read_primary(path)
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    if instrument and instrument != "NIRCAM":
        raise InputError(f"not NIRCam data (INSTRUME={instrument}); stage 3 combines NIRCam imaging only, "
                         "and the inputs must not mix instruments", path)
    header = fitscheck.check_nircam_image(path, "cal")
    filt = str(header.get("FILTER", "")).strip().upper()
    pupil = str(header.get("PUPIL", "CLEAR")).strip().upper() or "CLEAR"
    try:
        optical_element(filt, pupil)
    except ValueError as exc:
        raise InputError(str(exc), path) from None
    sci = next((h for n, h in hdus if n == "SCI"), {})
    area = sci.get("PIXAR_A2") or header.get("PIXAR_A2")
    scale = math.sqrt(float(area)) if area else None
    shape = (int(sci.get("NAXIS2", 0) or 0), int(sci.get("NAXIS1", 0) or 0))
    return Exposure(str(path), instrument, filt, pupil, str(header.get("PROGRAM", "")).strip(),
                    exposure_id(header, path), scale, shape, parse_s_region(sci.get("S_REGION")),
                    header.get("BKGSUB") is True)


@dataclass
class Group:
    """The cal files of one FILTER/PUPIL combination.

    Attributes
    ----------
    name : str
        Folder name under the output directory (``f444w``, ``f405n``).
    filter, pupil : str
        FILTER and PUPIL keywords.
    pivot_um : float
        Pivot wavelength (micron).
    members : list of str
        Cal files, sorted.
    exposures : list of str
        Distinct exposure ids (jwst group_ids) among the members.
    product : str
        Product stem: ``<product>_i2d.fits`` etc.
    pixel_scale : float or None
        Finest nominal input pixel scale (arcsec).
    pixels : int
        Total number of input pixels (for the memory estimate).
    """

    name: str
    filter: str
    pupil: str
    pivot_um: float
    members: list[str] = field(default_factory=list)
    exposures: list[str] = field(default_factory=list)
    product: str = ""
    pixel_scale: float | None = None
    pixels: int = 0
    footprint: list = field(default_factory=list)

    @property
    def n_exposures(self) -> int:
        return len(self.exposures)


def product_stem(programs: Iterable[str], name: str) -> str:
    """Product stem of a group: ``jw01345_nircam_f444w`` (``jwmulti_...`` for several programs)."""
    progs = sorted({p for p in programs if p})
    prefix = f"jw{progs[0]}" if len(progs) == 1 else "jwmulti"
    return f"{prefix}_nircam_{name}"


def group_exposures(exposures: Sequence[Exposure]) -> list[Group]:
    """Group exposures by FILTER/PUPIL, longest pivot wavelength first.

    Parameters
    ----------
    exposures : sequence of Exposure

    Returns
    -------
    list of Group
        Sorted by decreasing pivot wavelength (then name).

    Raises
    ------
    ValueError
        For a filter/pupil not in the table (callers validate earlier).
    """
    groups: dict[str, Group] = {}
    programs: dict[str, set[str]] = {}
    for e in exposures:
        name, pivot = optical_element(e.filter, e.pupil)
        g = groups.get(name)
        if g is None:
            g = groups[name] = Group(name, e.filter, e.pupil, pivot)
            programs[name] = set()
        g.members.append(e.path)
        if e.exposure_id not in g.exposures:
            g.exposures.append(e.exposure_id)
        programs[name].add(e.program)
        if e.pixel_scale:
            g.pixel_scale = e.pixel_scale if g.pixel_scale is None else min(g.pixel_scale, e.pixel_scale)
        g.pixels += e.shape[0] * e.shape[1]
        g.footprint.extend(e.footprint)
    for name, g in groups.items():
        g.members.sort()
        g.exposures.sort()
        g.product = product_stem(programs[name], name)
    return sorted(groups.values(), key=lambda g: (-g.pivot_um, g.name))


def reference_order(groups: Sequence[Group], reference: str | None, can_align_alone: bool) -> list[Group]:
    """Candidates for the reference group, best first.

    The requested group (``--reference-filter``, matched against the group
    name, FILTER or PUPIL) comes first, then the others by decreasing
    wavelength.  A group that cannot be aligned on its own (one exposure and
    no external catalog) is left out.

    Raises
    ------
    UsageError
        ``reference`` names no group.
    """
    ordered = list(groups)
    if reference:
        key = reference.strip().lower()
        hit = [g for g in groups if key == g.name or key == g.pupil.lower()
               or (key == g.filter.lower() and g.pupil in CLEAR_PUPILS)]
        if not hit:
            raise UsageError(f"--reference-filter {reference}: no such group among the inputs "
                             f"(groups: {', '.join(g.name for g in groups)})")
        ordered = hit[:1] + [g for g in groups if g is not hit[0]]
    return [g for g in ordered if can_align_alone or g.n_exposures >= 2]


# --------------------------------------------------------------------------- associations


def association(group: Group, pool: str = "young-stage3") -> dict:
    """An Image3 association (level 3) holding the group's cal files as science members.

    Built directly (no association rules involved), so any mix of programs and
    observations is allowed.  Members carry absolute paths.
    """
    programs = sorted({Path(m).name[2:7] for m in group.members if Path(m).name.startswith("jw")})
    return {
        "asn_type": "image3",
        "asn_rule": "young_Image3",
        "version_id": None,
        "code_version": f"young {__version__}",
        "degraded_status": "No known degraded exposures in association.",
        "program": programs[0] if len(programs) == 1 else "multi",
        "constraints": f"FILTER={group.filter} PUPIL={group.pupil}",
        "asn_id": group.name,
        "target": "none",
        "asn_pool": pool,
        "products": [{
            "name": group.product,
            "members": [{"expname": str(Path(m).resolve()), "exptype": "science"} for m in group.members],
        }],
    }


def write_association(group: Group, path: str | Path) -> Path:
    """Write :func:`association` as JSON; return the path."""
    path = Path(path)
    path.write_text(json.dumps(association(group), indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- reference catalogs

#: Catalog names tweakreg can fetch from the network (stcal's list).
NETWORK_CATALOGS = ("GAIAREFCAT", "GAIADR3", "GAIADR2", "GAIADR1", "GAIADR3_S3")
_RA_NAMES = ("ra", "ra_deg", "raj2000", "ra_icrs", "alpha_j2000", "ra_j2000", "radeg")
_DEC_NAMES = ("dec", "dec_deg", "dej2000", "decj2000", "de_icrs", "delta_j2000", "dec_j2000", "dedeg")


def catalog_host(name: str) -> tuple[str, int]:
    """Network host (name, port) a named catalog is fetched from."""
    if name.upper().endswith("_S3"):
        return "stpubdata.s3.amazonaws.com", 443
    url = os.environ.get("ASTROMETRIC_CATALOG_URL", "https://gsss.stsci.edu/webservices")
    m = re.match(r"^\w+://([^/:]+)(?::(\d+))?", url)
    host = m.group(1) if m else "gsss.stsci.edu"
    port = int(m.group(2)) if (m and m.group(2)) else (80 if url.startswith("http://") else 443)
    return host, port


def network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens (``YOUNG_OFFLINE=1`` says no without trying)."""
    if os.environ.get("YOUNG_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def radec_table(table) -> "Any":
    """A table's positions as a new ``Table`` with float columns RA, DEC (deg), finite rows only.

    Accepts RA/DEC columns under common names (any case), sexagesimal strings,
    or a ``sky_centroid`` SkyCoord column (jwst source catalogs).

    Raises
    ------
    ValueError
        No usable position columns.
    """
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    cols = {c.lower(): c for c in table.colnames}
    ra = dec = None
    if "sky_centroid" in cols:
        sc = table[cols["sky_centroid"]]
        ra, dec = np.asarray(sc.ra.deg, float), np.asarray(sc.dec.deg, float)
    else:
        rc = next((cols[n] for n in _RA_NAMES if n in cols), None)
        dc = next((cols[n] for n in _DEC_NAMES if n in cols), None)
        if rc is None or dc is None:
            raise ValueError(f"no RA/DEC columns (columns: {', '.join(table.colnames[:12])})")
        rcol, dcol = table[rc], table[dc]
        if rcol.dtype.kind in "US":
            sc = SkyCoord(list(rcol), list(dcol), unit=(u.hourangle, u.deg))
            ra, dec = sc.ra.deg, sc.dec.deg
        else:
            def deg(col):
                unit = getattr(col, "unit", None)
                vals = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
                return (vals * u.Unit(unit)).to_value(u.deg) if unit not in (None, "") else vals
            ra, dec = deg(rcol), deg(dcol)
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    out = Table({"RA": np.asarray(ra)[good] % 360.0, "DEC": np.asarray(dec)[good]})
    out["RA"].unit = out["DEC"].unit = u.deg
    return out


def read_table(path: str | Path):
    """Read a catalog with astropy's table readers (ECSV, FITS, VOTable, CSV, whitespace text)."""
    from astropy.table import Table

    path = Path(path)
    try:
        return Table.read(path)
    except Exception:  # noqa: BLE001 - try the ASCII guesser next
        pass
    try:
        return Table.read(path, format="ascii")
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"not a table astropy can read ({type(exc).__name__}: {' '.join(str(exc).split())[:100]})") \
            from None


@dataclass
class RefcatSpec:
    """What the reference group aligns to.

    Attributes
    ----------
    kind : str
        ``'none'``, ``'file'`` (normalised RA/DEC table) or ``'name'`` (Gaia via network).
    value : str
        File path or catalog name.
    digest : str
        Hash of the positions (files) or the name, for resume.
    count : int
        Number of sources (files).
    """

    kind: str = "none"
    value: str = ""
    digest: str = ""
    count: int = 0


def positions_digest(table) -> str:
    """Stable short hash of RA/DEC values (rounded to 1e-9 deg)."""
    import numpy as np

    a = np.round(np.vstack([np.asarray(table["RA"], float), np.asarray(table["DEC"], float)]) * 1e9)
    return hashlib.sha1(a.astype(np.int64).tobytes()).hexdigest()[:16]


def resolve_refcat(value: str | None, min_sources: int = 15, check_network: bool = True) -> RefcatSpec:
    """Interpret ``--refcat``: a table file with RA/DEC, or a Gaia catalog name.

    Parameters
    ----------
    value : str or None
        Path, or a name from :data:`NETWORK_CATALOGS` (any case).
    min_sources : int
        tweakreg's ``abs_minobj``: fewer usable rows is an error.
    check_network : bool
        Test that the catalog server is reachable (names only).

    Returns
    -------
    RefcatSpec

    Raises
    ------
    UsageError
        Missing or unreadable file, no RA/DEC, too few sources, unknown
        name, or a network catalog on a machine without network.
    """
    if value is None or not str(value).strip():
        return RefcatSpec()
    value = str(value).strip()
    p = Path(value)
    if not p.exists() and p.name.upper() in NETWORK_CATALOGS:
        name = p.name.upper()
        host, port = catalog_host(name)
        if check_network and not network_reachable(host, port):
            raise UsageError(f"--refcat {name} needs network access to {host}, which cannot be reached from "
                             "this machine; give a catalog file with RA/DEC columns instead (--refcat FILE)")
        return RefcatSpec("name", name, hashlib.sha1(name.encode()).hexdigest()[:16])
    if not p.exists():
        raise UsageError(f"--refcat: no such file, and not a catalog name ({', '.join(NETWORK_CATALOGS)})", p)
    try:
        table = radec_table(read_table(p))
    except ValueError as exc:
        raise UsageError(f"--refcat: {exc}", p) from None
    if len(table) < min_sources:
        raise UsageError(f"--refcat: {len(table)} usable sources; alignment needs at least {min_sources} "
                         "(tweakreg.abs_minobj)", p)
    return RefcatSpec("file", str(p.resolve()), positions_digest(table), len(table))


def select_reference_sources(catalog, min_snr: float = 10.0, min_sources: int = 15):
    """Positions of the well-measured sources of a jwst source catalog, for ``abs_refcat``.

    Keeps finite positions with isophotal S/N >= ``min_snr`` (when the columns
    exist); if that leaves fewer than ``min_sources``, all finite positions.

    Parameters
    ----------
    catalog : astropy.table.Table
        A ``_cat.ecsv`` as read by ``Table.read``.

    Returns
    -------
    astropy.table.Table
        Columns RA, DEC (deg), plus ``flux`` (Jy) when available, brightest first.
    """
    import numpy as np

    pos = radec_table(catalog)
    cols = {c.lower(): c for c in catalog.colnames}
    if "sky_centroid" in cols:
        sc = catalog[cols["sky_centroid"]]
        finite = np.isfinite(np.asarray(sc.ra.deg, float)) & np.isfinite(np.asarray(sc.dec.deg, float))
    else:
        finite = np.ones(len(catalog), bool)
    sub = catalog[finite]
    flux = None
    keep = np.ones(len(sub), bool)
    fcol = next((cols[c] for c in ("isophotal_flux", "aper_total_flux", "aper50_flux") if c in cols), None)
    if fcol is not None:
        flux = np.ma.filled(np.ma.asarray(sub[fcol], dtype=float), np.nan)
        ecol = cols.get(fcol.lower() + "_err")
        if ecol is not None:
            err = np.ma.filled(np.ma.asarray(sub[ecol], dtype=float), np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                keep = np.isfinite(flux) & (flux / err >= min_snr)
    if keep.sum() < min_sources:
        keep = np.ones(len(sub), bool)
    out = pos[keep]
    if flux is not None:
        out["flux"] = flux[keep]
        out.sort("flux", reverse=True)
    return out


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """A mosaic grid, as resample's custom-WCS parameters.

    Attributes
    ----------
    crpix : tuple of float
        0-based pixel (x, y) of the reference point (resample's ``crpix``).
    crval : tuple of float
        (RA, Dec) of the reference point (deg).
    rotation : float
        Position angle of the image +y axis east of north (deg), resample's ``rotation``.
    pixel_scale : float
        arcsec per pixel.
    shape : tuple of int
        (ny, nx); resample's ``output_shape`` is (nx, ny).
    """

    crpix: tuple[float, float]
    crval: tuple[float, float]
    rotation: float
    pixel_scale: float
    shape: tuple[int, int]

    def resample_parameters(self) -> dict[str, Any]:
        """The equivalent resample step parameters."""
        return {"crpix": list(self.crpix), "crval": list(self.crval), "rotation": self.rotation,
                "pixel_scale": self.pixel_scale, "output_shape": [self.shape[1], self.shape[0]]}

    def digest(self) -> str:
        """Short hash (values rounded far below a pixel), for resume."""
        text = json.dumps([[round(v, 6) for v in self.crpix], [round(v, 10) for v in self.crval],
                           round(self.rotation, 8), round(self.pixel_scale, 10), list(self.shape)])
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def grid_from_header(header: Mapping[str, Any], shape: tuple[int, int]) -> Grid:
    """The :class:`Grid` of a TAN image from its FITS WCS keywords.

    Parameters
    ----------
    header : mapping
        CRPIX1/2, CRVAL1/2 and either PC (with CDELT) or CD keywords.
    shape : tuple of int
        (ny, nx).
    """
    def get(k, d=None):
        v = header.get(k, d)
        return d if v is None else float(v)

    if "CD1_1" in header:
        cd = [[get("CD1_1"), get("CD1_2", 0.0)], [get("CD2_1", 0.0), get("CD2_2")]]
    else:
        c1, c2 = get("CDELT1", 1.0), get("CDELT2", 1.0)
        pc = [[get("PC1_1", 1.0), get("PC1_2", 0.0)], [get("PC2_1", 0.0), get("PC2_2", 1.0)]]
        cd = [[c1 * pc[0][0], c1 * pc[0][1]], [c2 * pc[1][0], c2 * pc[1][1]]]
    det = abs(cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0])
    scale = math.sqrt(det) * 3600.0
    # jwst's resample convention (stcal calc_rotation_matrix): PC1_2 = sin(rot), PC2_2 = cos(rot)
    rotation = math.degrees(math.atan2(cd[0][1], cd[1][1]))
    return Grid((get("CRPIX1") - 1.0, get("CRPIX2") - 1.0), (get("CRVAL1"), get("CRVAL2")),
                rotation, scale, (int(shape[0]), int(shape[1])))


def grid_of(i2d: str | Path) -> Grid:
    """The grid of an i2d file (its SCI header WCS)."""
    from astropy.io import fits

    h = fits.getheader(i2d, "SCI")
    return grid_from_header(h, (int(h["NAXIS2"]), int(h["NAXIS1"])))


def save_grid(i2d: str | Path, path: str | Path) -> Grid:
    """Save an i2d's output WCS to an ASDF file usable as resample's ``output_wcs``.

    The tree holds ``wcs`` (the mosaic's gwcs with its array shape),
    ``pixel_scale`` (arcsec), ``pixel_area`` (arcsec^2), ``array_shape`` and
    ``young_grid`` (the same grid as crpix/crval/rotation/pixel_scale/output_shape).

    Returns
    -------
    Grid
    """
    import asdf
    from stdatamodels.jwst import datamodels

    grid = grid_of(i2d)
    with datamodels.open(str(i2d)) as model:
        wcs = model.meta.wcs
        shape = tuple(int(n) for n in model.data.shape)
        wcs.array_shape = shape
        wcs.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
        area = model.meta.photometry.pixelarea_arcsecsq
        tree = {
            "wcs": wcs,
            "pixel_scale": float(grid.pixel_scale),
            "pixel_area": float(area) if area else float(grid.pixel_scale) ** 2,
            "array_shape": list(shape),
            "young_grid": {**grid.resample_parameters(), "source": Path(i2d).name},
        }
        asdf.AsdfFile(tree).write_to(str(path))
    return grid


def check_same_grid(i2d: str | Path, reference: str | Path, tol_pix: float = 1e-6) -> list[str]:
    """Differences between the pixel grids of two mosaics (empty when pixel-identical).

    Compares the array shapes and the FITS WCS of the SCI headers, then maps
    a 5 x 5 lattice of pixels of ``i2d`` to the sky with its own gwcs and back
    to pixels with ``reference``'s gwcs (or the ``output_wcs`` ASDF): every
    pixel must land on itself within ``tol_pix``.

    Parameters
    ----------
    i2d : path
        A mosaic.
    reference : path
        The reference mosaic, or a grid ASDF written by :func:`save_grid`.

    Returns
    -------
    list of str
        One line per difference.
    """
    import numpy as np
    from stdatamodels.jwst import datamodels

    problems: list[str] = []
    with datamodels.open(str(i2d)) as a:
        wa, shape_a = a.meta.wcs, tuple(a.data.shape)
        ref = Path(reference)
        if ref.suffix == ".asdf":
            from copy import deepcopy

            import asdf

            with asdf.open(str(ref)) as af:
                wb = deepcopy(af.tree["wcs"])
                shape_b = tuple(int(n) for n in af.tree["array_shape"])
        else:
            with datamodels.open(str(ref)) as b:
                wb, shape_b = b.meta.wcs, tuple(b.data.shape)
        if shape_a != shape_b:
            problems.append(f"shape {shape_a[1]}x{shape_a[0]} differs from the reference {shape_b[1]}x{shape_b[0]}")
            return problems
        ny, nx = shape_a
        xs, ys = np.meshgrid(np.linspace(0, nx - 1, 5), np.linspace(0, ny - 1, 5))
        ra, dec = wa(xs.ravel(), ys.ravel(), with_bounding_box=False)
        xb, yb = wb.invert(ra, dec, with_bounding_box=False)
        dev = float(np.nanmax(np.hypot(xb - xs.ravel(), yb - ys.ravel())))
        if not np.isfinite(dev) or dev > tol_pix:
            problems.append(f"pixels map to different sky positions (up to {dev:.3g} pixel apart)")
    if ref.suffix != ".asdf":
        ga, gb = grid_of(i2d), grid_of(ref)
        if not _grid_close(ga, gb):
            problems.append(f"FITS WCS differs from the reference ({ga} vs {gb})")
    return problems


def _grid_close(a: Grid, b: Grid) -> bool:
    return (a.shape == b.shape
            and all(abs(x - y) < 1e-6 for x, y in zip(a.crpix, b.crpix))
            and abs(a.crval[0] - b.crval[0]) < 1e-10 and abs(a.crval[1] - b.crval[1]) < 1e-10
            and abs(a.rotation - b.rotation) < 1e-8 and abs(a.pixel_scale - b.pixel_scale) < 1e-10)


# --------------------------------------------------------------------------- memory budget

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str | int | float | None) -> int | None:
    """``'16G'``, ``'500M'``, ``'2.5GB'``, ``'1024'`` (bytes) -> bytes; None stays None.

    Raises
    ------
    UsageError
        Unparseable or not positive.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
        if not m:
            raise UsageError(f"--max-memory {text!r}: expected a size such as 16G, 500M or 2.5GB")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise UsageError(f"--max-memory {text!r}: must be positive")
    return int(value)


def available_memory() -> int:
    """Memory available to new processes (bytes): psutil's estimate, else /proc/meminfo."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


#: Memory model of one Image3 run (bytes), measured with jwst 3.0 on NIRCam data
#: (see bench/stage3): a process with jwst imported, plus per input pixel (all
#: arrays of a cal model held by the ModelLibrary), plus per mosaic pixel
#: (resample's outputs and the outlier-detection median of the exposures).
BASE_BYTES = 650 * 1024**2
IN_MEMORY_BYTES_PER_INPUT_PIXEL = 40
ON_DISK_INPUT_MODELS = 2
BYTES_PER_MOSAIC_PIXEL = 56
MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE = 4


def estimate_memory(n_inputs: int, input_pixels: int, mosaic_pixels: int, n_exposures: int,
                    in_memory: bool) -> int:
    """Peak memory (bytes) of one group's Image3 run.

    Parameters
    ----------
    n_inputs : int
        Number of cal files.
    input_pixels : int
        Their total number of pixels.
    mosaic_pixels : int
        Pixels of the output mosaic.
    n_exposures : int
        Exposures (outlier detection's median stacks one resampled image per exposure).
    in_memory : bool
        jwst's ``in_memory``: all inputs held (True) or shelved to disk (False).
    """
    per_input = input_pixels / max(n_inputs, 1)
    if in_memory:
        inputs_b = input_pixels * IN_MEMORY_BYTES_PER_INPUT_PIXEL
        median = mosaic_pixels * MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE * max(n_exposures, 1)
    else:
        inputs_b = ON_DISK_INPUT_MODELS * per_input * IN_MEMORY_BYTES_PER_INPUT_PIXEL
        median = mosaic_pixels * MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE * 2
    return int(BASE_BYTES + inputs_b + median + mosaic_pixels * BYTES_PER_MOSAIC_PIXEL)


def plan_memory(estimates: Sequence[tuple[int, int]], budget: int, jobs: int) -> tuple[int, list[bool]]:
    """How many groups run at once, and which run in memory.

    Parameters
    ----------
    estimates : sequence of (in_memory_bytes, on_disk_bytes)
        One per group.
    budget : int
        Memory budget (bytes) for all concurrent groups.
    jobs : int
        Requested concurrency.

    Returns
    -------
    concurrency : int
        At most ``jobs``; the largest k with the k largest estimates summing to
        at most the budget (at least 1).
    in_memory : list of bool
        Per group: True when its in-memory estimate fits in budget/concurrency.
    """
    if not estimates:
        return 1, []
    jobs = max(1, min(jobs, len(estimates)))
    k = jobs
    while k > 1:
        share = budget / k
        need = sorted((im if im <= share else od for im, od in estimates), reverse=True)[:k]
        if sum(need) <= budget:
            break
        k -= 1
    share = budget / k
    return k, [im <= share for im, _ in estimates]


# --------------------------------------------------------------------------- parameters

#: seed config keys -> Image3 step parameters
SEED_KEYS = {
    "pixel_scale": "resample.pixel_scale",
    "pixfrac": "resample.pixfrac",
    "rotation": "resample.rotation",
    "res_kernel": "resample.kernel",
    "starfinder": "tweakreg.starfinder",
    "snr_threshold": "tweakreg.snr_threshold",
    "fitgeometry": "tweakreg.fitgeometry",
    "abs_fitgeometry": "tweakreg.abs_fitgeometry",
    "skymethod": "skymatch.skymethod",
}
#: resample parameters that define the output grid (replaced by ``output_wcs`` for member groups)
GRID_PARAMETERS = ("pixel_scale", "pixel_scale_ratio", "rotation", "crpix", "crval", "output_shape", "output_wcs")
#: step parameters YOUNG sets per group itself
RESERVED = ("tweakreg.abs_refcat", "resample.in_memory")
EXTRACTS = ("sci", "err", "wht", "con")
#: the steps of jwst's Image3Pipeline (``--set`` checks names against them without importing jwst)
IMAGE3_STEPS = ("assign_mtwcs", "tweakreg", "skymatch", "outlier_detection", "resample", "source_catalog")


def parse_extract(value: str | Iterable[str] | None, section: Mapping[str, Any] | None = None) -> list[str]:
    """``--extract sci,err,wht`` (or config ``extract_sci: true``...) -> ordered list.

    Raises
    ------
    UsageError
        Unknown extension name.
    """
    names: list[str] = []
    if value is not None:
        items = value.split(",") if isinstance(value, str) else list(value)
        for item in items:
            item = str(item).strip().lower()
            if not item:
                continue
            if item not in EXTRACTS:
                raise UsageError(f"--extract {item!r}: known extensions are {','.join(EXTRACTS)}")
            names.append(item)
    elif section:
        names = [e for e in EXTRACTS if section.get(f"extract_{e}")]
    return [e for e in EXTRACTS if e in names]


#: YOUNG's defaults where jwst's do not suit NIRCam mosaics (each measured on young-sim data):
#: outlier_detection's default derivative scale (1.2 0.7) flags the cores of bright undersampled
#: stars (F277W: -3 % to -4 % of their flux in the mosaic); 2.0 1.0 keeps them, cosmic rays are
#: still rejected.
DEFAULT_STEPS = {"outlier_detection.scale": "2.0 1.0"}


def step_parameters(section: Mapping[str, Any], steps: Mapping[str, Any]) -> dict[str, Any]:
    """Image3 step parameters: YOUNG's defaults, the seed keys of the config, then ``steps``/``--set``.

    Raises
    ------
    UsageError
        A reserved parameter (``tweakreg.abs_refcat``: use ``--refcat``).
    """
    out: dict[str, Any] = dict(DEFAULT_STEPS)
    for key, target in SEED_KEYS.items():
        if section.get(key) is not None:
            out[target] = section[key]
    out.update(steps)
    for key in RESERVED:
        if key in out:
            hint = " (use --refcat)" if key == "tweakreg.abs_refcat" else " (set by --max-memory)"
            raise UsageError(f"--set/config {key}: set by young-stage3 itself{hint}")
    return out


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{'resample.pixfrac': 1}`` -> ``{'resample': {'pixfrac': 1}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        step, _, param = key.partition(".")
        out.setdefault(step, {})[param] = value
    return out


# --------------------------------------------------------------------------- one group


@dataclass
class GroupTask:
    """Everything a worker needs to reduce one group (picklable)."""

    index: int
    group: Group
    out_dir: str
    steps: dict
    role: str                    # 'reference' or 'member'
    in_memory: bool
    extract: list
    qa: bool
    force: bool
    debug: bool
    refcat: RefcatSpec           # what this group aligns to (absolute); kind 'none' for internal only
    reference_name: str = ""     # the reference group's name (members)
    grid_file: str = ""          # members: the reference grid ASDF
    grid_digest: str = ""


@dataclass
class GroupOutcome:
    """Result of one group."""

    index: int
    name: str
    status: str                  # done | skipped | failed
    products: list = field(default_factory=list)
    message: str = ""
    warnings: list = field(default_factory=list)
    seconds: float = 0.0
    rss_mb: float = 0.0
    rank: int = 0
    traceback: str | None = None
    grid_file: str = ""
    grid_digest: str = ""
    refcat_file: str = ""
    refcat_digest: str = ""
    astrometry: dict = field(default_factory=dict)


def group_folder(task: GroupTask) -> Path:
    return Path(task.out_dir) / task.group.name


def product_paths(task: GroupTask) -> dict[str, Path]:
    """Final paths of a group's files (products, log, association, QA, reference extras)."""
    folder, stem = group_folder(task), task.group.product
    paths = {
        "i2d": folder / f"{stem}_i2d.fits",
        "segm": folder / f"{stem}_segm.fits",
        "cat": folder / f"{stem}_cat.ecsv",
    }
    for ext in task.extract:
        paths[ext] = folder / f"{stem}_{ext}.fits"
    paths["asn"] = folder / f"{stem}_asn.json"
    paths["log"] = folder / f"{stem}.log"
    if task.qa:
        paths["qa_align"] = folder / f"{stem}_align.png"
        paths["qa_preview"] = folder / f"{stem}_preview.png"
    if task.role == "reference":
        paths["grid"] = folder / f"{stem}_grid.asdf"
        paths["refcat"] = folder / f"{stem}_refcat.ecsv"
    return paths


#: keys of :func:`product_paths` printed on stdout
PRINTED = ("i2d", "segm", "cat") + EXTRACTS


def task_parameters(task: GroupTask) -> dict[str, Any]:
    """The parameters that shape a group's products (hashed for resume, written to the header)."""
    return {
        "steps": task.steps,
        "role": task.role,
        "members": sorted(str(Path(m).resolve()) for m in task.group.members),
        "extract": list(task.extract),
        "refcat": {"kind": task.refcat.kind, "digest": task.refcat.digest} if task.refcat.kind != "none" else None,
        "reference": task.reference_name or None,
        "grid": task.grid_digest or None,
    }


def up_to_date(task: GroupTask) -> bool:
    """Products exist, are newer than every input, and were made with the same parameters."""
    paths = product_paths(task)
    try:
        oldest = min(paths[k].stat().st_mtime for k in paths if k not in ("log", "qa_align", "qa_preview"))
        newest_input = max(Path(m).stat().st_mtime for m in task.group.members)
    except (FileNotFoundError, ValueError):
        return False
    if oldest < newest_input:
        return False
    return provenance.read_stamp(paths["i2d"]).get("YNGPHASH") == provenance.params_hash(task_parameters(task))


def _rss_mb() -> float:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0


def _reference_info(task: GroupTask, out: GroupOutcome) -> None:
    paths = product_paths(task)
    if task.role == "reference":
        out.grid_file, out.refcat_file = str(paths["grid"]), str(paths["refcat"])
        out.grid_digest = grid_of(paths["i2d"]).digest()
        out.refcat_digest = positions_digest(read_table(paths["refcat"]))


def run_group(task: GroupTask) -> GroupOutcome:
    """Reduce one group with Image3Pipeline (runs in a worker).  Never raises for bad data.

    The pipeline runs in a hidden temporary folder inside ``OUT/<name>/`` (also
    its working directory, where jwst's on-disk mode keeps its temporaries);
    the products are moved into place when everything succeeded, the i2d last.
    """
    t0 = time.monotonic()
    out = GroupOutcome(task.index, task.group.name, "failed", rank=parallel.process_rank())
    paths = product_paths(task)
    folder = group_folder(task)
    handler = None
    work: Path | None = None
    cwd = os.getcwd()
    label = f"{folder}"
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic.check_writable(folder)
        except OSError as exc:
            raise InputError(f"cannot write products: {getattr(exc, 'strerror', None) or exc}", folder) from None
        params = task_parameters(task)
        if not task.force and up_to_date(task):
            out.status, out.message = "skipped", "up to date"
            out.products = [str(paths[k]) for k in PRINTED if k in paths]
            _reference_info(task, out)
            return out
        atomic.clean_stale(paths["i2d"])
        work = atomic.tmp_name(paths["i2d"])
        work.mkdir()
        handler = logging.FileHandler(work / paths["log"].name, mode="w", encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        logging.getLogger().addHandler(handler)
        log.info("%s %s: group %s (FILTER=%s PUPIL=%s, %d files, %d exposures), role %s",
                 TOOL, __version__, task.group.name, task.group.filter, task.group.pupil,
                 len(task.group.members), task.group.n_exposures, task.role)
        log.info("parameters: %s", provenance.params_json(params))
        asn = write_association(task.group, work / paths["asn"].name)
        os.chdir(work)
        steps = nest(task.steps)
        tw = steps.setdefault("tweakreg", {})
        if task.refcat.kind != "none" and not tw.get("skip"):
            # relative alignment by tweakreg, then YOUNG's absolute pass (see absolute_alignment_hook)
            tw.update(abs_refcat="", save_catalogs=True, catalog_format="ecsv",
                      post_hooks=[f"{__name__}.absolute_alignment_hook"])
            _ABS_CONTEXT.clear()
            _ABS_CONTEXT.update(refcat=task.refcat.value, work=str(work), result={},
                                params={k.split(".", 1)[1]: v for k, v in task.steps.items()
                                        if k.startswith("tweakreg.")})
        rs = steps.setdefault("resample", {})
        rs["in_memory"] = task.in_memory
        if task.role == "member":  # the reference grid replaces every other output-WCS parameter
            for key in GRID_PARAMETERS:
                rs.pop(key, None)
            rs["output_wcs"] = task.grid_file
        import warnings

        from jwst.pipeline import Image3Pipeline

        log.info("running Image3Pipeline on %s (in_memory=%s)", asn.name, task.in_memory)
        try:
            with warnings.catch_warnings():  # YOUNG's associations name their members by absolute path
                warnings.filterwarnings("ignore", message="Input association file contains path information")
                Image3Pipeline.call(str(asn), output_dir=str(work), save_results=True, steps=steps,
                                    in_memory=task.in_memory, configure_log=False)
            alignment = dict(_ABS_CONTEXT.get("result") or {})
        finally:
            _ABS_CONTEXT.clear()
        os.chdir(cwd)
        for w in alignment.get("warnings", []):
            out.warnings.append(f"{folder}: {w}")
        made = {k: work / paths[k].name for k in ("i2d", "segm", "cat")}
        missing = [p.name for p in made.values() if not p.exists()]
        if missing:
            why = " (no sources detected in the mosaic?)" if made["i2d"].exists() else ""
            raise InputError(f"Image3Pipeline wrote no {', '.join(missing)}{why}; see {paths['log']}", folder)
        _finish_products(task, work, paths, params, out, alignment)
        # move into place: everything but the i2d first, the i2d (which resume looks at) last
        for key, final in paths.items():
            tmp = work / final.name
            if key in ("i2d", "log") or not tmp.exists():
                continue
            os.replace(tmp, final)
        os.replace(work / paths["i2d"].name, paths["i2d"])
        out.status = "done"
        out.products = [str(paths[k]) for k in PRINTED if k in paths]
        _reference_info(task, out)
        log.info("wrote %s", ", ".join(out.products))
    except YoungError as exc:
        out.message = exc.line() if exc.path else f"{label}: {exc.line()}"
        if task.debug:
            out.traceback = traceback.format_exc()
        log.error("failed: %s", out.message)
    except BaseException as exc:  # noqa: BLE001 - one failing group must not stop the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        from young.contract import crdsenv

        reason = crdsenv.missing_reference_message(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        out.message = f"{label}: {reason} (log: {paths['log']})"
        out.traceback = traceback.format_exc()
        log.error("failed: %s\n%s", reason, out.traceback)
        if not task.debug:
            out.traceback = None
    finally:
        os.chdir(cwd)
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
            tmp_log = work / paths["log"].name if work is not None else None
            if tmp_log is not None and tmp_log.exists():
                os.replace(tmp_log, paths["log"])
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        out.seconds = time.monotonic() - t0
        out.rss_mb = _rss_mb()
    return out


def _finish_products(task: GroupTask, work: Path, paths: dict[str, Path], params: dict,
                     out: GroupOutcome, alignment: Mapping[str, Any] | None = None) -> None:
    """Check the grid, stamp provenance, extract images, write the reference files and QA (in ``work``)."""
    from astropy.io import fits

    i2d = work / paths["i2d"].name
    with fits.open(i2d) as hdul:
        twk = str(hdul[0].header.get("S_TWKREG", "")).strip() or "NOT RUN"
    mode = (alignment or {}).get("mode") or ("relative" if twk == "COMPLETE" else "none")
    if twk != "COMPLETE" and mode == "none" and not task.steps.get("tweakreg.skip"):
        out.warnings.append(f"{group_folder(task)}: tweakreg did not align this group (S_TWKREG={twk}); "
                            f"the mosaic keeps the input pointing (see {paths['log']})")
    if task.role == "member":
        diffs = check_same_grid(i2d, task.grid_file)
        if diffs:
            raise RuntimeError("mosaic is not on the reference grid: " + "; ".join(diffs))
        log.info("grid check: pixel-identical to the reference grid %s", task.grid_file)
    stamped = {
        "YNGROLE": (task.role, "stage 3: reference or member group"),
        "YNGREF": (task.reference_name or task.group.name, "reference group (grid, catalog)"),
        "YNGALIGN": (mode, "tweakreg alignment done"),
        "YNGRFCAT": ((task.refcat.kind if task.refcat.kind != "name" else task.refcat.value)[:20],
                     "absolute reference catalog"),
    }
    if task.role == "reference":
        grid = save_grid(i2d, work / paths["grid"].name)
        stamped["YNGGRID"] = (grid.digest(), "hash of the mosaic grid")
        _write_refcat(work / paths["cat"].name, work / paths["refcat"].name, task)
    else:
        stamped["YNGGRID"] = (task.grid_digest, "hash of the mosaic grid")
    provenance.stamp(i2d, TOOL, params, stamped)
    provenance.stamp(work / paths["segm"].name, TOOL, params, stamped)
    for ext in task.extract:
        extract_image(i2d, ext, work / paths[ext].name)
    if task.qa:
        try:
            _qa(task, work, paths, out)
        except Exception as exc:  # noqa: BLE001 - QA must not cost the products
            out.warnings.append(f"{group_folder(task)}: QA plots failed: {type(exc).__name__}: {exc}")
            log.warning("QA plots failed: %s", traceback.format_exc())


def _write_refcat(cat: Path, dst: Path, task: GroupTask) -> None:
    from astropy.table import Table

    table = select_reference_sources(Table.read(cat))
    table.meta["comments"] = [f"absolute reference positions for young-stage3, from {cat.name}"]
    table.write(dst, format="ascii.ecsv", overwrite=True)
    log.info("reference catalog: %d sources -> %s", len(table), dst.name)
    if len(table) < 15:
        log.warning("the reference catalog holds only %d sources; other groups may fail to align", len(table))


def _qa(task: GroupTask, work: Path, paths: dict[str, Path], out: GroupOutcome) -> None:
    from young.stage3 import qa

    i2d = work / paths["i2d"].name
    qa.preview_png(i2d, work / paths["qa_preview"].name, title=f"{task.group.product}")
    ref = None
    if task.role == "member":
        ref = Path(task.grid_file).with_name(Path(task.grid_file).name.replace("_grid.asdf", "_refcat.ecsv"))
    elif task.refcat.kind == "file":
        ref = Path(task.refcat.value)
    crfs = sorted(work.glob("*_crf.fits"))
    stats = qa.alignment_plot(
        work / paths["cat"].name, ref, crfs, work / paths["qa_align"].name,
        title=f"{task.group.product}: alignment ({task.role}"
              + (f", reference {task.reference_name}" if task.reference_name else "") + ")")
    out.astrometry = stats
    log.info("alignment QA: %s", json.dumps(stats))


#: What :func:`absolute_alignment_hook` needs; set by :func:`run_group` in the worker process
#: around one Image3Pipeline run (a worker reduces one group at a time).
_ABS_CONTEXT: dict[str, Any] = {}


def absolute_alignment_hook(library):
    """stpipe post-hook of tweakreg: align the (relatively aligned) group to the absolute catalog.

    jwst's tweakreg fits all exposures of a group to ``abs_refcat`` as one
    combined catalog, and its matcher drops every source that has a
    neighbour closer than ``abs_separation`` -- which, after the relative
    alignment, is each source seen by more than one exposure.  Only sources
    seen once survive: mostly those at image edges, whose centroids are
    biased, and the absolute solution inherits a bias of several mas
    (measured on young-sim data: 3.4 mas).  This hook keeps one detection per
    source (the one farthest from its image edge; :func:`deduplicate_detections`)
    and runs tweakreg's absolute alignment again with those catalogs
    (relative alignment disabled), so the whole group moves by one unbiased
    correction.
    """
    import numpy as np
    from astropy.table import Table

    ctx = _ABS_CONTEXT
    if not ctx:
        return library
    from jwst.tweakreg import TweakRegStep

    work = Path(ctx["work"])
    result = ctx.setdefault("result", {})
    names, xs, ys, ras, decs, edges, owners, statuses = [], [], [], [], [], [], [], []
    with library:
        for i, model in enumerate(library):
            statuses.append(str(model.meta.cal_step.tweakreg or ""))
            names.append(model.meta.filename)
            cat_path = model.meta.tweakreg_catalog
            if cat_path and not Path(cat_path).is_absolute():
                cat_path = str(work / cat_path)
            if cat_path and Path(cat_path).exists():
                cat = Table.read(cat_path)
                xc = "x" if "x" in cat.colnames else "xcentroid"
                yc = "y" if "y" in cat.colnames else "ycentroid"
                x, y = np.asarray(cat[xc], float), np.asarray(cat[yc], float)
                ny, nx = model.data.shape
                r, d = model.meta.wcs(x, y, with_bounding_box=False)
                xs.append(x)
                ys.append(y)
                ras.append(np.asarray(r, float))
                decs.append(np.asarray(d, float))
                edges.append(np.minimum.reduce([x, y, nx - 1 - x, ny - 1 - y]))
                owners.append(np.full(len(x), i))
            library.shelve(model, i, modify=False)
    relative = all(s == "COMPLETE" for s in statuses)
    if not ras:
        result.update(mode="relative" if relative else "none",
                      warnings=["no source catalogs for the absolute alignment; aligned internally only"])
        return library
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    x, y, edge, owner = np.concatenate(xs), np.concatenate(ys), np.concatenate(edges), np.concatenate(owners)
    good = np.isfinite(ra) & np.isfinite(dec)
    ra0, dec0 = np.nanmedian(ra[good]), np.nanmedian(dec[good])
    xt = ((ra - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0)) * 3600.0
    yt = (dec - dec0) * 3600.0
    keep = np.zeros(len(ra), bool)
    keep[good] = astrometry.deduplicate_detections(xt[good], yt[good], edge[good])
    catfile = work / "young_abs_catalogs.txt"
    lines = []
    for i, name in enumerate(names):
        sel = keep & (owner == i)
        path = work / f"young_abs_{Path(name).stem}.ecsv"
        Table({"x": x[sel], "y": y[sel]}).write(path, format="ascii.ecsv", overwrite=True)
        lines.append(f"{name} {path}")
    catfile.write_text("\n".join(lines) + "\n")
    log.info("absolute alignment: %d detections, %d distinct sources kept (one per source)", len(ra), int(keep.sum()))
    params = {k: v for k, v in ctx.get("params", {}).items()
              if k not in ("abs_refcat", "save_catalogs", "post_hooks", "pre_hooks", "use_custom_catalogs",
                           "catfile", "minobj", "skip")}
    params.update(abs_refcat=ctx["refcat"], use_custom_catalogs=True, catfile=str(catfile),
                  minobj=10**9, save_catalogs=False, output_dir=str(work))
    aligned = TweakRegStep(**params).run(library)
    with aligned:
        after = []
        for i, model in enumerate(aligned):
            after.append(str(model.meta.cal_step.tweakreg or ""))
            if after[-1] != "COMPLETE" and relative:  # absolute failed: the relative solution stands
                model.meta.cal_step.tweakreg = "COMPLETE"
                aligned.shelve(model, i)
            else:
                aligned.shelve(model, i, modify=False)
    absolute = all(s == "COMPLETE" for s in after)
    if absolute:
        result["mode"] = "relative+absolute" if relative else "absolute"
    else:
        result["mode"] = "relative" if relative else "none"
        result.setdefault("warnings", []).append(
            "absolute alignment to the reference catalog failed (too few matches?); "
            + ("aligned internally only" if relative else "not aligned"))
    return aligned


def extract_image(i2d: str | Path, ext: str, dst: str | Path) -> Path:
    """Write one extension of an i2d as a single-extension FITS image.

    The primary HDU holds the data with the SCI header's celestial WCS and
    the main primary keywords (TELESCOP, INSTRUME, FILTER, PUPIL, BUNIT,
    PHOTMJSR, PIXAR_SR...).  ``ext`` is ``sci``, ``err``, ``wht`` or ``con``.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    dst = Path(dst)
    with fits.open(i2d, memmap=False) as hdul:
        sci = hdul["SCI"].header
        data = hdul[ext.upper()].data
        if data is None:
            raise RuntimeError(f"{Path(i2d).name} has no {ext.upper()} extension")
        h = WCS(sci, naxis=2).to_header(relax=True)
        for k in ("TELESCOP", "INSTRUME", "FILTER", "PUPIL", "PROGRAM", "TARGPROP", "DATE-OBS", "CRDS_CTX",
                  "YNGTOOL", "YNGVER", "YNGPHASH"):
            if k in hdul[0].header:
                h[k] = hdul[0].header[k]
        for k in ("BUNIT", "PHOTMJSR", "PHOTUJA2", "PIXAR_SR", "PIXAR_A2"):
            if k in sci and ext in ("sci", "err"):
                h[k] = sci[k]
        h["EXTNAME"] = (ext.upper(), "extracted from the i2d")
        h["YNGSRC"] = (Path(i2d).name, "source i2d")
        fits.PrimaryHDU(data=data, header=h).writeto(dst, overwrite=True)
    return dst


# --------------------------------------------------------------------------- driver


@dataclass
class Stage3Plan:
    """What the driver found before running anything."""

    groups: list[Group]
    failed_inputs: list[tuple[str, str]]          # (path, message)
    steps: dict
    extract: list
    qa: bool
    refcat: RefcatSpec
    out_dir: Path
    budget: int
    jobs: int
    env: dict
    reference: str | None
    warnings: list[str] = field(default_factory=list)


def default_out_dir(paths: Sequence[str | Path]) -> Path:
    """Default output folder: the inputs' common folder."""
    parents = {Path(p).resolve().parent for p in paths}
    if len(parents) == 1:
        return parents.pop()
    return Path(os.path.commonpath([str(p) for p in parents]))


def make_plan(common, refcat: str | None, extract: str | None, max_memory: str | None,
              reference: str | None, qa: bool = True, stdin=None) -> Stage3Plan:
    """Read config and inputs, group the files, resolve the reference catalog and the budget.

    Raises
    ------
    UsageError
    """
    from young.contract import config as configmod
    from young.contract import crdsenv, inputs

    cfg = configmod.load(common.config)
    section = cfg.section("stage3")
    warnings_ = list(cfg.warnings)
    env_before = dict(os.environ)
    crdsenv.configure(section, common.crds_context)
    steps = step_parameters(section, {**cfg.step_parameters("stage3"), **configmod.parse_set(common.sets)})
    for key in steps:
        if key.split(".")[0] not in IMAGE3_STEPS:
            raise UsageError(f"--set/config: Image3Pipeline has no step '{key.split('.')[0]}' "
                             f"(steps: {', '.join(IMAGE3_STEPS)})")
    ext = parse_extract(extract, section)
    budget = parse_memory(max_memory if max_memory is not None else section.get("max_memory"))
    if budget is None:
        budget = int(available_memory() * 0.8)
    jobs = common.jobs if common.jobs > 1 else int(section.get("jobs") or 1)
    items = inputs.collect(common.inputs, ("cal",), stdin=stdin, warn=warnings_.append)
    refcat_value = refcat if refcat is not None else section.get("refcat")
    min_obj = int(steps.get("tweakreg.abs_minobj", 15))
    spec = resolve_refcat(refcat_value, min_sources=min_obj)
    failed: list[tuple[str, str]] = []
    exposures: list[Exposure] = []
    instruments: dict[str, int] = {}
    for item in items:
        if item.error is not None:
            failed.append((str(item.path), item.error.line()))
            continue
        try:
            e = read_exposure(item.path)
            exposures.append(e)
            instruments[e.instrument] = instruments.get(e.instrument, 0) + 1
        except InputError as exc:
            failed.append((str(item.path), exc.line()))
            m = re.search(r"INSTRUME=(\w+)", exc.message)
            if m:
                instruments[m.group(1)] = instruments.get(m.group(1), 0) + 1
    if len(instruments) > 1:
        warnings_.append("the inputs mix instruments (" + ", ".join(f"{k}: {v}" for k, v in sorted(instruments.items()))
                         + "); only the NIRCam imaging files are combined")
    out_dir = common.output_dir or section.get("output_dir")
    out_dir = Path(out_dir) if out_dir else (default_out_dir([e.path for e in exposures]) if exposures else Path("."))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder: {exc.strerror}", out_dir) from None
    groups = group_exposures(exposures)
    subtracted = [e.path for e in exposures if e.bkg_subtracted]
    if subtracted:
        # jwst's skymatch refuses images whose meta.background.subtracted (BKGSUB, set by young-bkg)
        # differs from its own `subtract` (default False); with subtract=True it matches what is left
        # of their sky and leaves the other inputs' levels consistent too
        user = steps.get("skymatch.subtract")
        if user is None:
            steps["skymatch.subtract"] = True
        elif str(user).strip().lower() in ("false", "0", "no") and not _truthy(steps.get("skymatch.skip")):
            raise UsageError(f"skymatch.subtract=False cannot run on {len(subtracted)} background-subtracted "
                             f"input(s) (BKGSUB=T, e.g. {Path(subtracted[0]).name}): drop it or set "
                             "skymatch.skip=true")
    if not any(k.startswith("resample.pixel_scale") for k in steps) and not steps.get("resample.output_wcs"):
        scales = [g.pixel_scale for g in groups if g.pixel_scale]
        if scales:  # one scale for all filters: the finest native one (keeps the SW resolution)
            steps["resample.pixel_scale"] = round(min(scales), 6)
    env = {k: v for k, v in os.environ.items() if env_before.get(k) != v}
    if reference and groups:
        reference_order(groups, reference, True)  # validates the name
    return Stage3Plan(groups, failed, steps, ext, qa, spec, out_dir, budget, max(1, jobs), env, reference,
                      warnings_)


class GroupReporter:
    """Products on stdout in group order, one-line problems and the summary on stderr."""

    def __init__(self, n_groups: int, common, stdout=None, stderr=None):
        self.common = common
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.n = n_groups
        self.results: dict[int, GroupOutcome] = {}
        self.next = 0
        self.failed_inputs = 0
        self.t0 = time.monotonic()

    def say(self, line: str) -> None:
        """Talk on stderr (silenced by ``-q``)."""
        if not self.common.quiet:
            print(line, file=self.stderr, flush=True)

    def input_failed(self, message: str) -> None:
        self.failed_inputs += 1
        print(f"{TOOL}: {message}", file=self.stderr, flush=True)

    def add(self, out: GroupOutcome) -> None:
        self.results[out.index] = out
        for w in out.warnings:
            if not self.common.quiet:
                self.say(f"{TOOL}: warning: {w}")
        if out.status == "failed":
            print(f"{TOOL}: {out.message}", file=self.stderr, flush=True)
            if out.traceback and self.common.debug:
                print(out.traceback.rstrip(), file=self.stderr, flush=True)
        elif self.common.verbose and not self.common.quiet:
            extra = ""
            if out.astrometry.get("abs_rms_mas") is not None:
                extra = f", {out.astrometry['abs_n']} sources matched to the reference at " \
                        f"{out.astrometry['abs_rms_mas']:.1f} mas rms"
            self.say(f"{TOOL}: {out.status} {out.name} ({out.seconds:.1f} s, {out.rss_mb:.0f} MB{extra})")
        while self.next in self.results:
            r = self.results[self.next]
            if r.status in ("done", "skipped"):
                for p in r.products:
                    print(p, file=self.stdout, flush=True)
            self.next += 1

    def finish(self) -> int:
        counts = {s: sum(1 for r in self.results.values() if r.status == s) for s in ("done", "skipped", "failed")}
        if not self.common.quiet:
            peak = max((r.rss_mb for r in self.results.values()), default=0.0)
            bad = f", {self.failed_inputs} input file(s) rejected" if self.failed_inputs else ""
            self.say(f"{TOOL}: {counts['done']} group(s) done, {counts['skipped']} up to date, "
                     f"{counts['failed']} failed{bad} in {time.monotonic() - self.t0:.1f} s"
                     + (f" (peak memory per process {peak:.0f} MB)" if peak else ""))
        return EXIT_FAILED if (counts["failed"] or self.failed_inputs) else EXIT_OK


def _died(task: GroupTask, reason: str) -> GroupOutcome:
    return GroupOutcome(task.index, task.group.name, "failed",
                        message=f"{Path(task.out_dir) / task.group.name}: {reason}", rank=parallel.process_rank())


def group_estimates(group: Group, mosaic_pixels: int) -> tuple[int, int]:
    """(in-memory, on-disk) peak memory estimates (bytes) of one group's Image3 run."""
    n = len(group.members)
    return (estimate_memory(n, group.pixels, mosaic_pixels, group.n_exposures, True),
            estimate_memory(n, group.pixels, mosaic_pixels, group.n_exposures, False))


def mosaic_pixels(group: Group, steps: Mapping[str, Any]) -> int:
    """Expected mosaic size (pixels) of a group reduced on its own grid."""
    scale = float(steps.get("resample.pixel_scale") or group.pixel_scale or 0.031)
    n = footprint_pixels(group.footprint, scale)
    if n <= 0:  # no S_REGION: all inputs side by side
        n = int(group.pixels * ((group.pixel_scale or scale) / scale) ** 2)
    return n


def prefetch_references(paths: Sequence[str]) -> dict[str, str]:
    """Fetch Image3's CRDS references for the groups' files (worker side); returns {path: error line}."""
    from jwst.pipeline import Image3Pipeline

    from young.contract import crdsenv

    types = {f"pars-{Image3Pipeline.__name__.lower()}"}
    for step in Image3Pipeline.step_defs.values():
        types.update(getattr(step, "reference_file_types", []) or [])
        types.add(f"pars-{step.__name__.lower()}")
    bad = {}
    for rep in crdsenv.prefetch(paths, reftypes=sorted(types)):
        if rep.error is not None:
            bad[str(rep.path)] = rep.error.line()
    return bad




def _call(slot: parallel.WorkerSlot, task: GroupTask) -> GroupOutcome:
    """Run one group in ``slot``; a dead worker fails the group and the slot is renewed."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return slot.call(run_group, task)
    except BrokenProcessPool:
        slot.reset()
        return _died(task, "worker process died (killed or crashed, e.g. out of memory) while reducing it")


def reduce_reference(plan: Stage3Plan, common, slot: parallel.WorkerSlot, reporter: GroupReporter,
                     prefetch: bool) -> tuple[GroupOutcome | None, GroupTask | None, dict[int, GroupOutcome]]:
    """Reduce the reference group: the first candidate of :func:`reference_order` that succeeds.

    Returns
    -------
    (outcome, task, failed)
        The reference's outcome and task (None if no group could be the
        reference) and the candidates that failed, by group index.
    """
    from young.contract import crdsenv
    from young.contract import runner as contract

    if prefetch:
        bad = slot.call(prefetch_references, [g.members[0] for g in plan.groups])
        for msg in bad.values():
            reporter.say(f"{TOOL}: warning: {msg}")
        before = dict(os.environ)
        crdsenv.compute_mode()
        changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
        plan.env.update(changed)
        slot.call(contract.set_environment, changed)
    alone = plan.refcat.kind != "none" or bool(plan.steps.get("tweakreg.skip"))
    candidates = reference_order(plan.groups, plan.reference, alone)
    failed: dict[int, GroupOutcome] = {}
    if not candidates:
        msg = ("too small to align: no filter has two or more exposures for tweakreg; "
               "give an external catalog (--refcat FILE) or skip alignment (--set tweakreg.skip=true)")
        for i, g in enumerate(plan.groups):
            failed[i] = GroupOutcome(i, g.name, "failed", message=f"{plan.out_dir / g.name}: {msg}")
        return None, None, failed
    if plan.reference and candidates[0].name != reference_order(plan.groups, plan.reference, True)[0].name:
        reporter.say(f"{TOOL}: warning: --reference-filter {plan.reference}: that group has a single exposure "
                     "and cannot be aligned on its own; using the longest wavelength that can")
    for g in candidates:
        i = plan.groups.index(g)
        im, _ = group_estimates(g, mosaic_pixels(g, plan.steps))
        if im > plan.budget:
            reporter.say(f"{TOOL}: reference group {g.name} uses jwst's on-disk mode to stay within the memory budget")
        task = GroupTask(i, g, str(plan.out_dir), plan.steps, "reference", im <= plan.budget,
                         plan.extract, plan.qa, common.force, common.debug, plan.refcat)
        res = _call(slot, task)
        if res.status in ("done", "skipped"):
            return res, task, failed
        failed[i] = res
        reporter.say(f"{TOOL}: warning: reference group {g.name} failed; trying the next longest wavelength")
    return None, None, failed


def member_tasks(plan: Stage3Plan, common, ref_out: GroupOutcome, ref_task: GroupTask,
                 failed: Mapping[int, GroupOutcome], jobs: int, budget: int) -> tuple[list[GroupTask], int]:
    """Tasks of the groups after the reference, and how many run at once within ``budget``."""
    rest = [i for i in range(len(plan.groups)) if i != ref_task.index and i not in failed]
    ny, nx = grid_of(ref_out.products[0]).shape
    ests = [group_estimates(plan.groups[i], ny * nx) for i in rest]
    k, in_mem = plan_memory(ests, budget, jobs)
    refspec = RefcatSpec("file", ref_out.refcat_file, ref_out.refcat_digest)
    tasks = [GroupTask(i, plan.groups[i], str(plan.out_dir), plan.steps, "member", im, plan.extract, plan.qa,
                       common.force, common.debug, refspec, ref_task.group.name, ref_out.grid_file,
                       ref_out.grid_digest)
             for i, im in zip(rest, in_mem)]
    return tasks, k


def run(common, refcat: str | None = None, extract: str | None = None, max_memory: str | None = None,
        reference: str | None = None, qa: bool = True, stdin=None) -> int:
    """The ``young-stage3`` tool: returns the exit status (0 all groups done, 1 some failed, 2 usage).

    Under ``mpiexec``/``srun`` rank 0 plans and reduces the reference group,
    then every rank takes groups from a dynamic queue (``--max-memory`` is then
    the budget of one rank); otherwise ``--jobs N`` local processes share the
    budget.
    """
    import signal

    from young.contract import runner as contract

    signal.signal(signal.SIGTERM, contract._terminate)
    comm = parallel.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    verbose = 0 if common.quiet else common.verbose
    plan: Stage3Plan | YoungError | None = None
    if rank == 0:
        plan = contract.guarded("reading the inputs", make_plan, common, refcat, extract, max_memory, reference,
                                qa=qa, stdin=stdin)
    if comm is not None:  # rank 0 always sends something: no rank may wait for a rank that gave up
        plan = parallel.quiet_bcast(comm, plan)
    if isinstance(plan, YoungError):
        return contract.stopped(TOOL, plan, common, rank)
    os.environ.update(plan.env)
    reporter = GroupReporter(len(plan.groups), common) if rank == 0 else None
    if reporter is not None:
        for w in plan.warnings:
            reporter.say(f"{TOOL}: warning: {w}")
        for _, msg in plan.failed_inputs:
            reporter.input_failed(msg)
    if not plan.groups:
        return reporter.finish() if reporter is not None else EXIT_OK

    slot = parallel.WorkerSlot(contract.worker_init, (plan.env, verbose)) if rank == 0 else None
    shared = None
    if rank == 0:
        got = contract.guarded("reducing the reference group", reduce_reference, plan, common, slot, reporter,
                               prefetch=comm is not None or plan.jobs > 1)
        if isinstance(got, YoungError):
            shared = got
        else:
            ref_out, ref_task, failed = got
            for res in failed.values():
                reporter.add(res)
            if ref_out is not None:
                reporter.add(ref_out)
            else:
                for i, g in enumerate(plan.groups):
                    if i not in failed:
                        reporter.add(GroupOutcome(i, g.name, "failed", message=f"{plan.out_dir / g.name}: "
                                                  "not reduced: no reference group could be reduced"))
            shared = (ref_out, ref_task, failed, plan.env)
    if comm is not None:
        shared = parallel.quiet_bcast(comm, shared)
    if isinstance(shared, YoungError):
        if slot is not None:
            slot.close()
        if reporter is not None:
            reporter.finish()
        return contract.stopped(TOOL, shared, common, rank)
    ref_out, ref_task, failed, env = shared
    os.environ.update(env)
    if ref_out is not None:
        size = comm.Get_size() if comm is not None else 1
        jobs = size if comm is not None else plan.jobs
        tasks, k = member_tasks(plan, common, ref_out, ref_task, failed, jobs, plan.budget * size)
        if rank == 0 and tasks:
            if comm is None and k < min(jobs, len(tasks)):
                reporter.say(f"{TOOL}: warning: the memory budget ({plan.budget / 1024**3:.1f} GB) lets {k} "
                             f"group(s) run at once instead of {min(jobs, len(tasks))}")
            n_disk = sum(1 for t in tasks if not t.in_memory)
            if n_disk and not common.quiet:
                reporter.say(f"{TOOL}: {n_disk} group(s) use jwst's on-disk mode to stay within the memory budget")
        on_result = reporter.add if reporter is not None else (lambda o: None)
        if tasks and comm is not None:
            parallel.run(run_group, tasks, on_result, initializer=contract.worker_init, initargs=(env, verbose),
                         died=_died, comm=comm, first_slot=slot)
        elif tasks and k > 1:
            parallel.run(run_group, tasks, on_result, jobs=k, initializer=contract.worker_init,
                         initargs=(env, verbose), died=_died, first_slot=slot)
        else:
            for t in tasks:
                on_result(_call(slot, t))
    if slot is not None:
        slot.close()
    status = reporter.finish() if reporter is not None else EXIT_OK
    if comm is not None:
        status = parallel.quiet_bcast(comm, status)
    return status
