"""Stage 3's inputs: what each cal file is (from its headers), the groups they form, their associations.

Nothing here runs a pipeline: the headers are read once, checked
(:func:`read_exposure` raises one-line :class:`~young.contract.errors.InputError`),
and grouped by optical element (:func:`group_exposures`), longest wavelength
first.  :func:`association` writes the Image3 association of a group directly,
so any mix of programs and observations can be combined.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from young import __version__
from young.contract import fitscheck
from young.contract.errors import InputError, UsageError
from young.stage3.filters import CLEAR_PUPILS, optical_element


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
