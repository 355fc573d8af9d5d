"""Real agent processes for tests, and a small async client that speaks to them.

`start_agent()` runs `python -m netjobs_agent` on loopback with port 0 through
`netjobs_core.local_agents`, its output in files; the returned `AgentProcess` is a
context manager that always kills the process. `AgentClient` is a test-side controller built on
`wire.connection.Connection`, with a timeout on every wait. Reused by the controller's
integration tests.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netjobs_core import local_agents
from netjobs_core.local_agents import LocalAgent
from netjobs_core.wire import tokens
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.messages import (
    Bye,
    Error,
    Exit,
    Finished,
    Message,
    Output,
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
from netjobs_core.wire.states import State

REPO = Path(__file__).resolve().parents[1]
agent_command = local_agents.agent_argv  # (token_file, *extra_args, port=0, bind=...)


class AgentProcess(LocalAgent):
    """A running agent; stdout and stderr go to files in `workdir` (removed by close())."""

    def __init__(self, agent: LocalAgent, workdir: Path) -> None:
        super().__init__(**vars(agent))
        self.workdir = workdir

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until TEXT shows up in the agent's log; returns the log."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log_text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the agent's log:\n{log}")
            time.sleep(0.02)
        return log

    async def await_log(self, text: str, timeout: float = 10.0) -> str:
        """`wait_log` for async tests: the event loop keeps running meanwhile."""
        async with asyncio.timeout(timeout):
            while True:  # a file to poll: nothing to wait on
                log = self.log_text()
                if text in log:
                    return log
                await asyncio.sleep(0.02)

    def send_stop(self, sig: int | None = None) -> None:
        """Ctrl-C / SIGTERM equivalent."""
        self.process.send_signal(signal.SIGTERM if sig is None else sig)

    def stop(self, timeout: float = 20.0, sig: int | None = None) -> int:
        """Ask the agent to stop; kill it if it does not within TIMEOUT. Returns its status."""
        return super().stop(timeout, sig)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def agent_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@functools.cache
def _workdirs() -> Path:
    """One folder per test process for every agent's stdout and log, removed when the
    process exits: a test that stops an agent without close() leaves nothing behind."""
    folder = Path(tempfile.mkdtemp(prefix="netjobs-test-agents-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def start_agent(
    token_file: str | os.PathLike[str] | None,
    *extra_args: str,
    port: int = 0,
    bind: str | None = "127.0.0.1",
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 20.0,
) -> AgentProcess:
    """Start `python -m netjobs_agent` and wait until it listens; the result always kills it."""
    workdir = Path(tempfile.mkdtemp(prefix="agent-", dir=_workdirs()))
    try:
        agent = local_agents.start_agent(
            token_file,
            *extra_args,
            port=port,
            bind=bind,
            env=agent_env(env),
            cwd=REPO if cwd is None else cwd,
            stdout=workdir / "stdout.txt",
            log=workdir / "stderr.txt",
            timeout=timeout,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return AgentProcess(agent, workdir)


# -- processes ------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True while PID runs (a zombie counts as gone: only its parent can reap it)."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """Wait until every PID is gone; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.05)


def wait_gone_sync(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """`wait_gone` for tests without an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


class HostWatch:
    """A runner observer that lets a test wait for a host to reach a state.

    `await watch.host_reaches(0, HostState.RUNNING)` instead of a sleep that stands
    for "it is running now": hosts are numbered in the test's order.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.test: Any = None

    def __call__(self, event: Any) -> None:
        self.test = event.test
        self._changed.set()

    async def host_reaches(self, index: int, *states: Any, timeout: float = 20.0) -> Any:
        await self.until(lambda test: test.hosts[index].state in states, timeout)
        return self.test.hosts[index]

    async def host_started(self, index: int, timeout: float = 20.0) -> Any:
        """The agent reported its release: the commands really run (the start is acked)."""
        await self.until(lambda test: test.hosts[index].commands[0].started_at is not None, timeout)
        return self.test.hosts[index]

    async def until(self, predicate: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while self.test is None or not predicate(self.test):
                self._changed.clear()
                await self._changed.wait()


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)


# -- client ---------------------------------------------------------------------
def commands(*specs: str | tuple[str, float | None]) -> list[dict[str, Any]]:
    """`commands("echo a", ("sleep 9", 1))` -> prepare's list, ids from 1."""
    result = []
    for number, spec in enumerate(specs, start=1):
        command, timeout = (spec, None) if isinstance(spec, str) else spec
        result.append({"id": number, "command": command, "timeout": timeout})
    return result


@dataclass
class RunOutcome:
    """Everything an agent reported for one run, in order."""

    messages: list[Message] = field(default_factory=list)
    started: Message | None = None
    exits: dict[int, Exit] = field(default_factory=dict)
    output: dict[int, dict[str, bytearray]] = field(default_factory=dict)
    finished: bool = False

    def stdout(self, command_id: int) -> bytes:
        return bytes(self.output.get(command_id, {}).get("stdout", b""))

    def stderr(self, command_id: int) -> bytes:
        return bytes(self.output.get(command_id, {}).get("stderr", b""))


class AgentClient:
    """A minimal controller for tests. Every wait has a timeout."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.backlog: list[Message] = []  # received, not yet returned by recv()

    @staticmethod
    def secret_of(token: bytes | str | os.PathLike[str]) -> bytes:
        if isinstance(token, bytes):
            return token
        return tokens.load_token(token).secret

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        token: bytes | str | os.PathLike[str],
        *,
        timeout: float = 10.0,
    ) -> AgentClient:
        """Connect and authenticate (raises ProtocolError subclasses on failure)."""
        conn = Connection(Role.CONTROLLER, cls.secret_of(token))
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            client = cls(reader, writer, conn)
            try:
                client._flush()
                while conn.state is not State.READY:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("agent closed the connection during the handshake")
                    client.backlog += conn.receive_data(data)
                    client._flush()
            except BaseException:
                writer.transport.abort()
                raise
        return client

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def send(self, message: Message) -> None:
        self.conn.send(message)
        self._flush()
        async with asyncio.timeout(10):
            await self.writer.drain()

    async def recv(self, timeout: float = 10.0) -> Message:
        """The next message; EOFError when the agent closed the connection."""
        async with asyncio.timeout(timeout):
            while not self.backlog:
                data = await self.reader.read(256 * 1024)
                if not data:
                    raise EOFError("the agent closed the connection")
                self.backlog += self.conn.receive_data(data)
        return self.backlog.pop(0)

    async def request(
        self, message: Message, expect: type[Message], *, timeout: float = 10.0
    ) -> Message:
        """Send MESSAGE and return the reply of class EXPECT, or an error.

        Messages of other types that arrive meanwhile stay queued for recv().
        """
        await self.send(message)
        skipped: list[Message] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    reply = await self.recv(timeout)
                    if isinstance(reply, expect | Error):
                        return reply
                    skipped.append(reply)
        finally:
            self.backlog[:0] = skipped

    async def ping(self, seq: int = 1) -> Message:
        return await self.request(Ping(seq=seq), Pong)

    async def status(self) -> Message:
        return await self.request(StatusQuery(), Status)

    async def prepare(self, label: str, command_list: list[dict[str, Any]]) -> Message:
        return await self.request(
            Prepare(label=label, commands=command_list),
            Prepared,
        )

    async def start(self, at: int | None = None) -> Message:
        return await self.request(Start(at=at), Started)

    async def collect(self, timeout: float = 30.0) -> RunOutcome:
        """Read until `finished`; the Connection checks the order on the way."""
        outcome = RunOutcome()
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                outcome.messages.append(message)
                if isinstance(message, Started):
                    outcome.started = message
                elif isinstance(message, Output):
                    streams = outcome.output.setdefault(message.id, {})
                    streams.setdefault(message.stream, bytearray()).extend(message.body)
                elif isinstance(message, Exit):
                    outcome.exits[message.id] = message
                elif isinstance(message, Finished):
                    outcome.finished = True
                    return outcome

    async def run(
        self,
        command_list: list[dict[str, Any]],
        *,
        label: str = "test",
        at: int | None = None,
        timeout: float = 30.0,
    ) -> RunOutcome:
        """prepare + start + collect; asserts each step succeeded."""
        prepared = await self.prepare(label, command_list)
        assert isinstance(prepared, Prepared), prepared
        started = await self.start(at)
        assert isinstance(started, Started), started
        outcome = await self.collect(timeout)
        outcome.started = started
        return outcome

    def abort(self) -> None:
        """Drop the connection without a goodbye (a crashed controller)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn.state is State.READY and not self.writer.transport.is_closing():
                await self.send(Bye())
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.writer.wait_closed()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of PID, in clock ticks (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def read_lines(client: AgentClient, count: int, command_id: int = 1) -> list[str]:
    """Wait for COUNT stdout lines of a command; the messages stay queued for collect()."""
    seen: list[Message] = []
    text = b""
    try:
        async with asyncio.timeout(10):
            while text.count(b"\n") < count:
                message = await client.recv()
                seen.append(message)
                if isinstance(message, Output) and message.id == command_id:
                    text += message.body
                assert not isinstance(message, Finished), seen
    finally:
        client.backlog[:0] = seen
    return text.decode().splitlines()[:count]


def free_port() -> int:
    """A loopback port nothing listens on (for a refused host)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
