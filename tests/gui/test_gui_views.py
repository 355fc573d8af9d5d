"""What the views show, read off the widgets: the timeline, formats, layout, keyboard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPushButton, QSplitter

from netjobs_core import text
from netjobs_core.outputs import Output
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    MetricSummary,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import write_json
from netjobs_core.wire.address import Address
from netjobs_gui import prompts
from netjobs_gui.columns import Fit, fit_widths
from netjobs_gui.run_view import RunView, TestDetail
from netjobs_gui.settings import SettingsDialog
from netjobs_gui.timeline import (
    FOOTER,
    HEADER,
    NOW_COLOR,
    ROW_HEIGHT,
    TIMEOUT_COLOR,
    TimelineWidget,
    extend,
    layout,
    run_range,
    summary,
    timeline_data,
    tooltip,
)
from netjobs_gui.widgets import proxy_of

T0 = 1_700_000_000.0
LONG = "for i in $(seq 1000); do ./bench --size $i --target /mnt/nvme0n1p3; done; sync"


def make_test(
    hosts: int = 3,
    status: TestStatus = TestStatus.PASSED,
    command: str = "echo hi",
    timeout: float | None = None,
    running: bool = False,
) -> TestResult:
    test = TestResult("t", None, status=status, scheduled_start=T0, started_at=T0 - 1)
    for n in range(hosts):
        host = HostResult(
            Address(f"10.0.0.{n + 1}"),
            state=HostState.RUNNING if running else HostState.DONE,
            clock_uncertainty_ms=0.05,
        )
        result = CommandResult(
            f"{command} {n}",
            status=CommandStatus.RUNNING if running else CommandStatus.OK,
            exit_code=None if running else 0,
            started_at=T0 + n * 1e-5,
            duration_s=None if running else 1.0 + n * 0.1,
            stdout=Output.from_bytes(f"output of host {n}\n".encode()),
            timeout=timeout,
        )
        host.commands = [result]
        test.hosts.append(host)
    if not running:
        test.duration_s = 2.0
        test.start_spread_ms = (hosts - 1) * 1e-2
        test.start_spread_uncertainty_ms = 0.05
    return test


def colour_in(image: Any, colour: str, top: int, bottom: int, left: int = 0) -> bool:
    wanted = QColor(colour).rgb()
    return any(
        image.pixelColor(x, y).rgb() == wanted
        for y in range(top, bottom)
        for x in range(left, image.width())
    )


# --------------------------------------------------------------------------- the timeline


def test_the_run_axis_stays_put_while_a_test_runs_and_grows_in_steps() -> None:
    """Not rescaled at every refresh: a running bar says how far it has come."""
    test = make_test(running=True, status=TestStatus.RUNNING)
    span = None
    spans, bar_ends = [], []
    for now in (0.2, 0.6, 0.9, 1.2, 1.4, 1.6, 2.9, 3.1):
        data = timeline_data(test, now=T0 + now)
        low, needed = run_range(data)
        span = extend(span, needed - low)
        geometry = layout(data, 1200, 90.0, span)
        spans.append(span)
        bar_ends.append(geometry.run.x(data.rows[0].end_ms))
        assert data.now_ms == pytest.approx(now * 1000)
    assert spans == [300.0, 750.0, 1000.0, 1500.0, 1500.0, 2000.0, 3000.0, 5000.0]
    assert spans == sorted(spans)  # never shrinks
    # Between two steps the bar grows on a fixed axis.
    assert bar_ends[3] < bar_ends[4]
    finished = timeline_data(make_test(), now=T0 + 100)
    assert finished.now_ms is None  # no "now" line once the test is over
    failed = make_test(command="false")
    failed.hosts[0].commands[0].status = CommandStatus.FAILED
    assert timeline_data(failed).status_text == "passed with 1 failed"  # its title


def test_now_line_and_timeout_markers_are_drawn(qtbot: Any) -> None:
    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(1100, 300)
    widget.show()
    running = make_test(running=True, status=TestStatus.RUNNING, timeout=0.5)
    # Started 2 s ago (the widget reads the clock, as it does while a test runs).
    running.scheduled_start = time.time() - 2
    for host in running.hosts:
        host.commands[0].started_at = running.scheduled_start
    widget.set_test(running)
    image = widget.viewport().grab().toImage()
    rows_top, rows_bottom = HEADER, HEADER + 3 * ROW_HEIGHT
    assert colour_in(image, NOW_COLOR, rows_top, rows_bottom)
    assert colour_in(image, TIMEOUT_COLOR, rows_top, rows_bottom)  # 0.5 s: within the axis
    assert "timeout: 0.5s" in tooltip(widget.data.rows[0]).split("\n")
    # A timeout far past the axis is not drawn (it would squash every bar).
    for host in running.hosts:
        host.commands[0].timeout = 3600.0
    widget.refresh()
    image = widget.viewport().grab().toImage()
    assert not colour_in(image, TIMEOUT_COLOR, rows_top, rows_bottom)


def test_the_header_and_axis_stay_while_the_rows_scroll(qtbot: Any) -> None:
    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(1000, HEADER + 8 * ROW_HEIGHT + FOOTER)
    widget.show()
    widget.set_test(make_test(hosts=100))
    bar = widget.verticalScrollBar()
    assert bar.maximum() > 0
    before = widget.viewport().grab().toImage()
    assert widget.row_at(HEADER + 1) == 0
    bar.setValue(bar.maximum())
    after = widget.viewport().grab().toImage()
    assert widget.row_at(HEADER + 1) == 100 - 8
    header = before.copy(0, 0, before.width(), HEADER)
    assert header == after.copy(0, 0, after.width(), HEADER)  # title, headings, tick labels
    band = (0, HEADER, before.width(), 8 * ROW_HEIGHT)
    assert before.copy(*band) != after.copy(*band)  # the rows did move


def test_a_timeline_click_selects_the_command_in_the_table_and_its_output(qtbot: Any) -> None:
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.resize(1100, 700)
    detail.show()
    detail.set_test(make_test())
    detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
    timeline = detail.timeline
    QTest.mouseClick(
        timeline.viewport(),
        Qt.MouseButton.LeftButton,
        pos=QPoint(300, HEADER + 2 * ROW_HEIGHT + 5),
    )
    assert detail.selected_row == 2 and timeline.selected == 2
    assert "10.0.0.3" in detail.output.header.text()
    assert detail.output.stdout.text == "output of host 2\n"
    # Sorted the other way round, the first row shown is the last host.
    detail.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    QTest.mouseClick(timeline.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(300, HEADER + 5))
    assert detail.selected_row == 2
    QTest.mouseClick(
        timeline.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(300, HEADER + ROW_HEIGHT + 5)
    )
    assert detail.selected_row == 1 and "10.0.0.2" in detail.output.header.text()
    # A double click shows the output itself.
    QTest.mouseDClick(timeline.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(300, HEADER + 5))
    assert detail.tabs.currentIndex() == detail.OUTPUT_TAB and detail.selected_row == 2


def test_long_commands_whole_in_tooltips_and_cut_in_their_middle(qtbot: Any) -> None:
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.set_test(make_test(command=LONG))
    model = detail.model
    c = model.COLUMNS.index("Command")
    assert model.data(model.index(0, c), Qt.ItemDataRole.ToolTipRole) == f"{LONG} 0"
    assert detail.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert f"command: {LONG} 0" in tooltip(detail.timeline.data.rows[0]).split("\n")


def test_axis_labels_have_units_and_no_spurious_decimals() -> None:
    """Once `0.0000s 0.0010s` for a test of a few milliseconds."""
    test = make_test()
    for host in test.hosts:
        host.commands[0].duration_s = 0.003
    geometry = layout(timeline_data(test), 1200, 90.0)
    labels = [text.tick(v, geometry.run.step) for v in geometry.run.ticks()]
    assert labels[0] == "0" and all(label.endswith(" ms") for label in labels[1:])
    assert "1 ms" in labels or "2 ms" in labels


# --------------------------------------------------------------------------- formats


def test_one_host_summary_reads_well(qtbot: Any) -> None:
    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(hosts=1)
    test.start_spread_ms = 0.0
    detail.set_test(test)
    summary = detail.summary.text()
    assert "released within 0.000 ms ± 0.050 ms" in summary and "ms ms" not in summary
    assert "1 host" in summary and "passed" in summary


def test_the_test_summary_gives_each_metric_sum(qtbot: Any) -> None:
    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(hosts=2)
    test.metrics = {"read_bw": MetricSummary(2.07e9, 1e9, 1.035e9, 1.07e9, 2)}
    detail.set_test(test)
    assert "read_bw 1.93 GiB/s in all over 2 hosts" in detail.summary.text()


def test_the_summary_says_a_metric_counted_hosts_not_ok(qtbot: Any) -> None:
    """As the report's `n: 7 in all over 2 hosts, 1 of them not ok`: the GUI summed a
    failed command's value unsaid (`n 7 in all over 2 hosts`)."""
    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(hosts=2)
    test.hosts[1].commands[0].status = CommandStatus.FAILED
    test.metrics = {"n": MetricSummary(7.0, 3.0, 3.5, 4.0, 2, hosts_failed=1)}
    detail.set_test(test)
    assert "n 7 in all over 2 hosts, 1 of them not ok" in detail.summary.text()


def test_a_metric_column_is_in_sight(qtbot: Any) -> None:
    """At 1280x800 a test's metric column ('n') lay past the table's right edge, behind
    a horizontal scroll bar: the fitted columns filled the width without it."""
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.resize(960, 500)
    detail.show()
    qtbot.waitExposed(detail)
    test = make_test(hosts=2)
    test.hosts[0].commands[0].metrics = {"n": 3.0}
    test.metrics = {"n": MetricSummary(3.0, 3.0, 3.0, 3.0, 1)}
    detail.set_test(test)
    table = detail.table
    column = detail.model.COLUMNS.index("n")
    right = table.columnViewportPosition(column) + table.columnWidth(column)
    assert 0 < right <= table.viewport().width()
    assert table.columnWidth(column) >= 80


def test_a_command_under_half_a_millisecond_reads_in_ms(qtbot: Any) -> None:
    """`true` ran 0.331 ms: its Elapsed read `0.000 s` (the output's header said
    `ran 0.331 ms`), as did the timeline's bar."""
    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(hosts=2)
    test.hosts[0].commands[0].duration_s = 0.000331
    detail.set_test(test)
    elapsed = detail.model.COLUMNS.index("Elapsed")
    assert detail.model.index(0, elapsed).data() == "0.331 ms"


def test_progress_count_is_a_label_beside_the_bar(qtbot: Any) -> None:
    """Text drawn on the bar lost its digits at the fill edge."""
    view = RunView()
    qtbot.addWidget(view)
    view._set_progress(3, 5)
    assert not view.progress.isTextVisible()
    assert view.progress_text.text() == "3/5 commands"
    assert (view.progress.value(), view.progress.maximum()) == (3, 5)


def test_an_empty_window_is_titled_as_the_editor_speaks(window: Any) -> None:
    assert "No config open" in window.editor.editor.placeholderText()
    assert window.windowTitle() == "NetJobs"
    window.new_document()
    assert window.windowTitle() == "untitled.netjobs[*] — NetJobs"


def test_no_token_speaks_gui_and_opens_settings(
    window: Any, answers: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.token_file = str(tmp_path / "missing-token")
    (tmp_path / "p.cfg").write_text('t:\nlocalhost: "true"\nend\n')
    window.open_path(str(tmp_path / "p.cfg"))
    window.run_action.trigger()
    assert not window.controller.running
    ((message, open_settings),) = answers.no_token
    assert "missing-token" in message and "Settings" in message
    assert "no token" not in message.lower().replace("no token:", "")
    assert window.statusBar().currentMessage() == (
        "No token: choose the agents' token file in Settings"
    )
    opened: list[Any] = []
    monkeypatch.setattr(SettingsDialog, "exec", lambda dialog: opened.append(dialog) or 0)
    open_settings()
    assert len(opened) == 1
    # The real box: its first button opens Settings.
    box = prompts.no_token_box(None, message)
    assert [b.text() for b in box.choices] == ["Open &Settings…", "&Close"]


def test_settings_refuse_a_token_path_that_does_not_exist(
    qtbot: Any, settings: Any, tmp_path: Path
) -> None:
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.token_edit.setText(str(tmp_path / "nope"))
    dialog.accept()
    assert dialog.isVisible() and dialog.token_error.isVisible()
    assert (
        dialog.token_error.text()
        == f"{tmp_path / 'nope'} does not exist: choose the agents' token file."
    )
    assert settings.token_file == ""
    real = tmp_path / "token"
    real.write_text("x" * 40)
    dialog.token_edit.setText(str(real))
    assert not dialog.token_error.isVisible()
    dialog.accept()
    assert not dialog.isVisible() and settings.token_file == str(real)


def test_every_dialog_button_has_a_mnemonic(qtbot: Any, settings: Any) -> None:
    boxes = [
        prompts.unsaved_box(None, "x.cfg"),
        prompts.stop_run_box(None),
        prompts.stop_now_box(None, 12.0),
        prompts.no_token_box(None, "why"),
    ]
    labels = [b.text() for box in boxes for b in box.choices]
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    labels += [b.text() for b in dialog.findChildren(QPushButton)]
    assert labels and all("&" in label for label in labels), labels
    assert prompts.stop_now_box(None, 12.0).text().startswith("The run has been going for 12.0 s")


def test_entry_point_says_how_to_get_the_gui() -> None:
    code = (
        "import sys; sys.modules['qasync'] = None; sys.argv = ['netjobs-gui']; "
        "from netjobs_gui.__main__ import main; sys.exit(main())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "qasync missing" in line and "pip install 'netjobs[gui]'" in line


# --------------------------------------------------------------------------- layout


def test_column_widths_fill_the_table_minimums_first() -> None:
    fits = [Fit(100, 1), Fit(50), Fit(100, 3)]
    assert fit_widths(250, fits) == [100, 50, 100]  # too small: the minimums
    assert fit_widths(650, fits) == [200, 50, 400]  # the rest by weight
    assert sum(fit_widths(1001, fits)) == 1001


def test_big_windows_give_the_room_to_the_tables_and_no_splitter_collapses(window: Any) -> None:
    window.resize(1900, 1150)
    window.run_view.detail.set_test(make_test(command=LONG))
    window.tabs.setCurrentIndex(window.RUN_TAB)
    QApplication.processEvents()
    table = window.run_view.detail.table
    model = window.run_view.detail.model
    command = table.columnWidth(model.COLUMNS.index("Command"))
    message = table.columnWidth(model.COLUMNS.index("Message"))
    assert command > 300 and message < table.viewport().width() / 2
    assert window.run_view.detail.tabs.height() > 400  # the timeline and output get height
    # Every table fills its width and none needs scrolling sideways, at both sizes.
    for size in ((1900, 1150), (1024, 700)):
        window.resize(*size)
        for page in range(4):
            window.tabs.setCurrentIndex(page)
            QApplication.processEvents()
            for name, table in (
                ("tests", window.run_view.tests),
                ("commands", window.run_view.detail.table),
                ("hosts", window.hosts.table),
                ("results", window.results.table),
                ("history", window.results.history.table),
            ):
                if table.isVisible():
                    length = table.horizontalHeader().length()
                    assert length == table.viewport().width(), (size, name)
    splitters = window.findChildren(QSplitter)
    assert len(splitters) >= 5 and not any(s.childrenCollapsible() for s in splitters)


# --------------------------------------------------------------------------- keyboard


def test_tab_leaves_a_table_and_the_selected_test_stays(window: Any, tmp_path: Path) -> None:
    (tmp_path / "p.cfg").write_text('a:\nh1: "x"\nend\nb:\nh1: "y"\nend\n')
    window.open_path(str(tmp_path / "p.cfg"))
    window.activateWindow()
    tables = [window.run_view.tests, window.hosts.table, window.results.table]
    assert not any(t.tabKeyNavigation() for t in tables)
    window.show_page(window.RUN_TAB)
    tests = window.run_view.tests
    assert QApplication.focusWidget() is tests
    assert window.run_view.selected_label == "a"
    QTest.keyClick(tests, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is not tests
    assert window.run_view.selected_label == "a"


def test_f6_visits_the_panes_and_ctrl_f_finds(window: Any, tmp_path: Path) -> None:
    (tmp_path / "p.cfg").write_text('hello:\nh1: "echo needle"\nend\n')
    window.open_path(str(tmp_path / "p.cfg"))
    window.activateWindow()
    window.show_page(window.RUN_TAB)
    detail = window.run_view.detail
    visited, tabs = [], []
    for _ in range(5):
        window.next_pane_action.trigger()
        visited.append(QApplication.focusWidget())
        tabs.append(detail.tabs.currentIndex())
    assert visited == [
        detail.filter.text,
        detail.table,
        detail.output.stdout.view,
        detail.timeline,
        window.run_view.tests,
    ]
    # The output and the timeline share a tab widget: F6 shows the one it visits.
    assert tabs[2:4] == [detail.OUTPUT_TAB, detail.TIMELINE_TAB]
    # Ctrl+F on the Config page: the find bar, typing selects the match.
    window.show_page(window.CONFIG_TAB)
    window.find_action.trigger()
    bar = window.editor.find_bar
    assert bar.isVisible() and QApplication.focusWidget() is bar.edit
    QTest.keyClicks(bar.edit, "needle")
    assert window.editor.editor.textCursor().selectedText() == "needle"
    bar.edit.setText("absent")
    assert bar.result.text() == "not found"
    QTest.keyClick(bar.edit, Qt.Key.Key_Escape)
    assert not bar.isVisible() and QApplication.focusWidget() is window.editor.editor
    # ... and in the output of the Run page.
    window.show_page(window.RUN_TAB)
    window.find_action.trigger()
    assert detail.output.find_bar.isVisible()


def test_the_focused_pane_is_marked(window: Any) -> None:
    window.activateWindow()
    window.show_page(window.HOSTS_TAB)
    table = window.hosts.table
    table.setFocus()
    focused = table.grab().toImage()
    window.hosts.add_edit.setFocus()
    unfocused = table.grab().toImage()
    blue = QColor("#2563eb").rgb()
    assert focused.pixelColor(0, focused.height() // 2).rgb() == blue
    assert unfocused.pixelColor(0, unfocused.height() // 2).rgb() != blue


# --------------------------------------------------------------------------- the results list


def test_results_list_columns_sorting_removal_and_no_duplicates(
    window: Any, tmp_path: Path
) -> None:
    run = RunResult(str(tmp_path / "bench.cfg"), run_id="r1")
    slow, quick = make_test(), make_test()
    slow.label, slow.start_spread_ms, slow.started_at = "slow", 0.9, T0
    quick.label, quick.start_spread_ms, quick.started_at = "quick", 0.1, T0 + 60
    run.tests = [slow, quick]
    path = tmp_path / "bench.json"
    write_json(run, path)
    assert json.loads(path.read_text())
    window.open_results(str(path))
    window.open_results(str(tmp_path / "." / "bench.json"))  # the same file again
    results = window.results
    assert [e.test.label for e in results.model.entries] == ["slow", "quick"]
    assert "listed already" in window.statusBar().currentMessage()
    model = results.model
    assert [model.cell(r, model.COLUMNS.index("When")) for r in range(2)] == [
        text.date_time(T0),
        text.date_time(T0 + 60),
    ]
    assert model.cell(0, model.COLUMNS.index("Start spread")) == "0.900 ms ± 0.050 ms"
    assert model.cell(0, model.COLUMNS.index("Duration")) == "2.000 s"
    spread = model.COLUMNS.index("Start spread")
    results.table.sortByColumn(spread, Qt.SortOrder.AscendingOrder)
    proxy = proxy_of(results.table)
    assert [proxy.data(proxy.index(r, 1)) for r in range(2)] == ["quick", "slow"]
    results.select_row(0)  # "slow"
    results.remove_selected()
    assert [e.test.label for e in model.entries] == ["quick"]
    results.clear()
    assert model.entries == [] and not results.clear_button.isEnabled()


def test_the_demo_set_up_installs_the_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `python3 dev.py demo`, .venv/bin/netjobs-gui works: the GUI extra is in."""
    import dev  # the repository root is on sys.path (tests/conftest.py)

    installed: list[str] = []
    monkeypatch.setattr(dev, "ensure_venv", installed.append)
    monkeypatch.setattr(dev, "install_debs", lambda names: installed.append("apt-get"))
    monkeypatch.setattr(dev, "gui_window_debs", lambda: [])
    monkeypatch.setattr(
        dev.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0)
    )
    assert dev.main(["demo"]) == 0
    assert installed == ["gui"]  # and no apt-get: only `test` runs it


def test_a_host_being_reconnected_says_so_in_the_message_column(qtbot: Any) -> None:
    """A hung agent: the test still runs, and the row says why nothing arrives."""
    from netjobs_core.results import Interruption

    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(running=True, status=TestStatus.RUNNING)
    record = Interruption(at=T0 + 5, cause="no answer from the agent for 10 s")
    test.hosts[1].interruptions.append(record)
    detail.set_test(test)
    model = detail.model
    message = [model.cell(r, model.COLUMNS.index("Message")) for r in range(3)]
    assert message[0] == message[2] == ""
    assert message[1] == text.interruption(record) and message[1].endswith("reconnecting…")


def test_peer_text_is_shown_escaped_as_on_the_terminal(qtbot: Any) -> None:
    """Issue 18, point 11: the GUI shows an agent's strings and output through
    text.printable: no bidirectional override or escape sequence acts on the view."""
    hostile = "a\u202etxt.exe\x1b]0;t\x07\u2066"
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.resize(1100, 700)
    detail.show()
    test = make_test(hosts=1)
    command = test.hosts[0].commands[0]
    command.stdout = Output.from_bytes(f"{hostile}\n".encode())
    command.message = hostile
    command.warnings.append(hostile)
    test.reason = hostile
    detail.set_test(test)
    detail.select_row(0)
    escaped = "a\\u202etxt.exe\\x1b]0;t\\x07\\u2066"
    assert detail.output.stdout.text == f"{escaped}\n"
    model = detail.model
    cell = model.data(model.index(0, model.COLUMNS.index("Message")))
    assert cell == escaped
    tip = model.data(model.index(0, model.COLUMNS.index("Message")), Qt.ItemDataRole.ToolTipRole)
    assert tip == escaped
    assert detail.output.files.item(0).text() == f"warning: {escaped}"
    assert escaped in detail.summary.text()
    detail.output.fold_check.setChecked(True)
    assert escaped in detail.output.folded.toPlainText()
    assert hostile not in detail.output.folded.toPlainText()


def test_host_names_get_the_room_of_an_error_column_no_host_fills(window: Any) -> None:
    """The audit's Hosts page cut every host name ("vm · Linu…52 x86_64") beside an
    empty Error column; the Wall clock column said no ± where `netjobs check` does."""
    from netjobs_core.check import HostCheck

    window.resize(1280, 800)
    window.tabs.setCurrentIndex(window.HOSTS_TAB)
    hosts = window.hosts
    hosts.set_config_hosts([Address("alpha"), Address("beta")])
    name = "vm · Linux 6.8.0-1052 x86_64"
    good = [
        HostCheck(
            Address(a),
            reachable=True,
            authenticated=True,
            hostname="vm",
            platform="Linux 6.8.0-1052 x86_64",
            busy=False,
            rtt_ms=0.03,
            clock_offset_ms=-0.014,
            clock_uncertainty_ms=0.018,
            wall_clock_offset_ms=-0.013,
        )
        for a in ("alpha", "beta")
    ]
    hosts.model.set_checks(good)
    QApplication.processEvents()
    model, table = hosts.model, hosts.table
    column = model.COLUMNS.index("Host name")
    metrics = table.fontMetrics()
    assert table.columnWidth(column) > metrics.horizontalAdvance(name) + 8
    wall = model.COLUMNS.index("Wall clock")
    assert model.cell(0, wall) == "-0.013 ms ± 0.018 ms"
    assert table.columnWidth(wall) > metrics.horizontalAdvance("-0.013 ms ± 0.018 ms") + 8
    # An error: its column takes the room back, cut at its end (its start says what).
    hosts.model.set_checks([good[0], HostCheck(Address("beta"), error="connection refused")])
    QApplication.processEvents()
    error = model.COLUMNS.index("Error")
    assert table.columnWidth(error) > table.columnWidth(column)
    assert table.horizontalHeader().length() == table.viewport().width()


def test_messages_are_cut_at_their_end_names_in_their_middle(qtbot: Any) -> None:
    from PySide6.QtWidgets import QStyleOptionViewItem

    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.set_test(make_test(hosts=1))
    table, model = detail.table, detail.model
    modes = {}
    for name in ("Host", "Command", "Message"):
        option = QStyleOptionViewItem()
        option.textElideMode = table.textElideMode()
        index = table.model().index(0, model.COLUMNS.index(name))
        table.itemDelegate().initStyleOption(option, index)
        modes[name] = option.textElideMode
    assert modes == {
        "Host": Qt.TextElideMode.ElideMiddle,
        "Command": Qt.TextElideMode.ElideMiddle,
        "Message": Qt.TextElideMode.ElideRight,
    }


def test_the_timeline_title_is_cut_with_an_ellipsis_not_at_the_edge(qtbot: Any) -> None:
    """The audit's timeline title line ran past the right edge, cut mid-letter."""
    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(520, 300)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_test(make_test(hosts=3))
    widget.viewport().grab()  # paints
    title, said = widget.title_shown
    assert said.endswith("…") and said[:-1] in summary(widget.data)
    bold = QFont(widget.font())
    bold.setBold(True)
    used = (
        QFontMetrics(bold).horizontalAdvance(title)
        + 16
        + widget.fontMetrics().horizontalAdvance(said)
    )
    assert 8 + used <= widget.viewport().width() - 8
    widget.resize(3000, 300)
    widget.viewport().grab()
    assert widget.title_shown[1] == summary(widget.data)  # room: whole


def test_the_output_header_says_how_the_command_ended(qtbot: Any) -> None:
    """As the CLI's line: status, exit, run time, message; in the views' words."""
    detail = TestDetail()
    qtbot.addWidget(detail)
    test = make_test(hosts=2, running=True)
    detail.set_test(test)
    assert detail.select_row(0)
    header = detail.output.header
    assert header.text().endswith("<code>echo hi 0</code>")  # still running: no status
    command = test.hosts[0].commands[0]
    command.status, command.exit_code, command.duration_s = CommandStatus.KILLED, -15, 2.199
    command.message = "test aborted: quorum lost (1 of 2 hosts left, -minhosts 2)"
    detail.refresh()
    assert header.text().endswith(
        "<code>echo hi 0</code> — killed (exit -15 (SIGTERM)), ran 2.199 s, "
        "test aborted: quorum lost (1 of 2 hosts left, -minhosts 2)"
    )


def test_at_1280x800_the_results_timeline_shows_rows_and_the_selection(window: Any) -> None:
    """The audit's Results page at 1280x800: about one timeline row, the selected table
    row half cut at the bottom."""
    window.resize(1280, 800)
    window.tabs.setCurrentIndex(window.RESULTS_TAB)
    detail = window.results.detail
    detail.set_test(make_test(hosts=40))
    detail.select_row(37)
    detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
    for _ in range(3):
        QApplication.processEvents()
    timeline, table = detail.timeline, detail.table
    assert timeline.rows_height >= 3 * ROW_HEIGHT
    # The selected row whole in the table, and in sight on the timeline.
    rect = table.visualRect(table.selectionModel().currentIndex())
    assert rect.top() >= 0 and rect.bottom() < table.viewport().height()
    top = 37 * ROW_HEIGHT - timeline.verticalScrollBar().value()
    assert 0 <= top and top + ROW_HEIGHT <= timeline.rows_height
