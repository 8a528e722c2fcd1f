"""The simulator behind ``young-sim``: synthetic NIRCam imaging with known truth.

Modules:

``instrument``  NIRCam facts: detectors, SIAF apertures and distortion, subarrays,
                readout patterns, filters and PHOTMJSR, per-pixel detector truth
``crds_cache``  a synthetic local CRDS cache consistent with the injected detector
``exposures``   exposure descriptions, level-1b metadata, pointing, pipeline WCS
``scene``       source catalogs, PSFs, rendering (pure numpy)
``artifacts``   background, 1/f noise, wisps, cosmic rays (pure numpy)
``ramps``       up-the-ramp sampling (pure numpy)
``simulate``    presets and the orchestration of a whole set

The public entry point is :func:`young.sim.simulate.simulate` (also
importable as ``young.sim.simulate_set``).
"""

from __future__ import annotations

__all__ = ["simulate_set", "PRESETS"]


def __getattr__(name):
    # lazy: importing young.sim must stay cheap (no jwst/pysiaf import)
    if name == "simulate_set":
        from young.sim.simulate import simulate

        return simulate
    if name == "PRESETS":
        from young.sim.simulate import PRESETS

        return PRESETS
    raise AttributeError(name)
