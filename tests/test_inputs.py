import io

import pytest
from young.contract import inputs
from young.contract.errors import UsageError

B = "jw01345001001_02101_0000{}_nrca3"


def touch(p):
    p.write_bytes(b"x")
    return p


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_arguments_in_order_and_missing_reported(tmp_path):
    a, b = touch(tmp_path / f"{B.format(2)}_rate.fits"), touch(tmp_path / f"{B.format(1)}_rate.fits")
    items = inputs.collect([str(a), str(tmp_path / "gone_rate.fits"), str(b)], ("rate",), stdin=FakeTTY())
    assert [i.path.name for i in items] == [a.name, "gone_rate.fits", b.name]
    assert items[1].error is not None and "no such file" in items[1].error.line()
    assert str(tmp_path / "gone_rate.fits") in items[1].error.line()


def test_stdin_with_comments_and_blanks(tmp_path):
    a = touch(tmp_path / f"{B.format(1)}_rate.fits")
    stream = io.StringIO(f"# list\n\n{a}\n   \n")
    items = inputs.collect([], ("rate",), stdin=stream)
    assert [i.path for i in items] == [a]


def test_no_input_is_usage_error():
    with pytest.raises(UsageError, match="no inputs"):
        inputs.collect([], ("rate",), stdin=FakeTTY())
    with pytest.raises(UsageError, match="stdin was empty"):
        inputs.collect([], ("rate",), stdin=io.StringIO("\n# nothing\n"))


def test_directory_takes_deepest_product_per_exposure(tmp_path):
    for name in (f"{B.format(1)}_rate.fits", f"{B.format(1)}_1f_rate.fits", f"{B.format(2)}_rate.fits",
                 f"{B.format(1)}_uncal.fits", ".hidden_rate.fits", "notes_rate.txt"):
        touch(tmp_path / name)
    items = inputs.collect([str(tmp_path)], ("rate",), stdin=FakeTTY())
    assert [i.path.name for i in items] == [f"{B.format(1)}_1f_rate.fits", f"{B.format(2)}_rate.fits"]
    # a name filter (e.g. young-fnoise refuses already-corrected files) applies first
    items = inputs.collect([str(tmp_path)], ("rate",), accept=lambda pn: "1f" not in pn.tags, stdin=FakeTTY())
    assert [i.path.name for i in items] == [f"{B.format(1)}_rate.fits", f"{B.format(2)}_rate.fits"]


def test_empty_directory_is_named(tmp_path):
    items = inputs.collect([str(tmp_path)], ("uncal",), stdin=FakeTTY())
    assert len(items) == 1 and "no *_uncal.fits files" in items[0].error.line()
    assert str(tmp_path) in items[0].error.line()


def test_duplicates_processed_once_with_warning(tmp_path):
    a = touch(tmp_path / f"{B.format(1)}_rate.fits")
    warned = []
    items = inputs.collect([str(a), str(tmp_path / "." / a.name)], ("rate",), stdin=FakeTTY(), warn=warned.append)
    assert len(items) == 1 and len(warned) == 1 and "more than once" in warned[0]


def test_paths_with_spaces(tmp_path):
    d = tmp_path / "my data"
    d.mkdir()
    a = touch(d / f"{B.format(1)}_rate.fits")
    items = inputs.collect([], ("rate",), stdin=io.StringIO(f"{a}\n"))
    assert items[0].path == a and items[0].error is None
