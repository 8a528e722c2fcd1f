"""NIRCam facts the simulator needs, from the flight SIAF (pysiaf) and the detector literature.

Everything here is deterministic: per-pixel detector properties (bias, dark,
flat, bad pixels, ...) come from :func:`detector_arrays` seeded by ``seed`` and
the detector name, so the same seed always gives the same detectors and the
CRDS references written from them (``crds_cache``) always match what the ramps
carry.

Conventions
-----------
- Arrays are in DMS ("science") orientation, full frame 2048 x 2048, with 4
  reference pixels on every edge; ``[row, column]`` = ``[y, x]``, 0-based.
- A subarray is given in 1-based full-frame DMS coordinates (``xstart``,
  ``ystart``) like the ``SUBSTRT1/2`` keywords.
- In DMS orientation the four amplifiers of every NIRCam detector are column
  blocks of 512; ``fastaxis``/``slowaxis`` (the FASTAXIS/SLOWAXIS keywords)
  give the readout direction: ``fastaxis=-1`` means the fast scan runs towards
  decreasing DMS x, ``slowaxis=-2`` that rows are read from the top down.
- Angles in degrees, telescope (V2, V3) coordinates in arcsec.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

FULL = 2048
"""Full-frame size (pixels) of every NIRCam detector."""
NREF = 4
"""Width of the reference-pixel border (pixels)."""
AMP_COLS = 512
"""Width of one amplifier's column block in a full-width readout (DMS)."""
PIXEL_TIME = 10e-6
"""Time to read one pixel (s)."""
ROW_OVERHEAD = 12
"""Extra pixel times per row (line overhead)."""
USEAFTER = "2022-01-01T00:00:00"
"""USEAFTER of every synthetic reference (observations are later)."""

# DQ bits (jwst dqflags.pixel)
DQ_DO_NOT_USE = 1
DQ_DEAD = 1024
DQ_HOT = 2048
DQ_REFERENCE_PIXEL = 2**31
DQ_NO_SAT_CHECK = 2**21

# ---------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    """Static facts of one NIRCam detector (SCA).

    Attributes
    ----------
    name : str
        DETECTOR keyword, e.g. ``NRCA3`` or ``NRCALONG``.
    module, channel : str
        ``A``/``B`` and ``SHORT``/``LONG``.
    siaf : str
        Detector name in the SIAF (``NRCA5`` for ``NRCALONG``).
    sca_num : int
        SCA_NUM keyword.
    gain : float
        Mean gain (e-/DN).
    readnoise_cds : float
        Mean correlated-double-sampling read noise (DN), what a READNOISE
        reference holds; one read has ``readnoise_cds / sqrt(2)``.
    dark_current : float
        Mean dark current (e-/s).
    bias_level : float
        Mean bias (DN).
    """

    name: str
    module: str
    channel: str
    siaf: str
    sca_num: int
    gain: float
    readnoise_cds: float
    dark_current: float
    bias_level: float

    @property
    def is_long(self) -> bool:
        return self.channel == "LONG"

    @property
    def has_wisps(self) -> bool:
        """Whether the detector shows wisps (A3, A4, B3, B4)."""
        return self.name in WISP_DETECTORS

    @property
    def fastaxis(self) -> int:
        """FASTAXIS keyword (from the SIAF DetSciYAngle)."""
        return -1 if _det_sci_yangle(self.siaf) == 0 else 1

    @property
    def slowaxis(self) -> int:
        """SLOWAXIS keyword (from the SIAF DetSciYAngle)."""
        return 2 if _det_sci_yangle(self.siaf) == 0 else -2

    @property
    def pixel_scale(self) -> tuple[float, float]:
        """(x, y) pixel scale at the reference point (arcsec), from the SIAF."""
        ap = siaf_aperture(f"{self.siaf}_FULL")
        return float(ap.XSciScale), float(ap.YSciScale)

    @property
    def pixar_a2(self) -> float:
        """Nominal pixel area (arcsec^2): PIXAR_A2."""
        sx, sy = self.pixel_scale
        return sx * sy

    @property
    def pixar_sr(self) -> float:
        """Nominal pixel area (sr): PIXAR_SR."""
        return self.pixar_a2 * (math.pi / 180 / 3600) ** 2


# Gains, CDS read noise, dark current: rounded values of the kind the JWST
# documentation lists for the flight detectors (JDox "NIRCam detector performance").
_DETECTOR_TABLE = [
    # name, module, channel, siaf, sca, gain, rn_cds(DN), dark(e/s), bias
    ("NRCA1", "A", "SHORT", "NRCA1", 481, 2.07, 7.0, 0.0019, 12500.0),
    ("NRCA2", "A", "SHORT", "NRCA2", 482, 2.01, 6.8, 0.0019, 12300.0),
    ("NRCA3", "A", "SHORT", "NRCA3", 483, 2.16, 7.3, 0.0024, 12800.0),
    ("NRCA4", "A", "SHORT", "NRCA4", 484, 2.01, 7.0, 0.0021, 12100.0),
    ("NRCALONG", "A", "LONG", "NRCA5", 485, 1.83, 6.2, 0.0290, 12900.0),
    ("NRCB1", "B", "SHORT", "NRCB1", 486, 2.08, 7.1, 0.0021, 12400.0),
    ("NRCB2", "B", "SHORT", "NRCB2", 487, 2.02, 6.9, 0.0020, 12600.0),
    ("NRCB3", "B", "SHORT", "NRCB3", 488, 2.17, 7.4, 0.0023, 12200.0),
    ("NRCB4", "B", "SHORT", "NRCB4", 489, 2.01, 6.9, 0.0022, 12700.0),
    ("NRCBLONG", "B", "LONG", "NRCB5", 490, 1.84, 6.1, 0.0330, 12300.0),
]

DETECTORS: dict[str, Detector] = {row[0]: Detector(*row) for row in _DETECTOR_TABLE}
"""Every NIRCam imaging detector by DETECTOR keyword, module A first."""
SW_DETECTORS = tuple(n for n, d in DETECTORS.items() if d.channel == "SHORT")
LW_DETECTORS = tuple(n for n, d in DETECTORS.items() if d.channel == "LONG")
WISP_DETECTORS = ("NRCA3", "NRCA4", "NRCB3", "NRCB4")


def detector(name: str) -> Detector:
    """The :class:`Detector` named ``name`` (DETECTOR keyword, any case; ``NRCA5`` works too)."""
    key = name.upper()
    key = {"NRCA5": "NRCALONG", "NRCB5": "NRCBLONG"}.get(key, key)
    try:
        return DETECTORS[key]
    except KeyError:
        raise ValueError(f"unknown NIRCam detector {name!r}; known: {', '.join(DETECTORS)}") from None


def long_partner(name: str) -> str:
    """The long-wavelength detector exposed together with a detector of the same module."""
    return "NRCALONG" if detector(name).module == "A" else "NRCBLONG"


# ---------------------------------------------------------------- SIAF access


def import_pysiaf():
    """Import pysiaf without its import-time online PRD-version check.

    pysiaf's ``__init__`` calls ``requests.get`` on GitHub with no timeout,
    which hangs on a firewalled compute node; the check only prints a
    warning, so it is made to fail at once (nothing else is changed).
    """
    import logging
    import sys

    if "pysiaf" in sys.modules:
        return sys.modules["pysiaf"]
    import requests

    original = requests.get

    def _offline(*args, **kwargs):
        raise requests.ConnectionError("young.sim: pysiaf's online PRD check skipped")

    requests.get = _offline
    logger = logging.getLogger("pysiaf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import pysiaf
    finally:
        requests.get = original
        logger.setLevel(level)
    return pysiaf


@functools.lru_cache(maxsize=1)
def _siaf():
    pysiaf = import_pysiaf()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pysiaf.Siaf("NIRCam")


def siaf_aperture(name: str):
    """The flight-SIAF aperture ``name`` (a pysiaf aperture object)."""
    siaf = _siaf()
    if name not in siaf.apertures:
        raise ValueError(f"aperture {name!r} is not in the NIRCam SIAF")
    return siaf[name]


def _det_sci_yangle(siaf_name: str) -> float:
    return float(siaf_aperture(f"{siaf_name}_FULL").DetSciYAngle)


# ---------------------------------------------------------------- subarrays


@dataclass(frozen=True)
class Subarray:
    """A readout region, in 1-based full-frame DMS pixels (SUBSTRT/SUBSIZE keywords).

    Attributes
    ----------
    name : str
        SUBARRAY keyword (``FULL``, ``SUBGRISM256``, ``SUB640``, ...).
    xstart, ystart : int
        1-based first column / row.
    xsize, ysize : int
        Size in pixels.
    noutputs : int
        Amplifiers used: 4 for full-width readouts, else 1.
    aperture : str
        The SIAF aperture of this readout on its detector (APERNAME).
    """

    name: str
    xstart: int
    ystart: int
    xsize: int
    ysize: int
    noutputs: int
    aperture: str

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return (self.ysize, self.xsize)

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of this readout in a full-frame array."""
        return (slice(self.ystart - 1, self.ystart - 1 + self.ysize),
                slice(self.xstart - 1, self.xstart - 1 + self.xsize))

    @property
    def is_full(self) -> bool:
        return self.xsize == FULL and self.ysize == FULL

    def cut(self, full_frame: np.ndarray) -> np.ndarray:
        """This subarray of a full-frame array (last two axes), as a copy."""
        rows, cols = self.slices
        return np.ascontiguousarray(full_frame[..., rows, cols])

    def amplifier_slices(self) -> list[tuple[slice, slice]]:
        """(rows, columns) of each amplifier inside this readout (0-based, subarray pixels)."""
        rows = slice(0, self.ysize)
        if self.noutputs == 1:
            return [(rows, slice(0, self.xsize))]
        width = self.xsize // self.noutputs
        return [(rows, slice(i * width, (i + 1) * width)) for i in range(self.noutputs)]

    @property
    def frame_time(self) -> float:
        """Time between frames (s): (columns per output + 12) x (rows + 1) x 10 us."""
        return (self.xsize / self.noutputs + ROW_OVERHEAD) * (self.ysize + 1) * PIXEL_TIME


# subarray name -> (aperture suffix template for SW, for LW); {n} = SIAF detector, {f} = filter
_SUBARRAY_APERTURES = {
    "FULL": ("{n}_FULL", "{n}_FULL"),
    "SUBGRISM256": ("{n}_GRISMTS256", "{n}_GRISM256_{f}"),
    "SUBGRISM128": ("{n}_GRISMTS128", "{n}_GRISM128_{f}"),
    "SUBGRISM64": ("{n}_GRISMTS64", "{n}_GRISM64_{f}"),
    "SUB640": ("{n}_SUB640", "{n}_SUB640"),
    "SUB320": ("{n}_SUB320", "{n}_SUB320"),
    "SUB160": ("{n}_SUB160", "{n}_SUB160"),
    "SUB400P": ("{n}_SUB400P", "{n}_SUB400P"),
    "SUB160P": ("{n}_SUB160P", "{n}_SUB160P"),
    "SUB64P": ("{n}_SUB64P", "{n}_SUB64P"),
}
SUBARRAY_NAMES = tuple(_SUBARRAY_APERTURES)


@functools.lru_cache(maxsize=256)
def subarray(detector_name: str, name: str = "FULL", filter: str = "F444W") -> Subarray:
    """The readout region ``name`` on a detector, from the SIAF aperture that defines it.

    Parameters
    ----------
    detector_name : str
        DETECTOR keyword.
    name : str
        SUBARRAY keyword; one of :data:`SUBARRAY_NAMES`.
    filter : str
        Only for the long-wavelength grism subarrays, whose SIAF aperture is
        per filter (the region is the same); falls back to F444W.

    Raises
    ------
    ValueError
        Unknown subarray, or one the SIAF does not define for this detector.
    """
    det = detector(detector_name)
    key = name.upper()
    if key not in _SUBARRAY_APERTURES:
        raise ValueError(f"unknown subarray {name!r}; known: {', '.join(SUBARRAY_NAMES)}")
    template = _SUBARRAY_APERTURES[key][1 if det.is_long else 0]
    candidates = [template.format(n=det.siaf, f=filter.upper())]
    if "{f}" in template:
        candidates.append(template.format(n=det.siaf, f="F444W"))
    for apname in candidates:
        if apname in _siaf().apertures:
            break
    else:
        raise ValueError(f"subarray {key} is not defined for {det.name} in the SIAF ({candidates[0]})")
    if key == "FULL":
        return Subarray("FULL", 1, 1, FULL, FULL, 4, apname)
    ap = siaf_aperture(apname)
    xstart, ystart = (int(v) for v in ap.dms_corner())
    xsize, ysize = int(ap.XSciSize), int(ap.YSciSize)
    noutputs = 4 if xsize == FULL else 1
    return Subarray(key, xstart, ystart, xsize, ysize, noutputs, apname)


# ---------------------------------------------------------------- readout patterns


@dataclass(frozen=True)
class ReadPattern:
    """A NIRCam readout pattern: frames averaged per group, frames dropped between groups."""

    name: str
    nframes: int
    groupgap: int
    max_ngroups: int


READ_PATTERNS = {
    p.name: p
    for p in (
        ReadPattern("RAPID", 1, 0, 10),
        ReadPattern("BRIGHT1", 1, 1, 10),
        ReadPattern("BRIGHT2", 2, 0, 10),
        ReadPattern("SHALLOW2", 2, 3, 10),
        ReadPattern("SHALLOW4", 4, 1, 10),
        ReadPattern("MEDIUM2", 2, 8, 10),
        ReadPattern("MEDIUM8", 8, 2, 10),
        ReadPattern("DEEP2", 2, 18, 20),
        ReadPattern("DEEP8", 8, 12, 20),
    )
}


def read_pattern(name: str) -> ReadPattern:
    """The :class:`ReadPattern` called ``name`` (READPATT keyword)."""
    try:
        return READ_PATTERNS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown readout pattern {name!r}; known: {', '.join(READ_PATTERNS)}") from None


def group_frame_times(pattern: ReadPattern, ngroups: int, frame_time: float) -> np.ndarray:
    """Mean time after reset of the frames averaged into each group (s), shape ``(ngroups,)``.

    Frame k (0-based) is read ``(k + 1) * frame_time`` after the reset; group g
    averages frames ``g * (nframes + groupgap) ... + nframes - 1``.
    """
    step = pattern.nframes + pattern.groupgap
    first = np.arange(ngroups) * step
    k_mean = first + (pattern.nframes - 1) / 2.0
    return (k_mean + 1.0) * frame_time


def exposure_times(pattern: ReadPattern, ngroups: int, nints: int, frame_time: float) -> dict:
    """Timing keywords of an exposure (s): TFRAME, TGROUP, EFFINTTM, EFFEXPTM, DURATION, ...

    Integration time counts every frame from the first read to the last group
    (``ngroups * nframes + (ngroups - 1) * groupgap`` frames), as APT does.
    """
    tgroup = frame_time * (pattern.nframes + pattern.groupgap)
    nfr = ngroups * pattern.nframes + (ngroups - 1) * pattern.groupgap
    tint = nfr * frame_time
    # one reset frame before each integration
    duration = (nfr + 1) * frame_time * nints
    return {
        "frame_time": frame_time,
        "group_time": tgroup,
        "integration_time": tint,
        "effective_integration_time": tint,
        "exposure_time": tint * nints,
        "effective_exposure_time": tint * nints,
        "measurement_time": (ngroups - 1) * tgroup * nints,
        "duration": duration,
    }


# ---------------------------------------------------------------- filters and photometry


@dataclass(frozen=True)
class Filter:
    """A NIRCam filter: pivot wavelength and width (um), mean system throughput, AB-Vega offset."""

    name: str
    channel: str
    pivot: float
    width: float
    throughput: float
    abvega: float
    pupil: str = "CLEAR"


_FILTER_TABLE = [
    # name, channel, pivot um, width um, mean throughput (telescope+instrument+QE), AB-Vega (mag)
    ("F070W", "SHORT", 0.704, 0.128, 0.22, 0.17),
    ("F090W", "SHORT", 0.901, 0.194, 0.30, 0.49),
    ("F115W", "SHORT", 1.154, 0.225, 0.34, 0.78),
    ("F140M", "SHORT", 1.404, 0.142, 0.40, 1.07),
    ("F150W", "SHORT", 1.501, 0.318, 0.42, 1.20),
    ("F182M", "SHORT", 1.845, 0.238, 0.45, 1.51),
    ("F200W", "SHORT", 1.990, 0.461, 0.44, 1.68),
    ("F210M", "SHORT", 2.093, 0.205, 0.43, 1.79),
    ("F250M", "LONG", 2.503, 0.181, 0.30, 2.12),
    ("F277W", "LONG", 2.786, 0.672, 0.38, 2.30),
    ("F300M", "LONG", 2.996, 0.318, 0.40, 2.46),
    ("F335M", "LONG", 3.365, 0.347, 0.45, 2.70),
    ("F356W", "LONG", 3.563, 0.787, 0.48, 2.80),
    ("F360M", "LONG", 3.621, 0.372, 0.47, 2.83),
    ("F410M", "LONG", 4.092, 0.436, 0.45, 3.09),
    ("F444W", "LONG", 4.421, 1.024, 0.44, 3.24),
    ("F460M", "LONG", 4.624, 0.228, 0.38, 3.35),
    ("F480M", "LONG", 4.834, 0.303, 0.35, 3.45),
]
FILTERS: dict[str, Filter] = {row[0]: Filter(*row) for row in _FILTER_TABLE}
"""Supported imaging filters (all in the filter wheel, pupil CLEAR)."""

_JWST_AREA_M2 = 25.4
_H_PLANCK = 6.62607015e-34


def filter_info(name: str) -> Filter:
    """The :class:`Filter` called ``name``."""
    try:
        return FILTERS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown NIRCam filter {name!r}; known: {', '.join(FILTERS)}") from None


def check_filter(detector_name: str, filter_name: str) -> Filter:
    """The filter, after checking it belongs to the detector's channel."""
    filt = filter_info(filter_name)
    det = detector(detector_name)
    if filt.channel != det.channel:
        raise ValueError(f"filter {filt.name} is a {filt.channel.lower()}-wavelength filter, "
                         f"{det.name} is a {det.channel.lower()}-wavelength detector")
    return filt


def electrons_per_s_per_njy(filter_name: str) -> float:
    """Detected electrons per second from a 1 nJy source (all of its light).

    ``A * T * (dlambda / lambda) * F_nu / h`` with the JWST collecting area
    and the filter's mean throughput.
    """
    f = filter_info(filter_name)
    return _JWST_AREA_M2 * f.throughput * (f.width / f.pivot) * 1e-35 / _H_PLANCK


def photmjsr(detector_name: str, filter_name: str) -> float:
    """PHOTMJSR: (MJy/sr) per (DN/s) for a detector and filter.

    Derived from the collecting area, filter throughput, the detector gain and
    its nominal pixel area, so it has the magnitude of the flight values
    (about 2 for short-wavelength wide filters, about 0.5 for long).
    """
    det = detector(detector_name)
    njy_per_dn_s = det.gain / electrons_per_s_per_njy(filter_name)
    return njy_per_dn_s * 1e-15 / det.pixar_sr


def dn_s_per_njy(detector_name: str, filter_name: str) -> float:
    """DN/s produced (in total, over all pixels, flat = 1) by a 1 nJy source."""
    det = detector(detector_name)
    return 1e-15 / (det.pixar_sr * photmjsr(detector_name, filter_name))


# ---------------------------------------------------------------- distortion


@functools.lru_cache(maxsize=16)
def distortion_model(detector_name: str):
    """Detector -> V2/V3 transform of a detector, from its flight-SIAF FULL aperture.

    Input: 0-based full-frame DMS pixel (x, y).  Output: V2, V3 (arcsec).
    Forward: SIAF Sci->Idl polynomial, then the Idl->Tel rotation and V2Ref/V3Ref
    shift (planar, as the CRDS distortion references are built).  Inverse: the
    Tel->Idl rotation and a degree-6 Idl->Sci polynomial fitted to the forward
    polynomial (the SIAF's own Idl2Sci is off by up to 0.13 pixel at the
    corners; this fit is good to about a thousandth of a pixel).

    Returns
    -------
    astropy.modeling.Model
        A 2 -> 2 compound model with an ``inverse``.
    """
    from astropy.modeling import fitting
    from astropy.modeling.models import Mapping, Polynomial2D, Scale, Shift

    det = detector(detector_name)
    ap = siaf_aperture(f"{det.siaf}_FULL")
    sci2idl_x, sci2idl_y = ap.distortion_transform("sci", "idl")
    idl2tel_x, idl2tel_y = ap.telescope_transform("idl", "tel")
    tel2idl_x, tel2idl_y = ap.telescope_transform("tel", "idl")
    xref, yref = float(ap.XSciRef), float(ap.YSciRef)

    to_sci_rel = (Shift(1.0 - xref) & Shift(1.0 - yref))
    sci2idl = to_sci_rel | Mapping((0, 1, 0, 1)) | (sci2idl_x & sci2idl_y)
    idl2tel = Mapping((0, 1, 0, 1)) | (idl2tel_x & idl2tel_y)

    # fitted inverse: ideal -> 0-based pixel
    g = np.linspace(-24.0, FULL + 23.0, 64)
    gx, gy = np.meshgrid(g, g)
    ix, iy = sci2idl(gx.ravel(), gy.ravel())
    norm = 1.0 / float(max(np.abs(ix).max(), np.abs(iy).max()))
    fitter = fitting.LinearLSQFitter()
    px = fitter(Polynomial2D(6), ix * norm, iy * norm, gx.ravel())
    py = fitter(Polynomial2D(6), ix * norm, iy * norm, gy.ravel())
    idl2pix = (Scale(norm) & Scale(norm)) | Mapping((0, 1, 0, 1)) | (px & py)
    # pysiaf's tel->idl polynomials take V2/V3 relative to the reference point
    tel2idl = ((Shift(-float(ap.V2Ref)) & Shift(-float(ap.V3Ref)))
               | Mapping((0, 1, 0, 1)) | (tel2idl_x & tel2idl_y))

    forward = sci2idl | idl2tel
    forward.inverse = tel2idl | idl2pix
    forward.name = f"{det.name}_siaf_distortion"
    return forward


@functools.lru_cache(maxsize=2)
def pixel_area_map(detector_name: str, step: int = 32) -> np.ndarray:
    """Pixel area relative to the nominal (PIXAR_A2), full frame, float32 (cached: do not modify).

    The area is the Jacobian determinant of the detector -> V2/V3 transform,
    evaluated every ``step`` pixels and interpolated bilinearly (it is smooth).
    """
    from scipy.ndimage import map_coordinates

    model = distortion_model(detector_name)
    det = detector(detector_name)
    nodes = np.arange(0, FULL + step, step, dtype=float)
    nodes[-1] = FULL - 1
    gx, gy = np.meshgrid(nodes, nodes)
    h = 0.5
    v2a, v3a = model(gx + h, gy)
    v2b, v3b = model(gx - h, gy)
    v2c, v3c = model(gx, gy + h)
    v2d, v3d = model(gx, gy - h)
    jac = np.abs((v2a - v2b) * (v3c - v3d) - (v2c - v2d) * (v3a - v3b))
    rel = jac / det.pixar_a2
    yy, xx = np.mgrid[0:FULL, 0:FULL].astype(np.float32)
    # fractional node index of every pixel
    scale = (len(nodes) - 1) / (FULL - 1)
    coords = np.array([yy * scale, xx * scale])
    # nodes are uniform except the last; good enough for a smooth map
    return map_coordinates(rel, coords, order=1, mode="nearest").astype(np.float32)


# ---------------------------------------------------------------- per-pixel detector properties


def rng_for(seed: int, *keys) -> np.random.Generator:
    """An independent random generator for ``seed`` and a tuple of labels.

    Each component of the simulation draws from its own stream, so turning
    one component off (e.g. 1/f noise) leaves every other random draw as it was.
    """
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(str(k).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


@dataclass
class DetectorArrays:
    """Per-pixel truth of one detector, full frame, DMS orientation (float32 unless said).

    Attributes
    ----------
    bias : ndarray
        Bias (DN) present in every read; what the SUPERBIAS reference holds.
    dark_rate : ndarray
        Dark current (DN/s); DARK reference = ``dark_rate * t(group)``.
        Zero on reference pixels.
    gain : ndarray
        Gain (e-/DN).
    readnoise_cds : ndarray
        CDS read noise (DN); one read has ``readnoise_cds / sqrt(2)``.
    saturation : ndarray
        Raw level (DN, bias included) where a pixel saturates.
    dq : ndarray (uint32)
        MASK reference: reference pixels, dead and hot pixels.
    response : ndarray
        Filter-independent part of the flat (pixel response x low-order shape);
        zero for dead pixels.
    """

    detector: str
    bias: np.ndarray
    dark_rate: np.ndarray
    gain: np.ndarray
    readnoise_cds: np.ndarray
    saturation: np.ndarray
    dq: np.ndarray
    response: np.ndarray


def _smooth_field(rng: np.random.Generator, n: int, scale: int, amplitude: float) -> np.ndarray:
    """A smooth random field of rms ~amplitude, features ~``scale`` pixels, shape (n, n)."""
    from scipy.ndimage import zoom

    m = max(2, n // scale + 1)
    coarse = rng.standard_normal((m, m))
    field = zoom(coarse, n / m, order=3)[:n, :n]
    field -= field.mean()
    std = field.std()
    return (field * (amplitude / std if std > 0 else 0.0)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def detector_arrays(detector_name: str, seed: int) -> DetectorArrays:
    """Per-pixel properties of a detector for a seed (full frame; cached for the last two).

    Deterministic: the same (detector, seed) always gives the same arrays.
    """
    det = detector(detector_name)
    n = FULL
    rng = rng_for(seed, "detector", det.name)
    yy, xx = np.mgrid[0:n, 0:n]

    # bias: level + per-amplifier offsets + even/odd columns + column structure + pixel scatter
    bias = np.full((n, n), det.bias_level, np.float32)
    for a in range(4):
        bias[:, a * AMP_COLS:(a + 1) * AMP_COLS] += rng.normal(0, 250)
    bias[:, 1::2] += rng.normal(0, 15)
    bias += rng.normal(0, 12, n).astype(np.float32)[None, :]
    bias += (rng.normal(0, 20, (n, n))).astype(np.float32)
    bias += (40.0 * (yy / n - 0.5)).astype(np.float32)

    # dark current (DN/s): mean level, mild gradient, hot/warm pixels
    dark = np.full((n, n), det.dark_current / det.gain, np.float32)
    dark *= (1.0 + 0.3 * (xx / n)).astype(np.float32)
    nhot = int(2e-4 * n * n)
    hy, hx = rng.integers(NREF, n - NREF, nhot), rng.integers(NREF, n - NREF, nhot)
    hot_rate = 10 ** rng.uniform(-1.5, 1.3, nhot)
    dark[hy, hx] += hot_rate.astype(np.float32)

    # gain, read noise
    gain = (det.gain * (1 + rng.normal(0, 0.015, (n, n)))).astype(np.float32)
    rn = (det.readnoise_cds * rng.lognormal(0.0, 0.08, (n, n))).astype(np.float32)

    # saturation (raw DN including bias), below the ADC limit; whole DN, because saturated
    # reads are digitised to exactly this level and must reach it (jwst flags data >= level)
    sat = np.floor(np.clip(rng.normal(60500, 700, (n, n)), 55000, 65000)).astype(np.float32)

    # flat: smooth low-order shape * pixel response; dead pixels respond 0
    response = (1.0 + _smooth_field(rng, n, 256, 0.02)) * (1 + rng.normal(0, 0.01, (n, n)))
    response = response.astype(np.float32)
    ndead = int(1e-4 * n * n)
    dy, dx = rng.integers(NREF, n - NREF, ndead), rng.integers(NREF, n - NREF, ndead)
    response[dy, dx] = 0.0

    dq = np.zeros((n, n), np.uint32)
    ref = np.zeros((n, n), bool)
    ref[:NREF, :] = ref[-NREF:, :] = ref[:, :NREF] = ref[:, -NREF:] = True
    dq[ref] |= DQ_REFERENCE_PIXEL | DQ_DO_NOT_USE
    dq[dy, dx] |= DQ_DEAD | DQ_DO_NOT_USE
    very_hot = hot_rate > 5.0
    dq[hy[very_hot], hx[very_hot]] |= DQ_HOT | DQ_DO_NOT_USE
    # reference pixels: no light, no dark current, flat 1, never saturate
    dark[ref] = 0.0
    response[ref] = 1.0
    sat[ref] = 65000.0
    return DetectorArrays(det.name, bias, dark, gain, rn, sat, dq, response)


@functools.lru_cache(maxsize=4)
def flat_field(detector_name: str, filter_name: str, seed: int) -> np.ndarray:
    """FLAT reference of a detector and filter (full frame, float32, 1 on average; cached: do not modify).

    The detector response times a mild filter-dependent large-scale tilt.
    """
    arrays = detector_arrays(detector_name, seed)
    rng = rng_for(seed, "flat", detector(detector_name).name, filter_info(filter_name).name)
    tx, ty = rng.normal(0, 0.01, 2)
    ramp = np.linspace(-0.5, 0.5, FULL, dtype=np.float32)
    tilt = 1.0 + tx * ramp[None, :] + ty * ramp[:, None]
    return (arrays.response * tilt).astype(np.float32)
