"""A hundred hosts streaming output: the window stays responsive and bounded.

A hundred real agents would not fit on a CI machine, so a stand-in for
netjobs_core.runner.Runner, inside the real run owner (netjobs_core.run.Run), emits
the same events the real one does, as fast as the loop lets it. Everything on the
GUI side (controller, batching, models, output views, timeline) is the real code.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PySide6.QtCore import Qt, QTimer
from qt_async import wait_signal, wait_until

from netjobs_core import events
from netjobs_core import run as run_module
from netjobs_core.config import Plan
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.wire.tokens import generate_token_file
from netjobs_gui.run_view import MAX_OUTPUT_LINES
from netjobs_gui.widgets import proxy_of


def column(model: Any, name: str) -> list[str]:
    c = model.COLUMNS.index(name)
    return [model.data(model.index(r, c)) for r in range(model.rowCount())]


pytestmark = pytest.mark.posix

HOSTS = 100
CHUNKS = 100  # per command
LINES_PER_CHUNK = 50


class StreamingRunner:
    """Emits what Runner emits for a plan whose commands all print a lot."""

    instances: ClassVar[list[StreamingRunner]] = []

    def __init__(
        self,
        plan: Plan,
        options: Any,
        observer: events.Observer | None = None,
        links: Any = None,  # the run's; nothing connects here
    ) -> None:
        self.plan = plan
        self.observer = observer or (lambda event: None)
        self.result = RunResult(config_path=plan.path)
        self.stopped = ""
        self.events = 0
        StreamingRunner.instances.append(self)

    def emit(self, event: events.Event) -> None:
        self.events += 1
        self.observer(event)

    def stop(self, reason: str = "stopped by user") -> None:
        self.stopped = reason

    async def run(self, labels: Sequence[str] | None = None) -> RunResult:
        for spec in self.plan.tests:
            test = TestResult(spec.label, spec.minhosts, status=TestStatus.RUNNING)
            test.started_at = time.time()
            for address in spec.addresses:
                result = HostResult(address)
                result.commands = [
                    CommandResult(c.command, c.line) for c in spec.commands if c.address == address
                ]
                test.hosts.append(result)
            self.result.tests.append(test)
            self.emit(events.TestStarted(test))
            for host in test.hosts:
                host.state = HostState.READY
                host.clock_uncertainty_ms = 0.05
                self.emit(events.HostChanged(test, host))
            test.scheduled_start = time.time() + 0.01
            await asyncio.sleep(0.01)
            for n, host in enumerate(test.hosts):
                host.state = HostState.RUNNING
                for index, command in enumerate(host.commands):
                    command.status = CommandStatus.RUNNING
                    command.started_at = test.scheduled_start + n * 1e-5
                    self.emit(events.CommandChanged(test, host, index))
            counter = itertools.count()
            names = [host.target for host in test.hosts]
            for chunk in range(CHUNKS):
                for host, name in zip(test.hosts, names, strict=True):
                    if self.stopped:
                        break
                    first = chunk * LINES_PER_CHUNK
                    data = "".join(
                        f"{name} line {n}\n" for n in range(first, first + LINES_PER_CHUNK)
                    ).encode()
                    host.commands[0].stdout.append(data)
                    self.emit(events.CommandOutput(test, host, 0, "stdout", data))
                    if next(counter) % 25 == 0:
                        await asyncio.sleep(0)  # a real runner yields on every read
                await asyncio.sleep(0.003)  # the next chunks are on their way
            for n, host in enumerate(test.hosts):
                command = host.commands[0]
                status, code, state = ending(n)
                if self.stopped:
                    status, code, state = CommandStatus.KILLED, None, HostState.KILLED
                command.status, command.exit_code, host.state = status, code, state
                command.duration_s = time.time() - command.started_at
                self.emit(events.CommandChanged(test, host, 0))
                self.emit(events.HostChanged(test, host))
            test.status = TestStatus.ABORTED if self.stopped else TestStatus.PASSED
            test.reason = self.stopped
            test.duration_s = time.time() - test.started_at
            test.start_spread_ms = (HOSTS - 1) * 1e-2
            self.emit(events.TestFinished(test))
            if self.stopped:
                break
        return self.result


def ending(n: int) -> tuple[CommandStatus, int | None, HostState]:
    """How host number n's command ends: every 25th times out, every other 10th fails."""
    if n % 25 == 24:
        return CommandStatus.TIMEOUT, None, HostState.TIMEOUT
    if n % 10 == 9:
        return CommandStatus.FAILED, 1, HostState.DONE
    return CommandStatus.OK, 0, HostState.DONE


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> type[StreamingRunner]:
    StreamingRunner.instances = []
    monkeypatch.setattr(run_module, "Runner", StreamingRunner)
    return StreamingRunner


def hundred_hosts(path: Path) -> Path:
    lines = ["many:"] + [f'10.0.{i // 250}.{i % 250 + 1}: "./bench.sh"' for i in range(HOSTS)]
    path.write_text("\n".join([*lines, "end", ""]))
    return path


def shown(table: Any, name: str) -> list[str]:
    """A column as the table shows it: sorted and filtered."""
    proxy = proxy_of(table)
    c = proxy.source.COLUMNS.index(name)
    return [proxy.data(proxy.index(r, c)) for r in range(proxy.rowCount())]


async def test_hundred_hosts_streaming_keep_the_window_responsive(
    window: Any, settings: Any, streaming: type[StreamingRunner], tmp_path: Path
) -> None:
    generate_token_file(tmp_path / "token")
    settings.token_file = str(tmp_path / "token")
    window.resize(1280, 800)
    window.open_path(str(hundred_hosts(tmp_path / "many.cfg")))
    assert len(window.hosts.model.rows) == HOSTS
    detail = window.run_view.detail

    # A probe: a 10 ms timer. Between two of its ticks the loop was busy for as long as
    # its thread used the CPU: that is the stall the window causes (the wall-clock gap
    # also counts the time other processes of a loaded machine took the CPU away).
    ticks: list[tuple[float, float]] = []
    collections: list[tuple[int, float]] = []  # (generation, CPU s): to name a stall
    gc_began = [0.0]

    def gc_clock(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[0] = time.thread_time()
        else:
            collections.append((info["generation"], time.thread_time() - gc_began[0]))

    gc.callbacks.append(gc_clock)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append((time.monotonic(), time.thread_time())))
    timer.start()
    refreshes: list[int] = []
    window.controller.progress.connect(lambda: refreshes.append(1))

    window.run_action.trigger()
    await wait_until(lambda: detail.model.rowCount() == HOSTS, 10, "the hundred rows")
    # While they stream, the user sorts, filters and looks at the timeline.
    detail.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    detail.filter.text.setText("10.0.0.1")
    await wait_until(lambda: len(refreshes) >= 3, 10, "a few refreshes")
    assert shown(detail.table, "Host") == [
        f"10.0.0.{n}:16192" for n in (100, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 1)
    ]
    assert detail.filter.count.text() == "12 of 100 shown"
    detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
    try:
        (run,) = await wait_signal(window.controller.run_finished, 60)
    finally:
        timer.stop()
        gc.callbacks.remove(gc_clock)

    runner = streaming.instances[-1]
    assert runner.events > HOSTS * CHUNKS  # 10000+ output events...
    assert len(refreshes) < runner.events / 20  # ...became a few batched refreshes
    busy = max(b[1] - a[1] for a, b in itertools.pairwise(ticks))
    wall = max(b[0] - a[0] for a, b in itertools.pairwise(ticks))
    longest_gc = max(collections, key=lambda c: c[1], default=(0, 0.0))
    assert busy < 0.1, (
        f"the event loop stalled for {busy * 1000:.0f} ms (the longest garbage "
        f"collection: {longest_gc[1] * 1000:.0f} ms, generation {longest_gc[0]}, "
        f"of {len(collections)})"
    )
    assert wall < 0.5, f"no tick for {wall * 1000:.0f} ms"

    # What a user finds at a hundred hosts: the problems, sorted.
    test = run.tests[0]
    assert test.status is TestStatus.PASSED
    assert column(window.run_view.tests_model, "Status") == ["passed with 8 failed, 4 timed out"]
    detail.filter.clear()
    assert len(shown(detail.table, "Host")) == HOSTS
    detail.filter.problems.setChecked(True)
    detail.table.sortByColumn(detail.model.COLUMNS.index("State"), Qt.SortOrder.AscendingOrder)
    assert shown(detail.table, "State") == ["failed"] * 8 + ["timed out"] * 4
    assert shown(detail.table, "Host")[:2] == ["10.0.0.10:16192", "10.0.0.20:16192"]
    assert detail.filter.count.text() == "12 of 100 shown"
    # The timeline shows the same rows, in the same order.
    shown_rows = detail.timeline.shown_rows()
    assert [detail.timeline.data.rows[r].host for r in shown_rows] == shown(detail.table, "Host")
    detail.filter.clear()
    detail.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the config's order again
    assert shown(detail.table, "Host")[:2] == ["10.0.0.1:16192", "10.0.0.2:16192"]

    assert len(detail.timeline.data.rows) == HOSTS
    # The full output is kept; the view shows a bounded tail.
    first = test.hosts[0]
    expected = sum(len(f"{first.target} line {n}\n") for n in range(CHUNKS * LINES_PER_CHUNK))
    assert len(first.commands[0].stdout) == expected
    detail.select_row(0)
    view = detail.output.stdout
    assert view.view.blockCount() <= MAX_OUTPUT_LINES + 1
    assert view.text.rstrip("\n").endswith(f"line {CHUNKS * LINES_PER_CHUNK - 1}")


async def test_stop_reaches_the_runner_and_the_ui_follows(
    window: Any, settings: Any, streaming: type[StreamingRunner], tmp_path: Path
) -> None:
    generate_token_file(tmp_path / "token")
    settings.token_file = str(tmp_path / "token")
    window.open_path(str(hundred_hosts(tmp_path / "many.cfg")))
    window.run_action.trigger()
    await wait_until(lambda: window.run_view.detail.model.rowCount() == HOSTS, 10)
    window.stop_action.trigger()
    (run,) = await wait_signal(window.controller.run_finished, 30)
    assert streaming.instances[-1].stopped == "stopped by user"
    assert run.tests[0].status is TestStatus.ABORTED
    detail = window.run_view.detail
    assert set(column(detail.model, "State")) == {"killed"}
    assert not window.stop_action.isEnabled() and window.run_action.isEnabled()
