"""Exceptions that map onto the tool contract's exit codes.

Every problem a user can cause is raised as one of these with a message that
fits on one line and names the file and the cause.  The tool runner turns
them into ``young-<tool>: <path>: <message>`` on stderr (a traceback only with
``--debug``) and into the exit status: 2 for :class:`UsageError`, 1 when any
input failed with :class:`InputError` (or anything unexpected).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class YoungError(Exception):
    """Base class of all errors YOUNG reports to the user."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def line(self) -> str:
        """One-line description: ``path: message`` (or just the message)."""
        text = " ".join(self.message.split())
        return f"{self.path}: {text}" if self.path else text


class UsageError(YoungError):
    """Bad invocation: no inputs, unreadable config, invalid option value (exit 2)."""


class InputError(YoungError):
    """One input cannot be processed: not FITS, wrong level, missing reference (exit 1)."""


class SkipError(YoungError):
    """Not an error: the input is deliberately passed over (e.g. already corrected)."""


class InternalError(YoungError):
    """Something unexpected (a bug, a killed helper process) outside any one input's processing (exit 1).

    Made by :func:`internal` so that a parallel run can send it from rank 0 to
    every rank instead of leaving them waiting; ``details`` keeps the traceback
    for ``--debug``.
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def internal(exc: BaseException, during: str = "") -> InternalError:
    """The one-line report of an unexpected exception (with its traceback kept for ``--debug``)."""
    import traceback

    where = f" while {during}" if during else ""
    text = " ".join(str(exc).split())
    return InternalError(f"internal error{where}: {type(exc).__name__}: {text} (run with --debug for the traceback)",
                         "".join(traceback.format_exception(exc)))
