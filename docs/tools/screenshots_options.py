"""The screenshot of the Run Options form (no results in it), offscreen.

The overview, the Run page at 100 hosts and Compare come from real runs:
docs/tools/screenshots_fleet.py.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/tools/screenshots_options.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "screenshots"


def main() -> int:
    settings_dir = tempfile.mkdtemp(prefix="netjobs-shots-")
    from netjobs_gui.settings import Settings, use_settings_dir

    app = QApplication.instance() or QApplication([])
    use_settings_dir(settings_dir)
    from netjobs_gui.options_form import RunOptionsDialog

    settings = Settings()
    form = RunOptionsDialog(settings.store)
    form.form.set_text("repeat", "5")
    form.form.set_text("start_mode", "sequential")
    form.form.set_text("collect_max", "4G")
    form.show()
    app.processEvents()
    form.grab().save(str(OUT / "21-run-options.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
