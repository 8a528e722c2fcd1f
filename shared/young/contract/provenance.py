"""Provenance: what made a product, recorded in its primary FITS header.

Keywords (primary header, 8 characters as FITS requires):

``YNGTOOL``   tool name (``young-stage1``)
``YNGVER``    YOUNG version
``YNGJWST``   jwst version used
``YNGCRDS``   CRDS context the run used (jwst products also carry ``CRDS_CTX``)
``YNGPHASH``  hash of the tool's parameters
``YNGALGO``   the tool's algorithm version (:attr:`young.contract.records.ToolSpec.algorithm`)
``YNGDATE``   UTC time the product was finished

Resume redoes a product unless the parameters, the algorithm version, the
jwst version and the CRDS context all match the run's (and, for products of
jwst's pipelines, the references CRDS selects now are those recorded in the
product): :func:`young.contract.runner.stale_reason`.
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


def version_line(tool: str, context: str | None = None, source: str | None = None, crds: bool = True) -> str:
    """What ``young-* --version`` prints.

    Parameters
    ----------
    tool : str
    context, source : str, optional
        The CRDS context a run would use and where it comes from
        (``--crds-context``, ``config young.yaml``, ...).
    crds : bool
        Whether the tool uses a CRDS context at all (young-sim does not).
    """
    ctx = ""
    if crds:
        ctx = f", CRDS context {context} ({source})" if context else ", CRDS context: none found"
    return f"{tool} {__version__} (jwst {package_version('jwst')}, crds {package_version('crds')}{ctx})"


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
    algorithm: str | None = None,
) -> None:
    """Write the provenance keywords into ``path``'s primary header (in place).

    Call it on the temporary file before it is moved into place.

    Parameters
    ----------
    path : path
    tool : str
    params : mapping
        The parameters that shape the product (hashed into ``YNGPHASH``, listed in HISTORY).
    keywords : mapping, optional
        The tool's own keywords (``{key: (value, comment)}``).
    crds_context : str, optional
        The context the run used (default: the product's ``CRDS_CTX``, else ``$CRDS_CONTEXT``).
    algorithm : str, optional
        The tool's algorithm version (``YNGALGO``).
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
        if algorithm is not None:
            h["YNGALGO"] = (str(algorithm), "algorithm version of the tool")
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
