"""Small shared widget helpers: sortable, filterable tables; labels that never widen;
the set-up of a painted view."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    QUrl,
)
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QGuiApplication,
    QKeySequence,
    QPainter,
    QPalette,
    QResizeEvent,
    QShortcut,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolButton,
    QWidget,
)

from netjobs_core import text
from netjobs_gui import prompts, table_export
from netjobs_gui.columns import Fit, fit_widths
from netjobs_gui.models import ColumnsModel, TableProxy

# The one way a file leaves the window for another program (tests replace it).
open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl


def open_file(path: str | os.PathLike[str], parent: QWidget | None = None) -> bool:
    """Open `path` with the desktop's program for it (a text viewer, a JSON viewer...);
    when there is none (no xdg-open), say so, with the path."""
    if open_url(QUrl.fromLocalFile(os.fspath(path))):
        return True
    prompts.show_error(
        parent,
        "Cannot open the file",
        f"No program of this desktop opened {os.fspath(path)} (is xdg-open installed?). "
        "The file is there: its path is shown selectable, with Copy path.",
    )
    return False


def show_in_folder(path: str | os.PathLike[str], parent: QWidget | None = None) -> bool:
    """Open the folder holding `path` in the desktop's file manager."""
    return open_file(os.path.dirname(os.fspath(path)) or ".", parent)


class PathBar(QWidget):
    """Where a file is: its path (selectable), Copy path and Show in folder; hidden
    while there is no file."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.path = ""
        self.label = QLabel()
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        never_widen(self.label)
        copy = QToolButton()
        copy.setText("Copy path")
        copy.setToolTip("Put the path on the clipboard")
        copy.clicked.connect(self.copy)
        folder = QToolButton()
        folder.setText("Show in folder")
        folder.setToolTip("Open the folder holding the file in the desktop's file manager")
        folder.clicked.connect(lambda: show_in_folder(self.path, self))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(copy)
        layout.addWidget(folder)
        self.hide()

    def set_path(self, path: str | os.PathLike[str] | None) -> None:
        self.path = "" if path is None else os.fspath(path)
        self.label.setToolTip(self.path)
        self._show_path()
        self.setVisible(bool(self.path))

    def shown(self) -> str:
        """The whole line: `All of stdout: /path/to/file` (the label may show it cut)."""
        return f"{self.what}: {text.printable(self.path)}" if self.path else ""

    def _show_path(self) -> None:
        """The line cut in its middle to the label's width, with an ellipsis: the host
        and file at the path's end stay in sight (the whole path in the tooltip)."""
        width = self.label.width() if self.label.isVisible() else self.width()
        metrics = self.label.fontMetrics()
        self.label.setText(
            metrics.elidedText(self.shown(), Qt.TextElideMode.ElideMiddle, max(100, width))
        )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._show_path()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.path)


@dataclass(frozen=True)
class Inks:
    """What a painted view draws with: its palette's text colour, and fainter ones."""

    text: QColor
    muted: QColor  # labels, ticks
    grid: QColor  # grid lines


def begin_painting(widget: QWidget, surface: QWidget | None = None) -> tuple[QPainter, Inks]:
    """An antialiased painter on `surface` (a scroll area's viewport; else the widget),
    filled with the widget's base colour, and the inks of the widget's palette."""
    surface = widget if surface is None else surface
    painter = QPainter(surface)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    palette = widget.palette()
    painter.fillRect(surface.rect(), palette.color(QPalette.ColorRole.Base))
    ink = palette.color(QPalette.ColorRole.Text)
    muted, grid = QColor(ink), QColor(ink)
    muted.setAlpha(140)
    grid.setAlpha(35)
    return painter, Inks(ink, muted, grid)


class ProseDelegate(QStyledItemDelegate):
    """Cuts the cells of a model's `prose` columns (messages, errors) at their end: cut
    in the middle, "quorum lost b…1.032 ms late" lost its meaning. Other cells keep the
    table's mode (the middle: a host's or a path's tail tells it apart)."""

    def __init__(self, model: ColumnsModel, parent: QObject) -> None:
        super().__init__(parent)
        self.model = model

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        spec = self.model.SPEC
        if 0 <= index.column() < len(spec) and spec[index.column()].prose:
            option.textElideMode = Qt.TextElideMode.ElideRight


class CurrentInSight(QObject):
    """Scrolls a table back to its current row when the table shrinks under it: a
    splitter or window moved left the selected row half cut at the bottom."""

    def __init__(self, table: QTableView) -> None:
        super().__init__(table)
        self.table = table
        self._pending = False
        table.viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and not self._pending:
            # Once the view has set its scroll bars' ranges for the new size.
            self._pending = True
            QTimer.singleShot(0, self, self._scroll)  # never after the table is gone
        return False

    def _scroll(self) -> None:
        self._pending = False
        current = self.table.selectionModel().currentIndex()
        if current.isValid():
            self.table.scrollTo(current, QAbstractItemView.ScrollHint.EnsureVisible)


def make_table(model: ColumnsModel, single: bool = True, wrap: bool = False) -> QTableView:
    """A compact, row-selecting table over `model`, sortable by any column (click a
    header; a third click restores the model's order). `table.model()` is its proxy.
    `wrap`: a cell too narrow for its text wraps it onto more lines, never cuts it
    (for short lists whose statuses carry the bad news)."""
    table = QTableView()
    proxy = TableProxy(model)
    table.setModel(proxy)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(
        QAbstractItemView.SelectionMode.SingleSelection
        if single
        else QAbstractItemView.SelectionMode.ExtendedSelection
    )
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    if any(column.prose for column in model.SPEC):
        table.setItemDelegate(ProseDelegate(model, table))
    table.setTabKeyNavigation(False)  # Tab leaves the table; arrows walk it
    CurrentInSight(table)
    rows = table.verticalHeader()
    rows.hide()
    rows.setDefaultSectionSize(table.fontMetrics().height() + 8)
    if wrap:
        table.setWordWrap(True)
        table.setTextElideMode(Qt.TextElideMode.ElideNone)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    else:
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    header.setHighlightSections(False)
    header.setSortIndicatorClearable(True)
    header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    table.setSortingEnabled(True)
    table_export.install(table)  # Ctrl+C, copy every shown row, export as CSV
    return table


class FitColumns(QObject):
    """Keeps a table's visible columns filling its width (`columns.fit_widths`), so the
    last columns stay in sight on a small window and a large one widens the text ones."""

    def __init__(self, table: QTableView, fits: Sequence[Fit], extra: Fit | None = None) -> None:
        super().__init__(table)
        self.table = table
        self.fits = list(fits)
        # Columns past `fits` that a model adds (a test's metrics): each fitted as
        # `extra`, not left at Qt's default width past the right edge.
        self.extra = extra
        table.horizontalHeader().setStretchLastSection(False)
        table.viewport().installEventFilter(self)
        if extra is not None:
            table.model().modelReset.connect(self.apply)
        self.apply()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.apply()
        return False

    def apply(self) -> None:
        fits = list(self.fits)
        if self.extra is not None:
            fits += [self.extra] * (self.table.model().columnCount() - len(fits))
        shown = [c for c in range(len(fits)) if not self.table.isColumnHidden(c)]
        widths = fit_widths(self.table.viewport().width(), [fits[c] for c in shown])
        for column, width in zip(shown, widths, strict=True):
            self.table.setColumnWidth(column, width)


def hide_columns(table: QTableView, names: Sequence[str]) -> None:
    """Hide the named columns. Each is sized 0 first: a column hidden with its size still
    pending keeps counting 100 px in the header's positions (seen with Qt 6.11)."""
    model = proxy_of(table).source
    for name in names:
        column = model.COLUMNS.index(name)
        table.horizontalHeader().resizeSection(column, 0)
        table.setColumnHidden(column, True)


def proxy_of(table: QTableView) -> TableProxy:
    proxy = table.model()
    assert isinstance(proxy, TableProxy)
    return proxy


def source_row(table: QTableView, index: QModelIndex) -> int | None:
    """The model row behind a (proxy) index of `table`, None if invalid."""
    if not index.isValid():
        return None
    return proxy_of(table).mapToSource(index).row()


def current_row(table: QTableView) -> int | None:
    """The model row of the table's current row."""
    return source_row(table, table.selectionModel().currentIndex())


def select_row(table: QTableView, row: int) -> bool:
    """Make model `row` the table's current, wholly selected row; False if filtered out."""
    proxy = proxy_of(table)
    index = proxy.mapFromSource(proxy.source.index(row, 0))
    if not index.isValid():
        return False
    table.selectionModel().setCurrentIndex(
        index,
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    table.scrollTo(index)
    return True


def shown_rows(table: QTableView) -> list[int]:
    """The model rows the table shows, in its order."""
    return proxy_of(table).source_rows()


class FilterBar(QWidget):
    """ "Problems only" and a text filter over one table (or several sharing a proxy)."""

    def __init__(self, table: QTableView, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.proxy = proxy_of(table)
        self.problems = QCheckBox("&Problems only")
        self.problems.setToolTip("Show only what failed, timed out, was killed, lost or errored")
        self.text = QLineEdit()
        self.text.setPlaceholderText(f"Filter {what}…")
        self.text.setClearButtonEnabled(True)
        self.text.setMinimumWidth(120)
        self.count = QLabel()
        never_widen(self.count)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.problems)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.count, 1)
        self.problems.toggled.connect(lambda on: self.proxy.set_filter(problems_only=on))
        self.text.textChanged.connect(lambda value: self.proxy.set_filter(text=value))
        for signal in (
            self.proxy.rowsInserted,
            self.proxy.rowsRemoved,
            self.proxy.modelReset,
            self.proxy.layoutChanged,
        ):
            signal.connect(self._update_count)
        self.problems.toggled.connect(self._update_count)
        self.text.textChanged.connect(self._update_count)
        self._update_count()

    def _update_count(self, *_args: object) -> None:
        shown, total = self.proxy.rowCount(), self.proxy.source.rowCount()
        self.count.setText(text.shown_of(shown, total) if self.proxy.filter.active else "")

    def clear(self) -> None:
        self.problems.setChecked(False)
        self.text.clear()


def never_widen(label: QLabel) -> None:
    """A long text wraps or is cut; it never widens the window or pushes splitters."""
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(50)


class FindBar(QWidget):
    """Ctrl+F: find text in a plain-text view (the config editor, an output stream).
    Enter finds the next match, Shift+Enter the previous; Esc closes the bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.target: QPlainTextEdit | None = None
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Find…")
        self.edit.setClearButtonEnabled(True)
        self.edit.returnPressed.connect(self.find_next)
        self.edit.textChanged.connect(lambda _text: self.search(backward=False, from_start=True))
        previous = QPushButton("Previous")
        previous.clicked.connect(lambda: self.search(backward=True))
        following = QPushButton("Next")
        following.clicked.connect(self.find_next)
        close = QPushButton("Close")
        close.clicked.connect(self.close_bar)
        self.result = QLabel()
        never_widen(self.result)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.addWidget(QLabel("Find:"))
        layout.addWidget(self.edit, 2)
        layout.addWidget(previous)
        layout.addWidget(following)
        layout.addWidget(close)
        layout.addWidget(self.result, 1)
        back = QShortcut(QKeySequence("Shift+Return"), self.edit)
        back.setContext(Qt.ShortcutContext.WidgetShortcut)
        back.activated.connect(lambda: self.search(backward=True))
        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        escape.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.close_bar)
        self.hide()

    def open_on(self, target: QPlainTextEdit) -> None:
        self.target = target
        selected = target.textCursor().selectedText()
        if selected and "\u2029" not in selected:
            self.edit.setText(selected)
        self.show()
        self.edit.setFocus()
        self.edit.selectAll()

    def close_bar(self) -> None:
        self.hide()
        if self.target is not None:
            self.target.setFocus()

    def find_next(self) -> None:
        self.search(backward=False)

    def search(self, backward: bool = False, from_start: bool = False) -> bool:
        """Select the next (or previous) match, wrapping around; say when there is none."""
        target, needle = self.target, self.edit.text()
        if target is None or not needle:
            self.result.clear()
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        if from_start:
            cursor = target.textCursor()
            cursor.setPosition(cursor.selectionStart())
            target.setTextCursor(cursor)
        found = target.find(needle, flags)
        if not found:  # wrap around
            cursor = target.textCursor()
            cursor.movePosition(
                QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start
            )
            target.setTextCursor(cursor)
            found = target.find(needle, flags)
        self.result.setText("" if found else "not found")
        return found
