"""Any table of the window as text: its shown rows (filtered, in the order shown) and
shown columns, copied to the clipboard (tab-separated, with the header: pastes as
cells into a spreadsheet) or exported as a CSV file. Every table gets the context
menu and Ctrl+C from `make_table` (widgets.py).

A whole run is exported as the very document `netjobs show RUN --csv` prints (a row
per command, a column per metric: results_csv), whatever the tables show
(`export_run_dialog`: the Results page's Export run as CSV…)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QMessageBox, QTableView, QWidget

from netjobs_core.atomic import write_atomic
from netjobs_core.results import RunResult
from netjobs_core.results_csv import write_csv

CSV_FILTER = "CSV files (*.csv);;All files (*)"


def table_cells(table: QTableView, only_selected: bool = False) -> list[list[str]]:
    """The header and the shown rows of `table` (`only_selected`: the selected ones),
    shown columns only, as the cells read."""
    model = table.model()
    columns = [c for c in range(model.columnCount()) if not table.isColumnHidden(c)]
    header = [str(model.headerData(c, Qt.Orientation.Horizontal) or "") for c in columns]
    rows = range(model.rowCount())
    if only_selected:
        selected = {index.row() for index in table.selectionModel().selectedRows()}
        rows = [r for r in rows if r in selected]  # type: ignore[assignment]
    cells = [[str(model.data(model.index(r, c)) or "") for c in columns] for r in rows]
    return [header, *cells]


def as_csv(cells: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(cells)  # RFC 4180
    return out.getvalue()


def as_tabs(cells: Sequence[Sequence[str]]) -> str:
    """Tab-separated lines: what spreadsheets paste into cells (tabs and line ends in a
    cell become spaces)."""
    clean = [[" ".join(cell.split()) for cell in row] for row in cells]
    return "".join("\t".join(row) + "\n" for row in clean)


def copy_rows(table: QTableView, only_selected: bool = True) -> int:
    """Copy the selected (or every shown) row with the header; how many rows."""
    cells = table_cells(table, only_selected)
    QApplication.clipboard().setText(as_tabs(cells))
    return len(cells) - 1


def export_csv(table: QTableView, path: str | os.PathLike[str]) -> int:
    """Write the shown rows as CSV (UTF-8, written whole); how many rows. OSError."""
    cells = table_cells(table)
    write_atomic(path, as_csv(cells).encode("utf-8"))
    return len(cells) - 1


def _export_dialog(table: QTableView) -> None:
    path, _ = QFileDialog.getSaveFileName(table, "Export as CSV", "", CSV_FILTER)
    if not path:
        return
    try:
        rows = export_csv(table, path)
    except OSError as exc:
        _cannot_export(table, path, exc)
        return
    _tell(table, f"Exported {rows} rows to {path}")


def export_run_dialog(parent: QWidget, run: RunResult, directory: str = "") -> str | None:
    """Ask where, then write `run` as `netjobs show RUN --csv` prints it (results_csv:
    the same function); the path written, None when cancelled or not written."""
    proposed = os.path.join(directory, f"{run.run_id or 'netjobs'}.csv")
    path, _ = QFileDialog.getSaveFileName(parent, "Export run as CSV", proposed, CSV_FILTER)
    if not path:
        return None
    try:
        write_csv(run, path)
    except OSError as exc:
        _cannot_export(parent, path, exc)
        return None
    rows = sum(len(host.commands) for test in run.tests for host in test.hosts)
    _tell(parent, f"Exported run {run.run_id} ({rows} commands) to {path}")
    return path


def _cannot_export(parent: QWidget, path: str, exc: OSError) -> None:
    QMessageBox.warning(parent, "Cannot export", f"{exc.filename or path}: {exc.strerror or exc}")


def _tell(widget: QWidget, message: str) -> None:
    bar = getattr(widget.window(), "statusBar", None)
    if callable(bar):
        bar().showMessage(message, 15_000)


def install(table: QTableView) -> None:
    """Ctrl+C copies the selected rows; the context menu copies them, every shown row,
    or exports the shown rows as CSV."""
    copy = QAction("&Copy Selected Rows", table)
    copy.setShortcut(QKeySequence.StandardKey.Copy)
    copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    copy.triggered.connect(lambda _c=False: copy_rows(table))
    table.addAction(copy)
    copy_all = QAction("Copy &All Shown Rows", table)
    copy_all.triggered.connect(lambda _c=False: copy_rows(table, only_selected=False))
    export = QAction("&Export as CSV…", table)
    export.triggered.connect(lambda _c=False: _export_dialog(table))

    def menu(at: QPoint) -> None:
        popup = QMenu(table)
        popup.addActions([copy, copy_all, export])
        popup.exec(table.viewport().mapToGlobal(at))

    table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    table.customContextMenuRequested.connect(menu)
