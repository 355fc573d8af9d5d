"""Screenshots of the Overview, the Run page and Compare after real runs of 100 local
agents (issue 23), offscreen at 1280x800.

    .venv/bin/python docs/tools/screenshots_fleet.py [OUTPUT_DIR] [--agents N]

Starts N (100) real agents, each on its own loopback address (127.0.1.1, 127.0.1.2,
...) with a fresh token, plus one agent holding another token (authentication
fails) and one port nothing listens on (refused). The window runs the config twice
through the real runner; nothing shown is made up. Takes 1-3 minutes on a 2-CPU
machine (starting the agents is most of it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "gui")]  # test helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_screenshots import SIZE, offscreen  # noqa: E402

COMMAND = "dd if=/dev/zero of=/dev/null bs=1M count=64 2>&1 | tail -n 1"


def free_port() -> int:
    """A port nothing listens on (bound, then closed): connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(targets: list[str], minhosts: int) -> str:
    lines = [
        "# 100 local agents, one holding another token, one port nothing listens on.",
        "fleet:",
        "-generaltimeout: 2m",
        f"-minhosts: {minhosts}",
        *(f'{target}: "{COMMAND}"' for target in targets),
        "end",
        "",
    ]
    return "\n".join(lines)


async def main(out: Path, work: Path, count: int) -> None:
    from agent_harness import start_agent
    from qt_async import wait_until

    from netjobs_core.wire.tokens import generate_token_file
    from netjobs_gui import prompts
    from netjobs_gui.columns import SessionEntry
    from netjobs_gui.compare_view import CompareDialog
    from netjobs_gui.main_window import MainWindow
    from netjobs_gui.settings import Settings

    prompts.ask_unsaved = lambda parent, name: "discard"  # type: ignore[assignment]

    async def shot(widget, name: str) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)  # let the loop lay out and paint
        path = out / name
        if not widget.grab().save(str(path)):
            raise SystemExit(f"cannot write {path}")
        print(path)

    token, other = work / "token", work / "other-token"
    generate_token_file(token)
    generate_token_file(other)
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(8) as pool:  # each start waits for its agent to listen
            starts = [
                pool.submit(start_agent, token, bind=f"127.0.1.{k}") for k in range(1, count + 1)
            ]
            stranger = pool.submit(start_agent, other, bind="127.0.2.1")
            agents = [stack.enter_context(s.result()) for s in starts]
            wrong = stack.enter_context(stranger.result())
        print(f"{len(agents)} agents started")
        targets = [f"127.0.1.{k}:{a.port}" for k, a in enumerate(agents, 1)]
        targets += [f"127.0.2.1:{wrong.port}", f"127.0.0.1:{free_port()}"]
        path = work / "fleet-100.cfg"
        path.write_text(config(targets, count))

        settings = Settings()
        settings.token_file = str(token)
        window = MainWindow(settings)
        window.resize(*SIZE)
        window.show()
        window.open_path(str(path))
        finished: list[object] = []
        window.controller.run_finished.connect(finished.append)
        runs = []
        for _ in range(2):  # twice: Compare shows the two
            finished.clear()
            window.run_all()
            await wait_until(lambda: finished, 240, "the run's end")
            runs.append(finished[0])
        view = window.run_view
        detail = view.detail
        window.tabs.setCurrentIndex(window.RUN_TAB)
        view.refresh()
        detail.tabs.setCurrentIndex(detail.OVERVIEW_TAB)
        detail.splitter.setSizes([220, 560])
        test = detail.test
        assert test is not None
        late = sorted(test.late_hosts(), key=lambda pair: -pair[1])  # the latest first
        chosen = test.hosts.index(late[0][0]) if late else len(test.hosts) - 1
        detail.select_host(chosen)
        await shot(window, "20-overview-100-hosts.png")
        detail.tabs.setCurrentIndex(detail.OUTPUT_TAB)
        detail.splitter.setSizes([400, 380])
        began = {i: h.commands[0].exec_offset_ms or 0.0 for i, h in enumerate(test.hosts)}
        detail.select_host(max(began, key=began.__getitem__))  # the last to begin
        await shot(window, "23-run-100-hosts.png")

        entries = [SessionEntry(run, run.tests[0], f"run {n}") for n, run in enumerate(runs, 1)]
        dialog = CompareDialog(entries)
        dialog.only_differing.setChecked(False)  # every host, A beside B
        dialog.resize(*SIZE)
        dialog.show()
        await shot(dialog, "22-compare-results.png")
        dialog.close()
        window.editor.editor.document().setModified(False)
        window.close()


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    return offscreen(Path(args.out), lambda out, work: main(out, work, args.agents))


if __name__ == "__main__":
    sys.exit(run())
