"""What a user sees on real agents: passes with problems, safe Stop, live host checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import free_port, pid_alive  # tests/agent_harness.py
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from qt_async import wait_signal, wait_until

from netjobs_core.results import CommandStatus, TestStatus
from netjobs_core.vocabulary import AMBER
from netjobs_gui.widgets import proxy_of

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]


@pytest.fixture
def gui(window: Any, settings: Any, token_file: Path) -> Any:
    settings.token_file = str(token_file)
    settings.connect_timeout = 3.0
    window.activateWindow()
    return window


def targets(agents: list[Any]) -> dict[str, str]:
    return {f"a{i}": f"{agent.host}:{agent.port}" for i, agent in enumerate(agents)}


def column(model: Any, name: str) -> list[str]:
    """A column in the model's own order."""
    c = model.COLUMNS.index(name)
    return [model.data(model.index(r, c)) for r in range(model.rowCount())]


def shown(table: Any, name: str) -> list[str]:
    """A column as the table shows it: sorted and filtered."""
    proxy = proxy_of(table)
    c = proxy.source.COLUMNS.index(name)
    return [proxy.data(proxy.index(r, c)) for r in range(proxy.rowCount())]


MIXED = """\
mixed:
-generaltimeout: 30s
-minhosts: 1
{a0}: "echo fine"
{a1}: "echo out; exit 3"
{a2}: "sleep 5"
-timeout: 1s
127.0.0.1:{dead}: "true"
end
"""


async def test_a_pass_over_failures_says_so_everywhere_and_problems_can_be_found(
    gui: Any, agents: list[Any], tmp_path: Path
) -> None:
    config = tmp_path / "mixed.cfg"
    config.write_text(MIXED.format(dead=free_port(), **targets(agents)))
    assert gui.open_path(str(config))
    gui.run_action.trigger()
    (run,) = await wait_signal(gui.controller.run_finished, 30)
    test = run.tests[0]
    assert test.status is TestStatus.PASSED
    words = "passed with 1 failed, 1 timed out, 1 error"

    # The test list, the summary line, the status line and the results list all say it.
    view = gui.run_view
    assert column(view.tests_model, "Status") == [words]
    cell = view.tests_model.index(0, view.tests_model.COLUMNS.index("Status"))
    assert view.tests_model.data(cell, Qt.ItemDataRole.ForegroundRole).name() == AMBER
    assert words in view.detail.summary.text()
    assert (
        view.status.text()
        == "Run finished: 1 test passed (commands: 1 failed, 1 timed out, 1 error)."
    )
    assert column(gui.results.model, "Status") == [words]
    assert column(gui.results.model, "Hosts") == ["1/4 succeeded"]  # as the verdict counts
    assert column(view.tests_model, "Progress") == ["3/4"]  # as "3/4 commands ran"
    assert "3/4 commands ran" in view.detail.summary.text()

    # One word per kind of trouble: an unreachable host is "error", an exit 3 "failed".
    detail = view.detail
    assert column(detail.model, "State") == ["ok", "failed", "timed out", "error"]
    assert column(detail.model, "Exit")[:2] == ["0", "3"]
    assert "connection refused" in column(detail.model, "Message")[3]

    # Find the problems: "problems only", then a text filter, then sort by state.
    detail.filter.problems.setChecked(True)
    assert shown(detail.table, "State") == ["failed", "timed out", "error"]
    assert detail.filter.count.text() == "3 of 4 shown"
    detail.filter.text.setText("exit 3")
    assert shown(detail.table, "Command") == ["echo out; exit 3"]
    detail.filter.clear()
    assert detail.filter.count.text() == ""
    detail.table.sortByColumn(detail.model.COLUMNS.index("State"), Qt.SortOrder.AscendingOrder)
    assert shown(detail.table, "State") == ["error", "failed", "ok", "timed out"]
    # The timeline shows the rows in the table's order.
    assert [detail.timeline.data.rows[r].word for r in detail.timeline.shown_rows()] == [
        "error",
        "failed",
        "ok",
        "timed out",
    ]

    # At 1024x700 the Exit and Message columns are in sight, without scrolling sideways.
    gui.resize(1024, 700)
    await wait_until(lambda: gui.width() == 1024, 5, "the resize")
    await asyncio.sleep(0.05)  # let the layout settle (one event loop turn)
    table = detail.table
    width = table.viewport().width()
    for name in ("Exit", "Message"):
        c = detail.model.COLUMNS.index(name)
        assert table.columnViewportPosition(c) >= 0
        assert table.columnViewportPosition(c) + table.columnWidth(c) <= width, name
    assert table.horizontalScrollBar().maximum() == 0


SLEEPERS = """\
sleepers:
{a0}: "echo started; exec sleep 30"
{a1}: "exec sleep 30"
end
"""


async def start_sleepers(gui: Any) -> None:
    """Run the open config until both jobs run: shown running, and released (the start
    is shown as it is sent; the release follows at the common start)."""
    gui.run_action.trigger()
    await wait_until(
        lambda: column(gui.run_view.detail.model, "State") == ["running", "running"],
        20,
        "both jobs to run",
    )

    def released() -> bool:
        run = gui.controller.current
        commands = [c for h in run.result.tests[-1].hosts for c in h.commands] if run else []
        return bool(commands) and all(c.started_at is not None for c in commands)

    await wait_until(released, 20, "both jobs to be released")


async def test_stop_is_safe_from_the_keyboard(
    gui: Any, answers: Any, agents: list[Any], tmp_path: Path
) -> None:
    config = tmp_path / "sleepers.cfg"
    config.write_text(SLEEPERS.format(**targets(agents)))
    gui.open_path(str(config))

    # A run none of whose commands has started stops at one click, without a question.
    gui.run_action.trigger()
    gui.stop_action.trigger()
    (run,) = await wait_signal(gui.controller.run_finished, 20)
    assert answers.stop_now_asked == []
    # Stopped as it began: the test aborted, or not run at all (and said so).
    assert run.tests and all(
        t.status is TestStatus.ABORTED
        or (t.status is TestStatus.PENDING and t.reason == "stopped by user")
        for t in run.tests
    )

    # Commands running, however young the run: Stop asks (Esc killed one under 5 s).
    await start_sleepers(gui)
    answers.stop_now_answer = False
    gui.stop_action.trigger()
    assert len(answers.stop_now_asked) == 1 and gui.controller.running
    answers.stop_now_asked.clear()
    # Esc while typing in the config editor is the editor's: the run goes on.
    gui.tabs.setCurrentIndex(gui.CONFIG_TAB)
    editor = gui.editor.editor
    editor.setFocus()
    QTest.keyClick(editor, Qt.Key.Key_Escape)  # a shortcut would have acted by now
    assert gui.controller.running and not gui.controller.current.stopped
    assert answers.stop_now_asked == []

    # Esc on the Run page's table of a run going for a while asks first.
    gui.tabs.setCurrentIndex(gui.RUN_TAB)
    gui.controller.started -= 10  # as if it had been running for 10 s more
    table = gui.run_view.detail.table
    table.setFocus()
    answers.stop_now_answer = False
    QTest.keyClick(table, Qt.Key.Key_Escape)
    assert len(answers.stop_now_asked) == 1 and answers.stop_now_asked[0] >= 10
    assert gui.controller.running
    # ... and stops when the user says so.
    answers.stop_now_answer = True
    QTest.keyClick(table, Qt.Key.Key_Escape)
    (run,) = await wait_signal(gui.controller.run_finished, 20)
    assert len(answers.stop_now_asked) == 2
    assert run.tests[0].status is TestStatus.ABORTED
    assert {c.status for h in run.tests[0].hosts for c in h.commands} == {CommandStatus.KILLED}


async def test_an_agent_killed_mid_run_aborts_the_test_at_once(
    gui: Any, agents: list[Any], start_agents: Any, tmp_path: Path
) -> None:
    """-minhosts all: losing a host loses the quorum; the test says "aborted" within
    seconds, not "running" for 12 more and then "failed"."""
    (victim,) = start_agents(1)
    config = tmp_path / "quorum.cfg"
    config.write_text(
        f'quorum:\n-minhosts: all\n{agents[0].host}:{agents[0].port}: "exec sleep 30"\n'
        f'{victim.host}:{victim.port}: "exec sleep 30"\nend\n'
    )
    gui.open_path(str(config))
    await start_sleepers(gui)
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    os.kill(victim.pid, signal.SIGKILL)
    (run,) = await wait_signal(gui.controller.run_finished, 20)
    assert loop.time() - killed_at < 5
    assert run.tests[0].status is TestStatus.ABORTED
    assert column(gui.run_view.tests_model, "Status") == ["aborted"]
    assert column(gui.run_view.detail.model, "State") == ["killed", "lost"]
    await wait_until(lambda: not pid_alive(victim.pid), 10, "the victim to be gone")


@contextlib.contextmanager
def silent_host() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung agent)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    server.setblocking(False)

    def accept() -> None:
        with contextlib.suppress(BlockingIOError):
            held.append(server.accept()[0])

    loop = asyncio.get_running_loop()
    loop.add_reader(server.fileno(), accept)
    try:
        yield server.getsockname()[1]
    finally:
        loop.remove_reader(server.fileno())
        for connection in held:
            connection.close()
        server.close()


async def test_check_hosts_fills_each_row_as_its_answer_arrives(
    gui: Any, settings: Any, agents: list[Any], tmp_path: Path
) -> None:
    settings.connect_timeout = 4.0
    with silent_host() as port:
        config = tmp_path / "hosts.cfg"
        body = "".join(f'{target}: "true"\n' for target in targets(agents).values())
        config.write_text(f't:\n{body}127.0.0.1:{port}: "true"\nend\n')
        gui.open_path(str(config))
        hosts = gui.hosts.model
        gui.check_action.trigger()
        assert hosts.summary() == "4 hosts: checking 4, 0 ready"
        # The three agents answer long before the silent host's timeout.
        await wait_until(
            lambda: column(hosts, "Reachable") == ["✔ yes"] * 3 + ["checking…"],
            3.5,
            "the agents' rows",
        )
        assert hosts.summary() == "4 hosts: checking 1, 3 ready"
        assert gui.hosts.summary.text() == hosts.summary()
        (checks,) = await wait_signal(gui.controller.check_finished, 10)
        assert len(checks) == 4
        assert hosts.summary() == "4 hosts: 3 ready, 1 with problems"
        # A second check counts afresh: nothing of the first one's counts.
        gui.check_action.trigger()
        assert hosts.summary() == "4 hosts: checking 4, 0 ready"
        await wait_signal(gui.controller.check_finished, 10)
