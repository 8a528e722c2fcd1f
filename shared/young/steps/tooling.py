"""The correction tools (``young-fnoise``, ``young-wisp``, ``young-bkg``) around their stpipe steps.

A tool is its step's spec (:mod:`young.steps.specs`) plus the tool contract:
the options and help come from the spec (:func:`young.contract.cli.spec_options`),
the parameters are the spec's values from the command line over the config
section over the defaults (:func:`young.contract.spec.resolve`), checked
before any file is touched, and each file runs through the step
(``process`` of the step module, imported only in the worker) under the
contract's runner.  Nothing here imports jwst: ``--help``, ``--version`` and
the input checks stay fast.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from young.contract import naming
from young.contract.config import SOURCE_KEY
from young.contract.errors import UsageError
from young.contract.records import ToolSpec
from young.contract.spec import parse_spec, resolve
from young.steps import models, specs

FNOISE_PARAMS = parse_spec(specs.FNOISE)
WISP_PARAMS = parse_spec(specs.WISP)
BKG_PARAMS = parse_spec(specs.BKG)

#: option declarations that differ from ``--name`` (short flags, shorter names)
FNOISE_FLAGS = {"method": ("--method", "-m")}
WISP_FLAGS = {"wisp_templates": ("--wisp-templates", "-t"), "lw_dirs": ("--lw-dir",), "use_lw": ("--lw/--no-lw",)}
BKG_FLAGS = {"mode": ("--mode", "-m"), "ring_radius_in": ("--ring-radius",)}
METAVARS = {"user_mask": "FITS", "wisp_templates": "DIR", "templates": "DIR", "lw_dirs": "DIR",
            "bounds": "LO,HI", "scale": "S", "flag_threshold": "T", "dilate": "PX", "box": "PX",
            "ring_radius_in": "PX", "ring_width": "PX"}


def _folder(value: str | None, what: str, where: str) -> str | None:
    if not value:
        return None
    folder = Path(str(value)).expanduser()
    if not folder.is_dir():
        raise UsageError(f"{what} not found ({where})", folder)
    return str(folder.resolve())


def fnoise_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a 1/f product (hashed for resume, recorded in the header).

    Command-line values beat the ``fnoise:`` config section, which beats the
    top level and the spec's defaults.

    Raises
    ------
    UsageError
        A value the spec does not allow, a missing user mask or template folder.
    """
    p = resolve(FNOISE_PARAMS, section, cli, section.get(SOURCE_KEY, "fnoise config"), FNOISE_FLAGS)
    if p["user_mask"]:
        path = Path(str(p["user_mask"])).expanduser()
        if not path.is_file():
            raise UsageError("--user-mask: no such file", path)
        p["user_mask"] = str(path.resolve())
        p["user_mask_mtime"] = path.stat().st_mtime
    templates = p["wisp_templates"] or section.get("wisp_directory")
    p["wisp_templates"] = (_folder(templates, "wisp template folder", "--wisp-templates / wisp_directory")
                           if p["wisp_model"] else None)
    return p


def wisp_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a wisp product (hashed for resume, recorded in the header).

    The template folder also comes from the config's ``wisp_directory``.

    Raises
    ------
    UsageError
        A value the spec does not allow, bounds not increasing, a missing folder.
    """
    p = resolve(WISP_PARAMS, section, cli, section.get(SOURCE_KEY, "wisp config"), WISP_FLAGS)
    # 0.1 called the parameter ``templates``: its configs still work
    p["wisp_templates"] = _folder(p["wisp_templates"] or section.get("templates") or section.get("wisp_directory"),
                                  "wisp template folder", "--wisp-templates / wisp_directory")
    lo, hi = p["bounds"]
    if not hi > lo:
        raise UsageError(f"--bounds: expected LO < HI, got {lo}, {hi}")
    p["bounds"] = [float(lo), float(hi)]
    if p["flag_threshold"] is not None and p["flag_threshold"] <= 0:
        raise UsageError("--flag-threshold: must be > 0 (data units, e.g. MJy/sr)")
    p["lw_dirs"] = [_folder(d, "long-wave folder", "--lw-dir") for d in p["lw_dirs"] or []]
    return p


def bkg_params(section: dict, cli: dict) -> dict:
    """Parameters that shape a background product (hashed for resume, recorded in the header).

    Tier parameters are lists with one value per tier of the preset (4 for
    both presets); ``box`` only shapes ``2d`` products.

    Raises
    ------
    UsageError
        A value the spec does not allow, or mask parameters the mask rejects.
    """
    from young.algorithms import masks

    p = resolve(BKG_PARAMS, section, cli, section.get(SOURCE_KEY, "bkg config"), BKG_FLAGS)
    overrides = {k: p[k] for k in ("tier_kernel_size", "tier_npixels", "tier_nsigma", "tier_dilate_size",
                                   "ring_radius_in", "ring_width") if p[k] is not None}
    try:
        masks.params_for(p["mask_preset"], **overrides)
    except ValueError as exc:
        raise UsageError(f"mask: {exc}") from None
    if p["mode"] != "2d":
        p.pop("box")  # does not shape a pedestal product
    return p


def tagged_product(tag: str, src: Path, output_dir: Path | None, params: dict) -> Path:
    """``X_cal -> X_<tag>_cal`` (``X_rate -> X_<tag>_rate``), beside the input or in ``output_dir``."""
    return naming.product_path(src, tag=tag, output_dir=output_dir)


def fnoise_needs_crds(params: dict) -> bool:
    """young-fnoise reads a CRDS reference (the FLAT) only when it measures through the flat."""
    return bool(params.get("flat", True))


def validate_rate_or_cal(src: Path, params: dict):
    """A NIRCam imaging rate or cal file; returns its primary header."""
    return models.validate_image(src, ("rate", "cal"))


def validate_cal(src: Path, params: dict):
    """A NIRCam imaging cal file (the sky is measured in surface brightness); returns its primary header."""
    return models.validate_image(src, ("cal",))


# partials of a module-level function: the tool specification is pickled to --jobs workers and MPI ranks
product_1f = functools.partial(tagged_product, "1f")
product_wisp = functools.partial(tagged_product, "wisp")
product_bkg = functools.partial(tagged_product, "bkg")

FNOISE = ToolSpec(
    name="young-fnoise", section="fnoise", consumes=("rate", "cal"), product=product_1f,
    process="young.steps.fnoise_step:process", validate=validate_rate_or_cal, accept=models.not_tagged("1f"),
    build_params=fnoise_params, uses_crds=True, applied_keyword="YNG1F", tag="1f",
    algorithm="2",   # 2: compact mask, along-row term, column shrinkage (0.2.0)
    needs_crds="young.steps.tooling:fnoise_needs_crds",
    config_sections="young.steps.specs:section_params",
)
WISP = ToolSpec(
    name="young-wisp", section="wisp", consumes=("rate", "cal"), product=product_wisp,
    process="young.steps.wisp_step:process", validate=validate_rate_or_cal, accept=models.not_tagged("wisp"),
    build_params=wisp_params, applied_keyword="YNGWISP", tag="wisp",
    config_sections="young.steps.specs:section_params",
)
BKG = ToolSpec(
    name="young-bkg", section="bkg", consumes=("cal",), product=product_bkg,
    process="young.steps.bkg_step:process", validate=validate_cal, accept=models.not_tagged("bkg"),
    build_params=bkg_params, applied_keyword="YNGBKG", tag="bkg",
    config_sections="young.steps.specs:section_params",
)

_HELP = {
    "young-fnoise": "Remove 1/f noise (horizontal stripes) from NIRCam *_rate.fits and *_cal.fits files "
                    "(arguments, directories or stdin); write X_1f_rate.fits / X_1f_cal.fits beside each input "
                    "(or in --output-dir) and print the product paths.",
    "young-wisp": "Subtract scaled wisp templates from NRCA3/A4/B3/B4 *_cal.fits (or *_rate.fits) files "
                  "(arguments, directories or stdin); write X_wisp_cal.fits beside each input (or in "
                  "--output-dir) and print the product paths. Other detectors pass through unchanged.",
    "young-bkg": "Subtract the sky background from *_cal.fits files (arguments, directories or stdin) and rescale "
                 "VAR_RNOISE to the measured sky noise; write X_bkg_cal.fits beside each input (or in "
                 "--output-dir) and print the product paths.",
}


_EXAMPLES = {
    "young-fnoise": ["young-fnoise stage1/                      # every *_rate.fits in stage1/",
                     "young-fnoise -j 2 --plot stage1/*_rate.fits",
                     "young-fnoise --method gradient --user-mask icl_mask.fits X_rate.fits",
                     "young-stage1 raw/ | young-fnoise | young-stage2"],
    "young-wisp": ["young-wisp --wisp-templates wisp_templates/ stage2/",
                   "young-stage2 stage1/ | young-wisp | young-bkg"],
    "young-bkg": ["young-bkg stage2/",
                  "young-bkg --mode 2d --save-mask X_wisp_cal.fits"],
}


def app(spec: ToolSpec):
    """The typer app of a correction tool: the common options and its step's spec."""
    from typing import Annotated, Optional

    import typer

    from young.contract import runner
    from young.contract.cli import option, spec_options, tool_app

    params, flags = {"young-fnoise": (FNOISE_PARAMS, FNOISE_FLAGS), "young-wisp": (WISP_PARAMS, WISP_FLAGS),
                     "young-bkg": (BKG_PARAMS, BKG_FLAGS)}[spec.name]
    own = spec_options(params, flags, METAVARS)
    if spec.uses_crds:
        own.append(option("prefetch", Annotated[Optional[bool], typer.Option(
            "--prefetch/--no-prefetch", show_default=False,
            help="Fetch the CRDS references first (default: when running in parallel with a CRDS server).")],
            None))

    def main(common, prefetch=None, **values: Any):
        common.prefetch = prefetch
        return runner.run(spec, common, values)

    return tool_app(spec.name, _HELP[spec.name], main, own, examples=_EXAMPLES[spec.name])
