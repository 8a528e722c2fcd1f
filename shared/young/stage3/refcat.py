"""Reference catalogs: reading RA/DEC tables of any common format, the user's ``--refcat``, the reference group's own.

The longest-wavelength group is aligned to ``--refcat`` (a file, or a Gaia
catalog name when the network is reachable) or only internally; its own
catalog, cut to well-measured sources (:func:`select_reference_sources`), is
then the absolute reference of every other group.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from young.contract.errors import UsageError

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


def at_coverage_edge(catalog, weight, origin: tuple[int, int] = (0, 0), pad: float = 3.0):
    """Which sources of a jwst catalog touch the edge of the data: a zero or NaN weight (or the array's
    border) within their isophotal radius plus ``pad`` pixels of their centroid.

    Their centroids are biased by the cut, and tell nothing reliable to the filters aligned to them.

    Parameters
    ----------
    catalog : astropy.table.Table
        With ``xcentroid``, ``ycentroid`` (pixels of the grid) and ``isophotal_area`` (pixels; when
        missing, a radius of 3 pixels).
    weight : numpy.ndarray
        The mosaic's (or a tile's) WHT array.
    origin : (int, int)
        Grid pixel (x, y) of ``weight[0, 0]`` (a tile's origin).
    pad : float
        Pixels added to the isophotal radius.

    Returns
    -------
    numpy.ndarray of bool
        True for sources at the edge.
    """
    import numpy as np

    ny, nx = weight.shape
    bad = ~(np.isfinite(weight) & (weight > 0))
    out = np.zeros(len(catalog), bool)
    if not len(catalog) or "xcentroid" not in catalog.colnames:
        return out
    x = np.asarray(catalog["xcentroid"], float) - origin[0]
    y = np.asarray(catalog["ycentroid"], float) - origin[1]
    if "isophotal_area" in catalog.colnames:
        area = np.asarray(getattr(catalog["isophotal_area"], "value", catalog["isophotal_area"]), float)
        r = np.sqrt(np.clip(area, 0, None) / np.pi) + pad
    else:
        r = np.full(len(x), 3.0 + pad)
    for k in range(len(x)):
        if not (np.isfinite(x[k]) and np.isfinite(y[k])):
            out[k] = True
            continue
        x0, x1 = int(np.floor(x[k] - r[k] + 0.5)), int(np.floor(x[k] + r[k] + 0.5)) + 1
        y0, y1 = int(np.floor(y[k] - r[k] + 0.5)), int(np.floor(y[k] + r[k] + 0.5)) + 1
        out[k] = x0 < 0 or y0 < 0 or x1 > nx or y1 > ny or bool(bad[y0:y1, x0:x1].any())
    return out


def select_reference_sources(catalog, min_snr: float = 10.0, min_sources: int = 15, exclude=None):
    """Positions of the well-measured sources of a jwst source catalog, for ``abs_refcat``.

    Keeps finite positions with isophotal S/N >= ``min_snr`` (when the columns
    exist) and not in ``exclude``; if that leaves fewer than ``min_sources``, all
    finite positions.

    Parameters
    ----------
    catalog : astropy.table.Table
        A ``_cat.ecsv`` as read by ``Table.read``.
    exclude : numpy.ndarray of bool, optional
        Rows to leave out (e.g. :func:`at_coverage_edge`).

    Returns
    -------
    astropy.table.Table
        Columns RA, DEC (deg), plus ``flux`` (Jy) when available, brightest first.
    """
    import numpy as np

    cols = {c.lower(): c for c in catalog.colnames}
    if "sky_centroid" in cols:
        sc = catalog[cols["sky_centroid"]]
        finite = np.isfinite(np.asarray(sc.ra.deg, float)) & np.isfinite(np.asarray(sc.dec.deg, float))
    else:
        finite = np.ones(len(catalog), bool)
    if exclude is not None:
        finite &= ~np.asarray(exclude, bool)
    sub = catalog[finite]
    pos = radec_table(sub)
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
