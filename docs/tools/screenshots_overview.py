"""Screenshots of the overview, Run Options and Compare (issue 23), offscreen.

The 1000-host fleets are made up (the same generator as bench/gui_overview.py's kind:
states and offsets drawn at random, seeded), as no machine here runs 1000 agents;
everything drawn is the window's own code.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/tools/screenshots_overview.py
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.wire.address import Address

OUT = Path(__file__).resolve().parents[1] / "screenshots"


def fleet(n: int, seed: int, spread_ms: float) -> TestResult:
    rnd = random.Random(seed)
    start = 1_800_000_000.0
    test = TestResult("fio-fleet", None, status=TestStatus.FAILED, started_at=start)
    test.scheduled_start, test.start_spread_ms = start + 1, spread_ms
    for k in range(n):
        host = HostResult(Address(f"node{k + 1:04d}"), state=HostState.DONE)
        host.start_offset_ms = abs(rnd.gauss(0.3, 0.2))
        if rnd.random() < 0.01:
            host.start_offset_ms += rnd.uniform(2, spread_ms - 0.5)
        command = CommandResult("fio job.fio", status=CommandStatus.OK, exit_code=0)
        command.started_at, command.duration_s = start + 1, 60 + rnd.random()
        draw = rnd.random()
        if draw < 0.005:
            host.state, host.error, host.start_offset_ms = HostState.FAILED, "refused", None
            command.status, command.exit_code = CommandStatus.ERROR, None
        elif draw < 0.025:
            command.status, command.exit_code = CommandStatus.FAILED, 1
        elif draw < 0.035:
            host.state, command.status, command.exit_code = (
                HostState.TIMEOUT,
                CommandStatus.TIMEOUT,
                None,
            )
        host.commands.append(command)
        test.hosts.append(host)
    return test


def main() -> int:
    settings_dir = tempfile.mkdtemp(prefix="netjobs-shots-")
    from netjobs_gui.settings import Settings, use_settings_dir

    app = QApplication.instance() or QApplication([])
    use_settings_dir(settings_dir)
    from netjobs_gui.columns import SessionEntry
    from netjobs_gui.compare_view import CompareDialog
    from netjobs_gui.options_form import RunOptionsDialog
    from netjobs_gui.run_view import TestDetail

    detail = TestDetail()
    detail.resize(1280, 800)
    detail.show()
    before = fleet(1000, 1, 3.5)
    detail.set_test(before)
    detail.splitter.setSizes([220, 580])
    detail.tabs.setCurrentIndex(detail.OVERVIEW_TAB)
    app.processEvents()
    detail.select_host(detail.overview.data.late[0])  # type: ignore[union-attr]
    app.processEvents()
    detail.grab().save(str(OUT / "20-overview-1000-hosts.png"))

    settings = Settings()
    form = RunOptionsDialog(settings.store)
    form.form.set_text("repeat", "5")
    form.form.set_text("start_mode", "sequential")
    form.form.set_text("collect_max", "4G")
    form.show()
    app.processEvents()
    form.grab().save(str(OUT / "21-run-options.png"))

    after = fleet(1000, 2, 1.2)
    run = RunResult("fleet.cfg")
    entries = [SessionEntry(run, before, "run 10:00:00"), SessionEntry(run, after, "run 10:07:00")]
    dialog = CompareDialog(entries)
    dialog.show()
    app.processEvents()
    dialog.grab().save(str(OUT / "22-compare-results.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
