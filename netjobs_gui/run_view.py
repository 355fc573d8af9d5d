"""The Run page: the plan's tests, overall progress, and one test in detail.

`TestDetail` (commands table, live output, timeline) is also what the
Results page shows for a re-opened test.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from html import escape

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt
from PySide6.QtGui import QFont, QFontDatabase, QTextCursor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import text
from netjobs_core.config import Plan
from netjobs_core.outputs import Output
from netjobs_core.results import CommandResult, HostResult, RunResult, TestResult
from netjobs_core.vocabulary import color, word
from netjobs_gui.models import CommandsModel, TestsModel
from netjobs_gui.timeline import TimelineWidget
from netjobs_gui.widgets import make_table, never_widen, select_row

MAX_OUTPUT_LINES = 2000  # lines kept in each output view
TAIL_BYTES = 128 * 1024  # what an output view shows when it (re)opens a command


def _fixed_font() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


class StreamView(QWidget):
    """A bounded tail of one output stream of one command; appends what arrives."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.title = QLabel()
        never_widen(self.title)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_OUTPUT_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(_fixed_font())
        self.view.setUndoRedoEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        self.data: Output | None = None
        self.shown = 0  # bytes of `data` already in the view
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._update_title()

    def set_data(self, data: Output | None) -> None:
        """Show the tail of `data` (the live buffer the runner appends to)."""
        self.data = data
        self.view.clear()
        self._decoder.reset()
        self.shown = 0
        if data is not None and len(data) > TAIL_BYTES:
            self.shown = len(data) - TAIL_BYTES
        self.refresh()

    def refresh(self) -> None:
        data = self.data
        if data is None:
            self._update_title()
            return
        if len(data) - self.shown > TAIL_BYTES:  # fell far behind: jump to the tail
            self.view.clear()
            self._decoder.reset()
            self.shown = len(data) - TAIL_BYTES
        if len(data) > self.shown:
            chunk = data.since(self.shown)  # its kept tail (netjobs_core.outputs)
            self.shown = len(data)
            decoded = self._decoder.decode(chunk).replace("\r\n", "\n").replace("\r", "\n")
            bar = self.view.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            cursor = QTextCursor(self.view.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(decoded)
            if at_end:
                bar.setValue(bar.maximum())
        self._update_title()

    def _update_title(self) -> None:
        if self.data is None:
            self.title.setText(f"<b>{self.name}</b>")
            return
        size = len(self.data)
        title = f"<b>{self.name}</b> — {text.size(size)}"
        if size > TAIL_BYTES or self.view.blockCount() >= MAX_OUTPUT_LINES:
            title += " (showing the end; the full output is kept in the results)"
        self.title.setText(title)

    @property
    def text(self) -> str:
        return self.view.toPlainText()


class OutputPane(QWidget):
    """stdout and stderr of the selected command, side by side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QLabel("Select a command to see its output.")
        self.header.setWordWrap(True)
        never_widen(self.header)
        self.stdout = StreamView("stdout")
        self.stderr = StreamView("stderr")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.stdout)
        splitter.addWidget(self.stderr)
        splitter.setSizes([600, 400])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(splitter, 1)
        self.command: CommandResult | None = None

    def show_command(self, host: HostResult | None, command: CommandResult | None) -> None:
        if command is self.command:
            self.refresh()
            return
        self.command = command
        if host is None or command is None:
            self.header.setText("Select a command to see its output.")
            self.stdout.set_data(None)
            self.stderr.set_data(None)
            return
        self.header.setText(
            f"<b>{escape(str(host.address))}</b>: <code>{escape(command.command)}</code>"
        )
        self.stdout.set_data(command.stdout)
        self.stderr.set_data(command.stderr)

    def refresh(self) -> None:
        self.stdout.refresh()
        self.stderr.refresh()


class TestDetail(QWidget):
    """One test: a row per host/command, the selected command's output, the timeline."""

    __test__ = False

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = CommandsModel(self)
        self.table = make_table(self.model, (140, 230, 80, 100, 80, 100))
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)

        self.output = OutputPane()
        self.timeline = TimelineWidget()
        scroll = QScrollArea()
        scroll.setWidget(self.timeline)
        scroll.setWidgetResizable(True)
        scroll.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.output, "Output")
        self.tabs.addTab(scroll, "Timeline")
        self.tabs.currentChanged.connect(lambda _index: self.timeline.refresh())

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        never_widen(self.summary)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 360])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)
        self.test: TestResult | None = None
        self._update_summary()

    def set_test(self, test: TestResult | None) -> None:
        if test is self.test:
            self.refresh()
            return
        self.test = test
        self.model.set_test(test)
        self.timeline.set_test(test)
        self._update_summary()
        if test is not None and self.model.rowCount() > 0:
            self.select_row(0)
        else:
            self.output.show_command(None, None)

    def select_row(self, row: int) -> None:
        select_row(self.table, row)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        if current.isValid() and self.test is not None:
            host, index = self.model.item(current.row())
            self.output.show_command(host, host.commands[index])
        else:
            self.output.show_command(None, None)

    def _update_summary(self) -> None:
        test = self.test
        if test is None:
            self.summary.setText("<i>No test selected, or not run yet.</i>")
            return
        head = (
            f"<b>{escape(test.label)}</b> — "
            f'<b style="color:{color(test.status)}">{word(test.status)}</b>'
        )
        if test.reason:
            head += f": {escape(test.reason)}"
        parts = [head, *(escape(part) for part in text.summary_parts(test))]
        self.summary.setText(" · ".join(parts))

    def refresh(self) -> None:
        self.model.refresh()
        self.output.refresh()
        self._update_summary()
        if self.tabs.currentIndex() == 1 or self.timeline.isVisible():
            self.timeline.refresh()


class RunView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tests_model = TestsModel(self)
        self.tests = make_table(self.tests_model, (110, 62, 45, 62, 130))
        # The detail's summary line has the duration.
        self.tests.setColumnHidden(TestsModel.COLUMNS.index("Duration"), True)
        self.tests.selectionModel().currentRowChanged.connect(self._test_changed)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m commands")
        self.progress.setMinimumWidth(260)
        self.status = QLabel("Open a config, then Run (F5).")
        self.status.setWordWrap(True)
        never_widen(self.status)
        top = QHBoxLayout()
        top.addWidget(self.progress)
        top.addWidget(self.status, 1)

        self.detail = TestDetail()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.tests)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([420, 860])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

        self.plan: Plan | None = None
        self.run: RunResult | None = None
        self.running = False
        self.current_label: str | None = None  # the test being run
        self._pending_plan: Plan | None = None
        self._plan_pending = False
        self._total_commands = 0
        self._chosen_count = 0

    # ---- plan
    def set_plan(self, plan: Plan | None) -> None:
        """The editor's plan; while running, the list keeps the running plan."""
        if self.running:
            self._pending_plan, self._plan_pending = plan, True
            return
        old = self.selected_label
        self.plan = plan
        self.tests_model.set_plan(plan)
        if plan is not None and plan.tests:
            labels = self.tests_model.labels
            self.select_label(old if old in labels else labels[0])
        else:
            self.detail.set_test(None)

    @property
    def selected_label(self) -> str | None:
        index = self.tests.selectionModel().currentIndex()
        if not index.isValid() or index.row() >= len(self.tests_model.labels):
            return None
        return self.tests_model.labels[index.row()]

    def select_label(self, label: str) -> None:
        if label not in self.tests_model.labels:
            return
        self.tests.selectionModel().setCurrentIndex(
            self.tests_model.index(self.tests_model.row_of(label), 0),
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )

    def _test_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        if not current.isValid():
            self.detail.set_test(None)
            return
        label = self.tests_model.labels[current.row()]
        self.detail.set_test(self.tests_model.results.get(label))

    # ---- a run
    def begin_run(self, plan: Plan, labels: Sequence[str] | None, run: RunResult) -> None:
        self.running = True
        self.plan = plan
        self.run = run
        self.current_label = None
        self.tests_model.set_plan(plan)
        self.tests_model.clear_results()
        chosen = [t for t in plan.tests if labels is None or t.label in labels]
        self._total_commands = sum(len(t.commands) for t in chosen)
        self._chosen_count = len(chosen)
        self.progress.setRange(0, max(1, self._total_commands))
        self.progress.setValue(0)
        self.status.setText("Starting…")
        if chosen:
            self.select_label(chosen[0].label)

    def on_test_started(self, test: TestResult) -> None:
        following = self.selected_label in (None, self.current_label) or self.current_label is None
        self.current_label = test.label
        self.tests_model.set_result(test)
        if following:
            self.select_label(test.label)
        if self.selected_label == test.label:
            self.detail.set_test(test)
        self.refresh()

    def refresh(self) -> None:
        self.tests_model.refresh()
        self.detail.refresh()
        if self.run is not None:
            done = sum(text.progress(t)[0] for t in self.run.tests)
            self.progress.setValue(min(done, self.progress.maximum()))
            if self.running and self.current_label is not None:
                test = self.tests_model.results.get(self.current_label)
                index = len(self.run.tests)
                if test is not None:
                    hosts = text.tally(host.state for host in test.hosts)
                    self.status.setText(
                        f"Running test <b>{escape(test.label)}</b> "
                        f"({index} of {self._chosen_count}): "
                        f"{text.commands_finished(test)} · hosts: {hosts}"
                    )

    def end_run(self, run: RunResult, summary: str) -> None:
        self.running = False
        self.run = run
        self.refresh()
        self.status.setText(summary)
        if self._plan_pending:
            plan, self._pending_plan, self._plan_pending = self._pending_plan, None, False
            # Keep showing the finished run's tests if the plan no longer parses.
            if plan is not None:
                results = dict(self.tests_model.results)
                self.set_plan(plan)
                for test in results.values():
                    if test.label in self.tests_model.labels:
                        self.tests_model.set_result(test)
                self._test_changed(self.tests.selectionModel().currentIndex(), None)


class TextDialog(QDialog):
    """Read-only monospace text (the dry run)."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(_fixed_font())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(900, 420)
