"""YOUNG: a microstage toolchain for JWST NIRCam imaging, from uncal ramps to aligned mosaics and catalogs.

The package holds everything the ``tools/young-*`` executables do; a tool
file only parses options and calls into this library.  Layers, one folder
each, imports only downward (docs/architecture.md):

``contract``    the tool contract: names, inputs, atomic writes, provenance, config, CRDS, MPI, the runner
``algorithms``  the corrections on arrays (1/f, wisp, background, masks, statistics, astrometry)
``steps``       the corrections as stpipe Steps, the stage tools, and the tools around them
``stage3``      mosaics, segmentation maps and catalogs on one grid
``sim``         the simulator behind ``young-sim``, truth metrics, the demo report
"""

__version__ = "0.2.0"
