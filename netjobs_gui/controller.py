"""The one place that starts async work (host checks, runs) and holds its tasks.

Views call `check_hosts()`, `start_run()` and `stop()` from their slots, which
return at once; the work runs as asyncio tasks on the qasync loop. A run is owned
by netjobs_core.run.Run (folder, SSH, results.json, history), as the CLI's is;
the controller only observes it. Its events only mark the state dirty: a timer
turns them into at most one `progress` signal per tick, so a hundred hosts
streaming output cost ten refreshes a second, not one per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from netjobs_core import check as core_check
from netjobs_core.config import Plan
from netjobs_core.events import CommandOutput, TestFinished, TestStarted
from netjobs_core.results import RunResult
from netjobs_core.run import NotWritten, Run, RunEnded, RunEvent, Written
from netjobs_core.run_options import RunOptions
from netjobs_core.session import UsageError, run_token, ssh_dialer
from netjobs_core.wire.address import Address
from netjobs_core.wire.tokens import Token

if TYPE_CHECKING:
    from netjobs_core.ssh import SshOptions

log = logging.getLogger(__name__)

FLUSH_INTERVAL_MS = 120


def not_written_text(lost: list[str]) -> str:
    """What the window says of result files it could not write: each with its path,
    and that nothing already collected is lost."""
    return (
        "Could not write " + "; ".join(lost) + ". Nothing collected is lost: the results "
        "stay in this window (Results ▸ Save log… writes them where you choose)."
    )


class Controller(QObject):
    busy_changed = Signal(bool)
    check_started = Signal(list)  # list[Address]
    check_result = Signal(object)  # HostCheck: one host's answer, as soon as it arrives
    check_finished = Signal(list)  # list[HostCheck]
    run_started = Signal(object)  # the live RunResult
    test_started = Signal(object)  # the live TestResult
    progress = Signal()  # something changed: refresh from the live results
    test_finished = Signal(object)  # TestResult
    run_finished = Signal(object)  # RunResult
    error = Signal(str, str)  # title, message
    token_missing = Signal(str)  # why there is no token to reach the agents with

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.current: Run | None = None  # the run in progress
        self.checking = False
        self.started = 0.0  # time.monotonic() when the current run began
        self.output_bytes = 0  # received during the current run (for the status bar)
        self.not_written: list[str] = []  # the current run's files not written, as told
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)

    # ---- state
    @property
    def running(self) -> bool:
        return self.current is not None

    @property
    def running_s(self) -> float:
        """How long the current run has been going (0 when idle)."""
        return time.monotonic() - self.started if self.running else 0.0

    @property
    def busy(self) -> bool:
        return self.running or self.checking

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a Qt slot outside any task: qasync's loop is the current one
            loop = asyncio.get_event_loop()
        task = loop.create_task(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)
            self.error.emit("Internal error", f"{task.get_name()}: {type(exc).__name__}: {exc}")

    def load_token(self, token_file: str, addresses: Sequence[Address] = ()) -> Token | None:
        """The token (none needed when every target is over SSH), or None after
        reporting why there is none."""
        try:
            return run_token(addresses, token_file or None)
        except UsageError as exc:
            self.token_missing.emit(str(exc))
            return None

    # ---- check hosts
    def check_hosts(
        self,
        addresses: Sequence[Address],
        token_file: str,
        timeout: float,
        ssh: SshOptions | None = None,
    ) -> asyncio.Task[Any] | None:
        if self.checking:
            self.error.emit("Check hosts", "A check is already running.")
            return None
        addresses = list(dict.fromkeys(addresses))
        if not addresses:
            self.error.emit("Check hosts", "There are no hosts to check.")
            return None
        token = self.load_token(token_file, addresses)
        if token is None:
            return None
        self.checking = True
        self.busy_changed.emit(True)
        self.check_started.emit(addresses)
        return self._spawn(self._check(addresses, token, timeout, ssh), "check hosts")

    async def _check(
        self,
        addresses: list[Address],
        token: Token,
        connect_timeout: float,
        ssh: SshOptions | None,
    ) -> None:
        checks: list[Any] = []
        try:
            async with ssh_dialer(addresses, ssh) as dialer:
                # Each row fills as its answer comes, not at the slowest's timeout.
                checks = await core_check.check_hosts(
                    addresses, token, connect_timeout, dialer, on_result=self.check_result.emit
                )
        except Exception as exc:
            self.error.emit("Check hosts failed", f"{type(exc).__name__}: {exc}")
        finally:
            self.checking = False
            self.check_finished.emit(checks)
            self.busy_changed.emit(self.busy)

    # ---- run
    def start_run(
        self,
        plan: Plan,
        options: RunOptions,
        labels: Sequence[str] | None = None,
        ssh: SshOptions | None = None,
        run_args: Mapping[str, Any] | None = None,
    ) -> asyncio.Task[Any] | None:
        """`run_args`: more of Run's arguments (run_flags.run_values: in_history)."""
        if self.running:
            self.error.emit("Run", "A run is already in progress.")
            return None
        try:
            run = Run(plan, options, labels=labels, ssh=ssh, **(run_args or {}))
        except UsageError as exc:
            self.error.emit("Cannot start the run", f"{exc}. Nothing was run.")
            return None
        except OSError as exc:
            where = exc.filename or "the results folder"
            self.error.emit(
                "Cannot start the run",
                f"The run's results folder cannot be made: {where}: {exc.strerror or exc}. "
                "Nothing was run.",
            )
            return None
        self.not_written = []
        run.subscribe(self._observe)
        self.current = run
        self.started = time.monotonic()
        self.output_bytes = 0
        self._dirty = False
        self._timer.start()
        self.busy_changed.emit(True)
        self.run_started.emit(run.result)
        return self._spawn(self._run(run), "run")

    async def _run(self, run: Run) -> None:
        try:
            async with run:  # on the way out: results.json, SSH closed, history (in a thread)
                await run.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run failed")
            self.error.emit("Run failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._timer.stop()
            self.current = None
            self._flush(force=True)
            self.run_finished.emit(run.result)
            self.busy_changed.emit(self.busy)

    def stop(self, reason: str = "stopped by user") -> bool:
        """Abort the running test cleanly (the agents kill their jobs); False if idle."""
        if self.current is None:
            return False
        self.current.stop(reason)
        return True

    @property
    def result(self) -> RunResult | None:
        return self.current.result if self.current is not None else None

    def cancel_all(self) -> None:
        """Last resort (the window is going away): cancel every task."""
        for task in list(self.tasks):
            task.cancel()

    # ---- the run's events: never block, only mark dirty
    def _observe(self, event: RunEvent) -> None:
        if isinstance(event, CommandOutput):
            self.output_bytes += len(event.data)
            self._dirty = True
        elif isinstance(event, TestStarted):
            self._flush(force=True)
            self.test_started.emit(event.test)
        elif isinstance(event, TestFinished):
            self._flush(force=True)
            self.test_finished.emit(event.test)
        elif isinstance(event, RunEnded):
            outcome = event.outcome
            for line in outcome.host_keys:
                log.warning("host key accepted: %s", line)
            untold = [line for line in outcome.unsaved if line not in self.not_written]
            if untold:
                self.error.emit("Results not saved", not_written_text(untold))
            if outcome.history_problem:
                self.error.emit(
                    "Run history not kept",
                    f"The run history cannot keep this run: {outcome.history_problem}. "
                    "Its results are in this window and in its results folder.",
                )
        elif isinstance(event, NotWritten):
            if event.text not in self.not_written:  # each file once, as it fails
                self.not_written.append(event.text)
                self.error.emit("Results not saved", not_written_text([event.text]))
        elif isinstance(event, Written):
            pass  # the GUI writes no -l log nor --json
        else:
            self._dirty = True

    def _flush(self, force: bool = False) -> None:
        # While running, every tick refreshes (elapsed times move on).
        if force or self._dirty or self.current is not None:
            self._dirty = False
            self.progress.emit()
