"""File side shared by the correction tools (``young-fnoise``, ``young-wisp``, ``young-bkg``).

Each correction tool is a :class:`~young.contract.ToolSpec` whose ``process``
opens the input as a jwst data model, hands it to a pure algorithm, and saves
the result under the product's temporary name; this module holds the parts
they share so each tool module only maps its algorithm onto the model.
The input file is opened read-only and never written: the model is saved
under a new name.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from young.contract import fitscheck, naming
from young.contract.runner import Job

#: DQ bit names YOUNG sets
DO_NOT_USE = 1


def validate_image(src: Path, levels=("rate", "cal")):
    """A NIRCam imaging rate or cal file (the correction tools read both)."""
    return fitscheck.check_nircam_image(src, levels)


def _lacks_tag(tag: str, pn: naming.ProductName) -> bool:
    return tag not in pn.tags


def not_tagged(tag: str) -> Callable[[naming.ProductName], bool]:
    """Directory filter: only products that do not carry ``tag`` yet (used by ``ToolSpec.accept``).

    A ``functools.partial`` of a module-level function, not a lambda: the
    ToolSpec holding it is pickled to ``--jobs`` workers and MPI ranks.
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


def save(model, job: Job) -> None:
    """Save the corrected model as the product (temporary name; the contract moves it into place)."""
    model.meta.filename = job.dst.name
    model.save(str(job.tmp))


def nan_to_dq(data: np.ndarray, dq: np.ndarray) -> np.ndarray:
    """Flag non-finite science pixels DO_NOT_USE (never silent zeros); returns the new DQ."""
    bad = ~np.isfinite(data)
    out = dq.copy()
    out[bad] |= DO_NOT_USE
    return out


def run(job: Job, apply: Callable[[Any, Job], dict]) -> dict:
    """Open ``job.src``, let ``apply(model, job)`` correct it in memory, save it; return header keywords."""
    with open_model(job.src) as model:
        keywords = apply(model, job) or {}
        save(model, job)
    return keywords
