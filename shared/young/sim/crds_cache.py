"""A synthetic, self-consistent local CRDS cache for simulated NIRCam imaging.

:func:`write_crds_cache` writes the layout crds 14 reads offline
(docs/simulator.md, "The offline CRDS cache")::

    ROOT/config/jwst/server_config            Python-literal dict (contexts, mappings)
    ROOT/config/jwst/ref_cache_subdir_mode    "instrument"
    ROOT/mappings/jwst/jwst_<N>.pmap          NIRCAM -> jwst_nircam_<N>.imap
    ROOT/mappings/jwst/jwst_nircam_<N>.imap   every reftype crds or jwst knows; unused -> N/A
    ROOT/mappings/jwst/jwst_nircam_<type>_<N>.rmap
    ROOT/references/jwst/nircam/jwst_nircam_<type>_<serial>.{fits,asdf}

so that the unchanged jwst code path (``CRDS_PATH=ROOT``,
``CRDS_CONTEXT=jwst_<N>.pmap``, a serverless ``CRDS_SERVER_URL``) resolves every
reference without a network.  The references are built with stdatamodels
classes from the same per-pixel truth the ramps are made of
(:func:`young.sim.instrument.detector_arrays`): superbias = injected bias, dark
= injected dark current x group time, gain, read noise, saturation, mask,
flat, PHOTMJSR, pixel area and the SIAF distortion of every detector.

References are shared where that is legitimate (one rmap match for several
detectors): the identity linearity per readout shape, the filter offsets per
module/channel, one aperture-correction and one AB-Vega table.  Subarray
readouts get subarray-sized references (what jwst's dark step needs anyway),
so a subarray set stays small.

The cache is built in a hidden temporary folder beside ``ROOT`` and renamed
into place at the end, so a killed run never leaves a cache that looks
complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pprint
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from young.sim import instrument as inst

CONTEXT = 9001
"""Default synthetic context number (far from the real ones, so caches never mix)."""
EXP_TYPE = "NRC_IMAGE"
P_EXPTYPE = "NRC_IMAGE|NRC_TSIMAGE|NRC_FLAT|NRC_LED|NRC_WFSS|NRC_TACQ|NRC_TACONFIRM|NRC_FOCUS|NRC_DARK|"
AUTHOR = "young.sim"
PEDIGREE = "DUMMY"
COMPLETE_MARK = ".young-sim-complete"

# ---------------------------------------------------------------- what is needed


@dataclass(frozen=True)
class Readout:
    """One detector readout configuration the cache must serve.

    Attributes
    ----------
    detector : str
        DETECTOR keyword.
    subarray : str
        SUBARRAY keyword.
    readpatt : str
        READPATT keyword.
    ngroups : int
        Largest NGROUPS used with this readout (the dark has this many groups).
    filters : tuple of str
        Filters used on this detector with this readout.
    """

    detector: str
    subarray: str
    readpatt: str
    ngroups: int
    filters: tuple[str, ...]


def readouts_from(items: Iterable) -> list[Readout]:
    """Merge exposure descriptions into the :class:`Readout` list a cache must serve.

    Parameters
    ----------
    items : iterable
        Objects with ``detector``, ``subarray`` (name or :class:`~young.sim.instrument.Subarray`),
        ``readpatt``, ``ngroups`` and ``filter`` attributes (e.g. ``exposures.ExposureSpec``).
    """
    merged: dict[tuple, dict] = {}
    for it in items:
        sub = it.subarray if isinstance(it.subarray, str) else it.subarray.name
        key = (it.detector.upper(), sub.upper(), it.readpatt.upper())
        entry = merged.setdefault(key, {"ngroups": 0, "filters": set()})
        entry["ngroups"] = max(entry["ngroups"], int(it.ngroups))
        entry["filters"].add(it.filter.upper())
    return [Readout(d, s, r, v["ngroups"], tuple(sorted(v["filters"]))) for (d, s, r), v in sorted(merged.items())]


# ---------------------------------------------------------------- reftypes


def _all_reftypes() -> list[str]:
    """Every reftype crds knows for NIRCam, every jwst step's reftypes and every pars-* type."""
    import importlib.resources
    import inspect

    types: set[str] = set()
    spec = importlib.resources.files("crds.jwst") / "specs" / "combined_specs.json"
    specs = json.loads(spec.read_text())
    types.update(k for k in specs.get("nircam", {}) if k != "all")
    for inst_specs in specs.values():
        types.update(k for k in inst_specs if k.startswith("pars-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jwst.pipeline as jp
        import jwst.step as js
        from stpipe import Step
    for mod in (js, jp):
        for name in dir(mod):
            obj = getattr(mod, name)
            if inspect.isclass(obj) and issubclass(obj, Step):
                types.add("pars-" + obj.__name__.lower())
                refs = obj.__dict__.get("reference_file_types", [])
                if isinstance(refs, (list, tuple)):
                    types.update(refs)
    return sorted(types)


# rmap parkeys (the match part) of the reftypes this module writes
_PARKEYS = {
    "mask": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "saturation": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "superbias": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "linearity": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "gain": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "readnoise": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "area": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "dark": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME", "META.EXPOSURE.READPATT"),
    "flat": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME", "META.INSTRUMENT.FILTER",
             "META.INSTRUMENT.PUPIL"),
    "photom": ("META.INSTRUMENT.DETECTOR",),
    "distortion": ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR"),
    "filteroffset": ("META.INSTRUMENT.CHANNEL", "META.INSTRUMENT.MODULE"),
    "apcorr": ("META.EXPOSURE.TYPE",),
    "abvegaoffset": ("META.INSTRUMENT.NAME",),
}
_EXT = {"distortion": ".asdf", "filteroffset": ".asdf", "abvegaoffset": ".asdf"}


# ---------------------------------------------------------------- aperture corrections


@dataclass(frozen=True)
class ApertureCorrection:
    """One APCORR row: encircled-energy fraction, radius (pixels), correction factor, sky annulus (pixels)."""

    eefraction: float
    radius: float
    apcorr: float
    skyin: float | None = None
    skyout: float | None = None


def gaussian_apcorr(fwhm_pix: float, eefractions: Sequence[float] = (0.3, 0.5, 0.7)) -> list[ApertureCorrection]:
    """Aperture corrections of a circular Gaussian PSF of FWHM ``fwhm_pix`` (fallback)."""
    sigma = fwhm_pix / 2.3548
    return [ApertureCorrection(ee, float(sigma * np.sqrt(-2 * np.log(1 - ee))), 1.0 / ee) for ee in eefractions]


def default_fwhm_pix(detector_name: str, filter_name: str) -> float:
    """Diffraction-limited FWHM (pixels) of a filter on a detector, at least 1.2 pixel."""
    det = inst.detector(detector_name)
    lam = inst.filter_info(filter_name).pivot * 1e-6
    fwhm_arcsec = 1.03 * lam / 6.5 * 206265.0
    return max(1.2, fwhm_arcsec / det.pixel_scale[0])


# ---------------------------------------------------------------- writing references


def _meta(model, reftype: str, description: str, det: inst.Detector | None,
          sub: inst.Subarray | None, filt: str | None = None, pupil: str | None = None) -> None:
    m = model.meta
    m.telescope = "JWST"
    m.reftype = reftype.upper()
    m.author = AUTHOR
    m.description = description
    m.pedigree = PEDIGREE
    m.useafter = inst.USEAFTER
    m.instrument.name = "NIRCAM"
    if det is not None:
        m.instrument.detector = det.name
        m.instrument.channel = det.channel
        m.instrument.module = det.module
    if filt is not None:
        m.instrument.filter = filt
    if pupil is not None:
        m.instrument.pupil = pupil
    try:
        m.exposure.type = EXP_TYPE
        m.exposure.p_exptype = P_EXPTYPE
    except AttributeError:
        pass
    if sub is not None and det is not None:
        # not every reference schema has every subarray keyword
        for key, value in (("name", sub.name), ("xstart", sub.xstart), ("ystart", sub.ystart),
                           ("xsize", sub.xsize), ("ysize", sub.ysize),
                           ("fastaxis", det.fastaxis), ("slowaxis", det.slowaxis)):
            try:
                setattr(m.subarray, key, value)
            except AttributeError:
                pass
    _history(model, "Synthetic reference written by young.sim for simulated NIRCam data.")


def _history(model, text: str) -> None:
    """Add a HISTORY entry (``add_history_entry`` where stdatamodels has it)."""
    if hasattr(model, "add_history_entry"):
        model.add_history_entry(text)
    else:  # pragma: no cover - older stdatamodels
        model.history.append(text)


class _Writer:
    """Accumulates reference files and rmap entries while a cache is written."""

    def __init__(self, root: Path, context: int):
        self.root = root
        self.context = context
        self.refdir = root / "references" / "jwst" / "nircam"
        self.refdir.mkdir(parents=True, exist_ok=True)
        self.serial: dict[str, int] = defaultdict(lambda: context)
        # reftype -> list of (match tuple, filename)
        self.entries: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        self.index: list[dict] = []

    def new_name(self, reftype: str) -> str:
        n = self.serial[reftype]
        self.serial[reftype] = n + 1
        return f"jwst_nircam_{reftype}_{n:04d}{_EXT.get(reftype, '.fits')}"

    def save(self, reftype: str, model, match: tuple[str, ...], describe: str) -> str:
        name = self.new_name(reftype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(self.refdir / name)
        model.close()
        self.entries[reftype].append((tuple(match), name))
        self.index.append({"reftype": reftype, "file": name, "match": list(match), "what": describe})
        return name


def _drop(model, *names: str) -> None:
    """Leave all-zero default arrays out of a reference (readers recreate them as zeros)."""
    for name in names:
        if name in model._instance:
            delattr(model, name)


def _write_detector_refs(w: _Writer, ro: Readout, seed: int, done: set,
                         apcorr_rows: dict, shared_linearity: dict) -> None:
    from stdatamodels.jwst import datamodels as dm

    det = inst.detector(ro.detector)
    sub = inst.subarray(det.name, ro.subarray, ro.filters[0] if ro.filters else "F444W")
    arrays = inst.detector_arrays(det.name, seed)
    match = (det.name, sub.name)
    tag = f"{det.name} {sub.name}"

    if ("static",) + match not in done:
        done.add(("static",) + match)
        m = dm.MaskModel(dq=sub.cut(arrays.dq), validate_on_assignment=False)
        _meta(m, "mask", f"Bad-pixel mask, {tag}", det, sub)
        w.save("mask", m, match, tag)

        m = dm.SaturationModel(data=sub.cut(arrays.saturation), validate_on_assignment=False)
        _drop(m, "dq")
        _meta(m, "saturation", f"Saturation (raw DN, bias included), {tag}", det, sub)
        w.save("saturation", m, match, tag)

        m = dm.SuperBiasModel(data=sub.cut(arrays.bias), validate_on_assignment=False)
        _drop(m, "dq", "err")
        _meta(m, "superbias", f"Superbias = injected bias, {tag}", det, sub)
        m.meta.exposure.readpatt = "ANY"
        w.save("superbias", m, match, tag)

        m = dm.GainModel(data=sub.cut(arrays.gain), validate_on_assignment=False)
        _meta(m, "gain", f"Gain (e-/DN), {tag}", det, sub)
        w.save("gain", m, match, tag)

        m = dm.ReadnoiseModel(data=sub.cut(arrays.readnoise_cds), validate_on_assignment=False)
        _meta(m, "readnoise", f"CDS read noise (DN), {tag}", det, sub)
        w.save("readnoise", m, match, tag)

        # photom slices the area map at the subarray's absolute position:
        # subarray-sized only when the subarray starts at the origin
        area = inst.pixel_area_map(det.name)
        area_sub = sub if (sub.xstart == 1 and sub.ystart == 1) else inst.subarray(det.name, "FULL")
        m = dm.PixelAreaModel(data=area_sub.cut(area), validate_on_assignment=False)
        _meta(m, "area", f"Pixel area relative to PIXAR_SR, from the SIAF distortion, {tag}", det, area_sub)
        m.meta.instrument.filter = "N/A"
        m.meta.instrument.pupil = "N/A"
        m.meta.photometry.pixelarea_steradians = det.pixar_sr
        m.meta.photometry.pixelarea_arcsecsq = det.pixar_a2
        w.save("area", m, match, tag)

        # identity linearity, shared by every detector with the same readout region
        geom = (sub.name, sub.xstart, sub.ystart, sub.xsize, sub.ysize)
        shared_linearity.setdefault(geom, []).append(det)

    # dark: the injected dark current x mean frame time of each group
    pattern = inst.read_pattern(ro.readpatt)
    times = inst.group_frame_times(pattern, ro.ngroups, sub.frame_time)
    rate = sub.cut(arrays.dark_rate)
    dark = (times[:, None, None] * rate[None, :, :]).astype(np.float32)
    m = dm.DarkModel(data=dark, validate_on_assignment=False)
    _drop(m, "dq", "err")
    _meta(m, "dark", f"Dark = injected dark current x group time, {tag} {pattern.name}", det, sub)
    m.meta.exposure.readpatt = pattern.name
    m.meta.exposure.nframes = pattern.nframes
    m.meta.exposure.groupgap = pattern.groupgap
    m.meta.exposure.ngroups = ro.ngroups
    m.meta.exposure.nints = 1
    w.save("dark", m, match + (pattern.name,), f"{tag} {pattern.name} ngroups={ro.ngroups}")

    for filt in ro.filters:
        if ("flat",) + match + (filt,) in done:
            continue
        done.add(("flat",) + match + (filt,))
        finfo = inst.check_filter(det.name, filt)
        flat = sub.cut(inst.flat_field(det.name, filt, seed))
        dq = np.where(flat <= 0, np.uint32(inst.DQ_DO_NOT_USE | inst.DQ_DEAD), np.uint32(0)).astype(np.uint32)
        m = dm.FlatModel(data=flat, dq=dq, validate_on_assignment=False)
        _drop(m, "err")
        _meta(m, "flat", f"Flat field, {tag} {filt}", det, sub, filt=finfo.name, pupil=finfo.pupil)
        w.save("flat", m, match + (finfo.name, finfo.pupil), f"{tag} {filt}")


def write_crds_cache(root: str | os.PathLike, readouts: Iterable[Readout], seed: int,
                     context: int = CONTEXT,
                     apcorr: Mapping[tuple[str, str], Sequence[ApertureCorrection]] | None = None,
                     filter_offsets: bool = True) -> Path:
    """Write a synthetic CRDS cache serving ``readouts``.

    Parameters
    ----------
    root : path
        Cache folder to create (becomes ``CRDS_PATH``).  Must not exist, or
        must be a cache this function wrote (it is then replaced).
    readouts : iterable of Readout
        Detector / subarray / readout pattern / filters to serve (see :func:`readouts_from`).
    seed : int
        Seed of the detector truth (:func:`young.sim.instrument.detector_arrays`);
        must be the seed the ramps are made with.
    context : int
        Context number: mappings ``jwst_<context>.pmap`` etc.
    apcorr : mapping, optional
        ``{(detector, filter): [ApertureCorrection, ...]}`` measured on the
        rendered PSF; missing entries use a Gaussian of the diffraction FWHM.
    filter_offsets : bool
        Small per-filter pointing offsets in the filteroffset references
        (the simulation places sources with the same WCS, so they are
        consistent); False writes zeros.

    Returns
    -------
    Path
        ``root``.
    """
    from stdatamodels.jwst import datamodels as dm

    root = Path(root)
    readouts = list(readouts)
    if not readouts:
        raise ValueError("no readouts to write references for")
    if root.exists() and not (root / COMPLETE_MARK).exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a young.sim CRDS cache")
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        w = _Writer(tmp, context)
        done: set = set()
        shared_linearity: dict = {}
        for ro in readouts:
            _write_detector_refs(w, ro, seed, done, apcorr or {}, shared_linearity)

        # identity linearity, one file per readout region shared by its detectors
        for (name, xs, ys, nx, ny), dets in shared_linearity.items():
            coeffs = np.zeros((3, ny, nx), np.float32)
            coeffs[1] = 1.0
            m = dm.LinearityModel(coeffs=coeffs, dq=np.zeros((ny, nx), np.uint32), validate_on_assignment=False)
            sub = inst.Subarray(name, xs, ys, nx, ny, 4 if nx == inst.FULL else 1, "")
            _meta(m, "linearity", f"Identity linearity (no non-linearity is simulated), {name}", dets[0], sub)
            m.meta.instrument.detector = dets[0].name
            names = "|".join(sorted({d.name for d in dets}))
            w.save("linearity", m, (names, name), f"{names} {name}")

        dets = sorted({inst.detector(ro.detector) for ro in readouts}, key=lambda d: d.name)

        # photom: PHOTMJSR of every supported filter of the channel (not only the used ones)
        for det in dets:
            rows = [(f.name, f.pupil, inst.photmjsr(det.name, f.name), 0.01 * inst.photmjsr(det.name, f.name))
                    for f in inst.FILTERS.values() if f.channel == det.channel]
            table = np.array(rows, dtype=[("filter", "S12"), ("pupil", "S12"),
                                          ("photmjsr", "<f4"), ("uncertainty", "<f4")])
            m = dm.NrcImgPhotomModel(phot_table=table, validate_on_assignment=False)
            _meta(m, "photom", f"PHOTMJSR from collecting area, throughput, gain and PIXAR_SR, {det.name}",
                  det, None)
            m.meta.photometry.pixelarea_steradians = det.pixar_sr
            m.meta.photometry.pixelarea_arcsecsq = det.pixar_a2
            w.save("photom", m, (det.name,), det.name)

        # distortion: SIAF polynomial per detector (valid for every readout region)
        import astropy.units as u

        for det in dets:
            m = dm.DistortionModel(model=inst.distortion_model(det.name), input_units=u.pix,
                                   output_units=u.arcsec, validate_on_assignment=False)
            _meta(m, "distortion", f"SIAF {det.siaf}_FULL Sci->Idl->V2V3 polynomial, {det.name}", det, None)
            m.meta.exposure.type = EXP_TYPE
            m.meta.exposure.p_exptype = "NRC_IMAGE|NRC_TSIMAGE|NRC_FLAT|NRC_LED|NRC_WFSS|NRC_TACQ|NRC_TACONFIRM|"
            m.meta.instrument.filter = "N/A"
            m.meta.instrument.pupil = "N/A"
            m.meta.instrument.p_pupil = "CLEAR|F162M|F164N|F323N|F405N|F466N|F470N|GDHS0|GDHS60|"
            w.save("distortion", m, ("NRC_IMAGE", det.name), det.name)

        # filter offsets: per module and channel
        for (channel, module) in sorted({(d.channel, d.module) for d in dets}):
            filts = []
            for f in inst.FILTERS.values():
                if f.channel != channel:
                    continue
                off = filter_offset(f.name, module) if filter_offsets else (0.0, 0.0)
                filts.append({"filter": f.name, "pupil": f.pupil,
                              "column_offset": off[0], "row_offset": off[1]})
            m = dm.FilteroffsetModel(filters=filts, instrument="NIRCAM", validate_on_assignment=False)
            _meta(m, "filteroffset", f"Filter offsets (pixels), module {module} {channel}", None, None)
            m.meta.instrument.channel = channel
            m.meta.instrument.module = module
            m.meta.input_units = u.pix
            w.save("filteroffset", m, (channel, module), f"{module} {channel}")

        # aperture corrections: one table for every filter, from the PSF where measured
        rows = []
        for f in inst.FILTERS.values():
            det_name = next((d.name for d in dets if d.channel == f.channel),
                            "NRCA1" if f.channel == "SHORT" else "NRCALONG")
            corr = (apcorr or {}).get((det_name, f.name)) or gaussian_apcorr(default_fwhm_pix(det_name, f.name))
            scale = inst.detector(det_name).pixel_scale[0]
            for c in corr:
                # default annulus 2.05-2.6 arcsec: outside the simulated PSF (unit flux inside 2")
                skyin = c.skyin if c.skyin is not None else 2.05 / scale
                skyout = c.skyout if c.skyout is not None else 2.6 / scale
                rows.append((f.name, f.pupil, c.eefraction, c.radius, c.apcorr, skyin, skyout))
        table = np.array(rows, dtype=[("filter", "S12"), ("pupil", "S15"), ("eefraction", "<f4"),
                                      ("radius", "<f4"), ("apcorr", "<f4"), ("skyin", "<f4"),
                                      ("skyout", "<f4")])
        m = dm.NrcImgApcorrModel(apcorr_table=table, validate_on_assignment=False)
        _meta(m, "apcorr", "Aperture corrections measured on the simulated PSFs", None, None)
        w.save("apcorr", m, (EXP_TYPE,), "all filters")

        from astropy.table import Table

        tab = Table(rows=[(f.name, f.pupil, f.abvega) for f in inst.FILTERS.values()],
                    names=("filter", "pupil", "abvega_offset"))
        m = dm.ABVegaOffsetModel(validate_on_assignment=False)
        m.abvega_offset = tab  # an astropy Table (as a constructor keyword it becomes a node)
        _meta(m, "abvegaoffset", "AB - Vega magnitude offsets", None, None)
        w.save("abvegaoffset", m, ("NIRCAM",), "all filters")

        _write_mappings(tmp, w, context)
        (tmp / "young-sim-references.json").write_text(json.dumps(
            {"context": f"jwst_{context:04d}.pmap", "seed": seed,
             "readouts": [ro.__dict__ | {"filters": list(ro.filters)} for ro in readouts],
             "references": w.index}, indent=1))
        (tmp / COMPLETE_MARK).write_text(_dt.datetime.now(_dt.timezone.utc).isoformat() + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _remove_stale_partials(root: Path) -> None:
    """Remove half-written caches of ``root`` left by writers that no longer run."""
    prefix = f".{root.name}.partial-"
    for p in root.parent.glob(prefix + "*"):
        try:
            pid = int(p.name[len(prefix):])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def filter_offset(filter_name: str, module: str) -> tuple[float, float]:
    """Deterministic small (column, row) offset in pixels of a filter (|offset| < 0.3 pixel)."""
    import zlib

    h = zlib.crc32(f"{filter_name}/{module}".encode())
    return (((h & 0xFFFF) / 0xFFFF - 0.5) * 0.5, (((h >> 16) & 0xFFFF) / 0xFFFF - 0.5) * 0.5)


# ---------------------------------------------------------------- mappings


def _mapping_text(header: dict, selector: str) -> str:
    lines = ["header = {"]
    for k in sorted(header):
        lines.append(f"    {k!r} : {header[k]!r},")
    lines.append("}")
    lines.append("")
    return "\n".join(lines) + "\n" + selector


def _finish_mapping(path: Path) -> None:
    """Fill in the sha1sum of a mapping the way crds computes it, then check crds accepts it.

    Same result as ``crds checksum`` (``crds.refactoring.checksum.update_checksum``:
    crds' ``str_checksum`` over the text without the sha1sum line) without its
    slow duplicate-key parse; the mappings written here have no duplicates.
    """
    from crds.core import utils as crds_utils

    text = path.read_text()
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    digest = crds_utils.str_checksum(body)
    out = "".join(line if "sha1sum" not in line else f"    'sha1sum' : {digest!r},\n"
                  for line in text.splitlines(True))
    path.write_text(out)


def _write_mappings(root: Path, w: _Writer, context: int) -> None:
    mapdir = root / "mappings" / "jwst"
    mapdir.mkdir(parents=True, exist_ok=True)
    date = inst.USEAFTER.replace("T", " ")
    written: list[str] = []
    imap_sel: dict[str, str] = {}
    for reftype in _all_reftypes():
        if reftype not in w.entries:
            imap_sel[reftype] = "N/A"
            continue
        name = f"jwst_nircam_{reftype}_{context:04d}.rmap"
        parkeys = _PARKEYS[reftype]
        header = {
            "classes": ("Match", "UseAfter"),
            "derived_from": "generated by young.sim",
            "filekind": reftype.upper(),
            "instrument": "NIRCAM",
            "mapping": "REFERENCE",
            "name": name,
            "observatory": "JWST",
            "parkey": (parkeys, ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")),
            "sha1sum": "0",
            "suffix": reftype,
            "text_descr": f"synthetic {reftype} reference",
        }
        body = ["selector = Match({"]
        for match, fname in sorted(w.entries[reftype]):
            key = match[0] if len(match) == 1 else match
            body.append(f"    {key!r} : UseAfter({{")
            body.append(f"        {date!r} : {fname!r},")
            body.append("    }),")
        body.append("})")
        path = mapdir / name
        path.write_text(_mapping_text(header, "\n".join(body) + "\n"))
        _finish_mapping(path)
        written.append(name)
        imap_sel[reftype] = name

    imap = f"jwst_nircam_{context:04d}.imap"
    header = {"derived_from": "generated by young.sim", "instrument": "NIRCAM", "mapping": "INSTRUMENT",
              "name": imap, "observatory": "JWST", "parkey": ("REFTYPE",), "sha1sum": "0"}
    body = ["selector = {"] + [f"    {k!r} : {v!r}," for k, v in sorted(imap_sel.items())] + ["}"]
    (mapdir / imap).write_text(_mapping_text(header, "\n".join(body) + "\n"))
    _finish_mapping(mapdir / imap)
    written.append(imap)

    pmap = f"jwst_{context:04d}.pmap"
    header = {"derived_from": "generated by young.sim", "mapping": "PIPELINE", "name": pmap,
              "observatory": "JWST", "parkey": ("META.INSTRUMENT.NAME",), "sha1sum": "0"}
    body = "selector = {\n" + f"    'NIRCAM' : {imap!r},\n" + "}\n"
    (mapdir / pmap).write_text(_mapping_text(header, body))
    _finish_mapping(mapdir / pmap)
    written.append(pmap)

    cfg = root / "config" / "jwst"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "ref_cache_subdir_mode").write_text("instrument\n")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    info = {
        "observatory": "jwst",
        "operational_context": pmap,
        "latest_context": pmap,
        "edit_context": pmap,
        "bad_files_list": [],
        "bad_files": "",
        "mappings": sorted(written),
        "force_remote_mode": False,
        "last_synced": now,
    }
    (cfg / "server_config").write_text(pprint.pformat(info) + "\n")
    (cfg / "bad_files.txt").write_text("")


def is_complete(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a cache this module finished writing."""
    return (Path(root) / COMPLETE_MARK).is_file()


def context_name(context: int = CONTEXT) -> str:
    """The pmap name of a context number: ``jwst_9001.pmap``."""
    return f"jwst_{context:04d}.pmap"
