"""Simulate a whole NIRCam imaging set: uncal ramps, CRDS cache, wisp templates, truth.

:func:`simulate` writes, under ``DIR``::

    DIR/raw/jw<...>_<detector>_uncal.fits     level-1b ramps (real JWST names)
    DIR/crds_cache/                           synthetic CRDS cache (context jwst_9001.pmap)
    DIR/wisp_templates/WISP_<DET>_<FILTER>_<PUPIL>.fits
    DIR/truth/                                catalog, per-file truth, 1/f patterns, README.md
    DIR/young.yaml                            config for the YOUNG tools (written last)

``young.yaml`` is written last: a set without it is incomplete (killed run).

Presets (:data:`young.sim.presets.PRESETS`) fix the readout, detectors, filters, dithers and
source densities; keyword overrides change any preset field.  Everything is
deterministic for a seed: every random component draws from its own stream
(:func:`young.sim.instrument.rng_for`), so switching one off (e.g.
``one_over_f_dn=0``) leaves all other draws unchanged -- the test of the 1/f
truth relies on that.

The scene, artifacts and ramp sampling are :mod:`young.sim.scene`,
:mod:`young.sim.artifacts` and :mod:`young.sim.ramps`; this module places
sources with the real pipeline WCS (:mod:`young.sim.exposures`), writes the
references consistent with the injected detector (:mod:`young.sim.crds_cache`)
and computes the truth.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from young.contract.errors import UsageError
from young.sim import crds_cache, exposures, mast
from young.sim import instrument as inst
from young.sim.presets import (
    CATALOG_MARGIN_ARCSEC,
    REFCAT_ERROR_MAS,
    REFCAT_STARS,
    SET_ITEMS,
    SKY_MJYSR,
    WISP_PEAK_SKY_FRACTION,
    Plan,
    Preset,
    plan_exposures,
    preset,
)
from young.sim.stage1_model import first_saturated_group, oneoverf_truth

# ---------------------------------------------------------------- catalog


def build_catalog(plan: Plan):
    """The truth catalog covering every readout of the plan (plus a margin).

    The field's bounding box (tangent plane about its centre) is cut into
    cells of about square shape; each cell is filled by
    :func:`young.sim.scene.make_catalog` (its own random stream), cropped to
    the cell, and stars closer than the minimum separation to a star of a
    neighbouring cell are dropped.  Ids are renumbered 1..N.

    Returns
    -------
    astropy.table.Table
        Columns of :func:`young.sim.scene.make_catalog`; ``meta`` has the field
        centre, seed and preset.
    """
    from astropy.table import vstack
    from scipy.spatial import cKDTree

    from young.sim import scene

    p = plan.preset
    ras, decs = [], []
    for spec in plan.specs:
        r, d = exposures.footprint(spec)
        ras.append(r)
        decs.append(d)
    ras, decs = np.concatenate(ras), np.concatenate(decs)
    ra_c, dec_c = p.ra, p.dec
    xi, eta = exposures.gnomonic(ra_c, dec_c, ras, decs)
    margin = CATALOG_MARGIN_ARCSEC + 3 * p.pointing_error_mas / 1000.0
    x0, x1 = xi.min() - margin, xi.max() + margin
    y0, y1 = eta.min() - margin, eta.max() + margin
    w, h = x1 - x0, y1 - y0
    side = min(w, h)
    nx, ny = max(1, math.ceil(w / side - 1e-6)), max(1, math.ceil(h / side - 1e-6))
    cw, ch = w / nx, h / ny
    half = max(cw, ch) / 2.0
    cells = [(i, j) for j in range(ny) for i in range(nx)]
    # saturated stars and the blob go to the cells nearest the centre first
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cells.sort(key=lambda c: (x0 + (c[0] + 0.5) * cw - cx) ** 2 + (y0 + (c[1] + 0.5) * ch - cy) ** 2)
    nsat = [p.n_saturated // len(cells) + (1 if k < p.n_saturated % len(cells) else 0)
            for k in range(len(cells))]
    parts = []
    area = (2 * half) ** 2
    for k, (i, j) in enumerate(cells):
        cxi, ceta = x0 + (i + 0.5) * cw, y0 + (j + 0.5) * ch
        tra, tdec = exposures.inv_gnomonic(ra_c, dec_c, cxi, ceta)
        rng = inst.rng_for(plan.seed, "catalog", i, j)
        sep = p.min_separation
        cat = scene.make_catalog(
            rng, float(tra), float(tdec), half / 3600.0, list(p.filters),
            n_stars=int(round(p.star_density * area)), n_galaxies=int(round(p.galaxy_density * area)),
            n_saturated=nsat[k], blob=bool(p.blob and k == 0), min_separation_arcsec=sep,
            star_mag_range=p.star_mag_range, galaxy_mag_range=p.galaxy_mag_range,
            saturated_mag_range=p.saturated_mag_range)
        sxi, seta = exposures.gnomonic(ra_c, dec_c, np.asarray(cat["ra"]), np.asarray(cat["dec"]))
        inside = ((sxi >= x0 + i * cw) & (sxi < x0 + (i + 1) * cw)
                  & (seta >= y0 + j * ch) & (seta < y0 + (j + 1) * ch))
        inside |= np.asarray(cat["kind"]) == "blob"
        parts.append(cat[inside])
    cat = vstack(parts, metadata_conflicts="silent")
    # isolation across cell borders
    xi, eta = exposures.gnomonic(ra_c, dec_c, np.asarray(cat["ra"]), np.asarray(cat["dec"]))
    star = np.asarray(cat["kind"]) == "star"
    idx = np.flatnonzero(star)
    if len(idx) > 1:
        tree = cKDTree(np.c_[xi[idx], eta[idx]])
        drop = set()
        for a, b in sorted(tree.query_pairs(p.min_separation)):
            if a not in drop and b not in drop:
                drop.add(b)
        keep = np.ones(len(cat), bool)
        keep[idx[sorted(drop)]] = False
        cat = cat[keep]
    cat = _place_blob(plan, cat)
    cat = _place_saturated(plan, cat)
    cat["id"] = np.arange(1, len(cat) + 1, dtype=np.int32)
    cat.meta.update({"field_ra": ra_c, "field_dec": dec_c, "seed": plan.seed, "preset": p.name})
    return cat


def _place_blob(plan: Plan, cat):
    """Centre the extended blob (if any) on the first short-wavelength readout, near its middle."""
    blob = np.flatnonzero(np.asarray(cat["kind"]) == "blob")
    first = [s for s in plan.specs if s.activity == 1 and s.exposure == 1 and not s.det.is_long]
    if not len(blob) or not first:
        return cat
    spec = first[0]
    sub = spec.sub
    rng = inst.rng_for(plan.seed, "blob")
    px = sub.xstart - 1 + sub.xsize * rng.uniform(0.35, 0.65)
    py = sub.ystart - 1 + sub.ysize * rng.uniform(0.35, 0.65)
    v2, v3 = inst.distortion_model(spec.detector)(px, py)
    ra = np.array(cat["ra"], float)
    dec = np.array(cat["dec"], float)
    ra[blob[0]], dec[blob[0]] = spec.attitude.sky(float(v2), float(v3))
    cat["ra"] = ra
    cat["dec"] = dec
    return cat


def _place_saturated(plan: Plan, cat):
    """Move the saturated stars onto the short-wavelength readouts of the first exposure.

    Random cells rarely put them on a narrow subarray; this puts each on a SW
    detector (round robin) at least 40 pixels (or a quarter of the height)
    from the edges, and removes other sources within twice the minimum
    separation of it (galaxies: plus three effective radii).
    """
    p = plan.preset
    sat = np.flatnonzero(np.asarray(cat["saturated"], bool) & (np.asarray(cat["kind"]) == "star"))
    first = [s for s in plan.specs if s.activity == 1 and s.exposure == 1 and not s.det.is_long]
    if not len(sat) or not first:
        return cat
    rng = inst.rng_for(plan.seed, "saturated-stars")
    ra = np.array(cat["ra"], float)
    dec = np.array(cat["dec"], float)
    for k, i in enumerate(sat):
        spec = first[k % len(first)]
        sub = spec.sub
        mx, my = min(40.0, sub.xsize / 4), min(40.0, sub.ysize / 4)
        px = rng.uniform(mx, sub.xsize - 1 - mx) + sub.xstart - 1
        py = rng.uniform(my, sub.ysize - 1 - my) + sub.ystart - 1
        v2, v3 = inst.distortion_model(spec.detector)(px, py)
        ra[i], dec[i] = spec.attitude.sky(float(v2), float(v3))
    cat["ra"] = ra
    cat["dec"] = dec
    keep = np.ones(len(cat), bool)
    kind = np.asarray(cat["kind"])
    reff = np.asarray(cat["r_eff_arcsec"], float)
    for i in sat:
        xi, eta = exposures.gnomonic(ra[i], dec[i], ra, dec)
        d = np.hypot(xi, eta)
        close = (d < 2 * p.min_separation + np.where(kind == "galaxy", 3 * reff, 0.0)) & (kind != "blob")
        close[sat] = False
        keep &= ~close
    return cat[keep]


# ---------------------------------------------------------------- per-file simulation


@dataclass
class _Context:
    plan: Plan
    catalog: object
    out: Path
    cache: Path
    wisp_rates: dict = field(default_factory=dict)


def _reference(cache: Path, reftype: str, match: tuple) -> Path:
    index = json.loads((cache / "young-sim-references.json").read_text())
    for entry in index["references"]:
        if entry["reftype"] != reftype:
            continue
        m = entry["match"]
        if all(any(part == str(want) for part in str(have).split("|")) for have, want in zip(m, match)):
            return cache / "references" / "jwst" / "nircam" / entry["file"]
    raise KeyError(f"no {reftype} reference for {match}")


def sky_level_dn(detector: str, filt: str) -> float:
    """Nominal sky count rate (DN/s per pixel at flat = 1) of a filter on a detector."""
    return SKY_MJYSR[inst.filter_info(filt).name] / inst.photmjsr(detector, filt)


def wisp_template_rate(detector: str, filt: str, seed: int, family: str = "lobes") -> np.ndarray:
    """Full-frame wisp template in DN/s (as it shows in a rate file, flat applied) of unit scale."""
    from young.sim import artifacts

    det = inst.detector(detector)
    amp = artifacts.wisp_strength(det.name, filt) * WISP_PEAK_SKY_FRACTION * sky_level_dn(det.name, filt)
    shape = artifacts.wisp_template(det.name, filt, (inst.FULL, inst.FULL), family=family)
    return (amp * shape * inst.flat_field(det.name, filt, seed)).astype(np.float32)


def _y_axis_pa(wcs, shape) -> float:
    ny, nx = shape
    x, y = nx / 2.0, ny / 2.0
    r0, d0 = wcs(x, y)
    r1, d1 = wcs(x, y + 10.0)
    dx = (r1 - r0) * math.cos(math.radians(d0))
    dy = d1 - d0
    return math.degrees(math.atan2(dx, dy)) % 360.0


def simulate_file(ctx: _Context, spec: exposures.ExposureSpec) -> tuple[np.ndarray, dict, np.ndarray, object]:
    """Ramps, truth record, 1/f truth image and per-file source table of one detector file."""
    from astropy.table import Table

    from young.sim import artifacts, ramps, scene

    p, seed = ctx.plan.preset, ctx.plan.seed
    det, sub, filt = spec.det, spec.sub, inst.filter_info(spec.filter)
    shape = sub.shape
    arrays = inst.detector_arrays(det.name, seed)
    flat = sub.cut(inst.flat_field(det.name, filt.name, seed))
    area = sub.cut(inst.pixel_area_map(det.name))
    refmask = np.zeros(shape, bool)
    rr, cc = sub.slices
    yy = np.arange(rr.start, rr.stop)
    xx = np.arange(cc.start, cc.stop)
    refmask[(yy < inst.NREF) | (yy >= inst.FULL - inst.NREF), :] = True
    refmask[:, (xx < inst.NREF) | (xx >= inst.FULL - inst.NREF)] = True
    key = spec.basename

    # -- sources, placed with the pipeline's WCS for the true pointing
    dist = _reference(ctx.cache, "distortion", ("NRC_IMAGE", det.name))
    foff = _reference(ctx.cache, "filteroffset", (det.channel, det.module))
    wcs = exposures.pipeline_wcs(spec, dist, foff, true_pointing=True)
    cat = ctx.catalog
    cra, cdec = np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)
    wi = spec.wcsinfo(true=True)
    # pre-select sources near the readout (its centre: the aperture reference point may be off-centre)
    ra_c, dec_c = wcs((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
    xi, eta = exposures.gnomonic(float(ra_c), float(dec_c), cra, cdec)
    radius = math.hypot(*shape) * max(det.pixel_scale) / 2.0 * 1.05 + 10.0
    near = np.hypot(xi, eta) < radius + np.asarray(cat["r_eff_arcsec"], float) * 8
    x = np.full(len(cat), np.nan)
    y = np.full(len(cat), np.nan)
    if near.any():
        x[near], y[near] = exposures.sky_to_pixel(wcs, cra[near], cdec[near])
    pixscale = float(np.mean(det.pixel_scale))
    k_dn = inst.dn_s_per_njy(det.name, filt.name)
    src = scene.render(cat, filt.name, x, y, shape, pixscale, k_dn,
                       y_axis_pa_deg=_y_axis_pa(wcs, shape), parity=-1)
    # flux landing in a pixel -> DN/s: flat / relative pixel area (see truth README)
    src *= np.where(area > 0, flat / area, 0.0).astype(np.float32)

    # -- sky background with a gradient (continuous across the full frame)
    brng = inst.rng_for(seed, "background", key)
    level_mjysr = SKY_MJYSR[filt.name] * p.background_scale * brng.uniform(0.85, 1.15)
    level_dn = level_mjysr / inst.photmjsr(det.name, filt.name)
    gx, gy = level_dn * brng.uniform(-0.04, 0.04, 2) / inst.FULL
    bkg, bkg_model = artifacts.background_rate(
        shape, level_dn, gx, gy, x0=inst.FULL / 2 - (sub.xstart - 1), y0=inst.FULL / 2 - (sub.ystart - 1))
    bkg = bkg * flat

    # -- wisps
    wisp_scale = 0.0
    wisp = None
    if p.wisps and det.has_wisps and not det.is_long:
        tkey = (det.name, filt.name)
        if tkey not in ctx.wisp_rates:
            ctx.wisp_rates[tkey] = wisp_template_rate(det.name, filt.name, seed, p.wisp_shape)
        wisp_scale = float(inst.rng_for(seed, "wisp", key).uniform(0.5, 1.5))
        wisp = wisp_scale * sub.cut(ctx.wisp_rates[tkey])

    rate = src + bkg + (wisp if wisp is not None else 0.0)
    rate[refmask] = 0.0
    rate = np.maximum(rate, 0.0).astype(np.float32)

    # -- 1/f noise, cosmic rays, ramps
    tm = spec.times()
    amp_1f = 0.0
    cube = None
    if p.one_over_f_dn > 0 or p.amp_offset_dn > 0:
        amp_1f = p.one_over_f_dn * float(inst.rng_for(seed, "1f-amplitude", key).uniform(0.8, 1.2))
        cube = artifacts.one_over_f_cube(
            inst.rng_for(seed, "1f", key), spec.nints, spec.ngroups, shape[0], shape[1], sub.noutputs,
            amplitude_dn=amp_1f, alpha=p.one_over_f_alpha, common_fraction=p.one_over_f_common,
            amp_offset_dn=p.amp_offset_dn,
            fastaxis=det.fastaxis, slowaxis=det.slowaxis)
    crs = None
    if p.cosmic_rays:
        crs = artifacts.cosmic_rays(inst.rng_for(seed, "cosmic-rays", key), shape,
                                    tm["integration_time"], nints=spec.nints)
    pat = spec.pattern
    ramp_args = dict(ngroups=spec.ngroups, nints=spec.nints, nframes=pat.nframes, groupgap=pat.groupgap,
                     frame_time=sub.frame_time, bias_dn=sub.cut(arrays.bias), dark_dn_s=sub.cut(arrays.dark_rate),
                     gain_e_dn=sub.cut(arrays.gain), readnoise_dn=sub.cut(arrays.readnoise_cds),
                     saturation_dn=sub.cut(arrays.saturation), cosmic_rays=crs)
    ramp = ramps.make_ramps(inst.rng_for(seed, "ramps", key), rate, additive_cube=cube, **ramp_args)

    # -- rate-equivalent 1/f truth
    truth_1f = np.zeros(shape, np.float32)
    if cube is not None:
        ramp_wo = ramps.make_ramps(inst.rng_for(seed, "ramps", key), rate, additive_cube=None, **ramp_args)
        dark_ref = (spec.group_times()[:, None, None] * sub.cut(arrays.dark_rate)[None]).astype(np.float32)
        truth_1f = oneoverf_truth(spec, ramp, ramp_wo, sub.cut(arrays.bias), dark_ref, sub.cut(arrays.gain),
                                  sub.cut(arrays.readnoise_cds), sub.cut(arrays.saturation), sub.cut(arrays.dq))
    tdq = np.zeros(shape, np.uint8)
    for i in range(spec.nints):
        tdq[first_saturated_group(ramp[i], sub.cut(arrays.saturation)) < spec.ngroups] |= 1
    if crs is not None and len(crs):
        tdq[crs["y"], crs["x"]] |= 2
    tdq[refmask] |= 4
    tdq[(sub.cut(arrays.dq) & inst.DQ_DO_NOT_USE) != 0] |= 8

    # -- per-file source truth
    on = np.isfinite(x) & (x > -0.5) & (x < shape[1] - 0.5) & (y > -0.5) & (y < shape[0] - 0.5)
    ix = np.clip(np.round(np.nan_to_num(x)).astype(int), 0, shape[1] - 1)
    iy = np.clip(np.round(np.nan_to_num(y)).astype(int), 0, shape[0] - 1)
    fcol = f"flux_{filt.name}"
    flux = np.asarray(cat[fcol], float)
    expected = flux * k_dn * np.where(area[iy, ix] > 0, flat[iy, ix] / area[iy, ix], 0.0)
    srcs = Table()
    srcs["id"] = np.asarray(cat["id"])[on]
    srcs["kind"] = np.asarray(cat["kind"])[on]
    srcs["ra"] = cra[on]
    srcs["dec"] = cdec[on]
    srcs["x"] = x[on]
    srcs["y"] = y[on]
    srcs["flux_njy"] = flux[on]
    srcs["rate_dn_s"] = expected[on].astype(np.float32)
    srcs["saturated"] = tdq[iy[on], ix[on]] & 1 > 0
    srcs["x"].description = "0-based pixel column (DMS, this readout) of the source centre, true WCS"
    srcs["rate_dn_s"].description = ("total count rate of the source in the rate file (DN/s): "
                                     "flux x dn_s_per_njy x flat / relative pixel area at its centre")

    record = {
        "file": spec.filename, "basename": spec.basename, "exposure_id": spec.exposure_id,
        "detector": det.name, "module": det.module, "channel": det.channel,
        "filter": filt.name, "pupil": filt.pupil, "subarray": sub.name,
        "xstart": sub.xstart, "ystart": sub.ystart, "xsize": sub.xsize, "ysize": sub.ysize,
        "noutputs": sub.noutputs, "readpatt": pat.name, "ngroups": spec.ngroups, "nints": spec.nints,
        "group_time_s": tm["group_time"], "exposure_time_s": tm["exposure_time"],
        "activity": spec.activity, "exposure": spec.exposure, "dither": spec.dither,
        "pointing_error_east_arcsec": spec.pointing_error[0],
        "pointing_error_north_arcsec": spec.pointing_error[1],
        "ra_ref_nominal": spec.wcsinfo()["ra_ref"], "dec_ref_nominal": spec.wcsinfo()["dec_ref"],
        "ra_ref_true": wi["ra_ref"], "dec_ref_true": wi["dec_ref"], "roll_ref": wi["roll_ref"],
        "photmjsr": inst.photmjsr(det.name, filt.name), "pixar_sr": det.pixar_sr,
        "dn_s_per_njy": k_dn,
        "background_mjysr": level_mjysr, "background_dn_s": level_dn,
        "background_gx_dn_s_per_pix": float(gx), "background_gy_dn_s_per_pix": float(gy),
        "background_model": bkg_model,
        "wisp_scale": wisp_scale,
        "wisp_template": (f"WISP_{det.name}_{filt.name}_{filt.pupil}.fits" if wisp is not None else ""),
        "oneoverf_amplitude_dn": amp_1f, "amp_offset_dn": p.amp_offset_dn if cube is not None else 0.0,
        "oneoverf_rate_rms_dn_s": float(np.nanstd(truth_1f[~refmask])) if cube is not None else 0.0,
        "oneoverf_truth": f"oneoverf/{spec.basename}_1f_truth.fits",
        "n_cosmic_ray_pixels": int(0 if crs is None else len(crs)),
        "n_sources_on_detector": int(on.sum()),
        "n_stars_on_detector": int((on & (np.asarray(cat["kind"]) == "star")).sum()),
    }
    return ramp, record, (truth_1f, tdq, src), srcs


# ---------------------------------------------------------------- writing the set


def _write_fits(path: Path, hdus) -> None:
    from astropy.io import fits

    from young.contract.atomic import atomic_path

    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def write_wisp_template(path: Path, detector: str, filt: str, seed: int, rate_full: np.ndarray) -> None:
    """A wisp template in the STScI layout: primary + ``CAL`` (MJy/sr) + ``RATE`` (DN/s), full frame DMS."""
    from astropy.io import fits

    finfo = inst.filter_info(filt)
    flat = inst.flat_field(detector, filt, seed)
    phot = inst.photmjsr(detector, filt)
    with np.errstate(invalid="ignore", divide="ignore"):
        cal = np.where(flat > 0, rate_full * phot / flat, 0.0).astype(np.float32)
    prim = fits.PrimaryHDU()
    h = prim.header
    h["TELESCOP"] = "JWST"
    h["INSTRUME"] = "NIRCAM"
    h["DETECTOR"] = detector
    h["FILTER"] = finfo.name
    h["PUPIL"] = finfo.pupil
    h["PHOTMJSR"] = (phot, "[MJy/sr per DN/s] used for CAL")
    h["ORIGIN"] = "young.sim"
    h["COMMENT"] = "Synthetic wisp template (young.sim): CAL = RATE * PHOTMJSR / FLAT, unit scale."
    h["COMMENT"] = "A simulated exposure carries wisp_scale x RATE (truth/exposures.ecsv)."
    cal_h = fits.ImageHDU(cal, name="CAL")
    cal_h.header["BUNIT"] = "MJy/sr"
    rate_h = fits.ImageHDU(rate_full.astype(np.float32), name="RATE")
    rate_h.header["BUNIT"] = "DN/s"
    _write_fits(path, [prim, cal_h, rate_h])


def _write_oneoverf(path: Path, spec, truth: np.ndarray, tdq: np.ndarray, record: dict,
                    sources: np.ndarray | None = None) -> None:
    from astropy.io import fits

    prim = fits.PrimaryHDU()
    h = prim.header
    h["FILENAME"] = (spec.filename, "uncal file")
    h["DETECTOR"] = spec.detector
    h["FILTER"] = spec.filter
    h["SUBARRAY"] = spec.subarray
    h["SUBSTRT1"] = spec.sub.xstart
    h["SUBSTRT2"] = spec.sub.ystart
    h["NOUTPUTS"] = spec.sub.noutputs
    h["AMP1F"] = (record["oneoverf_amplitude_dn"], "[DN] amp row-mean rms per group read")
    h["COMMENT"] = ("SCI: rate(with 1/f) - rate(without 1/f) in DN/s, as jwst stage 1 "
                    "(superbias, refpix, dark, OLS_C weights) makes it.")
    h["COMMENT"] = "DQ bits: 1 saturated ramp, 2 cosmic-ray hit, 4 reference pixel, 8 bad pixel (mask)."
    sci = fits.ImageHDU(truth.astype(np.float32), name="SCI")
    sci.header["BUNIT"] = "DN/s"
    dq = fits.ImageHDU(tdq.astype(np.uint8), name="DQ")
    hdus = [prim, sci, dq]
    if sources is not None:
        # mostly exact zeros off the sources: lossless tile compression keeps the file small
        comp = fits.CompImageHDU(np.asarray(sources, np.float32), name="SOURCES", compression_type="GZIP_2")
        comp.header["BUNIT"] = "DN/s"
        hdus.append(comp)
    _write_fits(path, hdus)


def _remove_set(out: Path) -> None:
    for item in SET_ITEMS:
        p = out / item
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def check_output_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Check ``out_dir`` can take a new set; with ``force`` remove a previous set's items.

    Raises
    ------
    UsageError
        ``out_dir`` is not a writable folder, or it is not empty and ``force`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError("exists and is not a directory", out)
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError("exists and is not empty (use --force to replace a simulated set)", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".young-sim-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write there ({exc.strerror or exc})", out) from None
    if force:
        _remove_set(out)
    return out


def _say(progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def simulate(out_dir: str | os.PathLike, preset_name: str = "tiny", seed: int = 1, *, force: bool = False,
             progress: Callable[[str], None] | None = None, only: Iterable[str] | None = None,
             **overrides) -> list[Path]:
    """Simulate a NIRCam imaging set.

    Parameters
    ----------
    out_dir : path
        Folder to write the set into (created; must be empty unless ``force``).
    preset_name : str
        ``tiny``, ``demo`` or ``full`` (:data:`PRESETS`).
    seed : int
        Seed of every random component (same seed, same set).
    force : bool
        Replace a previous set in ``out_dir`` (only its own items are removed).
    progress : callable, optional
        Called with one line of progress text at a time.
    only : iterable of str, optional
        Simulate only the files whose basename matches one of these glob
        patterns (e.g. ``"*_00001_nrca3"``); the plan, catalog and cache are
        those of the whole set, so the files are identical to the full run's.
        The set is then partial (no ``young.yaml``).
    **overrides
        Any :class:`Preset` field (``ngroups``, ``readpatt``, ``nints``,
        ``blob``, ``one_over_f_dn``, ``wisps``, ...); None values are ignored.

    Returns
    -------
    list of Path
        The uncal files, in exposure order.

    Raises
    ------
    UsageError
        Invalid options or an unusable ``out_dir``.
    """
    t0 = time.monotonic()
    if not isinstance(seed, int) or seed < 0:
        raise UsageError(f"must be a non-negative integer, got {seed!r}", "--seed")
    p = preset(preset_name, **overrides)
    out = check_output_dir(out_dir, force=force)
    plan = plan_exposures(p, seed)
    _say(progress, f"{p.name}: {len(plan.specs)} files, {p.subarray} {p.readpatt} ngroups={p.ngroups} "
                   f"nints={p.nints}, seed {seed}")

    # the CRDS cache first: the WCS that places the sources is built from its references
    from young.sim import scene

    # aperture corrections for the mosaics young-stage3 makes: drizzled at pixfrac 1 onto one grid of the
    # finest native scale (the SW one when SW filters are present); radii in native pixels, as jwst reads them
    apcorr = {}
    out_scale = min(float(np.mean(spec.det.pixel_scale)) for spec in plan.specs)
    for spec in plan.specs:
        key = (spec.detector, spec.filter)
        if key in apcorr:
            continue
        scale = float(np.mean(spec.det.pixel_scale))
        rpsf = scene.PSF_RADIUS_ARCSEC
        fractions = (0.3, 0.5, 0.7)
        radii = scene.mosaic_ee_radii_arcsec(spec.filter, fractions, scale, out_scale)
        apcorr[key] = [crds_cache.ApertureCorrection(ee, r / scale, 1.0 / ee, (rpsf + 0.05) / scale,
                                                     (rpsf + 0.6) / scale)
                       for ee, r in zip(fractions, radii)]
    cache = crds_cache.write_crds_cache(out / "crds_cache", crds_cache.readouts_from(plan.specs), seed,
                                        apcorr=apcorr)
    _say(progress, f"CRDS cache written ({time.monotonic() - t0:.1f} s)")

    catalog = build_catalog(plan)
    truth = out / "truth"
    (truth / "oneoverf").mkdir(parents=True, exist_ok=True)
    (truth / "sources").mkdir(parents=True, exist_ok=True)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    ctx = _Context(plan, catalog, out, cache)

    specs = plan.specs
    if only is not None:
        import fnmatch

        pats = list(only)
        specs = [s for s in specs if any(fnmatch.fnmatch(s.basename, pt) for pt in pats)]
    paths, records = [], []
    for n, spec in enumerate(specs, start=1):
        t1 = time.monotonic()
        ramp, record, (truth_1f, tdq, src_rate), srcs = simulate_file(ctx, spec)
        dest = raw / spec.filename
        if p.tree == "mast":
            dest = raw / mast.relative_path(spec, [pr.number for pr in p.programs] or [spec.program])
            dest.parent.mkdir(parents=True, exist_ok=True)
        path = exposures.write_uncal(spec, ramp, dest, extra_history=[f"young.sim preset {p.name} seed {seed}"])
        _write_oneoverf(truth / record["oneoverf_truth"], spec, truth_1f, tdq, record, src_rate)
        srcs.write(truth / "sources" / f"{spec.basename}_sources.ecsv", format="ascii.ecsv", overwrite=True)
        records.append(record)
        paths.append(path)
        _say(progress, f"[{n}/{len(specs)}] {spec.filename} ({time.monotonic() - t1:.1f} s)")

    if p.tree == "mast" and only is None:
        extras = mast.write_extras(raw, [pr.number for pr in p.programs] or [exposures.PROGRAM], paths)
        _say(progress, f"MAST tree: {len(extras)} more files (not NIRCam imaging, a second download)")

    wdir = out / "wisp_templates"
    wdir.mkdir(exist_ok=True)
    for (det, filt), rate_full in sorted(ctx.wisp_rates.items()):
        write_wisp_template(wdir / f"WISP_{det}_{filt}_{inst.filter_info(filt).pupil}.fits", det, filt, seed, rate_full)

    _write_truth(truth, plan, catalog, records, t0)
    write_refcat(out / "refcat.ecsv", catalog, seed)
    if only is None:
        _write_config(out, p, seed)
    _say(progress, f"done in {time.monotonic() - t0:.1f} s")
    return paths


def write_refcat(path: Path, catalog, seed: int) -> None:
    """A Gaia-like catalog of the field (``id, ra, dec``): what a survey aligns its mosaics to.

    The :data:`REFCAT_STARS` brightest unsaturated stars (by their longest-wavelength flux) with
    :data:`REFCAT_ERROR_MAS` of random position error per axis; the config points young-stage3 at it
    (``refcat``), so the demo's mosaics are aligned absolutely, as with ``--refcat gaia.ecsv``.
    """
    from astropy.table import Table

    stars = catalog[(catalog["kind"] == "star") & ~catalog["saturated"]]
    flux_cols = sorted((c for c in stars.colnames if c.startswith("flux_F")),
                       key=lambda c: inst.filter_info(c[5:]).pivot)
    if flux_cols:
        stars = stars[np.argsort(-np.asarray(stars[flux_cols[-1]], float))]
    stars = stars[:REFCAT_STARS]
    rng = inst.rng_for(seed, "refcat")
    err = REFCAT_ERROR_MAS / 3.6e6
    dec = np.asarray(stars["dec"], float) + rng.normal(0.0, err, len(stars))
    ra = np.asarray(stars["ra"], float) + rng.normal(0.0, err, len(stars)) / np.cos(np.radians(dec))
    t = Table({"id": stars["id"], "ra": ra, "dec": dec})
    t.meta["comment"] = [f"young-sim Gaia-like catalog: {len(t)} stars, {REFCAT_ERROR_MAS} mas error per axis"]
    t.write(path, format="ascii.ecsv", overwrite=True)


def _write_truth(truth: Path, plan: Plan, catalog, records: list[dict], t0: float) -> None:
    from astropy.table import Table

    catalog.write(truth / "catalog.ecsv", format="ascii.ecsv", overwrite=True)
    flat_records = [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in records]
    if flat_records:
        Table(rows=flat_records, names=list(flat_records[0])).write(
            truth / "exposures.ecsv", format="ascii.ecsv", overwrite=True)
    p = plan.preset
    meta = {
        "young_sim": {"preset": p.name, "seed": plan.seed, "elapsed_s": round(time.monotonic() - t0, 2),
                      "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        "preset": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items()},
        "crds_context": crds_cache.context_name(),
        "exposures": records,
    }
    (truth / "exposures.json").write_text(json.dumps(meta, indent=1, default=_json_default))
    (truth / "README.md").write_text(TRUTH_README)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def _write_config(out: Path, p: Preset, seed: int) -> None:
    import yaml

    from young.contract.crdsenv import SERVERLESS_URL

    cfg = {
        "crds_path": "crds_cache",
        "crds_context": crds_cache.context_name(),
        "crds_server_url": SERVERLESS_URL,
        "wisp_directory": "wisp_templates",
        "refcat": "refcat.ecsv",
        "truth_directory": "truth",
        "input_directory": "raw",
    }
    text = ("# Written by young-sim: a simulated NIRCam set and its synthetic CRDS cache.\n"
            f"# preset {p.name}, seed {seed}.  Paths are relative to this file.\n")
    text += yaml.safe_dump(cfg, sort_keys=False)
    from young.contract.atomic import atomic_path

    with atomic_path(out / "young.yaml") as tmp:
        tmp.write_text(text)


def is_complete(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a finished simulated set (its ``young.yaml`` is written last)."""
    out = Path(out_dir)
    return (out / "young.yaml").is_file() and crds_cache.is_complete(out / "crds_cache")


TRUTH_README = """\
# young-sim truth

Everything injected into the simulated set, so tests and QA can compare the
pipeline's products with what is really there.  Pixel coordinates are 0-based
(x = column, y = row) in the DMS orientation of the readout (the subarray, for
subarray files), like the arrays in `_uncal`/`_rate`/`_cal` files.  Sky
positions are ICRS degrees.

## catalog.ecsv

One row per source in the field (`young.sim.scene.make_catalog`, several cells
stacked): `id`, `kind` (star | galaxy | blob), `ra`, `dec` (deg), `saturated`
(meant to saturate), galaxy shape (`r_eff_arcsec` semi-major half-light radius,
`sersic_n`, `axis_ratio`, `ellip`, `theta_deg` east of north), and
`flux_<FILTER>` (nJy, total) for every filter of the set.  Stars are isolated:
no other star closer than the preset's `min_separation`.  PSFs are normalised to
unit flux inside 2 arcsec.

## exposures.ecsv / exposures.json

One row per detector file (`file` = the uncal name).  Same content in both; the
JSON also has the preset, the seed and the background model of each file.

- Identification: `file`, `basename` (file name without `_uncal.fits`),
  `exposure_id` (shared by the detectors exposed together), `detector`, `module`,
  `channel`, `filter`, `pupil`, `activity` (one per filter pair), `exposure` and
  `dither` (position in the dither pattern).
- Readout: `subarray`, `xstart`, `ystart` (1-based), `xsize`, `ysize`, `noutputs`,
  `readpatt`, `ngroups`, `nints`, `group_time_s` (TGROUP), `exposure_time_s`.
- `ra_ref_nominal`, `dec_ref_nominal`: RA_REF/DEC_REF in the header (deg);
  `roll_ref`: ROLL_REF (deg).

- `pointing_error_east_arcsec`, `pointing_error_north_arcsec`: true minus nominal
  pointing of the exposure on the sky (arcsec; east = +RA).  The file header
  (RA_REF/DEC_REF/ROLL_REF) carries the nominal pointing; sources sit where the
  true one puts them.  All detectors of an exposure share the error.  After a
  correct alignment a pixel's sky position moves by +error relative to the
  header WCS.  `ra_ref_true`/`dec_ref_true`: the true sky position of V2_REF/V3_REF.
- `photmjsr` ((MJy/sr)/(DN/s)), `pixar_sr`, `dn_s_per_njy`: the calibration in the
  CRDS cache.  A source of flux F (nJy) gives F x dn_s_per_njy DN/s in total at
  flat = 1 and nominal pixel area; per pixel the rate is multiplied by flat /
  (relative pixel area), so `cal` = rate / flat x PHOTMJSR is a true surface
  brightness and a uniform sky S (MJy/sr) gives rate = S x flat / PHOTMJSR.
- `background_mjysr` (what the `cal` shows at the full-frame centre),
  `background_dn_s` (= that / PHOTMJSR), `background_gx_dn_s_per_pix` and
  `background_gy_dn_s_per_pix` (linear gradient along x and y in DN/s per pixel at
  flat = 1, about the full-frame centre; model in exposures.json
  `background_model`, x0/y0 in readout pixels).  The rate file holds
  (model) x flat.
- `wisp_scale`: the exposure carries `wisp_scale` x the RATE extension of
  `wisp_template` (file name in `../wisp_templates/`, empty for detectors
  without wisps, whose scale is 0).
  At cal level it is `wisp_scale` x CAL.
- `oneoverf_amplitude_dn`: 1/f amplitude, rms over rows of one amplifier's row
  mean in one group read (DN); `amp_offset_dn`: rms of the per-amplifier,
  per-group offsets added with it (bias drifts, removed by refpix);
  `oneoverf_rate_rms_dn_s`: rms of the rate-equivalent pattern (below), which
  is in the file named by `oneoverf_truth`.
- `n_cosmic_ray_pixels`, `n_sources_on_detector`, `n_stars_on_detector`.

## oneoverf/<basename>_1f_truth.fits

`SCI` (DN/s): the 1/f pattern as it appears in the stage-1 rate file, i.e.
rate(with 1/f) - rate(same seed, without 1/f).  Computed by putting both raw
ramps through what jwst's Detector1 does linearly to them -- superbias
subtraction, jwst's own reference-pixel correction (RefPixStep defaults, run on
each ramp, so the side-pixel medians see real data) -- and fitting the
difference with the per-pixel weights of jwst's OLS_C ramp fit (its S/N-based
"optimal" weights; dark and the identity linearity cancel).  Includes the part
of the 1/f noise that refpix removes as far as it does (i.e. the residual).
In a `cal` file the same pattern is SCI x PHOTMJSR / flat (MJy/sr; flat = the
FLAT reference of the file's filter).
`SOURCES` (DN/s, tile-compressed): the noiseless count rate of the simulated
sources alone (stars and galaxies, PSF-convolved, flat applied), without sky,
wisp or 1/f: where it exceeds a fraction of the pixel noise is the true source
footprint the metrics use (`young.sim.metrics.true_sky_pixels`).
`DQ`: 1 saturated ramp (fit truncated as the pipeline does), 2 cosmic-ray hit
(the pipeline splits these ramps at the jump: the truth there is approximate),
4 reference pixel, 8 bad pixel (mask).

## sources/<basename>_sources.ecsv

Catalog rows whose centre falls on the readout: `id`, `kind`, `ra`, `dec`, `x`,
`y` (true WCS), `flux_njy` (this filter), `rate_dn_s` (total count rate of the
source in the rate file, DN/s, see above), `saturated` (centre pixel saturates).

## Units and conventions

DN/s for rates, MJy/sr for surface brightness, nJy for fluxes, arcsec for
pointing errors, degrees for angles.  Reference files: `../crds_cache`
(CRDS_PATH, context jwst_9001.pmap); the detector truth (bias, dark, flat,
gain, read noise, saturation, bad pixels) is exactly what those references hold.
"""
