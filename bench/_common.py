"""Shared helpers for the benchmark scripts in bench/ (not part of the package)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A YOUNG tool: the installed script if present, else the checkout's."""
    p = BIN / name
    return str(p if p.exists() else REPO / "tools" / name)


def env_for(config: Path | None = None, **extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "shared"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if config is not None:
        import yaml

        cfg = yaml.safe_load(Path(config).read_text())
        base = Path(config).resolve().parent
        env["CRDS_PATH"] = str((base / cfg["crds_path"]).resolve())
        if cfg.get("crds_context"):
            env["CRDS_CONTEXT"] = cfg["crds_context"]
        env["CRDS_SERVER_URL"] = "https://jwst-serverless-mode.stsci.edu"
    env.update(extra)
    return env


def timed(cmd, env=None, stdin=None, cwd=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], env=env, input=stdin, capture_output=True, text=True, cwd=cwd)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}\n")
        raise SystemExit(1)
    return dt, r


def simulate(workdir: Path, preset: str, seed: int = 1) -> list[Path]:
    """Simulate a field once (kept between benchmark runs)."""
    raw = workdir / "raw"
    if not (workdir / "young.yaml").exists():
        timed([sys.executable, tool("young-sim"), workdir, "--preset", preset, "--seed", seed, "--force"],
              env=env_for())
    return sorted(raw.glob("*_uncal.fits"))


def table(rows, headers) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
