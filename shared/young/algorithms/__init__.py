"""The corrections as pure functions: arrays in, arrays out.

Lives here: robust row statistics (``stats``), JWST DQ bits (``dq``), tiered
source masks (``masks``), 1/f noise (``fnoise``, ``fnoise_base``,
``fnoise_gradient``, ``fnoise_mask``), wisps (``wisp``, ``wisp_geometry``),
background (``background``) and astrometry helpers (``astrometry``).

May import: numpy, scipy, astropy (photutils for the 2-D background mesh)
and each other.  No files, no logging set-up, no CRDS, no tool errors: bad
arguments raise ``ValueError`` (docs/architecture.md, "Layers").
"""
