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


def default_cache() -> str:
    """crds's default cache folder when ``CRDS_PATH`` is not set."""
    return os.path.join(os.path.expanduser("~"), "crds_cache")


def _server_config(cache: str | os.PathLike, cfgpath: str | None = None) -> dict:
    """The cache's record of the server's contexts (``config/jwst/server_config``), or ``{}``."""
    import ast

    try:
        text = (Path(cfgpath or Path(cache) / "config") / "jwst" / "server_config").read_text()
    except OSError:
        return {}
    try:
        info = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            import json

            info = json.loads(text)
        except ValueError:
            return {}
    return info if isinstance(info, dict) else {}


#: symbolic context names and the server_config key that resolves them
_SYMBOLIC = {"jwst-operational": "latest_context", "jwst-latest": "latest_context", "latest": "latest_context",
             "jwst-edit": "edit_context"}


def cached_context(cache: str | os.PathLike) -> str | None:
    """The context crds uses from this cache when none is pinned (``jwst_NNNN.pmap``), or None."""
    info = _server_config(cache)
    ctx = info.get("latest_context") or info.get("operational_context")
    return str(ctx) if ctx else None


@dataclass
class Context:
    """The CRDS context a run will use, as far as the local cache tells.

    Attributes
    ----------
    name : str or None
        ``jwst_NNNN.pmap`` (symbolic names such as ``jwst-operational``
        resolved through the cache's server record), or what was given when it
        cannot be resolved locally, or None when nothing names one.
    given : str or None
        What the user or the environment gave.
    cache : str
        The ``CRDS_PATH`` in force.
    present : bool
        The context's mapping is in the cache (``mappings/jwst/``).
    serverless : bool
        A cache-only set-up: a serverless URL, or no URL with ``CRDS_PATH`` set
        (crds then works from the cache alone).
    certain : bool
        :attr:`name` is the context crds will use: pinned as a ``.pmap`` name, or
        resolved from a cache-only set-up's own record.  With a server and no
        pin, crds asks the server (or uses jwst's build context): the name is
        then only a guess, and the resume key compares references instead.
    """

    name: str | None
    given: str | None
    cache: str
    present: bool
    serverless: bool
    certain: bool = False

    def problem(self) -> str | None:
        """One line naming the context and the cache when the run cannot have it, else None.

        Only a cache-only set-up (a serverless URL) is judged: with a server,
        or none configured (crds then uses its default server), the server
        can supply the context, and the prefetch or jwst says if it cannot.
        """
        if not self.serverless:
            return None
        if self.name is None:
            return (f"no CRDS context: none pinned (--crds-context, config crds_context, $CRDS_CONTEXT) and the "
                    f"cache {self.cache} has no record of the operational one")
        if not self.present:
            return (f"CRDS context {self.name} is not in the cache {self.cache} (mappings/jwst) "
                    f"and no CRDS server is configured to fetch it")
        return None


def resolve_context(env: Mapping[str, str]) -> Context:
    """Work out the CRDS context a run with environment ``env`` uses, from the files of its cache.

    Read from the cache's own files rather than asked of crds: crds reads
    its configuration once, when imported, so in the process that plans a
    run (whose CRDS variables are only those the workers will get) it would
    answer for the wrong cache.
    """
    cache = env.get("CRDS_PATH") or default_cache()
    given = env.get("CRDS_CONTEXT") or None
    url = env.get("CRDS_SERVER_URL", "")
    serverless = "serverless" in url or (not url and bool(env.get("CRDS_PATH")))
    name = given
    if given is None or given in _SYMBOLIC:
        # as crds resolves it from the cache (heavy_client): the latest context, else the operational one
        info = _server_config(cache, env.get("CRDS_CFGPATH"))
        key = _SYMBOLIC.get(given or "latest", "latest_context")
        name = info.get(key) or info.get("operational_context") or None
    maps = Path(env.get("CRDS_MAPPATH") or Path(cache) / "mappings") / "jwst"
    present = bool(name) and (maps / str(name)).is_file()
    certain = bool(name) and (str(given or "").endswith(".pmap") or serverless)
    return Context(str(name) if name else None, given, str(cache), present, serverless, certain)


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


def pipeline_reftypes(pipelines: Iterable[str] = ("Detector1Pipeline", "Image2Pipeline", "Image3Pipeline"),
                      ) -> list[str]:
    """Every reference type (incl. ``pars-*``) the named jwst pipelines may ask for (default: stages 1-3)."""
    from jwst import pipeline as jp

    types: set[str] = set()
    for pipe in (getattr(jp, name) for name in pipelines):
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
    #: ``(reftype, file name)`` of references the cache lacks (and no server gave)
    missing: list[tuple[str, str]] = field(default_factory=list)


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
            rep.missing = list(getattr(got, "missing", []))
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
        err = InputError(f"CRDS reference missing from {where} and no server to fetch it: {names}", path)
        err.missing = missing
        return err
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


def _reference_keywords() -> dict[str, str]:
    """``{FITS keyword: reference type}`` of ``meta.ref_file`` (``R_READNO`` -> ``readnoise``), from the schema."""
    global _REF_KEYWORDS
    if _REF_KEYWORDS is None:
        from stdatamodels.jwst.datamodels import ImageModel

        props = ImageModel((1, 1)).meta.ref_file._schema.get("properties", {})
        _REF_KEYWORDS = {v["properties"]["name"]["fits_keyword"]: k for k, v in props.items()
                         if "fits_keyword" in v.get("properties", {}).get("name", {})}
    return _REF_KEYWORDS


_REF_KEYWORDS: dict[str, str] | None = None


def changed_references(src: str | Path, product: str | Path, context: str | None = None,
                       reftypes: Iterable[str] | None = None) -> list[str]:
    """The reference types whose file CRDS selects now for ``src`` differs from the one ``product`` used.

    ``product`` is a jwst pipeline product (its primary header records its
    references, ``R_DARK`` ...); ``src`` is the input it was made from.  Only
    ``reftypes`` are compared when given (a cal file also carries stage 1's
    references, which redoing stage 2 would not change).  Runs where the
    run's CRDS environment is in force (a worker).

    Returns
    -------
    list of str
        ``"dark: jwst_nircam_dark_0001.fits -> jwst_nircam_dark_0002.fits"`` per changed type;
        empty when nothing changed or the product records no references.
    """
    import crds
    from astropy.io import fits
    from crds.core.exceptions import CrdsError

    header = fits.getheader(product, 0)
    used = {}
    for key, reftype in _reference_keywords().items():
        value = header.get(key)
        if isinstance(value, str) and value.strip().upper() not in ("N/A", ""):
            used[reftype] = value.rsplit("/", 1)[-1]
    if reftypes is not None:
        keep = set(reftypes)
        used = {k: v for k, v in used.items() if k in keep}
    if not used:
        return []
    try:
        now = crds.getrecommendations(crds_parameters(src), reftypes=sorted(used), context=context,
                                      observatory="jwst", fast=True)
    except CrdsError as exc:
        return [f"CRDS cannot select them ({' '.join(str(exc).split())[:200]})"]
    out = []
    for reftype, name in sorted(used.items()):
        new = now.get(reftype)
        new = new.rsplit("/", 1)[-1] if isinstance(new, str) and not new.upper().startswith("NOT FOUND") else None
        if new is not None and new != name:
            out.append(f"{reftype}: {name} -> {new}")
    return out
