"""A person's note on a past run, kept in the run history (History.set_note), as
`netjobs note RUN TEXT` keeps it: on the History page, under the list of runs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from netjobs_core import text
from netjobs_core.history import History, HistoryError
from netjobs_core.records import RunRecord

MAX_NOTE = 2000  # characters: a note, not a report


class RunNote(QWidget):
    saved = Signal(str)  # the run id whose note was kept
    error = Signal(str, str)  # title, message

    def __init__(self, path: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path  # the run history; None: the user's
        self.record: RunRecord | None = None
        self.label = QLabel("N&ote:")
        self.edit = QLineEdit()
        self.edit.setMaxLength(MAX_NOTE)
        self.edit.setPlaceholderText("a note on this run, kept in the run history")
        self.label.setBuddy(self.edit)
        self.keep = QPushButton("&Keep note")
        self.keep.clicked.connect(self.save)
        self.edit.returnPressed.connect(self.save)
        self.edit.textChanged.connect(lambda _t: self._update())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.keep)
        self.set_record(None)

    def set_record(self, record: RunRecord | None) -> None:
        self.record = record
        self.edit.setText(text.printable(record.note) if record is not None else "")
        self.edit.setEnabled(record is not None)
        self._update()

    def _update(self) -> None:
        record = self.record
        self.keep.setEnabled(record is not None and self.edit.text().strip() != record.note)

    def save(self) -> bool:
        record = self.record
        if record is None:
            return False
        note = self.edit.text().strip()
        try:
            with History(self.path) as history:
                history.set_note(record.run_id, note)
        except HistoryError as exc:
            self.error.emit("Cannot keep the note", str(exc))
            return False
        self.saved.emit(record.run_id)
        return True
