"""Each command's part of the -l log formed as the command ends (log_parts.py), and its
CSV metric cells (results_csv.MetricCells): the log and the CSV are byte for byte those
formed at the test's end, whatever changed a command after its part was formed."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netjobs_core import log_parts
from netjobs_core.config import parse_config
from netjobs_core.events import TestFinished
from netjobs_core.log_parts import LogParts, form_part
from netjobs_core.logs import format_test_log, log_bytes
from netjobs_core.metrics import EARLY_BYTES
from netjobs_core.outputs import Output
from netjobs_core.results import (
    Collected,
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    MetricSummary,
    OutputGap,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_csv import MetricCells, csv_text
from netjobs_core.run import Run, RunEvent, Written
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.wire.address import Address

FIO = Path(__file__).parent / "data" / "metrics" / "fio-randrw.json"


def finished(command: str, **fields: Any) -> CommandResult:
    fields.setdefault("status", CommandStatus.OK)
    fields.setdefault("exit_code", 0)
    fields.setdefault("started_at", 1_800_000_000.5)
    fields.setdefault("duration_s", 60.0)
    return CommandResult(command, line=2, **fields)


def fio_test() -> TestResult:
    """Three hosts: a fio document with its metrics (µs latencies: not ASCII), an
    output larger than a log shows, bytes that are not UTF-8 and an agent's message."""
    document = FIO.read_bytes()
    commands = [
        finished(
            "fio job.fio --output-format=json",
            stdout=Output.from_bytes(document),
            metrics={"read_bw": 4.9e8, "read_lat_mean_ns": 127_000.0, "read_iops": 1.2e5},
        ),
        finished(
            "seq 100000", stdout=Output.from_bytes(b"".join(b"%d\n" % i for i in range(10**5)))
        ),
        finished(
            "binary",
            status=CommandStatus.FAILED,
            exit_code=3,
            stdout=Output.from_bytes(b"\xff\x00ok\n"),
            stderr=Output.from_bytes(b"caf\xc3\xa9"),
            message="exited\twith code 3",
        ),
    ]
    test = TestResult("fio", None, status=TestStatus.PASSED, started_at=1_800_000_000.0)
    for i, command in enumerate(commands):
        test.hosts.append(
            HostResult(Address(f"10.0.0.{i + 1}", 16192), HostState.DONE, commands=[command])
        )
    test.metrics["read_bw"] = MetricSummary(4.9e8, 4.9e8, 4.9e8, 4.9e8, 1)
    return test


def form_all(test: TestResult, parts: LogParts, show: int) -> None:
    """What run.Run does as each command ends."""
    for host in test.hosts:
        for command in host.commands:
            parts.form(host.target, command, show)


@pytest.mark.parametrize("show", [64 * 1024, 100])
def test_the_log_of_parts_formed_early_is_the_log_formed_at_the_end(show: int) -> None:
    test = fio_test()
    at_end = log_bytes(test, "fio.cfg", show)
    parts = LogParts()
    form_all(test, parts, show)
    assert log_bytes(test, "fio.cfg", show, parts) == at_end
    assert format_test_log(test, "fio.cfg", show, parts).encode("utf-8") == at_end
    text = at_end.decode("utf-8")
    assert "µs" in text and "read_bw 467 MiB/s" in text  # the metric words are in it
    assert "exited\\x09with code 3" in text  # the agent's words escaped, as before


def test_the_end_joins_the_parts_formed_early(monkeypatch: pytest.MonkeyPatch) -> None:
    test = fio_test()
    parts = LogParts()
    form_all(test, parts, 1000)
    formed: list[str] = []
    original = log_parts.form_part

    def counted(target: str, command: CommandResult, show: int) -> bytes:
        formed.append(command.command)
        return original(target, command, show)

    monkeypatch.setattr(log_parts, "form_part", counted)
    log_bytes(test, "fio.cfg", 1000, parts)
    assert formed == []
    log_bytes(test, "fio.cfg", 2000, parts)  # another `show`: each formed anew
    assert len(formed) == 3


def _collect(command: CommandResult) -> None:
    command.collected.append(Collected("*.json", Path("/runs/r/out.json"), 14_000, "ab" * 32))


def _replace_stdout(command: CommandResult) -> None:
    command.stdout = Output.from_bytes(b"other\n")


def _closed_output_error(command: CommandResult) -> None:
    command.stdout.error = "cannot write /runs/r/stdout: No space left on device"


def _set(name: str, value: Any) -> Callable[[CommandResult], None]:
    return lambda command: setattr(command, name, value)


# What can change a command once its part is formed, by the field it changes.
CHANGES: dict[str, Callable[[CommandResult], None]] = {
    "command": _set("command", "fio other.fio"),
    "status": _set("status", CommandStatus.KILLED),
    "exit_code": _set("exit_code", 1),
    "stdout": _replace_stdout,
    "stderr": _set("stderr", Output.from_bytes(b"late\n")),
    "started_at": _set("started_at", 1_800_000_001.0),
    "duration_s": _set("duration_s", 61.5),
    "message": _set("message", "killed: the test was aborted"),
    "collected": _collect,  # files collected after the command's end
    "warnings": lambda command: command.warnings.append("'*.log' matched nothing"),
    "gaps": lambda command: command.gaps.append(OutputGap("stdout", 10, 5)),
    "metrics": lambda command: command.metrics.update(write_bw=1.5e8),  # read at the end
}
# Fields the log does not show: changing them leaves the part as it is.
NOT_SHOWN: dict[str, Callable[[CommandResult], None]] = {
    "line": _set("line", 9),
    "release_late_ms": _set("release_late_ms", 2.5),
    "exec_offset_ms": _set("exec_offset_ms", 0.25),
    "timeout": _set("timeout", 5.0),
    "lost_at": _set("lost_at", 1_800_000_002.0),
    "not_saved": lambda command: command.not_saved.append("out.json"),
}


def test_every_field_of_a_command_is_either_shown_and_watched_or_not_shown() -> None:
    # A field added to CommandResult must be placed here: watched, or known not shown.
    fields = {f.name for f in dataclasses.fields(CommandResult)}
    assert set(CHANGES) | set(NOT_SHOWN) == fields
    assert not set(CHANGES) & set(NOT_SHOWN)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_command_changed_after_its_part_was_formed_gets_its_part_formed_again(
    change: str,
) -> None:
    test = fio_test()
    host = test.hosts[0]
    command = host.commands[0]
    parts = LogParts()
    form_all(test, parts, 1000)
    early = parts.part(host.target, command, 1000)
    CHANGES[change](command)
    now = form_part(host.target, command, 1000)
    assert now != early
    assert parts.part(host.target, command, 1000) == now
    assert log_bytes(test, "fio.cfg", 1000, parts) == log_bytes(test, "fio.cfg", 1000)


def test_an_output_whose_file_failed_after_the_part_was_formed_says_so() -> None:
    test = fio_test()
    host = test.hosts[1]  # the output larger than `show`: its excerpt says where it is
    parts = LogParts()
    form_all(test, parts, 1000)
    _closed_output_error(host.commands[0])
    assert log_bytes(test, "fio.cfg", 1000, parts) == log_bytes(test, "fio.cfg", 1000)
    assert b"No space left on device" in log_bytes(test, "fio.cfg", 1000, parts)


@pytest.mark.parametrize("change", sorted(NOT_SHOWN))
def test_what_the_log_does_not_show_leaves_the_part_as_it_is(change: str) -> None:
    test = fio_test()
    host = test.hosts[0]
    command = host.commands[0]
    early = form_part(host.target, command, 1000)
    NOT_SHOWN[change](command)
    assert form_part(host.target, command, 1000) == early


def test_a_part_that_is_not_utf8_fails_at_the_logs_end_as_before() -> None:
    """An agent's message may hold a lone surrogate (JSON's \\udc80): forming the part
    early keeps nothing and raises nothing; the end raises as forming it there did."""
    test = fio_test()
    test.hosts[2].commands[0].message = "bad \udc80"
    parts = LogParts()
    form_all(test, parts, 1000)
    with pytest.raises(UnicodeEncodeError):
        log_bytes(test, "fio.cfg", 1000, parts)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(90)
@pytest.mark.posix
async def test_a_runs_log_and_csv_are_those_formed_at_its_end(
    agents: Any, token: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run with -l and --csv: each part formed as its command ended; one command
    changes after its end (its collected file, then its metrics), one is read at the
    test's end (over EARLY_BYTES); the log and the CSV written are those formed whole at
    the end."""
    big = "head -c 1200000 /dev/zero | tr '\\\\0' x; echo; echo n=5"
    text = (
        "fio:\n"
        "-metric: n = n=(\\d+)\n"
        f'127.0.0.1:{agents[0].port}: "cat {FIO}"\n'
        f'127.0.0.1:{agents[1].port}: "cp {FIO} {tmp_path}/out.json; echo n=7"\n'
        f"-collect: {tmp_path}/out.json\n"
        f'127.0.0.1:{agents[2].port}: "{big}"\n'
        "end\n"
    )
    config = tmp_path / "fio.cfg"
    config.write_text(text)
    plan = parse_config(text, str(config))
    folder = RunFolder.create(tmp_path / "runs")
    options = RunOptions(token=token.token, connect_timeout=10.0, run_folder=folder)
    run = Run(plan, options, log=True, csv_path=str(tmp_path / "fio.csv"))
    formed: list[tuple[str, bool]] = []  # (command, formed after the test's end was heard)
    ended = [False]
    original = log_parts.form_part

    def counted(target: str, command: CommandResult, show: int) -> bytes:
        formed.append((command.command.split()[0], ended[0]))
        return original(target, command, show)

    monkeypatch.setattr(log_parts, "form_part", counted)
    written: list[Path] = []

    def observe(event: RunEvent) -> None:
        if isinstance(event, TestFinished):
            ended[0] = True
        elif isinstance(event, Written) and event.kind == "log" and event.path is not None:
            written.append(event.path)

    run.subscribe(observe)
    async with run:
        result = await run.run()
    (test,) = result.tests
    assert test.status is TestStatus.PASSED, test.reason
    fio, collecting, large = (host.commands[0] for host in test.hosts)
    assert collecting.collected and collecting.metrics["n"] == 7 and "read_bw" in fio.metrics
    assert large.stdout.size > EARLY_BYTES and large.metrics == {"n": 5.0}  # read at the end
    # Each formed once its result was final (the collecting one once its file was in);
    # the large one again at the end (its metrics were read there), the others not.
    assert sorted(c for c, late in formed if not late) == ["cat", "cp", "head"]
    assert [c for c, late in formed if late] == ["head"]
    (path,) = written
    assert _digest(path.read_bytes()) == _digest(log_bytes(test, str(config)))
    assert (tmp_path / "fio.csv").read_bytes() == csv_text(result).encode("utf-8")


def test_the_csvs_metric_cells_formed_early_are_those_formed_at_the_end() -> None:
    """results_csv.MetricCells, the same way: formed as each command ended, formed again
    for a command whose metrics changed since (read at the test's end)."""
    test = fio_test()
    test.hosts[1].commands[0].metrics = {"n": 5.0, "read_bw": float("nan")}
    run = RunResult("fio.cfg", "r", tests=[test])
    cells = MetricCells()
    for host in test.hosts:
        cells.cells(host.commands[0])
    assert csv_text(run, cells) == csv_text(run)
    test.hosts[2].commands[0].metrics["n"] = 7.5  # read later
    test.hosts[0].commands[0].metrics["read_bw"] = 1.0
    changed = csv_text(run)
    assert csv_text(run, cells) == changed
    assert changed.splitlines()[0].endswith("read_bw,read_lat_mean_ns,read_iops,n")
    assert changed.splitlines()[1].endswith(",1,127000,120000,")
    assert changed.splitlines()[2].endswith(",nan,,,5")
    assert changed.splitlines()[3].endswith(",,,,7.5")
