"""Stage tools: ``young-stage1`` (uncal → rate) and ``young-stage2`` (rate → cal).

The unchanged jwst pipelines do the work (``Detector1Pipeline``,
``Image2Pipeline``); this module only maps YOUNG's parameters onto them and
lets the contract (:mod:`young.contract.runner`) handle lists, resume, atomic
writes, CRDS prefetch and MPI.  jwst writes into the product's hidden
temporary folder; the finished product is then moved into place, so a killed
run never leaves a half-written ``_rate``/``_cal``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from young.contract import config as configmod
from young.contract import fitscheck, naming
from young.contract.errors import UsageError
from young.contract.pipelinecheck import check_steps
from young.contract.records import Job, ToolSpec

#: seed config keys → jwst step parameters
SEED_STEP_KEYS = {"ramp_fit_cores": "ramp_fit.maximum_cores", "jump_cores": "jump.maximum_cores"}


def _params(pipeline_name: str, section: dict, cli: dict) -> dict:
    steps = dict(cli.get("steps") or {})
    if steps:  # only what the user gave (importing jwst is slow; YOUNG's own keys are known good)
        check_steps(pipeline_name, steps)
    for seed_key, target in SEED_STEP_KEYS.items():
        if pipeline_name == "Detector1Pipeline" and section.get(seed_key) is not None:
            steps.setdefault(target, str(section[seed_key]))
    if cli.get("resample") is not None and pipeline_name == "Image2Pipeline":
        steps.setdefault("resample.skip", not cli["resample"])
    elif pipeline_name == "Image2Pipeline":
        steps.setdefault("resample.skip", not bool(section.get("resample", False)))
    param_file = cli.get("param_file") or section.get("param_file")
    pf = None
    if param_file:
        p = Path(param_file)
        if not p.is_file():
            raise UsageError("parameter file not found", p)
        pf = {"path": str(p.resolve()), "mtime": p.stat().st_mtime}
    out = {"pipeline": pipeline_name, "steps": steps, "param_file": pf}
    if pipeline_name == "Detector1Pipeline":
        keep = cli.get("rateints") if cli.get("rateints") is not None else section.get("rateints", False)
        if keep:   # hashed only when asked for: products made without it stay up to date
            out["rateints"] = True
    return out


def stage1_params(section: dict, cli: dict) -> dict:
    return _params("Detector1Pipeline", section, cli)


def stage2_params(section: dict, cli: dict) -> dict:
    return _params("Image2Pipeline", section, cli)


def run_pipeline(job: Job) -> dict:
    """Run the jwst pipeline named in ``job.params`` into ``job.tmp``'s folder."""
    from jwst import pipeline as jp

    cls = getattr(jp, job.params["pipeline"])
    work = job.work
    kwargs: dict[str, Any] = dict(
        output_dir=str(work), save_results=True, steps=configmod.nest_steps(job.params["steps"]), configure_log=False,
    )
    if job.params.get("param_file"):
        kwargs["config_file"] = job.params["param_file"]["path"]
    job.log.info("running %s on %s", cls.__name__, job.src)
    cls.call(str(job.src), **kwargs)
    if not job.tmp.exists():
        made = sorted(p.name for p in work.iterdir())
        raise RuntimeError(f"{cls.__name__} did not write {job.tmp.name} (wrote: {', '.join(made) or 'nothing'})")
    # Detector1 always writes the per-integration X_rateints.fits beside X_rate.fits: nothing in YOUNG
    # reads it, so it is kept only when asked for (--rateints); other secondary products (the i2d of
    # --resample) are moved into place with the primary by the runner
    if job.params["pipeline"] == "Detector1Pipeline" and not job.params.get("rateints"):
        for f in work.glob("*_rateints.fits"):
            f.unlink()
    return {}


def stage1_product(src: Path, output_dir: Path | None, params: dict) -> Path:
    return naming.product_path(src, suffix="rate", output_dir=output_dir)


def stage2_product(src: Path, output_dir: Path | None, params: dict) -> Path:
    return naming.product_path(src, suffix="cal", output_dir=output_dir)


def validate_uncal(src: Path, params: dict):
    return fitscheck.check_nircam_image(src, "uncal")


def validate_rate(src: Path, params: dict):
    return fitscheck.check_nircam_image(src, "rate")


def stage1_reftypes(params: dict) -> list[str]:
    """CRDS reference types Detector1Pipeline may ask for (checked before any work)."""
    from young.contract.crdsenv import pipeline_reftypes

    return pipeline_reftypes(("Detector1Pipeline",))


def stage2_reftypes(params: dict) -> list[str]:
    """CRDS reference types Image2Pipeline may ask for (checked before any work)."""
    from young.contract.crdsenv import pipeline_reftypes

    return pipeline_reftypes(("Image2Pipeline",))


def import_pipelines() -> None:
    """Import jwst's pipelines (slow): ``ToolSpec.warm`` of the stage tools."""
    from jwst import pipeline  # noqa: F401


STAGE1 = ToolSpec(
    name="young-stage1", section="stage1", consumes=("uncal",),
    product=stage1_product, process=run_pipeline, validate=validate_uncal,
    build_params=stage1_params, uses_crds=True, warm=import_pipelines, runs_jwst_steps=True,
    config_sections="young.steps.specs:section_params", reftypes=stage1_reftypes,
)

STAGE2 = ToolSpec(
    name="young-stage2", section="stage2", consumes=("rate",),
    product=stage2_product, process=run_pipeline, validate=validate_rate,
    build_params=stage2_params, uses_crds=True, warm=import_pipelines, runs_jwst_steps=True,
    config_sections="young.steps.specs:section_params", reftypes=stage2_reftypes,
)


def stage_app(spec: ToolSpec):
    """The typer app of a stage tool (both share their options)."""
    from typing import Annotated, Optional

    import typer

    from young.contract import runner as contract
    from young.contract.cli import option, tool_app

    pipeline = "Detector1Pipeline" if spec is STAGE1 else "Image2Pipeline"
    own = [
        option("param_file", Annotated[Optional[str], typer.Option(
            "--param-file", help=f"stpipe parameter file (.asdf/.cfg) for {pipeline}.", metavar="FILE")], None),
        option("prefetch", Annotated[Optional[bool], typer.Option(
            "--prefetch/--no-prefetch",
            help="Fetch all CRDS references first (default: when running in parallel with a CRDS server; "
                 "a serverless cache has nothing to fetch).")],
            None),
    ]
    if spec is STAGE1:
        own.append(option("rateints", Annotated[Optional[bool], typer.Option(
            "--rateints/--no-rateints", show_default=False,
            help="Also keep jwst's per-integration X_rateints.fits (default: off; config key rateints).")],
            None))
    if spec is STAGE2:
        own.append(option("resample", Annotated[Optional[bool], typer.Option(
            "--resample/--no-resample",
            help="Also make the per-exposure i2d (default: off; config key stage2: resample).")], None))

    def main(common, param_file=None, prefetch=None, resample=None, rateints=None):
        common.prefetch = prefetch
        return contract.run(spec, common, {"param_file": param_file, "resample": resample, "rateints": rateints})

    src, dst = ("*_uncal.fits", "X_rate.fits") if spec is STAGE1 else ("*_rate.fits", "X_cal.fits")
    examples = (["young-stage1 --config young.yaml -j 2 raw/", "young-stage1 --set jump.rejection_threshold=5 raw/",
                 "young-stage1 raw/ | young-fnoise | young-stage2"] if spec is STAGE1 else
                ["young-stage2 stage1/", "young-stage2 --resample X_1f_rate.fits",
                 "young-stage2 stage1/ | young-wisp | young-bkg"])
    return tool_app(spec.name, f"Run jwst's {pipeline} on {src} files (arguments, directories or stdin); "
                    f"write {dst} beside each input (or in --output-dir) and print the product paths.", main, own,
                    examples=examples)
