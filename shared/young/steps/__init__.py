"""The corrections and stages as stpipe Steps, and the tools around them.

Lives here: one module per correction (``fnoise_step``, ``wisp_step``,
``bkg_step``: a ``jwst.stpipe.Step`` each, usable with ``strun`` and as a
pipeline hook) and the stage tools (``stages``: jwst's Detector1 and Image2),
plus what they share: the Step base class (``base``), the parameter specs
(``specs``), model I/O and side products (``models``), reference files
(``references``), QA plots (``plots``), the tool definitions (``tooling``) and
the stpipe entry point (``integration``).

May import: the contract, the algorithms, jwst/stpipe/stdatamodels and the
shared helpers above.  A step never imports another step
(docs/architecture.md, "Layers").
"""
