"""Astrometry on arrays: sky offsets, cross-matching, robust residual rms, one detection per source.

Used by stage 3's alignment and its QA, and by the demo report.  Positions are
degrees, offsets milliarcseconds, tangent-plane coordinates arcseconds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["offsets_mas", "match_sky", "robust_rms", "deduplicate_detections"]


def offsets_mas(ra, dec, ra_ref, dec_ref):
    """Sky offsets (mas) of positions from reference positions: (dRA cos(dec), dDec).

    Parameters
    ----------
    ra, dec, ra_ref, dec_ref : array_like
        Degrees, same shapes.

    Returns
    -------
    dx, dy : ndarray
        East and north offsets in milliarcseconds.
    """
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    ra_ref, dec_ref = np.asarray(ra_ref, float), np.asarray(dec_ref, float)
    dra = (ra - ra_ref + 180.0) % 360.0 - 180.0
    dx = dra * np.cos(np.radians(dec_ref)) * 3.6e6
    dy = (dec - dec_ref) * 3.6e6
    return dx, dy


def match_sky(ra, dec, ra_ref, dec_ref, radius_arcsec: float = 0.3):
    """Nearest-neighbour match of positions to a reference list.

    Parameters
    ----------
    ra, dec : array_like
        Positions to match (deg).
    ra_ref, dec_ref : array_like
        Reference positions (deg).
    radius_arcsec : float
        Largest accepted separation.

    Returns
    -------
    idx, idx_ref : ndarray of int
        Indices of matched pairs (each reference used at most once: the closest wins).
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    ra_ref, dec_ref = np.asarray(ra_ref, float), np.asarray(dec_ref, float)
    if len(ra) == 0 or len(ra_ref) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    a = SkyCoord(ra * u.deg, dec * u.deg)
    b = SkyCoord(ra_ref * u.deg, dec_ref * u.deg)
    j, sep, _ = a.match_to_catalog_sky(b)
    sep = sep.arcsec
    ok = np.flatnonzero(sep <= radius_arcsec)
    # one reference per source: keep the closest claim
    order = ok[np.argsort(sep[ok])]
    used: set[int] = set()
    keep = []
    for i in order:
        if j[i] not in used:
            used.add(int(j[i]))
            keep.append(i)
    keep = np.array(sorted(keep), int)
    return keep, np.asarray(j, int)[keep]


def robust_rms(dx, dy, clip: float = 3.0) -> tuple[float, float, float, int]:
    """Mean offsets and rms of 2-D residuals after iterative sigma clipping.

    Returns
    -------
    mean_x, mean_y, rms, n : float, float, float, int
        rms is sqrt(mean(dx^2 + dy^2)) about zero of the kept residuals
        (a systematic offset counts), ``n`` the number kept.
    """
    dx, dy = np.asarray(dx, float), np.asarray(dy, float)
    keep = np.isfinite(dx) & np.isfinite(dy)
    for _ in range(5):
        if keep.sum() < 3:
            break
        r = np.hypot(dx - np.median(dx[keep]), dy - np.median(dy[keep]))
        s = 1.4826 * np.median(r[keep]) * 1.5 + 1e-9
        new = keep & (r <= clip * s)
        if new.sum() == keep.sum():
            break
        keep = new
    if not keep.any():
        return float("nan"), float("nan"), float("nan"), 0
    return (float(np.mean(dx[keep])), float(np.mean(dy[keep])),
            float(np.sqrt(np.mean(dx[keep] ** 2 + dy[keep] ** 2))), int(keep.sum()))


def deduplicate_detections(xt, yt, edge, radius: float = 0.3):
    """Keep one detection per source: the one farthest from its image edge.

    Parameters
    ----------
    xt, yt : array_like
        Tangent-plane positions (arcsec) of all detections of all exposures.
    edge : array_like
        Distance of each detection from its image edge (pixels).
    radius : float
        Detections closer than this (arcsec) are the same source.

    Returns
    -------
    ndarray of bool
        True for the detections to keep.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    xt, yt, edge = (np.asarray(a, float) for a in (xt, yt, edge))
    n = len(xt)
    if n == 0:
        return np.zeros(0, bool)
    pairs = cKDTree(np.column_stack([xt, yt])).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else \
        coo_matrix((n, n))
    _, label = connected_components(graph, directed=False)
    keep = np.zeros(n, bool)
    order = np.lexsort((-edge, label))  # by cluster, farthest from the edge first
    first = np.ones(n, bool)
    first[1:] = label[order][1:] != label[order][:-1]
    keep[order[first]] = True
    return keep
