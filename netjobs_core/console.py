"""A run on a terminal (`netjobs CONFIG`, `netjobs demo`): an observer of the run's
owner (run.Run) that shows the -v display, a live per-host table on a terminal or
one line per step otherwise, the report after each test and what became of each
result file; Ctrl-C and SIGTERM stop the run through its owner."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from netjobs_core import text
from netjobs_core.config import Plan
from netjobs_core.events import Event, HostChanged, TestFinished, TestStarted
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.report import (
    LiveTable,
    ProgressLine,
    format_repeats,
    format_summary,
    format_test,
    verdict_line,
)
from netjobs_core.results import HostState, RunResult, TestResult, TestStatus
from netjobs_core.run import NotWritten, Outcome, Run, RunEnded, RunEvent, Written
from netjobs_core.run_options import RunOptions
from netjobs_core.session import STDOUT, host_key_line, say
from netjobs_core.vocabulary import word

if TYPE_CHECKING:
    from netjobs_core.ssh import SshOptions


class _Progress:
    """Without a terminal: one line per step (-v), or only as each test starts and ends."""

    def __init__(self, write: Callable[[str], None], steps: bool = True) -> None:
        self._write = write
        self._steps = steps

    def write(self, line: str) -> None:
        self._write(f"{text.timestamp(time.time(), 'milliseconds')} {line}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.write(text.test_begins(event.test))
        elif isinstance(event, HostChanged) and self._steps:
            host = event.host
            extra = ""
            if host.error and host.state in (HostState.FAILED, HostState.KILLED):
                extra = f": {text.beside_host(host.error, host.address)}"
            elif host.state is HostState.READY and host.rtt_ms is not None:
                extra = f" ({text.host_line_numbers(host)})"
            self.write(f"[{event.test.label}] {host.target}: {word(host.state)}{extra}")
        elif isinstance(event, TestFinished):
            self.write(text.test_ends(event.test))


class TerminalDisplay:
    """What `netjobs` shows while it runs: on a terminal (`err`) a line redrawn in place,
    with -v a live table; otherwise a line as each test starts and ends, with -v one per
    step, none with `quiet`. The report of each test goes to `out`, folded unless `fold`
    is False (`quiet`: its verdict only), and after a repeated test's last repetition
    its summary."""

    def __init__(
        self,
        verbose: bool,
        out: TextIO,
        err: TextIO,
        fold: bool = True,
        repeat: int = 1,
        show: int = SHOW_BYTES,
        quiet: bool = False,
    ) -> None:
        self.out = out
        self.quiet = quiet
        self.fold = fold
        self.repeat = repeat
        self.show = show  # bytes of each output the report shows
        self.repetitions: list[TestResult] = []  # of the test being repeated
        self.live: LiveTable | ProgressLine | None = None
        self.progress: Callable[[Event], None] | None = None
        if err.isatty():
            self.live = LiveTable(err) if verbose else ProgressLine(err)
        elif verbose or not quiet:
            self.progress = _Progress(lambda line: say(line, err), steps=verbose)

    def __call__(self, event: Event) -> None:
        if self.live is not None:
            self.live.observe(event)
        if self.progress is not None:
            self.progress(event)
        if isinstance(event, TestFinished):
            if self.live is not None:
                self.live.finish_test()
            if self.quiet:
                say(format_summary(event.test), self.out)
            else:
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

    def not_run(self, run: RunResult) -> None:
        """The tests the run did not reach, each with why: `test 'b': NOT RUN (...)`."""
        for test in run.tests:
            if test.status is TestStatus.PENDING:
                say(verdict_line(test), self.out)


async def run_on_terminal(
    plan: Plan,
    options: RunOptions,
    verbose: bool,
    log: bool,
    json_path: str | None,
    out: TextIO | None = None,
    *,
    csv_path: str | None = None,
    ssh: SshOptions | None = None,
    show: int = SHOW_BYTES,
    fold: bool = True,
    in_history: bool = True,
    quiet: bool = False,
) -> Outcome:
    """Run `plan` through its owner (run.Run) and show it: the reports go to `out`
    (standard output, or standard error when the JSON document or the CSV takes
    standard output: `--json -`, `--csv -`), -v shows every host in full, what happens
    to the result files goes to standard error. Ctrl-C or SIGTERM stops cleanly. Raises
    UsageError, before anything runs, when a result file could not be written."""
    if out is None:
        out = sys.stderr if STDOUT in (json_path, csv_path) else sys.stdout
    err = sys.stderr
    display = TerminalDisplay(
        verbose, out, err, fold and not verbose, options.repeat, show, quiet=quiet
    )
    run = Run(
        plan,
        options,
        ssh=ssh,
        log=log,
        show=show,
        json_path=json_path,
        csv_path=csv_path,
        in_history=in_history,
    )
    run.subscribe(_TerminalObserver(display, err))
    loop = asyncio.get_running_loop()
    async with run:
        installed = _install_stop(loop, run, err)
        try:
            await run.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            display.close()
    return run.outcome


class _TerminalObserver:
    """A run's events on a terminal: progress to the display, result files to `err`."""

    def __init__(self, display: TerminalDisplay, err: TextIO) -> None:
        self.display = display
        self.err = err

    def __call__(self, event: RunEvent) -> None:
        err = self.err
        if isinstance(event, Written):
            if event.path is None:  # standard output: what is there says so
                pass
            elif event.kind == "log":
                say(f"log written to {event.path}", err)
            elif event.kind == "csv":
                say(f"CSV written to {event.path}", err)
            else:
                say(f"results written to {event.path}", err)
        elif isinstance(event, NotWritten):
            where = f" to {event.where}" if event.where else ""
            say(f"netjobs: cannot write {event.what}{where}: {event.problem}", err)
        elif isinstance(event, RunEnded):
            outcome = event.outcome
            self.display.not_run(outcome.result)
            if outcome.history_problem:
                say(f"netjobs: warning: {outcome.history_problem}", err)
            say(f"results folder: {outcome.folder.path}", err)
            if outcome.unsaved:
                say(f"netjobs: NOT SAVED: {'; '.join(outcome.unsaved)}", err)
            for line in outcome.host_keys:
                say(host_key_line(line), err)
        else:
            self.display(event)


def _install_stop(loop: asyncio.AbstractEventLoop, run: Run, err: TextIO) -> list[int]:
    """First Ctrl-C stops cleanly (agents kill their jobs, results kept); a second one
    falls back to the default handler."""
    installed: list[int] = []

    def on_signal(sig: int) -> None:
        if run.stopped:
            loop.remove_signal_handler(sig)
            signal.raise_signal(sig)
            return
        how = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
        say(f"\nnetjobs: stopping on {how}: the agents kill their jobs ({how} again: now)", err)
        run.stop("stopped by user (Ctrl-C)" if sig == signal.SIGINT else f"stopped by {how}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    return installed
