"""Start-up: QApplication, the main window, and the qasync event loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import qasync
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from netjobs_core import __version__
from netjobs_gui.settings import APPLICATION, ORGANIZATION, apply_settings_env


def _resources() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)  # inside a PyInstaller one-file build
    return (
        Path(bundle) / "resources"
        if bundle
        else Path(__file__).resolve().parent.parent / "resources"
    )


ICON = _resources() / "icons" / "netjobs.svg"


def make_app(argv: Sequence[str]) -> QApplication:
    apply_settings_env()
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(list(argv))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("NetJobs")
    app.setApplicationVersion(__version__)
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    return app


async def wait_until_quit(app: QApplication) -> None:
    quitting = asyncio.Event()
    app.aboutToQuit.connect(quitting.set)
    await quitting.wait()


def run(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = make_app(argv)
    parser = argparse.ArgumentParser(prog="netjobs-gui", description="NetJobs desktop controller")
    parser.add_argument("config", nargs="?", help="config file to open")
    parser.add_argument("--version", action="version", version=f"netjobs-gui {__version__}")
    args = parser.parse_args(app.arguments()[1:])

    from netjobs_gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    if args.config:
        window.open_path(args.config, ask=False)
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        runner.run(wait_until_quit(app))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
