"""Run ▸ Run Options: built from the command line's table of flags, kept between sessions,
and what a run from the window then does (issue 23, point 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qt_async import wait_signal

from netjobs_core.history import History
from netjobs_core.results import StartMode
from netjobs_core.run_flags import FLAGS, Where
from netjobs_gui.options_form import OptionsError, RunOptionsForm, stored_values
from netjobs_gui.settings import Settings


def test_the_form_has_a_field_for_every_form_flag(settings: Settings) -> None:
    form = RunOptionsForm(settings.store)
    assert set(form.fields) == {f.dest for f in FLAGS if f.gui is Where.OPTIONS}
    for each in FLAGS:
        if each.gui is Where.OPTIONS:  # its flag and help on the field
            assert form.fields[each.dest].toolTip().startswith(each.names[0])
        if each.gui is Where.SETTINGS:
            assert isinstance(getattr(Settings, each.setting), property), each.setting


def test_a_bad_value_is_named_and_not_kept(settings: Settings) -> None:
    form = RunOptionsForm(settings.store)
    form.set_text("repeat", "0")
    assert form.problem.text() == "Repeat each test: must be 1 or more, not 0"
    assert not form.save()
    form.set_text("repeat", "3")
    form.set_text("collect_max", "200M")
    form.set_text("start_mode", "sequential")
    form.set_text("no_history", "1")
    assert form.problem.text() == ""
    assert form.save()
    values = stored_values(settings.store)
    assert values["repeat"] == 3
    assert values["collect_max"] == 200 * 1024**2
    assert values["start_mode"] == StartMode.SEQUENTIAL
    assert values["no_history"] is True
    assert values["inline_limit"] == 1024**2  # left empty: the command line's default
    assert values["connect_timeout"] == settings.connect_timeout  # from Settings
    # A new form shows what was kept.
    again = RunOptionsForm(settings.store)
    assert again.texts()["repeat"] == "3" and again.texts()["start_mode"] == "sequential"


def test_a_stored_value_no_longer_valid_is_refused_in_words(settings: Settings) -> None:
    settings.store.setValue("run_options/repeat", "many")
    with pytest.raises(OptionsError, match="Run Options ▸ Repeat each test: not a whole number"):
        stored_values(settings.store)


@pytest.mark.timeout(60)
@pytest.mark.posix
async def test_a_run_uses_repeat_results_folder_and_no_history(
    window: Any, settings: Settings, token_file: Path, agents: list[Any], tmp_path: Path
) -> None:
    settings.token_file = str(token_file)
    form = RunOptionsForm(settings.store)
    form.set_text("repeat", "2")
    form.set_text("results", str(tmp_path / "my-runs"))
    form.set_text("no_history", "1")
    assert form.save()
    agent = agents[0]
    config = tmp_path / "one.cfg"
    config.write_text(f't:\n{agent.host}:{agent.port}: "echo hi"\nend\n')
    assert window.open_path(str(config))
    with History() as history:
        before = [r.run_id for r in history.recent(1000)]
    window.run_action.trigger()
    assert "repeat each test: 2" in window.statusBar().currentMessage()
    assert "do not record in the run history" in window.statusBar().currentMessage()
    (run,) = await wait_signal(window.controller.run_finished, 30)
    assert [t.repetition for t in run.tests] == [1, 2]
    assert Path(run.results_dir).parent == tmp_path / "my-runs"
    document = json.loads((Path(run.results_dir) / "results.json").read_text())
    assert len(document["tests"]) == 2
    with History() as history:
        assert [r.run_id for r in history.recent(1000)] == before


async def test_a_results_folder_that_cannot_be_made_is_said(
    window: Any, settings: Settings, token_file: Path, tmp_path: Path, answers: Any
) -> None:
    settings.token_file = str(token_file)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings.store.setValue("run_options/results", str(blocker))
    config = tmp_path / "one.cfg"
    config.write_text('t:\n127.0.0.1:1: "true"\nend\n')
    assert window.open_path(str(config))
    assert not window.start_run(None)
    assert window.errors[-1] == (
        "Cannot start the run",
        f"cannot make the run's folder in {blocker}: File exists. Nothing was run.",
    )
    assert not window.controller.running
