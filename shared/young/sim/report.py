"""The demo's QA report: every step's effect, measured against the simulator's truth.

``python -m young.report SIM_DIR OUT_DIR`` reads a ``young-sim`` set (its
``truth/``) and the products ``make all`` wrote to ``OUT_DIR`` and writes
``OUT_DIR/report.md`` with, per step, a before/after image of one exposure
and the quality figures:

* 1/f: residual stripe fraction of every ``_1f_rate`` against the injected pattern;
* wisp: fitted scale (header) against the injected scale;
* background: residual sky level over source-free pixels, in units of the sky noise;
* stage 3: astrometric rms of matched truth stars (mas) and the median
  photometric offset of isolated stars (mag) per filter, and whether every
  mosaic shares one grid;
* wall time of each step (``OUT_DIR/timings.tsv`` written by ``make demo``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from young.contract import naming


def _zscale(img):
    good = np.isfinite(img)
    if not good.any():
        return 0.0, 1.0
    lo, hi = np.percentile(img[good], [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def before_after_png(before: np.ndarray, after: np.ndarray, dst: Path, title: str) -> Path:
    """Three panels (before, after, before - after) on one colour scale per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), constrained_layout=True)
    for ax, img, name in zip(axes, (before, after, before - after), ("before", "after", "removed")):
        lo, hi = _zscale(img)
        im = ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title)
    fig.savefig(dst, dpi=70)
    plt.close(fig)
    return dst


def _sci(path: Path) -> np.ndarray:
    from astropy.io import fits

    return fits.getdata(path, "SCI").astype(np.float32)


def read_timings(out_dir: Path) -> list[tuple[str, float]]:
    f = out_dir / "timings.tsv"
    if not f.exists():
        return []
    rows = []
    for line in f.read_text().splitlines():
        step, t0, t1 = line.split("\t")
        rows.append((step, float(t1) - float(t0)))
    return rows


def products(out_dir: Path, suffix: str, tags: tuple[str, ...]) -> list[Path]:
    """Products in ``out_dir`` (recursively) whose tags are exactly ``tags``."""
    found = []
    for p in sorted(out_dir.rglob(f"*_{suffix}.fits")):
        try:
            pn = naming.parse(p)
        except ValueError:
            continue
        if pn.tags == tags:
            found.append(p)
    return found


def fnoise_section(sim: Path, out: Path, img_dir: Path) -> list[str]:
    from astropy.io import fits

    from young.sim import metrics as qa_metrics

    lines = ["## 1/f noise (`young-fnoise`)", "",
             "Residual stripe fraction: rms of the per-amplifier row medians of (corrected − truly clean) "
             "over source-free pixels, divided by the same rms of the injected pattern (0 = perfect, 1 = untouched).",
             "", "| exposure | injected rms (DN/s) | residual fraction | floor | residual / floor | true footprint |",
             "|---|---|---|---|---|---|"]
    first = None
    for rate in products(out, "rate", ()):
        corrected = rate.with_name(rate.name.replace("_rate.fits", "_1f_rate.fits"))
        truth = sim / "truth" / "oneoverf" / f"{naming.parse(rate).base}_1f_truth.fits"
        if not (corrected.exists() and truth.exists()):
            continue
        with fits.open(rate) as h:
            data, dq, nout = h["SCI"].data.astype(float), h["DQ"].data, int(h[0].header.get("NOUTPUTS", 4))
        with fits.open(truth) as h:
            pattern, tdq, sources = h["SCI"].data.astype(float), h["DQ"].data, h["SOURCES"].data
        res, floor, _ = qa_metrics.truth_figures(data, fits.getdata(corrected, "SCI").astype(float), pattern, tdq,
                                                 sources, dq, nout)
        lines.append(f"| {rate.name} | {res.injected_rms:.4f} | {res.fraction:.3f} | {floor.fraction:.3f} | "
                     f"{res.fraction / floor.fraction:.2f} | {100 * floor.footprint:.1f}% |")
        first = first or (rate, corrected)
    if first:
        png = before_after_png(_sci(first[0]), _sci(first[1]), img_dir / "fnoise.png", f"1/f: {first[0].name}")
        lines += ["", f"![1/f before/after]({png.relative_to(out)})"]
    return lines + [""]


def wisp_section(sim: Path, out: Path, img_dir: Path) -> list[str]:
    from astropy.io import fits
    from astropy.table import Table

    truth = Table.read(sim / "truth" / "exposures.ecsv")
    scales = {naming.parse(f).base: s for f, s in zip(truth["file"], truth["wisp_scale"])}
    lines = ["## Wisps (`young-wisp`)", "", "| exposure | injected scale | fitted scale | ± | error |",
             "|---|---|---|---|---|"]
    first = None
    for p in sorted(out.rglob("*_wisp_cal.fits")):
        pn = naming.parse(p)
        if pn.tags[-1:] != ("wisp",) or scales.get(pn.base, 0) == 0:
            continue
        h = fits.getheader(p)
        fit, err = h.get("YNGWISPS"), h.get("YNGWISPE")
        inj = scales[pn.base]
        if fit is None:
            continue
        lines.append(f"| {p.name} | {inj:.3f} | {fit:.3f} | {err or float('nan'):.3f} "
                     f"| {100 * (fit / inj - 1):+.1f}% |")
        before = p.with_name(p.name.replace("_wisp_cal", "_cal"))
        first = first or (before, p)
    if first and first[0].exists():
        png = before_after_png(_sci(first[0]), _sci(first[1]), img_dir / "wisp.png", f"wisp: {first[1].name}")
        lines += ["", f"![wisp before/after]({png.relative_to(out)})"]
    return lines + [""]


def bkg_section(sim: Path, out: Path, img_dir: Path) -> list[str]:
    from astropy.io import fits

    from young.algorithms import masks

    lines = ["## Background (`young-bkg`)", "",
             "Residual sky over source-free pixels after subtraction, in units of the sky noise σ "
             "(target |level| ≤ 0.1 σ).", "", "| exposure | sky σ (MJy/sr) | residual level / σ |", "|---|---|---|"]
    first = None
    for p in sorted(out.rglob("*_bkg_cal.fits")):
        with fits.open(p) as h:
            data, dq = h["SCI"].data.astype(np.float32), h["DQ"].data
        m = masks.tiered_source_mask(data, dq, "young")
        sky = data[~m & np.isfinite(data)]
        if sky.size < 1000:
            continue
        sigma = 1.4826 * np.median(np.abs(sky - np.median(sky)))
        lines.append(f"| {p.name} | {sigma:.4f} | {np.median(sky) / sigma:+.3f} |")
        before = p.with_name(p.name.replace("_bkg_cal", "_cal"))
        first = first or (before, p)
    if first and first[0].exists():
        png = before_after_png(_sci(first[0]), _sci(first[1]), img_dir / "bkg.png", f"background: {first[1].name}")
        lines += ["", f"![background before/after]({png.relative_to(out)})"]
    return lines + [""]


def stage3_section(sim: Path, out: Path) -> list[str]:
    from astropy.table import Table

    from young.algorithms import astrometry
    from young.stage3 import grid

    truth = Table.read(sim / "truth" / "catalog.ecsv")
    stars = truth[(truth["kind"] == "star") & ~truth["saturated"]]
    lines = ["## Mosaics (`young-stage3`)", "",
             "Matched truth stars (unsaturated, isolated) against each filter's catalog: astrometric rms "
             "(target ≤ 5 mas) and median |Δm| of the total aperture flux (target ≤ 0.02).", "",
             "| filter | mosaic | grid as reference | matched stars | mean offset x, y (mas) | rms (mas) | "
             "median Δm | median abs Δm |",
             "|---|---|---|---|---|---|---|---|"]
    i2ds = sorted(out.rglob("*_i2d.fits"))
    reference = next((p for p in i2ds if "F444W" in p.parent.name.upper()), i2ds[0] if i2ds else None)
    for i2d in i2ds:
        filt = i2d.parent.name.upper()
        cat_path = i2d.with_name(i2d.name.replace("_i2d.fits", "_cat.ecsv"))
        if not cat_path.exists():
            continue
        cat = Table.read(cat_path)
        ra, dec = cat["sky_centroid"].ra.deg, cat["sky_centroid"].dec.deg
        col = f"flux_{filt.split('_')[0]}"
        i, j = astrometry.match_sky(ra, dec, stars["ra"], stars["dec"], radius_arcsec=0.1)
        dx, dy = astrometry.offsets_mas(ra[i], dec[i], stars["ra"][j], stars["dec"][j])
        mx, my, rms, _ = astrometry.robust_rms(dx, dy) if len(i) else (float("nan"),) * 3 + (0,)
        dm = np.array([])
        if col in stars.colnames and "aper_total_flux" in cat.colnames:
            meas = np.asarray(cat["aper_total_flux"][i], float) * 1e9  # Jy -> nJy
            dm = -2.5 * np.log10(meas / np.asarray(stars[col][j], float))
            dm = dm[np.isfinite(dm)]
        same = "yes" if reference is None or not grid.check_same_grid(i2d, reference) else "NO"
        lines.append(f"| {filt} | {i2d.name} | {same} | {len(i)} | {mx:+.2f}, {my:+.2f} | {rms:.2f} | "
                     f"{np.median(dm) if dm.size else float('nan'):+.4f} | "
                     f"{np.median(np.abs(dm)) if dm.size else float('nan'):.4f} |")
        preview = i2d.with_name(i2d.name.replace("_i2d.fits", "_i2d.png"))
        if preview.exists():
            lines.append(f"\n![{filt}]({preview.relative_to(out)})\n")
    return lines + [""]


def write_report(sim: Path, out: Path) -> Path:
    """Write ``out/report.md``; a section whose products are missing says so instead of failing."""
    sim, out = Path(sim), Path(out)
    img_dir = out / "report-images"
    img_dir.mkdir(parents=True, exist_ok=True)
    exposures = sim / "truth" / "exposures.json"
    meta = json.loads(exposures.read_text()) if exposures.exists() else {}
    lines = ["# YOUNG demo report", "",
             f"Simulated set `{sim}` (preset {meta.get('young_sim', {}).get('preset', '?')}, seed "
             f"{meta.get('young_sim', {}).get('seed', '?')}); "
             f"products in `{out}`.", ""]
    timings = read_timings(out)
    if timings:
        lines += ["## Wall time per step", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {s} | {t:.1f} |" for s, t in timings]
        lines += [f"| **total** | **{sum(t for _, t in timings):.1f}** |", ""]
    for section in (fnoise_section, wisp_section, bkg_section):
        try:
            lines += section(sim, out, img_dir)
        except Exception as exc:  # noqa: BLE001 - a report section must not hide the others
            lines += [f"## {section.__name__}", "", f"(not available: {type(exc).__name__}: {exc})", ""]
    try:
        lines += stage3_section(sim, out)
    except Exception as exc:  # noqa: BLE001
        lines += ["## Mosaics", "", f"(not available: {type(exc).__name__}: {exc})", ""]
    dst = out / "report.md"
    dst.write_text("\n".join(lines) + "\n")
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m young.report SIM_DIR OUT_DIR", file=sys.stderr)
        sys.exit(2)
    print(write_report(Path(sys.argv[1]), Path(sys.argv[2])))
