"""Screenshots of the desktop controller's main states, from real runs on local agents.

    .venv/bin/python docs/tools/make_screenshots.py [OUTPUT_DIR]   (default docs/screenshots)

Runs offscreen (no display needed): starts local agents with a fresh token,
drives the real window through open, check hosts, run, and results, and saves
`widget.grab()` of each state: first with 3 hosts (a config with an error,
one with host ranges and groups, the hosts checked, a run live and finished,
its collected files, a large output, the timeline with the concurrent window),
then with a fleet of 36 agents (checking, running, finished with problems,
grouped outputs, problems only, the window, 1024x700), and last the run
history with the start spread of a test run three times. Settings and the
run history go to a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "gui")]  # test helpers

SCREEN = {  # a screen larger than the window, so geometry is never clamped
    "synchronousWindowSystemEvents": False,
    "windowFrameMargins": False,
    "screens": [
        {
            "name": "shots",
            "x": 0,
            "y": 0,
            "width": 1920,
            "height": 1200,
            "logicalDpi": 96,
            "logicalBaseDpi": 96,
            "dpr": 1,
        }
    ],
}
SIZE = (1280, 800)

CONFIG = """\
# Storage benchmark across the lab: warm up, then measure throughput.
# Each test starts its commands on every host at one scheduled instant.

warmup:
-generaltimeout: 30s
-minhosts: all
{a0}: "echo warming up cache; sleep 0.4; echo done"
{a1}: "echo warming up cache; sleep 0.5; echo done"
{a2}: "echo warming up cache; sleep 0.3; echo done"
end

throughput:
-generaltimeout: 2m
-minhosts: 2
{a0}: "for i in $(seq 24); do echo block $i: $((900 + i * 7)) MB/s; sleep 0.1; done"
{a1}: "for i in $(seq 32); do echo block $i: $((840 + i * 5)) MB/s; sleep 0.1; done"
-timeout: 1m
{a1}: "seq -f 'sample %g: 4096 bytes read, checksum ok' 40000; sleep 2"
{a2}: "for i in $(seq 18); do echo block $i: $((610+3*i)) MB/s; sleep .1; done; exit 9"
{a2}: "vmstat 1 3 | tail -n 2; echo 'sda: 3 retries' >&2; echo retries=3 > {work}/disk.txt"
-collect: {work}/disk.txt
end
"""

NODE_SETS = """\
# A fleet by name: host ranges, and groups from the groups file (Settings).
nightly:
-generaltimeout: 10m
-minhosts: 30
-collect: /tmp/fio-$NETJOBS_INDEX.json
node[01-32]: "fio job.fio --output=/tmp/fio-$NETJOBS_INDEX.json"
@storage!stor3: "iostat -x 5 12"
-timeout: 2m
end
"""


FLEET = 36
FAILING = (5, 17, 29)  # exit 2
HANGING = (11, 23)  # past their -timeout


def fleet_config(ports: list[int]) -> str:
    lines = [
        "# Nightly fleet benchmark: every node at once; 30 of 36 must succeed.",
        "",
        "fleet:",
        "-generaltimeout: 1m",
        "-minhosts: 30",
    ]
    for n, port in enumerate(ports):
        target = f"127.0.0.1:{port}"
        if n in HANGING:
            lines += [f'{target}: "echo node {n}: waiting for the array; sleep 30"', "-timeout: 3s"]
            continue
        work = f"sleep {1 + (n % 7) * 0.35:.2f}"
        tail = "; echo 'checksum mismatch' >&2; exit 2" if n in FAILING else ""
        # Three disk models: their outputs fold into three groups (and the failures).
        lines.append(
            f'{target}: "echo fio randread --bs=4k --iodepth=32; {work}; '
            f'echo read: {880 + (n % 3) * 40} MiB/s{tail}"'
        )
    return "\n".join([*lines, "end", ""])


@contextlib.asynccontextmanager
async def silent_hosts(count: int):  # type: ignore[no-untyped-def]
    """Ports that accept and never answer (hung agents): their check takes its timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    servers = [await asyncio.start_server(hold, "127.0.0.1", 0) for _ in range(count)]
    try:
        yield [server.sockets[0].getsockname()[1] for server in servers]
    finally:
        for writer in held:
            writer.close()
        for server in servers:
            server.close()


async def main(out: Path, work: Path) -> None:
    from agent_harness import start_agent
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication
    from qt_async import wait_signal, wait_until

    from netjobs_core.local_agents import AgentStartError
    from netjobs_core.wire.tokens import generate_token_file
    from netjobs_gui import prompts
    from netjobs_gui.main_window import MainWindow
    from netjobs_gui.settings import Settings

    app = QApplication.instance()
    assert app is not None
    prompts.ask_unsaved = lambda parent, name: "discard"  # type: ignore[assignment]

    async def shot(widget, name: str) -> None:  # type: ignore[no-untyped-def]
        # Let the loop lay out and paint (never processEvents() inside a task: qasync
        # would run other tasks' steps nested in this one).
        await asyncio.sleep(0.15)
        if widget is window:  # one instant for every view (tables read the live results)
            window.run_view.refresh()
            window.results.detail.refresh()
        path = out / name
        if not widget.grab().save(str(path)):
            raise SystemExit(f"cannot write {path}")
        print(path)

    def started(token_file: Path):  # type: ignore[no-untyped-def]
        # Many agents starting at once on one machine: one may trip over another's
        # process-containment clean-up (reported); a second try starts it.
        try:
            return start_agent(token_file)
        except AgentStartError as exc:
            print(f"retrying an agent start: {str(exc).splitlines()[-1]}")
            return start_agent(token_file)

    token = work / "token"
    generate_token_file(token)
    other_token = work / "other-token"
    generate_token_file(other_token)
    with contextlib.ExitStack() as stack:
        agents = [stack.enter_context(started(token)) for _ in range(3)]
        stranger = stack.enter_context(started(other_token))
        settings = Settings()
        settings.token_file = str(token)
        settings.manual_hosts = [f"127.0.0.1:{stranger.port}", "127.0.0.1:9"]

        window = MainWindow(settings)
        window.resize(*SIZE)
        window.show()
        await shot(window, "01-empty-window.png")

        targets = {f"a{i}": f"127.0.0.1:{agent.port}" for i, agent in enumerate(agents)}
        config = work / "storage-bench.cfg"
        config.write_text(CONFIG.format(work=work, **targets))
        window.open_path(str(config))
        good_text = window.editor.text
        broken = good_text.replace("-minhosts: 2", "-minhosts: two")
        window.editor.editor.setPlainText(broken)
        await wait_until(lambda: window.editor.error is not None, 5)
        window.editor.go_to_error()
        await shot(window, "02-config-with-error.png")
        groups = work / "groups"
        groups.write_text("storage: stor[1-4]\n")
        settings.groups_file = str(groups)
        window._load_groups()
        window.editor.editor.setPlainText(NODE_SETS)
        await wait_until(lambda: window.editor.plan is not None, 5)
        await shot(window, "03-config-node-sets.png")
        window.editor.editor.setPlainText(good_text)
        window.editor.save()
        await wait_until(lambda: window.editor.error is None, 5)

        window.check_hosts()
        await wait_signal(window.controller.check_finished, 30)
        window.hosts.table.selectRow(3)  # the agent holding another token
        await shot(window, "04-hosts-checked.png")

        finished: list[object] = []
        window.controller.run_finished.connect(finished.append)
        window.run_all()
        await wait_signal(window.controller.test_finished, 30)  # warmup
        view = window.run_view

        def streaming() -> bool:
            test = view.detail.test
            return (
                test is not None
                and test.label == "throughput"
                and sum(len(c.stdout) for h in test.hosts for c in h.commands) > 600
            )

        await wait_until(streaming, 20)
        view.detail.select_row(1)
        await asyncio.sleep(0.4)
        await shot(window, "05-run-in-progress.png")
        view.detail.tabs.setCurrentIndex(1)
        await shot(window, "06-run-timeline-live.png")
        view.detail.tabs.setCurrentIndex(0)

        await wait_until(lambda: finished, 60)
        run = finished[0]
        view.detail.select_row(4)  # vmstat: a file collected
        await shot(window, "07-run-finished-collected-file.png")
        view.detail.select_row(2)  # 1.6 MB of output
        await shot(window, "08-large-output.png")

        window.tabs.setCurrentIndex(window.RESULTS_TAB)
        results = window.results
        results.select_row(len(results.model.entries) - 1)
        results.detail.tabs.setCurrentIndex(1)
        await shot(window, "09-results-timeline-window.png")
        for _ in range(2):  # the warm-up twice more: the history compares its runs
            finished.clear()
            assert window.start_run(["warmup"])
            await wait_until(lambda: finished, 30)

        saved = window.save_logs(run, str(work / "storage-bench_results.json"))
        assert saved, window.errors
        window.dry_run()
        dialog = window.dialogs[-1]
        await shot(dialog, "10-dry-run.png")
        dialog.close()

        # ---- a fleet of 36
        fleet = [stack.enter_context(started(token)) for _ in range(FLEET)]
        config = work / "fleet-nightly.cfg"
        config.write_text(fleet_config([agent.port for agent in fleet]))
        window.editor.editor.document().setModified(False)
        window.open_path(str(config))
        settings.manual_hosts = []
        window.hosts.set_manual_targets([], settings.default_port)
        async with silent_hosts(3) as ports:
            for port in ports:
                window.hosts.add_target(f"127.0.0.1:{port}")
            window.check_hosts()
            hosts = window.hosts.model
            await wait_until(lambda: sum(row.check is not None for row in hosts.rows) >= FLEET, 30)
            reachable = hosts.COLUMNS.index("Reachable")  # the hosts still checking first
            window.hosts.table.sortByColumn(reachable, Qt.SortOrder.AscendingOrder)
            await shot(window, "11-fleet-check-hosts.png")
            await wait_signal(window.controller.check_finished, 30)
        window.hosts.set_manual_targets([], settings.default_port)

        finished.clear()
        window.run_all()
        detail = view.detail
        await wait_until(
            lambda: (
                detail.test is not None
                and sum(c.started_at is not None for h in detail.test.hosts for c in h.commands)
                == FLEET
            ),
            30,
        )
        await asyncio.sleep(1.6)
        detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
        await shot(window, "12-fleet-running-timeline.png")
        await wait_until(lambda: finished, 60)
        detail.tabs.setCurrentIndex(detail.OUTPUT_TAB)
        detail.select_row(FAILING[0])
        await shot(window, "13-fleet-finished-with-problems.png")
        detail.output.fold_check.setChecked(True)
        await shot(window, "14-fleet-grouped-outputs.png")
        detail.output.fold_check.setChecked(False)
        detail.filter.problems.setChecked(True)
        detail.table.sortByColumn(detail.model.COLUMNS.index("State"), Qt.SortOrder.AscendingOrder)
        detail.select_row(FAILING[0])
        await shot(window, "15-fleet-problems-only.png")
        detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
        await shot(window, "16-fleet-problems-timeline.png")
        detail.filter.problems.setChecked(False)
        detail.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        await shot(window, "17-fleet-window-timeline.png")
        detail.tabs.setCurrentIndex(detail.OUTPUT_TAB)
        window.resize(1024, 700)
        await shot(window, "18-fleet-1024x700.png")
        window.resize(*SIZE)

        window.tabs.setCurrentIndex(window.RESULTS_TAB)
        results.sources.setCurrentIndex(results.HISTORY_TAB)
        history = results.history
        history.reload()
        rows = [r.config_path.endswith("storage-bench.cfg") for r in history.model.records]
        history.table.selectRow(rows.index(True))  # the last warm-up
        history.test_choice.setCurrentText("warmup")
        await shot(window, "19-history.png")

        window.editor.editor.document().setModified(False)
        window.close()


def run() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots"
    return offscreen(out, main)


def offscreen(out: Path, shoot: Callable[[Path, Path], Awaitable[None]]) -> int:
    """SHOOT(out, work) in an offscreen Qt application on a screen larger than the
    window, with its settings, run folders and history in a temporary WORK folder."""
    with tempfile.TemporaryDirectory(prefix="netjobs-shots-") as temp:
        work = Path(temp)
        out.mkdir(parents=True, exist_ok=True)
        screen = work / "screen.json"
        screen.write_text(json.dumps(SCREEN))
        os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={screen}"
        os.environ["NETJOBS_GUI_SETTINGS_DIR"] = str(work / "settings")
        os.environ["XDG_DATA_HOME"] = str(work / "data")  # run folders and the history

        import qasync
        from PySide6.QtWidgets import QApplication

        from netjobs_gui.app import make_app

        app = make_app([sys.argv[0]])
        assert isinstance(app, QApplication)
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            runner.run(shoot(out.resolve(), work))
    return 0


if __name__ == "__main__":
    sys.exit(run())
