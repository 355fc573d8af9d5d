"""Start-up: QApplication, the main window, and the qasync event loop."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import qasync
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

import netjobs_resources
from netjobs_core import __version__
from netjobs_gui.layout_memory import last_config
from netjobs_gui.options import build_parser
from netjobs_gui.settings import APPLICATION, ORGANIZATION, apply_settings_env

if TYPE_CHECKING:
    from netjobs_core.check import HostCheck
    from netjobs_gui.main_window import MainWindow


ICON = importlib.resources.files(netjobs_resources) / "icons" / "netjobs.svg"


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
    parser = build_parser()
    parser.parse_known_args(list(argv)[1:])  # --help, --version: without starting Qt
    app = make_app(argv)
    args = parser.parse_args(app.arguments()[1:])

    from netjobs_gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    config = args.config or last_config(window.settings.recent_files)  # reopen the last one
    if config:
        window.open_path(config, ask=False)
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        if args.smoke_test:
            code = runner.run(smoke_test(window))
            window.close()
            return code
        runner.run(wait_until_quit(app))
    return 0


def _report(line: str) -> None:
    if sys.stderr is not None:  # a windowed Windows executable has no stderr
        print(line, file=sys.stderr, flush=True)


async def smoke_test(window: MainWindow, timeout: float = 30.0) -> int:
    """Check the hosts of the open config through the real window; 0 if all are fine."""
    if window.editor.plan is None:
        _report(f"smoke test: no valid config open ({window.editor.error})")
        return 1
    finished: asyncio.Future[list[HostCheck]] = asyncio.get_running_loop().create_future()

    def on_finished(checks: list[HostCheck]) -> None:
        if not finished.done():
            finished.set_result(checks)

    window.controller.check_finished.connect(on_finished)
    window.check_hosts()
    if window.errors:
        _report(f"smoke test: {window.errors[-1][0]}: {window.errors[-1][1]}")
        return 1
    try:
        async with asyncio.timeout(timeout):
            checks = await finished
    except TimeoutError:
        _report(f"smoke test: the host check took longer than {timeout:g} s")
        return 1
    for check in checks:
        _report(f"{check.address}: {'ok' if check.ok else check.error}")
    return 0 if checks and all(check.ok for check in checks) else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv))
