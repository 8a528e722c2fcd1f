"""Is this file something a YOUNG tool can read?  One clear line if not.

Checks, cheapest first, without reading the data arrays: the file exists and
is not empty, it is FITS, no HDU is cut short (truncated downloads or copies),
it is JWST NIRCam imaging, and it is at the product level the tool consumes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from young.contract.errors import InputError

#: product level → data model names that carry it
LEVELS = {
    "uncal": ("Level1bModel", "RampModel"),
    "rate": ("ImageModel", "IFUImageModel"),
    "cal": ("ImageModel",),
}
#: NIRCam exposure types YOUNG reduces
IMAGING_EXP_TYPES = ("NRC_IMAGE", "NRC_TSIMAGE", "NRC_FLAT", "NRC_DARK")


def read_primary(path: str | Path):
    """Primary header and per-HDU (name, header) list of a FITS file, checked for truncation.

    Raises
    ------
    InputError
        Missing, empty, not FITS, or truncated.
    """
    from astropy.io import fits

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from None
    if size == 0:
        raise InputError("empty file (0 bytes)", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(30)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from None
    if not head.startswith(b"SIMPLE  =") :
        raise InputError("not a FITS file", path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdus = []
                for hdu in hdul:
                    info = hdu.fileinfo()
                    if info is not None and info["datLoc"] + info["datSpan"] > size:
                        raise InputError(
                            f"truncated FITS file: HDU {hdu.name or len(hdus)} needs "
                            f"{info['datLoc'] + info['datSpan']} bytes, file has {size}", path)
                    hdus.append((hdu.name, hdu.header.copy()))
        damaged = [str(w.message) for w in caught
                   if any(k in str(w.message) for k in ("truncated", "corrupted", "multiple of 2880"))]
        if damaged:
            raise InputError(f"truncated or corrupted FITS file ({' '.join(damaged[0].split())[:120]})", path)
    except InputError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"unreadable or truncated FITS file ({msg})", path) from None
    return hdus[0][1], hdus


def check_nircam_image(path: str | Path, level: str | tuple[str, ...]):
    """Validate a JWST NIRCam imaging product of the given level(s).

    Parameters
    ----------
    path : path-like
    level : str or tuple of str
        ``'uncal'``, ``'rate'``, ``'cal'`` (several allowed).

    Returns
    -------
    astropy.io.fits.Header
        The primary header.

    Raises
    ------
    InputError
        With a one-line reason.
    """
    levels = (level,) if isinstance(level, str) else tuple(level)
    header, hdus = read_primary(path)
    telescope = str(header.get("TELESCOP", "")).strip()
    instrument = str(header.get("INSTRUME", "")).strip()
    if telescope and telescope != "JWST":
        raise InputError(f"not a JWST file (TELESCOP={telescope})", path)
    if instrument != "NIRCAM":
        raise InputError(f"not NIRCam data (INSTRUME={instrument or 'missing'}); YOUNG reduces NIRCam imaging", path)
    exp_type = str(header.get("EXP_TYPE", "")).strip()
    if exp_type not in IMAGING_EXP_TYPES:
        raise InputError(f"not NIRCam imaging (EXP_TYPE={exp_type or 'missing'})", path)
    found = product_level(header, hdus)
    if found not in levels:
        want = " or ".join(f"*_{lv}.fits" for lv in levels)
        raise InputError(f"wrong product level: this is a {found} product, the tool reads {want}", path)
    return header


def product_level(header, hdus) -> str:
    """``'uncal'``, ``'rate'`` or ``'cal'`` from the data model and calibration status."""
    model = str(header.get("DATAMODL", "")).strip()
    sci = next((h for n, h in hdus if n == "SCI"), None)
    naxis = int(sci.get("NAXIS", 0)) if sci is not None else 0
    if model in LEVELS["uncal"] or naxis == 4:
        return "uncal"
    if model.startswith("CubeModel") or naxis == 3:
        return "rateints"
    # Image2 marks photometric calibration; rate files have no S_PHOTOM
    if str(header.get("S_PHOTOM", "")).strip().upper() == "COMPLETE":
        return "cal"
    return "rate"


def file_bytes(path: str | Path) -> int:
    return os.stat(path).st_size
