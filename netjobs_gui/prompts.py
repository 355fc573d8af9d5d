"""The questions the window asks the user, in one place.

Modules call them as `prompts.ask_unsaved(...)` so tests can replace them
(monkeypatch) instead of clicking through modal dialogs. Error reports are
never modal: `show_error` opens a message box and returns at once.
"""

from __future__ import annotations

from typing import Literal

from PySide6.QtWidgets import QMessageBox, QWidget

Answer = Literal["save", "discard", "cancel"]
_open_boxes: set[QMessageBox] = set()  # keep non-modal boxes alive until closed


def ask_unsaved(parent: QWidget | None, name: str) -> Answer:
    """Save, discard or cancel for a modified document called `name`."""
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.warning(
        parent,
        "Unsaved changes",
        f"{name} has unsaved changes.\nSave them first?",
        buttons.Save | buttons.Discard | buttons.Cancel,
        buttons.Save,
    )
    if answer == buttons.Save:
        return "save"
    if answer == buttons.Discard:
        return "discard"
    return "cancel"


def ask_stop_run(parent: QWidget | None) -> bool:
    """A run is in progress and the window is closing: stop it and close?"""
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.question(
        parent,
        "Run in progress",
        "A run is in progress.\nStop it (the agents kill their jobs) and close the window?",
        buttons.Yes | buttons.No,
        buttons.No,
    )
    return answer == buttons.Yes


def show_error(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    """Show an error without blocking the caller (nor the event loop)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setModal(False)
    _open_boxes.add(box)
    box.finished.connect(lambda _result: _open_boxes.discard(box))
    box.show()
    return box
