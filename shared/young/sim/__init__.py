"""The simulator behind ``young-sim``: synthetic NIRCam imaging with known truth.

Modules:

``instrument``  NIRCam facts: detectors, SIAF apertures and distortion, subarrays,
                readout patterns, filters and PHOTMJSR, per-pixel detector truth
``crds_cache``  a synthetic local CRDS cache consistent with the injected detector
``exposures``   exposure descriptions, level-1b metadata, pointing, pipeline WCS
``scene``       source catalogs, PSFs, rendering (pure numpy)
``artifacts``   background, 1/f noise, wisps, cosmic rays (pure numpy)
``ramps``       up-the-ramp sampling (pure numpy)
``presets``     presets of simulated sets and the plan of their exposures
``stage1_model`` what jwst's stage 1 makes of the injected 1/f (the truth the tests use)
``mast``        a set laid out as a MAST download (non-imaging files, a duplicate)
``simulate``    the orchestration of a whole set
``metrics``     figures against the truth (stripe residual, statistical floors)
``report``      the demo's QA report

The public entry point is :func:`young.sim.simulate.simulate` (also
importable as ``young.sim.simulate_set``).

May import: every layer below (contract, algorithms, steps, stage3); nothing
imports the simulator (docs/architecture.md, "Layers").
"""

from __future__ import annotations

__all__ = ["simulate_set", "PRESETS"]


def __getattr__(name):
    # lazy: importing young.sim must stay cheap (no jwst/pysiaf import)
    if name == "simulate_set":
        from young.sim.simulate import simulate

        return simulate
    if name == "PRESETS":
        from young.sim.presets import PRESETS

        return PRESETS
    raise AttributeError(name)
