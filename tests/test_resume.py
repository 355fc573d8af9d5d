"""Runs that survive the network (issue 8, point 8): spool, resume, grace, interruptions."""

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time

import pytest

from agent.spool import Outbox, StreamSpool, spool_file, temporary_directory
from netjobs_core import text
from netjobs_core.config import parse_config
from netjobs_core.events import CommandOutput
from netjobs_core.interruptions import Hearing
from netjobs_core.report import format_test
from netjobs_core.results import CommandStatus, HostState, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.messages import Exit, Finished, Message, Output
from tests.agent_harness import REPO, agent_env, start_agent, wait_gone

pytestmark = pytest.mark.timeout(90)


# -- the spool ------------------------------------------------------------------
class FakePeer:
    def __init__(self) -> None:
        self.peer = "fake"
        self.closed = False
        self.sent: list[Message] = []
        self.lingered: list[bool] = []  # each message's `linger`, in order
        self.gate = asyncio.Event()
        self.gate.set()

    def send(self, message: Message, linger: bool = False) -> None:
        self.sent.append(message)
        self.lingered.append(linger)

    async def drain(self) -> None:
        await self.gate.wait()


def test_a_stream_spool_appends_and_reads_back_at_any_offset():
    spool = StreamSpool(spool_file(temporary_directory()))
    try:
        spool.append(b"hello ")
        spool.append(b"world")
        assert spool.size == 11
        assert spool.read(0, 5) == b"hello" and spool.read(6, 100) == b"world"
        assert spool.read(11, 10) == b""
    finally:
        spool.close()


def test_a_spool_file_has_no_name_and_goes_where_tempfile_would_put_it(tmp_path, monkeypatch):
    """Unnamed (nothing to clean up after a killed agent), owner-only; by default in
    $TMPDIR, as tempfile.gettempdir() has it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert temporary_directory() == str(tmp_path)
    file = spool_file(temporary_directory())
    try:
        file.write(b"spooled")
        assert os.listdir(tmp_path) == []
        assert os.fstat(file.fileno()).st_mode & 0o777 == 0o600
        file.seek(0)
        assert file.read() == b"spooled"
    finally:
        file.close()
    with pytest.raises(FileNotFoundError):  # said as the errno a spool stops with
        spool_file(str(tmp_path / "gone"))


async def wait_for(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - a condition of plain state
            await asyncio.sleep(0.001)


async def test_the_outbox_sends_output_before_the_exit_posted_after_it():
    outbox = Outbox("r", [0])
    peer = FakePeer()
    try:
        outbox.attach(peer)
        await outbox.output(0, "stdout", b"a" * 100_000)
        outbox.post(Exit(id=0, status="ok", message=""))
        await outbox.output(0, "stderr", b"late")  # after the exit: never in practice
        outbox.post(Finished())
        await wait_for(lambda: outbox.delivered)
        kinds = [(m.TYPE, len(getattr(m, "body", b""))) for m in peer.sent]
        assert kinds[-2:] == [("output", 4), ("finished", 0)]
        exit_at = [m.TYPE for m in peer.sent].index("exit")
        assert sum(len(m.body) for m in peer.sent[:exit_at]) == 100_000
        # Reports may wait for company (agent/server.py Session.send); the last word
        # goes at once and takes them along.
        assert peer.lingered == [True] * (len(peer.sent) - 1) + [False]
    finally:
        outbox.close()


async def test_a_resume_replays_from_the_offsets_without_loss_or_duplicate():
    outbox = Outbox("r", [0])
    first, second = FakePeer(), FakePeer()
    data = bytes(range(256)) * 2000
    try:
        outbox.attach(first)
        first.gate.clear()  # the controller stops reading after the first frame
        await outbox.output(0, "stdout", data)
        outbox.post(Finished())
        await wait_for(lambda: len(first.sent) == 1)
        held = len(first.sent[0].body)
        outbox.attach(second, {(0, "stdout"): held})
        await wait_for(lambda: outbox.delivered)
        replayed = b"".join(m.body for m in second.sent if isinstance(m, Output))
        assert first.sent[0].body + replayed == data
    finally:
        outbox.close()


async def test_a_full_spool_back_pressures_the_writer_and_frees_as_it_is_sent():
    outbox = Outbox("r", [0], limit=128 * 1024)
    peer = FakePeer()
    try:
        writer = asyncio.create_task(outbox.output(0, "stdout", b"x" * 64 * 1024))
        await outbox.output(0, "stdout", b"x" * 64 * 1024)
        await writer
        blocked = asyncio.create_task(outbox.output(0, "stdout", b"y"))
        await asyncio.sleep(0.05)  # nothing attached: nothing may free room
        assert not blocked.done() and outbox.backlog == 128 * 1024
        outbox.attach(peer)
        await asyncio.wait_for(blocked, 5)
    finally:
        outbox.close()


async def test_spool_throughput_is_far_above_the_network():
    outbox = Outbox("r", [0], limit=2**40)
    chunk = b"z" * 65536
    try:
        began = time.perf_counter()
        for _ in range(1600):  # 100 MiB
            await outbox.output(0, "stdout", chunk)
        rate = 100 / (time.perf_counter() - began)
        print(f"spool append: {rate:.0f} MiB/s")
        assert rate > 100
    finally:
        outbox.close()


# -- a proxy that can go silent (no FIN, no RST: a cut cable) ------------------------
class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.open = asyncio.Event()
        self.open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.open.clear()

    def mend(self) -> None:
        self.open.set()

    def reset(self) -> None:
        """RST to both ends (a firewall or NAT that dropped the connection's state);
        new connections go through."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader, writer):
        self._writers.append(writer)
        await self.open.wait()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src, dst):
        with contextlib.suppress(OSError):
            while True:
                await self.open.wait()
                data = await src.read(65536)
                await self.open.wait()
                if not data:
                    dst.close()
                    return
                dst.write(data)
                await dst.drain()


def one_host_test(port: int, command: str):
    text = f't:\n127.0.0.1:{port}: "{command}"\nend\n'
    return parse_config(text, "test.cfg").tests[0]


EXPECTED = "".join(f"{i}\n" for i in range(1, 400001)).encode()


async def test_a_silent_cut_mid_run_is_resumed_byte_exact(token):
    with start_agent(token[1]) as agent:
        async with CuttingProxy(agent.port) as proxy:
            loop = asyncio.get_running_loop()
            cut = []

            def observer(event):
                if isinstance(event, CommandOutput) and not cut:
                    cut.append(loop.time())
                    proxy.cut()
                    loop.call_later(4.0, proxy.mend)

            options = RunOptions(token=token[0], connect_timeout=2.0, heartbeat=0.5)
            test = await run_test(
                one_host_test(proxy.port, "seq 1 200000; sleep 2; seq 200001 400000"),
                options,
                observer,
            )
        log = agent.log_text()
    host = test.hosts[0]
    assert test.status is TestStatus.PASSED, (test.reason, host.error, log)
    stdout = host.commands[0].stdout.read_bytes()
    assert hashlib.sha256(stdout).hexdigest() == hashlib.sha256(EXPECTED).hexdigest()
    assert len(host.interruptions) == 1
    gap = host.interruptions[0]
    assert gap.resumed and 3.0 < gap.duration_s < 12.0
    print(f"interruption {gap.duration_s:.2f} s ({gap.cause}); {len(stdout)} bytes exact")
    assert "went silent" in log and "resumed test" in log


async def test_a_reset_of_both_ends_is_resumed_and_the_run_is_not_killed_after(token):
    # Both ends see a reset: the agent starts its orphan timer, the controller resumes
    # within it. Before, the timer went on and killed the resumed run 2 s later.
    with start_agent(token[1], "--orphan-grace", "1") as agent:
        async with CuttingProxy(agent.port) as proxy:
            loop = asyncio.get_running_loop()
            done = []

            def observer(event):
                if isinstance(event, CommandOutput) and not done:
                    done.append(loop.call_soon(proxy.reset))

            options = RunOptions(token=token[0], connect_timeout=2.0, heartbeat=0.5)
            test = await run_test(
                one_host_test(proxy.port, "echo one; sleep 2.5; echo two"), options, observer
            )
        log = agent.log_text()
    host = test.hosts[0]
    assert "killing it in 1 s" in log and "resumed test" in log, log
    assert test.status is TestStatus.PASSED, (test.reason, host.commands[0].message, log)
    assert host.commands[0].stdout.read_bytes() == b"one\ntwo\n"
    assert [gap.resumed for gap in host.interruptions] == [True]


async def test_a_cut_longer_than_the_grace_ends_lost_on_both_sides(token):
    with start_agent(token[1]) as agent:
        async with CuttingProxy(agent.port) as proxy:
            cut = []

            def observer(event):
                if isinstance(event, CommandOutput) and not cut:
                    cut.append(time.monotonic())
                    cut_wall.append(time.time())
                    proxy.cut()

            cut_wall: list[float] = []
            options = RunOptions(
                token=token[0], connect_timeout=1.0, heartbeat=0.5, reconnect_grace=2.0
            )
            test = await run_test(one_host_test(proxy.port, "echo go; sleep 60"), options, observer)
            ended = time.monotonic() - cut[0]
            log = await agent.await_log("reconnect grace", timeout=10)
    host = test.hosts[0]
    assert test.status is TestStatus.ABORTED
    assert host.state is HostState.FAILED and "2 s reconnect grace" in host.error
    assert host.commands[0].status is CommandStatus.LOST
    assert ended < 10.0
    assert "killing test 't': controller lost for its 2 s reconnect grace" in log
    assert len(host.interruptions) == 1 and not host.interruptions[0].resumed
    # Lost when last heard, before the cut (nothing crossed it), as its interruption
    # began: not when the grace ran out, 2.5 s or more later.
    lost = host.commands[0]
    assert lost.lost_at == host.interruptions[0].at
    assert lost.lost_at is not None and lost.lost_at <= cut_wall[0] + 0.001
    assert lost.message.startswith(f"lost at {text.time_of_day(lost.lost_at)}: ")


CONTROLLER = """
import asyncio, sys
from netjobs_core.config import parse_config
from netjobs_core.runner import run_test
from netjobs_core.run_options import RunOptions
from netjobs_core.wire.tokens import load_token
port, token_file, pidfile = sys.argv[1:]
text = f't:\\n127.0.0.1:{port}: "echo $$ > {pidfile}; exec sleep 60"\\nend\\n'
test = parse_config(text, "c.cfg").tests[0]
asyncio.run(run_test(test, RunOptions(token=load_token(token_file))))
"""


async def test_a_controller_killed_by_sigkill_still_has_its_jobs_killed_at_once(token, tmp_path):
    pidfile = tmp_path / "pid"
    with start_agent(token[1]) as agent:
        controller = await asyncio.create_subprocess_exec(
            *[sys.executable, "-c", CONTROLLER, str(agent.port), str(token[1]), str(pidfile)],
            env=agent_env(),
            cwd=REPO,
        )
        try:
            async with asyncio.timeout(20):
                while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)  # polling a file: nothing to wait on
            pid = int(pidfile.read_text())
            controller.send_signal(signal.SIGKILL)
            began = time.monotonic()
            assert await wait_gone([pid], timeout=6) == []
            print(f"jobs gone {time.monotonic() - began:.2f} s after the controller's SIGKILL")
            assert time.monotonic() - began < 3.5
        finally:
            with contextlib.suppress(ProcessLookupError):
                controller.kill()
            await controller.wait()


# -- what an interruption says of itself (issue 18 point 16) ---------------------------
def test_a_silence_ended_by_late_bytes_began_with_the_last_bytes_before_it():
    hearing = Hearing(gap_ns=1e9)
    for at in (1.0, 1.5, 2.0, 8.0):  # 6 s of nothing, then one late chunk
        hearing.heard(int(at * 1e9))
    assert hearing.silent_since(int(8.01e9)) == int(2e9)  # the close right after it
    assert hearing.silent_since(int(9.5e9)) == int(8e9)  # long after: a loss of its own


async def test_a_silent_cut_that_the_agent_closes_is_as_long_as_the_silence(token):
    # Before: "connection lost: the agent closed it", 8 ms, absent from the report. The
    # agent (3 heartbeats) gives up on us before we do (5): its close, held by the cut
    # path with a late chunk, arrives as the cut mends.
    with start_agent(token[1]) as agent:
        async with CuttingProxy(agent.port) as proxy:
            loop = asyncio.get_running_loop()
            cut = []

            def observer(event):
                if isinstance(event, CommandOutput) and not cut:
                    cut.append(loop.time())
                    proxy.cut()
                    loop.call_later(4.0, proxy.mend)

            options = RunOptions(token=token[0], connect_timeout=2.0, heartbeat=1.0)
            test = await run_test(
                one_host_test(proxy.port, "for i in $(seq 30); do echo $i; sleep 0.2; done"),
                options,
                observer,
            )
        log = agent.log_text()
    host = test.hosts[0]
    assert test.status is TestStatus.PASSED, (test.reason, host.error, log)
    [gap] = host.interruptions
    assert gap.resumed and gap.duration_s >= 3.0, gap
    assert "went silent" in log  # the agent's side closed first
    assert gap.cause.startswith("connection lost: the agent closed it, after ")
    report = format_test(test)
    assert f"    {text.interruption(gap)}" in report.splitlines()
    assert f"    {host.target}: {text.interruption(gap)}" in format_test(test, fold=True)


async def test_a_stall_of_the_controller_is_not_blamed_on_the_agent(token):
    # Before: "no answer from the agent for 2.5 s" or "the agent closed it": the
    # controller's own loop had not run (stopped, suspended) for 4 s.
    with start_agent(token[1]) as agent:
        loop = asyncio.get_running_loop()
        stalled = []

        def observer(event):
            if isinstance(event, CommandOutput) and not stalled:
                stalled.append(True)
                loop.call_soon(time.sleep, 4.0)  # the whole loop stops, as under SIGSTOP

        options = RunOptions(token=token[0], connect_timeout=2.0, heartbeat=0.5)
        test = await run_test(
            one_host_test(agent.port, "for i in $(seq 30); do echo $i; sleep 0.2; done"),
            options,
            observer,
        )
    host = test.hosts[0]
    assert test.status is TestStatus.PASSED, (test.reason, host.error)
    [gap] = host.interruptions
    assert gap.cause.startswith("the controller was suspended for at least "), gap
    assert gap.resumed and gap.duration_s >= 3.5
