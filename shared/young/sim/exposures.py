"""Simulated NIRCam exposures: real file names, the full level-1b metadata, pointing, WCS.

An :class:`ExposureSpec` describes one detector file of one exposure.  The
short- and long-wavelength detectors of a module are exposed simultaneously:
they share the exposure number (only the detector part of the file name
differs) and the telescope attitude.  Pointing follows the flight SIAF: a
:class:`Attitude` places the pointing reference aperture on the sky; every
detector's ``RA_REF``/``DEC_REF``/``ROLL_REF`` is where its own aperture's
reference point (``V2_REF``/``V3_REF``) lands under that attitude.

Each exposure has a known pointing error: the file header carries the nominal
attitude, the sources are placed with the *true* one (nominal shifted on the
sky by ``pointing_error`` arcsec), so alignment (tweakreg) has something to
recover.  Source positions on the pixels come from the real pipeline WCS
(jwst's ``assign_wcs`` with the synthetic CRDS references) for the true
pointing, inverted exactly (:func:`sky_to_pixel`).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from young.sim import instrument as inst

PROGRAM = 9001
"""Synthetic program number (file names ``jw09001...``)."""
MJD_UNIX_EPOCH = 40587.0


# ---------------------------------------------------------------- attitude


@dataclass(frozen=True)
class Attitude:
    """Telescope attitude: the pointing aperture's reference point on the sky.

    Attributes
    ----------
    ra, dec : float
        Sky position (deg) of (``v2``, ``v3``).
    pa : float
        Position angle of V3 at (``v2``, ``v3``), N through E (deg).
    v2, v3 : float
        Telescope coordinates (arcsec) that point at (``ra``, ``dec``).
    aperture : str
        Name of the pointing (PPS) aperture.
    """

    ra: float
    dec: float
    pa: float
    v2: float
    v3: float
    aperture: str = "NRCALL_FULL"

    def matrix(self) -> np.ndarray:
        """The 3x3 attitude matrix (pysiaf convention, V2/V3 -> RA/Dec)."""
        rot = inst.import_pysiaf().utils.rotations
        return np.asarray(rot.attitude(self.v2, self.v3, self.ra, self.dec, self.pa))

    def sky(self, v2: float, v3: float) -> tuple[float, float]:
        """(RA, Dec) in deg of telescope position (``v2``, ``v3``) arcsec."""
        rot = inst.import_pysiaf().utils.rotations
        ra, dec = rot.pointing(self.matrix(), v2, v3)
        return float(ra) % 360.0, float(dec)

    def roll(self, v2: float, v3: float) -> float:
        """Position angle of V3 at telescope position (``v2``, ``v3``) (deg, N through E)."""
        rot = inst.import_pysiaf().utils.rotations
        return float(rot.posangle(self.matrix(), v2, v3)) % 360.0

    def shifted(self, dx_arcsec: float, dy_arcsec: float) -> "Attitude":
        """The attitude moved on the sky by (dx, dy) arcsec (dx along +RA, i.e. east; dy north)."""
        dec = self.dec + dy_arcsec / 3600.0
        ra = self.ra + dx_arcsec / 3600.0 / math.cos(math.radians(self.dec))
        return replace(self, ra=ra % 360.0, dec=dec)


def dithered_attitude(ra: float, dec: float, pa: float, aperture: str,
                      offset_idl: tuple[float, float]) -> Attitude:
    """Attitude that puts the target (``ra``, ``dec``) at ideal position ``offset_idl`` (arcsec) of ``aperture``.

    This is how a dither moves the telescope: offset (0, 0) puts the target
    on the aperture's reference point.  ``pa`` is the V3 position angle at the
    target.
    """
    ap = inst.siaf_aperture(aperture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v2, v3 = ap.idl_to_tel(float(offset_idl[0]), float(offset_idl[1]))
    return Attitude(ra=ra, dec=dec, pa=pa, v2=float(v2), v3=float(v3), aperture=aperture)


# ---------------------------------------------------------------- one detector file


@dataclass(frozen=True)
class ExposureSpec:
    """One detector file of one exposure.

    Attributes
    ----------
    detector, filter : str
        DETECTOR and FILTER keywords (pupil is CLEAR).
    subarray : str
        SUBARRAY keyword.
    readpatt : str
        READPATT keyword.
    ngroups, nints : int
    attitude : Attitude
        Nominal attitude (what the header says).
    pointing_error : (float, float)
        True minus nominal pointing on the sky, (east, north) arcsec.
    observation, visit, visit_group, sequence, activity, exposure : int
        The identifiers in the file name ``jw<program><obs><visit>_<group><seq><act>_<exposure>_<detector>``.
    dither : int
        Position (1-based) in the dither pattern of ``ndither`` points.
    dither_offset : (float, float)
        Ideal-frame offset (arcsec) of this dither position.
    start : datetime
        Exposure start (UTC).
    program : int
    target : str
    """

    detector: str
    filter: str
    subarray: str
    readpatt: str
    ngroups: int
    nints: int
    attitude: Attitude
    pointing_error: tuple[float, float] = (0.0, 0.0)
    observation: int = 1
    visit: int = 1
    visit_group: int = 2
    sequence: int = 1
    activity: int = 1
    exposure: int = 1
    dither: int = 1
    ndither: int = 1
    dither_offset: tuple[float, float] = (0.0, 0.0)
    start: _dt.datetime = _dt.datetime(2023, 6, 15, 3, 0, 0)
    program: int = PROGRAM
    target: str = "YOUNG-SIM-FIELD"

    # -- identifiers

    @property
    def det(self) -> inst.Detector:
        return inst.detector(self.detector)

    @property
    def pupil(self) -> str:
        return inst.filter_info(self.filter).pupil

    @property
    def sub(self) -> inst.Subarray:
        return inst.subarray(self.detector, self.subarray, self.filter)

    @property
    def pattern(self) -> inst.ReadPattern:
        return inst.read_pattern(self.readpatt)

    @property
    def exposure_id(self) -> str:
        """``jw<program><obs><visit>_<group><seq><act>_<exposure>`` (no detector)."""
        return (f"jw{self.program:05d}{self.observation:03d}{self.visit:03d}_"
                f"{self.visit_group:02d}{self.sequence:1d}{self.activity:02d}_{self.exposure:05d}")

    @property
    def basename(self) -> str:
        """File name stem without the product suffix, e.g. ``jw09001001001_02101_00001_nrca3``."""
        return f"{self.exposure_id}_{self.detector.lower()}"

    @property
    def filename(self) -> str:
        return f"{self.basename}_uncal.fits"

    # -- timing

    def times(self) -> dict:
        """Timing keywords (s) of the exposure (see :func:`young.sim.instrument.exposure_times`)."""
        return inst.exposure_times(self.pattern, self.ngroups, self.nints, self.sub.frame_time)

    def group_times(self) -> np.ndarray:
        """Mean time after reset (s) of each group's frames, shape ``(ngroups,)``."""
        return inst.group_frame_times(self.pattern, self.ngroups, self.sub.frame_time)

    # -- pointing

    def true_attitude(self) -> Attitude:
        """The attitude the sources are placed with (nominal + pointing error)."""
        return self.attitude.shifted(*self.pointing_error)

    def wcsinfo(self, true: bool = False) -> dict:
        """WCS keywords of this detector file (``meta.wcsinfo``), nominal or true."""
        att = self.true_attitude() if true else self.attitude
        ap = inst.siaf_aperture(self.sub.aperture)
        v2, v3 = float(ap.V2Ref), float(ap.V3Ref)
        ra, dec = att.sky(v2, v3)
        return {
            "ra_ref": ra, "dec_ref": dec, "roll_ref": att.roll(v2, v3),
            "v2_ref": v2, "v3_ref": v3,
            "v3yangle": float(ap.V3IdlYAngle), "vparity": int(ap.VIdlParity),
        }


def _mjd(t: _dt.datetime) -> float:
    return t.replace(tzinfo=_dt.timezone.utc).timestamp() / 86400.0 + MJD_UNIX_EPOCH


def set_meta(model, spec: ExposureSpec, true_pointing: bool = False) -> None:
    """Fill a datamodel's meta with everything the pipeline needs for ``spec``.

    Parameters
    ----------
    model : stdatamodels DataModel
        A ``Level1bModel``/``RampModel``/``ImageModel``.
    spec : ExposureSpec
    true_pointing : bool
        Write the true pointing instead of the nominal one (for the WCS that
        places the sources; never for a file handed to the pipeline).
    """
    det, sub, pat, filt = spec.det, spec.sub, spec.pattern, inst.filter_info(spec.filter)
    tm = spec.times()
    m = model.meta
    m.telescope = "JWST"
    m.origin = "YOUNG"
    m.filename = spec.filename
    m.data_processing_software_version = "young.sim"

    m.instrument.name = "NIRCAM"
    m.instrument.detector = det.name
    m.instrument.module = det.module
    m.instrument.channel = det.channel
    m.instrument.filter = filt.name
    m.instrument.pupil = filt.pupil

    m.exposure.type = "NRC_IMAGE"
    m.exposure.readpatt = pat.name
    m.exposure.nints = spec.nints
    m.exposure.ngroups = spec.ngroups
    m.exposure.nframes = pat.nframes
    m.exposure.groupgap = pat.groupgap
    m.exposure.frame_divisor = pat.nframes
    m.exposure.nsamples = 1
    m.exposure.sample_time = 10.0
    m.exposure.noutputs = sub.noutputs
    m.exposure.drop_frames1 = 0
    m.exposure.drop_frames3 = 0
    m.exposure.nresets_at_start = 1
    m.exposure.nresets_between_ints = 1
    m.exposure.zero_frame = False
    m.exposure.data_problem = False
    m.exposure.frame_time = tm["frame_time"]
    m.exposure.group_time = tm["group_time"]
    m.exposure.integration_time = tm["integration_time"]
    m.exposure.exposure_time = tm["exposure_time"]
    m.exposure.effective_exposure_time = tm["effective_exposure_time"]
    m.exposure.measurement_time = tm["measurement_time"]
    m.exposure.duration = tm["duration"]
    m.exposure.elapsed_exposure_time = tm["duration"]
    start = spec.start
    end = start + _dt.timedelta(seconds=tm["duration"])
    mid = start + _dt.timedelta(seconds=tm["duration"] / 2)
    m.exposure.start_time = _mjd(start)
    m.exposure.mid_time = _mjd(mid)
    m.exposure.end_time = _mjd(end)
    m.exposure.start_time_mjd = _mjd(start)
    m.exposure.mid_time_mjd = _mjd(mid)
    m.exposure.end_time_mjd = _mjd(end)

    m.subarray.name = sub.name
    m.subarray.xstart = sub.xstart
    m.subarray.ystart = sub.ystart
    m.subarray.xsize = sub.xsize
    m.subarray.ysize = sub.ysize
    m.subarray.fastaxis = det.fastaxis
    m.subarray.slowaxis = det.slowaxis

    m.observation.date = start.strftime("%Y-%m-%d")
    m.observation.time = start.strftime("%H:%M:%S.%f")[:-3]
    m.observation.date_beg = start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    m.observation.date_end = end.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    m.observation.program_number = f"{spec.program:05d}"
    m.observation.observation_number = f"{spec.observation:03d}"
    m.observation.visit_number = f"{spec.visit:03d}"
    m.observation.visit_group = f"{spec.visit_group:02d}"
    m.observation.sequence_id = f"{spec.sequence:1d}"
    m.observation.activity_id = f"{spec.activity:02d}"
    m.observation.exposure_number = f"{spec.exposure:05d}"
    m.observation.visit_id = f"{spec.program:05d}{spec.observation:03d}{spec.visit:03d}"
    m.observation.obs_id = (f"V{spec.program:05d}{spec.observation:03d}{spec.visit:03d}P0000000"
                            f"{spec.visit_group:02d}{spec.sequence:1d}{spec.activity:02d}")
    m.observation.exposure_request = spec.exposure

    m.program.title = "YOUNG simulated NIRCam field"
    m.program.pi_name = "YOUNG, Sim"
    m.program.category = "CAL"
    m.visit.type = "PRIME_TARGETED_FIXED"
    m.visit.tsovisit = False
    m.visit.engineering_quality = "OK"
    m.visit.pointing_engdb_quality = "CALCULATED"

    att = spec.attitude
    m.target.proposer_name = spec.target
    m.target.catalog_name = spec.target
    m.target.ra = att.ra
    m.target.dec = att.dec
    m.target.type = "FIXED"

    m.dither.primary_type = "NONE" if spec.ndither == 1 else "FULL"
    m.dither.position_number = spec.dither
    m.dither.total_points = spec.ndither
    m.dither.x_offset = float(spec.dither_offset[0])
    m.dither.y_offset = float(spec.dither_offset[1])

    m.aperture.name = sub.aperture
    m.aperture.pps_name = att.aperture

    use = spec.true_attitude() if true_pointing else att
    v1 = use.sky(0.0, 0.0)
    m.pointing.ra_v1 = v1[0]
    m.pointing.dec_v1 = v1[1]
    m.pointing.pa_v3 = use.roll(0.0, 0.0)
    wi = spec.wcsinfo(true=true_pointing)
    m.wcsinfo.wcsaxes = 2
    for key, value in wi.items():
        setattr(m.wcsinfo, key, value)
    m.wcsinfo.crpix1 = float(inst.siaf_aperture(sub.aperture).XSciRef)
    m.wcsinfo.crpix2 = float(inst.siaf_aperture(sub.aperture).YSciRef)
    m.wcsinfo.crval1 = wi["ra_ref"]
    m.wcsinfo.crval2 = wi["dec_ref"]
    m.wcsinfo.ctype1 = "RA---TAN"
    m.wcsinfo.ctype2 = "DEC--TAN"
    m.wcsinfo.cunit1 = "deg"
    m.wcsinfo.cunit2 = "deg"
    m.wcsinfo.radesys = "ICRS"
    m.velocity_aberration.scale_factor = 1.0
    m.velocity_aberration.va_ra_ref = wi["ra_ref"]
    m.velocity_aberration.va_dec_ref = wi["dec_ref"]


# ---------------------------------------------------------------- WCS


def pipeline_wcs(spec: ExposureSpec, distortion: str | os.PathLike, filteroffset: str | os.PathLike | None,
                 true_pointing: bool = True):
    """The gWCS jwst's assign_wcs builds for this detector file.

    Uses ``jwst.assign_wcs.assign_wcs.load_wcs`` -- the function
    ``AssignWcsStep`` runs -- with the given distortion and filteroffset
    references (the synthetic CRDS files), on a model carrying the true (or
    nominal) pointing.  No CRDS look-up happens here.

    Returns
    -------
    gwcs.WCS
        detector (0-based subarray pixels) -> world (deg).
    """
    from stdatamodels.jwst.datamodels import ImageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from jwst.assign_wcs.assign_wcs import load_wcs

        model = ImageModel(np.zeros(spec.sub.shape, np.float32), validate_on_assignment=False)
        set_meta(model, spec, true_pointing=true_pointing)
        refs = {"distortion": str(distortion), "filteroffset": str(filteroffset) if filteroffset else "N/A"}
        model = load_wcs(model, refs)
    wcs = model.meta.wcs
    model.close()
    return wcs


def sky_to_pixel(wcs, ra, dec, iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y), 0-based, of sky positions, the exact inverse of ``wcs``'s forward transform.

    Starts from the WCS's analytic inverse and refines with Newton steps on
    the forward transform (numerical Jacobian), so the result agrees with
    what the pipeline's forward WCS says to well below a milliarcsecond.
    Points off the detector are returned too (no bounding box).
    """
    ra = np.atleast_1d(np.asarray(ra, float))
    dec = np.atleast_1d(np.asarray(dec, float))
    if ra.size == 0:
        return ra.copy(), dec.copy()
    x, y = wcs.backward_transform(ra, dec)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fwd = wcs.forward_transform
    cosd = np.cos(np.radians(dec))
    for _ in range(iterations):
        r0, d0 = fwd(x, y)
        r1, d1 = fwd(x + 1.0, y)
        r2, d2 = fwd(x, y + 1.0)
        # residual in a local tangent frame (deg)
        wrap = lambda a: (a + 180.0) % 360.0 - 180.0  # noqa: E731
        ex, ey = wrap(ra - r0) * cosd, dec - d0
        a, b = wrap(r1 - r0) * cosd, wrap(r2 - r0) * cosd
        c, d = d1 - d0, d2 - d0
        det = a * d - b * c
        ok = np.isfinite(det) & (det != 0)
        dx = np.where(ok, (d * ex - b * ey) / np.where(ok, det, 1.0), 0.0)
        dy = np.where(ok, (-c * ex + a * ey) / np.where(ok, det, 1.0), 0.0)
        x = x + dx
        y = y + dy
    return x, y


# ---------------------------------------------------------------- writing


def write_uncal(spec: ExposureSpec, data: np.ndarray, path: str | os.PathLike,
                extra_history: list[str] | None = None) -> Path:
    """Write the level-1b ``_uncal.fits`` of ``spec`` with ramp ``data`` (uint16 [nints, ngroups, ny, nx]).

    Written to a hidden temporary name beside ``path`` and moved into place.
    """
    from stdatamodels.jwst.datamodels import Level1bModel

    from young.contract.atomic import atomic_path

    data = np.asarray(data)
    expect = (spec.nints, spec.ngroups) + spec.sub.shape
    if data.shape != expect:
        raise ValueError(f"ramp shape {data.shape} != {expect} for {spec.filename}")
    if data.dtype != np.uint16:
        raise ValueError(f"ramp dtype must be uint16, got {data.dtype}")
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Level1bModel(data=data, validate_on_assignment=False)  # validated when saved
        set_meta(model, spec)
        model.meta.date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        hist = ["Simulated by young.sim (YOUNG NIRCam toolchain); truth in the set's truth/ folder."]
        hist += list(extra_history or [])
        for line in hist:
            if hasattr(model, "add_history_entry"):
                model.add_history_entry(line)
            else:  # pragma: no cover - older stdatamodels
                model.history.append(line)
        with atomic_path(path) as tmp:
            model.save(tmp)
        model.close()
    return path


def gnomonic(ra0, dec0, ra, dec):
    """Tangent-plane offsets (arcsec; xi east, eta north) of (ra, dec) about (ra0, dec0)."""
    r0, d0 = math.radians(ra0), math.radians(dec0)
    r, d = np.radians(ra), np.radians(dec)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(r - r0)
    xi = np.cos(d) * np.sin(r - r0) / cosc
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(r - r0)) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def inv_gnomonic(ra0, dec0, xi_arcsec, eta_arcsec):
    """(ra, dec) in degrees of tangent-plane offsets (arcsec) about (ra0, dec0): the inverse of :func:`gnomonic`."""
    xi, eta = np.radians(np.asarray(xi_arcsec) / 3600.0), np.radians(np.asarray(eta_arcsec) / 3600.0)
    d0 = math.radians(dec0)
    den = math.cos(d0) - eta * math.sin(d0)
    ra = math.radians(ra0) + np.arctan2(xi, den)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def footprint(spec: ExposureSpec, true: bool = False, npts: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (deg) of points along the edge of a readout (SIAF distortion + attitude)."""
    sub = spec.sub
    xs = np.linspace(0, sub.xsize - 1, npts) + sub.xstart - 1
    ys = np.linspace(0, sub.ysize - 1, npts) + sub.ystart - 1
    ex = np.concatenate([xs, np.full(npts, xs[-1]), xs[::-1], np.full(npts, xs[0])])
    ey = np.concatenate([np.full(npts, ys[0]), ys, np.full(npts, ys[-1]), ys[::-1]])
    v2, v3 = inst.distortion_model(spec.detector)(ex, ey)
    att = spec.true_attitude() if true else spec.attitude
    rot = inst.import_pysiaf().utils.rotations
    ra, dec = rot.pointing(att.matrix(), v2, v3)
    return np.asarray(ra) % 360.0, np.asarray(dec)
