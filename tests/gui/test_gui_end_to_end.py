"""The window against real local agents: open, check hosts, run, watch, stop, save, close."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from agent_harness import free_port, pid_alive  # tests/agent_harness.py
from PySide6.QtCore import QTimer
from qt_async import wait_signal, wait_until

from netjobs_agent import oskit
from netjobs_core import __version__, logs
from netjobs_core.results import CommandStatus, TestStatus
from netjobs_core.results_json import run_to_json
from netjobs_gui.run_view import MAX_OUTPUT_LINES

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]


@pytest.fixture
def gui(window: Any, settings: Any, token_file: Path) -> Any:
    """The window, its settings pointed at the agents' token file."""
    settings.token_file = str(token_file)
    settings.connect_timeout = 5.0
    return window


def write_config(path: Path, body: str, agents: list[Any]) -> Path:
    targets = {f"a{i}": f"{agent.host}:{agent.port}" for i, agent in enumerate(agents)}
    path.write_text(body.format(**targets))
    return path


def column(model: Any, name: str) -> list[str]:
    c = model.COLUMNS.index(name)
    return [model.data(model.index(r, c)) for r in range(model.rowCount())]


PLAN = """\
# end-to-end
quick:
-generaltimeout: 20s
-minhosts: all
{a0}: "echo out-1; echo err-1 >&2"
{a1}: "echo out-2; exit 3"
{a2}: "sleep 0.3; echo out-3"
{a2}: "printf 'second\\n'"
end

second:
{a0}: "true"
end
"""


async def test_open_check_run_watch_and_save(gui: Any, agents: list[Any], tmp_path: Path) -> None:
    config = write_config(tmp_path / "plan.cfg", PLAN, agents)
    assert gui.open_path(str(config))
    assert gui.editor.error is None

    # ---- hosts: the config's three, plus a hand-added one nobody listens on
    dead_port = free_port()
    assert gui.hosts.add_target(f"127.0.0.1:{dead_port}")
    assert len(gui.hosts.model.rows) == 4
    gui.check_action.trigger()
    (checks,) = await wait_signal(gui.controller.check_finished, 20)
    assert len(checks) == 4
    hosts = gui.hosts.model
    assert column(hosts, "Reachable") == ["✔ yes"] * 3 + ["✘ no"]
    assert column(hosts, "Authenticated")[:3] == ["✔ yes"] * 3
    assert column(hosts, "Agent")[:3] == [__version__] * 3
    assert column(hosts, "Busy")[:3] == ["idle"] * 3
    assert all(text.endswith(" ms") for text in column(hosts, "Round trip")[:3])
    assert all("±" in text for text in column(hosts, "Clock offset")[:3])
    assert "connection refused" in column(hosts, "Error")[3]
    assert hosts.summary() == "4 hosts: 3 ready, 1 with problems"
    # The selected host in full, with how its agent waits for a release.
    gui.hosts.table.setCurrentIndex(gui.hosts.table.model().index(0, 0))
    details = gui.hosts.details.text()
    assert f"agent {__version__} on " in details and ", idle, releases at " in details
    permitted = oskit.realtime_refused() is None
    assert ("real-time priority" in details) is permitted

    # ---- run everything (F5)
    gui.run_action.trigger()
    assert gui.controller.running and gui.stop_action.isEnabled()
    (run,) = await wait_signal(gui.controller.run_finished, 30)
    assert not gui.controller.running and not gui.stop_action.isEnabled()
    assert [t.status for t in run.tests] == [TestStatus.FAILED, TestStatus.PASSED]
    view = gui.run_view
    assert column(view.tests_model, "Status") == ["failed", "passed"]
    assert column(view.tests_model, "Progress") == ["4/4", "1/1"]
    assert view.progress.value() == view.progress.maximum() == 5
    assert "1 failed, 1 passed" in view.status.text()

    view.select_label("quick")
    detail = view.detail
    assert column(detail.model, "State") == ["ok", "failed", "ok", "ok"]
    assert column(detail.model, "Exit") == ["0", "3", "0", "0"]
    # Every number with its unit: "released within 0.591 ms ± 0.162 ms", never a bare "± 0.162";
    # then when the commands began, or why that was not measured.
    summary = detail.summary.text()
    assert re.search(r"released within \d+\.\d{3} ms ± \d+\.\d{3} ms; ", summary)
    assert re.search(r"; (commands began within \d+\.\d{3} ms ± \d+\.\d{3} ms|when the )", summary)
    assert "3 hosts" in detail.summary.text()
    # Every offset with its unit (a release later than --late-ms says so in Message).
    offset = re.compile(r"[+-]\d+\.\d{3} ms")
    assert all(offset.fullmatch(text) for text in column(detail.model, "Start offset"))
    assert float(column(detail.model, "Elapsed")[2].split()[0]) >= 0.25  # sleep 0.3
    # The selected command's output, both streams.
    detail.select_row(0)
    assert detail.output.stdout.text == "out-1\n"
    assert detail.output.stderr.text == "err-1\n"
    detail.select_row(3)
    assert detail.output.stdout.text == "second\n"

    # ---- the timeline of that test
    quick = run.tests[0]
    timeline = detail.timeline.data
    assert timeline is not None and timeline.label == "quick"
    assert len(timeline.rows) == 4
    assert [row.host for row in timeline.rows] == [
        f"{a.host}:{a.port}" for a in (*agents, agents[2])
    ]
    assert timeline.scheduled and timeline.common_start == quick.scheduled_start
    assert timeline.spread_ms == quick.start_spread_ms is not None
    assert timeline.spread_uncertainty_ms == quick.start_spread_uncertainty_ms
    starts = [row.start_ms for row in timeline.rows]
    assert all(s is not None and abs(s) < 200 for s in starts)
    assert max(starts) - min(starts) == pytest.approx(quick.start_spread_ms, abs=1e-3)
    assert timeline.rows[2].duration_ms >= 250
    assert [row.exit_code for row in timeline.rows] == [0, 3, 0, 0]
    detail.tabs.setCurrentIndex(1)
    assert not detail.timeline.grab().isNull()

    # ---- results: both tests listed; Save log writes the CLI's files
    results = gui.results
    assert [e.test.label for e in results.model.entries] == ["quick", "second"]
    json_path = tmp_path / "out" / "results.json"
    json_path.parent.mkdir()
    written = gui.save_logs(run, str(json_path))
    assert written[-1] == json_path and len(written) == 3
    for test, log in zip(run.tests, written[:2], strict=True):
        # In the folder chosen, not beside the config; the status bar says where.
        assert log == logs.log_path(json_path.parent / config.name, test.label, test.started_at)
        assert log.read_text() == logs.format_test_log(test, str(config))
    assert json.loads(json_path.read_text()) == run_to_json(run)
    assert gui.statusBar().currentMessage().startswith(f"Saved 3 files in {json_path.parent}: ")

    # ---- opening the saved JSON shows it again
    loaded = gui.open_results(str(json_path))
    assert loaded is not None and gui.tabs.currentIndex() == gui.RESULTS_TAB
    assert len(results.model.entries) == 4
    assert results.model.entries[2].source == "results.json"
    results.select_row(2)
    assert results.detail.test is loaded.tests[0]
    assert column(results.detail.model, "State") == ["ok", "failed", "ok", "ok"]
    assert column(results.detail.model, "Exit") == ["0", "3", "0", "0"]
    assert results.detail.timeline.data.spread_ms == quick.start_spread_ms

    # A broken results file is an error in the window.
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert gui.open_results(str(bad)) is None
    assert gui.errors[-1][0] == "Cannot open the results"


async def test_run_selected_and_dry_run(gui: Any, agents: list[Any], tmp_path: Path) -> None:
    config = write_config(tmp_path / "plan.cfg", PLAN, agents)
    gui.open_path(str(config))
    gui.tabs.setCurrentIndex(gui.RUN_TAB)
    gui.run_view.select_label("second")
    gui.run_selected_action.trigger()
    (run,) = await wait_signal(gui.controller.run_finished, 30)
    assert [t.label for t in run.tests] == ["second"]
    assert column(gui.run_view.tests_model, "Status") == ["not run", "passed"]

    gui.dry_run_action.trigger()
    dialog = gui.dialogs[-1]
    text = dialog.text.toPlainText()
    assert "2 tests" in text and "test 'quick'" in text and "sleep 0.3" in text
    dialog.close()


async def test_no_token_is_an_error_in_the_window(
    gui: Any, settings: Any, tmp_path: Path, agents: list[Any]
) -> None:
    settings.token_file = str(tmp_path / "missing-token")
    gui.open_path(str(write_config(tmp_path / "plan.cfg", PLAN, agents)))
    gui.run_action.trigger()
    assert not gui.controller.running
    assert gui.errors[-1][0] == "No token" and "missing-token" in gui.errors[-1][1]
    assert "No token" in gui.statusBar().currentMessage()


SLEEPERS = """\
sleepers:
{a0}: "echo $$ > {pids}/0; echo started; exec sleep 30"
{a1}: "echo $$ > {pids}/1; exec sleep 30"
end

after:
{a0}: "true"
end
"""


def sleepers_config(tmp_path: Path, agents: list[Any]) -> tuple[Path, Path]:
    pids = tmp_path / "pids"
    pids.mkdir()
    config = tmp_path / "sleepers.cfg"
    targets = {f"a{i}": f"{agent.host}:{agent.port}" for i, agent in enumerate(agents)}
    config.write_text(SLEEPERS.format(pids=pids, **targets))
    return config, pids


def read_pids(pids: Path) -> list[int]:
    return [int((pids / name).read_text()) for name in ("0", "1")]


async def wait_running(gui: Any, pids: Path) -> list[int]:
    def started() -> bool:
        return all((pids / n).exists() and (pids / n).read_text().strip() for n in "01")

    await wait_until(started, 20, "both jobs to start")
    await wait_until(
        lambda: column(gui.run_view.detail.model, "State") == ["running", "running"],
        10,
        "the table to show both running",
    )
    return read_pids(pids)


async def test_stop_during_a_run_kills_the_jobs(
    gui: Any, agents: list[Any], tmp_path: Path
) -> None:
    config, pids = sleepers_config(tmp_path, agents)
    gui.open_path(str(config))
    gui.run_action.trigger()
    jobs = await wait_running(gui, pids)
    assert all(pid_alive(pid) for pid in jobs)
    output = gui.run_view.detail.output.stdout
    await wait_until(lambda: output.text == "started\n", 5, "the live output")

    began = time.monotonic()
    gui.stop_action.trigger()  # Esc
    (run,) = await wait_signal(gui.controller.run_finished, 20)
    assert time.monotonic() - began < 15
    # No further test after Stop: the next one is there, not run, and says why.
    assert [(t.label, t.status) for t in run.tests] == [
        ("sleepers", TestStatus.ABORTED),
        ("after", TestStatus.PENDING),
    ]
    assert run.tests[1].reason == "stopped by user"
    test = run.tests[0]
    assert test.status is TestStatus.ABORTED and test.reason == "stopped by user"
    assert {c.status for h in test.hosts for c in h.commands} == {CommandStatus.KILLED}
    assert column(gui.run_view.detail.model, "State") == ["killed", "killed"]
    await wait_until(lambda: all(not pid_alive(pid) for pid in jobs), 10, "the jobs to be killed")
    assert "aborted" in gui.run_view.status.text()
    not_run = gui.results.model.entries[-1]
    assert not_run.test is run.tests[1] and gui.results.model.entries[-2].test is test
    assert gui.results.current_entry.test is test  # the test that ran is the one shown
    # The Run page says why too, as the report's NOT RUN line (it said "not run yet").
    gui.run_view.select_label("after")
    summary = gui.run_view.detail.summary.text()
    assert "not run</b>: stopped by user" in summary, summary
    assert column(gui.run_view.tests_model, "Progress")[1] == "—"  # not "0/0"


async def test_closing_during_a_run_asks_then_stops_cleanly(
    gui: Any, answers: Any, agents: list[Any], tmp_path: Path
) -> None:
    config, pids = sleepers_config(tmp_path, agents)
    gui.open_path(str(config))
    gui.run_action.trigger()
    jobs = await wait_running(gui, pids)

    answers.stop_answer = False
    assert not gui.close()
    assert answers.stop_asked == 1 and gui.isVisible() and gui.controller.running

    answers.stop_answer = True
    assert not gui.close()  # not yet: the run is being stopped first
    assert answers.stop_asked == 2 and gui.controller.running
    assert not gui.close()  # asked once: a second close just waits
    assert answers.stop_asked == 2
    (run,) = await wait_signal(gui.controller.run_finished, 20)
    await wait_until(lambda: not gui.isVisible(), 5, "the window to close")
    assert run.tests[0].status is TestStatus.ABORTED
    assert run.tests[0].reason == "the controller window was closed"
    await wait_until(lambda: all(not pid_alive(pid) for pid in jobs), 10, "the jobs to be killed")


async def test_streaming_output_stays_bounded_and_responsive(
    gui: Any, agents: list[Any], tmp_path: Path
) -> None:
    """Three hosts x four commands pour out 12 x 150k lines; the UI keeps ticking."""
    body = (
        "flood:\n"
        + "".join(f'{{a{i}}}: "seq 1 150000"\n' for i in range(3) for _ in range(4))
        + "end\n"
    )
    gui.open_path(str(write_config(tmp_path / "flood.cfg", body, agents)))
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    progress = []
    gui.controller.progress.connect(lambda: progress.append(1))
    gui.run_action.trigger()
    (run,) = await wait_signal(gui.controller.run_finished, 40)
    timer.stop()
    assert run.tests[0].status is TestStatus.PASSED
    expected = len("\n".join(str(n) for n in range(1, 150001))) + 1
    assert all(len(c.stdout) == expected for h in run.tests[0].hosts for c in h.commands)
    # Output events were batched: far fewer refreshes than chunks received.
    assert len(progress) < 400
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and max(gaps) < 1.5, f"the event loop stalled for {max(gaps):.2f} s"
    stdout = gui.run_view.detail.output.stdout
    assert stdout.view.blockCount() <= MAX_OUTPUT_LINES + 1
    assert stdout.text.rstrip("\n").endswith("149999\n150000")
    assert "showing the end" in stdout.title.text()
