"""The tool contract, tested with a jwst-free fake tool (tests/fake_tool.py)."""

import io
import os
import time
from pathlib import Path

import fake_tool
import numpy as np
import pytest
from astropy.io import fits
from helpers import unwritable_dir
from young.contract import provenance
from young.contract import runner as contract
from young.contract.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

B = "jw01345001001_02101_0000{}_nrca3"


class TTY(io.StringIO):
    def isatty(self):
        return True


def rates(tmp_path, n=3):
    return [fake_tool.make_rate(tmp_path / f"{B.format(i + 1)}_rate.fits", value=i + 1) for i in range(n)]


def run(capsys, inputs, stdin=None, **kw):
    cli = kw.pop("cli", {"factor": 2.0})
    common = contract.Common(inputs=[str(p) for p in inputs], **kw)
    code = contract.run(fake_tool.SPEC, common, cli, stdin=stdin if stdin is not None else TTY())
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_products_beside_inputs_in_input_order(tmp_path, capsys):
    srcs = rates(tmp_path)[::-1]
    code, out, err = run(capsys, srcs)
    assert code == EXIT_OK
    assert out == [str(s).replace("_rate", "_1f_rate") for s in srcs]
    for i, s in enumerate(srcs):
        prod = fits.open(out[i])
        np.testing.assert_array_equal(prod["SCI"].data, 2 * fits.getdata(s, "SCI"))
        h = prod[0].header
        assert h["YNGTOOL"] == "young-fake" and h["YNG1F"] == "fake"
        assert h["YNGPHASH"] == provenance.params_hash({"factor": 2.0})
        assert (tmp_path / (os.path.basename(out[i])[:-5] + ".log")).read_text().count("processed") == 1
    assert "3 done" in err[-1]


def test_stdin_list(tmp_path, capsys):
    srcs = rates(tmp_path, 2)
    code, out, _ = run(capsys, [], stdin=io.StringIO("\n".join(map(str, srcs)) + "\n"))
    assert code == EXIT_OK and len(out) == 2


def test_inputs_never_modified(tmp_path, capsys):
    srcs = rates(tmp_path, 2)
    before = [s.read_bytes() for s in srcs]
    run(capsys, srcs)
    assert [s.read_bytes() for s in srcs] == before


def test_resume_skips_and_force_redoes(tmp_path, capsys):
    srcs = rates(tmp_path, 2)
    run(capsys, srcs)
    prods = [str(s).replace("_rate", "_1f_rate") for s in srcs]
    mtimes = [os.stat(p).st_mtime_ns for p in prods]
    code, out, err = run(capsys, srcs)
    assert code == EXIT_OK and out == prods and "2 up to date" in err[-1]
    assert [os.stat(p).st_mtime_ns for p in prods] == mtimes
    # other parameters -> redone
    code, out, err = run(capsys, srcs, cli={"factor": 3.0})
    assert "2 done" in err[-1]
    np.testing.assert_array_equal(fits.getdata(prods[0], "SCI"), 3 * fits.getdata(srcs[0], "SCI"))
    # a newer input -> redone
    time.sleep(0.01)
    os.utime(srcs[0])
    code, out, err = run(capsys, srcs, cli={"factor": 3.0})
    assert "1 done, 1 up to date" in err[-1]
    code, out, err = run(capsys, srcs, cli={"factor": 3.0}, force=True)
    assert "2 done" in err[-1]


def test_bad_inputs_one_line_each_others_processed(tmp_path, capsys):
    good = rates(tmp_path, 2)
    notfits = tmp_path / f"{B.format(7)}_rate.fits"
    notfits.write_text("hello, not a FITS file")
    empty = tmp_path / f"{B.format(8)}_rate.fits"
    empty.write_bytes(b"")
    trunc = tmp_path / f"{B.format(9)}_rate.fits"
    trunc.write_bytes(good[0].read_bytes()[:-3000])
    miri = fake_tool.make_rate(tmp_path / f"{B.format(6)}_rate.fits")
    with fits.open(miri, mode="update") as h:
        h[0].header["INSTRUME"] = "MIRI"
    missing = tmp_path / "nothere_rate.fits"
    code, out, err = run(capsys, [good[0], notfits, empty, trunc, miri, missing, good[1]])
    assert code == EXIT_FAILED
    assert out == [str(g).replace("_rate", "_1f_rate") for g in good]
    fails = [e for e in err if e.startswith("young-fake: ") and "done" not in e]
    assert len(fails) == 5
    for path, words in ((notfits, "not a FITS file"), (empty, "empty file"), (trunc, "truncated"),
                        (miri, "not NIRCam"), (missing, "no such file")):
        line = next(e for e in fails if str(path) in e)
        assert words in line, line
    for bad in (notfits, empty, trunc, miri):
        assert not os.path.exists(str(bad).replace("_rate", "_1f_rate"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_failure_in_step_named_and_no_partial(tmp_path, capsys):
    srcs = rates(tmp_path, 3)
    code, out, err = run(capsys, srcs, cli={"factor": 2.0, "fail_on": B.format(2)})
    assert code == EXIT_FAILED and len(out) == 2
    assert any("simulated failure" in e and B.format(2) in e for e in err)
    assert not os.path.exists(str(srcs[1]).replace("_rate", "_1f_rate"))


def test_refuses_second_application(tmp_path, capsys):
    srcs = rates(tmp_path, 1)
    _, out, _ = run(capsys, srcs)
    corrected = tmp_path / out[0]
    renamed = tmp_path / f"{B.format(5)}_rate.fits"
    corrected.rename(renamed)
    for force in (False, True):  # never applied twice: passed on as it is, --force or not
        code, out, err = run(capsys, [renamed], force=force)
        assert code == EXIT_OK and out == [str(renamed)] and "1 already corrected (left alone)" in err[-1]
    assert not list(tmp_path.glob("*_1f_1f_*"))


def test_unwritable_output_dir(tmp_path, capsys):
    srcs = rates(tmp_path, 2)
    code, out, err = run(capsys, srcs, output_dir=str(unwritable_dir(tmp_path)))
    assert code == EXIT_FAILED and out == []
    assert sum("cannot write products" in e for e in err) == 2


def test_usage_errors_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, [])
    assert code == EXIT_USAGE and err == ["young-fake: no inputs: give files or directories as arguments or on stdin"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    code, out, err = run(capsys, rates(tmp_path, 1), config=str(bad))
    assert code == EXIT_USAGE and len(err) == 1 and "not valid YAML" in err[0] and str(bad) in err[0]
    code, out, err = run(capsys, rates(tmp_path, 1), config=str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE and "cannot read config" in err[0]


def test_output_dir(tmp_path, capsys):
    srcs = rates(tmp_path, 2)
    out_dir = tmp_path / "out" / "deeper"
    code, out, _ = run(capsys, srcs, output_dir=str(out_dir))
    assert code == EXIT_OK and all(o.startswith(str(out_dir)) for o in out)


@pytest.mark.timeout(120)
def test_jobs_processes_match_serial_and_dead_worker_isolated(tmp_path, capsys):
    srcs = rates(tmp_path, 4)
    code, out, err = run(capsys, srcs, jobs=2, cli={"factor": 2.0, "kill_on": B.format(3)})
    assert code == EXIT_FAILED
    assert out == [str(s).replace("_rate", "_1f_rate") for i, s in enumerate(srcs) if i != 2]
    assert any(B.format(3) in e and "worker process died" in e for e in err)
    assert not os.path.exists(str(srcs[2]).replace("_rate", "_1f_rate"))
    for o, s in zip(out, [s for i, s in enumerate(srcs) if i != 2]):
        np.testing.assert_array_equal(fits.getdata(o, "SCI"), 2 * fits.getdata(s, "SCI"))


def test_up_to_date_product_still_loses_a_dead_writers_temporaries(tmp_path, capsys):
    """A writer SIGKILLed after moving its product into place but before removing its temporary folder
    and log: the rerun finds the product up to date and still removes the dead writer's temporaries."""
    import subprocess
    import sys

    from young.contract import atomic, naming

    src = rates(tmp_path, 1)[0]
    code, out, _ = run(capsys, [src])
    prod = Path(out[0])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_dir = prod.parent / f"{atomic._tmp_prefix(prod)}{dead.pid}-0badf00d"
    tmp_dir.mkdir()
    (tmp_dir / prod.name).write_bytes(b"half")
    log = naming.log_path(prod)
    tmp_log = log.parent / f"{atomic._tmp_prefix(log)}{dead.pid}-0badf00d.log"
    tmp_log.write_text("partial")
    code, out, err = run(capsys, [src])
    assert code == EXIT_OK and "1 up to date" in err[-1]
    assert not tmp_dir.exists() and not tmp_log.exists()


FAULTS = """
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from young.contract import runner as contract
contract.tune_malloc()
a = np.ones((2048, 2048), np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(60):          # full-frame temporaries, freed and made again, as in a correction
    b = a * 2.0
    c = a * 3.0
    del b, c
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="glibc/Linux behaviour")
def test_tune_malloc_reuses_freed_full_frames(tmp_path):
    """With the tuning, 60 freed-and-remade 16 MB temporaries fault their pages in about once, not 60 times
    (the count per array depends on transparent huge pages: 4096 small pages or 8 huge ones)."""
    import subprocess
    import sys
    from pathlib import Path

    shared = str(Path(contract.__file__).resolve().parents[2])

    def faults(tune: str) -> int:
        env = dict(os.environ, YOUNG_MALLOC_TUNE=tune)
        r = subprocess.run([sys.executable, "-c", FAULTS, shared], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[-1])

    plain, tuned = faults("0"), faults("1")
    assert tuned * 5 < plain, (plain, tuned)
