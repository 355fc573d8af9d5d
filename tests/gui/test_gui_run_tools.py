"""Re-run the failed hosts, compare two results, a notification at a long run's end,
and the window reopening as it was left (issue 23's feature list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QWidget
from qt_async import wait_signal
from test_gui_overview import fleet  # tests/gui

from netjobs_core.results import CommandStatus, RunResult
from netjobs_gui.columns import SessionEntry
from netjobs_gui.compare_view import COLUMNS, CompareDialog
from netjobs_gui.layout_memory import last_config, restore_layout, save_layout
from netjobs_gui.notify import NOTIFY_AFTER_S, Notifier
from netjobs_gui.settings import Settings


@pytest.mark.timeout(60)
@pytest.mark.posix
async def test_rerun_only_the_failed_hosts(
    window: Any, settings: Settings, token_file: Path, agents: list[Any], tmp_path: Path
) -> None:
    settings.token_file = str(token_file)
    marker = tmp_path / "second-time"
    a, b, c = (f"{x.host}:{x.port}" for x in agents[:3])
    config = tmp_path / "fleet.cfg"
    # b fails the first time only; c always passes; test 'other' passes.
    config.write_text(
        f't:\n-minhosts: 2\n{a}: "true"\n{b}: "test -e {marker} || {{ touch {marker}; exit 4; }}"\n'
        f'{c}: "true"\nend\nother:\n{a}: "true"\nend\n'
    )
    assert window.open_path(str(config))
    window.run_action.trigger()
    (first,) = await wait_signal(window.controller.run_finished, 30)
    assert [cmd.status for h in first.tests[0].hosts for cmd in h.commands] == [
        CommandStatus.OK,
        CommandStatus.FAILED,
        CommandStatus.OK,
    ]
    window.rerun_failed_action.trigger()
    assert window.controller.running
    (again,) = await wait_signal(window.controller.run_finished, 30)
    assert [t.label for t in again.tests] == ["t"]
    assert [h.target for h in again.tests[0].hosts] == [b]
    assert again.tests[0].hosts[0].commands[0].status is CommandStatus.OK
    # Nothing failed now: nothing to re-run, and it says so.
    assert not window.rerun_failed()
    assert "No host failed" in window.statusBar().currentMessage()


def test_compare_two_results_shows_the_hosts_that_differ(qapp: QApplication) -> None:
    run = RunResult("fleet.cfg")
    before, after = fleet(100), fleet(100)
    after.hosts[3].commands[0].status = CommandStatus.OK  # fixed
    after.hosts[3].commands[0].exit_code = 0
    after.hosts[50].commands[0].status = CommandStatus.FAILED  # broke
    after.hosts[50].commands[0].exit_code = 1
    after.start_spread_ms = 0.5
    entries = [SessionEntry(run, before, "run 10:00:00"), SessionEntry(run, after, "run 10:05:00")]
    dialog = CompareDialog(entries)
    lines = dialog.summary.text().splitlines()
    assert lines[1] == "  start spread 5.000 ms in A, 0.500 ms in B"
    assert lines[4] == "  2 hosts of 100 ended differently:"
    cells = [
        [dialog.table.item(r, c).text() for c in range(3)] for r in range(dialog.table.rowCount())
    ]
    assert cells == [
        ["node0003", "failed (exit 2)", "ok (exit 0)"],  # as every view says it
        ["node0050", "ok (exit 0)", "failed (exit 1)"],
    ]
    dialog.only_differing.setChecked(False)
    assert dialog.table.rowCount() == 100
    # "Ran B" no wider than "Ran A" needs (the audit saw ~470 px beside ~50 px).
    ran_a, ran_b = (dialog.table.columnWidth(COLUMNS.index(n)) for n in ("Ran A", "Ran B"))
    assert abs(ran_b - ran_a) <= 10
    outcome = dialog.table.columnWidth(COLUMNS.index("Outcome B"))
    assert outcome >= dialog.table.columnWidth(COLUMNS.index("Outcome A")) - 1


def test_a_long_run_that_ends_behind_other_windows_is_told(qapp: QApplication) -> None:
    window = QWidget()  # never shown: not the active window
    notifier = Notifier(window)
    assert notifier.run_ended("NetJobs run finished", "1 failed", NOTIFY_AFTER_S - 1) == ""
    how = notifier.run_ended("NetJobs run finished", "1 failed", NOTIFY_AFTER_S + 1)
    assert how in ("tray", "alert")  # offscreen there is no tray: the fallback
    assert notifier.sent == [(how, "NetJobs run finished", "1 failed")]


def test_the_window_reopens_its_splitters_and_page(
    window: Any, settings: Settings, tmp_path: Path
) -> None:
    qapp = QApplication.instance()
    window.tabs.setCurrentIndex(window.RUN_TAB)
    qapp.processEvents()
    splitter = window.run_view.splitter
    splitter.setSizes([500, 700])
    left = splitter.sizes()[0] / sum(splitter.sizes())
    save_layout(window, settings.store)
    splitter.setSizes([300, 900])
    window.tabs.setCurrentIndex(window.CONFIG_TAB)
    restore_layout(window, settings.store)
    qapp.processEvents()
    assert window.tabs.currentIndex() == window.RUN_TAB
    assert abs(splitter.sizes()[0] / sum(splitter.sizes()) - left) < 0.02, splitter.sizes()
    config = tmp_path / "a.cfg"
    config.write_text("")
    assert last_config([str(config), "/elsewhere"]) == str(config)
    config.unlink()
    assert last_config([str(config)]) is None and last_config([]) is None
