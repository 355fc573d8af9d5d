"""The one owner of a run, for the CLI and the GUI alike.

`Run` composes everything a run of a plan needs, once: its results folder, its
dialer (SSH connections when a target is over SSH), the runner (its options
complete before it exists), results.json in the folder (rewritten as each test
starts and ends, and at the run's end unless the last test's end wrote it all), the
`-l` logs, the `--json` document and the run's line in the run history (written as it
starts, not ended: interrupted, until it ends). A front end only subscribes to its
events (the runner's progress events, then `Written`/`NotWritten` for result files and
`RunEnded` last) and stops it with `stop()`:

    run = Run(plan, options, ssh=ssh_options, log=True)   # raises UsageError, OSError
    run.subscribe(observer)
    async with run:            # leaving: results files, SSH closed, history, RunEnded
        await run.run()
    run.outcome.exit_code

Qt-free and rich-free; nothing here prints (standard output gets only a `--json -`
document): the front ends word the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from netjobs_core import history, logs
from netjobs_core.config import Plan
from netjobs_core.events import CommandChanged, Event, TestFinished, TestStarted
from netjobs_core.links import Links
from netjobs_core.log_parts import LogParts
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import RunResult, TestStatus
from netjobs_core.results_csv import MetricCells, csv_text, write_csv
from netjobs_core.results_json import json_text, write_json
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.session import (
    STDOUT,
    check_distinct,
    check_writable,
    exit_code,
    largest_exit_status,
    new_ssh_dialer,
    plan_addresses,
)

if TYPE_CHECKING:
    from netjobs_core.ssh import SshDialer, SshOptions

__all__ = [
    "NotWritten",
    "Outcome",
    "Run",
    "RunEnded",
    "RunEvent",
    "RunObserver",
    "Written",
    "read_config_text",
]


@dataclass(frozen=True)
class Written:
    """A result file a person asked for was written: a test's `-l` log, or the
    `--json` document or the `--csv` file (`path` None: standard output)."""

    kind: Literal["log", "json", "csv"]
    path: Path | None


@dataclass(frozen=True)
class NotWritten:
    """A result file could not be written: `what` ("the log of test 't'", "the
    results", "the run's results.json"), `where` (a path, or "" when `problem`
    names it) and the problem."""

    what: str
    where: str
    problem: str

    @property
    def text(self) -> str:
        """`the results (r.json: Permission denied)`: what the end of a run lists."""
        where = f"{self.where}: " if self.where else ""
        return f"{self.what} ({where}{self.problem})"


@dataclass
class Outcome:
    """A finished run: the results, where they are, and what could not be kept."""

    result: RunResult
    folder: RunFolder
    unsaved: list[str] = field(default_factory=list)  # NotWritten.text of each lost file
    history_problem: str | None = None  # why the run history could not keep the run
    host_keys: list[str] = field(default_factory=list)  # SSH host keys accepted (accept_new)

    @property
    def exit_code(self) -> int:
        return exit_code(self.result, self.unsaved)

    @property
    def largest_exit_status(self) -> int:
        """-S: the largest exit status of any command (session.largest_exit_status)."""
        return largest_exit_status(self.result, self.unsaved)


@dataclass(frozen=True)
class RunEnded:
    """The last event: every file written or not, SSH closed, the history told."""

    outcome: Outcome


RunEvent = Event | Written | NotWritten | RunEnded
RunObserver = Callable[[RunEvent], None]


def read_config_text(path: str | os.PathLike[str]) -> str | None:
    """The config's text as the run history keeps it; None when unreadable or too big."""
    try:
        with open(path, "rb") as file:
            data = file.read(history.CONFIG_TEXT_LIMIT + 1)
    except OSError:
        return None
    if len(data) > history.CONFIG_TEXT_LIMIT:
        return None
    return data.decode("utf-8", "replace")


class Run:
    """One run of `plan`: `async with` it, await `run()` inside, read `outcome` after.

    Everything is decided on construction: the run folder (`options.run_folder`, or a
    new one under the data directory: OSError when it cannot be made), the dialer (for
    a plan with targets over SSH, with `ssh`; `options.dialer` must be None) and the
    runner, whose `result` is live from now on. `log` writes each test's `-l` log
    beside the config as the test ends (of each output at most `show` bytes);
    `json_path` gets the whole run at the end, `csv_path` its commands as CSV
    (results_csv), either `-` for standard output; the run goes
    into the run history unless not `in_history` (the config's text read now, as it
    is run). A result file that cannot be written is refused now with UsageError."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        *,
        labels: Sequence[str] | None = None,
        ssh: SshOptions | None = None,
        log: bool = False,
        show: int = SHOW_BYTES,
        json_path: str | None = None,
        csv_path: str | None = None,
        in_history: bool = True,
    ) -> None:
        if options.dialer is not None:
            raise ValueError("a Run makes its own dialer: give its SSH options as `ssh`")
        if log:
            check_writable(logs.log_path(plan.path, "label", 0), "the -l logs")
        if json_path and json_path != STDOUT:
            check_writable(json_path, "the --json file")
        if csv_path and csv_path != STDOUT:
            check_writable(csv_path, "the --csv file")
        check_distinct([("the --json file", json_path), ("the --csv file", csv_path)], [plan.path])
        self.plan = plan
        self.labels = list(labels) if labels is not None else None
        self.log = log
        self.show = show
        # Each command's part of its test's log, formed as the command ends (log_parts).
        self._log_parts = LogParts() if log else None
        self.json_path = json_path
        self.csv_path = csv_path
        # Each command's metric cells of the CSV, formed as it ends (results_csv).
        self._metric_cells = MetricCells() if csv_path else None
        self.in_history = in_history
        self.config_text = read_config_text(plan.path) if in_history and plan.path else None
        self.folder = options.run_folder or RunFolder.create()
        self._dialer: SshDialer | None = new_ssh_dialer(plan_addresses(plan), ssh)
        self.options = dataclasses.replace(options, run_folder=self.folder, dialer=self._dialer)
        self._observers: list[RunObserver] = []
        # Closed once the results are written (__aexit__).
        self._links = Links()
        self._runner = Runner(plan, self.options, self._on_event, self._links)
        self.result = self._runner.result
        self.outcome = Outcome(self.result, self.folder)
        self._save_error: NotWritten | None = None  # of the last results.json written
        # results.json holds the whole result as it is now: written at a test's end,
        # nothing in the result changes until the next test starts (the runner fills it
        # only between TestStarted and TestFinished), so the run's end need not write
        # the same document again (at 1000 hosts it is 17 MB: 0.1-0.3 s).
        self._saved_whole = False
        self._state: Literal["new", "entered", "running", "ended"] = "new"

    def subscribe(self, observer: RunObserver) -> None:
        """`observer` gets every event from now on, in order; it must not block."""
        self._observers.append(observer)

    def stop(self, reason: str = "stopped by user") -> None:
        """Abort the running test cleanly (the agents kill their jobs); no further test."""
        self._runner.stop(reason)

    @property
    def stopped(self) -> bool:
        return self._runner.stopped

    async def __aenter__(self) -> Run:
        if self._state != "new":
            raise RuntimeError("a Run is entered once")
        self._state = "entered"
        if self._dialer is not None:
            await self._dialer.__aenter__()
            # The first test's SSH handshakes go on meanwhile: they wait on the hosts.
            self._dialer.connect_ahead(
                self._runner.first_addresses(self.labels), self.options.connect_timeout
            )
        try:
            # As it starts, so that a run killed before its end has its results.json (of
            # what is known) and reads as interrupted in the history.
            self._save(quiet=True)
            if self.in_history:
                await self._record(ended=False)
        except BaseException:
            if self._dialer is not None:  # no __aexit__ after a failed __aenter__
                await self._dialer.close()
            raise
        # What exists before the run lives through it: out of the collector's full
        # passes until the run ends (__aexit__), which otherwise walk it all in one go on
        # the loop's thread (the GUI's heap: 101 ms of a 144 ms stall of its window in CI).
        gc.freeze()
        return self

    async def run(self) -> RunResult:
        """Every test of the plan (or of `labels`), in file order; ValueError for an
        unknown label. Only inside `async with`, once."""
        if self._state != "entered":
            raise RuntimeError("Run.run() is awaited once, inside `async with`")
        self._state = "running"
        result = await self._runner.run(self.labels)
        if any(test.status is TestStatus.PENDING for test in result.tests):
            self._saved_whole = False  # the tests not run came after the last test's save
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Whatever ended the run (its end, an exception, a cancellation), its files
        are written, its SSH connections closed and its history kept, then RunEnded:
        each step is taken even when the one before it failed."""
        self._state = "ended"
        outcome = self.outcome
        async with contextlib.AsyncExitStack() as steps:  # the last pushed runs first
            steps.callback(lambda: self._emit(RunEnded(outcome)))
            steps.callback(gc.unfreeze)  # its garbage collectable again, once it is over
            if self.in_history:
                steps.push_async_callback(self._record)
            # After the SSH connections (an agent started over SSH ends with its own, as
            # it used to): an installed agent's link gets its `bye`.
            steps.push_async_callback(self._links.close)
            if (dialer := self._dialer) is not None:
                steps.callback(lambda: outcome.host_keys.extend(dialer.accepted))
                steps.push_async_exit(dialer)
            if not self._saved_whole:  # the last word: also a run stopped before a test
                self._save()
            if self._save_error is not None:
                outcome.unsaved.append(self._save_error.text)
            if self.json_path:
                self._write_json(self.json_path)
            if self.csv_path:
                self._write_csv(self.csv_path)

    # ---- what the owner does as the run goes
    async def _record(self, ended: bool = True) -> None:
        """The run's line in the run history (not `ended`: as it starts), off the event
        loop (a database another program holds waits up to its busy timeout; the GUI
        stays responsive)."""
        self.outcome.history_problem = await asyncio.to_thread(
            history.record_run, self.result, self.config_text, ended=ended
        )

    def _emit(self, event: RunEvent) -> None:
        for observer in self._observers:
            observer(event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TestFinished):
            self._save()  # before anyone hears of the end: nothing is lost
            self._saved_whole = self._save_error is None
        elif isinstance(event, TestStarted):
            self._saved_whole = False
            self._save(quiet=True)  # a run killed meanwhile says which test it was in
        self._emit(event)
        if isinstance(event, CommandChanged) and event.final:
            self._form(event)
        if isinstance(event, TestFinished) and self._log_parts is not None:
            self._write_log(event, self._log_parts)
            self._log_parts.clear()

    def _form(self, event: CommandChanged) -> None:
        """A command's result is final, its metrics read (host_run): its part of the
        log and its CSV cells now rather than at the end."""
        command = event.host.commands[event.index]
        if self._log_parts is not None:
            self._log_parts.form(event.host.target, command, self.show)
        if self._metric_cells is not None:
            self._metric_cells.cells(command)

    def _save(self, quiet: bool = False) -> None:
        """results.json in the run folder; its problem kept (and told) when it fails.
        `quiet`: as a test starts, only for a run killed before the test ends; the
        write at its end tells."""
        path = self.folder.json_path
        try:
            write_json(self.result, path, self.options.inline_limit)
        except OSError as exc:
            if quiet:
                return
            self._save_error = NotWritten(
                "the run's results.json", str(path), exc.strerror or str(exc)
            )
            self._emit(self._save_error)
        else:
            if not quiet:
                self._save_error = None

    def _write_log(self, event: TestFinished, parts: LogParts) -> None:
        try:
            path = logs.write_test_log(
                self.plan.path, event.test, self.show, run_id=self.result.run_id, parts=parts
            )
        except OSError as exc:
            self._not_written(NotWritten(f"the log of test {event.test.label!r}", "", str(exc)))
        else:
            self._emit(Written("log", path))

    def _write_json(self, json_path: str) -> None:
        try:
            if json_path == STDOUT:
                sys.stdout.write(json_text(self.result, None, self.options.inline_limit))
                sys.stdout.flush()
            else:
                write_json(self.result, json_path, self.options.inline_limit)
        except OSError as exc:  # BrokenPipeError too: `--json - | head`
            where = "standard output" if json_path == STDOUT else json_path
            self._not_written(NotWritten("the results", where, exc.strerror or str(exc)))
        else:
            self._emit(Written("json", None if json_path == STDOUT else Path(json_path)))

    def _write_csv(self, csv_path: str) -> None:
        try:
            if csv_path == STDOUT:
                sys.stdout.write(csv_text(self.result, self._metric_cells))
                sys.stdout.flush()
            else:
                write_csv(self.result, csv_path, self._metric_cells)
        except OSError as exc:  # BrokenPipeError too: `--csv - | head`
            where = "standard output" if csv_path == STDOUT else csv_path
            self._not_written(NotWritten("the CSV", where, exc.strerror or str(exc)))
        else:
            self._emit(Written("csv", None if csv_path == STDOUT else Path(csv_path)))

    def _not_written(self, problem: NotWritten) -> None:
        self.outcome.unsaved.append(problem.text)
        self._emit(problem)
