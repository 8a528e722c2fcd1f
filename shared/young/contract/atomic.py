"""Atomic writes: nothing half-written ever carries a product's name.

Every product is written under a hidden temporary name in its target folder
(``.<name>.young-tmp-<pid>-<rand>``), then moved into place with
:func:`os.replace`, which is atomic within a file system.  A process killed
mid-write leaves only the hidden temporary, which the next run for the same
product removes (when its writer process is gone) and which directory
expansion never picks up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

TMP_MARK = ".young-tmp-"


def _tmp_prefix(final: Path) -> str:
    return f".{final.name}{TMP_MARK}"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie -- killed, not yet reaped -- does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a SIGKILLed writer whose parent died too stays a zombie where nothing reaps orphans
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def clean_stale(final: str | Path) -> list[Path]:
    """Remove temporaries of ``final`` left by writers that no longer run.

    Returns the removed paths.
    """
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    prefix = _tmp_prefix(final)
    for p in final.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        try:
            pid = int(p.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue  # a writer still at work (possibly this very process)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def tmp_name(final: str | Path, suffix: str = "") -> Path:
    """A fresh hidden temporary path beside ``final``."""
    final = Path(final)
    return final.parent / f"{_tmp_prefix(final)}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


@contextlib.contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path with ``final``'s own name; on success move it onto ``final``.

    The temporary lives in a hidden folder beside ``final`` (same file system,
    so :func:`os.replace` is atomic) and carries the final file name, so
    writers that record their own file name (datamodels' ``meta.filename``)
    record the right one.  The folder doubles as a scratch area for programs
    that write extra files (jwst).  On any exception nothing is moved and
    ``final`` is left as it was; the folder is always removed.
    """
    final = Path(final)
    folder = tmp_name(final)
    folder.mkdir()
    tmp = folder / final.name
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_writable(folder: str | Path) -> None:
    """Raise ``PermissionError``/``FileNotFoundError`` if products cannot be created in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".young-probe-"):
        pass


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Give ``dst`` the content of ``src`` without a copy where possible: a hard link, else a copy.

    A hard link is the same file under a second name: no disk, and it
    survives the removal of ``src`` (``make all KEEP=final``).  Across file
    systems (or where links are refused) the file is copied.  Returns
    ``"link"`` or ``"copy"``.
    """
    import shutil

    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"
