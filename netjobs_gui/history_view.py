"""Past runs across sessions, read from the run history (netjobs_core.history).

Every run of the CLI or of this window is recorded there when it ends. The
table lists them newest first (a run whose results folder was deleted says
so); the selected run's test is shown below it (from its results.json), and
Show run adds the run to this session's list; the plots beside it
compare the start spread of one of its tests, and a metric of it chosen among those
the history kept (its sum over hosts), over every recorded run of that test of the
same config (and over the repetitions of --repeat).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import text
from netjobs_core.history import History, HistoryError
from netjobs_core.records import RunRecord
from netjobs_core.results_json import ResultsFileError, load_json
from netjobs_gui.columns import HISTORY_FIT, metric_names, metric_series, spread_series
from netjobs_gui.models import HistoryModel
from netjobs_gui.run_notes import RunNote
from netjobs_gui.spread_plot import MetricPlot, SpreadPlot
from netjobs_gui.table_export import export_run_dialog
from netjobs_gui.widgets import (
    FilterBar,
    FitColumns,
    current_row,
    make_table,
    never_widen,
    select_row,
    source_row,
)

HISTORY_LIMIT = 500  # runs read at once; the oldest beyond it stay in the database


class HistoryPanel(QWidget):
    open_requested = Signal(str)  # a results.json to add to this session's list
    test_chosen = Signal(object, str)  # (RunRecord or None, test label): show it below

    def __init__(self, path: str | os.PathLike[str] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.path = Path(path) if path is not None else None  # None: the user's history
        self.model = HistoryModel(self)
        self.table = make_table(self.model, wrap=True)
        self.columns = FitColumns(self.table, HISTORY_FIT)
        self.filter = FilterBar(self.table, "by test, config or run id")
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.table.doubleClicked.connect(lambda _index: self.show_run())
        self.table.activated.connect(lambda _index: self.show_run())
        self.table.setMinimumHeight(40)

        self.show_button = QPushButton("Sho&w run")
        self.show_button.setToolTip("Open the selected run's results in the list below")
        self.show_button.clicked.connect(self.show_run)
        self.export_button = QPushButton("E&xport run as CSV…")
        self.export_button.setToolTip(
            "Write the selected run as CSV, a row per command and a column per metric: "
            "what netjobs show RUN --csv prints"
        )
        self.export_button.clicked.connect(self.export_run)
        reload_button = QPushButton("Reloa&d")
        reload_button.setToolTip("Read the run history again (runs of netjobs in a terminal too)")
        reload_button.clicked.connect(self.reload)
        self.note = QLabel()
        self.note.setWordWrap(True)
        never_widen(self.note)
        # The filter above the table, the actions under it: the page fits a small
        # window (one row of both was wider than the rest of the window needs).
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(reload_button)
        buttons.addStretch(1)

        self.test_choice = QComboBox()
        self.test_choice.setToolTip("The test of the selected run whose spread is plotted")
        self.test_choice.currentTextChanged.connect(lambda _label: self._update_plot())
        self.plot = SpreadPlot()
        self.metric_choice = QComboBox()
        self.metric_choice.setToolTip(
            "The metric plotted below: its sum over hosts in each run of the test "
            "(the metrics the run history kept of it)"
        )
        self.metric_choice.currentTextChanged.connect(lambda _name: self._update_metric_plot())
        self.metric_plot = MetricPlot()
        plot_side = QWidget()
        plot_layout = QVBoxLayout(plot_side)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addWidget(self.test_choice)
        plot_layout.addWidget(self.plot, 1)
        plot_layout.addWidget(self.metric_choice)
        plot_layout.addWidget(self.metric_plot, 1)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter)
        left_layout.addWidget(self.table, 1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.note)
        self.run_note = RunNote(self.path)  # a person's note on the selected run
        self.run_note.saved.connect(lambda _run_id: self.reload())
        self.run_note.error.connect(lambda title, why: self.note.setText(f"{title}: {why}"))
        left_layout.addWidget(self.run_note)
        splitter = QSplitter()
        splitter.addWidget(left)
        # Scrolled in a small window: the two plots keep readable heights without
        # setting the window's minimum size.
        plot_area = QScrollArea()
        plot_area.setWidgetResizable(True)
        plot_area.setFrameShape(QScrollArea.Shape.NoFrame)
        plot_area.setWidget(plot_side)
        splitter.addWidget(plot_area)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)  # the plot readable: dated, its ticks apart
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.reload()

    @property
    def current_record(self) -> RunRecord | None:
        row = current_row(self.table)
        return None if row is None else self.model.records[row]

    def reload(self) -> None:
        """Read the newest runs again, keeping the selected one selected."""
        selected = self.current_record
        try:
            with History(self.path) as history:
                records = history.recent(HISTORY_LIMIT)
        except HistoryError as exc:
            records = []
            self.note.setText(f"The run history cannot be read: {exc}")
        else:
            self.note.setText(
                f"{text.count(len(records), 'past run')} (newest first)."
                if records
                else "No run recorded yet."
            )
        self.model.set_records(records)
        ids = [record.run_id for record in records]
        if records:
            at = ids.index(selected.run_id) if selected and selected.run_id in ids else 0
            select_row(self.table, at)
        else:
            self._current_changed(QModelIndex(), None)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex | None) -> None:
        row = source_row(self.table, current)
        record = None if row is None else self.model.records[row]
        self.show_button.setEnabled(record is not None and record.results_kept)
        self.export_button.setEnabled(record is not None and record.results_kept)
        self.run_note.set_record(record)
        if record is not None and not record.results_kept:
            self.show_button.setToolTip(f"Its results folder was deleted: {record.results_dir}")
        else:
            self.show_button.setToolTip("Open the selected run's results in the list below")
        labels = [] if record is None else list(dict.fromkeys(t.label for t in record.tests))
        self.test_choice.blockSignals(True)
        self.test_choice.clear()
        self.test_choice.addItems(labels)
        self.test_choice.blockSignals(False)
        self._update_plot()

    def _update_plot(self) -> None:
        record = self.current_record
        label = self.test_choice.currentText()
        self.announce()
        if record is None or not label:
            self.plot.set_series("", [])
        else:
            series = spread_series(self.model.records, record.config_path, label)
            self.plot.set_series(label, series)
        names = (
            [] if record is None else metric_names(self.model.records, record.config_path, label)
        )
        chosen = self.metric_choice.currentText()
        self.metric_choice.blockSignals(True)
        self.metric_choice.clear()
        self.metric_choice.addItems(names)
        if chosen in names:  # the same metric of another run or test, when it has it
            self.metric_choice.setCurrentIndex(names.index(chosen))
        self.metric_choice.setEnabled(bool(names))
        self.metric_choice.blockSignals(False)
        self._update_metric_plot()

    def _update_metric_plot(self) -> None:
        record = self.current_record
        label = self.test_choice.currentText()
        name = self.metric_choice.currentText()
        if record is None or not label:
            self.metric_plot.set_series("", "", [])
            return
        points = metric_series(self.model.records, record.config_path, label, name)
        self.metric_plot.set_series(label, name, points if name else [])

    def announce(self) -> None:
        """Say which run and test are selected (test_chosen), for the detail below."""
        self.test_chosen.emit(self.current_record, self.test_choice.currentText())

    def export_run(self) -> None:
        """The selected past run as `netjobs show RUN --csv` prints it, where asked."""
        record = self.current_record
        if record is None or not record.results_kept:
            return
        try:
            run = load_json(record.json_path)
        except ResultsFileError as exc:
            self.note.setText(f"Cannot export this run: {exc}")
            return
        export_run_dialog(self, run, os.path.dirname(record.config_path))

    def show_run(self) -> None:
        record = self.current_record
        if record is not None and record.results_kept:
            self.open_requested.emit(os.fspath(record.json_path))
