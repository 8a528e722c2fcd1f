"""Product names (docs/architecture.md, "The tool contract").

A product name is ``<base>[_<tag>...]_<suffix>.fits`` where ``<base>`` is the
JWST exposure name (``jw01345001001_02101_00001_nrca3``), the tags record the
YOUNG corrections applied in order (``1f``, ``wisp``, ``bkg``) and the JWST
product suffix stays last::

    X_uncal -> X_rate -> X_1f_rate -> X_1f_cal -> X_1f_wisp_cal -> X_1f_wisp_bkg_cal

Names are parsed, never guessed: a file whose suffix is not a known JWST
product suffix is reported as such by the tool that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: JWST product suffixes the tools read or write.
SUFFIXES = ("uncal", "rate", "rateints", "cal", "i2d", "segm", "cat")
#: YOUNG step tags, in chain order.
TAGS = ("1f", "wisp", "bkg")


@dataclass(frozen=True)
class ProductName:
    """A parsed product file name.

    Attributes
    ----------
    base : str
        Exposure name without tags and suffix.
    tags : tuple of str
        YOUNG step tags in the order they were applied.
    suffix : str
        JWST product suffix (``uncal``, ``rate``, ``cal``...).
    ext : str
        File extension including the dot (``.fits``).
    """

    base: str
    tags: tuple[str, ...]
    suffix: str
    ext: str = ".fits"

    @property
    def name(self) -> str:
        return "_".join((self.base, *self.tags, self.suffix)) + self.ext

    @property
    def stem(self) -> str:
        """Name without the extension (used for ``.log`` files)."""
        return self.name[: -len(self.ext)] if self.ext else self.name

    def with_suffix(self, suffix: str) -> "ProductName":
        return ProductName(self.base, self.tags, suffix, self.ext)

    def with_tag(self, tag: str) -> "ProductName":
        return ProductName(self.base, (*self.tags, tag), self.suffix, self.ext)


def parse(path: str | Path) -> ProductName:
    """Split a product path into base, tags and suffix.

    Parameters
    ----------
    path : str or Path
        File name or path, e.g. ``jw..._nrca3_1f_rate.fits``.

    Returns
    -------
    ProductName

    Raises
    ------
    ValueError
        If the name does not end in ``_<suffix>.<ext>`` with a known suffix.
    """
    name = Path(path).name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    parts = stem.split("_")
    if len(parts) < 2 or parts[-1] not in SUFFIXES:
        raise ValueError(
            f"not a JWST product name (expected ..._<{'|'.join(SUFFIXES)}>.fits)"
        )
    suffix = parts.pop()
    tags: list[str] = []
    while len(parts) > 1 and parts[-1] in TAGS:
        tags.insert(0, parts.pop())
    return ProductName("_".join(parts), tuple(tags), suffix, "." + ext if ext else "")


def product_path(
    src: str | Path,
    *,
    suffix: str | None = None,
    tag: str | None = None,
    output_dir: str | Path | None = None,
) -> Path:
    """Name of the product a tool makes from ``src``.

    Parameters
    ----------
    src : str or Path
        Input file.
    suffix : str, optional
        New JWST suffix (stage tools: ``rate``, ``cal``).
    tag : str, optional
        YOUNG step tag to append (``1f``, ``wisp``, ``bkg``).
    output_dir : str or Path, optional
        Folder of the product; default the input's folder.

    Returns
    -------
    Path
    """
    src = Path(src)
    pn = parse(src)
    if tag is not None:
        pn = pn.with_tag(tag)
    if suffix is not None:
        pn = pn.with_suffix(suffix)
    folder = Path(output_dir) if output_dir is not None else src.parent
    return folder / pn.name


def original_path(product: str | Path, tag: str) -> Path | None:
    """The input a tool made ``product`` from, by name: ``X_1f_wisp_cal`` without ``wisp`` is ``X_1f_cal``.

    Returns None when ``product`` does not carry ``tag`` (it is not that tool's product).
    """
    product = Path(product)
    pn = parse(product)
    if tag not in pn.tags:
        return None
    i = len(pn.tags) - 1 - pn.tags[::-1].index(tag)
    return product.with_name(ProductName(pn.base, pn.tags[:i] + pn.tags[i + 1:], pn.suffix, pn.ext).name)


def log_path(product: str | Path) -> Path:
    """The ``.log`` file written beside a product."""
    product = Path(product)
    return product.with_name(parse(product).stem + ".log")


def depth(path: str | Path) -> tuple[int, int]:
    """Processing depth of a product, for choosing the latest of one exposure.

    Returns ``(suffix rank, number of tags)``: a ``cal`` is deeper than any
    ``rate``, and ``X_1f_wisp_cal`` deeper than ``X_1f_cal``.
    """
    pn = parse(path)
    return (SUFFIXES.index(pn.suffix), len(pn.tags))


def lw_base(sw_base: str) -> str | None:
    """Exposure base of the long-wave detector exposed with a short-wave one.

    ``jw01345001001_02101_00001_nrca3 -> jw01345001001_02101_00001_nrcalong``;
    None when the last token is not a short-wave detector (nrca1-4, nrcb1-4).
    """
    head, _, det = sw_base.rpartition("_")
    det = det.lower()
    if not head or len(det) != 5 or not det.startswith("nrc") or det[3] not in "ab" or det[4] not in "1234":
        return None
    return f"{head}_nrc{det[3]}long"
