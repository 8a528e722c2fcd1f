import os
import subprocess
import sys
import textwrap

import pytest
from young.contract import atomic


def test_success_moves_into_place_and_cleans(tmp_path):
    final = tmp_path / "x_rate.fits"
    with atomic.atomic_path(final) as tmp:
        assert tmp.name == final.name and tmp.parent.name.startswith(".x_rate.fits.young-tmp-")
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["x_rate.fits"]


def test_failure_leaves_previous_product_untouched(tmp_path):
    final = tmp_path / "x_rate.fits"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x_rate.fits"]


def test_killed_writer_leaves_no_product_and_stale_temp_is_cleaned(tmp_path):
    final = tmp_path / "x_rate.fits"
    code = textwrap.dedent(f"""
        import os, signal
        from young.contract import atomic
        with atomic.atomic_path({str(final)!r}) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], env=env)
    assert r.returncode == -9
    assert not final.exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".x_rate.fits.young-tmp-")
    assert atomic.clean_stale(final) == leftovers
    assert list(tmp_path.iterdir()) == []


def test_live_writer_temp_is_not_cleaned(tmp_path):
    final = tmp_path / "x_rate.fits"
    with atomic.atomic_path(final) as tmp:
        tmp.write_text("mine")
        assert atomic.clean_stale(final) == []
        assert tmp.exists()


def test_check_writable(tmp_path):
    from helpers import unwritable_dir

    atomic.check_writable(tmp_path)
    with pytest.raises(FileNotFoundError):
        atomic.check_writable(tmp_path / "missing")
    with pytest.raises(PermissionError):
        atomic.check_writable(unwritable_dir(tmp_path))


def test_temporaries_of_a_killed_unreaped_writer_are_stale(tmp_path):
    """A writer SIGKILLed together with its parent stays a zombie until something reaps it (in containers,
    often nothing does): its temporaries are stale all the same."""
    import subprocess
    import time

    final = tmp_path / "x_rate.fits"
    p = subprocess.Popen(["sleep", "60"])
    tmp = final.parent / f"{atomic._tmp_prefix(final)}{p.pid}-deadbeef"
    tmp.mkdir()
    (tmp / final.name).write_bytes(b"half")
    p.kill()
    time.sleep(0.3)  # now a zombie: os.kill(pid, 0) still succeeds
    try:
        assert atomic.clean_stale(final) == [tmp]
        assert not tmp.exists()
    finally:
        p.wait()
