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

from PySide6.QtCore import Qt
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


def _instrument() -> dict[str, list[float]]:
    """Time the parts of a tick apart: each wrapped method adds its ms to the tick's last
    entry (nested calls are counted in both: read each part on its own)."""
    from netjobs_gui import models, overview, run_view, timeline

    parts: dict[str, list[float]] = {}

    def wrap(owner: type, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent = parts.setdefault(label, [])

        def timed(*args: object, **kwargs: object) -> object:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if spent:
                    spent[-1] += (time.perf_counter() - began) * 1000

        setattr(owner, name, timed)

    wrap(run_view.RunView, "refresh", "RunView.refresh (all of it)")
    wrap(models.TestsModel, "refresh", "tests list: refresh")
    wrap(models.CommandsModel, "refresh", "commands table: refresh (dataChanged)")
    wrap(models.ColumnsModel, "data", "tables: data() while painting")
    wrap(run_view.OutputPane, "refresh", "output pane: refresh")
    wrap(run_view.TestDetail, "_update_summary", "test summary line")
    wrap(timeline.TimelineWidget, "refresh", "timeline: refresh")
    wrap(timeline.TimelineWidget, "paintEvent", "timeline: paint")
    wrap(overview.OverviewWidget, "refresh", "overview: refresh")
    wrap(overview.OverviewWidget, "paintEvent", "overview: paint")
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    parser.add_argument("--sort", default="", help="sort the commands table by this column")
    parser.add_argument(
        "--tab", default="overview", choices=("overview", "timeline", "output"), help="in sight"
    )
    parser.add_argument(
        "--parts", action="store_true", help="also print the median ms per tick of each part"
    )
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

    parts = _instrument() if args.parts else {}
    view = RunView()
    width, height = map(int, args.size.split("x"))
    view.resize(width, height)
    view.show()
    view.begin_run(plan, None, run)
    view.on_test_started(test)
    tabs = {"overview": view.detail.OVERVIEW_TAB, "timeline": view.detail.TIMELINE_TAB}
    view.detail.tabs.setCurrentIndex(tabs.get(args.tab, view.detail.OUTPUT_TAB))
    if args.sort:
        view.detail.table.sortByColumn(
            view.detail.model.COLUMNS.index(args.sort), Qt.SortOrder.AscendingOrder
        )
    app.processEvents()

    busy: list[float] = []
    cpus: list[float] = []  # this thread's CPU time: the work itself, whatever the load
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
            if tick == args.ticks // 2 and host.state is HostState.RUNNING:
                # The agents' exec instants and late releases arrive (issue 19).
                command.exec_offset_ms = abs(rnd.gauss(1.4, 0.3))
                command.release_late_ms = rnd.choice((0.1, 0.2, 0.3, 2.5))
        if tick == args.ticks // 2:
            test.start_spread_ms, test.exec_spread_ms = 1.2, 2.9
        for spent in parts.values():
            spent.append(0.0)
        began, cpu = time.perf_counter(), time.thread_time()
        view.refresh()
        app.processEvents()
        busy.append((time.perf_counter() - began) * 1000)
        cpus.append((time.thread_time() - cpu) * 1000)
    for name, spent in parts.items():
        print(f"  {name}: median {statistics.median(spent):.2f} ms, max {max(spent):.2f} ms")
    busy.sort()
    median, p95, worst = statistics.median(busy), busy[int(0.95 * (len(busy) - 1))], busy[-1]
    print(
        f"{args.hosts} hosts, {args.ticks} ticks, {args.tab} in sight at {args.size}"
        f"{', sorted by ' + args.sort if args.sort else ''}: "
        f"busy per tick median {median:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms "
        f"(limit {LIMIT_MS:.0f} ms); its CPU time median {statistics.median(cpus):.1f} ms, "
        f"max {max(cpus):.1f} ms"
    )
    return 0 if worst < LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(main())
