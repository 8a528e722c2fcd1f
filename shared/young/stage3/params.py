"""Image3 step parameters: YOUNG's defaults, the seed pipeline's config keys, ``--set``, ``--extract``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from young.contract.errors import UsageError

SEED_KEYS = {
    "pixel_scale": "resample.pixel_scale",
    "pixfrac": "resample.pixfrac",
    "rotation": "resample.rotation",
    "res_kernel": "resample.kernel",
    "starfinder": "tweakreg.starfinder",
    "snr_threshold": "tweakreg.snr_threshold",
    "fitgeometry": "tweakreg.fitgeometry",
    "abs_fitgeometry": "tweakreg.abs_fitgeometry",
    "skymethod": "skymatch.skymethod",
}
#: resample parameters that define the output grid (replaced by ``output_wcs`` for member groups)
GRID_PARAMETERS = ("pixel_scale", "pixel_scale_ratio", "rotation", "crpix", "crval", "output_shape", "output_wcs")
#: step parameters YOUNG sets per group itself
RESERVED = ("tweakreg.abs_refcat", "resample.in_memory")
EXTRACTS = ("sci", "err", "wht", "con")
#: the steps of jwst's Image3Pipeline (``--set`` checks names against them without importing jwst)
IMAGE3_STEPS = ("assign_mtwcs", "tweakreg", "skymatch", "outlier_detection", "resample", "source_catalog")


def parse_extract(value: str | Iterable[str] | None, section: Mapping[str, Any] | None = None) -> list[str]:
    """``--extract sci,err,wht`` (or config ``extract_sci: true``...) -> ordered list.

    Raises
    ------
    UsageError
        Unknown extension name.
    """
    names: list[str] = []
    if value is not None:
        items = value.split(",") if isinstance(value, str) else list(value)
        for item in items:
            item = str(item).strip().lower()
            if not item:
                continue
            if item not in EXTRACTS:
                raise UsageError(f"--extract {item!r}: known extensions are {','.join(EXTRACTS)}")
            names.append(item)
    elif section:
        names = [e for e in EXTRACTS if section.get(f"extract_{e}")]
    return [e for e in EXTRACTS if e in names]


#: YOUNG's defaults where jwst's do not suit NIRCam mosaics (docs/algorithms.md, "Stage 3"):
#: outlier_detection's default derivative scale (1.2 0.7) flags the cores of bright undersampled
#: stars; 2.0 1.0 keeps them, cosmic rays are still rejected.
DEFAULT_STEPS = {"outlier_detection.scale": "2.0 1.0"}


def step_parameters(section: Mapping[str, Any], steps: Mapping[str, Any]) -> dict[str, Any]:
    """Image3 step parameters: YOUNG's defaults, the seed keys of the config, then ``steps``/``--set``.

    Raises
    ------
    UsageError
        A reserved parameter (``tweakreg.abs_refcat``: use ``--refcat``).
    """
    out: dict[str, Any] = dict(DEFAULT_STEPS)
    for key, target in SEED_KEYS.items():
        if section.get(key) is not None:
            out[target] = section[key]
    out.update(steps)
    for key in RESERVED:
        if key in out:
            hint = " (use --refcat)" if key == "tweakreg.abs_refcat" else " (set by --max-memory)"
            raise UsageError(f"--set/config {key}: set by young-stage3 itself{hint}")
    return out


def truthy(value: Any) -> bool:
    """A config or ``--set`` value meaning yes (True, "true", "1", "yes")."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")
