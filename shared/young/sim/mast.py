"""A simulated set laid out as a MAST download (``young-sim --preset mast``).

MAST's portal download nests every exposure in its own folder,
``MAST_<date>/JWST/<file stem>/<file>``; astroquery's ``download_products``
writes ``mastDownload/JWST/<obs id>/<file>``.  A program's download also holds
what is not NIRCam imaging: target acquisitions, grism, coronagraphic and
time-series exposures, and other instruments' parallels.  Users download more
than once, so the same file turns up in two folders.

The imaging exposures of the first program go into a portal-style folder, the
others into an astroquery-style one; :func:`write_extras` adds the exposures the
chain must skip (real-shaped headers, small arrays) and one exposure downloaded
twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

PORTAL = "MAST_2026-12-01T0930"
ASTROQUERY = "mastDownload"
SECOND_DOWNLOAD = "MAST_2026-12-03T1412"

#: exposures that are not NIRCam imaging: (program index, suffix, header values, array shape)
EXTRAS = (
    (0, "uncal", dict(INSTRUME="NIRCAM", DETECTOR="NRCA3", EXP_TYPE="NRC_TACQ", FILTER="F335M", PUPIL="CLEAR",
                      SUBARRAY="SUB32TATS", READPATT="RAPID", DATAMODL="Level1bModel", ACT_ID="01"),
     (1, 3, 32, 32)),
    (0, "rate", dict(INSTRUME="NIRCAM", DETECTOR="NRCALONG", EXP_TYPE="NRC_WFSS", FILTER="F444W", PUPIL="GRISMR",
                     SUBARRAY="SUBGRISM64", READPATT="RAPID", DATAMODL="ImageModel", ACT_ID="04"),
     (64, 256)),
    (1, "cal", dict(INSTRUME="NIRCAM", DETECTOR="NRCALONG", EXP_TYPE="NRC_CORON", FILTER="F444W", PUPIL="MASKRND",
                    CORONMSK="MASKA335R", SUBARRAY="SUB320A335R", READPATT="MEDIUM8", DATAMODL="ImageModel",
                    ACT_ID="05", S_PHOTOM="COMPLETE"),
     (64, 64)),
    (1, "uncal", dict(INSTRUME="NIRCAM", DETECTOR="NRCA1", EXP_TYPE="NRC_TSIMAGE", FILTER="WLP8", PUPIL="CLEAR",
                      SUBARRAY="SUB64P", READPATT="RAPID", DATAMODL="Level1bModel", ACT_ID="06", TSOVISIT=True),
     (1, 3, 64, 64)),
    (1, "uncal", dict(INSTRUME="MIRI", DETECTOR="MIRIMAGE", EXP_TYPE="MIR_IMAGE", FILTER="F770W",
                      SUBARRAY="SUB64", READPATT="FASTR1", DATAMODL="Level1bModel", ACT_ID="07"),
     (1, 3, 64, 72)),
)


def relative_path(spec, programs: list[int]) -> Path:
    """Where ``spec``'s uncal file goes under ``raw/``: the first program portal-style, others astroquery-style."""
    top = PORTAL if spec.program == programs[0] else ASTROQUERY
    return Path(top) / "JWST" / spec.basename / spec.filename


def _extra_name(program: int, act: str, det: str, suffix: str) -> str:
    return f"jw{program:05d}002001_03{act[-1]}01_00001_{det.lower()}_{suffix}.fits"


def write_extras(raw: Path, programs: list[int], imaging: list[Path]) -> list[Path]:
    """Write the non-imaging exposures and the second download of one imaging file.

    Parameters
    ----------
    raw : Path
        The set's ``raw/`` folder (already holding the imaging exposures).
    programs : list of int
        The set's program numbers, in preset order.
    imaging : list of Path
        The imaging uncal files; the first is downloaded again into :data:`SECOND_DOWNLOAD`.

    Returns
    -------
    list of Path
        The files written.
    """
    from astropy.io import fits

    written = []
    for k, (prog_index, suffix, values, shape) in enumerate(EXTRAS):
        program = programs[prog_index % len(programs)]
        name = _extra_name(program, values["ACT_ID"], values["DETECTOR"], suffix)
        top = PORTAL if prog_index == 0 else ASTROQUERY
        path = raw / top / "JWST" / name.rsplit("_", 1)[0] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        hdr = fits.Header()
        hdr["TELESCOP"] = "JWST"
        hdr["FILENAME"] = name
        hdr["DATE"] = "2026-12-01T09:30:00.000"
        hdr["PROGRAM"] = f"{program:05d}"
        hdr["OBSERVTN"] = "002"
        hdr["VISIT"] = "001"
        hdr["VISITGRP"] = "03"
        hdr["SEQ_ID"] = values["ACT_ID"][-1]
        hdr["EXPOSURE"] = "00001"
        hdr["TARGNAME"] = "YOUNG-SIM-FIELD"
        hdr["DATE-OBS"] = "2023-07-15"
        hdr["TIME-OBS"] = f"0{k}:00:00.000"
        for key, val in values.items():
            hdr[key] = val
        ny, nx = shape[-2:]
        hdr["SUBSTRT1"], hdr["SUBSTRT2"], hdr["SUBSIZE1"], hdr["SUBSIZE2"] = 1, 1, nx, ny
        if suffix == "uncal":
            hdr["NINTS"], hdr["NGROUPS"] = shape[0], shape[1]
            sci = fits.ImageHDU(np.full(shape, 1000, np.uint16), name="SCI")
        else:
            sci = fits.ImageHDU(np.zeros(shape, np.float32), name="SCI")
        fits.HDUList([fits.PrimaryHDU(header=hdr), sci]).writeto(path)
        written.append(path)
    first = imaging[0]
    copy = raw / SECOND_DOWNLOAD / "JWST" / first.parent.name / first.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(first, copy)
    written.append(copy)
    return written
