"""Stage 3: per-filter mosaics, segmentation maps and catalogs on one common grid.

Lives here: the filter table (``filters``), inputs and groups
(``exposures``), reference catalogs (``refcat``), the common grid (``grid``),
the memory plan (``memory``), Image3 parameters (``params``), the absolute
alignment hook (``alignment``), one group's run (``group``), QA plots
(``qa``) and the driver of ``young-stage3`` (``driver``); the tiled stage 3:
tile geometry (``tiles``), its align/tile/merge tasks (``tiled``), the
stitched mosaic (``stitch``) and their phases (``tiled_driver``).

May import: the contract, the algorithms and jwst.  Not the steps or the
simulator (docs/architecture.md, "Layers").
"""
