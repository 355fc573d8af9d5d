"""How the agent's session groups its messages into writes (agent/server.py Session):
the proof goes with the answer to a request sent behind the auth, a run's reports
wait a moment for company, and nothing waits unbounded or is lost on the way out.

Driven without sockets: a real agent Session, a real controller Connection, and a
writer that records each write (each would be one segment on a TCP link)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from agent_harness import AgentClient, AgentProcess, commands

from agent import server
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.messages import (
    Exit,
    Finished,
    Message,
    Output,
    Ping,
    Pong,
    Prepare,
    Prepared,
    PreparedItem,
    Role,
    Start,
    Started,
    StatusQuery,
)
from netjobs_core.wire.states import State
from netjobs_core.wire.tokens import Token

pytestmark = pytest.mark.timeout(60)


class Transport:
    def __init__(self) -> None:
        self.closing = False
        self.aborted = False

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = self.aborted = True


class RecordingWriter:
    """A StreamWriter that keeps each write apart."""

    def __init__(self) -> None:
        self.transport = Transport()
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def write(self, data: bytes | bytearray) -> None:
        assert not self.transport.closing, "written after the close"
        self.writes.append(bytes(data))
        self.wrote.set()

    def close(self) -> None:
        self.transport.closing = True


class Pair:
    """An agent session and a controller connection, authenticated."""

    def __init__(self, along: list[Message]) -> None:
        secret = secrets.token_bytes(32)
        agent = server.Agent(Token(secret, "test"), realtime=False)
        self.writer = RecordingWriter()
        self.session = server.Session(agent, None, self.writer)  # type: ignore[arg-type]
        self.controller = Connection(Role.CONTROLLER, secret)
        self.requests = self.session._receive(bytes(self.controller.data_to_send()))
        assert self.requests == [] and len(self.writer.writes) == 1  # the agent's hello
        self.controller.receive_data(self.writer.writes[0])  # queues our auth
        self.read = 1
        for message in along:
            self.controller.send(message)
        self.requests = self.session._receive(bytes(self.controller.data_to_send()), hold=True)
        assert self.session.conn.state is State.READY

    def take(self) -> list[list[str]]:
        """The writes the controller has not read yet, as the messages in each."""
        new, self.read = self.writer.writes[self.read :], len(self.writer.writes)
        return [[m.TYPE for m in self.controller.receive_data(data)] or ["(proof)"] for data in new]

    def deliver(self, message: Message) -> None:
        """MESSAGE from the controller, read by the agent's connection only."""
        self.controller.send(message)
        self.session.conn.receive_data(bytes(self.controller.data_to_send()))


async def test_the_proof_goes_out_with_the_pong_of_a_ping_sent_behind_the_auth():
    pair = Pair([StatusQuery(), Ping(seq=1)])
    assert [type(m) for m in pair.requests] == [StatusQuery, Ping]
    assert pair.take() == []  # the proof waits for the first answer
    for request in pair.requests:
        await pair.session._handle(request)
    # The proof with the status, then the pong: what the controller reads first
    # authenticates the agent and answers the first request.
    assert pair.take() == [["status"], ["pong"]]
    assert pair.controller.state is State.READY


async def test_the_proof_goes_at_once_when_nothing_came_behind_the_auth_or_a_prepare_did():
    alone = Pair([])
    assert alone.requests == []
    assert alone.take() == [["(proof)"]]
    # A prepare spawns before it answers: the proof does not wait for that.
    prepare = Prepare(label="t", commands=[{"id": 0, "command": "true"}])
    first_prepare = Pair([prepare])
    assert first_prepare.requests == [prepare]
    assert first_prepare.take() == [["(proof)"]]


def prepared_and_started() -> Pair:
    """A pair whose connection went through prepare, prepared and start (no command
    runs: the session's writes are the test's)."""
    pair = Pair([])
    pair.deliver(Prepare(label="t", commands=[{"id": 0, "command": "true"}]))
    ok: list[PreparedItem] = [{"id": 0, "ok": True, "error": None}]
    pair.session.send(Prepared(gated=True, commands=ok, run_id="ab" * 8, grace=0.0))
    assert pair.take() == [["(proof)"], ["prepared"]]
    pair.deliver(Start(at=None))
    return pair


async def test_a_quick_commands_reports_go_in_one_write_with_its_finished():
    pair = prepared_and_started()
    session = pair.session
    session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    session.send(Output(id=0, stream="stdout", body=b"hi\n"), linger=True)
    session.send(Exit(id=0, status="ok", exit_code=0, ended_at=2, message=""), linger=True)
    assert pair.take() == []  # waiting for company
    session.send(Finished())  # the run's last word: at once, with what waited
    assert pair.take() == [["started", "output", "exit", "finished"]]
    await asyncio.sleep(3 * server.LINGER_S)
    assert pair.take() == []  # the timer went with the write


async def test_a_report_waits_no_longer_than_the_linger():
    pair = prepared_and_started()
    pair.session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    pair.session.send(Output(id=0, stream="stdout", body=b"first line\n"), linger=True)
    assert pair.take() == []
    pair.writer.wrote.clear()
    async with asyncio.timeout(10):
        await pair.writer.wrote.wait()
    assert pair.take() == [["started", "output"]]


async def test_an_answer_takes_the_waiting_reports_along_in_order():
    pair = prepared_and_started()
    pair.session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    pair.deliver(Ping(seq=7))
    await pair.session._handle(Ping(seq=7))
    assert pair.take() == [["started", "pong"]]


async def test_a_large_output_is_not_held():
    pair = prepared_and_started()
    pair.session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    body = b"x" * server.LINGER_BYTES
    pair.session.send(Output(id=0, stream="stdout", body=body), linger=True)
    assert pair.take() == [["started", "output"]]


async def test_a_hang_up_sends_what_waits_and_an_abort_drops_it():
    pair = prepared_and_started()
    pair.session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    pair.session.hang_up()
    assert pair.take() == [["started"]]
    assert pair.writer.transport.closing

    gone = prepared_and_started()
    gone.session.send(Started(released_at={"0": 1}, late_ns=0), linger=True)
    gone.session.abort()
    await asyncio.sleep(3 * server.LINGER_S)  # no write after the abort (RecordingWriter)
    assert gone.take() == [] and gone.writer.transport.aborted


async def test_a_running_commands_line_arrives_while_it_runs(agent: AgentProcess, token_file):
    """Through a real agent process: a line printed by a command that goes on running
    reaches the controller long before the command ends."""
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        prepared = await client.prepare("t", commands(("echo first; exec sleep 30", 60)))
        assert isinstance(prepared, Prepared)
        await client.start()
        got: list[Message] = []
        async with asyncio.timeout(10):  # the command sleeps 30 s
            while not any(isinstance(m, Output) for m in got):
                got.append(await client.recv(timeout=10))
        output = next(m for m in got if isinstance(m, Output))
        assert output.body == b"first\n"
        assert not any(isinstance(m, Exit) for m in got)
        assert isinstance(await client.ping(seq=5), Pong)


async def test_a_prepared_held_for_the_next_pong_comes_without_one(agent: AgentProcess, token_file):
    """A prepare sent with a ping: its `prepared` waits for our next ping's pong to share
    its write, and comes on its own when no ping follows."""
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        for seq, ping_again in ((1, True), (3, False)):
            client.conn.send(Ping(seq=seq))
            client.conn.send(Prepare(label="t", commands=commands(("true", 10))))
            client._flush()
            assert isinstance(await client.recv(), Pong)
            if ping_again:
                await client.send(Ping(seq=seq + 1))
            replies = [await client.recv(), *([await client.recv()] if ping_again else [])]
            assert [type(m) for m in replies] == [Prepared, Pong][: len(replies)]
            await client.send(Start(at=None))
            while not isinstance(await client.recv(), Finished):
                pass
