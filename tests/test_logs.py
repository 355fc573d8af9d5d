import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from netjobs_core import __version__
from netjobs_core.logs import format_test_log, log_path, write_test_log
from netjobs_core.outputs import Output
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    StartMode,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import (
    JSON_FORMAT,
    ResultsFileError,
    load_json,
    run_from_json,
    run_to_json,
    write_json,
)
from netjobs_core.wire.address import Address

RESULTS_V1 = Path(__file__).parent / "data" / "results-v1.json"


def sample_run() -> RunResult:
    test = TestResult(
        label="t1",
        minhosts=2,
        start_mode=StartMode.SEQUENTIAL,
        status=TestStatus.FAILED,
        reason="1 command failed",
        started_at=1_800_000_000.25,
        scheduled_start=None,
        duration_s=1.5,
        start_spread_ms=0.25,
        start_spread_uncertainty_ms=0.05,
    )
    host = HostResult(
        Address("::1", 16200),
        state=HostState.DONE,
        agent_version="3.0.0",
        hostname="box",
        rtt_ms=0.1,
        clock_offset_ms=-2.5,
        clock_uncertainty_ms=0.05,
        start_offset_ms=0.01,
        gated=True,
    )
    host.commands = [
        CommandResult(
            "echo a\tb",
            line=3,
            status=CommandStatus.OK,
            exit_code=0,
            stdout=Output.from_bytes(b"l1\nl2\n"),
            stderr=Output(),
            started_at=1_800_000_000.5,
            duration_s=0.01,
            timeout=30.0,
        ),
        CommandResult(
            "binary",
            line=4,
            status=CommandStatus.FAILED,
            exit_code=-9,
            stdout=Output.from_bytes(b"\xff\x00ok"),
            stderr=Output.from_bytes(b"caf\xc3\xa9"),
            message="killed by signal 9 (SIGKILL)",
        ),
    ]
    test.hosts.append(host)
    failed = HostResult(Address("down"), state=HostState.FAILED, error="connection refused")
    failed.commands = [
        CommandResult("x", line=5, status=CommandStatus.ERROR, message="connection refused")
    ]
    test.hosts.append(failed)
    return RunResult(config_path="/tmp/x.cfg", tests=[test])


def test_json_round_trip_is_exact(tmp_path):
    run = sample_run()
    path = tmp_path / "r.json"
    write_json(run, path)
    assert load_json(path) == run
    document = json.loads(path.read_text())
    command = document["tests"][0]["hosts"][0]["commands"][1]
    assert command["stdout"] == "\\xff\x00ok" and "stdout_base64" in command
    assert command["stderr"] == "café" and "stderr_base64" not in command
    assert document["tests"][0]["hosts"][0]["commands"][0]["timeout"] == 30.0
    assert command["timeout"] is None


def test_a_v1_document_still_loads():
    """tests/data/results-v1.json was written before the codec was driven by the fields:
    renaming a key, or reading one differently, fails here."""
    run = load_json(RESULTS_V1)
    first, second = run.tests
    assert run.config_path == "resources/examples/demo.cfg" and not run.passed
    assert (first.minhosts, first.start_mode, first.status) == (
        None,
        StartMode.SCHEDULED,
        TestStatus.FAILED,
    )
    assert (first.start_spread_ms, first.start_spread_uncertainty_ms) == (0.591, 0.162)
    assert (second.minhosts, second.start_mode, second.scheduled_start) == (
        1,
        StartMode.SEQUENTIAL,
        None,
    )
    (a,) = first.hosts
    assert (a.address, a.state, a.hostname, a.gated) == (
        Address("127.0.0.1", 16192),
        HostState.DONE,
        "node-a",
        True,
    )
    assert (a.rtt_ms, a.clock_offset_ms, a.clock_uncertainty_ms) == (0.21, -0.013, 0.105)
    ok, bad = a.commands
    assert (ok.command, ok.line, ok.status, ok.exit_code) == ("echo hello", 4, CommandStatus.OK, 0)
    assert (ok.stdout.read_bytes(), ok.started_at, ok.duration_s) == (
        b"hello\n",
        1764625000.125,
        0.0042,
    )
    assert ok.timeout is None  # not recorded before
    assert (bad.stdout.read_bytes(), bad.stderr.read_bytes(), bad.exit_code) == (
        b"\xff",
        b"oops\n",
        3,
    )
    b, c = second.hosts
    assert (b.address, b.state) == (Address("fd00::5", 16200), HostState.TIMEOUT)
    assert b.commands[0].message == "ran past its 2 s timeout"
    assert (c.state, c.error, c.commands) == (HostState.FAILED, "connection refused", [])


def test_a_key_missing_inside_a_list_is_an_error_not_an_empty_list():
    document = json.loads(RESULTS_V1.read_text())
    del document["tests"][0]["hosts"][0]["port"]
    with pytest.raises(KeyError, match="port"):
        run_from_json(document)
    document = json.loads(RESULTS_V1.read_text())
    del document["tests"][1]["hosts"][0]["commands"][0]["command"]
    with pytest.raises(KeyError, match="command"):
        run_from_json(document)


def test_keys_added_later_are_optional_on_reading():
    document = json.loads(RESULTS_V1.read_text())
    command = document["tests"][0]["hosts"][0]["commands"][0]
    for key in ("line", "message", "stdout", "stderr", "started_at", "duration_s"):
        del command[key]
    (loaded,) = run_from_json(document).tests[0].hosts[0].commands[:1]
    assert loaded == CommandResult("echo hello", status=CommandStatus.OK, exit_code=0)


def test_a_v1_document_round_trips_exactly():
    """Today's writer gives back the v1 document key for key, plus only the new keys."""
    document = json.loads(RESULTS_V1.read_text())
    again = run_to_json(run_from_json(document))
    new_keys = again.pop("run_id"), again.pop("results_dir"), again.pop("started_at")
    assert new_keys == ("", "", None)
    for test in again["tests"]:
        assert (test.pop("repetition"), test.pop("concurrent_window")) == (None, None)
        exec_spread = test.pop("exec_spread_ms"), test.pop("exec_spread_uncertainty_ms")
        assert exec_spread == (None, None)
        assert (test.pop("lead_ms"), test.pop("late_threshold_ms")) == (None, 1.0)
        assert test.pop("lead_set_by") is None
        assert test.pop("metrics") == {}
        for host in test["hosts"]:
            assert host.pop("interruptions") == []
            assert host.pop("interruptions_folded") == 0
            assert host.pop("wall_clock_offset_ms") is None  # v1 had only the monotonic one
            assert host.pop("credential") == ""  # v1 did not say what a host authenticated with
            assert host.pop("exec_error") == ""
            for command in host["commands"]:
                assert command.pop("release_late_ms") is command.pop("exec_offset_ms") is None
                assert command.pop("timeout") is None
                assert command.pop("lost_at") is None
                assert command.pop("collected") == command.pop("warnings") == []
                assert command.pop("not_saved") == command.pop("gaps") == []
                assert command.pop("metrics") == {}
                for stream in ("stdout", "stderr"):
                    data = (
                        base64.b64decode(command[f"{stream}_base64"])
                        if (f"{stream}_base64" in command)
                        else command[stream].encode()
                    )
                    assert command.pop(f"{stream}_bytes") == len(data)
                    assert command.pop(f"{stream}_sha256") == hashlib.sha256(data).hexdigest()
    assert again["format"] == JSON_FORMAT == "netjobs-results/2"
    assert document.pop("format") == "netjobs-results/1"
    again.pop("format")
    # The writer names itself; the document says which NetJobs wrote it.
    assert again.pop("netjobs_version") == __version__
    document.pop("netjobs_version")
    assert again == document


def test_log_name_is_the_2x_scheme(tmp_path):
    when = dt.datetime(2026, 11, 27, 19, 40, 1, 123456).timestamp()
    path = log_path(tmp_path / "demo.cfg", "test0", when)
    assert path.name == "demo.cfg_test0_2026-11-27T19.40.01.123456.log"


def test_a_repetitions_log_names_its_repetition_and_run(tmp_path):
    run = sample_run()
    run.run_id = "20261127-194001-3f2a"
    written = []
    for repetition in (1, 2):
        test = run.tests[0]
        test.repetition = repetition
        written.append(write_test_log(tmp_path / "x.cfg", test, run_id=run.run_id).name)
    stamp = written[0].removeprefix("x.cfg_t1_").split("_rep")[0]
    assert written == [
        f"x.cfg_t1_{stamp}_rep1_20261127-194001-3f2a.log",
        f"x.cfg_t1_{stamp}_rep2_20261127-194001-3f2a.log",
    ]


def test_log_holds_every_command_in_full(tmp_path):
    run = sample_run()
    path = write_test_log(tmp_path / "x.cfg", run.tests[0])
    text = path.read_text()
    assert path.name.startswith("x.cfg_t1_")
    assert "[::1]:16200\techo a\tb\tOK (exit 0)" in text
    assert "  | l1\n  | l2\n" in text
    assert "binary\tFAILED (exit -9 (SIGKILL))\t" in text and "killed by signal 9" in text
    assert "  | \\xff\\x00ok\n" in text and "  | café" in text
    assert "down\tx\tERROR\t" in text and "connection refused" in text
    assert "# start mode sequential, no common start: offsets from the first release\n" in text
    # The report's start lines (here: one release of three commands is no spread).
    assert "# start spread not measured: 1 of 3 commands released, on 1 of 2 hosts" in text
    assert "# host down: error (connection refused)" in text
    assert text == format_test_log(run.tests[0], str(tmp_path / "x.cfg"))


@pytest.mark.parametrize("content", ["{}", "[1]", "not json", '{"format": "netjobs-results/1"}'])
def test_load_json_rejects_other_files(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=r"r\.json"):
        load_json(path)


def test_load_json_missing_file(tmp_path):
    with pytest.raises(ResultsFileError, match="No such file"):
        load_json(tmp_path / "absent.json")
