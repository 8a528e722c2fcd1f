"""Absolute alignment of a group to its reference catalog, as a post-hook of jwst's tweakreg.

Why a second pass: see :class:`AbsoluteAlignStep`.  The hook is an stpipe
Step whose parameters carry what it needs (the catalog, the group's work
folder, the user's tweakreg parameters); it writes what it did to
``young_alignment.json`` in the work folder, which the group run reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from jwst.stpipe import Step

from young.algorithms import astrometry

log = logging.getLogger(__name__)

#: written by the hook in the work folder: {"mode": ..., "warnings": [...]}
RESULT_FILE = "young_alignment.json"

#: the second pass switches tweakreg's relative alignment off with an impossible ``minobj``
NO_RELATIVE = 10**9


class _ByDesign(logging.Filter):
    """Drop what tweakwcs says about the relative alignment the second pass switches off on purpose.

    jwst's tweakreg has no switch for "absolute only"; an impossible ``minobj``
    makes its relative fit give up, and tweakwcs then warns "Not enough
    matches ... Min required: 1000000000" and "Failed to align catalog" for
    every exposure -- false alarms in the product's log.  Installed on
    tweakwcs's loggers for that pass, it drops such messages until jwst's
    tweakreg announces the absolute alignment; what the absolute fit says
    is kept.  Installed on jwst's tweakreg logger, it only watches for that
    announcement.
    """

    def __init__(self):
        super().__init__()
        self.dropped = 0
        self.absolute = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.name.startswith("jwst."):
            self.absolute = self.absolute or text.startswith("Aligning to absolute reference catalog")
            return True
        if not self.absolute and ("Min required" in text or text.startswith("Failed to align catalog")):
            self.dropped += 1
            return False
        return True


def hook(refcat: str, work: str | Path, tweakreg: dict) -> "AbsoluteAlignStep":
    """The ``post_hooks`` entry of tweakreg that runs :class:`AbsoluteAlignStep` with these parameters.

    An instance, not stpipe's ``"module.Class(key=value)"`` string form: that
    form cannot carry values with dots (file paths).
    """
    return AbsoluteAlignStep(refcat=str(refcat), work=str(work), tweakreg=json.dumps(tweakreg))


def read_result(work: str | Path) -> dict:
    """What the hook did (empty when it did not run)."""
    path = Path(work) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else {}


class AbsoluteAlignStep(Step):
    """Post-hook of tweakreg: align the (relatively aligned) group to the absolute catalog.

    jwst's tweakreg fits all exposures of a group to ``abs_refcat`` as one
    combined catalog, and its matcher drops every source that has a
    neighbour closer than ``abs_separation`` -- which, after the relative
    alignment, is each source seen by more than one exposure.  Only sources
    seen once survive: mostly those at image edges, whose centroids are
    biased, and the absolute solution inherits their bias
    (docs/algorithms.md, "Stage 3").  This hook keeps one detection per
    source (the one farthest from its image edge;
    :func:`young.algorithms.astrometry.deduplicate_detections`)
    and runs tweakreg's absolute alignment again with those catalogs
    (relative alignment disabled), so the whole group moves by one unbiased
    correction.
    """

    spec = """
        refcat = string(default='')  # absolute reference catalog (RA, DEC)
        work = string(default='.')  # the group's work folder (catalogs, result file)
        tweakreg = string(default='{}')  # JSON of the user's tweakreg parameters
    """

    def process(self, library):
        """Align ``library`` (a ModelLibrary after tweakreg) to :attr:`refcat`; return it."""
        work = Path(self.work)
        result: dict = {}
        aligned = self._align(library, work, result)
        (work / RESULT_FILE).write_text(json.dumps(result))
        return aligned

    def _align(self, library, work: Path, result: dict):
        """One detection per source from each exposure's tweakreg catalog, then tweakreg's absolute fit."""
        import numpy as np
        from astropy.table import Table
        from jwst.tweakreg import TweakRegStep

        names, xs, ys, ras, decs, edges, owners, statuses = [], [], [], [], [], [], [], []
        with library:
            for i, model in enumerate(library):
                statuses.append(str(model.meta.cal_step.tweakreg or ""))
                names.append(model.meta.filename)
                cat_path = model.meta.tweakreg_catalog
                if cat_path and not Path(cat_path).is_absolute():
                    cat_path = str(work / cat_path)
                if cat_path and Path(cat_path).exists():
                    cat = Table.read(cat_path)
                    xc = "x" if "x" in cat.colnames else "xcentroid"
                    yc = "y" if "y" in cat.colnames else "ycentroid"
                    x, y = np.asarray(cat[xc], float), np.asarray(cat[yc], float)
                    ny, nx = model.data.shape
                    r, d = model.meta.wcs(x, y, with_bounding_box=False)
                    xs.append(x)
                    ys.append(y)
                    ras.append(np.asarray(r, float))
                    decs.append(np.asarray(d, float))
                    edges.append(np.minimum.reduce([x, y, nx - 1 - x, ny - 1 - y]))
                    owners.append(np.full(len(x), i))
                library.shelve(model, i, modify=False)
        relative = all(s == "COMPLETE" for s in statuses)
        if not ras:
            result.update(mode="relative" if relative else "none",
                          warnings=["no source catalogs for the absolute alignment; aligned internally only"])
            return library
        ra, dec = np.concatenate(ras), np.concatenate(decs)
        x, y, edge, owner = np.concatenate(xs), np.concatenate(ys), np.concatenate(edges), np.concatenate(owners)
        good = np.isfinite(ra) & np.isfinite(dec)
        ra0, dec0 = np.nanmedian(ra[good]), np.nanmedian(dec[good])
        xt = ((ra - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0)) * 3600.0
        yt = (dec - dec0) * 3600.0
        keep = np.zeros(len(ra), bool)
        keep[good] = astrometry.deduplicate_detections(xt[good], yt[good], edge[good])
        catfile = work / "young_abs_catalogs.txt"
        lines = []
        for i, name in enumerate(names):
            sel = keep & (owner == i)
            path = work / f"young_abs_{Path(name).stem}.ecsv"
            Table({"x": x[sel], "y": y[sel]}).write(path, format="ascii.ecsv", overwrite=True)
            lines.append(f"{name} {path}")
        catfile.write_text("\n".join(lines) + "\n")
        log.info("absolute alignment: %d detections, %d distinct sources kept (one per source)", len(ra),
                 int(keep.sum()))
        params = {k: v for k, v in json.loads(self.tweakreg or "{}").items()
                  if k not in ("abs_refcat", "save_catalogs", "post_hooks", "pre_hooks", "use_custom_catalogs",
                               "catfile", "minobj", "skip")}
        params.update(abs_refcat=self.refcat, use_custom_catalogs=True, catfile=str(catfile),
                      minobj=NO_RELATIVE, save_catalogs=False, output_dir=str(work))
        quiet = _ByDesign()
        loggers = [logging.getLogger(n) for n in ("tweakwcs.imalign", "tweakwcs.wcsimage",
                                                  "jwst.tweakreg.tweakreg_step")]
        for lg in loggers:
            lg.addFilter(quiet)
        try:
            aligned = TweakRegStep(**params).run(library)
        finally:
            for lg in loggers:
                lg.removeFilter(quiet)
        log.info("absolute pass: relative alignment off by design (%d tweakwcs messages about it left out)",
                 quiet.dropped)
        with aligned:
            after = []
            for i, model in enumerate(aligned):
                after.append(str(model.meta.cal_step.tweakreg or ""))
                if after[-1] != "COMPLETE" and relative:  # absolute failed: the relative solution stands
                    model.meta.cal_step.tweakreg = "COMPLETE"
                    aligned.shelve(model, i)
                else:
                    aligned.shelve(model, i, modify=False)
        absolute = all(s == "COMPLETE" for s in after)
        if absolute:
            result["mode"] = "relative+absolute" if relative else "absolute"
        else:
            result["mode"] = "relative" if relative else "none"
            result.setdefault("warnings", []).append(
                "absolute alignment to the reference catalog failed (too few matches?); "
                + ("aligned internally only" if relative else "not aligned"))
        return aligned


