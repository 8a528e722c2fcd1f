"""The tool contract: what every YOUNG tool promises, written once.

Lives here: errors and exit codes (``errors``), product names (``naming``),
input lists from arguments, stdin and folders (``inputs``), atomic writes
(``atomic``), provenance keywords (``provenance``), the YAML configuration
(``config``), parameter specs read without jwst (``spec``), the CRDS
environment and prefetch (``crdsenv``, ``refs``), FITS input checks
(``fitscheck``), the serial / ``--jobs`` / MPI farm (``parallel``), the
runner and reporter every tool runs through (``runner``) and the command-line
builder (``cli``).

May import: the standard library, numpy/astropy/crds/typer/rich/mpi4py, and
``young`` itself for its version.  Never the algorithms, steps, stage 3 or
the simulator (docs/architecture.md, "Layers").
"""
