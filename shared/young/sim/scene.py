"""Synthetic sky scenes for the simulator: NIRCam PSFs, source catalogs, rendering.

Pure numpy: no file I/O, randomness only through an explicit
:class:`numpy.random.Generator`.

PSF model
---------
A radially symmetric three-component model per filter, in arcsec, built from
the diffraction scale ``lambda/D`` (D = 6.5 m) at the filter's pivot wavelength:

* **core**: Moffat, beta = 4 (near-Gaussian Airy core); its width is solved so
  that the FWHM of the *total* profile equals the JDox value in :data:`FILTERS`;
* **diffraction wing**: Moffat, beta = 1.5, alpha = lambda/D.  Its r**-3 tail
  and the fractions below reproduce the Airy encircled energy (16 % outside the
  first dark ring, ~2.5 % outside 10 lambda/D);
* **wavefront-error halo**: Moffat, beta = 2, alpha = 6 lambda/D, carrying the
  light lost from the core, ``1 - S`` with Strehl ``S = exp(-(2 pi 70 nm / lambda)**2)``
  (S = 0.68 at F070W, 0.95 at F200W, 0.99 at F444W).

The core holds ``0.75 S`` and the wing ``0.25 S`` of the light.  The profile is
truncated at :data:`PSF_RADIUS_ARCSEC` (2.0 arcsec) and normalised to unit flux
inside it, so a rendered star puts exactly its catalog flux inside that radius;
:func:`encircled_energy` is the analytic fraction inside a smaller radius.
No hexagonal structure or diffraction spikes are modelled.

Stars are rendered from a pixel-integrated *effective* PSF, tabulated once per
(filter, pixel scale) on a grid oversampled so that the FWHM spans at least 8
samples, and interpolated bilinearly at each star's sub-pixel phase.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from astropy.table import Table
from scipy import ndimage, optimize, signal, special

__all__ = [
    "FILTERS",
    "PSF_RADIUS_ARCSEC",
    "TELESCOPE_DIAMETER_M",
    "canonical_filter",
    "channel",
    "pivot_um",
    "psf_fwhm_arcsec",
    "psf_profile",
    "encircled_energy",
    "ee_radius_arcsec",
    "psf_stamp",
    "sersic_bn",
    "make_catalog",
    "render",
]

TELESCOPE_DIAMETER_M = 6.5
#: Radius (arcsec) inside which every PSF is normalised to unit flux; zero beyond.
PSF_RADIUS_ARCSEC = 2.0
_WFE_UM = 0.070
_BETA_CORE, _BETA_WING, _BETA_HALO = 4.0, 1.5, 2.0
_WING_SHARE = 0.25
_HALO_ALPHA_LD = 6.0

#: NIRCam filters: pivot wavelength (um), bandwidth (um), PSF FWHM (arcsec, JDox).
FILTERS: dict[str, tuple[float, float, float]] = {
    "F070W": (0.704, 0.128, 0.023),
    "F090W": (0.901, 0.194, 0.030),
    "F115W": (1.154, 0.225, 0.037),
    "F140M": (1.404, 0.142, 0.046),
    "F150W": (1.501, 0.318, 0.049),
    "F150W2": (1.659, 1.176, 0.045),
    "F162M": (1.626, 0.168, 0.053),
    "F164N": (1.644, 0.020, 0.054),
    "F182M": (1.845, 0.238, 0.060),
    "F187N": (1.874, 0.024, 0.061),
    "F200W": (1.990, 0.461, 0.064),
    "F210M": (2.093, 0.205, 0.068),
    "F212N": (2.120, 0.027, 0.069),
    "F250M": (2.503, 0.181, 0.082),
    "F277W": (2.786, 0.672, 0.088),
    "F300M": (2.996, 0.318, 0.097),
    "F322W2": (3.247, 1.339, 0.096),
    "F323N": (3.237, 0.038, 0.106),
    "F335M": (3.365, 0.347, 0.109),
    "F356W": (3.563, 0.787, 0.114),
    "F360M": (3.621, 0.372, 0.118),
    "F405N": (4.055, 0.046, 0.132),
    "F410M": (4.092, 0.436, 0.133),
    "F430M": (4.280, 0.228, 0.139),
    "F444W": (4.421, 1.024, 0.140),
    "F460M": (4.624, 0.228, 0.151),
    "F466N": (4.654, 0.054, 0.152),
    "F470N": (4.707, 0.051, 0.154),
    "F480M": (4.834, 0.303, 0.157),
}

_REF_UM = 2.0          # wavelength at which catalog magnitudes are drawn
_AB_ZP_NJY = 31.4      # m_AB = 31.4 - 2.5 log10(f / nJy)


# --------------------------------------------------------------------------- filters
def canonical_filter(filt: str) -> str:
    """Canonical NIRCam filter name.

    Parameters
    ----------
    filt : str
        ``"F200W"``, ``"f200w"``, or a FILTER/PUPIL pair such as
        ``"F444W+F405N"``, ``"F150W2/F162M"`` or ``"F200W CLEAR"``; for a pair the
        pupil-wheel (medium/narrow) filter is the one that defines the band.

    Returns
    -------
    str
        Key of :data:`FILTERS`.

    Raises
    ------
    ValueError
        For an unknown filter.
    """
    tokens = [t for t in str(filt).upper().replace("/", "+").replace(",", "+")
              .replace(" ", "+").split("+") if t and t != "CLEAR"]
    if len(tokens) > 1:
        narrow = [t for t in tokens if t.endswith(("M", "N"))]
        tokens = narrow[-1:] if narrow else tokens[-1:]
    if len(tokens) != 1 or tokens[0] not in FILTERS:
        raise ValueError(f"unknown NIRCam filter {filt!r} (known: {', '.join(FILTERS)})")
    return tokens[0]


def pivot_um(filt: str) -> float:
    """Pivot wavelength of a filter in micron."""
    return FILTERS[canonical_filter(filt)][0]


def channel(filt: str) -> str:
    """``"SW"`` (0.6-2.3 um, 0.031"/pix) or ``"LW"`` (2.4-5 um, 0.063"/pix)."""
    return "SW" if pivot_um(filt) < 2.4 else "LW"


def psf_fwhm_arcsec(filt: str) -> float:
    """Optical (not pixel-integrated) PSF FWHM in arcsec of a NIRCam filter.

    Values are the JDox NIRCam PSF FWHM table (0.023" at F070W to 0.157" at F480M).
    """
    return FILTERS[canonical_filter(filt)][2]


# --------------------------------------------------------------------------- PSF model
def _moffat(r, alpha, beta):
    """Unit-flux 2-D Moffat surface density at radius ``r`` (same units as alpha)."""
    return (beta - 1.0) / (math.pi * alpha * alpha) * (1.0 + (r / alpha) ** 2) ** (-beta)


def _moffat_ee(r, alpha, beta):
    return 1.0 - (1.0 + (r / alpha) ** 2) ** (1.0 - beta)


@functools.lru_cache(maxsize=None)
def _psf_params(filt: str) -> tuple[tuple[float, float, float], ...]:
    """((weight, alpha_arcsec, beta), ...) of the three components, untruncated."""
    lam, _, fwhm = FILTERS[filt]
    ld = lam * 1e-6 / TELESCOPE_DIAMETER_M * 206264.806
    strehl = math.exp(-((2 * math.pi * _WFE_UM / lam) ** 2))
    w_core, w_wing, w_halo = (1 - _WING_SHARE) * strehl, _WING_SHARE * strehl, 1 - strehl
    a_wing, a_halo = ld, _HALO_ALPHA_LD * ld

    def profile(r, a_core):
        return (w_core * _moffat(r, a_core, _BETA_CORE) + w_wing * _moffat(r, a_wing, _BETA_WING)
                + w_halo * _moffat(r, a_halo, _BETA_HALO))

    def half_max_miss(a_core):
        return profile(fwhm / 2, a_core) - 0.5 * profile(0.0, a_core)

    a_core = optimize.brentq(half_max_miss, 1e-4 * fwhm, 5 * fwhm, xtol=1e-12)
    return ((w_core, a_core, _BETA_CORE), (w_wing, a_wing, _BETA_WING), (w_halo, a_halo, _BETA_HALO))


def _ee_untruncated(filt: str, r):
    return sum(w * _moffat_ee(r, a, b) for w, a, b in _psf_params(filt))


def psf_profile(filt: str, r_arcsec):
    """PSF surface density (fraction of the flux per arcsec**2) at radius ``r_arcsec``.

    Parameters
    ----------
    filt : str
        NIRCam filter.
    r_arcsec : float or ndarray
        Radius from the PSF centre in arcsec.

    Returns
    -------
    ndarray
        Same shape as ``r_arcsec``; zero beyond :data:`PSF_RADIUS_ARCSEC`, and
        integrating to 1 inside it.
    """
    f = canonical_filter(filt)
    r = np.asarray(r_arcsec, dtype=float)
    val = sum(w * _moffat(r, a, b) for w, a, b in _psf_params(f))
    val = val / _ee_untruncated(f, PSF_RADIUS_ARCSEC)
    return np.where(r <= PSF_RADIUS_ARCSEC, val, 0.0)


def encircled_energy(filt: str, radius_arcsec):
    """Fraction of the (unit, truncated) PSF flux inside a circle.

    Parameters
    ----------
    filt : str
        NIRCam filter.
    radius_arcsec : float or ndarray
        Aperture radius in arcsec.

    Returns
    -------
    float or ndarray
        Encircled energy in [0, 1]; exactly 1 at and beyond :data:`PSF_RADIUS_ARCSEC`.
    """
    f = canonical_filter(filt)
    r = np.minimum(np.asarray(radius_arcsec, dtype=float), PSF_RADIUS_ARCSEC)
    ee = _ee_untruncated(f, r) / _ee_untruncated(f, PSF_RADIUS_ARCSEC)
    return float(ee) if np.ndim(ee) == 0 else ee


def ee_radius_arcsec(filt: str, fraction: float) -> float:
    """Radius in arcsec enclosing ``fraction`` (0 < fraction < 1) of the PSF flux."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must lie strictly between 0 and 1")
    return optimize.brentq(lambda r: encircled_energy(filt, r) - fraction,
                           1e-6, PSF_RADIUS_ARCSEC, xtol=1e-10)


def mosaic_ee_radii_arcsec(filt: str, fractions, native_scale: float, out_scale: float,
                           pixfrac: float = 1.0, step: float | None = None) -> list[float]:
    """Radii (arcsec) enclosing ``fractions`` of a point source's flux *in a drizzled mosaic*.

    The mosaic's PSF is the optical PSF convolved with the detector pixel
    (``native_scale``), the drizzle drop (``pixfrac x native_scale``) and the
    output pixel (``out_scale``), each a box; aperture photometry on the
    mosaic measures that PSF's encircled energy.  The APCORR reference of the
    simulated CRDS cache uses these radii: the optical PSF's own radii enclose
    less than their nominal fraction in a mosaic, and jwst's source_catalog
    ``aper_total_flux`` comes out low (docs/algorithms.md, "Stage 3").
    """
    h = step or min(native_scale, out_scale) / 9.0
    half = int(math.ceil((PSF_RADIUS_ARCSEC + 2 * native_scale + out_scale) / h))
    u = np.arange(-half, half + 1) * h
    r = np.hypot(u[:, None], u[None, :])
    img = psf_profile(filt, r) * h * h
    for width in (native_scale, pixfrac * native_scale, out_scale):
        n = max(1, int(round(width / h)))
        img = ndimage.uniform_filter1d(img, n, axis=0, mode="constant")
        img = ndimage.uniform_filter1d(img, n, axis=1, mode="constant")
    order = np.argsort(r, axis=None)
    radii = r.ravel()[order]
    ee = np.cumsum(img.ravel()[order], dtype=np.float64)
    ee /= ee[-1]
    return [float(np.interp(f, ee, radii)) for f in fractions]


def _oversampling(fwhm_pix: float) -> int:
    """Odd oversampling factor giving >= 8 samples per FWHM (at least 5)."""
    o = max(5, math.ceil(8.0 / fwhm_pix))
    return o + 1 - o % 2


@functools.lru_cache(maxsize=16)
def _epsf(filt: str, pixel_scale: float):
    """Pixel-integrated PSF on a grid of step 1/O pixel.

    Returns (grid[2*K*O+1, 2*K*O+1] float32, O, K, Rp): value at fine index
    (c + dy*O, c + dx*O), c = K*O, is the flux fraction in a pixel whose centre is
    offset by (dy, dx) pixels from the PSF centre.  Rp = stamp half size (pix).
    """
    fwhm_pix = FILTERS[filt][2] / pixel_scale
    o = _oversampling(fwhm_pix)
    rp = math.ceil(PSF_RADIUS_ARCSEC / pixel_scale)
    k = rp + 2
    n = 2 * k * o + 1
    u = (np.arange(n) - k * o) / o * pixel_scale              # arcsec
    r = np.hypot(u[:, None], u[None, :])
    psf = psf_profile(filt, r)
    # Pixel integration: mean over the O x O sub-cells (midpoint rule), i.e. a
    # centred box of O fine samples along each axis.
    psf = ndimage.uniform_filter1d(psf, o, axis=0, mode="constant")
    psf = ndimage.uniform_filter1d(psf, o, axis=1, mode="constant")
    # Unit sum over any integer-pixel lattice (exact normalisation of the Riemann sum).
    c = k * o
    psf /= psf[c % o::o, c % o::o].sum()
    return psf.astype(np.float32), o, k, rp


def psf_stamp(filt: str, pixel_scale_arcsec: float, dx: float = 0.0, dy: float = 0.0):
    """Pixel-integrated PSF stamp.

    Parameters
    ----------
    filt : str
        NIRCam filter.
    pixel_scale_arcsec : float
        Detector pixel scale (0.031 SW, 0.063 LW).
    dx, dy : float
        Sub-pixel offset of the PSF centre from the central pixel's centre, in
        pixels, each in [-0.5, 0.5].

    Returns
    -------
    ndarray, float32, shape (2*Rp+1, 2*Rp+1)
        Flux fraction per pixel (sums to 1); ``Rp = ceil(2.0 arcsec / scale)``.
    """
    epsf, o, k, rp = _epsf(canonical_filter(filt), float(pixel_scale_arcsec))
    return _sample_epsf(epsf, o, k, -rp, rp, -rp, rp, dx, dy)


def _sample_epsf(epsf, o, k, i0, i1, j0, j1, dx, dy):
    """Bilinear sample of the fine ePSF grid at pixel offsets i0..i1 (y), j0..j1 (x)."""
    c = k * o
    ty, tx = -dy * o, -dx * o
    ky, kx = math.floor(ty), math.floor(tx)
    wy, wx = ty - ky, tx - kx
    r0 = slice(c + i0 * o + ky, c + i1 * o + ky + 1, o)
    r1 = slice(r0.start + 1, r0.stop + 1, o)
    c0 = slice(c + j0 * o + kx, c + j1 * o + kx + 1, o)
    c1 = slice(c0.start + 1, c0.stop + 1, o)
    return ((1 - wy) * ((1 - wx) * epsf[r0, c0] + wx * epsf[r0, c1])
            + wy * ((1 - wx) * epsf[r1, c0] + wx * epsf[r1, c1]))


_GALAXY_KERNEL_RADIUS_ARCSEC = 0.5


@functools.lru_cache(maxsize=32)
def _galaxy_kernel(filt: str, pixel_scale: float, o: int) -> np.ndarray:
    """PSF kernel for galaxies out to max(4 FWHM, 0.5 arcsec), unit sum.

    ``o == 1``: the pixel-integrated PSF at integer offsets (convolving point
    samples of the galaxy with it gives pixel-integrated values).  ``o > 1``:
    the PSF point-sampled with step 1/o pixel (the result is binned o x o).
    The far wing beyond the radius (a few per cent of the light) is folded back
    by the normalisation, so galaxies keep exactly their catalog flux.
    """
    radius = min(PSF_RADIUS_ARCSEC, max(4 * FILTERS[filt][2], _GALAXY_KERNEL_RADIUS_ARCSEC))
    if o == 1:
        epsf, oo, k, _ = _epsf(filt, pixel_scale)
        m = math.ceil(radius / pixel_scale)
        c = k * oo
        ker = epsf[c - m * oo:c + m * oo + 1:oo, c - m * oo:c + m * oo + 1:oo].astype(float)
        u = np.arange(-m, m + 1) * pixel_scale
        ker[np.hypot(u[:, None], u[None, :]) > radius + 0.5 * pixel_scale] = 0.0
    else:
        m = math.ceil(radius / pixel_scale * o)
        u = np.arange(-m, m + 1) / o * pixel_scale
        ker = psf_profile(filt, np.hypot(u[:, None], u[None, :]))
        ker[np.hypot(u[:, None], u[None, :]) > radius] = 0.0
    return (ker / ker.sum()).astype(np.float32)


# --------------------------------------------------------------------------- Sersic
def sersic_bn(n):
    """Sersic ``b_n`` such that r_eff encloses half the light (exact, gammaincinv)."""
    return special.gammaincinv(2.0 * np.asarray(n, dtype=float), 0.5)


def _sersic_surface(a, b, reff, n, q, rmax_re, rmin=0.0):
    """Unnormalised Sersic profile on coordinates a (major), b (minor), truncated.

    ``rmin`` (same units as ``reff``) floors the elliptical radius to soften the cusp.
    """
    r = np.maximum(np.sqrt(a * a + (b / q) ** 2), rmin) * (1.0 / reff)
    val = np.exp(-np.float32(sersic_bn(n)) * (r ** np.float32(1.0 / n) - 1.0))
    val[r > rmax_re] = 0.0
    return val


def _sersic_truncated_flux_per_ie(reff, n, q, rmax_re):
    """Integral of exp(-b((r/re)^(1/n)-1)) over the ellipse r <= rmax_re * re."""
    bn = float(sersic_bn(n))
    total = 2 * math.pi * reff * reff * q * n * math.exp(bn) * bn ** (-2 * n) * special.gamma(2 * n)
    return total * special.gammainc(2 * n, bn * rmax_re ** (1.0 / n))


def _major_axis_pix(theta_deg, y_axis_pa_deg, parity):
    """Unit vector (mx, my) in pixel coordinates of a sky position angle."""
    d = np.radians(y_axis_pa_deg - theta_deg)
    if parity < 0:
        return np.sin(d), np.cos(d)
    return -np.sin(d), np.cos(d)


# --------------------------------------------------------------------------- catalog
def _tan_to_radec(ra0, dec0, xi_deg, eta_deg):
    """Inverse gnomonic projection of tangent-plane offsets (deg) about (ra0, dec0)."""
    xi, eta = np.radians(xi_deg), np.radians(eta_deg)
    d0 = math.radians(dec0)
    den = math.cos(d0) - eta * math.sin(d0)
    ra = math.radians(ra0) + np.arctan2(xi, den)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _planck_ratio(lam_um, temp_k):
    """f_nu(lam) / f_nu(2 um) of blackbodies: shape (len(temp_k), len(lam_um))."""
    lam = np.asarray(lam_um, dtype=float)[None, :]
    temp = np.atleast_1d(np.asarray(temp_k, dtype=float))[:, None]
    return (_REF_UM / lam) ** 3 * np.expm1(14387.77 / (_REF_UM * temp)) / np.expm1(14387.77 / (lam * temp))


def _place(rng, n, half_arcsec, taken_xy, taken_r, sep, what):
    """Draw ``n`` positions (arcsec) at least ``sep + taken_r`` from taken points."""
    out = np.empty((0, 2))
    txy, tr = taken_xy.copy(), taken_r.copy()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200:
            raise ValueError(
                f"cannot place {n} isolated {what} (separation {sep:.1f} arcsec) in a "
                f"{2 * half_arcsec:.0f} arcsec field; use fewer sources or a smaller separation")
        cand = rng.uniform(-half_arcsec, half_arcsec, size=(max(64, 4 * (n - len(out))), 2))
        for p in cand:
            if len(txy) and np.any(np.hypot(*(txy - p).T) < sep + tr):
                continue
            out = np.vstack([out, p])
            txy, tr = np.vstack([txy, p]), np.append(tr, 0.0)
            if len(out) == n:
                break
    return out, txy, tr


def make_catalog(rng: np.random.Generator, ra0: float, dec0: float, half_width_deg: float,
                 filters, n_stars: int, n_galaxies: int, n_saturated: int = 3,
                 blob: bool = False, *, min_separation_arcsec: float = 3.0,
                 star_mag_range=(19.5, 26.5), galaxy_mag_range=(21.0, 28.0),
                 saturated_mag_range=(13.5, 15.5)) -> Table:
    """Random field of stars, galaxies and (optionally) one extended 'blob'.

    Positions are uniform in a square of tangent-plane half width
    ``half_width_deg`` about (ra0, dec0).  Galaxies are placed first (they may
    overlap each other); stars are then kept **isolated**: at least
    ``min_separation_arcsec`` from any other star and
    ``min_separation_arcsec + 3 r_eff`` from any galaxy centre; saturated stars
    use twice that separation.  The blob (ICL/cluster-light like) is placed near
    the field centre and ignores the separations.

    Fluxes: stars are blackbodies (T = 2800-9000 K, mostly cool dwarfs) with
    AB magnitudes at 2 um uniform in ``star_mag_range`` (S/N ~ 1000 to ~10 in a
    few-hundred-second NIRCam exposure; the brightest reach the full well in
    their central pixel after ~300 s in F200W) and ``n_saturated`` more in
    ``saturated_mag_range`` (saturating within the first one or two
    full-frame groups).
    Galaxies follow dN/dm ~ 10**(0.3 m) in ``galaxy_mag_range`` with
    f_nu ~ lambda**beta (beta in [-0.5, 1.5]) and a break of up to x3 at
    0.4 um (1 + z), z in [0.3, 4]; sizes shrink with magnitude
    (median 0.35" at m = 22), 65 % disks (n ~ 1), 35 % spheroids (n ~ 3).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    ra0, dec0 : float
        Field centre (deg).
    half_width_deg : float
        Half width of the square field (deg), tangent-plane.
    filters : sequence of str
        Filters for which ``flux_<FILTER>`` columns are made.
    n_stars, n_galaxies, n_saturated : int
        Numbers of unsaturated stars, galaxies and saturated stars.
    blob : bool
        Add one very large, bright extended component (Sersic n = 1-2,
        r_eff = 8-12 arcsec, i.e. hundreds of pixels; surface brightness at
        r_eff ~ 22.5-23.5 AB mag/arcsec**2 at 2 um, red colour).
    min_separation_arcsec : float
        Minimum star-star separation (arcsec).
    star_mag_range, galaxy_mag_range, saturated_mag_range : (float, float)
        AB magnitude ranges at 2 um.

    Returns
    -------
    astropy.table.Table
        Columns: ``id`` (1..N), ``kind`` ('star'|'galaxy'|'blob'), ``ra``,
        ``dec`` (deg), ``saturated`` (bool, intended to saturate),
        ``r_eff_arcsec`` (semi-major half-light radius; 0 for stars),
        ``sersic_n``, ``axis_ratio`` (b/a), ``ellip`` (1 - b/a), ``theta_deg``
        (major-axis position angle, deg east of north), and ``flux_<FILTER>``
        (nJy, total) for every filter.
    """
    fnames = [canonical_filter(f) for f in filters]
    lams = np.array([FILTERS[f][0] for f in fnames])
    half = half_width_deg * 3600.0

    # Galaxies first.
    gm1, gm2 = galaxy_mag_range
    u = rng.uniform(size=n_galaxies)
    g_mag = np.log10(10 ** (0.3 * gm1) + u * (10 ** (0.3 * gm2) - 10 ** (0.3 * gm1))) / 0.3
    g_xy = rng.uniform(-half, half, size=(n_galaxies, 2))
    g_reff = np.clip(0.35 * 10 ** (-0.15 * (g_mag - 22.0)) * 10 ** rng.normal(0, 0.25, n_galaxies),
                     0.03, 1.5)
    disk = rng.uniform(size=n_galaxies) < 0.65
    g_n = np.where(disk, np.clip(rng.normal(1.0, 0.3, n_galaxies), 0.5, 2.0),
                   np.clip(rng.normal(3.0, 0.6, n_galaxies), 2.0, 4.0))
    g_q = np.where(disk, rng.uniform(0.2, 1.0, n_galaxies), rng.uniform(0.5, 1.0, n_galaxies))
    g_theta = rng.uniform(0.0, 180.0, n_galaxies)
    g_beta = rng.uniform(-0.5, 1.5, n_galaxies)
    g_break_um = 0.4 * (1 + rng.uniform(0.3, 4.0, n_galaxies))
    g_break = rng.uniform(1.0, 3.0, n_galaxies)
    g_sed = (lams[None, :] / _REF_UM) ** g_beta[:, None]
    g_sed = g_sed / np.where(lams[None, :] < g_break_um[:, None], g_break[:, None], 1.0)
    g_sed = g_sed * np.where(_REF_UM < g_break_um, g_break, 1.0)[:, None]
    g_flux = 10 ** (-0.4 * (g_mag - _AB_ZP_NJY))[:, None] * g_sed

    # Saturated stars (wide berth), then normal stars.
    sep = float(min_separation_arcsec)
    taken_r = 3.0 * g_reff
    s_xy, txy, tr = _place(rng, n_saturated, half, g_xy, taken_r, 2 * sep, "saturated stars")
    tr[n_galaxies:] = sep  # saturated stars keep others 2 x sep away
    p_xy, _, _ = _place(rng, n_stars, half, txy, tr, sep, "stars")
    star_xy = np.vstack([s_xy, p_xy])
    ns = n_saturated + n_stars
    s_mag = np.concatenate([rng.uniform(*saturated_mag_range, n_saturated),
                            rng.uniform(*star_mag_range, n_stars)])
    s_temp = np.where(rng.uniform(size=ns) < 0.7, rng.uniform(2800, 4500, ns),
                      rng.uniform(4500, 9000, ns))
    s_flux = 10 ** (-0.4 * (s_mag - _AB_ZP_NJY))[:, None] * _planck_ratio(lams, s_temp)

    kinds = ["star"] * ns + ["galaxy"] * n_galaxies
    xy = np.vstack([star_xy.reshape(-1, 2), g_xy])
    flux = np.vstack([s_flux, g_flux])
    reff = np.concatenate([np.zeros(ns), g_reff])
    nser = np.concatenate([np.zeros(ns), g_n])
    q = np.concatenate([np.ones(ns), g_q])
    theta = np.concatenate([np.zeros(ns), g_theta])
    sat = np.concatenate([np.ones(n_saturated, bool), np.zeros(n_stars + n_galaxies, bool)])

    if blob:
        b_xy = rng.uniform(-0.3 * half, 0.3 * half, size=(1, 2))
        b_re, b_n = rng.uniform(8.0, 12.0), rng.uniform(1.0, 2.0)
        b_q, b_theta = rng.uniform(0.6, 0.9), rng.uniform(0, 180)
        sb_e = 10 ** (-0.4 * (rng.uniform(22.5, 23.5) - _AB_ZP_NJY))  # nJy / arcsec^2
        bn = float(sersic_bn(b_n))
        b_tot = sb_e * 2 * math.pi * b_re ** 2 * b_q * b_n * math.exp(bn) * bn ** (-2 * b_n) \
            * special.gamma(2 * b_n)
        kinds.append("blob")
        xy = np.vstack([xy, b_xy])
        flux = np.vstack([flux, b_tot * (lams / _REF_UM) ** 1.0])
        reff, nser = np.append(reff, b_re), np.append(nser, b_n)
        q, theta, sat = np.append(q, b_q), np.append(theta, b_theta), np.append(sat, False)

    ra, dec = _tan_to_radec(ra0, dec0, xy[:, 0] / 3600.0, xy[:, 1] / 3600.0)
    table = Table()
    table["id"] = np.arange(1, len(kinds) + 1, dtype=np.int32)
    table["kind"] = np.array(kinds, dtype="U6")
    table["ra"], table["dec"] = ra, dec
    table["saturated"] = sat
    table["r_eff_arcsec"], table["sersic_n"] = reff, nser
    table["axis_ratio"], table["ellip"], table["theta_deg"] = q, 1.0 - q, theta
    for j, f in enumerate(fnames):
        table[f"flux_{f}"] = flux[:, j]
        table[f"flux_{f}"].unit = "nJy"
    for col in ("ra", "dec", "theta_deg"):
        table[col].unit = "deg"
    table["r_eff_arcsec"].unit = "arcsec"
    return table


# --------------------------------------------------------------------------- rendering
def _paste(image, stamp, y0, x0):
    """Add ``stamp`` with its [0, 0] at image[y0, x0], clipped to the image."""
    ny, nx = image.shape
    sy, sx = stamp.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + sy, ny), min(x0 + sx, nx)
    if ya < yb and xa < xb:
        image[ya:yb, xa:xb] += stamp[ya - y0:yb - y0, xa - x0:xb - x0]


def _galaxy_stamp(filt, pixel_scale, fx, fy, reff_pix, n, q, mx, my):
    """Unit-flux, PSF-convolved, pixel-integrated Sersic stamp; returns (stamp, half)."""
    # Fine sampling only where the galaxy is small: larger ones are point-sampled
    # on pixel centres and convolved with the pixel-integrated PSF.
    o = 1 if reff_pix >= 2.0 else 3
    ker = _galaxy_kernel(filt, pixel_scale, o)
    rmax_re = 4.0 + n
    m = (ker.shape[0] - 1) // 2                                  # kernel half size (fine)
    half = min(math.ceil(rmax_re * reff_pix + m / o) + 1, 256)
    npix = 2 * half + 1
    u = ((np.arange(npix * o) - (npix * o - 1) / 2) / o).astype(np.float32)  # fine offsets (pix)
    dy = (u - fy)[:, None]
    dx = (u - fx)[None, :]
    a = dx * mx + dy * my
    b = -dx * my + dy * mx
    # Soften the cusp at a quarter of a fine sample.
    gal = _sersic_surface(a, b, reff_pix, n, q, rmax_re, rmin=0.25 / o)
    total = gal.sum()
    if total <= 0:
        return None, half
    gal /= total
    conv = signal.fftconvolve(gal, ker, mode="same")
    if o > 1:
        conv = conv.reshape(npix, o, npix, o).sum(axis=(1, 3))
    conv /= conv.sum()
    return conv.astype(np.float32), half


def render(catalog, filt: str, x, y, shape, pixel_scale_arcsec: float, dn_s_per_njy, *,
           y_axis_pa_deg: float = 0.0, parity: int = -1, out=None) -> np.ndarray:
    """Render a catalog onto a detector image in DN/s.

    Stars use the pixel-integrated PSF (unit flux inside 2"); galaxies are
    Sersic profiles (truncated at (4 + n) r_eff, normalised to the catalog flux)
    convolved with the PSF on a 1-5x oversampled grid and integrated over pixels;
    the blob is evaluated directly (it is much larger than the PSF), analytically
    normalised so its total flux inside (4 + n) r_eff is the catalog flux.
    Only sources whose stamps overlap the array are drawn.

    Parameters
    ----------
    catalog : astropy.table.Table
        As made by :func:`make_catalog`; needs ``kind``, ``flux_<FILTER>`` and,
        for galaxies/blob, ``r_eff_arcsec``, ``sersic_n``, ``axis_ratio``,
        ``theta_deg``.
    filt : str
        Filter (selects the PSF and the flux column).
    x, y : array_like, shape (N,)
        0-based pixel coordinates of each catalog row on this array (pixel
        centres at integers, DMS orientation); NaN rows are skipped.
    shape : (int, int)
        (ny, nx) of the image.
    pixel_scale_arcsec : float
        Pixel scale (arcsec/pixel).
    dn_s_per_njy : float or array_like, shape (N,)
        Count rate (DN/s) produced by 1 nJy of total flux.
    y_axis_pa_deg : float
        Position angle (deg east of north) of the image +y axis on the sky.
    parity : int
        -1 for the standard sky parity of JWST DMS images (with +y rotated to
        north, east is to the left, -x); +1 for the mirrored case.
    out : ndarray, optional
        Float32 image of ``shape`` to add into (returned).

    Returns
    -------
    ndarray, float32, shape ``shape``
        Source count rate in DN/s.
    """
    f = canonical_filter(filt)
    ny, nx = shape
    image = np.zeros(shape, np.float32) if out is None else out
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    rate = np.asarray(catalog[f"flux_{f}"], dtype=float) * np.broadcast_to(
        np.asarray(dn_s_per_njy, dtype=float), x.shape)
    kind = np.asarray(catalog["kind"]).astype(str)
    scale = float(pixel_scale_arcsec)
    ok = np.isfinite(x) & np.isfinite(y) & (rate != 0)

    epsf, o, k, rp = _epsf(f, scale)
    for i in np.flatnonzero(ok & (kind == "star")):
        ix, iy = int(round(x[i])), int(round(y[i]))
        i0, i1 = max(-rp, -iy), min(rp, ny - 1 - iy)
        j0, j1 = max(-rp, -ix), min(rp, nx - 1 - ix)
        if i0 > i1 or j0 > j1:
            continue
        st = _sample_epsf(epsf, o, k, i0, i1, j0, j1, x[i] - ix, y[i] - iy)
        image[iy + i0:iy + i1 + 1, ix + j0:ix + j1 + 1] += rate[i] * st

    ext = kind != "star"
    if np.any(ok & ext):
        reff = np.asarray(catalog["r_eff_arcsec"], float) / scale
        nser = np.asarray(catalog["sersic_n"], float)
        q = np.asarray(catalog["axis_ratio"], float)
        mx, my = _major_axis_pix(np.asarray(catalog["theta_deg"], float), y_axis_pa_deg, parity)
    for i in np.flatnonzero(ok & (kind == "galaxy")):
        ix, iy = int(round(x[i])), int(round(y[i]))
        rough = math.ceil((4.0 + nser[i]) * reff[i] + PSF_RADIUS_ARCSEC / scale) + 2
        if iy + rough < 0 or iy - rough >= ny or ix + rough < 0 or ix - rough >= nx:
            continue
        st, half = _galaxy_stamp(f, scale, x[i] - ix, y[i] - iy, reff[i], nser[i], q[i],
                                 mx[i], my[i])
        if st is not None:
            _paste(image, rate[i] * st, iy - half, ix - half)
    for i in np.flatnonzero(ok & (kind == "blob")):
        _add_blob(image, rate[i], x[i], y[i], reff[i], nser[i], q[i], mx[i], my[i])
    return image


def _add_blob(image, rate, xc, yc, reff, n, q, mx, my):
    """Add a large smooth Sersic (no PSF) with total ``rate`` inside (4 + n) r_eff."""
    ny, nx = image.shape
    rmax_re = 4.0 + n
    rmax = rmax_re * reff
    y0, y1 = max(int(yc - rmax) - 1, 0), min(int(yc + rmax) + 2, ny)
    x0, x1 = max(int(xc - rmax) - 1, 0), min(int(xc + rmax) + 2, nx)
    if y0 >= y1 or x0 >= x1:
        return
    ie = rate / _sersic_truncated_flux_per_ie(reff, n, q, rmax_re)
    for ya in range(y0, y1, 256):                       # row blocks keep memory small
        yb = min(ya + 256, y1)
        dy = (np.arange(ya, yb, dtype=np.float32) - yc)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - xc)[None, :]
        a = dx * mx + dy * my
        b = -dx * my + dy * mx
        image[ya:yb, x0:x1] += (ie * _sersic_surface(a, b, reff, n, q, rmax_re)).astype(np.float32)
