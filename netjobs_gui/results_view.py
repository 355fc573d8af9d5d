"""The Results page: past runs from the run history (history_view), and every test
run (or loaded) in this session, re-openable.

Save log writes what the CLI's `-l` and `--json` write (session.save_results)
into the folder the user chose; Open results shows a saved JSON document again
(once: opening it a second time selects it).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import logs
from netjobs_core.records import RunRecord
from netjobs_core.results import RunResult
from netjobs_core.results_json import ResultsFileError, load_json
from netjobs_gui.columns import RESULT_FIT, SessionEntry
from netjobs_gui.history_view import HistoryPanel
from netjobs_gui.models import ResultsModel
from netjobs_gui.run_view import TestDetail
from netjobs_gui.table_export import export_run_dialog
from netjobs_gui.widgets import (
    FitColumns,
    current_row,
    make_table,
    never_widen,
    select_row,
    source_row,
)

HISTORY_CACHE = 4  # past runs' documents kept in memory while browsing the history


def default_json_path(run: RunResult, directory: str) -> str:
    """Where Save log proposes the JSON document (the logs go beside it): beside the
    config, named like its logs."""
    base = Path(run.config_path).name or "netjobs"
    started = next((t.started_at for t in run.tests if t.started_at is not None), None)
    stem = logs.log_path(base, "results", started or 0).stem if started else f"{base}_results"
    folder = os.path.dirname(run.config_path) if os.path.isabs(run.config_path) else directory
    return os.path.join(folder, f"{stem}.json")


class ResultsView(QWidget):
    save_requested = Signal(object)  # SessionEntry
    open_requested = Signal()

    HISTORY_TAB, SESSION_TAB = range(2)

    def __init__(self, parent: QWidget | None = None, history_path: str | None = None) -> None:
        super().__init__(parent)
        self.history = HistoryPanel(history_path)
        self.model = ResultsModel(self)
        self.table = make_table(self.model, wrap=True)
        self.columns = FitColumns(self.table, RESULT_FIT)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.table.setMinimumHeight(70)

        self.save_button = QPushButton("&Save log…")
        self.save_button.setToolTip(
            "Write the run's per-test .log files (as netjobs -l) and its JSON document "
            "(as --json) into a folder you choose"
        )
        self.save_button.clicked.connect(self._save_clicked)
        self.save_button.setEnabled(False)
        self.export_button = QPushButton("E&xport run as CSV…")
        self.export_button.setToolTip(
            "Write the selected test's run as CSV, a row per command and a column per "
            "metric: what netjobs show RUN --csv prints"
        )
        self.export_button.clicked.connect(self.export_run)
        self.export_button.setEnabled(False)
        open_button = QPushButton("Open res&ults…")
        open_button.setToolTip(
            "Show a JSON results file saved earlier (by this window or netjobs --json)"
        )
        open_button.clicked.connect(self.open_requested)
        self.remove_button = QPushButton("Re&move")
        self.remove_button.setToolTip("Take the selected test off this list (no file is deleted)")
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_button = QPushButton("C&lear list")
        self.clear_button.setToolTip("Empty this list (no file is deleted)")
        self.clear_button.clicked.connect(self.clear)
        self.note = QLabel("Tests run in this window appear here.")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        never_widen(self.note)
        buttons = QHBoxLayout()
        for button in (
            self.save_button,
            self.export_button,
            open_button,
            self.remove_button,
            self.clear_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch(1)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.note)

        self.sources = QTabWidget()
        self.sources.addTab(self.history, "Histor&y")
        self.sources.addTab(left, "This sessio&n")
        self.sources.setCurrentIndex(self.SESSION_TAB)
        self.sources.currentChanged.connect(self._source_changed)
        self.history.test_chosen.connect(self._history_test)
        self._loaded: dict[str, RunResult] = {}  # results.json read for the history, by path

        # The lists above the test: both get the window's whole width, so every column of
        # each is in sight at 1024 pixels.
        self.detail = TestDetail()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.sources)
        self.splitter.addWidget(self.detail)
        self.splitter.setChildrenCollapsible(False)
        # The history's table and its two plots readable at 1024x700 (a third of the page)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([290, 470])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self._update_buttons()

    @property
    def current_entry(self) -> SessionEntry | None:
        row = current_row(self.table)
        return None if row is None else self.model.entries[row]

    def add_run(self, run: RunResult, source: str, select: bool = True, origin: str = "") -> bool:
        """List the run's tests; False if every one was listed already (then the first
        of them is selected when `select`)."""
        rows = self.model.add_run(run, source, origin)
        if select:
            shown = rows or self.model.rows_of(run, origin)
            if shown:
                self.select_row(shown[0])
        self.model.refresh()
        self._update_buttons()
        return bool(rows)

    def select_row(self, row: int) -> None:
        select_row(self.table, row)

    def remove_selected(self) -> None:
        row = current_row(self.table)
        if row is not None:
            self.model.remove_rows([row])
            self._current_changed(self.table.selectionModel().currentIndex(), None)
        self._update_buttons()

    def clear(self) -> None:
        self.model.clear()
        self._current_changed(QModelIndex(), None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        has_rows = bool(self.model.entries)
        self.remove_button.setEnabled(has_rows)
        self.clear_button.setEnabled(has_rows)

    def _source_changed(self, index: int) -> None:
        if index == self.SESSION_TAB:
            self._current_changed(self.table.selectionModel().currentIndex(), None)
        else:
            self.history.reload()  # runs of netjobs in a terminal meanwhile too; announces

    def _history_test(self, record: RunRecord | None, label: str) -> None:
        """The past run's test, read from its results.json, in the detail below."""
        if self.sources.currentIndex() != self.HISTORY_TAB:
            return
        test = None
        if record is not None and record.results_kept:
            path = os.fspath(record.json_path)
            run = self._loaded.get(path)
            if run is None:
                try:
                    run = load_json(path)
                except ResultsFileError as exc:
                    self.history.note.setText(f"Cannot show this run: {exc}")
                else:
                    if len(self._loaded) >= HISTORY_CACHE:
                        self._loaded.pop(next(iter(self._loaded)))
                    self._loaded[path] = run
            if run is not None:
                # The last repetition of a repeated test: the plot has every one.
                test = next((t for t in reversed(run.tests) if t.label == label), None)
        self.detail.set_test(test)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        row = source_row(self.table, current)
        entry = None if row is None else self.model.entries[row]
        self.detail.set_test(entry.test if entry else None)
        self.save_button.setEnabled(entry is not None)
        self.export_button.setEnabled(entry is not None)
        if entry is None:
            self.note.setText("Tests run in this window appear here.")
            return
        note = f"Config: {entry.run.config_path}."
        if entry.saved:
            folder = os.path.dirname(entry.saved[-1])
            names = ", ".join(Path(p).name for p in entry.saved)
            note += f" Saved in {folder}: {names}"
        self.note.setText(note)

    def export_run(self) -> None:
        """The selected test's run as `netjobs show RUN --csv` prints it, where asked."""
        entry = self.current_entry
        if entry is not None:
            export_run_dialog(self, entry.run, os.path.dirname(entry.run.config_path))

    def _save_clicked(self) -> None:
        entry = self.current_entry
        if entry is not None:
            self.save_requested.emit(entry)

    def mark_saved(self, run: RunResult, paths: list[Path]) -> None:
        for entry in self.model.entries:
            if entry.run is run:
                entry.saved = [os.fspath(p) for p in paths]
        self._current_changed(self.table.selectionModel().currentIndex(), None)
