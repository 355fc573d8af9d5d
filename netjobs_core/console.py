"""A run on a terminal (`netjobs CONFIG`, `netjobs demo`): the -v display, a live
per-host table on a terminal or one line per step otherwise, and the report
after each test."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from netjobs_core import text
from netjobs_core.config import Plan
from netjobs_core.events import Event, HostChanged, TestFinished, TestStarted
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.report import LiveTable, format_repeats, format_test
from netjobs_core.results import HostState, TestResult
from netjobs_core.run_options import RunOptions
from netjobs_core.session import STDOUT, Outcome, run_plan, say
from netjobs_core.vocabulary import word


class _Progress:
    """-v without a terminal: one line per step."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def write(self, line: str) -> None:
        self._write(f"{text.timestamp(time.time(), 'milliseconds')} {line}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.write(f"[{event.test.label}] starting: {len(event.test.hosts)} hosts")
        elif isinstance(event, HostChanged):
            host = event.host
            extra = ""
            if host.error and host.state in (HostState.FAILED, HostState.KILLED):
                extra = f": {host.error}"
            elif host.state is HostState.READY and host.rtt_ms is not None:
                extra = f" ({text.host_line_numbers(host)})"
            self.write(f"[{event.test.label}] {host.target}: {word(host.state)}{extra}")
        elif isinstance(event, TestFinished):
            self.write(f"[{event.test.label}] {word(event.test.status)}")


class TerminalDisplay:
    """What `netjobs` shows while it runs; the report of each test goes to `out`, folded
    unless `fold` is False, and after a repeated test's last repetition its summary."""

    def __init__(
        self,
        verbose: bool,
        out: TextIO,
        err: TextIO,
        fold: bool = True,
        repeat: int = 1,
        show: int = SHOW_BYTES,
    ) -> None:
        self.out = out
        self.fold = fold
        self.repeat = repeat
        self.show = show  # bytes of each output the report shows
        self.repetitions: list[TestResult] = []  # of the test being repeated
        self.live: LiveTable | None = None
        self.progress: Callable[[Event], None] | None = None
        if verbose and err.isatty():
            self.live = LiveTable()
        elif verbose:
            self.progress = _Progress(lambda line: say(line, err))

    def __call__(self, event: Event) -> None:
        if self.live is not None:
            self.live.observe(event)
        if self.progress is not None:
            self.progress(event)
        if isinstance(event, TestFinished):
            if self.live is not None:
                self.live.finish_test()
            say(format_test(event.test, self.fold, self.show), self.out)
            if event.test.repetition is not None:
                self.repetitions.append(event.test)
                if event.test.repetition == self.repeat:
                    self._summarise()

    def _summarise(self) -> None:
        summary = format_repeats(self.repetitions)
        self.repetitions = []
        if summary is not None:
            say(summary, self.out)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        self._summarise()  # of a test stopped before its last repetition


async def run_on_terminal(
    plan: Plan,
    options: RunOptions,
    verbose: bool,
    log: bool,
    json_path: str | None,
    out: TextIO | None = None,
    *,
    show: int = SHOW_BYTES,
    fold: bool = True,
    in_history: bool = True,
) -> Outcome:
    """The reports go to `out` (standard output, or standard error when the JSON
    document takes standard output: `--json -`); -v shows every host in full."""
    if out is None:
        out = sys.stderr if json_path == STDOUT else sys.stdout
    display = TerminalDisplay(verbose, out, sys.stderr, fold and not verbose, options.repeat, show)
    return await run_plan(
        plan,
        options,
        display,
        log=log,
        json_path=json_path,
        show=show,
        in_history=in_history,
    )
