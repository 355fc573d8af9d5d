"""A command's metrics are read as it ends, while the test's other commands still run
(issue 21: the test's end does not wait for 1000 hosts' documents): real agents, the
run owner (run.Run) as the CLI and the GUI drive it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netjobs_core.config import parse_config
from netjobs_core.events import CommandChanged, TestFinished
from netjobs_core.metrics import EARLY_BYTES
from netjobs_core.results import CommandStatus, TestStatus
from netjobs_core.run import Run, RunEvent
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

FIO = Path(__file__).parent / "data" / "metrics" / "fio-randrw.json"


def _run(path: Path, text: str, token: Any) -> Run:
    """A Run of the config TEXT, written at PATH, with its run folder beside it."""
    path.write_text(text)
    plan = parse_config(text, str(path))
    folder = RunFolder.create(path.parent / "runs")
    return Run(plan, RunOptions(token=token.token, connect_timeout=10.0, run_folder=folder))


async def test_each_command_is_read_as_it_ends_from_stdout_and_collected_files(
    agents, token, tmp_path
):
    go = tmp_path / "go"
    # At most 60 s, so that a regression fails on the assertions rather than the timeout.
    wait = f"i=0; while [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    text = (
        "fio:\n"
        f'127.0.0.1:{agents[0].port}: "cat {FIO}"\n'
        f'127.0.0.1:{agents[1].port}: "cp {FIO} {tmp_path}/out.json"\n'
        f"-collect: {tmp_path}/out.json\n"
        f'127.0.0.1:{agents[2].port}: "{wait}; cat {FIO}"\n'
        "end\n"
    )
    run = _run(tmp_path / "fio.cfg", text, token)
    seen: dict[int, dict[str, float]] = {}  # host index -> its metrics, as first heard
    waiting_then: list[CommandStatus] = []  # the third host's command as each got them

    def observe(event: RunEvent) -> None:
        if isinstance(event, CommandChanged):
            hosts = event.test.hosts
            h = next(i for i, host in enumerate(hosts) if host is event.host)
            command = event.host.commands[event.index]
            if h < 2 and command.metrics and h not in seen:
                seen[h] = dict(command.metrics)
                waiting_then.append(hosts[2].commands[0].status)
                if len(seen) == 2:
                    go.touch()  # only now may the last command end
        elif isinstance(event, TestFinished):
            assert len(seen) == 2, "the test ended before the metrics were read"

    run.subscribe(observe)
    async with run:
        result = await run.run()
    (test,) = result.tests
    assert test.status is TestStatus.PASSED, test.reason
    # Both were read while the third host's command still ran: not at the test's end.
    assert waiting_then == [CommandStatus.RUNNING, CommandStatus.RUNNING]
    expected = test.hosts[2].commands[0].metrics  # read by the same parser
    assert set(expected) >= {"read_bw", "write_bw", "read_iops", "write_iops"}
    assert seen == {0: expected, 1: expected}
    assert [h.commands[0].metrics for h in test.hosts] == [expected] * 3
    assert test.metrics["read_bw"].hosts == 3
    assert test.metrics["read_bw"].sum == pytest.approx(3 * expected["read_bw"])


def test_msgspec_orjson_and_the_standard_library_read_the_same(monkeypatch: Any) -> None:
    """The optional msgspec and orjson (the `fast` extra) change nothing but the speed:
    every recorded document, one with text after it (fio's json,normal) and one cut
    off read the same with both, with orjson alone and with the standard library alone."""
    from netjobs_core import builtin_metrics

    if builtin_metrics.ORJSON is None or builtin_metrics.FIO_FIELDS is None:
        pytest.skip("orjson or msgspec is not installed (pip install 'netjobs[fast]')")
    documents = sorted((Path(__file__).parent / "data" / "metrics").glob("*.json"))
    datas = [d.read_bytes() for d in documents]
    datas.append(FIO.read_bytes() + b"\nfio-3.33\nj: (groupid=0, jobs=1): err= 0\n")
    datas.append(FIO.read_bytes()[:5000])  # cut off: the same error, either way
    outcomes: dict[str, list[object]] = {}
    for readers in ("msgspec", "orjson", "json"):
        if readers == "orjson":
            monkeypatch.setattr(builtin_metrics, "FIO_FIELDS", None)
        if readers == "json":
            monkeypatch.setattr(builtin_metrics, "ORJSON", None)
        found: list[object] = []
        for data in datas:
            try:
                found.append(builtin_metrics.read_document(data))
            except builtin_metrics.DocumentError as exc:
                found.append(str(exc))
        outcomes[readers] = found
    assert outcomes["msgspec"] == outcomes["orjson"] == outcomes["json"]
    assert any(isinstance(o, dict) and "read_bw" in o for o in outcomes["msgspec"])
    assert isinstance(outcomes["msgspec"][-1], str) and "cut off" in outcomes["msgspec"][-1]


async def test_a_command_too_large_to_read_at_once_is_read_at_the_tests_end(
    agents, token, tmp_path
):
    """Over EARLY_BYTES (here 1.2 MB of stdout) the reading would hold the event loop
    while other hosts run: it waits for the test's end, with the same result."""
    big = "head -c 1200000 /dev/zero | tr '\\\\0' x; echo; echo n=5"
    text = (
        "t:\n"
        "-metric: n = n=(\\d+)\n"
        f'127.0.0.1:{agents[0].port}: "{big}"\n'
        f'127.0.0.1:{agents[1].port}: "echo n=7"\n'
        "end\n"
    )
    run = _run(tmp_path / "big.cfg", text, token)
    at_end: dict[int, dict[str, float]] = {}  # host index -> metrics as its command ended

    def observe(event: RunEvent) -> None:
        if isinstance(event, CommandChanged) and event.host.commands[0].status.finished:
            h = next(i for i, host in enumerate(event.test.hosts) if host is event.host)
            at_end.setdefault(h, dict(event.host.commands[0].metrics))

    run.subscribe(observe)
    async with run:
        result = await run.run()
    (test,) = result.tests
    assert test.status is TestStatus.PASSED, test.reason
    assert test.hosts[0].commands[0].stdout.size > EARLY_BYTES
    assert at_end == {0: {}, 1: {"n": 7.0}}  # the large one not read as it ended...
    assert [h.commands[0].metrics for h in test.hosts] == [{"n": 5.0}, {"n": 7.0}]  # ...later
    assert test.metrics["n"].sum == 12 and test.metrics["n"].hosts == 2
