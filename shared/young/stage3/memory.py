"""Memory: the budget (``--max-memory``), what one Image3 run of a group needs, how many fit at once.

The model's coefficients were measured with jwst 3.0 on NIRCam data
(bench/stage3; docs/performance.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from young.contract.errors import UsageError
from young.stage3.exposures import Group, footprint_pixels

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str | int | float | None) -> int | None:
    """``'16G'``, ``'500M'``, ``'2.5GB'``, ``'1024'`` (bytes) -> bytes; None stays None.

    Raises
    ------
    UsageError
        Unparseable or not positive.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
        if not m:
            raise UsageError(f"--max-memory {text!r}: expected a size such as 16G, 500M or 2.5GB")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise UsageError(f"--max-memory {text!r}: must be positive")
    return int(value)


def available_memory() -> int:
    """Memory available to new processes (bytes): psutil's estimate, else /proc/meminfo."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


#: Memory model of one Image3 run (bytes), measured with jwst 3.0 on NIRCam data
#: (see bench/stage3): a process with jwst imported, plus per input pixel (all
#: arrays of a cal model held by the ModelLibrary), plus per mosaic pixel
#: (resample's outputs and the outlier-detection median of the exposures).
BASE_BYTES = 650 * 1024**2
IN_MEMORY_BYTES_PER_INPUT_PIXEL = 40
ON_DISK_INPUT_MODELS = 2
BYTES_PER_MOSAIC_PIXEL = 56
MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE = 4


def estimate_memory(n_inputs: int, input_pixels: int, mosaic_pixels: int, n_exposures: int,
                    in_memory: bool) -> int:
    """Peak memory (bytes) of one group's Image3 run.

    Parameters
    ----------
    n_inputs : int
        Number of cal files.
    input_pixels : int
        Their total number of pixels.
    mosaic_pixels : int
        Pixels of the output mosaic.
    n_exposures : int
        Exposures (outlier detection's median stacks one resampled image per exposure).
    in_memory : bool
        jwst's ``in_memory``: all inputs held (True) or shelved to disk (False).
    """
    per_input = input_pixels / max(n_inputs, 1)
    if in_memory:
        inputs_b = input_pixels * IN_MEMORY_BYTES_PER_INPUT_PIXEL
        median = mosaic_pixels * MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE * max(n_exposures, 1)
    else:
        inputs_b = ON_DISK_INPUT_MODELS * per_input * IN_MEMORY_BYTES_PER_INPUT_PIXEL
        median = mosaic_pixels * MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE * 2
    return int(BASE_BYTES + inputs_b + median + mosaic_pixels * BYTES_PER_MOSAIC_PIXEL)


def plan_memory(estimates: Sequence[tuple[int, int]], budget: int, jobs: int) -> tuple[int, list[bool]]:
    """How many groups run at once, and which run in memory.

    Parameters
    ----------
    estimates : sequence of (in_memory_bytes, on_disk_bytes)
        One per group.
    budget : int
        Memory budget (bytes) for all concurrent groups.
    jobs : int
        Requested concurrency.

    Returns
    -------
    concurrency : int
        At most ``jobs``; the largest k with the k largest estimates summing to
        at most the budget (at least 1).
    in_memory : list of bool
        Per group: True when its in-memory estimate fits in budget/concurrency.
    """
    if not estimates:
        return 1, []
    jobs = max(1, min(jobs, len(estimates)))
    k = jobs
    while k > 1:
        share = budget / k
        need = sorted((im if im <= share else od for im, od in estimates), reverse=True)[:k]
        if sum(need) <= budget:
            break
        k -= 1
    share = budget / k
    return k, [im <= share for im, _ in estimates]


def group_estimates(group: Group, mosaic_pixels: int) -> tuple[int, int]:
    """(in-memory, on-disk) peak memory estimates (bytes) of one group's Image3 run."""
    n = len(group.members)
    return (estimate_memory(n, group.pixels, mosaic_pixels, group.n_exposures, True),
            estimate_memory(n, group.pixels, mosaic_pixels, group.n_exposures, False))


def mosaic_pixels(group: Group, steps: Mapping[str, Any]) -> int:
    """Expected mosaic size (pixels) of a group reduced on its own grid."""
    scale = float(steps.get("resample.pixel_scale") or group.pixel_scale or 0.031)
    n = footprint_pixels(group.footprint, scale)
    if n <= 0:  # no S_REGION: all inputs side by side
        n = int(group.pixels * ((group.pixel_scale or scale) / scale) ** 2)
    return n


def tile_size_for(group: Group, budget: int, margin: int, align: int = 100) -> int:
    """The core size (pixels) of the largest tiles of ``group`` whose tile run fits in ``budget`` bytes.

    A tile holds the exposures that overlap it in memory and its own output arrays and median.  Its
    inputs are bounded by the depth of the data: with ``depth`` files covering a point on average
    (total input area over the field's), a tile no larger than a detector overlaps at most about
    4 x depth files (the tile may straddle detector edges in both axes).
    """
    from young.stage3.tiles import tiles_for_memory

    pixels = max(mosaic_pixels(group, {}), 1)
    n = max(len(group.members), 1)
    per_input = group.pixels / n
    depth = max(1.0, group.pixels / pixels)
    fixed = BASE_BYTES + int(min(n, 4 * depth) * per_input * IN_MEMORY_BYTES_PER_INPUT_PIXEL)
    per_pixel = BYTES_PER_MOSAIC_PIXEL + MEDIAN_BYTES_PER_MOSAIC_PIXEL_PER_EXPOSURE * int(round(depth))
    side = int(pixels ** 0.5)
    return tiles_for_memory((side, side), budget, per_pixel, fixed, margin, align)
