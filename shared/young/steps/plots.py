"""QA plots of the correction steps (matplotlib, Agg): what was measured and what it did, one PNG per product.

Images are block-averaged to at most 512 pixels a side
(:func:`young.steps.models.display`) and the before/after panels share a
stretch, so the plots show what the correction changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from young.steps import models


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fnoise_plot(path: Path, before: np.ndarray, res: Any, title: str = "") -> None:
    """QA PNG of young-fnoise: image before and after (same stretch), subtracted pattern, row profile per amplifier.

    ``res`` is the step's result (``young.steps.fnoise_step.Result``: corrected image, model, mask, diagnostics).

    The stretch is median +- 3 robust sigma of the unmasked pixels after the
    correction; the row profile panel shows each amplifier's subtracted row
    pattern (data units) against the row number, with the rows that fell
    back to the full-row value marked.
    """
    plt = _pyplot()
    after = res.corrected
    sky = after[~res.mask & np.isfinite(after)]
    med = float(np.median(sky)) if sky.size else 0.0
    sig = float(1.4826 * np.median(np.abs(sky - med))) if sky.size else 1.0
    sig = sig if sig > 0 else 1.0
    d = res.diagnostics
    prof = d.row_pattern * d.gain[None, :]
    m = res.model[np.isfinite(res.model) & (res.model != 0)]
    pr = float(np.percentile(np.abs(m - np.median(m)), 99.5)) if m.size else 1.0
    pr = pr if pr > 0 else 1.0
    aspect = before.shape[0] / before.shape[1]
    wide = aspect < 0.5
    fig, axes = plt.subplots(4 if wide else 1, 1 if wide else 4, figsize=(12, 11) if wide else (20, 5))
    kw = dict(origin="lower", interpolation="nearest", aspect="auto" if wide else "equal")
    for ax, img, name, cmap, lo, hi in (
            (axes[0], before, "before", "gray", med - 3 * sig, med + 3 * sig),
            (axes[1], after, "after", "gray", med - 3 * sig, med + 3 * sig),
            (axes[2], res.model, f"subtracted pattern ({res.method})", "RdBu_r",
             float(np.median(m)) - pr if m.size else -pr, float(np.median(m)) + pr if m.size else pr)):
        im = ax.imshow(models.display(img), cmap=cmap, vmin=lo, vmax=hi, **kw)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax = axes[3]
    rows = np.arange(prof.shape[0])
    level = np.nanmedian(prof, axis=0)
    spread = np.nanpercentile(np.abs(prof - level[None, :]), 99) if np.isfinite(prof).any() else 1.0
    step = 2.5 * spread if spread > 0 else 1.0
    counts = d.fallback_counts() or [0] * prof.shape[1]
    for k in range(prof.shape[1]):
        y = prof[:, k] - level[k] + k * step
        ax.plot(rows, y, lw=0.5, color=f"C{k}",
                label=f"amp {k + 1}: level {level[k]:+.3g}, {counts[k]} fallback rows")
        if d.fallback is not None and d.fallback[:, k].any():
            fb = d.fallback[:, k]
            ax.plot(rows[fb], y[fb], ".", ms=2, color="k")
    ax.set_xlabel("row")
    ax.set_ylabel("row pattern - amp level (data units)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("row profile per amplifier (black: full-row fallback)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    models.save_figure(fig, path)


def wisp_plot(path: Path, before: np.ndarray, res: Any, after: np.ndarray, bad: np.ndarray,
            title: str = "") -> None:
    """QA PNG of young-wisp: the image before, the wisp model, the image after, the scatter vs scale.

    ``res`` is the fit's result (``young.steps.wisp_step.WispResult``: scale, uncertainty, model, diagnostics).

    Images are block-averaged to at most 512 pixels a side and shown with
    the same stretch: from median - 3 robust sigma of the unmasked block
    averages after the correction to + 3 sigma or the model's peak.
    """
    plt = _pyplot()
    b = models.display(before)
    a = models.display(after)
    m = models.display(res.model)
    sky = models.display(np.where(bad, np.nan, after))  # the stretch: sky after the correction
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
    models.save_figure(fig, path)


def bkg_plot(path: Path, before: np.ndarray, mask: np.ndarray, model: np.ndarray, info: dict,
            title: str = "") -> None:
    """QA PNG: the image, the mask, the background model, the sky histogram with the fitted sky.

    The histogram is of the unmasked pixels (in 2-D mode with the model's
    variation removed, i.e. ``data - model + level``) with the fitted
    Gaussian sky (level, sigma) drawn over it.
    """
    plt = _pyplot()
    level, sigma = float(info["level"]), float(info["sky_sigma"]) or 1.0
    aspect = before.shape[0] / before.shape[1]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2 if aspect < 0.5 else 5.0))
    kw = dict(origin="lower", interpolation="nearest", aspect="auto" if aspect < 0.5 else "equal")
    im = axes[0].imshow(models.display(before), cmap="gray", vmin=level - 3 * sigma, vmax=level + 5 * sigma, **kw)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.02)
    axes[0].set_title("image")
    axes[1].imshow(models.display(mask.astype(np.float32)), cmap="gray_r", vmin=0, vmax=1, **kw)
    axes[1].set_title(f"mask ({100 * info['masked_fraction']:.1f}% masked)")
    m = models.display(model)
    im = axes[2].imshow(m, cmap="viridis", **kw)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    axes[2].set_title(f"model ({info['method']}), {np.nanmin(m):.4g} .. {np.nanmax(m):.4g}")
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    sky = ~mask & np.isfinite(before)
    values = (before - model + level)[sky]
    if values.size > 2**20:
        values = values[:: values.size // 2**20 + 1]
    lo, hi = level - 5 * sigma, level + 5 * sigma
    ax = axes[3]
    counts, edges, _ = ax.hist(values, bins=100, range=(lo, hi), color="0.6", label="sky pixels")
    x = np.linspace(lo, hi, 400)
    width = edges[1] - edges[0]
    gauss = values.size * width / (sigma * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x - level) / sigma) ** 2)
    ax.plot(x, gauss, color="C3", label=f"sky {level:.4g}, sigma {sigma:.3g}")
    ax.axvline(level, color="C3", ls="--")
    ax.set_xlabel("pixel value" + (" - model + level" if info["method"] == "2d" else ""))
    ax.legend(fontsize=8)
    ax.set_title("sky histogram")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    models.save_figure(fig, path)
