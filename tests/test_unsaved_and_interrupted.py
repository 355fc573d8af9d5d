"""Point 5 of issue 18: a test whose output the controller could not save is no pass
("passed, output not saved"), and a run killed before its end is in the run history,
as interrupted. Real agents, a real small tmpfs, a real `netjobs` killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netjobs_core import text
from netjobs_core.history import History
from netjobs_core.outputs import Output
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import load_json, write_json
from netjobs_core.verdict import verdict
from netjobs_core.vocabulary import word
from netjobs_core.wire.address import Address

pytestmark = [pytest.mark.timeout(120), pytest.mark.posix]


def _netjobs(*args, data: Path, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "XDG_DATA_HOME": str(data)},
        stdin=subprocess.DEVNULL,
    )


def _host(*commands: CommandResult) -> HostResult:
    return HostResult(Address("h1", 9), HostState.DONE, commands=list(commands))


def _ok(stdout: Output | None = None) -> CommandResult:
    return CommandResult("x", 1, CommandStatus.OK, 0, stdout=stdout or Output())


def test_a_pass_whose_output_was_not_saved_is_no_pass(tmp_path):
    lost = Output.from_bytes(b"evidence")
    lost.error = "cannot write /r/cmd0.stdout: No space left on device"
    status, reason = verdict([_host(_ok(lost)), _host(_ok())], None, 2)
    assert status is TestStatus.UNSAVED and word(status) == "passed, output not saved"
    assert reason == (
        "the output of 1 command could not be saved "
        "(first: h1:9: cannot write /r/cmd0.stdout: No space left on device)"
    )
    files = _ok()
    files.not_saved.append("data.bin")  # a collected file the controller could not write
    assert verdict([_host(files)], None, 1)[0] is TestStatus.UNSAVED
    # Only a pass becomes one: a failure stays a failure.
    failed = CommandResult("x", 1, CommandStatus.FAILED, 1, stdout=lost)
    assert verdict([_host(failed)], None, 1)[0] is TestStatus.FAILED
    assert verdict([_host(_ok())], None, 1) == (TestStatus.PASSED, "")
    # The JSON keeps the fact, and a run with it did not pass.
    run = RunResult("c.cfg", tests=[TestResult("t", None, status=status, reason=reason)])
    write_json(run, tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["passed"] is False and document["tests"][0]["status"] == "unsaved"
    assert load_json(tmp_path / "r.json").tests[0].status is TestStatus.UNSAVED


@contextlib.contextmanager
def _small_disk(path: Path, size: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_results_disk_reads_passed_output_not_saved(tmp_path, agents, token_file):
    cfg = tmp_path / "big.cfg"
    cfg.write_text(f't:\n127.0.0.1:{agents[0].port}: "head -c 3000000 /dev/zero"\nend\n')
    out = tmp_path / "r.json"
    with _small_disk(tmp_path / "disk", "1m") as disk:
        run = _netjobs(
            "--token-file", token_file, "--results", disk, "--json", out, cfg, data=tmp_path
        )
    assert run.returncode == 1, run.stderr
    assert "test 't': PASSED, OUTPUT NOT SAVED (the output of 1 command could not" in run.stdout
    assert "No space left on device" in run.stdout
    document = json.loads(out.read_text())
    assert document["passed"] is False
    [test] = document["tests"]
    assert test["status"] == "unsaved"
    assert "No space left on device" in test["hosts"][0]["commands"][0]["stdout_error"]
    listed = _netjobs("history", data=tmp_path)
    assert f"1 passed, output not saved  {cfg}" in listed.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_show_says_a_results_file_the_full_disk_kept_from_the_start_is_not_the_end(
    tmp_path, agents, token_file
):
    # Before: `netjobs show` printed the results.json written as the test started
    # ("test 't': RUNNING", the command PENDING) as if it were how the run ended.
    cfg = tmp_path / "big.cfg"
    cfg.write_text(f't:\n127.0.0.1:{agents[0].port}: "head -c 3000000 /dev/zero"\nend\n')
    with _small_disk(tmp_path / "disk", "1m") as disk:
        run = _netjobs("--token-file", token_file, "--results", disk, cfg, data=tmp_path)
        assert run.returncode == 1 and "NOT SAVED: the run's results.json" in run.stderr
        shown = _netjobs("show", "last", data=tmp_path)
        as_json = _netjobs("show", "last", "--json", data=tmp_path)
    first = shown.stdout.splitlines()[0]
    assert "its results.json was not written at its end" in first
    assert "the history recorded: 1 passed, output not saved" in first
    assert "test 't': RUNNING" in shown.stdout  # what the file holds, said for what it is
    assert "its results.json was not written at its end" in as_json.stderr
    assert json.loads(as_json.stdout)["tests"][0]["status"] == "running"


def test_the_history_keeps_a_run_as_it_starts_until_it_ends(tmp_path):
    run = RunResult("c.cfg", run_id="r1", results_dir=str(tmp_path))
    with History(tmp_path / "h.sqlite3") as history:
        history.record(run, None, ended=False)
        [started] = history.recent()
        assert not started.ended and text.record_summary(started) == "interrupted"
        run.tests.append(TestResult("t", None, status=TestStatus.PASSED))
        history.record(run, None)
        [ended] = history.recent()
        assert ended.ended and text.record_summary(ended) == "1 test passed"


@pytest.mark.timeout(120)
def test_a_run_killed_mid_test_is_in_the_history_as_interrupted(tmp_path, agents, token_file):
    marker = tmp_path / "begun"
    cfg = tmp_path / "long.cfg"
    command = f"head -c 600000 /dev/zero; touch {marker}; sleep 60"
    cfg.write_text(f't:\n127.0.0.1:{agents[0].port}: "{command}"\nend\n')
    controller = subprocess.Popen(
        [sys.executable, "-m", "netjobs_core.cli", "--token-file", str(token_file), str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 30
        # Begun, and its output on the controller's disk (past the bytes held in memory).
        while not marker.exists() or not any(
            f.stat().st_size for f in tmp_path.glob("netjobs/runs/*/t/*/cmd0.stdout")
        ):
            assert time.monotonic() < deadline, "the command never started"
            assert controller.poll() is None, "the controller ended"
            time.sleep(0.05)
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        controller.kill()
        controller.wait()
    listed = _netjobs("history", data=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.endswith(f"interrupted  {cfg}")
    run_id = line.split()[0]
    shown = _netjobs("show", run_id, data=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "test 't': RUNNING" in shown.stdout
    assert f"\nrun {run_id}: interrupted before its end\n" in shown.stdout
    # What its results.json, written as the test started, does not count: the output on
    # disk, which came as it was written until the controller was lost.
    kept = shown.stdout.split(f"run {run_id}: interrupted before its end\n", 1)[1]
    (stdout,) = tmp_path.glob("netjobs/runs/*/t/*/cmd0.stdout")
    on_disk = text.size(stdout.stat().st_size)
    assert kept.startswith("output on disk in ") and f"1 file, {on_disk}" in kept
    assert re.search(rf"\n  t/127\.0\.0\.1_\d+/cmd0\.stdout  {re.escape(on_disk)}\n", kept)
    # Said first: the states shown are a snapshot from before the controller was lost.
    first = f"run {run_id}: interrupted before its end, its controller lost: the states "
    assert shown.stdout.startswith(first)
    assert "not current" in shown.stdout.splitlines()[0]
    for form in ("--json", "--csv"):  # the document alone on stdout, the words on stderr
        printed = _netjobs("show", run_id, form, data=tmp_path)
        assert printed.returncode == 0 and printed.stderr.startswith(first)
        assert "interrupted" not in printed.stdout
    assert json.loads(_netjobs("show", run_id, "--json", data=tmp_path).stdout)["tests"]
