"""YOUNG: a microstage toolchain for JWST NIRCam imaging.

The package holds everything the ``tools/young-*`` executables do; a tool file
only parses options and calls into this library.  Modules by concern:

``errors``      exception classes that map onto the tool exit codes
``inputs``      file lists from arguments, stdin and directories
``naming``      product names (DESIGN.md)
``atomic``      temporary-name writes and ``os.replace``
``provenance``  header keywords recording tool, version, parameters, CRDS context
``config``      the YAML configuration (``--config``, ``YOUNG_CONFIG``)
``parallel``    serial, ``--jobs N`` processes and the MPI task farm
``contract``    the tool contract: run a per-file step over a file list
``crdsenv``     CRDS environment and reference prefetch (``young-refs``)
``masks``       tiered source masks
``fnoise``      1/f noise correction algorithms
``wisp``        wisp template fitting
``background``  background subtraction
``sim``         the simulator behind ``young-sim``
"""

__version__ = "0.1.0"
