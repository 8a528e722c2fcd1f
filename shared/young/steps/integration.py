"""stpipe entry point: the YOUNG correction steps, by their ``strun`` aliases.

Registered in ``pyproject.toml`` under ``[project.entry-points."stpipe.steps"]``,
as jwst registers its own, so ``strun young_fnoise X_rate.fits`` finds
:class:`young.steps.fnoise_step.FnoiseStep` without importing it first.
"""


def get_steps() -> list[tuple[str, str, bool]]:
    """``(class name, alias, is a pipeline)`` of every step this package provides."""
    return [
        ("young.steps.fnoise_step.FnoiseStep", "young_fnoise", False),
        ("young.steps.wisp_step.WispStep", "young_wisp", False),
        ("young.steps.bkg_step.BkgStep", "young_bkg", False),
    ]
