"""What a tool tells its user: product paths in order on stdout, one line per problem and a summary on stderr."""

from __future__ import annotations

import sys
import time

from young.contract.errors import EXIT_FAILED, EXIT_OK
from young.contract.records import Common, Outcome

__all__ = ["Reporter"]


class Reporter:
    """Ordered stdout, one-line errors and progress on stderr, the summary.

    Parameters
    ----------
    tool : str
        Tool name (prefix of every stderr line).
    n : int
        Number of tasks (for the progress bar).
    common : Common
        ``quiet``, ``verbose``, ``debug``.
    unit : str
        What a task is called in the summary (``''`` for files, ``'group(s) '``).
    details : bool
        Print each task's ``info['summary']`` in the summary, in input order
        (stage 3: per filter, the sources matched and the alignment rms);
        otherwise it is shown with ``-v`` only.
    """

    def __init__(self, tool: str, n: int, common: Common, stdout=None, stderr=None, unit: str = "",
                 details: bool = False):
        self.tool, self.n, self.common, self.unit, self.details = tool, n, common, unit, details
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.results: dict[int, Outcome] = {}
        self.rejected = 0
        self.next = 0
        self.t0 = time.monotonic()
        self.progress = None
        if not common.quiet and self.stderr.isatty() and n > 1:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.progress = Progress("[bold]" + tool, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=Console(file=self.stderr), transient=True)
            self.progress.start()
            self.bar = self.progress.add_task(tool, total=n)

    def say(self, line: str, always: bool = False) -> None:
        """A line on stderr (silenced by ``-q`` unless ``always``)."""
        if self.common.quiet and not always:
            return
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stderr, flush=True)

    def warn(self, text: str) -> None:
        self.say(f"{self.tool}: warning: {text}")

    def reject(self, message: str) -> None:
        """An input refused before any task was made for it (stage 3's inputs)."""
        self.rejected += 1
        self.say(f"{self.tool}: {message}", always=True)

    def add(self, out: Outcome) -> None:
        self.results[out.index] = out
        for w in out.warnings:
            self.warn(w)
        if out.status == "failed":
            self.say(f"{self.tool}: {out.message}", always=True)
            if out.traceback and self.common.debug:
                self.say(out.traceback.rstrip(), always=True)
        elif self.common.verbose:
            extra = f", {out.info['summary']}" if out.info.get("summary") and not self.details else ""
            self.say(f"{self.tool}: {out.status} {out.dst or out.src} ({out.seconds:.2f} s{extra})")
        if self.progress is not None:
            self.progress.advance(self.bar)
        while self.next in self.results:
            r = self.results[self.next]
            if r.status in ("done", "skipped"):
                for p in r.products or ([r.dst] if r.dst else []):
                    print(p, file=self.stdout, flush=True)
            self.next += 1

    def finish(self) -> int:
        if self.progress is not None:
            self.progress.stop()
        counts = {s: sum(1 for r in self.results.values() if r.status == s) for s in ("done", "skipped", "failed")}
        alone = sum(1 for r in self.results.values() if r.status == "skipped" and r.message.endswith("left alone"))
        peak = max((r.rss_mb for r in self.results.values()), default=0.0)
        if self.details:
            for i in sorted(self.results):
                if self.results[i].info.get("summary"):
                    self.say(f"{self.tool}: {self.results[i].info['summary']}")
        bad = f", {self.rejected} input file(s) rejected" if self.rejected else ""
        left = f", {alone} already corrected (left alone)" if alone else ""
        self.say(f"{self.tool}: {counts['done']} {self.unit}done, {counts['skipped'] - alone} up to date, "
                 f"{counts['failed']} failed{bad}{left} in {time.monotonic() - self.t0:.1f} s"
                 + (f" (peak memory per process {peak:.0f} MB)" if peak else ""))
        return EXIT_FAILED if (counts["failed"] or self.rejected) else EXIT_OK
