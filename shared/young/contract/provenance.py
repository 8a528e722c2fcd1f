"""Provenance: what made a product, recorded in its primary FITS header.

Keywords (primary header, 8 characters as FITS requires):

``YNGTOOL``   tool name (``young-stage1``)
``YNGVER``    YOUNG version
``YNGJWST``   jwst version used
``YNGCRDS``   CRDS context the run used (jwst products also carry ``CRDS_CTX``)
``YNGPHASH``  hash of the tool's parameters: resume skips a product only when it matches
``YNGDATE``   UTC time the product was finished
plus ``HISTORY`` lines with the parameters as JSON, and any step keywords a
tool adds (``YNG1F``, ``YNGWISP``, ``YNGBKG`` record that a correction was
applied, so it is never applied twice).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from young import __version__


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``'not installed'``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_line(tool: str) -> str:
    """What ``young-* --version`` prints."""
    ctx = os.environ.get("CRDS_CONTEXT", "default")
    return (
        f"{tool} {__version__} (jwst {package_version('jwst')}, crds {package_version('crds')}, "
        f"CRDS context {ctx})"
    )


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def params_json(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a parameter mapping (sorted keys, paths as strings)."""
    return json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))


def params_hash(params: Mapping[str, Any]) -> str:
    """Short stable hash of the parameters that shape a product."""
    return hashlib.sha1(params_json(params).encode()).hexdigest()[:16]


def stamp(
    path: str | Path,
    tool: str,
    params: Mapping[str, Any],
    keywords: Mapping[str, Any] | None = None,
    crds_context: str | None = None,
) -> None:
    """Write the provenance keywords into ``path``'s primary header (in place).

    Call it on the temporary file before it is moved into place.
    """
    from astropy.io import fits

    with fits.open(path, mode="update", memmap=False) as hdul:
        h = hdul[0].header
        h["YNGTOOL"] = (tool, "YOUNG tool that made this product")
        h["YNGVER"] = (__version__, "YOUNG version")
        h["YNGJWST"] = (package_version("jwst"), "jwst version")
        ctx = crds_context or h.get("CRDS_CTX") or os.environ.get("CRDS_CONTEXT", "")
        h["YNGCRDS"] = (str(ctx), "CRDS context used")
        h["YNGPHASH"] = (params_hash(params), "hash of the YOUNG parameters")
        h["YNGDATE"] = (_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC")
        for key, value in (keywords or {}).items():
            h[key] = value
        text = f"{tool} {__version__} parameters: {params_json(params)}"
        chunks = [text[i : i + 70] for i in range(0, len(text), 70)]
        if chunks[0] not in [str(v) for v in h.get("HISTORY", [])]:  # stamped twice: recorded once
            for chunk in chunks:
                h.add_history(chunk)


def read_stamp(path: str | Path) -> dict[str, Any]:
    """The ``YNG*`` keywords of a product's primary header (empty if unreadable)."""
    from astropy.io import fits

    try:
        h = fits.getheader(path, 0)
    except Exception:
        return {}
    return {k: h[k] for k in h if k.startswith("YNG")}
