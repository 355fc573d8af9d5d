"""Compare two results of a test side by side (Results ▸ Compare…): start spread and
concurrent window in each, then every host's outcome, start offset and run time in
each; by default only the hosts that ended differently."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import text
from netjobs_core.compare import HostPair, TestComparison, compare
from netjobs_gui import table_export
from netjobs_gui.columns import SessionEntry

COLUMNS = (
    "Host",
    "Outcome A",
    "Outcome B",
    "Start offset A",
    "Start offset B",
    "Change",
    "Ran A",
    "Ran B",
)


def entry_name(entry: SessionEntry) -> str:
    rep = f" #{entry.test.repetition}" if entry.test.repetition else ""
    when = text.date_time(entry.test.started_at) if entry.test.started_at else entry.source
    return f"{entry.test.label}{rep} — {when} ({text.status_text(entry.test)})"


def pair_cells(pair: HostPair) -> list[str]:
    absent = "not in the test"
    return [
        pair.target,
        pair.outcome_a or absent,
        pair.outcome_b or absent,
        text.ms(pair.offset_a_ms, signed=True),
        text.ms(pair.offset_b_ms, signed=True),
        text.ms(pair.offset_change_ms, signed=True),
        text.seconds(pair.ran_a_s),
        text.seconds(pair.ran_b_s),
    ]


class CompareDialog(QDialog):
    def __init__(self, entries: Sequence[SessionEntry], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare two results")
        self.entries = list(entries)
        self.only_differing = QCheckBox("Only the hosts that ended &differently")
        self.only_differing.setChecked(True)
        self.only_differing.toggled.connect(lambda _on: self.update_view())
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        # Each column as wide as what it holds: a stretched last one put "Ran B" at
        # ten times the width of "Ran A".
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        for column, name in enumerate(COLUMNS):  # what is left goes to the two outcomes
            stretch = name in ("Outcome A", "Outcome B")
            mode = (
                QHeaderView.ResizeMode.Stretch
                if stretch
                else QHeaderView.ResizeMode.ResizeToContents
            )
            header.setSectionResizeMode(column, mode)
        table_export.install(self.table)  # copy, CSV, as every table
        self.first = QComboBox()
        self.second = QComboBox()
        for combo in (self.first, self.second):
            combo.addItems([entry_name(e) for e in self.entries])
        if len(self.entries) >= 2:  # the two latest, older first
            self.first.setCurrentIndex(len(self.entries) - 2)
            self.second.setCurrentIndex(len(self.entries) - 1)
        for combo in (self.first, self.second):
            combo.currentIndexChanged.connect(lambda _i: self.update_view())
        choose = QFormLayout()
        choose.addRow("&A:", self.first)
        choose.addRow("&B:", self.second)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(choose)
        layout.addWidget(self.summary)
        layout.addWidget(self.only_differing)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(1000, 600)
        self.comparison: TestComparison | None = None
        self.update_view()

    def update_view(self) -> None:
        a, b = self.first.currentIndex(), self.second.currentIndex()
        if a < 0 or b < 0:
            self.summary.setText("Run a test, or open results, to have two to compare.")
            self.table.setRowCount(0)
            return
        found = compare(self.entries[a].test, self.entries[b].test)
        self.comparison = found
        lines = text.comparison_lines(found, "A", "B")
        if found.a.label != found.b.label:
            lines.insert(0, f"two different tests: {found.a.label!r} and {found.b.label!r}")
        self.summary.setText("\n".join(text.printable(line) for line in lines[:6]))
        pairs = found.differing if self.only_differing.isChecked() else found.hosts
        self.table.setRowCount(len(pairs))
        for row, pair in enumerate(pairs):
            for column, cell in enumerate(pair_cells(pair)):
                item = QTableWidgetItem(text.printable(cell))
                item.setToolTip(item.text())
                self.table.setItem(row, column, item)
