"""What every YOUNG correction step shares: an stpipe ``Step`` on one rate or cal image.

:class:`CorrectionStep` is a ``jwst.stpipe.Step`` (the jwst ecosystem's
convention, as the ``snowblind`` package does it): its subclasses declare
their parameters once in ``spec`` and implement :meth:`CorrectionStep.correct`
on an open ``ImageModel``.  The base class opens the input, refuses a second
application of the same correction, records the header keywords of the
correction in the product (so a product made by ``strun young_fnoise`` or by
a pipeline hook carries the same record as one made by ``young-fnoise``),
names ``strun`` products the YOUNG way (``X_rate -> X_1f_rate``) and writes
the side products (model, mask, QA plot) beside the saved product.

The YOUNG tools run the same steps inside the tool contract
(:mod:`young.steps.tooling`): they call :meth:`run` on the input file and
save the product themselves, atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jwst.stpipe import Step

from young.contract.errors import InputError
from young.contract.records import Made
from young.steps import models

log = logging.getLogger(__name__)


@dataclass
class Correction:
    """What :meth:`CorrectionStep.correct` did to a model.

    Attributes
    ----------
    keywords : dict
        Primary-header keywords, ``{KEY: (value, comment)}``.
    side_products : list of (kind, ext, writer)
        Files to write beside the product: ``writer(path)`` writes
        :func:`young.steps.models.side_path` ``(product, kind, ext)``.
    worse : str
        Empty, or why the product looks worse than the input by the
        correction's own figure (warned on stderr and counted in the summary).
    """

    keywords: dict = field(default_factory=dict)
    side_products: list = field(default_factory=list)
    worse: str = ""


class CorrectionStep(Step):
    """Base of the YOUNG correction steps (one rate/cal image in, one corrected image out).

    Class attributes of a subclass: ``tag`` (product tag, ``1f``), ``keyword``
    (primary-header keyword whose presence marks the correction as applied,
    ``YNG1F``), ``levels`` (product levels it accepts).
    """

    tag: ClassVar[str] = ""
    keyword: ClassVar[str] = ""
    levels: ClassVar[tuple[str, ...]] = ("rate", "cal")
    #: the CRDS look-ups a correction needs happen in ``correct`` (only where they apply)
    prefetch_references = False

    def default_suffix(self) -> str:
        """``strun`` product suffix: the tag before the input's level, set in :meth:`process` (``1f_rate``)."""
        return f"{self.tag}_auto"

    def process(self, input_data):
        """Open the input, apply :meth:`correct`, record its keywords; return the corrected model.

        Parameters
        ----------
        input_data : str, Path or ImageModel
            A NIRCam imaging rate or cal product (a file is opened; a model is
            copied when the step runs on its own, as jwst steps do).

        Returns
        -------
        ImageModel

        Raises
        ------
        InputError
            Wrong product level, or the correction was applied already.
        """
        from stdatamodels.jwst.datamodels import ImageModel

        model = self.prepare_output(input_data, open_as_type=ImageModel)
        level = models.product_level(model)
        if level not in self.levels:
            raise InputError(f"{self.class_alias} corrects {' or '.join(self.levels)} products, not {level}")
        done = models.keyword(model, self.keyword)
        if done:
            raise InputError(f"already corrected ({self.keyword}={done}); a correction is never applied twice")
        self.correction = self.correct(model)
        models.record_keywords(model, self.correction.keywords)
        if self.correction.worse:
            log.warning("the product looks worse than its input: %s", self.correction.worse)
        if self.suffix == self.default_suffix():
            self.suffix = f"{self.tag}_{level}"
        return model

    def correct(self, model) -> Correction:  # pragma: no cover - abstract
        """Correct ``model`` in place (subclasses)."""
        raise NotImplementedError

    def write_side_products(self, product: str | Path) -> list[Path]:
        """Write the side products of the last :meth:`process` beside ``product``; return their paths."""
        written = []
        for kind, ext, writer in getattr(self, "correction", Correction()).side_products:
            path = models.side_path(product, kind, ext)
            writer(path)
            written.append(path)
        return written

    def save_model(self, model, *args, **kwargs):
        """stpipe's save, then the side products beside the saved file (``strun`` runs)."""
        out = super().save_model(model, *args, **kwargs)
        if out:
            self.write_side_products(out[0] if isinstance(out, list) else out)
        return out


def step_values(step_class, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are parameters of ``step_class``'s own spec."""
    from young.contract.spec import parse_spec

    own = parse_spec(step_class.spec)
    return {k: v for k, v in values.items() if k in own}


def run_step(step_class, values: dict[str, Any], src: Path, product: Path) -> Made:
    """Run ``step_class`` on ``src`` and write its product at ``product`` (plus side products beside it).

    The tools' ``process``: the step opens the file itself (no copy), the
    product is saved under the name the caller gives (the tool contract's
    temporary path, moved into place later).  A product that looks worse than
    its input comes back as a warning for the tool's summary.
    """
    step = step_class(**step_values(step_class, values))
    result = step.run(str(src))
    try:
        models.save(result, product)
        step.write_side_products(product)
    finally:
        result.close()
    worse = step.correction.worse
    return Made(warnings=[f"{src}: the product looks worse than its input: {worse}"] if worse else [],
                info={"worse": bool(worse)})
