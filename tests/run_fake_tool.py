"""Command-line wrapper around tests/fake_tool.py (for subprocess and mpiexec tests)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

import fake_tool  # noqa: E402
from young import contract  # noqa: E402
from young.cli import launch, option, tool_app  # noqa: E402


def main(common, factor=2.0, kill_on=None, fail_on=None):
    return contract.run(fake_tool.SPEC, common, {"factor": factor, "kill_on": kill_on, "fail_on": fail_on})


app = tool_app("young-fake", "Fake per-file tool for tests.", main, [
    option("factor", Annotated[float, typer.Option("--factor")], 2.0),
    option("kill_on", Annotated[Optional[str], typer.Option("--kill-on")], None),
    option("fail_on", Annotated[Optional[str], typer.Option("--fail-on")], None),
])

if __name__ == "__main__":
    launch(app)
