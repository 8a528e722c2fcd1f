"""jwst step parameters given with ``--set`` or a config's ``steps:``, checked against the pipeline before any work.

jwst is imported only when there is something to check (it takes seconds).
"""

from __future__ import annotations

from typing import Any

from young.contract import config as configmod
from young.contract.errors import UsageError
from young.contract.spec import unknown_key_message


def check_steps(pipeline_name: str, steps: dict[str, Any]) -> None:
    """Check ``--set``/config step parameters against the pipeline's own specs, before any work.

    Step names against the pipeline's steps, parameter names and values
    against each step's stpipe spec (the checks stpipe would make on the
    first file, made once up front so a typo stops the run instead of
    failing every file).

    Raises
    ------
    UsageError
        Naming the step or parameter (with the closest known name) or the bad value.
    """
    from configobj import ConfigObj
    from jwst import pipeline as jp
    from stpipe import config_parser

    known = getattr(jp, pipeline_name).step_defs
    for step, values in configmod.nest_steps(steps).items():
        if step not in known:
            raise UsageError(unknown_key_message(step, sorted(known), f"--set/config steps: {pipeline_name}")
                             .replace("unknown key", "no step"))
        spec = known[step].load_spec_file()
        for name in values:
            if name not in spec:
                raise UsageError(unknown_key_message(name, sorted(spec), f"--set/config steps: {step}")
                                 .replace("unknown key", "no parameter"))
        try:
            config_parser.validate(ConfigObj({k: v for k, v in values.items()}), spec)
        except Exception as exc:  # noqa: BLE001 - stpipe's ValidationError; its text names the parameter
            raise UsageError(f"--set/config steps: {step}: {' '.join(str(exc).split())}") from None
