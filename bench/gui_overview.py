"""How long the window's event loop is busy per refresh tick at 1000 hosts, with the
Run page's Overview tab in sight (issue 23: under 100 ms a tick).

A live 1000-host test is driven without agents: before each tick a tenth of the hosts
move on (ready -> running -> done, a few failed or timed out) and get output, as a run
streams; then the window refreshes as the controller's timer makes it (RunView.refresh)
and Qt paints what changed (processEvents). Busy = the refresh plus the paint.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_overview.py [--hosts 1000] [--ticks 60]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

from netjobs_core.config import CommandSpec, Plan, TestSpec
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

LIMIT_MS = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    from netjobs_gui.run_view import RunView

    rnd = random.Random(23)
    addresses = [Address(f"node{k:04d}") for k in range(args.hosts)]
    spec = TestSpec(
        "fleet", 1, None, None, tuple(CommandSpec(a, "bench", None, 2) for a in addresses)
    )
    plan = Plan("fleet.cfg", (spec,))
    run = RunResult("fleet.cfg")
    test = TestResult("fleet", None, status=TestStatus.RUNNING, started_at=time.time())
    for address in addresses:
        host = HostResult(address, state=HostState.READY, start_offset_ms=None)
        host.commands.append(CommandResult("bench", line=2))
        test.hosts.append(host)
    run.tests.append(test)

    view = RunView()
    width, height = map(int, args.size.split("x"))
    view.resize(width, height)
    view.show()
    view.begin_run(plan, None, run)
    view.on_test_started(test)
    view.detail.tabs.setCurrentIndex(view.detail.OVERVIEW_TAB)
    app.processEvents()

    busy: list[float] = []
    for tick in range(args.ticks):
        for host in rnd.sample(test.hosts, max(1, args.hosts // 10)):  # a run streaming
            command = host.commands[0]
            if host.state is HostState.READY:
                host.state, command.status = HostState.RUNNING, CommandStatus.RUNNING
                host.start_offset_ms = abs(rnd.gauss(0.3, 0.2))
                command.started_at = time.time()
            elif host.state is HostState.RUNNING and tick > args.ticks // 2:
                end = rnd.random()
                command.status = (
                    CommandStatus.FAILED if end < 0.02 else
                    CommandStatus.TIMEOUT if end < 0.03 else CommandStatus.OK
                )  # fmt: skip
                command.exit_code = 1 if command.status is CommandStatus.FAILED else 0
                host.state = (
                    HostState.TIMEOUT if command.status is CommandStatus.TIMEOUT else HostState.DONE
                )
                command.duration_s = 1.0
            command.stdout.append(b"progress 42%\n")
        began = time.perf_counter()
        view.refresh()
        app.processEvents()
        busy.append((time.perf_counter() - began) * 1000)
    busy.sort()
    median, p95, worst = statistics.median(busy), busy[int(0.95 * (len(busy) - 1))], busy[-1]
    print(
        f"{args.hosts} hosts, {args.ticks} ticks, Overview in sight at {args.size}: "
        f"busy per tick median {median:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms "
        f"(limit {LIMIT_MS:.0f} ms)"
    )
    return 0 if worst < LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(main())
