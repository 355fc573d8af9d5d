"""What the core measures, as the window shows it: the concurrent window, folded
outputs, large spooled outputs, collected files, node sets and groups, the history."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import itertools
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QPalette

from netjobs_core.history import History
from netjobs_core.outputs import Output
from netjobs_core.results import Collected, CommandStatus, RunResult
from netjobs_core.results_json import write_json
from netjobs_core.window import window_of
from netjobs_gui import widgets
from netjobs_gui.columns import folded_lines
from netjobs_gui.editor import ConfigHighlighter, EditorPanel
from netjobs_gui.models import ResultsModel
from netjobs_gui.run_view import TAIL_BYTES, TestDetail
from netjobs_gui.settings import SettingsDialog
from netjobs_gui.spread_plot import TICK_GAP, SpreadPlot, plot_layout
from netjobs_gui.timeline import (
    HEADER,
    LEGEND,
    ROW_HEIGHT,
    TimelineWidget,
    layout,
    timeline_data,
    window_band,
)
from tests.gui.test_gui_views import T0, make_test


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[QUrl]:
    """What the window asked the desktop to open (nothing is launched)."""
    urls: list[QUrl] = []

    def record(url: QUrl) -> bool:
        urls.append(url)
        return True

    monkeypatch.setattr(widgets, "open_url", record)
    return urls


def windowed(hosts: int = 3) -> Any:
    test = make_test(hosts=hosts)
    test.concurrent_window = window_of(test)
    return test


# --------------------------------------------------------------------------- the concurrent window


def test_the_window_band_is_where_every_command_ran() -> None:
    test = windowed()
    data = timeline_data(test)
    # Releases at 0, 0.01, 0.02 ms; the shortest command ran 1 s.
    assert data.window_ms == pytest.approx((0.02, 1000.0), abs=1e-3)  # float epochs
    geometry = layout(data, 1200, 90.0)
    left, right = window_band(data, geometry.run)
    assert left == pytest.approx(geometry.run.x(0.02))
    assert right == pytest.approx(geometry.run.x(1000.0))
    # Clipped to the strip, never narrower than 2 px; none without a window.
    data.window_ms = (-5000.0, 1e9)
    assert window_band(data, geometry.run) == (geometry.run.left, geometry.run.right)
    data.window_ms = (10.0, 10.0)
    band = window_band(data, geometry.run)
    assert band is not None and band[1] - band[0] == 2.0
    test.concurrent_window = None
    assert window_band(timeline_data(test), geometry.run) is None


def test_the_window_is_shaded_on_the_timeline_and_said_in_the_summary(qtbot: Any) -> None:
    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(1100, 300)
    widget.show()
    test = windowed()
    widget.set_test(test)
    image = widget.viewport().grab().toImage()
    data = widget.data
    assert data is not None
    geometry = layout(data, widget.viewport().width(), 90.0, widget.run_span_ms, 3)
    left, right = window_band(data, geometry.run)
    # The band's tint, blended on the base colour, inside the band and not right of it.
    y = HEADER + 3 * ROW_HEIGHT - 2  # below the bars of the last row, inside the rows
    inside = image.pixelColor(int((left + right) / 2), y)
    outside = image.pixelColor(int(right) + 30, y)
    assert inside.green() > inside.red() and inside != outside
    assert "green band: all running together" in LEGEND[1]

    model = ResultsModel()
    without = make_test(hosts=2)
    without.label = "u"
    model.add_run(RunResult("c.cfg", "r1", tests=[test, without]), "run")
    together = model.COLUMNS.index("Together")
    assert [model.cell(row, together) for row in range(2)] == ["1.000 s", "never"]
    tip = model.data(model.index(0, together), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("all 3 hosts ran together for 1.000 s")
    # Closed as a command was lost: "at least", as the summary says (it said "1.000 s").
    assert test.concurrent_window is not None
    test.concurrent_window = dataclasses.replace(test.concurrent_window, at_least=True)
    model.refresh()
    assert model.cell(0, together) == "at least 1.000 s"
    assert model.data(model.index(0, together), Qt.ItemDataRole.ToolTipRole).startswith(
        "all 3 hosts ran together for at least 1.000 s"
    )
    test.concurrent_window = dataclasses.replace(test.concurrent_window, at_least=False)

    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.set_test(test)
    # The last release at +0.02 ms, the first end at 1 s; the longest ran 1.2 s.
    assert "all 3 hosts ran together for 1.000 s (83.3 % of the longest command)" in (
        detail.summary.text()
    )
    detail.set_test(make_test(hosts=2))
    assert "the 2 hosts never all ran together" in detail.summary.text()


# --------------------------------------------------------------------------- outputs and files


def spooled(path: Path, lines: int) -> Output:
    output = Output(path)
    for n in range(lines):
        output.append(f"line {n:06d} of the benchmark's output\n".encode())
    output.close()
    return output


def test_a_large_output_shows_its_beginning_and_end_and_opens_whole(
    qtbot: Any, tmp_path: Path, opened: list[QUrl]
) -> None:
    test = make_test(hosts=1)
    command = test.hosts[0].commands[0]
    command.stdout = spooled(tmp_path / "cmd1.stdout", 40_000)  # 1.4 MiB
    assert command.stdout.size > 4 * TAIL_BYTES
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.show()
    detail.set_test(test)
    stdout = detail.output.stdout
    shown = stdout.text.split("\n")
    assert shown[0] == "line 000000 of the benchmark's output"
    assert shown[-1] == "line 039999 of the benchmark's output"
    left_out = [line for line in shown if "left out" in line]
    assert len(left_out) == 1
    assert f"the whole output is in {tmp_path / 'cmd1.stdout'}" in left_out[0]
    assert "its beginning and end" in stdout.title.text()
    assert stdout.open_button.isVisible() and stdout.open_button.text() == "Open the whole file"
    stdout.open_button.click()
    assert opened == [QUrl.fromLocalFile(str(tmp_path / "cmd1.stdout"))]
    # A small output is shown whole, and is in memory: nothing to open.
    assert not detail.output.stderr.open_button.isVisible()


def test_collected_files_are_listed_and_open(
    qtbot: Any, tmp_path: Path, opened: list[QUrl]
) -> None:
    test = make_test(hosts=2)
    saved = tmp_path / "fio-0.json"
    saved.write_text('{"iops": 1}\n')
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    first = test.hosts[0].commands[0]
    first.collected = [Collected("/tmp/fio-$NETJOBS_INDEX.json", saved, 12, digest)]
    first.warnings = ["-collect /var/log/bench-*.log matched nothing"]
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.show()
    detail.set_test(test)
    files = detail.output.files
    assert files.isVisible()
    assert [files.item(i).text() for i in range(files.count())] == [
        "fio-0.json  (12 B)  /tmp/fio-$NETJOBS_INDEX.json",
        "warning: -collect /var/log/bench-*.log matched nothing",
    ]
    files.itemActivated.emit(files.item(0))
    files.itemActivated.emit(files.item(1))  # a warning opens nothing
    assert opened == [QUrl.fromLocalFile(str(saved))]
    detail.select_row(1)  # the other host collected nothing
    assert not files.isVisible() and not detail.output.files_label.isVisible()
    fresh = TestDetail()  # nothing selected yet: no empty list either
    qtbot.addWidget(fresh)
    fresh.show()
    assert not fresh.output.files.isVisible() and not fresh.output.files_label.isVisible()


def test_identical_outputs_fold_into_a_node_set_and_one_output(qtbot: Any) -> None:
    test = make_test(hosts=5)
    for n, host in enumerate(test.hosts):
        command = host.commands[0]
        command.command = "./bench"
        same = b"FAILED: disk full\n" if n == 3 else b"42 MB/s\n"
        command.stdout = Output.from_bytes(same)
        if n == 3:
            command.status, command.exit_code = CommandStatus.FAILED, 1
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.show()
    detail.set_test(test)
    pane = detail.output
    assert not pane.folded.isVisible()
    pane.fold_check.setChecked(True)
    assert pane.folded.isVisible() and not pane.stdout.isVisible()
    assert pane.header.text().startswith("Every output of the test once")
    assert pane.folded.toPlainText().split("\n") == folded_lines(test)
    assert folded_lines(test) == [
        "5 commands, 2 distinct outputs",
        "",
        "10.0.0.[1-3,5] (4 hosts): OK (exit 0): ./bench",
        "  stdout (8 B):",
        "    42 MB/s",
        "  stderr: empty",
        "",
        "10.0.0.4 (1 host): FAILED (exit 1): ./bench",
        "  stdout (18 B):",
        "    FAILED: disk full",
        "  stderr: empty",
    ]
    pane.fold_check.setChecked(False)
    assert pane.stdout.isVisible() and "10.0.0.1" in pane.header.text()


# --------------------------------------------------------------------------- node sets and groups

FLEET = """\
bench:
-minhosts: all
-collect: /tmp/fio-$NETJOBS_INDEX.json
127.0.0.[1-3]:16201: "true"
@web: "true"
end
"""


def test_node_sets_groups_and_collect_are_highlighted(qtbot: Any) -> None:
    panel = EditorPanel()
    qtbot.addWidget(panel)
    h = panel.highlighter
    assert h.spans('node[01-32],db1:16200: "./bench"') == [
        (0, 21, "target"),
        (4, 7, "range"),
        (23, 9, "command"),
    ]
    assert h.spans('@web!node05: "x"') == [(0, 11, "target"), (0, 4, "group"), (13, 3, "command")]
    # An IPv6 literal is not a range.
    assert h.spans('[::1]:17000: "date"') == [(0, 11, "target"), (13, 6, "command")]
    assert h.spans("-collect: /tmp/out-$NETJOBS_INDEX.json") == [
        (0, 8, "option"),
        (10, 28, "path"),
    ]
    panel.new_document(FLEET)
    block = panel.editor.document().findBlockByNumber(3)
    colours = {f.start: f.format.foreground().color().name() for f in block.layout().formats()}
    assert colours[0] == ConfigHighlighter.COLORS["target"]
    assert colours[8] == ConfigHighlighter.COLORS["range"]  # [1-3]


def test_the_groups_file_setting_reaches_the_parser_and_the_hosts_page(
    window: Any, settings: Any, tmp_path: Path, answers: Any
) -> None:
    groups = tmp_path / "groups"
    groups.write_text("web: 127.0.0.[7-9]:16201\n")
    window.editor.new_document(FLEET)
    assert window.editor.validate_now() is None
    assert "line 5</a>: unknown group '@web'" in html.unescape(window.editor.status.text())

    dialog = SettingsDialog(settings, window)
    dialog.groups_edit.setText(str(tmp_path / "missing"))
    dialog.accept()  # refused, saying why
    assert dialog.groups_error.isVisibleTo(dialog) and "cannot read" in dialog.groups_error.text()
    dialog.groups_edit.setText(str(groups))
    dialog.accept()
    assert settings.groups_file == str(groups)
    window._load_groups()
    plan = window.editor.validate_now()
    assert plan is not None
    assert [c.target for c in plan.tests[0].commands] == [
        "127.0.0.1:16201",
        "127.0.0.2:16201",
        "127.0.0.3:16201",
        "127.0.0.7:16201",
        "127.0.0.8:16201",
        "127.0.0.9:16201",
    ]
    assert window.hosts.config_set.text() == "The config's hosts: 127.0.0.[1-3,7-9]:16201 (6 hosts)"
    # Too long for the page: cut in its middle, the count in sight, the whole in its tooltip.
    window.editor.new_document(
        "t:\n"
        + "".join(f'{chr(97 + n % 26)}{chr(97 + n // 26)}host: "x"\n' for n in range(200))
        + "end\n"
    )
    window.editor.validate_now()
    shown = window.hosts.config_set.text()
    assert "…" in shown and shown.endswith("(200 hosts)")
    assert window.hosts.config_set.toolTip().startswith("aahost,abhost,")  # names never fold


# --------------------------------------------------------------------------- the run history


def test_plot_layout_spaces_runs_and_ticks_the_spread() -> None:
    geometry = plot_layout([0.12, None, 0.41, 0.2], 400, 200)
    assert (geometry.step, geometry.y_max) == (0.2, pytest.approx(0.6))
    assert geometry.ticks() == pytest.approx([0.0, 0.2, 0.4, 0.6])
    xs = [p[0] for p in geometry.points if p is not None]
    assert xs == pytest.approx(
        [geometry.left, geometry.left + 2 * (geometry.right - geometry.left) / 3, geometry.right]
    )
    assert geometry.points[1] is None  # that run measured no spread
    assert geometry.points[2][1] < geometry.points[0][1]  # larger spread, higher
    assert geometry.y(0.0) == geometry.bottom and geometry.y(geometry.y_max) == geometry.top
    # A short plot: fewer ticks, never closer than TICK_GAP (the audit's 5 in 40 px).
    short = plot_layout([4.0], 400, 90)
    assert len(short.ticks()) == 2
    gaps = [short.y(a) - short.y(b) for a, b in itertools.pairwise(short.ticks())]
    assert min(gaps) >= TICK_GAP
    one = plot_layout([0.3], 400, 200)
    assert one.points[0][0] == (one.left + one.right) / 2
    assert plot_layout([None], 400, 200).y_max > 0  # nothing measured: still an axis


def test_the_plot_and_the_timeline_paint_alike_on_their_palette(qtbot: Any) -> None:
    base, ink = QColor("#123456"), QColor("#fedcba")

    def inked(image: Any, top: int) -> float:
        """How far the inkiest pixel from `top` down goes from the base to the ink."""
        return max(
            (image.pixelColor(x, y).red() - base.red()) / (ink.red() - base.red())
            for x in range(image.width())
            for y in range(top, image.height())
        )

    for widget in (SpreadPlot(), TimelineWidget()):
        qtbot.addWidget(widget)
        palette = widget.palette()
        palette.setColor(QPalette.ColorRole.Base, base)
        palette.setColor(QPalette.ColorRole.Text, ink)
        widget.setPalette(palette)
        widget.resize(400, 200)
        widget.show()
        surface = widget.viewport() if isinstance(widget, TimelineWidget) else widget
        image = surface.grab().toImage()
        assert image.pixelColor(2, image.height() - 3) == base
        # Below the plot's title: labels in the one muted ink (the text colour at 140/255).
        assert inked(image, 25) == pytest.approx(140 / 255, abs=0.01), type(widget).__name__


def past_run(
    folder: Path, run_id: str, started: float, spreads: list[float], keep: bool = True
) -> RunResult:
    run = RunResult("/work/bench.netjobs", run_id, str(folder / run_id), started)
    for n, spread in enumerate(spreads):
        test = make_test(hosts=2)
        test.label, test.started_at, test.start_spread_ms = "bench", started + n, spread
        test.repetition = n + 1 if len(spreads) > 1 else None
        run.tests.append(test)
    if keep:
        Path(run.results_dir).mkdir()
        write_json(run, Path(run.results_dir) / "results.json")
    return run


def test_the_history_lists_past_runs_and_plots_a_repeated_test(window: Any, tmp_path: Path) -> None:
    store = tmp_path / "history.sqlite3"  # this test's own: other tests' runs are recorded too
    window.results.history.path = store
    with History(store) as history:
        history.record(past_run(tmp_path, "run-a", T0, [0.12]), None)
        history.record(past_run(tmp_path, "run-b", T0 + 60, [0.30], keep=False), None)
        history.record(past_run(tmp_path, "run-c", T0 + 120, [0.20, 0.41]), None)  # --repeat 2
    results = window.results
    panel = results.history
    panel.reload()
    assert [panel.model.cell(r, 5) for r in range(3)] == ["run-c", "run-b", "run-a"]
    assert [panel.model.cell(r, 1) for r in range(3)] == [
        "1 test passed (2 repetitions)",
        "1 test passed",
        "1 test passed",
    ]
    assert panel.model.cell(1, 4) == f"deleted: {tmp_path / 'run-b'}"
    assert panel.note.text() == "3 past runs (newest first)."
    # The newest is selected; its test's spread over every run of it, oldest first.
    assert panel.current_record.run_id == "run-c"
    assert panel.test_choice.currentText() == "bench"
    assert [p.spread_ms for p in panel.plot.points] == [0.12, 0.30, 0.20, 0.41]
    assert panel.plot.title == "'bench': start spread over 4 runs"
    # No metric kept: the metric plot says so, and draws no empty 0-0.5 axis (audit).
    assert panel.metric_plot.title == "'bench': no metric kept in the history"
    assert panel.plot.plotted and not panel.metric_plot.plotted
    # In the History tab, the detail below shows the selected run's test (its last
    # repetition), read from its results.json.
    results.sources.setCurrentIndex(results.HISTORY_TAB)
    shown = results.detail.test
    assert shown is not None and (shown.label, shown.repetition) == ("bench", 2)
    assert "released within 0.410 ms" in results.detail.summary.text()
    panel.table.selectRow(1)
    assert not panel.show_button.isEnabled()  # its folder is gone
    assert results.detail.test is None
    panel.table.selectRow(0)
    assert panel.show_button.isEnabled()
    panel.show_button.click()
    assert results.sources.currentIndex() == results.SESSION_TAB
    assert [e.test.repetition for e in results.model.entries] == [1, 2]
    assert results.model.entries[0].origin == str((tmp_path / "run-c" / "results.json").resolve())


def test_outputs_fold_whatever_their_command_lines() -> None:
    test = make_test(hosts=3)  # `echo hi 0`, `echo hi 1`, `echo hi 2`
    for host in test.hosts:
        host.commands[0].stdout = Output.from_bytes(b"same\n")
    lines = folded_lines(test)
    assert lines[:3] == [
        "3 commands, 1 distinct output",
        "",
        "10.0.0.[1-3] (3 hosts): OK (exit 0): echo hi 0 (and 2 other command lines)",
    ]


def test_the_left_out_line_is_in_sight(qtbot: Any, tmp_path: Path) -> None:
    test = make_test(hosts=1)
    test.hosts[0].commands[0].stdout = spooled(tmp_path / "cmd1.stdout", 40_000)
    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.resize(900, 700)
    detail.show()
    detail.set_test(test)
    view = detail.output.stdout.view
    first = view.cursorForPosition(view.viewport().rect().topLeft()).blockNumber()
    last = view.cursorForPosition(view.viewport().rect().bottomLeft()).blockNumber()
    shown = [view.document().findBlockByNumber(n).text() for n in range(first, last + 1)]
    assert any("left out" in line for line in shown)
