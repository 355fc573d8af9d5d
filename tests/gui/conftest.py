"""GUI tests: offscreen Qt, a qasync loop for async tests, isolated settings."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qasync
import shiboken6
from PySide6.QtWidgets import QApplication

from netjobs_gui import prompts
from netjobs_gui.settings import Settings, use_settings_dir


def _qasync_loop() -> asyncio.AbstractEventLoop:
    app = QApplication.instance() or QApplication([])
    return qasync.QEventLoop(app)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Only tests under tests/gui run on a qasync loop (the hook is conftest-scoped)."""
    return {"qasync": _qasync_loop}


@pytest.fixture
def settings(qapp: QApplication, tmp_path: Path) -> Settings:
    """Settings in an INI file under tmp_path: the user's real settings are never touched."""
    use_settings_dir(tmp_path / "settings")
    return Settings()


class Prompts:
    """Scripted answers for the window's questions, and a record of what was asked."""

    def __init__(self) -> None:
        self.unsaved: list[str] = []
        self.unsaved_answer: prompts.Answer = "discard"
        self.stop_asked = 0
        self.stop_answer = True
        self.stop_now_asked: list[float] = []  # how long the run had been going, each time
        self.stop_now_answer = True
        self.errors: list[tuple[str, str]] = []
        self.no_token: list[tuple[str, Any]] = []  # (message, the "Open Settings" callback)

    def ask_unsaved(self, parent: object, name: str) -> prompts.Answer:
        self.unsaved.append(name)
        return self.unsaved_answer

    def ask_stop_run(self, parent: object) -> bool:
        self.stop_asked += 1
        return self.stop_answer

    def ask_stop_now(self, parent: object, running_s: float) -> bool:
        self.stop_now_asked.append(running_s)
        return self.stop_now_answer

    def show_error(self, parent: object, title: str, text: str) -> None:
        self.errors.append((title, text))

    def show_no_token(self, parent: object, message: str, open_settings: Any) -> None:
        self.no_token.append((message, open_settings))


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Prompts:
    scripted = Prompts()
    monkeypatch.setattr(prompts, "ask_unsaved", scripted.ask_unsaved)
    monkeypatch.setattr(prompts, "ask_stop_run", scripted.ask_stop_run)
    monkeypatch.setattr(prompts, "ask_stop_now", scripted.ask_stop_now)
    monkeypatch.setattr(prompts, "show_error", scripted.show_error)
    monkeypatch.setattr(prompts, "show_no_token", scripted.show_no_token)
    return scripted


@pytest.fixture
def window(qapp: QApplication, settings: Settings, answers: Prompts) -> Iterator[Any]:
    """The main window with isolated settings and scripted answers; closed afterwards."""
    from netjobs_gui.main_window import MainWindow

    win = MainWindow(settings)
    win.show()
    yield win
    if shiboken6.isValid(win):
        win.controller.cancel_all()
        win.editor.editor.document().setModified(False)
        win.close()
        win.deleteLater()
    qapp.processEvents()
