"""The overview of a test at 100 to 1000 hosts (issue 23, point 7): its content without
widgets, and clicks that select a host."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtWidgets import QApplication

from netjobs_core import vocabulary
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    TestResult,
    TestStatus,
)
from netjobs_core.wire.address import Address
from netjobs_gui.overview import (
    OverviewData,
    axis_rects,
    grid_cell,
    histogram,
    host_status,
    hosts_tally,
)
from netjobs_gui.run_view import TestDetail


def fleet(n: int) -> TestResult:
    """n hosts: host k released k µs after the start; node0003 failed, node0005 could
    not be reached, node0007 timed out, the last one 5 ms late; node0009 still runs."""
    test = TestResult("fleet", None, status=TestStatus.RUNNING, start_spread_ms=5.0)
    for k in range(n):
        host = HostResult(Address(f"node{k:04d}"), state=HostState.DONE)
        host.start_offset_ms = 5.0 if k == n - 1 else k / 1000
        command = CommandResult("bench", status=CommandStatus.OK, exit_code=0)
        if k == 3:
            command.status, command.exit_code = CommandStatus.FAILED, 2
        elif k == 5:
            host.state, host.start_offset_ms = HostState.FAILED, None
            command.status = CommandStatus.ERROR
        elif k == 7:
            host.state, command.status = HostState.TIMEOUT, CommandStatus.TIMEOUT
        elif k == 9:
            host.state, command.status = HostState.RUNNING, CommandStatus.RUNNING
        host.commands.append(command)
        test.hosts.append(host)
    return test


def test_what_the_overview_says_of_a_fleet() -> None:
    data = OverviewData.of(fleet(100))
    assert data.heading() == "100 hosts: 96 done, 1 failed, 1 error, 1 timed out, 1 running"
    assert data.offsets_heading() == (
        "Start offsets from the common start (99 of 100 released): released within "
        "5.000 ms; when the commands began was not measured"
    )
    assert data.named_heading() == "Latest:"  # no host released late
    assert data.late_text()[0] == (99, "node0099 +5.000 ms")  # the late host, named first
    assert [i for i, _ in data.late_text()] == [99, 98, 97, 96, 95]
    assert data.tooltip(3) == "node0003: failed, started +0.003 ms"
    assert data.tooltip(5) == "node0005: error"  # never released


def exec_fleet(n: int) -> TestResult:
    """fleet(n) with every command's exec instant measured (issue 19): host k began
    1 + k/100 ms after the common start; node0002 and node0004 released 2.5 and 7 ms
    late (--late-ms 1)."""
    test = fleet(n)
    test.exec_spread_ms, test.exec_spread_uncertainty_ms = 1.5, 0.1
    for k, host in enumerate(test.hosts):
        if host.start_offset_ms is not None:
            host.commands[0].exec_offset_ms = 1 + k / 100
    test.hosts[2].commands[0].release_late_ms = 2.5
    test.hosts[4].commands[0].release_late_ms = 7.0
    test.hosts[6].commands[0].release_late_ms = 0.5  # within --late-ms: not late
    return test


def test_the_overview_shows_exec_offsets_and_names_late_hosts() -> None:
    data = OverviewData.of(exec_fleet(100))
    assert data.offsets_heading().endswith(
        "released within 5.000 ms; commands began within 1.500 ms ± 0.100 ms"
    )  # the report's words (text.began)
    assert [caption for caption, _ in data.panels()] == [
        "released (agent's release instant)",
        "began (the command's exec instant, 99 of 100)",
    ]
    assert data.exec_offsets[10] == pytest.approx(1.1)
    assert data.named_heading() == "late releases (more than 1.000 ms, --late-ms):"
    assert data.late_text() == [(4, "node0004 +7.000 ms"), (2, "node0002 +2.500 ms")]
    assert data.tooltip(4) == (
        "node0004: done, started +0.004 ms, began +1.040 ms, released 7.000 ms late"
    )


def test_a_host_shows_its_worst_problem() -> None:
    host = HostResult(Address("h"), state=HostState.DONE)
    host.commands = [
        CommandResult("a", status=CommandStatus.OK),
        CommandResult("b", status=CommandStatus.TIMEOUT),
        CommandResult("c", status=CommandStatus.FAILED),
    ]
    assert host_status(host) is CommandStatus.FAILED
    host.commands[2].status = CommandStatus.OK
    assert host_status(host) is CommandStatus.TIMEOUT


def test_one_word_per_state_counted_once_and_as_the_table_says_it() -> None:
    """The audit's legend read "36 error, 2 error": a command's error and a host's were
    two keys, neither plural; a host lost while its command ran read "error" here and
    "lost" in the table."""
    from netjobs_gui.columns import command_state

    test = TestResult("t", None, status=TestStatus.ABORTED)
    for k in range(40):
        host = HostResult(Address(f"n{k}"), state=HostState.FAILED)
        command = CommandResult("bench", status=CommandStatus.ERROR)
        if k in (36, 37):
            command.status = CommandStatus.PENDING  # the host failed before it ran
        elif k == 38:
            command.status = CommandStatus.LOST
        elif k == 39:
            host.state, command.status = HostState.DONE, CommandStatus.OK
        host.commands.append(command)
        test.hosts.append(host)
    data = OverviewData.of(test)
    assert data.heading() == "40 hosts: 38 errors, 1 lost, 1 done"
    assert data.legend() == ["38 errors", "1 lost", "1 done"]
    table = [vocabulary.word(command_state(h, h.commands[0])) for h in test.hosts[:39]]
    assert [vocabulary.word(s) for s in data.statuses[:39]] == table  # the problems
    assert data.tooltip(38) == "n38: lost"
    assert hosts_tally(test.hosts) == "38 errors, 1 lost, 1 done"  # the Run page's status
    one = OverviewData.of(TestResult("t", None, hosts=test.hosts[38:40]))
    assert one.heading() == "2 hosts: 1 lost, 1 done"
    # Over before any release: not "yet" (item 2 of the audit); while it runs, "yet".
    assert data.none_released() == "no host was released"
    assert one.none_released() == "no host released yet"  # pending


def test_the_histogram_holds_every_released_host_once() -> None:
    offsets = {0: -0.5, 1: 0.0, 2: 0.1, 3: 4.0}
    found = histogram(offsets, 10)
    assert found is not None and (found.lo, found.hi) == (-0.5, 4.0)
    assert sorted(i for members in found.members for i in members) == [0, 1, 2, 3]
    assert found.members[-1] == (3,) and found.members[0] == (0,)
    assert histogram({}, 10) is None


@pytest.mark.parametrize("count", [100, 1000])
def test_the_grid_fits_a_thousand_hosts_in_half_a_page(count: int) -> None:
    cell, columns = grid_cell(count, 1260, 150)
    assert cell >= 5 and math.ceil(count / columns) * cell <= 150


def _detail(qapp: QApplication, test: TestResult) -> TestDetail:
    detail = TestDetail()
    detail.resize(1280, 760)
    detail.show()
    detail.set_test(test)
    detail.tabs.setCurrentIndex(detail.OVERVIEW_TAB)
    qapp.processEvents()
    return detail


def test_a_click_on_a_cell_or_a_late_host_selects_it(qapp: QApplication, qtbot) -> None:  # type: ignore[no-untyped-def]
    test = fleet(300)
    detail = _detail(qapp, test)
    overview = detail.overview
    grid = overview._grid_rect()
    cell, columns = grid_cell(300, grid.width(), grid.height())
    row, column = divmod(123, columns)
    at = QPoint(grid.left() + column * cell + cell // 2, grid.top() + row * cell + cell // 2)
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=at)
    host, _ = detail.model.item(detail.selected_row)  # type: ignore[arg-type]
    assert host.target == "node0123"
    assert overview.selected == 123
    assert detail.output.header.text().startswith("<b>node0123")
    # The latest host, named under the strip.
    rect, late = overview._late_rects[0]
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=rect.center())
    assert late == 299
    assert detail.model.item(detail.selected_row)[0].target == "node0299"  # type: ignore[arg-type]


def test_a_click_shows_a_host_the_filter_hid(qapp: QApplication, qtbot) -> None:  # type: ignore[no-untyped-def]
    detail = _detail(qapp, fleet(100))
    detail.filter.problems.setChecked(True)  # hides the hosts that did well
    assert detail.select_host(42)
    assert not detail.filter.problems.isChecked()
    assert detail.model.item(detail.selected_row)[0].target == "node0042"  # type: ignore[arg-type]


def test_the_overview_follows_the_table_selection(qapp: QApplication) -> None:
    detail = _detail(qapp, fleet(50))
    detail.select_row(7)
    assert detail.overview.selected == 7


def test_late_hosts_are_named_in_sight_and_a_click_selects_one(qapp: QApplication, qtbot) -> None:  # type: ignore[no-untyped-def]
    detail = _detail(qapp, exec_fleet(200))
    overview = detail.overview
    overview.repaint()
    drawn = " | ".join(overview.drawn)
    assert "commands began within 1.500 ms ± 0.100 ms" in drawn
    assert "began (the command's exec instant, 199 of 200)" in drawn
    assert "late releases (more than 1.000 ms, --late-ms):" in drawn
    assert "node0004 +7.000 ms | node0002 +2.500 ms" in drawn
    assert "a dot: released late" in drawn
    # The axis' ends under each strip, not over the bars (the audit saw them on the bars),
    # and above the named late hosts.
    found = overview.layout_now()
    assert found is not None and len(found.panels) == 2
    for panel in found.panels:
        for rect in axis_rects(panel, found.line):
            assert rect.top() > panel.strip.bottom() and not rect.intersects(QRectF(panel.bars))
            assert rect.bottom() <= found.named_top
    # The summary above the tabs says it whole, as the report does.
    summary = detail.summary.text()
    assert "released within 5.000 ms; commands began within 1.500 ms ± 0.100 ms" in summary
    assert "late releases (more than 1.000 ms, --late-ms): node0002 +2.500 ms" in summary
    rect, host = overview._late_rects[1]
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=rect.center())
    assert host == 2
    assert detail.model.item(detail.selected_row)[0].target == "node0002"  # type: ignore[arg-type]
    # A click on the exec offsets' strip selects the host whose command began there.
    panel = overview.layout_now().panels[1]  # type: ignore[union-attr]
    at = QPoint(int(panel.x_of(overview.data.exec_offsets[150])), panel.strip.center().y())  # type: ignore[union-attr]
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=at)
    chosen = detail.model.item(detail.selected_row)[0]  # type: ignore[arg-type]
    assert abs(_index_of(detail, chosen.target) - 150) <= 1  # a pixel holds ~1 host


def _index_of(detail: TestDetail, target: str) -> int:
    assert detail.test is not None
    return [h.target for h in detail.test.hosts].index(target)
