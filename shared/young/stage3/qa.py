"""Quality-assurance plots of stage 3: alignment residuals and mosaic previews.

The measurements come from :mod:`young.algorithms.astrometry`; the functions here read a group's
products (``_i2d.fits``, ``_cat.ecsv``, the per-exposure ``_crf.fits`` that
Image3Pipeline writes) and write PNG files with matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from young.algorithms.astrometry import match_sky, offsets_mas, robust_rms


def catalog_positions(catalog, max_good: int = 100):
    """RA, Dec (deg), mosaic x, y (pixels) and a mask of the brightest point-like, high-S/N sources.

    At most ``max_good`` sources (the brightest) are marked good: enough for residual statistics,
    and the per-exposure centroiding stays short.
    """
    cols = {c.lower(): c for c in catalog.colnames}
    sc = catalog[cols["sky_centroid"]]
    ra, dec = np.asarray(sc.ra.deg, float), np.asarray(sc.dec.deg, float)
    x = np.asarray(catalog[cols["xcentroid"]], float) if "xcentroid" in cols else np.full(len(ra), np.nan)
    y = np.asarray(catalog[cols["ycentroid"]], float) if "ycentroid" in cols else np.full(len(ra), np.nan)
    good = np.isfinite(ra) & np.isfinite(dec)
    if "isophotal_flux" in cols and "isophotal_flux_err" in cols:
        f = np.ma.filled(np.ma.asarray(catalog[cols["isophotal_flux"]], dtype=float), np.nan)
        e = np.ma.filled(np.ma.asarray(catalog[cols["isophotal_flux_err"]], dtype=float), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            good &= f / e >= 20
    if "is_extended" in cols:
        good &= ~np.asarray(np.ma.filled(np.ma.asarray(catalog[cols["is_extended"]]), True), bool)
    if "isophotal_flux" in cols and good.sum() > max_good:
        f = np.ma.filled(np.ma.asarray(catalog[cols["isophotal_flux"]], dtype=float), -np.inf)
        idx = np.flatnonzero(good)
        good[:] = False
        good[idx[np.argsort(-f[idx])[:max_good]]] = True
    return ra, dec, x, y, good


def exposure_residuals(crfs: Sequence[str | Path], ra, dec, box: int = 7, max_sources: int = 300):
    """Where the aligned exposures put the mosaic's stars.

    For each exposure, the stars' catalog positions are mapped into its
    pixels with its (aligned) WCS, re-centroided there (2-D Gaussian in a
    ``box`` x ``box`` window) and mapped back to the sky.

    Parameters
    ----------
    crfs : sequence of path
        Aligned exposures (``_crf.fits`` or ``_cal.fits`` with the tweaked WCS).
    ra, dec : array_like
        Star positions from the mosaic catalog (deg).

    Returns
    -------
    list of (name, idx, dx_mas, dy_mas)
        Per exposure: indices into ``ra``/``dec`` and the offsets
        exposure - mosaic (mas).
    """
    import warnings

    from photutils.centroids import centroid_2dg, centroid_sources
    from stdatamodels.jwst import datamodels

    ra, dec = np.asarray(ra, float)[:max_sources], np.asarray(dec, float)[:max_sources]
    out = []
    for path in crfs:
        with datamodels.open(str(path)) as m:
            wcs = m.meta.wcs
            data = np.array(m.data, dtype=float)
            dq = np.asarray(m.dq)
        data[(dq & 1) > 0] = np.nan
        ny, nx = data.shape
        x, y = wcs.invert(ra, dec, with_bounding_box=False)
        x, y = np.asarray(x, float), np.asarray(y, float)
        inside = np.isfinite(x) & np.isfinite(y) & (x > box) & (y > box) & (x < nx - box - 1) & (y < ny - box - 1)
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            continue
        bkg = np.nanmedian(data)
        work = np.nan_to_num(data - bkg, nan=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xc, yc = centroid_sources(work, x[idx], y[idx], box_size=box, centroid_func=centroid_2dg)
        ok = np.isfinite(xc) & np.isfinite(yc) & (np.hypot(xc - x[idx], yc - y[idx]) < box / 2)
        idx, xc, yc = idx[ok], xc[ok], yc[ok]
        if idx.size == 0:
            continue
        rc, dc = wcs(xc, yc, with_bounding_box=False)
        dx, dy = offsets_mas(rc, dc, ra[idx], dec[idx])
        out.append((Path(path).name, idx, dx, dy))
    return out


def alignment_residuals(cat_path: str | Path, refcat_path: str | Path | None, crfs: Sequence[str | Path]) -> dict:
    """A group's alignment residuals and their statistics.

    Parameters
    ----------
    cat_path : path
        The group's ``_cat.ecsv``.
    refcat_path : path or None
        The absolute reference (RA/DEC table) the group was aligned to.
    crfs : sequence of path
        The aligned exposures.

    Returns
    -------
    dict
        ``stats``: ``abs_n``, ``abs_rms_mas``, ``abs_mean_mas`` (east, north) for the
        absolute match (when a reference is given), ``internal_n``,
        ``internal_rms_mas``, ``exposures`` for the exposures; and the arrays
        the plot needs (``x``, ``y``, ``good``, ``sel``, ``abs_dx``, ``abs_dy``, ``res``).
    """
    from astropy.table import Table

    from young.stage3.refcat import radec_table, read_table

    cat = Table.read(cat_path)
    ra, dec, x, y, good = catalog_positions(cat)
    stats: dict = {}
    out = {"stats": stats, "x": x, "y": y, "good": good, "sel": np.zeros(0, int), "abs_dx": np.zeros(0),
           "abs_dy": np.zeros(0), "res": [], "has_ref": False}
    if refcat_path is not None and Path(refcat_path).exists():
        ref = radec_table(read_table(refcat_path))
        ok = np.isfinite(ra) & np.isfinite(dec)
        i, j = match_sky(ra[ok], dec[ok], np.asarray(ref["RA"]), np.asarray(ref["DEC"]), 0.3)
        sel = np.flatnonzero(ok)[i]
        abs_dx, abs_dy = offsets_mas(ra[sel], dec[sel], np.asarray(ref["RA"])[j], np.asarray(ref["DEC"])[j])
        mx, my, rms, n = robust_rms(abs_dx, abs_dy)
        stats.update(abs_n=n, abs_rms_mas=round(rms, 2), abs_mean_mas=[round(mx, 2), round(my, 2)])
        out.update(sel=sel, abs_dx=abs_dx, abs_dy=abs_dy, has_ref=True)
    res = exposure_residuals(crfs, ra[good], dec[good]) if len(crfs) else []
    if res:
        all_dx = np.concatenate([r[2] for r in res])
        all_dy = np.concatenate([r[3] for r in res])
        mx, my, rms, n = robust_rms(all_dx, all_dy)
        stats.update(internal_n=n, internal_rms_mas=round(rms, 2), exposures=len(res))
    out["res"] = res
    return out


def summary_line(stats: dict) -> str:
    """One line of alignment figures: ``412 sources matched to the reference, rms 3.1 mas; ...``."""
    parts = []
    if stats.get("abs_n") == 0:
        parts.append("no source in common with the reference (its field does not overlap this filter's); "
                     "aligned internally only")
    elif "abs_n" in stats:
        parts.append(f"{stats['abs_n']} sources matched to the reference, rms {stats['abs_rms_mas']:.1f} mas")
    else:
        parts.append("no absolute reference (aligned internally)")
    if "internal_n" in stats:
        parts.append(f"exposures vs mosaic rms {stats['internal_rms_mas']:.1f} mas "
                     f"({stats['internal_n']} measures, {stats['exposures']} exposures)")
    return "; ".join(parts)


def alignment_plot(residuals: dict, dst: str | Path, title: str = "") -> dict:
    """Plot a group's alignment residuals (:func:`alignment_residuals`); return their statistics.

    Left: residual vectors (mosaic catalog - absolute reference catalog) of
    matched sources across the mosaic.  Middle: per-exposure residual vectors
    (exposure - mosaic) of the mosaic's point sources.  Right: all residuals
    in a scatter plot (mas).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats, x, y, good, res = (residuals[k] for k in ("stats", "x", "y", "good", "res"))
    sel, abs_dx, abs_dy = residuals["sel"], residuals["abs_dx"], residuals["abs_dy"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
    ax_abs, ax_int, ax_sc = axes
    if residuals["has_ref"]:
        scale_mas = _arrow_scale(abs_dx, abs_dy, x, y)
        q = ax_abs.quiver(x[sel], y[sel], abs_dx, abs_dy, angles="xy", scale_units="xy", scale=1 / scale_mas,
                          color="C3", width=0.003)
        _key(ax_abs, q, scale_mas, abs_dx, abs_dy)
        ax_abs.set_title(f"mosaic - reference catalog: {stats['abs_n']} matched, rms {stats['abs_rms_mas']:.1f} mas",
                         fontsize=9, loc="left")
    else:
        ax_abs.text(0.5, 0.5, "no absolute reference catalog\n(aligned internally only)", ha="center",
                    va="center", transform=ax_abs.transAxes)
        ax_abs.set_title("mosaic - reference catalog", fontsize=9)
    all_dx = np.concatenate([r[2] for r in res]) if res else np.zeros(0)
    all_dy = np.concatenate([r[3] for r in res]) if res else np.zeros(0)
    if res:
        s_int = _arrow_scale(all_dx, all_dy, x, y)
        xg, yg = x[good], y[good]
        for k, (_name, idx, dx, dy) in enumerate(res):
            q = ax_int.quiver(xg[idx], yg[idx], dx, dy, angles="xy", scale_units="xy", scale=1 / s_int,
                              color=f"C{k % 10}", width=0.002)
        _key(ax_int, q, s_int, all_dx, all_dy)
        ax_int.set_title(f"exposures - mosaic: {len(res)} exp., {stats['internal_n']} measures, "
                         f"rms {stats['internal_rms_mas']:.1f} mas", fontsize=9, loc="left")
    else:
        ax_int.text(0.5, 0.5, "no per-exposure residuals", ha="center", va="center", transform=ax_int.transAxes)
    for ax in (ax_abs, ax_int):
        ax.set_xlabel("mosaic x (pix)")
        ax.set_ylabel("mosaic y (pix)")
        if np.isfinite(x).any():
            ax.set_xlim(np.nanmin(x) - 20, np.nanmax(x) + 20)
            ax.set_ylim(np.nanmin(y) - 20, np.nanmax(y) + 20)
        ax.set_aspect("equal", adjustable="box")
    if all_dx.size:
        ax_sc.scatter(all_dx, all_dy, s=3, alpha=0.4, color="C0", label="exposure - mosaic")
    if abs_dx.size:
        ax_sc.scatter(abs_dx, abs_dy, s=6, alpha=0.7, color="C3", label="mosaic - reference")
    lim = _limit(np.concatenate([all_dx, abs_dx]), np.concatenate([all_dy, abs_dy]))
    ax_sc.set_xlim(-lim, lim)
    ax_sc.set_ylim(-lim, lim)
    ax_sc.axhline(0, color="k", lw=0.5)
    ax_sc.axvline(0, color="k", lw=0.5)
    ax_sc.set_xlabel("east offset (mas)")
    ax_sc.set_ylabel("north offset (mas)")
    ax_sc.set_aspect("equal")
    if all_dx.size or abs_dx.size:
        ax_sc.legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.savefig(dst, dpi=80)
    plt.close(fig)
    return stats


def _arrow_scale(dx, dy, x, y=None) -> float:
    """Mosaic pixels per mas so that a typical residual arrow spans ~4 % of the mosaic's size."""
    r = np.hypot(np.asarray(dx), np.asarray(dy))
    typ = float(np.nanmedian(r)) if r.size and np.isfinite(r).any() else 1.0
    width = float(np.nanmax(x) - np.nanmin(x)) if np.isfinite(x).any() else 1000.0
    height = float(np.nanmax(y) - np.nanmin(y)) if y is not None and np.isfinite(y).any() else width
    return max(math.sqrt(max(width, 1.0) * max(height, 1.0)) * 0.04 / max(typ, 1e-3), 1e-6)


def _key(ax, q, scale_pix_per_mas, dx, dy):
    """A reference arrow of a round length near the typical residual."""
    r = np.hypot(np.asarray(dx), np.asarray(dy))
    typ = float(np.nanmedian(r)) if r.size and np.isfinite(r).any() else 1.0
    length = float(min((1, 2, 5, 10, 20, 50, 100, 200), key=lambda v: abs(math.log(v / max(typ, 0.1)))))
    ax.quiverkey(q, 0.85, 1.02, length, f"{length:g} mas", labelpos="E", coordinates="axes", fontproperties={"size": 8})


def _limit(dx, dy) -> float:
    r = np.hypot(dx, dy)
    r = r[np.isfinite(r)]
    return float(max(np.percentile(r, 98) * 1.3, 5.0)) if r.size else 50.0


def preview_png(i2d: str | Path, dst: str | Path, max_size: int = 800, title: str | None = None) -> Path:
    """A small PNG preview of a mosaic's SCI image (block-averaged, asinh stretch).

    Parameters
    ----------
    i2d : path
        The mosaic.
    dst : path
        PNG to write.
    max_size : int
        Longest side of the preview (pixels).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    with fits.open(i2d, memmap=True) as hdul:
        data = np.asarray(hdul["SCI"].data, dtype=np.float32)
    ny, nx = data.shape
    f = max(1, math.ceil(max(ny, nx) / max_size))
    small = block_mean(data, f)
    finite = np.isfinite(small)
    if finite.any():
        lo, hi = np.percentile(small[finite], [1.0, 99.7])
        sky = np.median(small[finite])
        noise = max(1.4826 * np.median(np.abs(small[finite] - sky)), 1e-12)
        lo = sky - 2 * noise
        img = np.arcsinh((small - lo) / (3 * noise)) / np.arcsinh(max((hi - lo) / (3 * noise), 1.0))
        img = np.clip(np.nan_to_num(img, nan=0.0), 0, 1)
    else:
        img = np.zeros_like(small)
    h, w = img.shape
    dpi = 100
    fig = plt.figure(figsize=(w / dpi, h / dpi + (0.25 if title else 0)), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h / (h + (25 if title else 0))))
    ax.imshow(img, origin="lower", cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.text(0.01, 0.99, f"{title}  ({nx}x{ny}, shown /{f})", va="top", fontsize=8)
    fig.savefig(dst, dpi=dpi)
    plt.close(fig)
    return Path(dst)


def block_mean(data, factor: int):
    """Mean over ``factor`` x ``factor`` blocks ignoring NaN (edges padded with NaN)."""
    if factor <= 1:
        return np.asarray(data, float)
    ny, nx = data.shape
    py, px = (-ny) % factor, (-nx) % factor
    padded = np.pad(np.asarray(data, np.float32), ((0, py), (0, px)), constant_values=np.nan)
    b = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(b, axis=(1, 3))
