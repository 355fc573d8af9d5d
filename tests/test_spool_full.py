"""An agent whose spool cannot grow (issue 18, point 3): it streams without it.

The real cases run an agent whose spool directory (its TMPDIR) is a 256 KiB
tmpfs: a command writing megabytes must end OK with every byte at the
controller, and a cut that the spool cannot cover must be said, with where
the missing bytes were. They need root to mount (skipped otherwise).
"""

import asyncio
import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spool import Outbox
from netjobs_core import text
from netjobs_core.config import parse_config
from netjobs_core.events import CommandOutput
from netjobs_core.results import CommandStatus, RunResult, TestStatus
from netjobs_core.results_json import run_from_json, run_to_json
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.messages import Exit, Finished, Output
from tests.agent_harness import start_agent
from tests.test_resume import CuttingProxy, FakePeer, one_host_test, wait_for

pytestmark = pytest.mark.timeout(120)

FULL_LOG = "cannot grow (No space left on device): streaming without it"


# -- the outbox -------------------------------------------------------------------
class FullFile:
    """A spool file on a disk with room for LIMIT bytes."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.pos = 0
        self.fail_reads = False

    def seek(self, pos: int) -> None:
        self.pos = pos

    def write(self, view: memoryview) -> int:
        room = self.limit - self.pos
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(room, len(view))
        self.data[self.pos : self.pos + n] = view[:n]
        self.pos += n
        return n

    def read(self, count: int) -> bytes:
        if self.fail_reads:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return bytes(self.data[self.pos : self.pos + count])

    def truncate(self, size: int) -> None:
        del self.data[size:]

    def close(self) -> None:
        pass


def full_outbox(monkeypatch: pytest.MonkeyPatch, limit: int) -> tuple[Outbox, list[FullFile]]:
    files: list[FullFile] = []

    def make(directory: str | None) -> FullFile:
        files.append(FullFile(limit))
        return files[-1]

    monkeypatch.setattr("agent.spool.spool_file", make)
    return Outbox("r", [0]), files


async def test_a_full_spool_holds_the_output_until_sent_and_a_resume_says_what_is_lost(
    monkeypatch, caplog
):
    outbox, _ = full_outbox(monkeypatch, 1000)
    first, second = FakePeer(), FakePeer()
    data = bytes(range(256)) * 40  # 10240 bytes: 1000 spooled, the rest held
    try:
        outbox.attach(first)
        for k in range(0, len(data), 1024):
            await outbox.output(0, "stdout", data[k : k + 1024])  # never raises
        await wait_for(lambda: sum(len(m.body) for m in first.sent) == len(data))
        assert outbox.spool_error == "ENOSPC" and outbox.backlog == 0
        assert caplog.text.count("cannot grow") == 1  # once, not once per chunk
        # A cut: the peer kept only the first 3000 bytes; 1000..10240 were not spooled.
        assert outbox.lost({(0, "stdout"): 3000}) == len(data) - 3000
        await outbox.output(0, "stdout", b"tail")
        outbox.post(Finished())
        outbox.attach(second, {(0, "stdout"): 3000})
        await wait_for(lambda: outbox.delivered)
        outputs = [m for m in second.sent if isinstance(m, Output)]
        assert [(m.at, m.body) for m in outputs] == [(len(data), b"tail")]
    finally:
        outbox.close()


async def test_a_spool_that_cannot_be_read_back_ends_the_command_as_an_error(monkeypatch):
    outbox, files = full_outbox(monkeypatch, 10**6)
    peer = FakePeer()
    try:
        await outbox.output(0, "stdout", b"x" * 5000)
        for file in files:
            file.fail_reads = True  # the disk failed under the spool
        outbox.post(Exit(id=0, status="ok", exit_code=0, message=""))
        outbox.post(Finished())
        outbox.attach(peer)
        await wait_for(lambda: outbox.delivered)
        (exit_message,) = [m for m in peer.sent if isinstance(m, Exit)]
        assert exit_message.status == CommandStatus.ERROR
        assert exit_message.spool_error == "EIO"
        words = text.command_end(CommandStatus.ERROR, "", None, exit_message.spool_error)
        assert "the agent's disk failed" in words and "Input/output error" in words
    finally:
        outbox.close()


# -- a real agent on a 256 KiB tmpfs --------------------------------------------------
@pytest.fixture
def small_tmpdir(tmp_path: Path) -> Iterator[Path]:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(spool)], check=True)
    try:
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def expected(first: int, last: int) -> bytes:
    return "".join(f"{i}\n" for i in range(first, last + 1)).encode()


async def test_an_agent_with_a_full_spool_runs_a_large_output_command_to_its_end(
    token, small_tmpdir
):
    with start_agent(token[1], env={**os.environ, "TMPDIR": str(small_tmpdir)}) as agent:
        options = RunOptions(token=token[0])
        command = "seq 1 600000; seq 1 100000 >&2"  # 4.5 MB: the spool holds 256 KiB
        config = f't:\n127.0.0.1:{agent.port}: "{command}"\n-timeout: 100s\nend\n'
        test = await run_test(parse_config(config, "test.cfg").tests[0], options)
        log = agent.log_text()
    host = test.hosts[0]
    result = host.commands[0]
    assert test.status is TestStatus.PASSED, (test.reason, host.error, result.message, log)
    assert result.status is CommandStatus.OK  # not TIMEOUT: the pipe was read all along
    assert result.stdout.read_bytes() == expected(1, 600000)
    assert result.stderr.read_bytes() == expected(1, 100000)
    assert result.gaps == []
    assert log.count(FULL_LOG) == 1, log
    assert str(small_tmpdir) in log  # the log names the agent's disk


async def test_a_cut_the_full_spool_cannot_cover_is_said_with_what_is_missing(token, small_tmpdir):
    with start_agent(token[1], env={**os.environ, "TMPDIR": str(small_tmpdir)}) as agent:
        async with CuttingProxy(agent.port) as proxy:
            loop = asyncio.get_running_loop()
            cut: list[float] = []

            def observer(event):
                if isinstance(event, CommandOutput) and not cut:
                    cut.append(loop.time())
                    proxy.cut()
                    loop.call_later(4.0, proxy.mend)

            options = RunOptions(token=token[0], connect_timeout=2.0, heartbeat=0.5)
            # Megabytes in flight when the cut comes: more than any socket buffer.
            command = "seq 1 2000000; sleep 2; seq 2000001 2100000"
            test = await run_test(one_host_test(proxy.port, command), options, observer)
        log = agent.log_text()
    host = test.hosts[0]
    result = host.commands[0]
    assert len(host.interruptions) == 1 and host.interruptions[0].resumed, log
    assert result.status is CommandStatus.OK, (result.message, host.error, log)
    whole = expected(1, 2100000)
    got = result.stdout.read_bytes()
    assert len(result.gaps) == 1, (result.gaps, log)
    gap = result.gaps[0]
    spooled = int(re.search(r"replays only the (\d+) bytes spooled", log).group(1))
    assert gap.stream == "stdout" and 0 < spooled <= gap.offset  # the spooled part was replayed
    # What was kept is exact on both sides of the gap, and the gap is all that is missing.
    assert got == whole[: gap.offset] + whole[gap.offset + gap.bytes :]
    warning = text.output_gap(gap)
    assert f"warning: {warning}" in text.file_lines(result)  # the report and the log say it
    assert f"bytes {gap.offset}-" in warning
    assert log.count(FULL_LOG) == 1, log
    assert "cannot be replayed" in log
    document = run_to_json(RunResult("test.cfg", tests=[test]))
    again = run_from_json(json.loads(json.dumps(document)))
    assert again.tests[0].hosts[0].commands[0].gaps == [gap]  # a fact in results.json
