"""run.Run, the one owner of a run: against real agents, what it writes and tells."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from netjobs_core import history, logs
from netjobs_core.config import Plan, parse_config
from netjobs_core.events import CommandOutput, TestFinished
from netjobs_core.results import CommandStatus, TestStatus
from netjobs_core.results_json import load_json, run_to_json
from netjobs_core.run import NotWritten, Run, RunEnded, RunEvent, Written
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.session import EXIT_FAILED, UsageError

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]


def write_plan(tmp_path: Path, body: str, agents: list[Any]) -> Plan:
    """The config file `owned.cfg`, its targets `{a0}`... the agents."""
    text = body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)})
    (tmp_path / "owned.cfg").write_text(text)
    return parse_config(text, str(tmp_path / "owned.cfg"))


def options(token: Any, tmp_path: Path, **kwargs: Any) -> RunOptions:
    folder = RunFolder.create(tmp_path / "runs")
    return RunOptions(token=token.token, connect_timeout=5.0, run_folder=folder, **kwargs)


async def test_results_json_is_rewritten_as_each_test_ends_and_the_run_is_in_the_history(
    agents, token, tmp_path
):
    plan = write_plan(tmp_path, 't:\n{a0}: "echo one"\nend\nu:\n{a1}: "exit 3"\nend\n', agents)
    run = Run(plan, options(token, tmp_path), log=True)
    events: list[RunEvent] = []
    on_disk: list[list[str]] = []  # results.json's tests, as each TestFinished is heard
    inodes: list[int] = []  # each write replaces the file (atomic): a new inode

    def observe(event: RunEvent) -> None:
        events.append(event)
        if isinstance(event, TestFinished):
            on_disk.append([t.label for t in load_json(run.folder.json_path).tests])
            inodes.append(run.folder.json_path.stat().st_ino)

    run.subscribe(observe)
    async with run:
        result = await run.run()
    assert [t.status for t in result.tests] == [TestStatus.PASSED, TestStatus.FAILED]
    assert on_disk == [["t"], ["t", "u"]]  # written before anyone hears of the end
    # The last test's end wrote the whole result: the run's end does not write it again.
    assert run.folder.json_path.stat().st_ino == inodes[-1]
    assert json.loads(run.folder.json_path.read_text()) == run_to_json(result, run.folder.path)
    saved = load_json(run.folder.json_path)
    assert saved.run_id == result.run_id == run.folder.run_id
    assert saved.tests[0].hosts[0].commands[0].stdout.read_bytes() == b"one\n"

    # Each test's -l log as it ended, beside the config; RunEnded last, with the outcome.
    written = [e for e in events if isinstance(e, Written)]
    assert [e.kind for e in written] == ["log", "log"]
    assert all(e.path is not None and e.path.parent == tmp_path for e in written)
    assert written[0].path is not None and "echo one" in written[0].path.read_text()
    assert isinstance(events[-1], RunEnded) and events[-1].outcome is run.outcome
    assert run.outcome.unsaved == [] and run.outcome.history_problem is None
    assert run.outcome.exit_code == EXIT_FAILED  # test u failed

    with history.History() as store:
        record = store.find(result.run_id)
    assert record.json_path == run.folder.json_path
    assert record.config_text is not None and '"echo one"' in record.config_text


async def test_a_results_json_that_cannot_be_written_is_told_and_makes_the_run_fail(
    agents, token, tmp_path
):
    plan = write_plan(tmp_path, 't:\n{a0}: "true"\nend\n', agents)
    run = Run(plan, options(token, tmp_path), in_history=False)
    run.folder.json_path.mkdir()  # not a file: every write of it fails, root or not
    problems: list[NotWritten] = []
    run.subscribe(lambda e: problems.append(e) if isinstance(e, NotWritten) else None)
    async with run:
        result = await run.run()
    assert result.tests[0].status is TestStatus.PASSED
    # As the test ended, and once more at the end.
    assert [p.what for p in problems] == ["the run's results.json"] * 2
    assert problems[0].where == str(run.folder.json_path)
    (unsaved,) = run.outcome.unsaved
    assert unsaved.startswith(f"the run's results.json ({run.folder.json_path}: ")
    assert run.outcome.exit_code == EXIT_FAILED


async def test_a_run_stopped_before_its_first_test_is_written_at_its_end(agents, token, tmp_path):
    plan = write_plan(tmp_path, 't:\n{a0}: "true"\nend\n', agents)
    run = Run(plan, options(token, tmp_path), in_history=False)
    async with run:
        assert load_json(run.folder.json_path).started_at is None  # as it was entered
        run.stop("stopped at once")
        result = await run.run()
    assert [(t.label, t.status, t.reason) for t in result.tests] == [
        ("t", TestStatus.PENDING, "stopped at once")  # not run, and why
    ]
    assert result.started_at is not None
    assert json.loads(run.folder.json_path.read_text()) == run_to_json(result, run.folder.path)


async def test_stop_goes_through_the_owner_and_a_cancelled_run_still_keeps_its_files(
    agents, token, tmp_path
):
    plan = write_plan(
        tmp_path, 't:\n{a0}: "echo begun; sleep 30"\nend\nu:\n{a1}: "true"\nend\n', agents
    )
    run = Run(plan, options(token, tmp_path))
    ended: list[RunEnded] = []

    def observe(event: RunEvent) -> None:
        if isinstance(event, CommandOutput) and not run.stopped:
            run.stop("stopped by the test")
        elif isinstance(event, RunEnded):
            ended.append(event)

    run.subscribe(observe)
    async with run:
        result = await run.run()
    # No further test after a stop: the next one is kept as not run, saved at the end.
    assert [(t.label, t.status) for t in result.tests] == [
        ("t", TestStatus.ABORTED),
        ("u", TestStatus.PENDING),
    ]
    assert result.tests[0].reason == "stopped by the test"
    saved = load_json(run.folder.json_path).tests
    assert len(ended) == 1 and [(t.label, t.status) for t in saved] == [
        ("t", TestStatus.ABORTED),
        ("u", TestStatus.PENDING),
    ]

    # Cancelled from outside (the GUI's window going away): files and history still kept.
    run = Run(plan, options(token, tmp_path))
    started = asyncio.Event()
    run.subscribe(lambda e: started.set() if isinstance(e, CommandOutput) else None)
    ended.clear()
    run.subscribe(lambda e: ended.append(e) if isinstance(e, RunEnded) else None)

    async def owned() -> None:
        async with run:
            await run.run()

    task = asyncio.create_task(owned())
    await asyncio.wait_for(started.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ended) == 1
    (test,) = load_json(run.folder.json_path).tests
    # We left before its end: what it did from then on is not ours to say (LOST, with
    # when its host was last heard), not a kill we never saw confirmed.
    (command,) = test.hosts[0].commands
    assert command.status is CommandStatus.LOST and command.lost_at is not None
    assert "the controller left before its end" in command.message
    assert "output from then on was not collected" in command.message
    assert command.stdout.read_bytes() == b"begun\n"
    with history.History() as store:
        assert store.find(run.result.run_id).json_path == run.folder.json_path


async def test_the_dialer_is_in_the_options_before_the_runner_exists(token, tmp_path):
    pytest.importorskip("asyncssh")
    from netjobs_core.ssh import SshDialer, SshOptions

    plan = parse_config('t:\nssh://nobody@192.0.2.1: "true"\nend\n', "ssh.cfg")
    ssh = SshOptions(accept_new=True)
    run = Run(plan, options(token, tmp_path), ssh=ssh, in_history=False)
    assert isinstance(run.options.dialer, SshDialer) and run.options.dialer.options is ssh
    assert run._runner.options.dialer is run.options.dialer  # complete when it was made
    async with run:  # nothing run: its first host dialled ahead, closed on leaving all the same
        pass
    assert run.outcome.exit_code == EXIT_FAILED and load_json(run.folder.json_path).tests == []

    tcp = Run(parse_config('t:\n127.0.0.1:1: "true"\nend\n', "tcp.cfg"), options(token, tmp_path))
    assert tcp.options.dialer is None
    with pytest.raises(ValueError, match="makes its own dialer"):
        Run(plan, RunOptions(token=token.token, dialer=run.options.dialer))


def test_result_files_that_cannot_be_written_are_refused_before_anything_runs(token, tmp_path):
    plan = parse_config('t:\n127.0.0.1:1: "true"\nend\n', str(tmp_path / "gone" / "x.cfg"))
    with pytest.raises(UsageError, match="cannot write the -l logs"):
        Run(plan, options(token, tmp_path), log=True)
    with pytest.raises(UsageError, match="cannot write the --json file"):
        Run(plan, options(token, tmp_path), json_path=str(tmp_path / "gone" / "r.json"))
    assert logs.log_path(plan.path, "t", 0).parent == tmp_path / "gone"
