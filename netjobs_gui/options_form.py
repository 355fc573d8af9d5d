"""Run Options: the fields of the command line's run flags that the window sets in this
form (netjobs_core.run_flags, `Where.OPTIONS`), built from that one table, kept between
sessions, read by the command line's own parsers.

`stored_values(store)` gives a run's values by flag dest (this form's and the Settings'
flags), ready for run_flags.option_values / run_values as the command line's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from netjobs_core.run_flags import FLAGS, Flag, Where
from netjobs_core.run_folder import data_dir

FORM_FLAGS: tuple[Flag, ...] = tuple(f for f in FLAGS if f.gui is Where.OPTIONS)
KEY = "run_options/{}"


class OptionsError(ValueError):
    """A field's value is not valid: its label and the command line's message."""


def _stored_text(store: QSettings, each: Flag) -> str:
    return str(store.value(KEY.format(each.dest), "") or "")


def _stored_switch(store: QSettings, each: Flag) -> bool:
    return store.value(KEY.format(each.dest), False) in (True, "true", "1", 1)


def _label(each: Flag) -> str:
    return each.label.replace("&", "")


def stored_values(store: QSettings) -> dict[str, Any]:
    """Every form flag's stored value (parsed as the command line parses it; a stored
    value no longer valid is OptionsError), and each Settings flag's, by dest."""
    values: dict[str, Any] = {}
    for each in FORM_FLAGS:
        if each.kind == "switch":
            values[each.dest] = _stored_switch(store, each)
            continue
        try:
            values[each.dest] = each.value_of(_stored_text(store, each))
        except ValueError as exc:
            raise OptionsError(f"Run Options ▸ {_label(each)}: {exc}") from None
    # Imported here: settings.py is the window's, this module is built before it.
    from netjobs_gui.settings import Settings

    settings = Settings(store)
    for each in FLAGS:
        if each.gui is Where.SETTINGS:
            values[each.dest] = getattr(settings, each.setting)
    return values


def changed_words(values: Mapping[str, Any]) -> list[str]:
    """The form's values that differ from the defaults, in words (`repeat each test: 3`),
    for the status line as a run starts."""
    words = []
    for each in FORM_FLAGS:
        value = values.get(each.dest, each.default)
        if each.kind == "switch":
            if value:
                words.append(_label(each).lower())
        elif value not in (each.default, None, ""):
            words.append(f"{_label(each).lower()}: {each.shown(value)}")
    return words


class RunOptionsForm(QWidget):
    """One field per form flag, its tooltip the flag's help (`--repeat N: ...`)."""

    changed = Signal()

    def __init__(self, store: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.fields: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        for each in FORM_FLAGS:
            field, row = self._field(each)
            field.setToolTip(f"{' '.join(each.names)}: {each.help}")
            self.fields[each.dest] = field
            if each.kind == "switch":
                layout.addRow("", row)
            else:
                label = QLabel(each.label)
                label.setBuddy(field)
                layout.addRow(label, row)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b91c1c")
        self.problem.setWordWrap(True)
        layout.addRow(self.problem)
        self.load()

    def _field(self, each: Flag) -> tuple[QWidget, QWidget]:
        if each.kind == "switch":
            box = QCheckBox(each.label)
            box.toggled.connect(lambda _on: self.changed.emit())
            return box, box
        if each.kind == "choice":
            combo = QComboBox()
            combo.addItems(list(each.choices))
            combo.currentTextChanged.connect(lambda _t: self.changed.emit())
            return combo, combo
        edit = QLineEdit()
        edit.textChanged.connect(lambda _t: self._check())
        if each.kind == "folder":
            edit.setPlaceholderText(f"default: {data_dir() / 'runs'}")
            browse = QPushButton("&Browse…")
            browse.clicked.connect(lambda: self._browse(edit))
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(edit, 1)
            line.addWidget(browse)
            return edit, row
        edit.setPlaceholderText(f"default: {each.shown(each.default)}")
        return edit, edit

    def _browse(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Results folder", edit.text())
        if folder:
            edit.setText(folder)

    def set_text(self, dest: str, value: str) -> None:
        """What a person would type or choose in the field of `dest`."""
        field = self.fields[dest]
        if isinstance(field, QCheckBox):
            field.setChecked(value in ("1", "true", "True"))
        elif isinstance(field, QComboBox):
            field.setCurrentText(value)
        elif isinstance(field, QLineEdit):
            field.setText(value)

    def texts(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dest, field in self.fields.items():
            if isinstance(field, QCheckBox):
                out[dest] = field.isChecked()
            elif isinstance(field, QComboBox):
                out[dest] = field.currentText()
            elif isinstance(field, QLineEdit):
                out[dest] = field.text().strip()
        return out

    def values(self) -> dict[str, Any]:
        """The form's values as the command line would parse them; OptionsError names
        the first field that is not valid."""
        values: dict[str, Any] = {}
        for each in FORM_FLAGS:
            shown = self.texts()[each.dest]
            if each.kind == "switch":
                values[each.dest] = shown
                continue
            try:
                values[each.dest] = each.value_of(shown)
            except ValueError as exc:
                raise OptionsError(f"{_label(each)}: {exc}") from None
        return values

    def _check(self) -> bool:
        try:
            self.values()
        except OptionsError as exc:
            self.problem.setText(str(exc))
            return False
        self.problem.setText("")
        self.changed.emit()
        return True

    def load(self) -> None:
        for each in FORM_FLAGS:
            if each.kind == "switch":
                self.set_text(each.dest, "1" if _stored_switch(self.store, each) else "")
            elif each.kind == "choice":
                self.set_text(each.dest, _stored_text(self.store, each) or each.default)
            else:
                self.set_text(each.dest, _stored_text(self.store, each))

    def save(self) -> bool:
        """Keep the values (False, and the problem shown, when one is not valid)."""
        if not self._check():
            return False
        for dest, value in self.texts().items():
            self.store.setValue(KEY.format(dest), value)
        self.store.sync()
        return True


class RunOptionsDialog(QDialog):
    """Run ▸ Run Options…: the form, kept on OK."""

    def __init__(self, store: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Run options")
        self.form = RunOptionsForm(store)
        note = QLabel(
            "As the command line's flags (hover a field for its flag). Token, groups file, "
            "connect timeout and stop on failure are in Settings."
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.form)
        layout.addWidget(buttons)
        self.resize(560, 0)

    def accept(self) -> None:
        if self.form.save():
            super().accept()
