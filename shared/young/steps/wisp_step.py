"""``WispStep`` (``strun young_wisp``, ``young-wisp``): subtract scaled wisp templates from short-wave images.

The file side of the wisp correction (docs/algorithms.md, "Wisps"); the
maths is in :mod:`young.algorithms.wisp` and :mod:`young.algorithms.wisp_geometry`.
The parameters are declared in :data:`young.steps.specs.WISP`.  One exposure
at a time:

1. **Detector.**  Only NRCA3, NRCA4, NRCB3 and NRCB4 have wisps; any other
   detector is passed on so the chain goes on: by the tool as a hard link to
   the input (no copy, :func:`process`), by the step (``strun``, pipeline
   hooks) unchanged with ``YNGWISP = 'SKIPPED'`` and ``YNGWISPN`` saying why.
2. **Template.**  ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits`` (STScI v3 naming)
   in the template folder (``--wisp-templates DIR``, else the config's
   ``wisp: {wisp_templates: DIR}`` (0.1's ``templates`` accepted) or ``wisp_directory``); the extension matching the
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
   :func:`young.algorithms.wisp_geometry.map_mask`); template-region pixels the long-wave readout
   does not cover (subarray strips, detector edges) take the short-wave
   image's own mask.  Without a partner the short-wave image's own tiered
   mask is used everywhere, and the header says so (``YNGWISPM``).  The
   partner is found by :func:`find_lw_partner` (rule documented there).
4. **Scale** by :func:`young.algorithms.wisp.fit_scale` (bounded 1-D minimisation of a
   robust scatter over the template region, row pattern removed for the fit
   only); ``--scale S`` forces a value.
5. **Apply**: subtract ``scale * template``, or with ``--flag-threshold T``
   flag the pixels where it exceeds T in DQ instead (data unchanged).

Header keywords (primary, written through :func:`young.steps.models.record_keywords`):
``YNGWISP`` status (SUBTRACTED / FLAGGED / SKIPPED: a second application is
refused), ``YNGWISPS`` scale, ``YNGWISPE`` its 1-sigma
uncertainty (block jackknife; 0 when forced), ``YNGWISPT`` template file,
``YNGWISPM`` where the source mask came from, ``YNGWISPN`` a note (why a
file was skipped, a fit at its bound), ``YNGWISPF`` pixels flagged.

Optional products beside the product (``X_wisp_cal.fits``):
``X_wisp_cal_model.fits`` (``--save-correction``: the subtracted model in the data's
units, extension WISP, and the source mask of the fit, extension MASK) and
``X_wisp_cal.png`` (``--plot``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np

from young.algorithms import masks, wisp, wisp_geometry
from young.algorithms.dq import bad as dq_bad
from young.contract import naming
from young.contract.atomic import link_or_copy
from young.contract.errors import InputError
from young.contract.records import Job, Made
from young.steps import models, plots, references, specs
from young.steps.base import Correction, CorrectionStep, run_step

log = logging.getLogger(__name__)

TAG = "wisp"
KEYWORD = "YNGWISP"
#: SW detector token -> LW detector token of the same module


class WispStep(CorrectionStep):
    """Subtract a scaled wisp template from an NRCA3/A4/B3/B4 image (other detectors pass through)."""

    class_alias = "young_wisp"
    spec = specs.WISP
    tag = TAG
    keyword = KEYWORD

    def correct(self, model) -> Correction:
        """Fit and subtract (or flag) the wisp of ``model`` in place; pass other detectors through."""
        p = self.get_pars()
        det = str(model.meta.instrument.detector or "").upper()
        filt = str(model.meta.instrument.filter or "").upper()
        pupil = str(model.meta.instrument.pupil or "CLEAR").upper()
        if det not in wisp.WISP_DETECTORS:
            return _skipped(f"{det or 'this detector'} has no wisps")
        level = models.product_level(model).upper()
        try:
            tpath = references.locate_template(p["wisp_templates"], det, filt, pupil)
        except references.NoTemplate as exc:
            return _skipped(str(exc))
        template, region = references.template_for(tpath, level, model)
        if p["scale"] is None and np.count_nonzero(region) < wisp.WispFitParams().min_pixels:
            return _skipped(f"{tpath.name}: no significant wisp on this {model.meta.subarray.name or ''} "
                            f"readout (template region has {int(np.count_nonzero(region))} pixels)")
        if p["scale"] is not None:
            mask, mask_note = np.zeros(model.data.shape, bool), "none (scale forced)"
        else:
            mask, mask_note = source_mask(self._input_path(model), model, p, region)
        before = np.array(model.data, copy=True) if p["plot"] else None
        nout = models.noutputs(model)
        judged = mask | dq_bad(np.asarray(model.dq))
        fig0 = wisp.template_residual(np.asarray(model.data), template, judged, region, nout)
        data_out, dq_out, res = correct(model.data, model.dq, template, region, mask, p, nout)
        fig1 = wisp.template_residual(np.asarray(data_out), template, judged, region, nout)
        model.data = data_out
        model.dq = dq_out
        diag = res.diagnostics
        note = ""
        if diag.get("at_bound"):
            note = f"scale at the bound of {tuple(p['bounds'])}: the true scale may lie outside (--bounds)"
            log.warning(note)
        log.info("%s: scale %.4f +- %.4f (%s), %s in %.2f s; mask: %s", tpath.name, res.scale,
                 res.uncertainty, diag.get("method"), res.mode.lower(), res.seconds, mask_note)
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
        keywords["YNGWISP0"] = (round(fig0, 6), "template-shaped signal before (data units at peak)")
        keywords["YNGWISP1"] = (round(fig1, 6), "template-shaped signal after")
        worse = (f"template-shaped signal {fig0:.4g} -> {fig1:.4g} (YNGWISP0/1)"
                 if res.mode == "SUBTRACTED" and fig1 > fig0 else "")
        side = []
        bunit = model.meta.bunit_data
        if p["save_correction"]:
            side.append(("model", ".fits", lambda path: write_model(path, res, tpath.name, bunit, mask)))
        if p["plot"]:
            after, bad = np.asarray(model.data), mask | dq_bad(dq_out)
            side.append(("", ".png", lambda path: plots.wisp_plot(path, before, res, after, bad,
                                                                  title=f"{path.stem}  {tpath.name}")))
        return Correction(keywords, side, worse)

    def _input_path(self, model) -> Path:
        """The file the model came from (its long-wave partner is looked for beside it)."""
        name = self.search_attr("_input_filename") or model.meta.filename or ""
        path = Path(str(name))
        if not path.is_absolute() and self.input_dir:
            path = Path(self.input_dir) / path
        return path


def _skipped(reason: str) -> Correction:
    log.info("passed through unchanged: %s", reason)
    return Correction({KEYWORD: ("SKIPPED", "wisp correction status"), "YNGWISPN": reason})


def process(job: Job) -> Made:
    """Make one wisp product (the tool contract's ``process``): :class:`WispStep` on ``job.src``.

    A detector that never has wisps (long-wave, NRCA1/A2/B1/B2) is passed on
    without a copy: the product is a hard link to the input
    (:func:`young.contract.atomic.link_or_copy`), which the contract keeps up to
    date for as long as it is the input's file.  Its header is therefore
    the input's (no ``YNGWISP``); its log says it was passed on.
    """
    det = str((job.header or {}).get("DETECTOR", "")).upper()
    if det and det not in wisp.WISP_DETECTORS:
        how = link_or_copy(job.src, job.tmp)
        job.log.info("%s has no wisps: passed on unchanged (%s of the input)", det, how)
        return Made(info={"summary": f"{det}: no wisps, passed on ({how})"}, linked=how == "link")
    return run_step(WispStep, job.params, job.src, job.tmp)


# --------------------------------------------------------------------------- the long-wave partner


lw_base = naming.lw_base  # the name rule lives with the other product-name rules


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
    assign_wcs adds).  The file is only named here; :func:`lw_source_mask`
    opens and checks it.
    """
    src = Path(src)
    try:
        pn = naming.parse(src)
    except ValueError:
        return None
    base = lw_base(pn.base)
    if base is None:
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
    with models.open_model(lw_path) as lw:
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
    get the SW image's own mask).  Cheaper than a second
    :func:`young.algorithms.wisp_geometry.map_mask`.
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


def source_mask(src: Path, model, p: dict, region: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Source mask for the fit and a line saying where it came from.

    The long-wave partner's mask when there is one (:func:`find_lw_partner`)
    and it can be used, else the short-wave image's own tiered mask.  SW
    pixels of the template ``region`` that the LW readout does not cover
    (:func:`lw_coverage`) take the SW image's own mask (computed on their
    bounding box only, :func:`own_mask_where`).
    """
    why = "disabled (--no-lw)"
    if p["use_lw"] and models.product_level(model) != "cal":
        why = "rate product: no WCS to map a long-wave mask"
    elif p["use_lw"]:
        partner = find_lw_partner(src, p["lw_dirs"])
        if partner is None:
            base = lw_base(naming.parse(src).base) if src.name.endswith(".fits") and "_" in src.name else None
            why = f"no long-wave partner ({base or '?'}_*cal.fits) found"
        else:
            try:
                mask, covered = lw_source_mask(partner, model, p["mask_preset"], p["dilate"])
            except InputError as exc:
                why = f"long-wave partner unusable: {exc.line()}"
            except Exception as exc:  # noqa: BLE001 - a broken partner must not stop the SW file
                why = f"long-wave partner {partner.name} unusable: {type(exc).__name__}: {' '.join(str(exc).split())}"
            else:
                log.info("source mask from the long-wave partner %s", partner)
                note = f"LW {partner.name}"
                outside = ~covered if region is None else ~covered & region
                if outside.any():  # only what the fit uses: uncovered pixels of the template region
                    mask = mask & covered | own_mask_where(model, outside, p["mask_preset"])
                    frac = float(np.mean(~covered))
                    log.info("%.1f%% of the pixels lie outside the long-wave readout: own mask there",
                                 100 * frac)
                    note += f" + SW own mask on {100 * frac:.0f}%"
                return mask, note
    log.warning("source mask from the short-wave image itself: %s", why)
    mask = masks.tiered_source_mask(model.data, model.dq, params=p["mask_preset"])
    return mask, f"SW own mask ({why})"


# --------------------------------------------------------------------------- the correction on arrays


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
        The step's parameters (``scale``, ``flag_threshold``, ``bounds``,
        ``statistic``).
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


# --------------------------------------------------------------------------- side products


def write_model(path: Path, res: WispResult, template: str, bunit: str | None,
                mask: np.ndarray | None = None) -> None:
    """The wisp model (extension ``WISP``) and the source mask of the fit (``MASK``, 1 = masked)."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["EXTNAME"] = "WISP"
    hdr["BUNIT"] = bunit or ""
    hdr["YNGWISPS"] = (res.scale, "scale factor")
    hdr["YNGWISPT"] = template
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(res.model, hdr)]
    if mask is not None:
        hdus.append(fits.ImageHDU(np.asarray(mask, np.uint8), name="MASK"))
    hdus[0].header["YNGWISPS"] = (res.scale, "wisp scale factor")
    models.write_hdus(path, hdus)
