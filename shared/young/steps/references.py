"""Reference data a correction step reads besides its input: the CRDS flat, user masks, wisp templates.

Each function returns arrays on the input's pixel grid (cut to the subarray
where the reference is full frame) and raises a one-line
:class:`~young.contract.errors.InputError` naming the file when it cannot.
Files are cached per worker process by path and modification time.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np

from young.algorithms import wisp, wisp_geometry
from young.contract.errors import InputError
from young.steps import models

#: full-frame detector size (pixels)
FULL = 2048


# --------------------------------------------------------------------------- flat


@functools.lru_cache(maxsize=4)
def _read_flat(path: str, mtime: float) -> tuple[np.ndarray, int, int]:
    """SCI of a FLAT reference and its 1-based SUBSTRT1/2 (cached per worker process)."""
    from stdatamodels.jwst import datamodels

    with datamodels.FlatModel(path) as ref:
        data = np.asarray(ref.data, dtype=np.float32).copy()
        xs = int(ref.meta.subarray.xstart or 1)
        ys = int(ref.meta.subarray.ystart or 1)
    return data, xs, ys


def flat_reference(model, step=None) -> str | None:
    """Path of the FLAT reference jwst's flat_field step would use for ``model`` (None: N/A).

    With ``step`` (an stpipe Step) the look-up is ``step.get_reference_file``,
    so ``--override_flat`` and the step's record of the references it used
    work as in jwst; otherwise ``crds.getreferences``.  Either way it uses the
    CRDS environment in force (``crds_path``, ``crds_context``; serverless
    after a prefetch).

    Raises
    ------
    InputError
        CRDS cannot provide it (missing from the cache and no server).
    """
    where = os.environ.get("CRDS_PATH", "the CRDS cache")
    from crds.core import log as crds_log
    from crds.core.exceptions import CrdsError

    # CRDS's logger does not propagate and its console handler is removed in
    # the workers: let its messages reach the product's .log, not stderr
    crds_logger = logging.getLogger(crds_log.THE_LOGGER.name)
    propagate = crds_logger.propagate
    crds_logger.propagate = True
    try:
        if step is not None:
            path = step.get_reference_file(model, "flat")
        else:
            import crds

            got = crds.getreferences(model.get_crds_parameters(), reftypes=["flat"],
                                     context=os.environ.get("CRDS_CONTEXT") or None, observatory="jwst")
            path = got.get("flat")
    except SystemExit:  # CRDS exits when it has neither a usable cache nor a server
        raise InputError(f"FLAT reference unavailable: no usable CRDS cache at {where} and no server; "
                         "--no-flat measures on the rate itself") from None
    except CrdsError as exc:
        text = " ".join(str(exc).split())
        if "NOT FOUND" in text.upper() and "N/A" in text.upper():
            return None
        raise InputError(f"FLAT reference unavailable from {where} ({text}); "
                         "--no-flat measures on the rate itself") from None
    finally:
        crds_logger.propagate = propagate
    if not isinstance(path, str) or path.upper().startswith("NOT FOUND") or path.upper() == "N/A":
        return None
    return path


def flat_for(model, path: str) -> np.ndarray:
    """The flat on the data's pixel grid (cut from a full-frame reference for subarrays).

    Raises
    ------
    InputError
        The reference does not cover the data's readout.
    """
    full, fxs, fys = _read_flat(path, os.stat(path).st_mtime)
    shape = model.data.shape
    sub = model.meta.subarray
    xs, ys = int(sub.xstart or 1), int(sub.ystart or 1)
    if full.shape == shape and (xs, ys) == (fxs, fys):
        return full
    x0, y0 = xs - fxs, ys - fys
    if x0 < 0 or y0 < 0 or y0 + shape[0] > full.shape[0] or x0 + shape[1] > full.shape[1]:
        raise InputError(f"FLAT reference {Path(path).name} ({full.shape[1]}x{full.shape[0]} at "
                         f"{fxs},{fys}) does not cover the {shape[1]}x{shape[0]} readout at {xs},{ys}")
    return full[y0:y0 + shape[0], x0:x0 + shape[1]]


# --------------------------------------------------------------------------- user mask


def read_user_mask(path: str, model) -> np.ndarray:
    """A user mask on the data's pixel grid (True = do not measure there).

    The ``MASK`` extension, else the first 2-D image of the file; nonzero
    pixels are masked (``--save-mask`` output, a segmentation map or a
    hand-drawn region around cluster light all work).  A full-frame mask is
    cut to a subarray readout (``SUBSTRT``).

    Raises
    ------
    InputError
        Unreadable, no 2-D image, or a shape that does not fit the data.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul["MASK"] if "MASK" in hdul else next(
                (h for h in hdul if h.data is not None and np.ndim(h.data) == 2), None)
            if hdu is None:
                raise InputError("--user-mask has no 2-D image", path)
            mask = np.asarray(hdu.data) != 0
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's file: one line
        raise InputError(f"--user-mask unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})",
                         path) from None
    shape = model.data.shape
    if mask.shape == shape:
        return mask
    sub = model.meta.subarray
    if mask.shape == (FULL, FULL) and sub.xstart and sub.ystart:
        y0, x0 = int(sub.ystart) - 1, int(sub.xstart) - 1
        if y0 + shape[0] <= mask.shape[0] and x0 + shape[1] <= mask.shape[1]:
            return mask[y0:y0 + shape[0], x0:x0 + shape[1]]
    raise InputError(f"--user-mask is {mask.shape[1]}x{mask.shape[0]}, the data {shape[1]}x{shape[0]}", path)


# --------------------------------------------------------------------------- wisp templates


def template_name(detector: str, filt: str, pupil: str) -> str:
    """STScI v3 template file name, ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits``."""
    return f"WISP_{detector.upper()}_{filt.upper()}_{(pupil or 'CLEAR').upper()}.fits"


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
        raise InputError(f"wisp template {name} needed: give --wisp-templates DIR "
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
        :func:`young.algorithms.wisp_geometry.template_region` of the full template, cut.

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


def wisp_template(model, folder: str | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The wisp template young-wisp would use for this exposure, on its pixel grid, and its region.

    ``WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits`` in ``folder``, the RATE or CAL
    extension by product level, cut to the subarray (:func:`template_for`).
    ``(None, None, 'none')`` for detectors without wisps, filters without a
    template, no folder, or a readout the template's region does not reach.

    Raises
    ------
    InputError
        The template exists but is unreadable or does not fit the readout.
    """
    det = str(model.meta.instrument.detector or "").upper()
    if not folder or det not in wisp.WISP_DETECTORS:
        return None, None, "none"
    filt = str(model.meta.instrument.filter or "").upper()
    pupil = str(model.meta.instrument.pupil or "CLEAR").upper()
    path = Path(folder) / template_name(det, filt, pupil)
    if not path.is_file():
        return None, None, "none"
    ext = "RATE" if models.product_level(model) == "rate" else "CAL"
    template, region = template_for(path, ext, model)
    if np.count_nonzero(region) < wisp.WispFitParams().min_pixels:
        return None, None, "none"
    return template, region, path.name
