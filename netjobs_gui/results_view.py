"""The Results page: every test run (or loaded) in this session, re-openable.

Save log writes what the CLI's `-l` and `--json` write (netjobs_core.logs);
Open results shows a saved JSON document again.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import logs
from netjobs_core.results import RunResult
from netjobs_core.results_json import write_json
from netjobs_gui.models import ResultsModel, SessionEntry
from netjobs_gui.run_view import TestDetail
from netjobs_gui.widgets import make_table, select_row


def default_json_path(run: RunResult, directory: str) -> str:
    """Where Save log proposes the JSON document: beside the config, named like its logs."""
    base = Path(run.config_path).name or "netjobs"
    started = next((t.started_at for t in run.tests if t.started_at is not None), None)
    stem = logs.log_path(base, "results", started or 0).stem if started else f"{base}_results"
    folder = os.path.dirname(run.config_path) if os.path.isabs(run.config_path) else directory
    return os.path.join(folder, f"{stem}.json")


def save_run_logs(run: RunResult, json_path: str | os.PathLike[str]) -> list[Path]:
    """The CLI's `-l` logs (one per test, beside the config) and its `--json` document.

    A run of an untitled or relative config puts its logs beside the JSON file.
    Raises OSError.
    """
    json_path = Path(json_path)
    config_path = run.config_path or "netjobs"
    if not os.path.isabs(config_path):
        config_path = os.fspath(json_path.parent / Path(config_path).name)
    written = [logs.write_test_log(config_path, test) for test in run.tests]
    write_json(run, json_path)
    written.append(json_path)
    return written


class ResultsView(QWidget):
    save_requested = Signal(object)  # SessionEntry
    open_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ResultsModel(self)
        self.table = make_table(self.model, (95, 100, 110, 70, 80, 130))
        # The detail's summary line shows the rest; the tooltips too.
        for name in ("Hosts", "Start spread", "Duration"):
            self.table.setColumnHidden(ResultsModel.COLUMNS.index(name), True)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)

        self.save_button = QPushButton("Save log…")
        self.save_button.setToolTip(
            "Write the run's per-test .log files (as netjobs -l) and its JSON document (as --json)"
        )
        self.save_button.clicked.connect(self._save_clicked)
        self.save_button.setEnabled(False)
        open_button = QPushButton("Open results…")
        open_button.setToolTip(
            "Show a JSON results file saved earlier (by this window or netjobs --json)"
        )
        open_button.clicked.connect(self.open_requested)
        self.note = QLabel("Tests run in this window appear here.")
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(open_button)
        buttons.addStretch(1)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.note)

        self.detail = TestDetail()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 880])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    @property
    def current_entry(self) -> SessionEntry | None:
        index = self.table.selectionModel().currentIndex()
        if not index.isValid():
            return None
        return self.model.entries[index.row()]

    def add_run(self, run: RunResult, source: str, select: bool = True) -> None:
        rows = self.model.add_run(run, source)
        if rows and select:
            self.select_row(rows[0])
        self.model.refresh()

    def select_row(self, row: int) -> None:
        select_row(self.table, row)

    def _current_changed(self, current, _previous) -> None:  # type: ignore[no-untyped-def]
        entry = self.model.entries[current.row()] if current.isValid() else None
        self.detail.set_test(entry.test if entry else None)
        self.save_button.setEnabled(entry is not None)
        if entry is not None:
            saved = f" Saved: {', '.join(Path(p).name for p in entry.saved)}" if entry.saved else ""
            self.note.setText(f"Config: {entry.run.config_path}.{saved}")

    def _save_clicked(self) -> None:
        entry = self.current_entry
        if entry is not None:
            self.save_requested.emit(entry)

    def mark_saved(self, run: RunResult, paths: list[Path]) -> None:
        for entry in self.model.entries:
            if entry.run is run:
                entry.saved = [os.fspath(p) for p in paths]
        current = self.table.selectionModel().currentIndex()
        self._current_changed(current, None)
