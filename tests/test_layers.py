"""The package's layers, checked from the source: imports only downward, no cycle, small modules.

docs/architecture.md ("Layers") is the rule this test enforces:

contract/    the tool contract           imports: young (version), contract
algorithms/  arrays in, arrays out       imports: algorithms; numpy, scipy, astropy (photutils for the 2-D mesh)
steps/       stpipe Steps + model I/O    imports: contract, algorithms, the shared step helpers; never another step
stage3/      mosaics and catalogs        imports: contract, algorithms, stage3
sim/         simulator, truth, report    imports: anything below

Every import is read with ``ast`` (module level and inside functions), so a
lazy import cannot hide a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "shared" / "young"
LAYERS = ("contract", "algorithms", "steps", "stage3", "sim")
ALLOWED = {
    "contract": {"contract"},
    "algorithms": {"algorithms"},
    "steps": {"contract", "algorithms", "steps"},
    "stage3": {"contract", "algorithms", "stage3"},
    "sim": {"contract", "algorithms", "steps", "stage3", "sim"},
}
#: modules of steps/ every step may use (the others are steps, which never import each other)
STEP_HELPERS = {"models", "references", "plots", "specs", "base", "tooling", "integration"}
#: third-party packages the algorithms may import
ALGORITHM_PACKAGES = {"numpy", "scipy", "astropy", "photutils"}
#: where jwst and stpipe may be imported (the contract only to list the pipelines' CRDS reference types and
#: to check --set step parameters against the pipelines' specs, lazily)
JWST_PLACES = {"steps", "stage3", "sim", "contract/crdsenv.py", "contract/pipelinecheck.py"}
MAX_LINES = 820


def modules() -> dict[str, Path]:
    """``young.x.y`` -> file, for every module of the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (absolute names, relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    pkg_parts = path.relative_to(PKG.parent).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg_parts[: len(pkg_parts) - node.level + 1] + ((base,) if base else ()))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]  # `from young.x import module`
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "young" and parts[1] in LAYERS else None


MODULES = modules()


@pytest.mark.parametrize("name", [m for m in MODULES if layer_of(m)])
def test_imports_run_only_downward(name):
    path = MODULES[name]
    layer = layer_of(name)
    bad = []
    for target, line in imports(path):
        top = target.split(".")[0]
        if top == "young":
            tl = layer_of(target)
            if target in ("young", "young.__version__") or tl is None and target.count(".") == 1 \
                    and target.split(".")[1] not in LAYERS:
                if layer == "algorithms" and target == "young":
                    bad.append(f"line {line}: {target} (algorithms know nothing of the package)")
                continue
            if tl is not None and tl not in ALLOWED[layer]:
                bad.append(f"line {line}: {target} ({layer} may import {', '.join(sorted(ALLOWED[layer]))})")
            if layer == "steps" and tl == "steps":
                mine, theirs = name.split(".")[2], target.split(".")[2] if target.count(".") >= 2 else ""
                if theirs and theirs != mine and theirs not in STEP_HELPERS and f"young.steps.{theirs}" in MODULES:
                    bad.append(f"line {line}: {target} (steps never import each other)")
        elif layer == "algorithms" and top not in ALGORITHM_PACKAGES and not _stdlib(top):
            bad.append(f"line {line}: {target} (algorithms use numpy, scipy and astropy only)")
        if top in ("jwst", "stpipe"):
            rel = str(path.relative_to(PKG))
            if layer not in JWST_PLACES and rel not in JWST_PLACES:
                bad.append(f"line {line}: {target} (jwst/stpipe only in steps/ and stage3/)")
    assert not bad, f"{path.relative_to(PKG.parent)}:\n  " + "\n  ".join(bad)


def _stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names or name == "__future__"


def test_no_import_cycle():
    """The module graph (every import, lazy ones included) has no cycle."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for target, _ in imports(path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + ".") and target != "young":
                deps.add(target)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in graph.get(n, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)


def test_modules_are_small():
    long = {str(p.relative_to(PKG)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_layer_says_what_it_holds():
    """Each layer's ``__init__`` is a short README: what lives there and what it may import."""
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PKG / layer / "__init__.py").read_text())) or ""
        assert len(doc.splitlines()) >= 3 and "import" in doc, f"{layer}/__init__.py needs its README docstring"


def test_no_references_outside_the_repository():
    """Code and docs cite the repository's own documents, never a build machine's paths or a handbook."""
    root = PKG.parent.parent
    bad = []
    for p in [*PKG.rglob("*.py"), *(root / "tools").glob("young-*"), *(root / "docs").rglob("*.md")]:
        text = p.read_text()
        for needle in ("../shared", "ALGORITHMS.md", "DESIGN.md", "OFFLINE-CRDS.md", "/work/", "/farm/"):
            if needle in text:
                bad.append(f"{p.relative_to(root)}: {needle}")
    assert not bad, bad


def test_dq_flags_match_the_data_model_package():
    """algorithms/dq.py restates JWST's DQ flags (to keep the layer free of stdatamodels): they must agree."""
    from stdatamodels.jwst.datamodels import dqflags
    from young.algorithms import dq

    assert dq.PIXEL == dict(dqflags.pixel)
