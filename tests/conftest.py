"""Shared fixtures: a simulated ``tiny`` set (once per session) and a network guard.

``tiny_set``     session-scoped: ``young.sim.simulate`` of the ``tiny`` preset, seed 1, in a
                 temporary folder (about half a minute); a :class:`SimSet` with its paths and
                 the CRDS environment that uses its synthetic cache.
``no_network``   any ``socket.connect``/``connect_ex``/``getaddrinfo``/``create_connection`` in
                 the test process raises :class:`NetworkBlocked`; yields the list of attempts.
``run_offline``  runs Python code in a fresh subprocess (crds and jwst keep module state, so
                 pipelines and CRDS look-ups run there) with the same guard installed and the
                 CRDS variables of a set; returns the completed process and the number of
                 network attempts the guard saw.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
try:
    import young  # noqa: F401
except ImportError:  # running from a checkout
    sys.path.insert(0, str(REPO / "shared"))

SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"

# tiny_rates / tiny_cals: the tiny set through the real stage tools, once per session
pytest_plugins = ["chain_fixtures"]


class NetworkBlocked(OSError):
    """Raised by the ``no_network`` guard instead of opening a connection."""


#: Installed at the start of every ``run_offline`` subprocess.
GUARD_PROLOGUE = r'''
import atexit as _young_atexit, socket as _young_socket, sys as _young_sys
_young_attempts = []
def _young_blocked(*args, **kwargs):
    _young_attempts.append(repr(args[1:3])[:120])
    raise OSError("network access blocked by the young test guard")
_young_socket.socket.connect = _young_blocked
_young_socket.socket.connect_ex = _young_blocked
_young_socket.getaddrinfo = _young_blocked
_young_socket.create_connection = _young_blocked
_young_atexit.register(lambda: print("NETWORK_ATTEMPTS %d %s" % (len(_young_attempts), _young_attempts[:3]),
                                     file=_young_sys.stderr, flush=True))
'''


@dataclass(frozen=True)
class SimSet:
    """A simulated set on disk (see ``young.sim.simulate``)."""

    root: Path
    preset: str
    seed: int
    uncal: tuple[Path, ...]

    @property
    def crds_path(self) -> Path:
        return self.root / "crds_cache"

    @property
    def truth(self) -> Path:
        return self.root / "truth"

    @property
    def wisp_dir(self) -> Path:
        return self.root / "wisp_templates"

    @property
    def config(self) -> Path:
        return self.root / "young.yaml"

    def crds_env(self) -> dict[str, str]:
        """The CRDS variables that make jwst use this set's cache, offline."""
        return {"CRDS_PATH": str(self.crds_path), "CRDS_SERVER_URL": SERVERLESS_URL,
                "CRDS_CONTEXT": "jwst_9001.pmap", "CRDS_READONLY_CACHE": "1",
                "CRDS_OBSERVATORY": "jwst"}


@pytest.fixture
def no_network(monkeypatch):
    """Make every network access of the test process fail; yields the attempts."""
    attempts: list[tuple] = []

    def blocked(*args, **kwargs):
        attempts.append(args[1:3])
        raise NetworkBlocked("network access blocked by the no_network fixture")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    yield attempts


def _simulate(root: Path, preset: str, seed: int, **kw) -> SimSet:
    from young.sim.simulate import simulate

    paths = simulate(root, preset, seed=seed, force=True, **kw)
    return SimSet(root, preset, seed, tuple(paths))


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> SimSet:
    """The ``tiny`` preset, seed 1, simulated once per session."""
    return _simulate(tmp_path_factory.mktemp("sim") / "tiny", "tiny", 1)


@dataclass
class OfflineRun:
    """Result of :func:`run_offline`."""

    returncode: int
    stdout: str
    stderr: str
    network_attempts: int


def _run_offline(code: str, sim_set: SimSet | None = None, timeout: float = 1200, cwd: Path | None = None,
                 extra_env: dict | None = None, *, monkeypatch) -> OfflineRun:
    if sim_set is not None:
        for key, value in sim_set.crds_env().items():
            monkeypatch.setenv(key, value)
    for key, value in (extra_env or {}).items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "shared"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("YOUNG_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", GUARD_PROLOGUE + "\n" + code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    found = re.findall(r"^NETWORK_ATTEMPTS (\d+)", proc.stderr, re.M)
    attempts = int(found[-1]) if found else -1
    return OfflineRun(proc.returncode, proc.stdout, proc.stderr, attempts)


@pytest.fixture
def run_offline(monkeypatch):
    """``run(code, sim_set, timeout=..., cwd=..., extra_env=...) -> OfflineRun``: Python in a guarded subprocess.

    The CRDS variables of ``sim_set`` (and ``extra_env``) are set with monkeypatch for the
    test and passed to the subprocess.
    """
    return functools.partial(_run_offline, monkeypatch=monkeypatch)


@pytest.fixture(scope="module")
def run_offline_module():
    """:func:`run_offline` for module-scoped fixtures (environment restored after the module)."""
    with pytest.MonkeyPatch.context() as mp:
        yield functools.partial(_run_offline, monkeypatch=mp)


def pytest_sessionfinish(session, exitstatus):
    """No tool run by the tests may have tried the network (tests/netguard)."""
    from helpers import NETWORK_LOG

    if NETWORK_LOG.exists() and NETWORK_LOG.read_text().strip():
        attempts = NETWORK_LOG.read_text().strip().splitlines()
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"NETWORK ATTEMPTS during tool runs ({len(attempts)}): {attempts[:5]}", red=True)
        session.exitstatus = 1
    NETWORK_LOG.unlink(missing_ok=True)
