"""NIRCam imaging filters: which group a FILTER/PUPIL combination belongs to, and its pivot wavelength.

Stage 3 reduces one group per optical element, the longest wavelength first
(its catalog aligns the others); an unknown filter is an error, never a guess.
"""

from __future__ import annotations

#: Pivot wavelengths (micron) of the NIRCam imaging filters (JWST User Documentation,
#: "NIRCam Filters"), filter-wheel and pupil-wheel elements alike.
PIVOT_UM: dict[str, float] = {
    # short-wavelength channel
    "F070W": 0.704, "F090W": 0.901, "F115W": 1.154, "F140M": 1.404, "F150W": 1.501,
    "F162M": 1.626, "F164N": 1.644, "F150W2": 1.671, "F182M": 1.845, "F187N": 1.874,
    "F200W": 1.990, "F210M": 2.093, "F212N": 2.120,
    # long-wavelength channel
    "F250M": 2.503, "F277W": 2.786, "F300M": 2.996, "F322W2": 3.247, "F323N": 3.237,
    "F335M": 3.365, "F356W": 3.563, "F360M": 3.621, "F405N": 4.055, "F410M": 4.092,
    "F430M": 4.280, "F444W": 4.421, "F460M": 4.624, "F466N": 4.654, "F470N": 4.707,
    "F480M": 4.834,
}

#: Filters mounted in the pupil wheel, with the filter-wheel element they are used with.
PUPIL_FILTERS: dict[str, str] = {
    "F162M": "F150W2", "F164N": "F150W2", "F323N": "F322W2",
    "F405N": "F444W", "F466N": "F444W", "F470N": "F444W",
}
#: Pupil-wheel positions that leave the filter-wheel element alone.
CLEAR_PUPILS = ("CLEAR", "CLEARP")
#: Weak lenses: imaging through the filter, defocused (a group of their own).
LENS_PUPILS = ("WLP8", "WLM8")


def optical_element(filter_name: str, pupil: str | None) -> tuple[str, float]:
    """Group name and pivot wavelength of a FILTER/PUPIL combination.

    Parameters
    ----------
    filter_name : str
        FILTER keyword (filter wheel), e.g. ``F444W``.
    pupil : str or None
        PUPIL keyword, e.g. ``CLEAR`` or ``F405N``.

    Returns
    -------
    name : str
        Lower-case group (folder) name: ``f444w``; a pupil-wheel filter with
        its usual partner is named after itself (``F444W + F405N -> f405n``),
        other combinations join both (``f410m-f405n``, ``f200w-wlp8``).
    pivot_um : float
        Pivot wavelength (micron) of the element that defines the band.

    Raises
    ------
    ValueError
        Unknown filter or pupil.
    """
    f = (filter_name or "").strip().upper()
    p = (pupil or "CLEAR").strip().upper() or "CLEAR"
    known = ", ".join(sorted(PIVOT_UM, key=PIVOT_UM.get))
    if p in PUPIL_FILTERS:
        if f not in PIVOT_UM and f not in ("CLEAR",):
            raise ValueError(f"unknown NIRCam filter {f or '(missing FILTER)'} with pupil {p} (known: {known})")
        name = p.lower() if f in (PUPIL_FILTERS[p], "CLEAR") else f"{f}-{p}".lower()
        return name, PIVOT_UM[p]
    if f not in PIVOT_UM:
        raise ValueError(f"unknown NIRCam filter {f or '(missing FILTER)'} (known: {known})")
    if p in CLEAR_PUPILS:
        return f.lower(), PIVOT_UM[f]
    if p in LENS_PUPILS:
        return f"{f}-{p}".lower(), PIVOT_UM[f]
    raise ValueError(f"unknown or non-imaging NIRCam pupil {p} with filter {f} "
                     f"(imaging pupils: {', '.join(CLEAR_PUPILS + LENS_PUPILS + tuple(PUPIL_FILTERS))})")
