"""A run on a terminal (`netjobs CONFIG`, `netjobs demo`): the -v display, a live
per-host table on a terminal or one line per step otherwise, and the report
after each test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from netjobs_core.config import Plan
from netjobs_core.events import Event, HostChanged, TestFinished, TestStarted
from netjobs_core.report import LiveTable, format_test
from netjobs_core.results import RunResult
from netjobs_core.runner import RunOptions
from netjobs_core.session import run_plan


class _Progress:
    """-v without a terminal: one line per step."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.write(f"[{event.test.label}] starting: {len(event.test.hosts)} hosts")
        elif isinstance(event, HostChanged):
            host = event.host
            extra = (
                f": {host.error}" if host.error and host.state.value in ("failed", "killed") else ""
            )
            if host.state.value == "ready" and host.clock_offset_ms is not None:
                extra = (
                    f" (rtt {host.rtt_ms:.3f} ms, clock offset {host.clock_offset_ms:+.3f} "
                    f"+/- {host.clock_uncertainty_ms:.3f} ms)"
                )
            self.write(f"[{event.test.label}] {host.target}: {host.state.value}{extra}")
        elif isinstance(event, TestFinished):
            self.write(f"[{event.test.label}] {event.test.status.value}")


class TerminalDisplay:
    """What `netjobs` shows while it runs; the report of each test goes to `out`."""

    def __init__(self, verbose: bool, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.live: LiveTable | None = None
        self.progress: Callable[[Event], None] | None = None
        if verbose and err.isatty():
            self.live = LiveTable()
        elif verbose:
            self.progress = _Progress(lambda line: print(line, file=err, flush=True))

    def __call__(self, event: Event) -> None:
        if self.live is not None:
            self.live.observe(event)
        if self.progress is not None:
            self.progress(event)
        if isinstance(event, TestFinished):
            if self.live is not None:
                self.live.finish_test()
            print(format_test(event.test), file=self.out, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


async def run_on_terminal(
    plan: Plan,
    options: RunOptions,
    verbose: bool,
    log: bool,
    json_path: str | None,
    out: TextIO | None = None,
) -> RunResult:
    display = TerminalDisplay(verbose, out or sys.stdout, sys.stderr)
    return await run_plan(plan, options, display, log=log, json_path=json_path)
