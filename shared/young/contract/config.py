"""Configuration: ``--config FILE``, else ``$YOUNG_CONFIG``, else none.

A YAML mapping.  Top-level keys apply to every tool; a section named after a
tool (``stage1``, ``stage2``, ``fnoise``, ``wisp``, ``bkg``, ``stage3``,
``refs``) overrides them for that tool.  Inside a section, ``steps`` holds
jwst step parameters (``steps: {jump: {rejection_threshold: 5}}``), the same
thing ``--set jump.rejection_threshold=5`` gives on the command line.
Command-line options beat the section, which beats the top level.

The seed pipeline's ``config.yaml`` keys are accepted where they still mean
something (``wisp_directory``, ``skip_steps``, ``ramp_fit_cores``,
``jump_cores``, ``pixel_scale``, ``pixfrac``, ``rotation``, ``res_kernel``,
``starfinder``, ``snr_threshold``, ``fitgeometry``, ``abs_fitgeometry``,
``skymethod``, ``extract_sci|err|wht``, ...).  Unknown keys are reported, not
silently ignored.  Relative paths are resolved against the config file's own
folder, never the current directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from young.contract.errors import UsageError

#: the key of :meth:`Config.section`'s result that names its source in error messages
SOURCE_KEY = "__source__"

SECTIONS = ("stage1", "stage2", "fnoise", "wisp", "bkg", "stage3", "refs", "sim")

#: keys whose values are paths (resolved against the config file's folder)
PATH_KEYS = {
    "crds_path", "wisp_directory", "output_directory", "input_directory", "data_directory", "refcat",
    "truth_directory", "templates", "wisp_templates", "output_dir", "param_file", "user_mask", "lw_dirs",
}

#: top-level keys understood (seed keys included), with what they mean
KNOWN_KEYS = {
    # CRDS
    "crds_path": "CRDS cache folder (CRDS_PATH)",
    "crds_context": "CRDS context to pin, e.g. jwst_1322.pmap (CRDS_CONTEXT)",
    "crds_server_url": "CRDS server (CRDS_SERVER_URL); a URL with 'serverless' means offline",
    # layout
    "input_directory": "folder searched recursively for exposures (make all INPUT=)",
    "data_directory": "(seed) same as input_directory",
    "dir_prefix": "(seed) only top-level input folders starting with this are searched (make all DIR_PREFIX=)",
    "output_directory": "where products go (make all OUTPUT=)",
    "layout": "output trees: combined, program or directory (make all LAYOUT=)",
    "name": "folder of the combined tree under the output folder (make all NAME=)",
    "start": "begin every exposure at this product level or later: uncal, rate or cal (make all START=)",
    "combine_observations": "(seed) true: layout combined; false: layout program",
    "custom_name": "(seed) same as name",
    "group_by_directory": "(seed) true: layout directory (one tree per top-level input folder)",
    "program_subdirs": "true: layout program (one output tree per PROGRAM)",
    "skip_steps": "corrections left out of the chain: fnoise, wisp, bkg",
    "jobs": "local processes per tool",
    "max_memory": "memory budget, e.g. 16G",
    "tile_size": "stage 3 in tiles of this many pixels (or auto)",
    "tile_margin": "stage 3 tiles: pixels around each core",
    "stitch": "stage 3 tiles: also write the full mosaic",
    "truth_directory": "young-sim truth (QA report)",
    # wisp
    "wisp_directory": "folder of WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits templates",
    # seed stage-1 keys
    "ramp_fit_cores": "jwst ramp_fit.maximum_cores",
    "jump_cores": "jwst jump.maximum_cores",
    # seed stage-3 keys
    "pixel_scale": "mosaic pixel scale (arcsec)",
    "pixfrac": "drizzle pixfrac",
    "rotation": "mosaic rotation (deg)",
    "res_kernel": "drizzle kernel",
    "starfinder": "tweakreg starfinder",
    "snr_threshold": "tweakreg snr_threshold",
    "fitgeometry": "tweakreg fitgeometry",
    "abs_fitgeometry": "tweakreg abs_fitgeometry",
    "skymethod": "skymatch skymethod",
    "refcat": "external RA/DEC catalog for the reference filter",
    "extract_sci": "write single-extension SCI images",
    "extract_err": "write single-extension ERR images",
    "extract_wht": "write single-extension WHT images",
    # seed keys that no longer do anything, accepted for old files
    "download_uncal_references": "(seed) always done once by young-refs",
    "download_rate_references": "(seed) always done once by young-refs",
    "download_cal_references": "(seed) always done once by young-refs",
}

#: keys of each tool's section besides the top-level ones (which a section may override); the
#: sections of the correction tools also take their step's parameters (``ToolSpec.config_sections``)
SECTION_KEYS = {
    "stage1": {"steps", "param_file", "rateints", "output_dir"},
    "stage2": {"steps", "param_file", "resample", "output_dir"},
    "stage3": {"steps", "output_dir"},
    "fnoise": {"output_dir"},
    "wisp": {"output_dir", "templates"},   # templates: 0.1's name of wisp_templates
    "bkg": {"output_dir"},
    "refs": set(),
    "sim": set(),
}

#: seed step names accepted in skip_steps, mapped to YOUNG's
SKIP_ALIASES = {
    "fnoise": "fnoise", "fnoise_correction": "fnoise", "cal_fnoise_reduction": "fnoise",
    "wisp": "wisp", "wisp_subtraction": "wisp",
    "bkg": "bkg", "background_subtraction": "bkg",
}


@dataclass
class Config:
    """A loaded configuration.

    Attributes
    ----------
    data : dict
        The YAML mapping with paths resolved.
    path : Path or None
        The file it came from.
    warnings : list of str
        Unknown keys and other remarks, one line each.
    """

    data: dict = field(default_factory=dict)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def section(self, tool: str) -> dict:
        """Top-level keys overlaid with the tool's own section.

        :data:`SOURCE_KEY` holds how errors name a value of it (``young.yaml: fnoise``).
        """
        merged = {k: v for k, v in self.data.items() if k not in SECTIONS}
        merged.update(self.data.get(tool) or {})
        merged[SOURCE_KEY] = f"{self.path}: {tool}" if self.path else f"config {tool}"
        return merged

    def get(self, key: str, tool: str | None = None, default: Any = None) -> Any:
        if tool is not None:
            sec = self.data.get(tool) or {}
            if key in sec:
                return sec[key]
        return self.data.get(key, default)

    def step_parameters(self, tool: str) -> dict[str, Any]:
        """jwst step parameters for ``tool`` as ``{'step.param': value}``."""
        out = flatten_steps((self.data.get(tool) or {}).get("steps") or {})
        # seed keys for stage 1
        if tool == "stage1":
            for seed_key, step in (("ramp_fit_cores", "ramp_fit"), ("jump_cores", "jump")):
                value = self.get(seed_key, tool)
                if value is not None:
                    out.setdefault(f"{step}.maximum_cores", str(value))
        return out


def flatten_steps(steps: Mapping[str, Any]) -> dict[str, Any]:
    """``{jump: {rejection_threshold: 5}}`` or ``{'jump.rejection_threshold': 5}`` → flat dict."""
    out: dict[str, Any] = {}
    for key, value in steps.items():
        if isinstance(value, Mapping):
            for k2, v2 in flatten_steps(value).items():
                out[f"{key}.{k2}"] = v2
        else:
            out[str(key)] = value
    return out


def nest_steps(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{'jump.rejection_threshold': 5}`` → ``{'jump': {'rejection_threshold': 5}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        step, _, param = key.partition(".")
        out.setdefault(step, {})[param] = value
    return out


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``--set STEP.PARAM=VALUE`` options (values read as YAML scalars).

    Raises
    ------
    UsageError
        For an item without ``=`` or without a ``STEP.`` prefix.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or "." not in key or key.startswith(".") or key.endswith("."):
            raise UsageError(f"--set {item!r}: expected STEP.PARAM=VALUE, e.g. jump.rejection_threshold=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def _resolve_path(value: str, base: Path) -> str:
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in PATH_KEYS and isinstance(v, str) and v:
                out[k] = _resolve_path(v, base)
            elif k in PATH_KEYS and isinstance(v, list):
                out[k] = [_resolve_path(x, base) if isinstance(x, str) and x else x for x in v]
            else:
                out[k] = _resolve_paths(v, base)
        return out
    return node


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration.

    Parameters
    ----------
    path : path-like, optional
        ``--config`` value; default ``$YOUNG_CONFIG``; neither → empty config.
    env : mapping, optional
        Environment to read ``YOUNG_CONFIG`` from (default ``os.environ``).

    Raises
    ------
    UsageError
        The file is missing, unreadable, not YAML, or not a mapping.
    """
    import yaml

    env = os.environ if env is None else env
    if path is None:
        path = env.get("YOUNG_CONFIG") or None
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config: {exc.strerror or exc}", p) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"config is not valid YAML{where}", p) from None
    if not isinstance(data, dict):
        raise UsageError("config must be a YAML mapping of keys to values", p)
    cfg = Config(_resolve_paths(data, p.parent.resolve()), p)
    for key, value in data.items():
        if key in SECTIONS:
            if value is not None and not isinstance(value, dict):
                cfg.warnings.append(f"{p}: section '{key}' must be a mapping; ignored")
                cfg.data[key] = {}
    skip = data.get("skip_steps") or []
    if isinstance(skip, str):
        skip = skip.split()
    for name in skip:
        if name not in SKIP_ALIASES:
            raise UsageError(
                f"skip_steps: unknown step '{name}' (known: {', '.join(sorted(set(SKIP_ALIASES.values())))})", p
            )
    return cfg


def check_keys(cfg: Config, step_sections: Mapping[str, Iterable[str]]) -> None:
    """Raise for the first unknown key of the config, at any level.

    Top-level keys must be :data:`KNOWN_KEYS`, a section name, or a key of some
    section (the top level applies to every tool).  A section's keys must be
    top-level keys, its :data:`SECTION_KEYS` or, for the sections in
    ``step_sections``, its step's parameters.  Sections whose step
    parameters are not given are checked only by their own tool.

    Parameters
    ----------
    cfg : Config
    step_sections : mapping of str to iterable of str
        ``{section: parameter names}`` for ``fnoise``, ``wisp``, ``bkg``.

    Raises
    ------
    UsageError
        ``young.yaml: fnoise: unknown key 'mask_tresh' (did you mean mask_thresh?)``.
    """
    from young.contract.spec import unknown_key_message

    if cfg.path is None:
        return
    step_sections = {k: set(v) for k, v in step_sections.items()}
    complete = {"fnoise", "wisp", "bkg"} <= set(step_sections)
    every = set(KNOWN_KEYS).union(*SECTION_KEYS.values(), *step_sections.values())
    for key in cfg.data:
        if key in SECTIONS or key in every:
            continue
        if complete:
            raise UsageError(unknown_key_message(str(key), sorted(every | set(SECTIONS)), str(cfg.path)))
        cfg.warnings.append(unknown_key_message(str(key), sorted(every | set(SECTIONS)), str(cfg.path)) + ": ignored")
    for name in SECTIONS:
        sec = cfg.data.get(name)
        if not isinstance(sec, dict) or (name in ("fnoise", "wisp", "bkg") and name not in step_sections):
            continue
        known = set(KNOWN_KEYS) | SECTION_KEYS[name] | step_sections.get(name, set())
        for key in sec:
            if key not in known:
                raise UsageError(unknown_key_message(str(key), sorted(known), f"{cfg.path}: {name}"))


def skip_steps(cfg: Config) -> set[str]:
    """YOUNG step names listed in ``skip_steps`` (seed names mapped)."""
    skip = cfg.data.get("skip_steps") or []
    if isinstance(skip, str):
        skip = skip.split()
    return {SKIP_ALIASES[s] for s in skip}


def _main(argv: list[str]) -> int:
    """``python -m young.contract.config skip-steps FILE``: the Makefile's view of ``skip_steps``."""
    import sys

    if len(argv) != 2 or argv[0] != "skip-steps":
        print("usage: python -m young.contract.config skip-steps CONFIG", file=sys.stderr)
        return 2
    try:
        print(" ".join(sorted(skip_steps(load(argv[1])))))
    except UsageError as exc:
        print(f"young config: {exc.line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
