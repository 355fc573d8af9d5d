"""The CLI and the GUI start runs through the same owner (netjobs_core.run.Run), which
writes results.json and the history record for both: real agents, the real `netjobs`
entry point in this process, the real window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qt_async import wait_signal

from netjobs_core import cli, history
from netjobs_core.results_json import load_json
from netjobs_core.run import Run, RunEnded, RunEvent, RunObserver

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]

PLAN = 't:\n{a0}: "echo from-{who}"\n{a1}: "true"\nend\n'


@pytest.fixture
def owners(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Run, list[RunEvent]]]:
    """Every Run that starts, with every event it tells (the front end's observers are
    its only other listeners)."""
    started: list[tuple[Run, list[RunEvent]]] = []
    enter = Run.__aenter__

    async def entered(run: Run) -> Run:
        heard: list[RunEvent] = []
        listen: RunObserver = heard.append
        run.subscribe(listen)
        started.append((run, heard))
        return await enter(run)

    monkeypatch.setattr(Run, "__aenter__", entered)
    return started


def config(tmp_path: Path, agents: list[Any], who: str) -> Path:
    path = tmp_path / f"{who}.cfg"
    path.write_text(
        PLAN.format(who=who, a0=f"127.0.0.1:{agents[0].port}", a1=f"127.0.0.1:{agents[1].port}")
    )
    return path


def assert_owned(run: Run, heard: list[RunEvent], config_path: Path, who: str) -> None:
    """The owner wrote results.json into its folder and the run's history record."""
    assert isinstance(heard[-1], RunEnded) and heard[-1].outcome.unsaved == []
    saved = load_json(run.folder.json_path)
    assert saved.run_id == run.result.run_id
    assert saved.tests[0].hosts[0].commands[0].stdout.read_bytes() == f"from-{who}\n".encode()
    with history.History() as store:
        record = store.find(run.result.run_id)
    assert record.json_path == run.folder.json_path and record.passed
    assert record.config_path == str(config_path)


def test_the_cli_runs_through_the_owner(owners, agents, token_file, tmp_path, capsys):
    path = config(tmp_path, agents, "cli")
    assert cli.main(["--token-file", str(token_file), str(path)]) == 0
    ((run, heard),) = owners
    assert run.plan.path == str(path)
    assert_owned(run, heard, path, "cli")
    assert f"results folder: {run.folder.path}" in capsys.readouterr().err


async def test_the_gui_runs_through_the_owner(
    owners, window, settings, agents, token_file, tmp_path
):
    settings.token_file = str(token_file)
    path = config(tmp_path, agents, "gui")
    assert window.open_path(str(path))
    window.run_action.trigger()
    (result,) = await wait_signal(window.controller.run_finished, 30)
    ((run, heard),) = owners
    assert result is run.result and not window.controller.running
    assert_owned(run, heard, path, "gui")
