"""``young-refs``: fetch every CRDS reference a list of files needs, once.

Run it where the CRDS server is reachable (a login node), before compute
jobs that then read the cache in serverless, read-only mode.  Stdout lists
the reference files now in the cache (one path per line, each once); a file
whose references cannot all be had is named on stderr with the missing
reference, and the exit status is 1.
"""

from __future__ import annotations

import os
import sys
import time

from young.contract import config as configmod
from young.contract import crdsenv, fitscheck, inputs
from young.contract.errors import EXIT_FAILED, EXIT_OK, InputError, UsageError
from young.contract.runner import Common, in_this_process, resolve

TOOL = "young-refs"


def main(common: Common, stdin=None) -> int:
    """Prefetch references for the inputs; return the exit status."""
    t0 = time.monotonic()
    cfg = configmod.load(common.config)
    configmod.check_keys(cfg, resolve("young.steps.specs:section_params")())
    if common.sets:
        raise UsageError(f"--set: {TOOL} runs no jwst step (got {', '.join(common.sets)})")
    env = dict(os.environ)
    crdsenv.configure(cfg.section("refs"), common.crds_context, env)
    problem = crdsenv.resolve_context(env).problem()
    if problem:
        raise UsageError(problem)
    with in_this_process({k: v for k, v in env.items() if os.environ.get(k) != v}, common.verbose):
        return _fetch(common, stdin, t0)


def _fetch(common: Common, stdin, t0: float) -> int:
    items = inputs.collect(common.inputs, ("uncal", "rate", "cal"), stdin=stdin,
                           warn=lambda w: print(f"{TOOL}: warning: {w}", file=sys.stderr), recursive=common.recursive)
    failed = 0
    good = []
    for item in items:
        try:
            if item.error:
                raise item.error
            fitscheck.check_nircam_image(item.path, ("uncal", "rate", "cal"))
            good.append(item.path)
        except InputError as exc:
            failed += 1
            print(f"{TOOL}: {exc.line()}", file=sys.stderr)
    seen: set[str] = set()
    resolved = 0
    for rep in crdsenv.prefetch(good, context=common.crds_context):
        if rep.error is not None:
            failed += 1
            print(f"{TOOL}: {rep.error.line()}", file=sys.stderr)
            continue
        resolved += 1
        for reftype, path in sorted(rep.references.items()):
            if path not in seen:
                seen.add(path)
                print(path, flush=True)
                if common.verbose:
                    print(f"{TOOL}: {reftype}: {path}", file=sys.stderr)
    if not common.quiet:
        print(f"{TOOL}: {resolved} files resolved, {len(seen)} references in "
              f"{os.environ.get('CRDS_PATH', '(default cache)')}, "
              f"{failed} failed in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
