"""CRDS: where references come from, and fetching them once before compute.

Production uses CRDS as users do: a ``CRDS_PATH`` cache, the server when it is
reachable, a pinned context when asked.  The tools fetch every reference an
input needs (for stages 1, 2 and 3 at once) *before* any parallel work, then
compute in serverless, read-only mode so N processes or MPI ranks never talk
to the server (the failure the seed pipeline warned about is designed out).
docs/architecture.md ("CRDS") has the measured facts behind this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, MutableMapping

from young.contract.errors import InputError

#: the documented serverless URL: any URL containing "serverless" disables server calls
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"


def configure(
    settings: Mapping | None,
    context: str | None,
    env: MutableMapping[str, str],
) -> dict[str, str]:
    """Work out the CRDS environment from the config and options, in ``env``.

    Precedence: ``context`` (``--crds-context``) > config keys ``crds_path``,
    ``crds_context``, ``crds_server_url`` > variables already in ``env``.
    ``env`` is a mapping the caller passes on to the processes that compute
    (a copy of the environment): nothing process-wide changes here.  crds
    reads these variables when it is imported, so they must be in force in
    a process before it imports crds or jwst.

    Parameters
    ----------
    settings : mapping or None
        The tool's config (``crds_path``, ``crds_context``, ``crds_server_url``).
    context : str or None
        ``--crds-context``.
    env : mutable mapping
        Updated in place.

    Returns
    -------
    dict
        The CRDS variables of ``env`` after the update.
    """
    settings = settings or {}
    if settings.get("crds_path"):
        env["CRDS_PATH"] = str(settings["crds_path"])
    if settings.get("crds_server_url"):
        env["CRDS_SERVER_URL"] = str(settings["crds_server_url"])
    ctx = context or settings.get("crds_context")
    if ctx:
        env["CRDS_CONTEXT"] = str(ctx)
    env.setdefault("CRDS_OBSERVATORY", "jwst")
    if env.get("YOUNG_CRDS_OFFLINE") == "1":  # set by `make all` after young-refs has filled the cache
        compute_mode(env)
    return {k: env[k] for k in env if k.startswith("CRDS_")}


def compute_mode(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Serverless, read-only CRDS for the compute phase (after prefetch): set in ``env``, which is returned."""
    env["CRDS_SERVER_URL"] = SERVERLESS_URL
    env["CRDS_READONLY_CACHE"] = "1"
    return env


def is_offline(env: Mapping[str, str] | None = None) -> bool:
    """True when no CRDS server will be contacted."""
    env = os.environ if env is None else env
    url = env.get("CRDS_SERVER_URL", "")
    return (not url) or "serverless" in url


def pipeline_reftypes() -> list[str]:
    """Every reference type (incl. ``pars-*``) the NIRCam imaging pipelines may ask for."""
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline

    types: set[str] = set()
    for pipe in (Detector1Pipeline, Image2Pipeline, Image3Pipeline):
        types.add(f"pars-{pipe.__name__.lower()}")
        for step in pipe.step_defs.values():
            types.update(getattr(step, "reference_file_types", []) or [])
            types.add(f"pars-{step.__name__.lower()}")
    return sorted(types)


@dataclass
class PrefetchReport:
    """What :func:`prefetch` found for one input."""

    path: Path
    references: dict[str, str] = field(default_factory=dict)
    error: InputError | None = None


def crds_parameters(path: str | Path) -> dict:
    """CRDS matching parameters of a JWST file (via its data model)."""
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(path)) as model:
        return model.get_crds_parameters()


def prefetch(paths: Iterable[str | Path], context: str | None = None,
             reftypes: Iterable[str] | None = None) -> list[PrefetchReport]:
    """Fetch (or find in the cache) every reference the files need.

    Parameters
    ----------
    paths : iterable of path
        JWST files (uncal, rate or cal).
    context : str, optional
        CRDS context; default ``$CRDS_CONTEXT`` or the cache's operational one.
    reftypes : iterable of str, optional
        Default :func:`pipeline_reftypes`.

    Returns
    -------
    list of PrefetchReport
        One per path; ``error`` names the missing reference and why.
    """
    import crds

    context = context or os.environ.get("CRDS_CONTEXT") or None
    types = list(reftypes) if reftypes is not None else pipeline_reftypes()
    reports: list[PrefetchReport] = []
    memo: dict[str, dict | InputError] = {}
    for p in paths:
        p = Path(p)
        rep = PrefetchReport(p)
        try:
            params = crds_parameters(p)
        except Exception as exc:  # unreadable file: named by the caller's validation too
            rep.error = InputError(f"cannot read CRDS parameters: {exc}", p)
            reports.append(rep)
            continue
        key = repr(sorted((k, str(v)) for k, v in params.items()
                          if not k.lower().startswith(("meta.pointing", "meta.wcsinfo", "meta.target"))))
        if key not in memo:
            memo[key] = _fetch_one(crds, params, types, context, p)
        got = memo[key]
        if isinstance(got, InputError):
            rep.error = InputError(got.message, p)
        else:
            rep.references = got
        reports.append(rep)
    return reports


def _fetch_one(crds, params, types, context, path) -> dict | InputError:
    """All types in one call; on failure, name the references that cannot be had."""
    from crds.core.exceptions import CrdsError

    def clean(got: dict) -> dict[str, str]:
        return {k: str(v) for k, v in got.items()
                if not (isinstance(v, str) and v.upper().startswith("NOT FOUND"))}

    try:
        return clean(crds.getreferences(params, reftypes=types, context=context, observatory="jwst"))
    except CrdsError as exc:
        first_error = " ".join(str(exc).split())
    missing = missing_from_cache(params, types, context)
    if missing:
        names = ", ".join(f"{t} ({n})" for t, n in missing)
        where = os.environ.get("CRDS_PATH", "the CRDS cache")
        return InputError(f"CRDS reference missing from {where} and no server to fetch it: {names}", path)
    return InputError(f"CRDS lookup failed: {first_error}", path)


def missing_from_cache(params: dict, types: Iterable[str], context: str | None = None) -> list[tuple[str, str]]:
    """``(reftype, file name)`` of the best references for ``params`` that are not in the local cache.

    Uses only the cached mappings (no download), so it works where the server
    is unreachable; ``pars-*`` step-parameter references are left out (optional).
    """
    import crds
    from crds.core import config as crds_config
    from crds.core.exceptions import CrdsError

    missing = []
    for reftype in types:
        if reftype.startswith("pars-"):
            continue
        try:
            rec = crds.getrecommendations(params, reftypes=[reftype], context=context, observatory="jwst", fast=True)
        except CrdsError:
            continue
        name = rec.get(reftype, "")
        if not isinstance(name, str) or name.upper().startswith("NOT FOUND"):
            continue
        if not os.path.exists(crds_config.locate_file(name, "jwst")):
            missing.append((reftype, name))
    return missing


def missing_for_file(path: str | Path) -> list[tuple[str, str]]:
    """References a JWST file needs that are absent from the cache (see :func:`missing_from_cache`)."""
    try:
        return missing_from_cache(crds_parameters(path), pipeline_reftypes())
    except Exception:  # naming is best effort: the caller still reports the original error
        return []


def missing_reference_message(exc: BaseException, path: str | Path | None = None) -> str | None:
    """A one-line explanation if ``exc`` means a reference could not be had (named when possible)."""
    text = " ".join(str(exc).split())
    if "crds" not in type(exc).__module__.lower() and not type(exc).__name__.startswith("Crds"):
        return None
    missing = missing_for_file(path) if path is not None else []
    if missing:
        names = ", ".join(f"{t} ({n})" for t, n in missing)
        return (f"CRDS reference missing from {os.environ.get('CRDS_PATH', 'the CRDS cache')} "
                f"and no server to fetch it: {names}")
    return f"CRDS reference unavailable: {text}"
