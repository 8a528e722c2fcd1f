"""Model I/O shared by the correction steps: opening, levels, amplifiers, header keywords, side products.

The steps read and write jwst data models (``stdatamodels``); everything
here is the file side they have in common, so each step module only maps
its algorithm onto the model.  Inputs are opened read-only and never
written: a product is a new file.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from young.contract import fitscheck, naming


def validate_image(src: Path, levels=("rate", "cal")):
    """A NIRCam imaging product of one of ``levels``; returns its primary header (one-line InputError if not)."""
    return fitscheck.check_nircam_image(src, levels)


def _lacks_tag(tag: str, pn: naming.ProductName) -> bool:
    return tag not in pn.tags


def not_tagged(tag: str) -> Callable[[naming.ProductName], bool]:
    """Directory filter: only products that do not carry ``tag`` yet.

    A ``functools.partial`` of a module-level function, not a lambda: the
    tool specification holding it is pickled to ``--jobs`` workers and MPI ranks.
    """
    return functools.partial(_lacks_tag, tag)


def open_model(path: str | Path):
    """Open a rate/cal file as a jwst ``ImageModel``."""
    from stdatamodels.jwst import datamodels

    return datamodels.ImageModel(str(path))


def noutputs(model) -> int:
    """Number of readout amplifiers in the image (4 for full frame; 1 or 4 for subarrays)."""
    n = getattr(model.meta.exposure, "noutputs", None)
    if n in (1, 4):
        return int(n)
    return 4 if model.data.shape[-1] == 2048 else 1


def product_level(model) -> str:
    """``'cal'`` once Image2's photom step ran, else ``'rate'``."""
    return "cal" if getattr(model.meta.cal_step, "photom", None) == "COMPLETE" else "rate"


def save(model, path: str | Path) -> None:
    """Save ``model`` at ``path``, recording that file name in ``meta.filename``."""
    path = Path(path)
    model.meta.filename = path.name
    model.save(str(path))


# --------------------------------------------------------------------------- header keywords


def _primary_rows(model) -> list[list]:
    """The ``[key, value, comment]`` rows of ``model.extra_fits.PRIMARY.header`` (empty if none)."""
    try:
        return [list(r) for r in model.extra_fits.PRIMARY.header]
    except AttributeError:
        return []


def record_keywords(model, keywords: dict[str, Any]) -> None:
    """Write ``keywords`` (``{KEY: value}`` or ``{KEY: (value, comment)}``) into the product's primary header.

    Keywords outside the data-model schema travel in ``model.extra_fits``,
    which stdatamodels writes to the FITS header on save: so a product made
    by ``strun`` or a pipeline hook carries the same record as one made by a
    YOUNG tool.
    """
    rows = _primary_rows(model)
    index = {r[0]: i for i, r in enumerate(rows)}
    for key, value in keywords.items():
        value, comment = value if isinstance(value, tuple) else (value, "")
        if isinstance(value, np.generic):
            value = value.item()
        if key in index:
            rows[index[key]] = [key, value, comment]
        else:
            index[key] = len(rows)
            rows.append([key, value, comment])
    if model.hasattr("extra_fits"):
        model.extra_fits.PRIMARY.header = rows
    else:
        model.extra_fits = {"PRIMARY": {"header": rows}}


def keyword(model, key: str, default: Any = None) -> Any:
    """A primary-header keyword of ``model`` outside the schema (recorded by :func:`record_keywords`, or read
    from the file it was opened from)."""
    for row in _primary_rows(model):
        if row[0] == key:
            return row[1]
    return default


# --------------------------------------------------------------------------- side products


def side_path(product: str | Path, kind: str, ext: str = ".fits") -> Path:
    """Side product beside ``product``, named after it: ``X_1f_rate.fits -> X_1f_rate_<kind><ext>``.

    The product's full stem (suffix included) keeps the side products of a
    rate and a cal of one exposure apart; ``_<kind>`` is not a JWST suffix,
    so directory expansion never takes them for products.  An empty ``kind``
    gives ``X_1f_rate<ext>`` (the QA plot).
    """
    product = Path(product)
    stem = naming.parse(product).stem
    return product.with_name(f"{stem}_{kind}{ext}" if kind else f"{stem}{ext}")


def display(img: np.ndarray, max_size: int = 512) -> np.ndarray:
    """Block-averaged copy of ``img`` at most ``max_size`` pixels on the long side (NaN-aware), for previews."""
    f = max(1, int(math.ceil(max(img.shape) / max_size)))
    ny, nx = (max(s // f, 1) * f for s in img.shape)
    a = np.asarray(img[:ny, :nx], dtype=np.float32)
    if a.shape[0] < f:
        f = 1
    a = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=(1, 3))


def write_hdus(path: str | Path, hdus: list) -> None:
    """Write a side product (an astropy HDU list) at ``path``, replacing any earlier one."""
    from astropy.io import fits

    fits.HDUList(hdus).writeto(path, overwrite=True)


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG at ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
