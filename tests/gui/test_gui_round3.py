"""Issue 23, round 3 of the desktop controller: nothing said only on stderr or in a
tooltip, nothing cut off, every config problem listed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication

from netjobs_core.config import parse_config
from netjobs_core.records import RunRecord, TestRecord
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    Interruption,
    TestResult,
    TestStatus,
)
from netjobs_core.run import NotWritten
from netjobs_core.vocabulary import AMBER, ROSE, color
from netjobs_core.wire.address import Address
from netjobs_gui import widgets
from netjobs_gui.columns import CommandRow, record_color
from netjobs_gui.run_view import RunView, TestDetail

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _test(status: TestStatus, commands: list[CommandStatus], error: str = "") -> TestResult:
    test = TestResult("bench", None, status=status)
    for i, command in enumerate(commands, start=1):
        host = HostResult(Address(f"127.0.0.{i}", 16200), error=error)
        host.state = HostState.FAILED if error else HostState.DONE
        host.commands = [CommandResult("run", 2, status=command, exit_code=0)]
        test.hosts.append(host)
    return test


def test_a_results_folder_that_cannot_be_made_is_said_with_its_path(
    window: Any, answers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (data / "netjobs").mkdir(parents=True)
    (data / "netjobs" / "runs").write_text("a file where the runs folder goes")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    token = tmp_path / "token"
    token.write_text(secrets.token_urlsafe(32))
    token.chmod(0o600)
    window.settings.token_file = str(token)
    window.editor.new_document('t:\n127.0.0.1:1: "true"\nend\n')
    assert window.start_run(None) is False
    assert answers.no_token == []
    title, message = answers.errors[-1]
    assert title == "Cannot start the run"
    assert str(data / "netjobs" / "runs") in message and "Nothing was run" in message
    assert not window.controller.running


def test_a_result_file_not_written_is_said_at_once_with_its_path(window: Any, answers: Any) -> None:
    lost = NotWritten(
        "the run's results.json", "/full/disk/results.json", "No space left on device"
    )
    window.controller._observe(lost)
    window.controller._observe(lost)  # rewritten as each test ends: told once
    assert len(answers.errors) == 1
    title, message = answers.errors[0]
    assert title == "Results not saved"
    assert "/full/disk/results.json: No space left" in message
    assert "Nothing collected is lost" in message


def test_a_file_no_program_opens_is_said_and_its_path_shown(
    qtbot: Any, answers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(widgets, "open_url", lambda _url: False)  # no xdg-open
    path = tmp_path / "cmd0.stdout"
    path.write_text("x")
    assert widgets.open_file(path) is False
    assert answers.errors and str(path) in answers.errors[-1][1]
    bar = widgets.PathBar("Saved at")
    qtbot.addWidget(bar)
    bar.set_path(path)
    assert bar.shown() == f"Saved at: {path}"
    # Too long for the bar: cut in its middle with an ellipsis, the file's name in sight
    # (the audit saw ".../runs/20261206-072" and no more); the whole path in the tooltip.
    deep = tmp_path.joinpath(*["twenty-character-dir"] * 8, "node0042", "cmd0.stdout")
    bar.set_path(deep)
    bar.resize(420, 30)
    bar.show()
    qtbot.waitExposed(bar)
    said = bar.label.text()
    assert "…" in said and said.startswith("Saved at: /") and said.endswith("cmd0.stdout")
    assert bar.label.fontMetrics().horizontalAdvance(said) <= bar.label.width()
    assert bar.label.toolTip() == str(deep)
    bar.resize(4000, 30)
    QApplication.processEvents()
    assert bar.label.text() == f"Saved at: {deep}"  # room again: whole
    bar.set_path(path)
    assert bar.label.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    bar.copy()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == str(path)


def test_history_colours_as_every_other_view() -> None:
    def record(status: TestStatus, problems: tuple[Any, ...] = ()) -> RunRecord:
        test = TestRecord("t", None, status, "", None, None, None, None)
        return RunRecord(
            "r", 0.0, "c.cfg", None, "", status is TestStatus.PASSED, (test,), problems
        )

    assert record_color(record(TestStatus.PASSED)) == color(TestStatus.PASSED)
    assert record_color(record(TestStatus.PASSED, ((CommandStatus.FAILED, 1),))) == AMBER
    assert record_color(record(TestStatus.UNSAVED)) == ROSE
    assert record_color(record(TestStatus.FAILED)) == color(TestStatus.FAILED)


def test_identical_host_errors_fold_with_their_host_set(qtbot: Any) -> None:
    detail = TestDetail()
    qtbot.addWidget(detail)
    error = "authentication failed: the agent holds a different token"
    detail.set_test(_test(TestStatus.ABORTED, [CommandStatus.ERROR] * 11, error))
    summary = detail.summary.text()
    assert summary.count("authentication failed") == 1
    assert "127.0.0.[1-11]:16200: authentication failed" in summary


def test_interruptions_stay_in_sight_after_the_run(qtbot: Any) -> None:
    test = _test(TestStatus.PASSED, [CommandStatus.OK, CommandStatus.OK])
    for host in test.hosts:
        host.interruptions = [Interruption(0.0, "no answer", 1.5, resumed=True)]
    row = CommandRow(test, test.hosts[0], 0)
    assert "resumed after 1.500 s" in row.message  # the command ended: still said
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.set_test(test)
    assert "2 interruptions (2 resumed) on 127.0.0.[1-2]:16200" in detail.summary.text()


@pytest.mark.parametrize("width", [1024, 1280, 1600])
def test_bad_news_in_the_test_list_is_never_cut(qtbot: Any, width: int, tmp_path: Path) -> None:
    view = RunView()
    qtbot.addWidget(view)
    view.resize(width, 700)
    plan = parse_config('bench:\n-minhosts: 0\nh1: "x"\nh2: "x"\nh3: "x"\nend\n', "c.cfg")
    view.set_plan(plan)
    test = _test(TestStatus.PASSED, [CommandStatus.FAILED, CommandStatus.TIMEOUT, CommandStatus.OK])
    view.tests_model.set_result(test)
    view.show()
    qtbot.waitExposed(view)
    table = view.tests
    model = table.model()
    status = model.index(0, 1)
    shown = model.data(status)
    assert shown == "passed with 1 failed, 1 timed out"
    cell = table.visualRect(status).adjusted(3, 0, -3, 0)
    needed = table.fontMetrics().boundingRect(
        QRect(0, 0, cell.width(), 10_000), int(Qt.TextFlag.TextWordWrap), shown
    )
    assert needed.width() <= cell.width() and needed.height() <= cell.height()
    # Made-up results: the picture stays out of docs/screenshots (real runs only there).
    assert view.grab().save(os.fspath(tmp_path / f"run-status-wraps-{width}.png"))


def test_every_config_problem_is_listed_and_a_click_goes_to_it(window: Any) -> None:
    text = 'a:\nh1: "x"\n-bogus: 3\nh[3-1]: "y"\nend\nb:\nend\n'
    window.editor.new_document(text)
    problems = window.editor.problems_list
    assert [problems.item(i).text()[:7] for i in range(problems.count())] == [
        "line 3:",
        "line 4:",
        "line 6:",
    ]
    assert window.editor.editor.error_lines == {3, 4, 6}
    problems.itemClicked.emit(problems.item(1))
    assert window.editor.editor.textCursor().blockNumber() == 3
    spans = window.editor.highlighter.spans('h[3-1]: "y"')
    assert (1, 5, "bad") in spans
    window.resize(1024, 700)
    window.grab().save(os.fspath(SHOTS / "20-config-all-problems.png"))


def test_smaller_items(window: Any) -> None:
    assert QKeySequence("Ctrl+,") in window.settings_action.shortcuts()
    window._token_missing("no token: pass --token-file, set NETJOBS_TOKEN, or copy ...")
    message = window.errors[-1][1]
    assert "--token-file" not in message and "Settings" in message
    assert "Start Local Demo Agents" in message
