"""Command-line wrapper around tests/fake_tool.py (for subprocess and mpiexec tests)."""
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from typing import Annotated, Optional  # noqa: E402

import fake_tool  # noqa: E402
import typer  # noqa: E402
from young.contract import parallel  # noqa: E402
from young.contract import runner as contract  # noqa: E402
from young.contract.cli import launch, option, tool_app  # noqa: E402


def crash(*args, **kwargs):
    raise RuntimeError("simulated crash")


def main(common, factor=2.0, kill_on=None, fail_on=None, crash_in=None):
    """``--crash-in plan|prefetch|rank1``: an unexpected exception in rank 0's planning, in rank 0's
    reference prefetch (the fake tool then claims to use CRDS), or on rank 1 before it joins the farm."""
    spec = fake_tool.SPEC
    if crash_in == "plan":
        contract.plan = crash
    elif crash_in == "prefetch":
        spec = dataclasses.replace(spec, uses_crds=True)
        common = dataclasses.replace(common, prefetch=True)
        contract._prefetch = crash
    elif crash_in == "rank1" and parallel.mpi_comm() is not None and parallel.mpi_comm().Get_rank() == 1:
        crash()
    return contract.run(spec, common, {"factor": factor, "kill_on": kill_on, "fail_on": fail_on})


app = tool_app("young-fake", "Fake per-file tool for tests.", main, [
    option("factor", Annotated[float, typer.Option("--factor")], 2.0),
    option("kill_on", Annotated[Optional[str], typer.Option("--kill-on")], None),
    option("fail_on", Annotated[Optional[str], typer.Option("--fail-on")], None),
    option("crash_in", Annotated[Optional[str], typer.Option("--crash-in")], None),
])

if __name__ == "__main__":
    launch(app)
