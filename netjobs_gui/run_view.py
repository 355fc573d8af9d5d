"""The Run page: the plan's tests, overall progress, and one test in detail.

`TestDetail` (commands table, live output, timeline) is also what the
Results page shows for a re-opened test.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QKeySequence,
    QShortcut,
    QShowEvent,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import nodesets, text
from netjobs_core.config import Plan
from netjobs_core.fold import said_once
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import color, command_said
from netjobs_gui.columns import (
    COMMAND_FIT,
    METRIC_FIT,
    TEST_FIT,
    folded_lines,
    output_from,
    output_of,
    output_size,
    status_color,
    whole_file,
)
from netjobs_gui.models import CommandsModel, TestsModel
from netjobs_gui.overview import OverviewWidget, hosts_tally
from netjobs_gui.timeline import TimelineWidget
from netjobs_gui.widgets import (
    FilterBar,
    FindBar,
    FitColumns,
    PathBar,
    current_row,
    hide_columns,
    make_table,
    never_widen,
    open_file,
    proxy_of,
    select_row,
    shown_rows,
    source_row,
)

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
        self.open_button = QToolButton()
        self.open_button.setText("Open the whole file")
        self.open_button.setToolTip("Open this output's file (all of it) in the desktop's viewer")
        self.open_button.clicked.connect(self.open_whole_file)
        self.open_button.hide()
        heading = QHBoxLayout()
        heading.setContentsMargins(0, 0, 0, 0)
        heading.addWidget(self.title, 1)
        heading.addWidget(self.open_button)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_OUTPUT_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(_fixed_font())
        self.view.setUndoRedoEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(heading)
        layout.addWidget(self.view, 1)
        self.path_bar = PathBar(f"All of {name}")
        layout.addWidget(self.path_bar)
        self.command: CommandResult | None = None
        self.shown = 0  # bytes of the stream already in the view
        self.excerpt = False  # showing its beginning and end (a large finished output)
        self._stale = False  # set_command() while hidden: load when shown
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._update_title()

    def set_command(self, command: CommandResult | None) -> None:
        """Show the tail of this stream of `command` (live: the runner appends to it).
        A hidden view loads it once shown: filling a text view is the costly part."""
        self.command = command
        self.view.clear()
        self.view.setMaximumBlockCount(MAX_OUTPUT_LINES)
        self._decoder.reset()
        self.shown = 0
        self._stale = True
        if self.isVisible():
            self._load()
        else:
            self._update_title()

    def _load(self) -> None:
        self._stale = False
        self.excerpt = False
        command = self.command
        if command is not None and command.status.finished and self.received > TAIL_BYTES:
            # A large finished output: its beginning and its end, around the "left out"
            # line (text.output_excerpt, as the report and the log show it).
            output = output_of(command, self.name)
            self.view.setMaximumBlockCount(0)  # bounded in bytes: TAIL_BYTES in all
            lines = text.output_excerpt(output, TAIL_BYTES)
            self.view.setPlainText(text.printable("\n".join(lines)))
            # In sight: the end of the beginning, the "left out" line, the start of the end.
            gap = len(text.output_lines(output.excerpt(TAIL_BYTES)[0]))
            cursor = QTextCursor(self.view.document().findBlockByNumber(gap))
            self.view.setTextCursor(cursor)
            self.view.centerCursor()
            self.shown = self.received
            self.excerpt = True
            self._update_title()
            return
        self.shown = max(0, self.received - TAIL_BYTES)
        self.refresh()

    @property
    def whole_file(self) -> Path | None:
        return None if self.command is None else whole_file(self.command, self.name)

    def open_whole_file(self) -> bool:
        path = self.whole_file
        return path is not None and open_file(path, self)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._load()

    @property
    def received(self) -> int:
        return 0 if self.command is None else output_size(self.command, self.name)

    def refresh(self) -> None:
        if self.command is None or self._stale:
            if self._stale and self.isVisible():
                self._load()
            self._update_title()
            return
        size = self.received
        if size - self.shown > TAIL_BYTES:  # fell far behind: jump to the tail
            self.view.clear()
            self._decoder.reset()
            self.shown = size - TAIL_BYTES
        if size > self.shown:
            chunk = output_from(self.command, self.name, self.shown)
            self.shown = size  # what memory no longer holds is in the spooled file
            decoded = self._decoder.decode(chunk).replace("\r\n", "\n").replace("\r", "\n")
            # More lines than the view keeps would push out all it holds, then most of
            # themselves: insert only the lines that stay.
            lines = decoded.rsplit("\n", MAX_OUTPUT_LINES)
            if len(lines) > MAX_OUTPUT_LINES:
                self.view.clear()
                decoded = "\n".join(lines[1:])
            bar = self.view.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            cursor = QTextCursor(self.view.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text.printable(decoded))  # as the terminal shows it
            if at_end:
                bar.setValue(bar.maximum())
        self._update_title()

    def _update_title(self) -> None:
        if self.command is None:
            self.open_button.hide()
            self.path_bar.set_path(None)
            self.title.setText(f"<b>{self.name}</b>")
            return
        size = self.received
        title = f"<b>{self.name}</b> — {text.size(size)}"
        cut = size > TAIL_BYTES or self.view.blockCount() >= MAX_OUTPUT_LINES
        if self.excerpt:
            title += " (its beginning and end)"
        elif cut:
            title += " (showing the end; the whole output is in its file)"
        self.title.setText(title)
        # Only an output the view does not hold whole needs its file opened; where the
        # whole of it is saved is always said.
        self.open_button.setVisible((self.excerpt or cut) and self.whole_file is not None)
        if self.path_bar.path != os.fspath(self.whole_file or ""):
            self.path_bar.set_path(self.whole_file)

    @property
    def text(self) -> str:
        """What the view holds (loaded now if it was waiting to be shown)."""
        if self._stale:
            self._load()
        return self.view.toPlainText()


class OutputPane(QWidget):
    """stdout and stderr of the selected command, side by side, with the files it
    collected; or every output of the test once per set of identical ones (Group
    identical outputs). Ctrl+F finds in what is shown."""

    STREAMS, FOLDED = range(2)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QLabel("Select a command to see its output.")
        self.header.setWordWrap(True)
        never_widen(self.header)
        self.fold_check = QCheckBox("&Group identical outputs")
        self.fold_check.setToolTip(
            "Show each distinct output once, with the hosts that wrote it as a node set"
        )
        self.fold_check.toggled.connect(self._fold_toggled)
        heading = QHBoxLayout()
        heading.addWidget(self.header, 1)
        heading.addWidget(self.fold_check)
        self.stdout = StreamView("stdout")
        self.stderr = StreamView("stderr")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.stdout)
        splitter.addWidget(self.stderr)
        splitter.setSizes([600, 400])
        splitter.setChildrenCollapsible(False)
        self.files_label = QLabel("Collected files (Enter or double-click opens one):")
        self.files = QListWidget()
        self.files.itemActivated.connect(self._open_item)
        self.files.currentItemChanged.connect(self._file_chosen)
        self.file_path = PathBar("Saved at")
        streams = QWidget()
        streams_layout = QVBoxLayout(streams)
        streams_layout.setContentsMargins(0, 0, 0, 0)
        streams_layout.addWidget(splitter, 1)
        streams_layout.addWidget(self.files_label)
        streams_layout.addWidget(self.files)
        streams_layout.addWidget(self.file_path)
        self.folded = QPlainTextEdit()
        self.folded.setReadOnly(True)
        self.folded.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.folded.setFont(_fixed_font())
        self.stack = QStackedWidget()
        self.stack.addWidget(streams)
        self.stack.addWidget(self.folded)
        self.find_bar = FindBar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(heading)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.find_bar)
        self.test: TestResult | None = None
        self.command: CommandResult | None = None
        self.host: HostResult | None = None
        self._files_listed: tuple[int, int] | None = None  # (command id, rows) on the list
        self.last_stream = self.stdout
        for stream in (self.stdout, self.stderr):
            stream.view.installEventFilter(self)
        self._show_files()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusIn:
            self.last_stream = self.stdout if watched is self.stdout.view else self.stderr
        return False

    def open_find(self) -> None:
        """Open the find bar on what is shown (the stream last focused, stdout at first)."""
        folded = self.stack.currentIndex() == self.FOLDED
        self.find_bar.open_on(self.folded if folded else self.last_stream.view)

    def set_test(self, test: TestResult | None) -> None:
        self.test = test
        self._update_folded()

    def show_command(self, host: HostResult | None, command: CommandResult | None) -> None:
        if command is self.command:
            self.refresh()
            return
        self.command = command
        self.host = host
        self._show_files()
        self._update_header()
        if host is None or command is None:
            self.stdout.set_command(None)
            self.stderr.set_command(None)
            return
        self.stdout.set_command(command)
        self.stderr.set_command(command)

    def _update_header(self) -> None:
        if self.fold_check.isChecked():
            self.header.setText("Every output of the test once, after the hosts that wrote it:")
        elif self.host is None or self.command is None:
            self.header.setText("Select a command to see its output.")
        else:
            self.header.setText(
                f"<b>{escape(str(self.host.address))}</b>: "
                f"<code>{escape(self.command.command)}</code>"
                + (f" — {escape(said)}" if (said := self.command_said()) else "")
            )

    def command_said(self) -> str:
        """The selected command's status and details once it has ended, as the CLI's line
        says them in the views' words: `killed (exit -15 (SIGTERM)), ran 2.199 s, why`."""
        command = self.command
        if command is None or not command.status.finished:
            return ""
        parts = [command_said(command.status, command.exit_code), *text.command_details(command)]
        return text.printable(", ".join(parts))

    def _show_files(self) -> None:
        """The selected command's collected files (openable) and their warnings."""
        command = self.command
        collected = [] if command is None else command.collected
        warnings = [] if command is None else text.command_warnings(command)
        unsaved = [] if command is None else command.unsaved
        listed = (id(command), len(collected) + len(warnings) + len(unsaved))
        if listed == self._files_listed:
            return  # unchanged (files arrive once, when the command ends)
        self._files_listed = listed
        self.files.clear()
        for item in collected:
            row = QListWidgetItem(
                text.printable(f"{item.path.name}  ({text.size(item.bytes)})  {item.pattern}")
            )
            row.setToolTip(text.printable(str(item.path)))
            row.setData(Qt.ItemDataRole.UserRole, str(item.path))
            self.files.addItem(row)
        for problem in unsaved:  # a full disk: said in words, never only in the JSON
            row = QListWidgetItem(f"not saved: {text.printable(problem)}")
            row.setFlags(Qt.ItemFlag.ItemIsEnabled)
            row.setForeground(QColor(color(TestStatus.UNSAVED)))
            self.files.addItem(row)
        for warning in warnings:
            row = QListWidgetItem(f"warning: {text.printable(warning)}")
            row.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.files.addItem(row)
        shown = bool(collected or warnings or unsaved)
        self.files_label.setVisible(shown)
        self.files.setVisible(shown)
        if collected:
            self.files.setCurrentRow(0)
        else:
            self.file_path.set_path(None)
        if shown:
            rows = min(4, self.files.count())
            frame = 2 * self.files.frameWidth() + 2
            self.files.setFixedHeight(rows * self.files.sizeHintForRow(0) + frame)

    def _open_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path:
            open_file(path, self)

    def _file_chosen(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        path = None if item is None else item.data(Qt.ItemDataRole.UserRole)
        self.file_path.set_path(path or None)

    def _fold_toggled(self, on: bool) -> None:
        self.stack.setCurrentIndex(self.FOLDED if on else self.STREAMS)
        self._update_header()
        self._update_folded()

    def _update_folded(self) -> None:
        if not self.fold_check.isChecked():
            return
        lines = folded_lines(self.test) if self.test is not None else ["No test selected."]
        shown = text.printable("\n".join(lines))
        if shown != self.folded.toPlainText():
            self.folded.setPlainText(shown)

    def refresh(self) -> None:
        self._update_header()  # the command may have ended since
        self.stdout.refresh()
        self.stderr.refresh()
        self._show_files()
        self._update_folded()


class TestDetail(QWidget):
    """One test: a row per host/command (sortable, filterable), the selected command's
    output, and the timeline; a click on a timeline row selects it in the table."""

    __test__ = False
    OUTPUT_TAB, TIMELINE_TAB, OVERVIEW_TAB = range(3)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = CommandsModel(self)
        self.table = make_table(self.model)
        self.proxy = proxy_of(self.table)
        self.columns = FitColumns(self.table, COMMAND_FIT, METRIC_FIT)
        self.filter = FilterBar(self.table, "by host or command")
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)

        self.output = OutputPane()
        self.timeline = TimelineWidget()
        self.timeline.row_clicked.connect(self.select_row)
        self.timeline.row_activated.connect(self._show_output_of)
        for signal in (
            self.proxy.layoutChanged,
            self.proxy.modelReset,
            self.proxy.rowsInserted,
            self.proxy.rowsRemoved,
        ):
            signal.connect(self._follow_order)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.output, "&Output")
        self.tabs.addTab(self.timeline, "T&imeline")
        self.overview = OverviewWidget()  # every host on one screen; a click selects it
        self.overview.host_clicked.connect(self.select_host)
        # Scrolled where the window is smaller than its minimum (its grid stays whole):
        # the overview does not set the window's own minimum size.
        overview_area = QScrollArea()
        overview_area.setWidgetResizable(True)
        overview_area.setFrameShape(QScrollArea.Shape.NoFrame)
        overview_area.setWidget(self.overview)
        self.tabs.addTab(overview_area, "Over&view")
        self.tabs.currentChanged.connect(lambda _index: self.timeline.refresh())

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        never_widen(self.summary)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.setSpacing(2)
        top_layout.addWidget(self.filter)
        top_layout.addWidget(self.table, 1)
        top.setMinimumHeight(100)
        self.tabs.setMinimumHeight(140)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.tabs)
        self.splitter.setChildrenCollapsible(False)
        # The output, timeline and overview below get the larger share (the timeline
        # showed one row at 1280x800 on the Results page).
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([240, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.splitter, 1)
        self.test: TestResult | None = None
        self._update_summary()

    def set_test(self, test: TestResult | None) -> None:
        if test is self.test:
            self.refresh()
            return
        self.test = test
        self.model.set_test(test)
        self.output.set_test(test)
        self.timeline.set_test(test)
        self.overview.set_test(test)
        self._follow_order()
        self._update_summary()
        shown = shown_rows(self.table)
        if test is not None and shown:
            self.select_row(shown[0])
        else:
            self.output.show_command(None, None)

    def select_row(self, row: int) -> bool:
        """Select model row `row` (a host/command) in the table, the output and the timeline."""
        return select_row(self.table, row)

    def select_host(self, host_index: int) -> bool:
        """Select the first command of the test's host `host_index` (shown even when the
        filter hid it)."""
        if self.test is None or not 0 <= host_index < len(self.test.hosts):
            return False
        host = self.test.hosts[host_index]
        if not host.commands:
            return False
        row = self.model.row_of(host, 0)
        if row not in shown_rows(self.table):
            self.filter.clear()
        return self.select_row(row)

    @property
    def selected_row(self) -> int | None:
        return current_row(self.table)

    def _show_output_of(self, row: int) -> None:
        self.select_row(row)
        self.tabs.setCurrentIndex(self.OUTPUT_TAB)

    def _follow_order(self, *_args: object) -> None:
        # Said as a callable: a sorted table re-sorts rows on many ticks, and the
        # timeline reads the order (1000 rows mapped) only when it next needs it.
        self.timeline.set_order(self._table_order)

    def _table_order(self) -> list[int] | None:
        active = self.proxy.filter.active or self.proxy.sortColumn() >= 0
        return shown_rows(self.table) if active else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        row = source_row(self.table, current)
        if row is not None and self.test is not None:
            host, index = self.model.item(row)
            self.output.show_command(host, host.commands[index])
        else:
            self.output.show_command(None, None)
        self.timeline.set_selected(row)
        self.overview.set_selected(None if row is None else self.model.keys[row][0])

    def _update_summary(self) -> None:
        test = self.test
        if test is None:
            self.summary.setText("<i>No test selected, or not run yet.</i>")
            return
        head = (
            f"<b>{escape(test.label)}</b> — "
            f'<b style="color:{status_color(test)}">{escape(text.status_text(test))}</b>'
        )
        if test.reason:
            head += f": {escape(text.printable(test.reason))}"
        parts = [head, *(escape(part) for part in text.summary_parts(test))]
        if test.status not in (TestStatus.PENDING, TestStatus.RUNNING) and test.hosts:
            parts.append(escape(text.window_line(test)))
        lines = [" · ".join(parts)]
        # Each host error once, after the hosts that had it (the core's fold).
        for hosts, error in said_once((h, h.error) for h in test.hosts if h.error):
            lines.append(
                f'<span style="color:{color(HostState.FAILED)}">'
                f"{escape(text.printable(nodesets.fold(h.target for h in hosts)))}: "
                f"{escape(text.printable(error))}</span>"
            )
        interrupted = [h for h in test.hosts if h.interruptions]
        if interrupted:
            folded = sum(h.interruptions_folded for h in interrupted)  # each resumed
            count = sum(len(h.interruptions) for h in interrupted) + folded
            resumed = sum(r.resumed for h in interrupted for r in h.interruptions) + folded
            lines.append(
                f'<span style="color:{color(CommandStatus.LOST)}">'
                f"{escape(text.count(count, 'interruption'))} ({resumed} resumed) on "
                f"{escape(nodesets.fold(h.target for h in interrupted))}: "
                "each host's Message says when and why</span>"
            )
        self.summary.setText("<br>".join(lines))

    def refresh(self) -> None:
        self.model.refresh()
        self.output.refresh()
        self._update_summary()
        self.timeline.refresh()  # cheap when hidden: Qt paints only what is shown
        self.overview.refresh()  # nothing while hidden


class RunView(QWidget):
    stop_requested = Signal()  # Esc on the page's tables, timeline or output (never an editor)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tests_model = TestsModel(self)
        self.tests = make_table(self.tests_model, wrap=True)
        # The detail's summary line has the rest (the Results list too).
        hide_columns(self.tests, ("Hosts", "Start spread", "Duration"))
        self.tests_columns = FitColumns(self.tests, TEST_FIT)
        self.tests.selectionModel().currentRowChanged.connect(self._test_changed)
        self.tests.setMinimumWidth(230)  # its columns' minimums, and the frame

        # The count is a label beside the bar: text drawn on the bar loses digits at its
        # fill edge.
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(160)
        self.progress_text = QLabel()
        self.status = QLabel("Open a config, then Run (F5).")
        self.status.setWordWrap(True)
        never_widen(self.status)
        top = QHBoxLayout()
        top.addWidget(self.progress)
        top.addWidget(self.progress_text)
        top.addWidget(self.status, 1)

        self.detail = TestDetail()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.tests)
        self.splitter.addWidget(self.detail)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setSizes([300, 980])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        # A command clicked while a test runs: the next test does not take it away.
        self.detail.table.pressed.connect(self._stay)
        # Esc stops only where it cannot be meant for editing: never in a text field.
        for widget in (
            self.tests,
            self.detail.table,
            self.detail.timeline,
            self.detail.output.stdout.view,
            self.detail.output.stderr.view,
        ):
            escape_key = QShortcut(QKeySequence(Qt.Key.Key_Escape), widget)
            escape_key.setContext(Qt.ShortcutContext.WidgetShortcut)
            escape_key.activated.connect(self.stop_requested)

        self.plan: Plan | None = None
        self.run: RunResult | None = None
        self.running = False
        self.following = True  # the test list follows the running test until one is chosen
        self._selecting = False  # the list's selection is being moved by the run
        self.current_label: str | None = None  # the test being run
        self._pending_plan: Plan | None = None
        self._plan_pending = False
        self._total_commands = 0
        self._chosen_count = 0
        self._set_progress(0, 0)

    def _set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, max(1, total)))
        self.progress_text.setText(text.fraction(done, total, "command") if total else "")

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
        row = current_row(self.tests)
        if row is None or row >= len(self.tests_model.labels):
            return None
        return self.tests_model.labels[row]

    def select_label(self, label: str) -> None:
        if label in self.tests_model.labels:
            self._selecting = True
            try:
                select_row(self.tests, self.tests_model.row_of(label))
            finally:
                self._selecting = False

    def _stay(self, *_args: object) -> None:
        self.following = False

    def _test_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        row = source_row(self.tests, current)
        if row is None:
            self.detail.set_test(None)
            return
        label = self.tests_model.labels[row]
        if self.running and not self._selecting:
            self.following = False  # a test chosen: the run no longer moves the list
        self.detail.set_test(self.tests_model.results.get(label))

    # ---- a run
    def begin_run(self, plan: Plan, labels: Sequence[str] | None, run: RunResult) -> None:
        self.running = True
        self.following = True
        self.plan = plan
        self.run = run
        self.current_label = None
        self.tests_model.set_plan(plan)
        self.tests_model.clear_results()
        chosen = [t for t in plan.tests if labels is None or t.label in labels]
        self._total_commands = sum(len(t.commands) for t in chosen)
        self._chosen_count = len(chosen)
        self._set_progress(0, self._total_commands)
        self.status.setText("Starting…")
        if chosen:
            self.select_label(chosen[0].label)

    def on_test_started(self, test: TestResult) -> None:
        self.current_label = test.label
        self.tests_model.set_result(test)
        if self.following:
            self.select_label(test.label)
        if self.selected_label == test.label:
            self.detail.set_test(test)
        self.refresh()

    def refresh(self) -> None:
        self.tests_model.refresh()
        self.detail.refresh()
        if self.run is not None:
            done = sum(text.progress(t)[0] for t in self.run.tests)
            self._set_progress(done, self._total_commands)
            if self.running and self.current_label is not None:
                test = self.tests_model.results.get(self.current_label)
                index = len(self.run.tests)
                if test is not None:
                    hosts = hosts_tally(test.hosts)
                    self.status.setText(
                        f"Running test <b>{escape(test.label)}</b> "
                        f"({index} of {self._chosen_count}): "
                        f"{text.commands_line(test)} · hosts: {hosts}"
                    )

    def end_run(self, run: RunResult, summary: str) -> None:
        self.running = False
        self.run = run
        # A test the run did not reach (--stop-on-failure, a stop) never started: shown
        # with why, as the report's NOT RUN line (a repetition not reached leaves the
        # one that ran in view).
        for test in run.tests:
            if test.label in self.tests_model.labels and test.label not in self.tests_model.results:
                self.tests_model.set_result(test)
        self._test_changed(self.tests.selectionModel().currentIndex(), None)
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
