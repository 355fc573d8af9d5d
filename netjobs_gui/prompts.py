"""The questions the window asks the user, in one place.

Modules call them as `prompts.ask_unsaved(...)` so tests can replace them
(monkeypatch) instead of clicking through modal dialogs. Error reports are
never modal: `show_error` opens a message box and returns at once. Every
button has an Alt-letter mnemonic; the `*_box` builders are what the
questions show (tests read their buttons).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from PySide6.QtWidgets import QMessageBox, QWidget

from netjobs_core import text

Answer = Literal["save", "discard", "cancel"]
_open_boxes: set[QMessageBox] = set()  # keep non-modal boxes alive until closed
Role = QMessageBox.ButtonRole


class Box(QMessageBox):
    """A message box whose buttons are kept in the order given (`choices`)."""

    def __init__(
        self,
        parent: QWidget | None,
        icon: QMessageBox.Icon,
        title: str,
        message: str,
        buttons: Sequence[tuple[str, QMessageBox.ButtonRole]],
        default: int = 0,
    ) -> None:
        super().__init__(icon, title, message, QMessageBox.StandardButton.NoButton, parent)
        self.choices = [self.addButton(label, role) for label, role in buttons]
        self.setDefaultButton(self.choices[default])

    def choice(self) -> int:
        """The index of the button clicked; the last (the "no") if none was."""
        clicked = self.clickedButton()
        return self.choices.index(clicked) if clicked in self.choices else len(self.choices) - 1


def unsaved_box(parent: QWidget | None, name: str) -> Box:
    return Box(
        parent,
        QMessageBox.Icon.Warning,
        "Unsaved changes",
        f"{name} has unsaved changes.\nSave them first?",
        [
            ("&Save", Role.AcceptRole),
            ("&Discard", Role.DestructiveRole),
            ("&Cancel", Role.RejectRole),
        ],
    )


def ask_unsaved(parent: QWidget | None, name: str) -> Answer:
    """Save, discard or cancel for a modified document called `name`."""
    box = unsaved_box(parent, name)
    box.exec()
    answers: tuple[Answer, ...] = ("save", "discard", "cancel")
    return answers[box.choice()]


def stop_run_box(parent: QWidget | None) -> Box:
    return Box(
        parent,
        QMessageBox.Icon.Question,
        "Run in progress",
        "A run is in progress.\nStop it (the agents kill their jobs) and close the window?",
        [("&Stop and close", Role.AcceptRole), ("&Keep running", Role.RejectRole)],
        default=1,
    )


def ask_stop_run(parent: QWidget | None) -> bool:
    """A run is in progress and the window is closing: stop it and close?"""
    box = stop_run_box(parent)
    box.exec()
    return box.choice() == 0


def stop_now_box(parent: QWidget | None, running_s: float) -> Box:
    return Box(
        parent,
        QMessageBox.Icon.Question,
        "Stop the run?",
        f"The run has been going for {text.duration(running_s)}.\n"
        "Stop it now? The agents kill every job of the test.",
        [("&Stop the run", Role.AcceptRole), ("&Keep running", Role.RejectRole)],
        default=1,
    )


def ask_stop_now(parent: QWidget | None, running_s: float) -> bool:
    """Stop (toolbar, menu or Esc) on a run that has been going for a while: sure?"""
    box = stop_now_box(parent, running_s)
    box.exec()
    return box.choice() == 0


def show_error(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    """Show an error without blocking the caller (nor the event loop)."""
    box = Box(parent, QMessageBox.Icon.Warning, title, text, [("&OK", Role.AcceptRole)])
    return _show(box)


def no_token_box(parent: QWidget | None, message: str) -> Box:
    return Box(
        parent,
        QMessageBox.Icon.Warning,
        "No token",
        message,
        [("Open &Settings…", Role.AcceptRole), ("&Close", Role.RejectRole)],
    )


def show_no_token(
    parent: QWidget | None, message: str, open_settings: Callable[[], object]
) -> QMessageBox:
    """No token to reach the agents: say so (non-modal), with a button to Settings."""
    box = no_token_box(parent, message)
    settings_button = box.choices[0]
    box.buttonClicked.connect(lambda button: open_settings() if button is settings_button else None)
    return _show(box)


def _show(box: QMessageBox) -> QMessageBox:
    box.setModal(False)
    _open_boxes.add(box)
    box.finished.connect(lambda _result: _open_boxes.discard(box))
    box.show()
    return box
