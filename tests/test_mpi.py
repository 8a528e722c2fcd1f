"""The MPI task farm (mpiexec from the mpich wheel), with the jwst-free fake tool."""

import subprocess
import sys
from pathlib import Path

import fake_tool
import numpy as np
import pytest
from astropy.io import fits
from helpers import tool_env

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(300)]
HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
B = "jw01345001001_02101_0000{}_nrca3"


def run(args, n=None, stdin=None):
    cmd = [sys.executable, str(HERE / "run_fake_tool.py"), *map(str, args)]
    if n:
        cmd = [str(MPIEXEC), "-n", str(n), *cmd]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=tool_env(), timeout=240)


def test_mpi_farm_matches_serial_in_input_order(tmp_path):
    srcs = [fake_tool.make_rate(tmp_path / f"{B.format(i)}_rate.fits", value=i) for i in range(6, 0, -1)]
    ser = run(["-o", tmp_path / "serial", *srcs])
    par = run(["-o", tmp_path / "mpi", *srcs], n=2)
    assert ser.returncode == 0 and par.returncode == 0, par.stderr
    assert [Path(p).name for p in par.stdout.split()] == [Path(p).name for p in ser.stdout.split()]
    assert len(par.stdout.split()) == 6
    for a, b in zip(ser.stdout.split(), par.stdout.split()):
        np.testing.assert_array_equal(fits.getdata(a, "SCI"), fits.getdata(b, "SCI"))
    # one summary, from rank 0
    assert sum("done" in line for line in par.stderr.splitlines()) == 1


def test_mpi_dead_worker_and_failing_file_isolated(tmp_path):
    srcs = [fake_tool.make_rate(tmp_path / f"{B.format(i)}_rate.fits", value=i) for i in range(1, 6)]
    r = run(["--kill-on", B.format(2), "--fail-on", B.format(4), *srcs], n=2)
    assert r.returncode == 1
    assert [Path(p).name for p in r.stdout.split()] == [f"{B.format(i)}_1f_rate.fits" for i in (1, 3, 5)]
    err = r.stderr.splitlines()
    assert any(B.format(2) in e and "died" in e for e in err), r.stderr
    assert any(B.format(4) in e and "simulated failure" in e for e in err), r.stderr
    assert not (tmp_path / f"{B.format(2)}_1f_rate.fits").exists()


def test_stdin_under_mpi(tmp_path):
    srcs = [fake_tool.make_rate(tmp_path / f"{B.format(i)}_rate.fits") for i in range(1, 4)]
    r = run([], n=2, stdin="\n".join(map(str, srcs)) + "\n")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 3


def test_usage_error_under_mpi_exits_2_once(tmp_path):
    r = run(["--config", tmp_path / "missing.yaml", tmp_path], n=2)
    assert r.returncode == 2
    assert r.stderr.count("cannot read config") == 1


@pytest.mark.parametrize("where", ["plan", "prefetch"])
def test_rank0_crash_stops_every_rank_with_one_line(tmp_path, where):
    """An unexpected error in rank 0's shared steps reaches the other rank: exit 1 in seconds, not a hang."""
    srcs = [fake_tool.make_rate(tmp_path / f"{B.format(i)}_rate.fits") for i in range(1, 4)]
    r = run(["--crash-in", where, *srcs], n=2)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    lines = [e for e in r.stderr.splitlines() if "simulated crash" in e]
    assert len(lines) == 1 and "internal error" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.glob("*_1f_rate.fits"))
    # the same without MPI: one line, exit 1
    r1 = run(["--crash-in", where, *srcs])
    assert r1.returncode == 1 and r1.stderr.count("simulated crash") == 1, r1.stderr


def test_crash_on_another_rank_aborts_the_job(tmp_path):
    """The last resort (cli.launch -> MPI Abort): a rank dying on its own does not leave rank 0 waiting."""
    srcs = [fake_tool.make_rate(tmp_path / f"{B.format(i)}_rate.fits") for i in range(1, 4)]
    r = run(["--crash-in", "rank1", *srcs], n=2)
    assert r.returncode != 0
    assert "simulated crash" in r.stderr
