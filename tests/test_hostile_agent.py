"""A token-holding agent (a compromised VM) must neither stall nor fool the controller.

Each test runs the real runner against a fake agent that speaks the protocol
properly up to the `start`, then does one thing a hostile or broken agent would.
Every fake agent is on loopback and ends by itself within its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from netjobs_core import host_run, runner
from netjobs_core.collected import FileReception
from netjobs_core.config import parse_config
from netjobs_core.results import CommandResult, CommandStatus, HostState, TestResult, TestStatus
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.messages import (
    MAX_COLLECT_FILES,
    MAX_GRACE_S,
    Error,
    Exit,
    File,
    FileData,
    FileEnd,
    Finished,
    Message,
    Ping,
    Pong,
    Prepare,
    Prepared,
    Role,
    Start,
    Started,
    Status,
    StatusQuery,
)
from tests.agent_harness import start_agent
from tests.loopback import serving

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]

EMPTY_SHA = hashlib.sha256(b"").hexdigest()
Send = Callable[[Message], None]
Script = Callable[[Send], Awaitable[None]]  # what the agent does once told to start


@contextlib.asynccontextmanager
async def fake_agent(
    secret: bytes, script: Script, *, grace: float = 0.0, pong_delay: float = 0.0
) -> AsyncIterator[int]:
    """An agent on loopback that is honest up to `start`, then runs SCRIPT; its port.

    Its first connection is served; any later one (a resume) is held without a word."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        conn = Connection(Role.AGENT, secret)

        def send(message: Message) -> None:
            conn.send(message)
            writer.write(conn.data_to_send())

        try:
            async with asyncio.timeout(20):
                if connections > 1:
                    await reader.read()  # a resume: hold it, answer nothing
                    return
                while data := await reader.read(65536):
                    for message in conn.receive_data(data):
                        if isinstance(message, Ping):
                            await asyncio.sleep(pong_delay)
                            conn.send(Pong(seq=message.seq, clock=now_ns()))
                        elif isinstance(message, StatusQuery):
                            conn.send(Status(busy=False, hostname="h", version="3", platform="x"))
                        elif isinstance(message, Prepare):
                            items = [
                                {"id": c["id"], "ok": True, "error": None} for c in message.commands
                            ]
                            conn.send(Prepared(gated=True, commands=items, run_id="r", grace=grace))
                        elif isinstance(message, Start):
                            writer.write(conn.data_to_send())
                            await script(send)
                    writer.write(conn.data_to_send())
        except (ProtocolError, ConnectionError, TimeoutError):
            pass  # serving closes the connection

    async with serving(serve) as port:
        yield port


def plan(port: int, lines: str = "", minhosts: str = "all", honest: int | None = None):
    hosts = f'127.0.0.1:{port}: "true"\n{lines}'
    if honest is not None:
        hosts += f'127.0.0.1:{honest}: "echo honest"\n'
    return parse_config(f"t:\n-minhosts: {minhosts}\n{hosts}end\n", "t.cfg").tests[0]


def options(token, tmp_path: Path, **kwargs) -> RunOptions:
    folder = RunFolder.create(tmp_path / "runs")
    return RunOptions(token=token.token, run_folder=folder, connect_timeout=1.0, **kwargs)


async def beside_an_honest_agent(
    token, tmp_path: Path, script: Script, pong_delay: float = 0.0
) -> TestResult:
    """One test (-minhosts 1) of the fake agent running SCRIPT and a real agent echoing
    `honest`: its hosts are the fake one, then the honest one."""
    with start_agent(token.path) as honest:
        async with fake_agent(token.token.secret, script, pong_delay=pong_delay) as port:
            async with asyncio.timeout(30):
                test = await run_test(
                    plan(port, minhosts="1", honest=honest.port), options(token, tmp_path)
                )
    return test


def released_now(send: Send) -> None:
    send(Started(released_at={"0": now_ns()}, late_ns=0))
    send(Exit(id=0, status="ok", exit_code=0, ended_at=now_ns(), message=""))


async def test_an_agent_whose_prepared_does_not_say_what_it_is_is_asked(token, tmp_path):
    # An agent from before `prepared` carried its host name and version (the fake one
    # here): the controller asks its status after the prepared, as it did before.
    async with fake_agent(token.token.secret, lambda send: _released(send)) as port:
        async with asyncio.timeout(30):
            test = await run_test(plan(port), options(token, tmp_path))
    assert test.status is TestStatus.PASSED, test.reason
    assert (test.hosts[0].hostname, test.hosts[0].agent_version) == ("h", "3")


async def _released(send: Send) -> None:
    released_now(send)
    send(Finished())


async def test_empty_file_frames_do_not_hold_the_controller_past_its_deadline(
    token, tmp_path, monkeypatch
):
    """Point 7: progress is bytes. An empty file_data every 0.2 s used to move the
    deadline one backstop further each time: the run never ended."""
    monkeypatch.setattr(host_run, "BACKSTOP_S", 1.0)

    async def trickle(send: Send) -> None:
        released_now(send)
        send(File(id=0, pattern=0, name="f", size=4))
        for _ in range(150):  # 30 s: far past any deadline of this test
            await asyncio.sleep(0.2)
            send(FileData(id=0))

    async with fake_agent(token.token.secret, trickle) as port:
        spec = plan(port, "-timeout: 1s\n-collect: /f\n")
        began = asyncio.get_running_loop().time()
        async with asyncio.timeout(20):
            test = await run_test(spec, options(token, tmp_path))
    took = asyncio.get_running_loop().time() - began
    [host] = test.hosts
    assert host.state is HostState.TIMEOUT, host.error
    assert host.error == "the agent did not report in time"
    assert host.commands[0].warnings == ["f: incomplete"]
    assert took < 15  # the deadline, not the trickle, ended it (1 s + 1 s here)


async def test_the_controller_waits_no_longer_than_the_grace_it_asked_for(token, tmp_path):
    """Point 8: the agent claims a week's grace; we asked for 0.5 s and reconnect
    to a peer that never answers. We used to keep trying for the agent's week."""

    async def vanish(send: Send) -> None:
        released_now(send)
        raise ConnectionError("the fake agent drops the connection")

    async with fake_agent(token.token.secret, vanish, grace=MAX_GRACE_S) as port:
        async with asyncio.timeout(30):
            test = await run_test(
                plan(port, "-timeout: 1s\n"), options(token, tmp_path, reconnect_grace=0.5)
            )
    [host] = test.hosts
    assert host.state is HostState.FAILED
    assert "lost for its 0.5 s reconnect grace" in host.error


@pytest.mark.parametrize("when", ["an hour ahead", "before the prepare"])
async def test_an_impossible_release_instant_fails_that_host(token, tmp_path, when):
    """Point 9: a release an hour ahead made a spread of an hour that read PASSED."""
    at = now_ns() + 3600 * 10**9 if when == "an hour ahead" else 1

    async def lie(send: Send) -> None:
        send(Started(released_at={"0": at}, late_ns=0))
        send(Exit(id=0, status="ok", exit_code=0, ended_at=at, message=""))

    test = await beside_an_honest_agent(token, tmp_path, lie)
    fake, good = test.hosts
    assert fake.state is HostState.FAILED
    assert "released at an impossible instant" in fake.error
    assert good.state is HostState.DONE and good.commands[0].stdout.read_bytes() == b"honest\n"
    # Never a spread of an hour: the one honest release of two is no spread at all.
    assert test.start_spread_ms is None


async def test_a_start_the_agent_refused_never_ran(token, tmp_path):
    """Point 9: a command the agent never released was reported LOST ("it ran")."""

    async def refuse(send: Send) -> None:
        send(Error(code="bad-request", message="the start instant is too far ahead"))

    async with fake_agent(token.token.secret, refuse) as port:
        async with asyncio.timeout(30):
            test = await run_test(plan(port), options(token, tmp_path))
    [host] = test.hosts
    assert host.state is HostState.FAILED
    [command] = host.commands
    assert command.status is CommandStatus.ERROR
    assert "too far ahead" in command.message


async def test_half_a_surrogate_pair_from_an_agent_fails_that_host_not_the_run(token, tmp_path):
    """JSON can spell a lone UTF-16 surrogate ("\\udc80"): no character, and no log,
    CSV or terminal can take it (writing the -l log raised UnicodeEncodeError at the
    test's end). The frame is malformed: that host fails, the honest one runs."""

    async def lone(send: Send) -> None:
        send(Started(released_at={"0": now_ns()}, late_ns=0))
        send(Exit(id=0, status="ok", exit_code=0, ended_at=now_ns(), message="bad \udc80"))

    test = await beside_an_honest_agent(token, tmp_path, lone)
    bad, good = test.hosts
    assert bad.state is HostState.FAILED and "half a surrogate pair" in bad.error
    assert good.state is HostState.DONE and good.commands[0].stdout.read_bytes() == b"honest\n"


async def test_a_host_too_slow_for_the_common_start_fails_alone(token, tmp_path, monkeypatch):
    """Point 9: the lead time is capped; a host whose round trip would push the start
    past it fails, the others start."""
    monkeypatch.setattr(runner, "MAX_LEAD_S", 0.1)  # a local agent needs ~16 ms

    async def never(send: Send) -> None:
        raise AssertionError("a host too slow to start was started")

    test = await beside_an_honest_agent(token, tmp_path, never, pong_delay=0.05)
    slow, good = test.hosts
    assert slow.state is HostState.FAILED
    assert "too slow for a common start at most 0.1 s ahead" in slow.error
    assert slow.commands[0].status is CommandStatus.ERROR
    assert good.state is HostState.DONE and good.commands[0].stdout.read_bytes() == b"honest\n"


async def test_more_files_than_the_protocol_allows_fail_the_host(token, tmp_path):
    """Point 10: the protocol's 256 files per pattern were never enforced here."""

    async def flood(send: Send) -> None:
        released_now(send)
        for k in range(MAX_COLLECT_FILES + 1):
            send(File(id=0, pattern=0, name=f"f{k}", size=0))
            send(FileEnd(id=0, bytes=0, sha256=EMPTY_SHA))

    async with fake_agent(token.token.secret, flood) as port:
        async with asyncio.timeout(30):
            test = await run_test(plan(port, "-collect: /f*\n"), options(token, tmp_path))
    [host] = test.hosts
    assert host.state is HostState.FAILED
    assert f"more than {MAX_COLLECT_FILES} files for one -collect pattern" in host.error
    assert len(host.commands[0].collected) == MAX_COLLECT_FILES


def reception(directory: Path, patterns: int, limit: int | None = None) -> FileReception:
    command = CommandResult("true", 1)
    patterns_of_the_command = [[f"p{k}" for k in range(patterns)]]
    return FileReception(directory, patterns_of_the_command, [command], limit)


def collect(files: FileReception, name: str, data: bytes, pattern: int = 0) -> None:
    files.on_file(File(id=0, pattern=pattern, name=name, size=len(data)))
    files.on_file_data(FileData(id=0, body=data))
    files.on_file_end(FileEnd(id=0, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))


def test_files_of_one_name_each_get_their_own(tmp_path):
    """Point 10: as many same-named files as the protocol allows, each saved apart."""
    files = reception(tmp_path, patterns=4)
    for pattern in range(4):
        for _ in range(MAX_COLLECT_FILES):
            collect(files, "x", b"", pattern)
    collected = files.commands[0].collected
    assert len(collected) == 4 * MAX_COLLECT_FILES
    assert len({c.path for c in collected}) == len(collected)
    assert len(list(tmp_path.iterdir())) == len(collected)


def test_a_hosts_files_are_bounded_in_all(tmp_path):
    """Point 10: at most --collect-max times the patterns, whatever the file count."""
    files = reception(tmp_path, patterns=2, limit=10)
    for k in range(3):
        collect(files, f"f{k}", b"x" * 8)
    [command] = files.commands
    assert [Path(c.path).name for c in command.collected] == ["f0", "f1"]
    assert command.warnings == ["f2: not collected: the host's files exceed 20 B in all"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_disk_fails_that_file_not_the_run(tmp_path):
    """Point 5: closing a collected file on a full disk raised out of the runner."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * 128 * 1024)
        files = reception(disk, patterns=1)
        collect(files, "small", b"y" * 100)  # buffered: refused only at the close
        [command] = files.commands
        assert command.collected == []
        assert command.not_saved == ["small"]  # the verdict sees it: no pass
        [warning] = command.warnings
        assert warning.startswith("small: not collected: cannot write")
        assert not (disk / "small").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def test_messages_that_come_before_a_reply_are_kept_in_order_and_bounded():
    """Waiting for a reply (a `prepared` sent with the auth, say), what else comes
    stays queued for its reader, in order; an agent sending more than anyone asked
    for loses its connection, not the controller's memory."""
    from netjobs_core.client import MAX_HELD, AgentLink, ConnectionLost
    from netjobs_core.wire.address import Address

    def status(n: int) -> Status:
        return Status(busy=False, hostname=f"h{n}", version="3", platform="x")

    prepared = Prepared(gated=True, commands=[], run_id="r", grace=0.0)
    for count, kept in ((3, True), (MAX_HELD + 1, False)):
        link = AgentLink(Address.parse("127.0.0.1:1"), b"k" * 32)
        queue = [status(n) for n in range(count)] + [prepared]

        async def recv(queue=queue) -> Message:
            return queue.pop(0)

        link.recv = recv  # type: ignore[method-assign]
        if kept:
            assert await link.reply(Prepared, 5) == prepared
            assert [link.received() for _ in range(count)] == [status(n) for n in range(count)]
        else:
            with pytest.raises(ConnectionLost, match="messages nobody asked for"):
                await link.reply(Prepared, 5)
