"""The tool contract: what every YOUNG tool promises, written once.

Lives here: errors and exit codes (``errors``), product names (``naming``),
input lists from arguments, stdin and folders (``inputs``), input trees
as MAST delivers them and the Makefile's plan of them (``tree``,
``makeplan``), atomic writes
(``atomic``), provenance keywords (``provenance``), the YAML configuration
(``config``), parameter specs read without jwst (``spec``), jwst step
parameters checked against their pipeline (``pipelinecheck``), the CRDS
environment and prefetch (``crdsenv``, ``refs``), FITS input checks
(``fitscheck``), the serial / ``--jobs`` / MPI farm (``parallel``), the
records it passes around (``records``: tool spec, options, tasks, outcomes),
the runner every tool runs through (``runner``: plan, resume key, atomic
products and logs), what the user sees (``reporter``) and the command-line
builder (``cli``, ``clicompat``).

May import: the standard library, numpy/astropy/crds/typer/rich/mpi4py, and
``young`` itself for its version.  Never the algorithms, steps, stage 3 or
the simulator (docs/architecture.md, "Layers").
"""
