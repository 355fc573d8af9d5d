"""What the window reopens with: the last config (when none is named on the command
line and it still exists), the page it was on, and its splitters' positions, kept in
the Settings' store beside the window's geometry."""

from __future__ import annotations

import os

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter, QStackedWidget, QTabWidget, QWidget

KEY = "layout/{}"


def _place(widget: QWidget, parent: QWidget) -> int:
    """Where `widget` sits in `parent`: its index in a stack or splitter, else in the
    parent's layout (never the order of children, which raising a widget changes)."""
    if isinstance(parent, QStackedWidget | QSplitter):
        return parent.indexOf(widget)
    layout = parent.layout()
    return layout.indexOf(widget) if layout is not None else -1


def _path(widget: QWidget, top: QWidget) -> str:
    """A splitter's name: its object name, else its place in its parents (stable
    while the window is built the same way)."""
    if widget.objectName():
        return widget.objectName()
    parts = []
    parent = widget.parentWidget()
    while widget is not top and parent is not None:
        parts.append(f"{type(widget).__name__}{_place(widget, parent)}")
        widget, parent = parent, parent.parentWidget()
    return "/".join(reversed(parts))


def save_layout(window: QMainWindow, store: QSettings) -> None:
    for splitter in window.findChildren(QSplitter):
        store.setValue(KEY.format("splitter/" + _path(splitter, window)), splitter.saveState())
    tabs = window.centralWidget()
    if isinstance(tabs, QTabWidget):
        store.setValue(KEY.format("page"), tabs.currentIndex())


def restore_layout(window: QMainWindow, store: QSettings) -> None:
    for splitter in window.findChildren(QSplitter):
        state = store.value(KEY.format("splitter/" + _path(splitter, window)))
        if isinstance(state, QByteArray):
            splitter.restoreState(state)
    tabs = window.centralWidget()
    try:
        page = int(str(store.value(KEY.format("page"), -1)))
    except ValueError:
        page = -1
    if isinstance(tabs, QTabWidget) and 0 <= page < tabs.count():
        tabs.setCurrentIndex(page)


def last_config(recent: list[str]) -> str | None:
    """The config to reopen: the most recent file, if it is still there."""
    return recent[0] if recent and os.path.isfile(recent[0]) else None
