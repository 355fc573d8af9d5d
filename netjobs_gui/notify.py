"""A desktop notification when a long run ends and the window is not in front: the
system tray's message where there is a tray, else the window asks for attention
(QApplication.alert: a blinking task bar entry). The status bar says it in any case."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

NOTIFY_AFTER_S = 30.0  # a shorter run is watched, not waited for


class Notifier:
    def __init__(self, window: QWidget) -> None:
        self.window = window
        self.tray: QSystemTrayIcon | None = None
        self.sent: list[tuple[str, str, str]] = []  # (how, title, message): tests read it

    def run_ended(self, title: str, message: str, running_s: float) -> str:
        """Tell of a run's end unless it was short or the window is in front: how it
        was told ("tray", "alert"), or "" when it was not."""
        if running_s < NOTIFY_AFTER_S or self.window.isActiveWindow():
            return ""
        how = "alert"
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            if self.tray is None:
                self.tray = QSystemTrayIcon(QApplication.windowIcon(), self.window)
            self.tray.show()
            self.tray.showMessage(title, message, QSystemTrayIcon.MessageIcon.Information)
            how = "tray"
        QApplication.alert(self.window)
        self.sent.append((how, title, message))
        return how
