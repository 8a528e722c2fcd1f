"""JWST data-quality bits, as the algorithms use them.

The values are the JWST pixel DQ flags (``stdatamodels.jwst.datamodels.dqflags.pixel``;
``tests/test_layers.py`` checks that they agree).  They are restated here so
that the algorithm layer depends on numpy, scipy and astropy only: the
data-model package is slow to import (docs/performance.md) and brings file
I/O with it.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata.bitmask import interpret_bit_flags

#: JWST pixel DQ flags (name -> bit value)
PIXEL: dict[str, int] = {
    "GOOD": 0, "DO_NOT_USE": 1, "SATURATED": 2, "JUMP_DET": 4, "DROPOUT": 8, "OUTLIER": 16,
    "PERSISTENCE": 32, "AD_FLOOR": 64, "CHARGELOSS": 128, "RESERVED": 256, "NON_SCIENCE": 512,
    "DEAD": 1024, "HOT": 2048, "WARM": 4096, "LOW_QE": 8192, "RC": 16384, "TELEGRAPH": 32768,
    "NONLINEAR": 65536, "BAD_REF_PIXEL": 131072, "NO_FLAT_FIELD": 262144, "NO_GAIN_VALUE": 524288,
    "NO_LIN_CORR": 1048576, "NO_SAT_CHECK": 2097152, "UNRELIABLE_BIAS": 4194304,
    "UNRELIABLE_DARK": 8388608, "UNRELIABLE_SLOPE": 16777216, "UNRELIABLE_FLAT": 33554432,
    "OPEN": 67108864, "ADJ_OPEN": 134217728, "FLUX_ESTIMATED": 268435456,
    "MSA_FAILED_OPEN": 536870912, "OTHER_BAD_PIXEL": 1073741824, "REFERENCE_PIXEL": 2147483648,
}

DO_NOT_USE = PIXEL["DO_NOT_USE"]
SATURATED = PIXEL["SATURATED"]
NON_SCIENCE = PIXEL["NON_SCIENCE"]
OTHER_BAD_PIXEL = PIXEL["OTHER_BAD_PIXEL"]
REFERENCE_PIXEL = PIXEL["REFERENCE_PIXEL"]

#: DQ bits that make a pixel unusable for any statistic.  REFERENCE_PIXEL is
#: included because reference pixels carry no sky signal.
DEFAULT_BAD_BITS = DO_NOT_USE | SATURATED | NON_SCIENCE | REFERENCE_PIXEL


def bad(dq: np.ndarray | None, bits: int | str = DEFAULT_BAD_BITS, shape: tuple | None = None) -> np.ndarray:
    """Boolean array, True where any of ``bits`` is set in ``dq``.

    Parameters
    ----------
    dq : ndarray of int, shape (ny, nx), or None
        Data quality array (JWST convention).  None means all good.
    bits : int or str
        Bit mask, or flag names joined by ``,`` or ``+`` (JWST mnemonics,
        e.g. ``"DO_NOT_USE,SATURATED"``).
    shape : tuple, optional
        Shape of the result when ``dq`` is None.

    Returns
    -------
    ndarray of bool
    """
    if dq is None:
        return np.zeros(shape, dtype=bool)
    if isinstance(bits, str):
        bits = interpret_bit_flags(bits.replace("+", ","), flag_name_map=PIXEL)
    bits = int(bits or 0)
    return (np.asarray(dq).astype(np.uint32, copy=False) & np.uint32(bits)) != 0
