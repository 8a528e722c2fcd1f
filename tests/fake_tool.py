"""A minimal per-file tool for testing the contract without jwst.

It reads a small FITS "rate" file, multiplies the data by ``factor`` and
writes it as the ``_1f`` product.  Parameters let tests make it slow, fail or
kill its own process on a chosen input.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from young.contract import naming
from young.contract.errors import InputError
from young.contract.runner import Job, ToolSpec


def make_rate(path: Path, value: float = 1.0, shape=(8, 8)) -> Path:
    """Write a tiny NIRCam-looking rate file."""
    hdu0 = fits.PrimaryHDU()
    hdu0.header.update(TELESCOP="JWST", INSTRUME="NIRCAM", EXP_TYPE="NRC_IMAGE", DATAMODL="ImageModel")
    sci = fits.ImageHDU(np.full(shape, value, dtype=np.float32), name="SCI")
    fits.HDUList([hdu0, sci]).writeto(path, overwrite=True)
    return path


def product(src: Path, output_dir, params) -> Path:
    return naming.product_path(src, tag="1f", output_dir=output_dir)


def validate(src: Path, params):
    from young.contract import fitscheck

    return fitscheck.check_nircam_image(src, "rate")


def process(job: Job):
    name = job.src.name
    if params_hit(job.params.get("fail_on"), name):
        raise InputError("simulated failure", job.src)
    if params_hit(job.params.get("kill_on"), name):
        os.kill(os.getpid(), signal.SIGKILL)
    with fits.open(job.src) as hdul:
        data = hdul["SCI"].data * job.params.get("factor", 2.0)
        out = fits.HDUList([fits.PrimaryHDU(header=hdul[0].header), fits.ImageHDU(data, name="SCI")])
        # write in two halves with a pause, so a test can kill us mid-write
        out.writeto(job.tmp)
    if job.params.get("sleep"):
        time.sleep(job.params["sleep"])
    job.log.info("processed %s", name)
    return {"YNG1F": "fake"}


def params_hit(value, name):
    return bool(value) and value in name


def build_params(section, cli):
    return {k: v for k, v in cli.items() if k != "steps" and v is not None}


SPEC = ToolSpec(
    name="young-fake", section="fnoise", consumes=("rate",), product=product, process=process,
    validate=validate, build_params=build_params, applied_keyword="YNG1F", tag="1f",
)
