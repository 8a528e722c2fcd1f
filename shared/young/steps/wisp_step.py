"""``young-wisp``: subtract scaled wisp templates from short-wave rate/cal files.

The file side of the wisp correction (ALGORITHMS.md, "Wisps"); the maths is
in :mod:`young.algorithms.wisp` and :mod:`young.algorithms.masks`.  One exposure at a time:

1. **Detector.**  Only NRCA3, NRCA4, NRCB3 and NRCB4 have wisps; any other
   detector is passed through (the product is written unchanged,
   ``YNGWISP = 'SKIPPED'`` and ``YNGWISPN`` says why), so the chain goes on.
2. **Template.**  ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits`` (STScI v3 naming)
   in the template folder (``--templates DIR``, else the config's
   ``templates`` or the seed's ``wisp_directory``); the extension matching the
   product (``CAL`` for cal files, ``RATE`` for rate files).  Rules:

   * no template folder configured, or a folder without any template of this
     detector: an error naming the expected file (a set-up mistake must not
     pass silently);
   * the folder has templates of this detector but not for this
     filter/pupil: the filter has no template, the file passes through
     (``YNGWISPN`` names the missing file);
   * a full-frame template is cut to the subarray (``SUBSTRT``/``SUBSIZE``);
     a template whose shape is neither full frame nor the data's, or that
     has no extension for the product level, is an error;
   * a subarray the template's significant region does not reach (e.g.
     SUBGRISM256 at the bottom of NRCA3) has no wisp: passed through.
3. **Source mask** from the long-wave exposure taken at the same time (its
   tiered source mask, :func:`young.algorithms.masks.tiered_source_mask`, mapped
   through both WCSs onto the short-wave pixels and dilated,
   :func:`young.wisp_geometry.map_mask`); template-region pixels the long-wave readout
   does not cover (subarray strips, detector edges) take the short-wave
   image's own mask.  Without a partner the short-wave image's own tiered
   mask is used everywhere, and the header says so (``YNGWISPM``).  The
   partner is found by :func:`find_lw_partner` (rule documented there).
4. **Scale** by :func:`young.algorithms.wisp.fit_scale` (bounded 1-D minimisation of a
   robust scatter over the template region, row pattern removed for the fit
   only); ``--scale S`` forces a value.
5. **Apply**: subtract ``scale * template``, or with ``--flag-threshold T``
   flag the pixels where it exceeds T in DQ instead (data unchanged).

Header keywords (primary, written through :func:`young.provenance.stamp`):
``YNGWISP`` status (SUBTRACTED / FLAGGED / SKIPPED: the contract refuses a
second application), ``YNGWISPS`` scale, ``YNGWISPE`` its 1-sigma
uncertainty (block jackknife; 0 when forced), ``YNGWISPT`` template file,
``YNGWISPM`` where the source mask came from, ``YNGWISPN`` a note (why a
file was skipped, a fit at its bound), ``YNGWISPF`` pixels flagged.

Optional products beside the product (``X_wisp_cal.fits``):
``X_wisp_cal_model.fits`` (``--save-model``: the subtracted model in the data's
units, extension WISP, and the source mask of the fit, extension MASK) and
``X_wisp_cal.png`` (``--plot``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from young.algorithms import masks, wisp, wisp_geometry
from young.algorithms.dq import bad as dq_bad
from young.contract import atomic, naming
from young.contract.errors import InputError, UsageError
from young.contract.runner import Job, ToolSpec
from young.steps import models as correction

TAG = "wisp"
KEYWORD = "YNGWISP"
#: SW detector token -> LW detector token of the same module
_SW_TOKEN = re.compile(r"^nrc([ab])[1-4]$", re.IGNORECASE)
#: full-frame detector size
FULL = 2048
#: defaults of the tool's own parameters
DEFAULTS = {
    "templates": None,
    "scale": None,
    "flag_threshold": None,
    "bounds": (0.0, 2.0),
    "statistic": "biweight",
    "mask_preset": "young",
    "dilate": 3.0,
    "lw_dirs": (),
    "use_lw": True,
    "save_model": False,
    "plot": False,
}


# --------------------------------------------------------------------------- parameters


def _float_pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: expected two numbers LO,HI, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise UsageError(f"{what}: expected LO < HI, got {lo}, {hi}")
    return lo, hi


def build_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a wisp product (hashed for resume, recorded in the header).

    Command-line values beat the config section (``wisp:``), which beats the
    top level; the template folder also comes from the seed's
    ``wisp_directory`` key.

    Raises
    ------
    UsageError
        A template folder that does not exist, or an invalid value.
    """

    def pick(key, *cfg_keys):
        if cli.get(key) is not None:
            return cli[key]
        for k in cfg_keys or (key,):
            if section.get(k) is not None:
                return section[k]
        return DEFAULTS[key]

    p = dict(DEFAULTS)
    templates = pick("templates", "templates", "wisp_directory")
    if templates:
        folder = Path(str(templates)).expanduser()
        if not folder.is_dir():
            raise UsageError("wisp template folder not found (--templates / wisp_directory)", folder)
        p["templates"] = str(folder.resolve())
    for key in ("scale", "flag_threshold"):
        value = pick(key)
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise UsageError(f"--{key.replace('_', '-')}: not a number: {value!r}") from None
            if not math.isfinite(value):
                raise UsageError(f"--{key.replace('_', '-')}: must be finite")
            if key == "flag_threshold" and value <= 0:
                raise UsageError("--flag-threshold: must be > 0 (data units, e.g. MJy/sr)")
        p[key] = value
    p["bounds"] = _float_pair(pick("bounds"), "--bounds")
    p["statistic"] = str(pick("statistic"))
    if p["statistic"] not in ("biweight", "mad"):
        raise UsageError(f"--statistic: use biweight or mad, not {p['statistic']!r}")
    p["mask_preset"] = str(pick("mask_preset"))
    if p["mask_preset"] not in masks.PRESETS:
        raise UsageError(f"--mask-preset: use one of {', '.join(sorted(masks.PRESETS))}, not {p['mask_preset']!r}")
    try:
        p["dilate"] = float(pick("dilate"))
    except (TypeError, ValueError):
        raise UsageError(f"--dilate: not a number: {pick('dilate')!r}") from None
    if not p["dilate"] >= 0:
        raise UsageError("--dilate: must be >= 0 (short-wave pixels)")
    lw_dirs = cli.get("lw_dirs") or ()  # command line only (a config's relative paths would need resolving)
    lw_dirs = [lw_dirs] if isinstance(lw_dirs, str) else list(lw_dirs)
    resolved = []
    for d in lw_dirs:
        folder = Path(str(d)).expanduser()
        if not folder.is_dir():
            raise UsageError("long-wave folder not found (--lw-dir)", folder)
        resolved.append(str(folder.resolve()))
    p["lw_dirs"] = resolved
    p["use_lw"] = bool(pick("use_lw"))
    p["save_model"] = bool(pick("save_model"))
    p["plot"] = bool(pick("plot"))
    return p


# --------------------------------------------------------------------------- names


def product(src: Path, output_dir: Path | None, params: dict) -> Path:
    """``X_cal -> X_wisp_cal`` (``X_rate -> X_wisp_rate``)."""
    return naming.product_path(src, tag=TAG, output_dir=output_dir)


def validate(src: Path, params: dict):
    """A NIRCam imaging rate or cal file; returns its primary header."""
    return correction.validate_image(src, ("rate", "cal"))


def template_name(detector: str, filt: str, pupil: str) -> str:
    """STScI v3 template file name, ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits``."""
    return f"WISP_{detector.upper()}_{filt.upper()}_{(pupil or 'CLEAR').upper()}.fits"


def extra_path(dst: Path, kind: str, ext: str = ".fits") -> Path:
    """Side product beside ``dst``, named after it: ``X_wisp_cal.fits -> X_wisp_cal_<kind><ext>``.

    The product's full stem (suffix included) keeps the side products of a
    rate and a cal of one exposure apart; ``_<kind>`` is not a JWST suffix,
    so directory expansion never takes them for products.
    """
    stem = naming.parse(dst).stem
    return dst.with_name(f"{stem}_{kind}{ext}" if kind else f"{stem}{ext}")


def lw_base(sw_base: str) -> str | None:
    """Exposure base of the long-wave detector exposed with a short-wave one.

    ``jw01345001001_02101_00001_nrca3 -> jw01345001001_02101_00001_nrcalong``;
    None when the last token is not a short-wave detector (nrca1-4, nrcb1-4).
    """
    head, _, det = sw_base.rpartition("_")
    m = _SW_TOKEN.match(det)
    if not head or not m:
        return None
    return f"{head}_nrc{m.group(1).lower()}long"


def find_lw_partner(src: Path, folders: tuple | list = ()) -> Path | None:
    """The long-wave product of the exposure ``src`` was taken in, or None.

    Rule (first hit wins), in the folder of ``src`` and then in each of
    ``folders`` (``--lw-dir``):

    1. the same name with the detector token replaced (``nrca1-4 ->
       nrcalong``, ``nrcb1-4 -> nrcblong``), same tags, same suffix:
       ``X_nrca3_1f_cal.fits -> X_nrcalong_1f_cal.fits``;
    2. the same with fewer tags, dropping the last first
       (``X_nrcalong_cal.fits``);
    3. any other ``cal`` product of that long-wave exposure, most processed
       first (``X_nrcalong_1f_wisp_cal.fits``: young-wisp passes LW files
       through unchanged).

    Only ``cal`` products qualify (the mapping needs the WCS that Image2's
    assign_wcs adds), so a rate input has no partner.  The file is only
    named here; :func:`lw_source_mask` opens and checks it.
    """
    src = Path(src)
    pn = naming.parse(src)
    base = lw_base(pn.base)
    if base is None or pn.suffix != "cal":
        return None
    names = [naming.ProductName(base, pn.tags[:k], "cal", pn.ext).name for k in range(len(pn.tags), -1, -1)]
    for folder in (src.parent, *map(Path, folders)):
        for name in names:
            cand = folder / name
            if cand.is_file():
                return cand
        others = []
        for cand in folder.glob(f"{base}_*cal{pn.ext}"):
            try:
                cpn = naming.parse(cand)
            except ValueError:
                continue
            if cpn.base == base and cpn.suffix == "cal" and cand.is_file():
                others.append(cand)
        if others:
            return max(others, key=lambda c: (naming.depth(c), c.name))
    return None


# --------------------------------------------------------------------------- templates


class NoTemplate(Exception):
    """The filter has no template in the folder (pass-through, not an error)."""


def locate_template(folder: str | None, detector: str, filt: str, pupil: str) -> Path:
    """Path of the template for a detector/filter/pupil (see the module docstring for the rules).

    Raises
    ------
    InputError
        No folder configured, or no template of this detector at all.
    NoTemplate
        The folder has templates of this detector, not for this filter/pupil.
    """
    name = template_name(detector, filt, pupil)
    if not folder:
        raise InputError(f"wisp template {name} needed: give --templates DIR "
                         "(or wisp_directory in the config)")
    path = Path(folder) / name
    if path.is_file():
        return path
    same_detector = sorted(p.name for p in Path(folder).glob(f"WISP_{detector.upper()}_*.fits"))
    if same_detector:
        raise NoTemplate(f"no wisp template {name} in {folder} "
                         f"(it has {', '.join(same_detector[:4])}{', ...' if len(same_detector) > 4 else ''})")
    raise InputError(f"missing wisp template {path} (expected WISP_{{DETECTOR}}_{{FILTER}}_{{PUPIL}}.fits; "
                     f"the folder has no template for {detector.upper()})")


@functools.lru_cache(maxsize=4)
def _read_template(path: str, mtime: float, ext: str) -> tuple[np.ndarray, np.ndarray]:
    """Template array and its region (full template); cached per worker process."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            names = [h.name for h in hdul]
            if ext not in names:
                raise InputError(f"wisp template {path} has no {ext} extension (has "
                                 f"{', '.join(n for n in names if n)}); {ext.lower()} files need it")
            data = hdul[ext].data
            if data is None or data.ndim != 2:
                raise InputError(f"wisp template {path}: the {ext} extension is not a 2-D image")
            data = np.asarray(data, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken template is the user's to fix
        raise InputError(f"unreadable wisp template {path} ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from None
    return data, wisp_geometry.template_region(data)


def template_for(path: Path, ext: str, model) -> tuple[np.ndarray, np.ndarray]:
    """Template and template region on the data's pixel grid (cut to the subarray).

    Parameters
    ----------
    path : Path
        Template file.
    ext : {'CAL', 'RATE'}
        Extension matching the product level.
    model : ImageModel
        The exposure (shape, ``meta.subarray``).

    Returns
    -------
    template : ndarray, shape of ``model.data``, float32
    region : ndarray of bool, same shape
        :func:`young.wisp_geometry.template_region` of the full template, cut.

    Raises
    ------
    InputError
        The template does not match the data's shape or subarray.
    """
    full, region = _read_template(str(path), path.stat().st_mtime, ext)
    shape = model.data.shape
    if full.shape == shape:
        return full, region
    sub = model.meta.subarray
    name = getattr(sub, "name", None) or "?"
    if full.shape != (FULL, FULL):
        raise InputError(
            f"wisp template {path}: {ext} is {full.shape[1]}x{full.shape[0]}, neither full frame nor the "
            f"data's {shape[1]}x{shape[0]} (subarray {name})")
    xs, ys = sub.xstart, sub.ystart
    xsize, ysize = sub.xsize or shape[1], sub.ysize or shape[0]
    if xs is None or ys is None or (ysize, xsize) != shape:
        raise InputError(f"cannot place the {shape[1]}x{shape[0]} data on the full-frame template {path}: "
                         f"subarray {name} has SUBSTRT=({xs}, {ys}) SUBSIZE=({xsize}, {ysize})")
    try:
        return (wisp_geometry.cut_template(full, xs, ys, xsize, ysize),
                wisp_geometry.cut_template(region, xs, ys, xsize, ysize))
    except ValueError as exc:
        raise InputError(f"{exc} (subarray {name}, template {path})") from None


# --------------------------------------------------------------------------- masks


def lw_source_mask(lw_path: Path, sw_model, preset: str, dilate_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Tiered source mask of the long-wave exposure, mapped onto the short-wave pixels.

    Returns
    -------
    mask : ndarray of bool, shape of the SW data
        True where the SW pixel sees a masked LW pixel (dilated by ``dilate_px``).
    covered : ndarray of bool, same shape
        True where the SW pixel falls on the LW readout (elsewhere the LW
        mask knows nothing: a subarray strip, the gap between detectors).

    Raises
    ------
    InputError
        The partner is not the long-wave detector of the same exposure, or
        has no WCS.
    """
    with correction.open_model(lw_path) as lw:
        det = str(lw.meta.instrument.detector or "")
        if not det.upper().endswith("LONG"):
            raise InputError(f"long-wave partner is detector {det or '?'}", lw_path)
        sw_id = (sw_model.meta.observation.visit_id, sw_model.meta.observation.exposure_number)
        lw_id = (lw.meta.observation.visit_id, lw.meta.observation.exposure_number)
        if sw_id != lw_id:
            raise InputError(f"long-wave partner is another exposure (visit/exposure {lw_id} vs {sw_id})", lw_path)
        if lw.meta.wcs is None or sw_model.meta.wcs is None:
            raise InputError("no WCS (assign_wcs) to map the long-wave mask", lw_path)
        lw_mask = masks.tiered_source_mask(lw.data, lw.dq, params=preset)
        mapper = wisp_geometry.pixel_mapper(sw_model.meta.wcs, lw.meta.wcs)
        shape = sw_model.data.shape
        mask = wisp_geometry.map_mask(lw_mask, mapper, shape, dilate_px=dilate_px)
        return mask, lw_coverage(mapper, shape, lw_mask.shape)


def lw_coverage(sw_to_lw, sw_shape: tuple[int, int], lw_shape: tuple[int, int], step: int = 16) -> np.ndarray:
    """SW pixels that fall on the LW readout, to within ``step`` pixels (conservatively).

    The mapping is evaluated on a grid every ``step`` SW pixels; a grid cell
    counts as covered only when its four corners map inside the LW array, so
    the SW pixels near the edge of the LW footprint count as uncovered (and
    get the SW image's own mask).  ~0.05 s for a full frame instead of a
    second :func:`young.wisp_geometry.map_mask`.
    """
    ny, nx = sw_shape
    ys = np.unique(np.r_[0:ny:step, ny - 1]).astype(float)
    xs = np.unique(np.r_[0:nx:step, nx - 1]).astype(float)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    xl, yl = (np.asarray(c, dtype=float) for c in sw_to_lw(gx, gy))
    inside = (np.isfinite(xl) & np.isfinite(yl) & (xl >= -0.5) & (xl < lw_shape[1] - 0.5)
              & (yl >= -0.5) & (yl < lw_shape[0] - 0.5))
    if inside.shape[0] > 1 and inside.shape[1] > 1:
        cell = inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:] & inside[1:, 1:]
    else:
        cell = inside
    # every SW pixel takes the cell it lies in (cells between consecutive grid nodes)
    iy = np.clip(np.searchsorted(ys, np.arange(ny), side="right") - 1, 0, cell.shape[0] - 1)
    ix = np.clip(np.searchsorted(xs, np.arange(nx), side="right") - 1, 0, cell.shape[1] - 1)
    return cell[iy[:, None], ix[None, :]]


def own_mask_where(model, where: np.ndarray, preset: str, margin: int = 128) -> np.ndarray:
    """The SW image's tiered mask on the bounding box of ``where`` (plus ``margin``), False elsewhere.

    The ring median and the widest smoothing reach ~65 px, so a 128-px
    margin makes the cut's mask the same as the whole image's inside
    ``where``, at a fraction of the cost when ``where`` is an edge strip.
    """
    out = np.zeros(where.shape, bool)
    rows, cols = np.nonzero(where.any(axis=1))[0], np.nonzero(where.any(axis=0))[0]
    if rows.size == 0:
        return out
    y0, y1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, where.shape[0])
    x0, x1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, where.shape[1])
    cut = masks.tiered_source_mask(np.asarray(model.data)[y0:y1, x0:x1], np.asarray(model.dq)[y0:y1, x0:x1],
                                   params=preset)
    out[y0:y1, x0:x1] = cut
    return out & where


def source_mask(job: Job, model, region: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Source mask for the fit and a line saying where it came from.

    The long-wave partner's mask when there is one (:func:`find_lw_partner`)
    and it can be used, else the short-wave image's own tiered mask.  SW
    pixels of the template ``region`` that the LW readout does not cover
    (:func:`lw_coverage`) take the SW image's own mask (computed on their
    bounding box only, :func:`own_mask_where`).
    """
    p = job.params
    why = "disabled (--no-lw)"
    if p["use_lw"]:
        partner = find_lw_partner(job.src, p["lw_dirs"])
        if partner is None:
            why = ("rate product: no WCS to map a long-wave mask" if naming.parse(job.src).suffix != "cal"
                   else f"no long-wave partner ({lw_base(naming.parse(job.src).base) or '?'}_*cal.fits) found")
        else:
            try:
                mask, covered = lw_source_mask(partner, model, p["mask_preset"], p["dilate"])
            except InputError as exc:
                why = f"long-wave partner unusable: {exc.line()}"
            except Exception as exc:  # noqa: BLE001 - a broken partner must not stop the SW file
                why = f"long-wave partner {partner.name} unusable: {type(exc).__name__}: {' '.join(str(exc).split())}"
            else:
                job.log.info("source mask from the long-wave partner %s", partner)
                note = f"LW {partner.name}"
                outside = ~covered if region is None else ~covered & region
                if outside.any():  # only what the fit uses: uncovered pixels of the template region
                    mask = mask & covered | own_mask_where(model, outside, p["mask_preset"])
                    frac = float(np.mean(~covered))
                    job.log.info("%.1f%% of the pixels lie outside the long-wave readout: own mask there",
                                 100 * frac)
                    note += f" + SW own mask on {100 * frac:.0f}%"
                return mask, note
    job.log.warning("source mask from the short-wave image itself: %s", why)
    mask = masks.tiered_source_mask(model.data, model.dq, params=p["mask_preset"])
    return mask, f"SW own mask ({why})"


# --------------------------------------------------------------------------- the correction


@dataclasses.dataclass
class WispResult:
    """What :func:`correct` did (for the header, the log and the QA plot)."""

    scale: float
    uncertainty: float
    mode: str  # SUBTRACTED | FLAGGED
    diagnostics: dict
    model: np.ndarray
    n_flagged: int = 0
    seconds: float = 0.0


def correct(data: np.ndarray, dq: np.ndarray, template: np.ndarray, region: np.ndarray,
            mask: np.ndarray, params: dict, noutputs: int = 1) -> tuple[np.ndarray, np.ndarray, WispResult]:
    """Fit and apply the wisp model to arrays (no files).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        SCI array (MJy/sr for cal, DN/s for rate).
    dq : ndarray of uint32, shape (ny, nx)
        DQ array; pixels with :data:`young.DEFAULT_BAD_BITS` are not fitted.
    template, region : ndarray, shape (ny, nx)
        Template in the data's units and its region (see :func:`template_for`).
    mask : ndarray of bool, shape (ny, nx)
        Source mask (True = source).
    params : dict
        :func:`build_params` output (``scale``, ``flag_threshold``,
        ``bounds``, ``statistic``).
    noutputs : int
        Amplifiers of the readout: the fit's row pattern is per amplifier row.

    Returns
    -------
    data_out : ndarray
        ``data - scale * template``, or ``data`` itself in flag mode.
    dq_out : ndarray
        ``dq``, with strong-wisp pixels flagged in flag mode.
    result : WispResult
    """
    t0 = time.perf_counter()
    bad = mask | dq_bad(dq)
    if params["scale"] is not None:
        scale, err, diag = float(params["scale"]), 0.0, {"method": "forced"}
    else:
        fit = wisp.WispFitParams(bounds=tuple(params["bounds"]), statistic=params["statistic"],
                                 noutputs=noutputs)
        try:
            scale, err, diag = wisp.fit_scale(data, template, bad, region, fit)
        except ValueError as exc:
            raise InputError(f"{exc} (use --scale S to force a value)") from None
    model = wisp.wisp_model(template, scale)
    n_flagged = 0
    if params["flag_threshold"] is not None:
        dq_out = wisp.flag(dq, template, scale, params["flag_threshold"])
        n_flagged = int(np.count_nonzero(model > params["flag_threshold"]))
        data_out, mode = data, "FLAGGED"
    else:
        data_out, dq_out, mode = wisp.subtract(data, template, scale), dq, "SUBTRACTED"
    return data_out, dq_out, WispResult(scale, err, mode, diag, model, n_flagged, time.perf_counter() - t0)


def _skip(model, job: Job, reason: str) -> dict:
    job.log.info("passed through unchanged: %s", reason)
    correction.save(model, job)
    return {KEYWORD: ("SKIPPED", "wisp correction status"), "YNGWISPN": reason}


def process(job: Job) -> dict:
    """Make one wisp product (the contract's ``ToolSpec.process``)."""
    p = job.params
    with correction.open_model(job.src) as model:
        det = str(model.meta.instrument.detector or "").upper()
        filt = str(model.meta.instrument.filter or "").upper()
        pupil = str(model.meta.instrument.pupil or "CLEAR").upper()
        if det not in wisp.WISP_DETECTORS:
            return _skip(model, job, f"{det or 'this detector'} has no wisps")
        level = correction.product_level(model).upper()
        try:
            tpath = locate_template(p["templates"], det, filt, pupil)
        except NoTemplate as exc:
            return _skip(model, job, str(exc))
        template, region = template_for(tpath, level, model)
        if p["scale"] is None and np.count_nonzero(region) < wisp.WispFitParams().min_pixels:
            return _skip(model, job, f"{tpath.name}: no significant wisp on this "
                                     f"{model.meta.subarray.name or ''} readout (template region has "
                                     f"{int(np.count_nonzero(region))} pixels)")
        mask, mask_note = (np.zeros(model.data.shape, bool), "none (scale forced)") if p["scale"] is not None \
            else source_mask(job, model, region)
        before = np.array(model.data, copy=True) if p["plot"] else None
        data_out, dq_out, res = correct(model.data, model.dq, template, region, mask, p,
                                        correction.noutputs(model))
        model.data = data_out
        model.dq = dq_out
        diag = res.diagnostics
        note = ""
        if diag.get("at_bound"):
            note = f"scale at the bound of {tuple(p['bounds'])}: the true scale may lie outside (--bounds)"
            job.log.warning(note)
        job.log.info("%s: scale %.4f +- %.4f (%s), %s in %.2f s; mask: %s", tpath.name, res.scale,
                     res.uncertainty, diag.get("method"), res.mode.lower(), res.seconds, mask_note)
        correction.save(model, job)
        if p["save_model"]:
            write_model(extra_path(job.dst, "model"), res, tpath.name, model.meta.bunit_data, mask)
        if p["plot"]:
            qa_plot(extra_path(job.dst, "", ".png"), before, res, np.asarray(model.data), mask | dq_bad(dq_out),
                    title=f"{job.dst.name}  {tpath.name}")
    unc = res.uncertainty if math.isfinite(res.uncertainty) else -1.0
    keywords = {
        KEYWORD: (res.mode, "wisp correction status"),
        "YNGWISPS": (round(res.scale, 6), "wisp template scale factor"),
        "YNGWISPE": (round(unc, 6), "1-sigma error of YNGWISPS (-1: unknown)"),
        "YNGWISPT": (tpath.name, "wisp template"),
        "YNGWISPM": mask_note,
    }
    if res.mode == "FLAGGED":
        keywords["YNGWISPF"] = (res.n_flagged, "pixels flagged as strong wisp")
    if note:
        keywords["YNGWISPN"] = note
    return keywords


# --------------------------------------------------------------------------- side products


def write_model(path: Path, res: WispResult, template: str, bunit: str | None,
                mask: np.ndarray | None = None) -> None:
    """The wisp model (extension ``WISP``) and the source mask of the fit (``MASK``, 1 = masked), atomically."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["EXTNAME"] = "WISP"
    hdr["BUNIT"] = bunit or ""
    hdr["YNGWISPS"] = (res.scale, "scale factor")
    hdr["YNGWISPT"] = template
    with atomic.atomic_path(path) as tmp:
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(res.model, hdr)]
        if mask is not None:
            hdus.append(fits.ImageHDU(np.asarray(mask, np.uint8), name="MASK"))
        hdus[0].header["YNGWISPS"] = (res.scale, "wisp scale factor")
        fits.HDUList(hdus).writeto(tmp)


def _display(img: np.ndarray, max_size: int = 512) -> np.ndarray:
    """Block-averaged copy of ``img`` at most ``max_size`` pixels on a side (NaN-aware)."""
    f = max(1, int(math.ceil(max(img.shape) / max_size)))
    ny, nx = (s // f * f for s in img.shape)
    a = np.asarray(img[:ny, :nx], dtype=np.float32).reshape(ny // f, f, nx // f, f)
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=(1, 3))


def qa_plot(path: Path, before: np.ndarray, res: WispResult, after: np.ndarray, bad: np.ndarray,
            title: str = "") -> None:
    """QA PNG: the image before, the wisp model, the image after, the scatter vs scale.

    Images are block-averaged to at most 512 pixels a side and shown with
    the same stretch: from median - 3 robust sigma of the unmasked block
    averages after the correction to + 3 sigma or the model's peak.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = _display(before)
    a = _display(after)
    m = _display(res.model)
    sky = _display(np.where(bad, np.nan, after))  # the stretch: sky after the correction
    finite = sky[np.isfinite(sky)]
    med = float(np.median(finite)) if finite.size else 0.0
    sig = float(1.4826 * np.median(np.abs(finite - med))) if finite.size else 1.0
    vmin, vmax = med - 3 * sig, med + 3 * max(sig, float(np.nanmax(m)) / 3 if m.size else sig)
    aspect = b.shape[0] / b.shape[1]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2 if aspect < 0.5 else 5.0))
    for ax, img, name in ((axes[0], b, "before"), (axes[1], m, f"model: {res.scale:.3f} x template"),
                          (axes[2], a, "after")):
        lo, hi = (0.0, max(float(np.nanmax(m)), 1e-30)) if img is m else (vmin, vmax)
        im = ax.imshow(img, origin="lower", cmap="gray" if img is not m else "magma", vmin=lo, vmax=hi,
                       aspect="auto" if aspect < 0.5 else "equal", interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax = axes[3]
    d = res.diagnostics
    if "coarse_scale" in d:
        obj = np.asarray(d["coarse_objective"], float)
        curve = np.sqrt(obj) if d.get("method", "").endswith("biweight") else 1.482602218505602 * obj
        ax.plot(d["coarse_scale"], curve, "o-", color="C0", label="coarse scan")
        ax.errorbar([res.scale], [d.get("scatter_best", np.nan)],
                    xerr=[res.uncertainty if math.isfinite(res.uncertainty) else 0.0],
                    fmt="s", color="C3", label=f"fit {res.scale:.4f} +- {res.uncertainty:.4f}")
        ax.set_xlabel("scale s")
        ax.set_ylabel("robust sigma of data - s x template")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"scale forced: {res.scale}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("scatter vs scale")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- the tool


WISP = ToolSpec(
    name="young-wisp", section="wisp", consumes=("rate", "cal"),
    product=product, process=process, validate=validate,
    accept=correction.not_tagged(TAG), build_params=build_params, applied_keyword=KEYWORD,
)


def app():
    """The typer app of ``young-wisp``."""
    from typing import Annotated, Optional

    import typer

    from young.contract import runner as contract
    from young.contract.cli import option, tool_app

    own = [
        option("templates", Annotated[Optional[str], typer.Option(
            "--templates", "-t", metavar="DIR",
            help="Folder of WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits templates (default: the config's "
                 "wisp_directory).")], None),
        option("scale", Annotated[Optional[float], typer.Option(
            "--scale", metavar="S", help="Force the template scale instead of fitting it.")], None),
        option("flag_threshold", Annotated[Optional[float], typer.Option(
            "--flag-threshold", metavar="T",
            help="Flag pixels whose wisp model exceeds T (data units) in DQ (DO_NOT_USE + OTHER_BAD_PIXEL) "
                 "instead of subtracting.")], None),
        option("bounds", Annotated[Optional[str], typer.Option(
            "--bounds", metavar="LO,HI", help="Range of the fitted scale (default 0,2).")], None),
        option("statistic", Annotated[Optional[str], typer.Option(
            "--statistic", metavar="biweight|mad",
            help="Robust scatter minimised by the fit (default biweight; mad = the baseline's).")], None),
        option("mask_preset", Annotated[Optional[str], typer.Option(
            "--mask-preset", metavar="young|ceers", help="Tiered source-mask preset (default young).")], None),
        option("dilate", Annotated[Optional[float], typer.Option(
            "--dilate", metavar="PX", help="Dilation of the mapped long-wave mask, SW pixels (default 3).")],
            None),
        option("lw_dirs", Annotated[Optional[list[str]], typer.Option(
            "--lw-dir", metavar="DIR",
            help="Also look here for the long-wave partner (default: beside the input only; repeatable).")],
            None),
        option("use_lw", Annotated[Optional[bool], typer.Option(
            "--lw/--no-lw", help="Mask sources with the long-wave partner's mask (default --lw).")], None),
        option("save_model", Annotated[Optional[bool], typer.Option(
            "--save-model", help="Also write the subtracted model and the fit's mask, X_wisp_cal_model.fits.")], None),
        option("plot", Annotated[Optional[bool], typer.Option(
            "--plot", help="Also write a QA plot, X_wisp_cal.png (before, model, after, scatter vs scale).")], None),
    ]

    def main(common, **own_values):
        return contract.run(WISP, common, own_values)

    return tool_app(
        "young-wisp",
        "Subtract scaled wisp templates from NRCA3/A4/B3/B4 *_cal.fits (or *_rate.fits) files "
        "(arguments, directories or stdin); write X_wisp_cal.fits beside each input (or in "
        "--output-dir) and print the product paths. Other detectors pass through unchanged.",
        main, own)
