"""`python -m netjobs_gui [CONFIG]` and the `netjobs-gui` entry point."""

# ruff: noqa: E402  (the Python version is checked before the other imports)
from __future__ import annotations

import importlib.util
import sys

from netjobs_core.wire.python_version import require_python

require_python("netjobs-gui")

from netjobs_gui.options import build_parser

# What `pip install netjobs` leaves out: the desktop controller's extra.
GUI_MODULES = ("PySide6", "qasync")


def missing_gui_modules() -> list[str]:
    return [name for name in GUI_MODULES if importlib.util.find_spec(name) is None]


def main() -> int:
    # --help and --version print and exit here, before Qt is loaded or started;
    # Qt's own options (-platform ...) are parsed again once Qt has taken them.
    build_parser().parse_known_args(sys.argv[1:])
    missing = missing_gui_modules()
    if missing:
        print(
            f"netjobs-gui: {' and '.join(missing)} missing; install the GUI extra: "
            f"{sys.executable} -m pip install 'netjobs[gui]' (a checkout: -e '.[gui]')",
            file=sys.stderr,
        )
        return 1
    from netjobs_gui.app import run

    return run(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
