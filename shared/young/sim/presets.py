"""Presets of simulated sets (what ``young-sim --preset`` means) and the plan of a set's exposures.

A :class:`Preset` fixes readout, detectors, filters, dithers, source
densities and artifact amplitudes; :func:`preset` applies keyword overrides
and validates them; :func:`plan_exposures` turns a preset and a seed into the
exposures to write (pointings from the SIAF, real JWST names).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass

import numpy as np

from young.contract.errors import UsageError
from young.sim import exposures
from young.sim import instrument as inst


@dataclass(frozen=True)
class Program:
    """One program of a multi-program set (:attr:`Preset.programs`).

    Attributes
    ----------
    number : int
        PROGRAM (file names ``jw<number:05d>...``).
    sw_detectors : tuple of str
        Its short-wave detectors (their module's long-wave one is exposed with them).
    pointing_aperture : str
        SIAF aperture put on the target.
    pa_offset : float
        Roll (deg) added to the preset's ``pa_v3``.
    """

    number: int
    sw_detectors: tuple[str, ...]
    pointing_aperture: str
    pa_offset: float = 0.0


@dataclass(frozen=True)
class Preset:
    """Everything that defines a simulated set (apart from the seed).

    Attributes
    ----------
    name : str
    subarray : str
        SUBARRAY of every readout.
    sw_detectors : tuple of str
        Short-wavelength detectors; each module's long-wavelength detector is
        exposed with them.
    filter_pairs : tuple of (str, str)
        (SW filter, LW filter) exposed simultaneously; one activity each.
    dithers : tuple of (float, float)
        Dither offsets of the target in the pointing aperture's ideal frame (arcsec).
    readpatt : str
    ngroups, nints : int
    pointing_aperture : str
        SIAF aperture whose reference point is put on the target (PPS_APER).
    ra, dec, pa_v3 : float
        Target (deg) and V3 position angle (deg).
    star_density, galaxy_density : float
        Unsaturated stars and galaxies per arcsec^2.
    n_saturated : int
        Saturated stars in the field.
    star_mag_range, galaxy_mag_range, saturated_mag_range : (float, float)
        AB magnitudes at 2 um (see :func:`young.sim.scene.make_catalog`).
    min_separation : float
        Minimum star-star separation (arcsec).
    one_over_f_dn : float
        1/f amplitude: rms of an amplifier's row mean in one group read (DN),
        scaled per file by 0.8-1.2; 0 disables 1/f noise.
    amp_offset_dn : float
        rms of per-amplifier per-group offsets (DN), part of the 1/f component.
    one_over_f_common : float
        Fraction of the 1/f variance common to all amplifiers (0..1): the
        noise is one time series read out by four amplifiers in step.
    one_over_f_alpha : float
        Spectral index of the 1/f power spectrum (1 = pink; lower puts more
        power at high frequency, i.e. along the rows).
    wisp_shape : str
        Family of wisp shapes (:data:`young.sim.artifacts.WISP_SHAPE_FAMILIES`):
        ``lobes`` (a lobe with arcs) or ``streaks`` (long narrow bands and a
        faint diffuse halo).
    pointing_error_mas : float
        rms per axis of the injected pointing errors (mas); 0 disables.
    wisps, cosmic_rays : bool
    background_scale : float
        Multiplies the nominal sky level of every filter.
    blob : bool
        Add one large extended source (ICL-like) at the field centre.
    programs : tuple of Program
        When given, the set is several programs observing the same target, each with its own
        detectors, pointing aperture and roll (``sw_detectors`` and ``pointing_aperture`` are then
        those of the first); file names and ``PROGRAM`` headers carry each program's number.
    tree : str
        How ``raw/`` is laid out: ``flat`` (every file in it) or ``mast`` (a MAST download:
        :mod:`young.sim.mast`).
    """

    name: str
    subarray: str
    sw_detectors: tuple[str, ...]
    filter_pairs: tuple[tuple[str, str], ...]
    dithers: tuple[tuple[float, float], ...]
    readpatt: str = "RAPID"
    ngroups: int = 5
    nints: int = 1
    pointing_aperture: str = "NRCA5_FULL"
    ra: float = 53.1625
    dec: float = -27.7814
    pa_v3: float = 20.0
    star_density: float = 0.03
    galaxy_density: float = 0.02
    n_saturated: int = 3
    star_mag_range: tuple[float, float] = (18.0, 24.5)
    galaxy_mag_range: tuple[float, float] = (21.0, 27.0)
    saturated_mag_range: tuple[float, float] = (14.5, 16.0)
    min_separation: float = 3.0
    one_over_f_dn: float = 2.0
    amp_offset_dn: float = 3.0
    one_over_f_common: float = 0.5
    one_over_f_alpha: float = 1.0
    wisp_shape: str = "lobes"
    pointing_error_mas: float = 30.0
    wisps: bool = True
    cosmic_rays: bool = True
    background_scale: float = 1.0
    blob: bool = False
    programs: tuple["Program", ...] = ()
    tree: str = "flat"

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(f for pair in self.filter_pairs for f in pair)


PRESETS: dict[str, Preset] = {
    # Two 2048 x 256 four-output strips (SUBGRISM256) of NRCA3 (wisps) and NRCALONG.
    "tiny": Preset(
        name="tiny", subarray="SUBGRISM256", sw_detectors=("NRCA3",),
        filter_pairs=(("F150W", "F277W"), ("F200W", "F444W")),
        dithers=((0.0, 0.0), (1.43, 0.52), (-1.21, 1.07)),
        readpatt="RAPID", ngroups=5, nints=1, pointing_aperture="NRCA3_GRISMTS256",
        pa_v3=0.0, star_density=0.095, galaxy_density=0.008, n_saturated=3,
        star_mag_range=(16.5, 20.3), galaxy_mag_range=(19.5, 24.0),
        saturated_mag_range=(13.0, 14.0), min_separation=2.0,
        one_over_f_dn=1.5, amp_offset_dn=3.0),
    # A small full-frame field: NRCA3 + NRCALONG, 2 + 2 filters, 3 dithers (12 files).
    "demo": Preset(
        name="demo", subarray="FULL", sw_detectors=("NRCA3",),
        filter_pairs=(("F150W", "F277W"), ("F200W", "F444W")),
        dithers=((0.0, 0.0), (5.31, 2.87), (-3.94, 5.63)),
        readpatt="RAPID", ngroups=6, nints=1, pointing_aperture="NRCA3_FULL",
        star_density=0.03, galaxy_density=0.02, star_mag_range=(18.0, 24.0)),
    # A crowded field on module B (NRCB4 with wisps + NRCBLONG): ~0.05 stars per arcsec^2 as in a
    # cluster or low-latitude field (~200 stars on the SW detector, ~800 on the LW one), F150W/F444W,
    # 3 dithers (6 full-frame files); 1/f half common to the amplifiers.
    "crowded": Preset(
        name="crowded", subarray="FULL", sw_detectors=("NRCB4",),
        filter_pairs=(("F150W", "F444W"),),
        dithers=((0.0, 0.0), (5.31, 2.87), (-3.94, 5.63)),
        readpatt="RAPID", ngroups=6, nints=1, pointing_aperture="NRCB4_FULL",
        star_density=0.05, galaxy_density=0.02, n_saturated=6, star_mag_range=(17.0, 25.0), min_separation=1.0,
        galaxy_mag_range=(20.0, 26.5), one_over_f_dn=2.0, one_over_f_common=0.5),
    # A MAST download: two programs on one target (9001 on module A: NRCA3 + NRCALONG; 9002 on module
    # B: NRCB4 + NRCBLONG, rolled 25 deg), F150W/F444W, 2 dithers each (8 SUB640 imaging files), nested
    # one folder per exposure, with non-imaging NIRCam exposures, a MIRI parallel and one exposure
    # downloaded twice (young.sim.mast).
    "mast": Preset(
        name="mast", subarray="SUB640", sw_detectors=("NRCA3",),
        filter_pairs=(("F150W", "F444W"),),
        dithers=((0.0, 0.0), (1.43, 0.52)),
        readpatt="RAPID", ngroups=5, nints=1, pointing_aperture="NRCA3_SUB640",
        pa_v3=0.0, star_density=0.095, galaxy_density=0.008, n_saturated=2,
        star_mag_range=(16.5, 20.3), galaxy_mag_range=(19.5, 24.0),
        saturated_mag_range=(13.0, 14.0), min_separation=2.0,
        one_over_f_dn=1.5, amp_offset_dn=3.0,
        programs=(Program(9001, ("NRCA3",), "NRCA3_SUB640"), Program(9002, ("NRCB4",), "NRCB4_SUB640", 25.0)),
        tree="mast"),
    # A field wider than one pointing for the tiled stage 3: a strip of 8 SUB640 pointings 30" apart
    # along the detector rows (NRCA3 + NRCALONG, F150W/F444W; 16 files). bench/stage3 --tiles makes
    # it longer (``dithers=strip_pointings(48)``).
    "strip": Preset(
        name="strip", subarray="SUB640", sw_detectors=("NRCA3",),
        filter_pairs=(("F150W", "F444W"),),
        dithers=tuple((30.0 * k, 0.37 * (k % 2)) for k in range(8)),
        readpatt="RAPID", ngroups=4, nints=1, pointing_aperture="NRCA3_SUB640",
        pa_v3=0.0, star_density=0.03, galaxy_density=0.01, n_saturated=2,
        star_mag_range=(17.0, 22.0), galaxy_mag_range=(20.0, 24.0),
        saturated_mag_range=(13.0, 14.0), min_separation=2.0,
        one_over_f_dn=1.5, amp_offset_dn=3.0),
    # Both modules, 4 filters, 4 dithers (80 files).
    "full": Preset(
        name="full", subarray="FULL",
        sw_detectors=("NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCB1", "NRCB2", "NRCB3", "NRCB4"),
        filter_pairs=(("F115W", "F277W"), ("F200W", "F444W")),
        dithers=((0.0, 0.0), (5.31, 2.87), (-3.94, 5.63), (2.46, -4.18)),
        readpatt="RAPID", ngroups=6, nints=1, pointing_aperture="NRCALL_FULL",
        star_density=0.02, galaxy_density=0.02, n_saturated=6, star_mag_range=(18.0, 24.0)),
}

#: Nominal sky (zodiacal + ISM) surface brightness per filter (MJy/sr).
SKY_MJYSR = {
    "F070W": 0.10, "F090W": 0.12, "F115W": 0.13, "F140M": 0.14, "F150W": 0.14, "F182M": 0.13,
    "F200W": 0.12, "F210M": 0.12, "F250M": 0.10, "F277W": 0.11, "F300M": 0.11, "F335M": 0.14,
    "F356W": 0.16, "F360M": 0.17, "F410M": 0.25, "F444W": 0.33, "F460M": 0.45, "F480M": 0.55,
}
WISP_PEAK_SKY_FRACTION = 0.5
"""Peak of a wisp template of unit strength (B4/F150W), as a fraction of the nominal sky."""
CATALOG_MARGIN_ARCSEC = 4.0

SET_ITEMS = ("raw", "crds_cache", "wisp_templates", "truth", "refcat.ecsv", "young.yaml")
#: the Gaia-like absolute reference catalog young-sim writes: this many brightest unsaturated stars,
#: positions with this much Gaussian error per axis (Gaia DR3 at G ~ 19-20, propagated to the epoch)
REFCAT_STARS = 120
REFCAT_ERROR_MAS = 1.0
"""What a simulated set consists of (``--force`` removes only these)."""


def strip_pointings(n: int, step: float = 30.0) -> tuple[tuple[float, float], ...]:
    """Offsets (arcsec) of ``n`` pointings in a strip ``step`` apart (the ``strip`` preset's dithers)."""
    return tuple((step * k, 0.37 * (k % 2)) for k in range(n))


def preset(name: str, **overrides) -> Preset:
    """The preset ``name`` with fields replaced by ``overrides`` (None values are ignored).

    Raises
    ------
    UsageError
        Unknown preset or field, or an invalid value.
    """
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})", "--preset")
    fields = {f.name for f in dataclasses.fields(Preset)}
    clean = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(clean) - fields)
    if bad:
        raise UsageError(f"unknown preset field(s): {', '.join(bad)}")
    if "readpatt" in clean:
        clean["readpatt"] = str(clean["readpatt"]).upper()
    p = dataclasses.replace(PRESETS[name], **clean)
    _validate(p)
    return p


def _validate(p: Preset) -> None:
    try:
        pat = inst.read_pattern(p.readpatt)
    except ValueError as exc:
        raise UsageError(str(exc), "--readpatt") from None
    if not isinstance(p.ngroups, int) or not 2 <= p.ngroups <= pat.max_ngroups:
        raise UsageError(f"must be an integer from 2 to {pat.max_ngroups} for {pat.name}, got {p.ngroups}",
                         "--ngroups")
    if not isinstance(p.nints, int) or not 1 <= p.nints <= 100:
        raise UsageError(f"must be an integer from 1 to 100, got {p.nints}", "--nints")
    try:
        for sw, lw in p.filter_pairs:
            inst.check_filter(p.sw_detectors[0], sw)
            inst.check_filter(inst.long_partner(p.sw_detectors[0]), lw)
        for d in p.sw_detectors:
            inst.subarray(d, p.subarray)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if p.one_over_f_dn < 0 or p.amp_offset_dn < 0 or p.pointing_error_mas < 0:
        raise UsageError("amplitudes and pointing errors must be >= 0")
    if not 0.0 <= p.one_over_f_common <= 1.0:
        raise UsageError(f"one_over_f_common must lie in [0, 1], got {p.one_over_f_common}")
    if not 0.0 < p.one_over_f_alpha <= 2.0:
        raise UsageError(f"one_over_f_alpha must lie in (0, 2], got {p.one_over_f_alpha}")
    from young.sim.artifacts import WISP_SHAPE_FAMILIES

    if p.tree not in ("flat", "mast"):
        raise UsageError(f"tree must be 'flat' or 'mast', not {p.tree!r}")
    for prog in p.programs:
        try:
            for d in prog.sw_detectors:
                inst.subarray(d, p.subarray)
            inst.siaf_aperture(prog.pointing_aperture)
        except ValueError as exc:
            raise UsageError(f"program {prog.number}: {exc}") from None
    if p.wisp_shape not in WISP_SHAPE_FAMILIES:
        raise UsageError(f"wisp_shape must be one of {', '.join(WISP_SHAPE_FAMILIES)}, not {p.wisp_shape!r}")


# ---------------------------------------------------------------- plan


@dataclass
class Plan:
    """The exposures of a set and how they were drawn."""

    preset: Preset
    seed: int
    specs: list[exposures.ExposureSpec]


def plan_exposures(p: Preset, seed: int) -> Plan:
    """Every detector file of the set, in file-name order (exposure by exposure).

    A multi-program preset is planned program by program (one after the other in time), each with
    its own detectors, pointing aperture and roll, and ``program`` set on its specs.
    """
    if p.programs:
        specs: list[exposures.ExposureSpec] = []
        for n, prog in enumerate(p.programs):
            sub = dataclasses.replace(p, programs=(), sw_detectors=prog.sw_detectors,
                                      pointing_aperture=prog.pointing_aperture, pa_v3=p.pa_v3 + prog.pa_offset)
            part = plan_exposures(sub, seed + 7919 * n).specs
            shift = (_dt.timedelta(days=30 * n))
            specs += [dataclasses.replace(s, program=prog.number, start=s.start + shift) for s in part]
        return Plan(p, seed, specs)
    pat = inst.read_pattern(p.readpatt)
    aperture = inst.siaf_aperture(p.pointing_aperture)
    specs = []
    t = _dt.datetime(2023, 6, 15, 3, 0, 0)
    modules = sorted({inst.detector(d).module for d in p.sw_detectors})
    for a, (sw, lw) in enumerate(p.filter_pairs, start=1):
        for k, off in enumerate(p.dithers, start=1):
            att = exposures.dithered_attitude(p.ra, p.dec, p.pa_v3, aperture.AperName, off)
            rng = inst.rng_for(seed, "pointing-error", a, k)
            err = rng.normal(0.0, p.pointing_error_mas / 1000.0, 2) if p.pointing_error_mas else np.zeros(2)
            lim = 3 * p.pointing_error_mas / 1000
            err = tuple(float(v) for v in np.clip(err, -lim, lim))
            dets = list(p.sw_detectors) + [{"A": "NRCALONG", "B": "NRCBLONG"}[m] for m in modules]
            duration = 0.0
            for det in sorted(set(dets), key=lambda n: list(inst.DETECTORS).index(n)):
                filt = lw if inst.detector(det).is_long else sw
                spec = exposures.ExposureSpec(
                    detector=det, filter=filt, subarray=p.subarray, readpatt=pat.name,
                    ngroups=p.ngroups, nints=p.nints, attitude=att, pointing_error=err,
                    observation=1, visit=1, visit_group=2, sequence=1, activity=a, exposure=k,
                    dither=k, ndither=len(p.dithers), dither_offset=tuple(off), start=t)
                specs.append(spec)
                duration = spec.times()["duration"]
            t = t + _dt.timedelta(seconds=duration + 90.0)
    return Plan(p, seed, specs)
