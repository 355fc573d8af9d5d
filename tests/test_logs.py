import datetime as dt
import json

import pytest

from netjobs_core.logs import (
    ResultsFileError,
    format_test_log,
    load_json,
    log_path,
    write_json,
    write_test_log,
)
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
from netjobs_core.wire.address import Address


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
            stdout=bytearray(b"l1\nl2\n"),
            stderr=bytearray(),
            started_at=1_800_000_000.5,
            duration_s=0.01,
        ),
        CommandResult(
            "binary",
            line=4,
            status=CommandStatus.FAILED,
            exit_code=-9,
            stdout=bytearray(b"\xff\x00ok"),
            stderr=bytearray(b"caf\xc3\xa9"),
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


def test_log_name_is_the_2x_scheme(tmp_path):
    when = dt.datetime(2026, 11, 27, 19, 40, 1, 123456).timestamp()
    path = log_path(tmp_path / "demo.cfg", "test0", when)
    assert path.name == "demo.cfg_test0_2026-11-27T19.40.01.123456.log"


def test_log_holds_every_command_in_full(tmp_path):
    run = sample_run()
    path = write_test_log(tmp_path / "x.cfg", run.tests[0])
    text = path.read_text()
    assert path.name.startswith("x.cfg_t1_")
    assert "[::1]:16200\techo a\tb\tOK (exit 0)" in text
    assert "  | l1\n  | l2\n" in text
    assert "binary\tFAILED (exit -9 (SIGKILL))\t" in text and "killed by signal 9" in text
    assert "  | \\xff\x00ok" in text and "  | café" in text
    assert "down\tx\tERROR\t" in text and "connection refused" in text
    assert "start spread 0.250 ms ± 0.050 ms" in text
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
