"""Hostile peers and an on-path attacker against real agents and the real runner (issue 8).

Points 1 (session takeover through a proxy), 2 (weak tokens), 4 (the
decoder's pre-authentication limit) and 10 (absurd numbers, internal agent
errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.attack_proxy import AttackProxy
from netjobs_core import results_json
from netjobs_core.config import parse_config
from netjobs_core.results import HostState, RunResult, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import (
    AuthenticationFailed,
    FrameTooLarge,
    IntegrityError,
    ProtocolError,
    VersionMismatch,
)
from netjobs_core.wire.framing import (
    MAX_HANDSHAKE_HEADER,
    PREFIX,
    PREFIX_SIZE,
    PROTOCOL_VERSION,
    TAG_SIZE,
    Frame,
    FrameDecoder,
    encode_frame,
)
from netjobs_core.wire.messages import (
    Exit,
    Finished,
    Hello,
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
from netjobs_core.wire.states import Phase, State
from netjobs_core.wire.tokens import Token, TokenError, refuse_weak, weakness
from tests.agent_harness import REPO, AgentClient, agent_command, agent_env, commands, start_agent
from tests.loopback import serving

pytestmark = pytest.mark.timeout(60)

TAMPERED = "integrity check failed: the connection was tampered with"


def plan_for(*hosts: tuple[int, str], minhosts: str = "all"):
    lines = "".join(f'127.0.0.1:{port}: "{command}"\n' for port, command in hosts)
    return parse_config(f"t:\n-minhosts: {minhosts}\n{lines}end\n", "test.cfg")


def options(token: tuple[Token, Path]) -> RunOptions:
    return RunOptions(token=token[0], connect_timeout=5.0)


def passed_in_json(test) -> bool:
    run = RunResult(config_path="test.cfg")
    run.tests.append(test)
    return results_json.run_to_json(run)["passed"]


# -- point 1: an on-path proxy without the token ------------------------------------------
@pytest.mark.parametrize("mode", ["rewrite-prepare", "rewrite-both"])
async def test_a_rewritten_prepare_runs_nothing_and_fails_the_host(token, tmp_path, mode):
    marker = tmp_path / "pwned"
    with start_agent(token[1]) as agent:
        async with AttackProxy(agent.address, mode, f"touch '{marker}'") as proxy:
            port = await proxy.start()
            test = await run_test(plan_for((port, "echo benign")).tests[0], options(token))
        assert proxy.tampered["prepare"] == 1  # the attack did happen
        [host] = test.hosts
        assert test.status is not TestStatus.PASSED and not passed_in_json(test)
        assert host.state is HostState.FAILED and TAMPERED in host.error
        await agent.await_log(TAMPERED)
        async with await AgentClient.connect(agent.host, agent.port, token[1]) as client:
            assert (await client.status()).busy is False
    assert not marker.exists()


async def test_rewritten_output_fails_the_host_at_the_controller(token):
    with start_agent(token[1]) as agent:
        async with AttackProxy(
            agent.address, "rewrite-output", "", fake_output=b"forged\n"
        ) as proxy:
            port = await proxy.start()
            test = await run_test(plan_for((port, "echo benign")).tests[0], options(token))
        assert proxy.tampered["output"] == 1
        [host] = test.hosts
        assert host.state is HostState.FAILED and TAMPERED in host.error
        assert "from the agent does not verify" in host.error
        assert host.commands[0].stdout.read_bytes() == b""  # nothing of the forged frame was kept
        assert test.status is not TestStatus.PASSED


async def test_a_hijacked_connection_after_bye_runs_nothing(token, tmp_path):
    marker = tmp_path / "pwned"
    with start_agent(token[1]) as agent:
        async with AttackProxy(agent.address, "hijack", f"touch '{marker}'") as proxy:
            port = await proxy.start()
            test = await run_test(plan_for((port, "echo benign")).tests[0], options(token))
            assert test.status is TestStatus.PASSED  # the real run was not touched
            log = await agent.await_log(TAMPERED)
        assert proxy.tampered["bye"] == 1
        assert "test 'hijacked'" not in log
    assert not marker.exists()


# -- point 1 at the Connection: every kind of tampering -------------------------------------
TOKEN = b"Zq3-xT9_vLk2pW8rN5mB7cY4hJ6gF1dS0aQeRtUiOp"


def ready_pair() -> tuple[Connection, Connection]:
    controller, agent = Connection(Role.CONTROLLER, TOKEN), Connection(Role.AGENT, TOKEN)
    for _ in range(2):
        agent.receive_data(controller.data_to_send())
        controller.receive_data(agent.data_to_send())
    assert controller.state is agent.state is State.READY
    return controller, agent


def pings(controller: Connection, count: int) -> list[bytes]:
    frames = []
    for seq in range(count):
        controller.send(Ping(seq=seq))
        frames.append(controller.data_to_send())
    return frames


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


HEADER_BYTE = PREFIX_SIZE + 3


def unsealed(frame: bytes) -> bytes:
    """FRAME as if sent without a tag: flag cleared, tag cut."""
    return frame[:3] + b"\x00" + frame[4:-TAG_SIZE]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda f: [f[0], flip(f[1], HEADER_BYTE)], id="header byte"),
        # header_len 23 -> 22: the frame ends a byte early, its "tag" shifts
        pytest.param(lambda f: [f[0], flip(f[1], 7)], id="prefix byte"),
        pytest.param(lambda f: [f[0], flip(f[1], len(f[1]) - 1)], id="tag byte"),
        pytest.param(lambda f: [f[0], f[2]], id="dropped frame"),
        pytest.param(lambda f: [f[0], f[0]], id="replayed frame"),
        pytest.param(lambda f: [f[1], f[0]], id="reordered frames"),
        pytest.param(lambda f: [f[0], unsealed(f[1])], id="tag stripped"),
    ],
)
def test_the_agent_refuses_a_tampered_frame_and_acts_on_nothing(tamper):
    controller, agent = ready_pair()
    first, second = tamper(pings(controller, 3))
    delivered: list[Message] = []
    with pytest.raises(IntegrityError, match=TAMPERED):
        delivered += agent.receive_data(first)
        delivered += agent.receive_data(second)
    assert [m.seq for m in delivered] in ([], [0])  # nothing of the bad frame
    assert agent.state is State.CLOSED
    [error] = FrameDecoder().feed(agent.data_to_send())
    assert (error.type, error.fields["code"]) == ("error", "integrity")
    assert "from the controller" in error.fields["message"]


def test_a_frame_of_one_test_replayed_into_the_next_on_a_kept_session_is_refused():
    """A run keeps each host's session between its tests (netjobs_core/links.py): the
    frame counters go on, so the first test's `start` sent again in the second test
    fails its tag, and the agent acts on nothing of it."""
    controller, agent = ready_pair()
    prepare = Prepare(label="t", commands=[{"id": 0, "command": "true"}])
    prepared = Prepared(
        gated=True, commands=[{"id": 0, "ok": True, "error": None}], run_id="ab", grace=0.0
    )

    def one_test() -> bytes:
        controller.send(prepare)
        assert agent.receive_data(controller.data_to_send()) == [prepare]
        agent.send(prepared)
        controller.receive_data(agent.data_to_send())
        controller.send(Start(at=None))
        start = controller.data_to_send()
        assert agent.receive_data(start) == [Start(at=None)]
        agent.send(Started(released_at={"0": 5}, late_ns=0))
        agent.send(Exit(id=0, status="ok", exit_code=0, message=""))
        agent.send(Finished())
        controller.receive_data(agent.data_to_send())
        assert controller.phase is agent.phase is Phase.IDLE
        return start

    first_start = one_test()
    one_test()  # the session goes on into the next test
    controller.send(prepare)
    assert agent.receive_data(controller.data_to_send()) == [prepare]
    agent.send(prepared)
    controller.receive_data(agent.data_to_send())
    with pytest.raises(IntegrityError, match=TAMPERED):
        agent.receive_data(first_start)
    assert agent.state is State.CLOSED


def test_a_flipped_body_byte_is_refused_by_the_controller():
    controller, agent = ready_pair()
    agent.queue_unchecked(Output(id=0, stream="stdout", body=b"benign\n"))
    output = agent.data_to_send()
    with pytest.raises(IntegrityError, match="frame 1 from the agent does not verify"):
        controller.receive_data(flip(output, len(output) - TAG_SIZE - 2))
    assert controller.state is State.CLOSED


def test_frames_are_not_reflected_between_directions():
    """Each direction has its own key: a controller frame sent back to it fails."""
    controller, _ = ready_pair()
    controller.send(StatusQuery())
    with pytest.raises(IntegrityError):
        controller.receive_data(controller.data_to_send())


def with_extra_field(data: bytes) -> bytes:
    [frame] = FrameDecoder().feed(data)
    return encode_frame(Frame(frame.type, {**frame.fields, "extra": "x"}))


def test_a_rewritten_agent_hello_breaks_the_handshake():
    """Channel binding: the controller's proof covers both hellos as they were on the wire."""
    controller, agent = Connection(Role.CONTROLLER, TOKEN), Connection(Role.AGENT, TOKEN)
    agent.receive_data(controller.data_to_send())
    controller.receive_data(with_extra_field(agent.data_to_send()))
    with pytest.raises(AuthenticationFailed, match="altered on the way"):
        agent.receive_data(controller.data_to_send())


def test_a_rewritten_controller_hello_breaks_the_handshake():
    controller, agent = Connection(Role.CONTROLLER, TOKEN), Connection(Role.AGENT, TOKEN)
    agent.receive_data(with_extra_field(controller.data_to_send()))
    with pytest.raises(AuthenticationFailed):
        controller.receive_data(agent.data_to_send())


def test_a_protocol_1_peer_gets_the_version_message():
    agent = Connection(Role.AGENT, TOKEN)
    header = b'{"type":"hello","role":"controller","version":1,"nonce":"' + b"ab" * 32 + b'"}'
    v1 = PREFIX.pack(b"NJ", 1, 0, len(header), 0) + header
    with pytest.raises(VersionMismatch, match="protocol 1, this side speaks 2"):
        agent.receive_data(v1)
    reply = agent.data_to_send()
    assert reply[2] == PROTOCOL_VERSION == 2 and b'"code":"version"' in reply


# -- point 4 (decoder half): tiny frames before authentication ------------------------------
@pytest.mark.parametrize(
    ("header_len", "body_len"), [(MAX_HANDSHAKE_HEADER + 1, 0), (100, 1), (256 * 1024, 1024**2)]
)
def test_before_authentication_only_tiny_frames(header_len, body_len):
    for conn in (Connection(Role.AGENT, TOKEN), Connection(Role.CONTROLLER, TOKEN)):
        conn.data_to_send()
        prefix = PREFIX.pack(b"NJ", PROTOCOL_VERSION, 0, header_len, body_len)
        with pytest.raises(FrameTooLarge):
            conn.receive_data(prefix)  # refused from the prefix: nothing buffered


async def test_the_agent_refuses_a_big_frame_before_authentication_from_its_prefix(agent):
    """A stranger announcing a 256 KiB + 1 MiB frame is refused before it sends the bytes."""
    reader, writer = await asyncio.open_connection(agent.host, agent.port)
    try:
        writer.write(PREFIX.pack(b"NJ", PROTOCOL_VERSION, 0, 256 * 1024, 1024**2))
        async with asyncio.timeout(10):
            reply = await reader.read()  # the agent answers and closes: nothing buffered
    finally:
        writer.close()
    [error] = FrameDecoder().feed(reply)
    assert (error.type, error.fields["code"]) == ("error", "protocol")
    assert "exceeds the limit" in error.fields["message"]


async def test_a_replayed_controller_session_runs_nothing_and_is_logged_per_source(
    agent, token, tmp_path
):
    """A VM without the token captures a real controller's bytes on the way to the agent
    and replays them, 20 times, from its own address."""
    captured = bytearray()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(agent.host, agent.port)

        async def pipe(src, dst, record: bool) -> None:
            while data := await src.read(65536):
                captured.extend(data if record else b"")
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    marker = tmp_path / "ran"
    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        plan = parse_config(f't:\n127.0.0.1:{port}: "echo x >> {marker}"\nend\n')
        test = await run_test(plan.tests[0], RunOptions(token=token[0], connect_timeout=5))
    assert test.status is TestStatus.PASSED and marker.read_text() == "x\n"
    for _ in range(20):
        reader, writer = await asyncio.open_connection(
            agent.host, agent.port, local_addr=("127.0.0.9", 0)
        )
        try:
            writer.write(bytes(captured))
            async with asyncio.timeout(10):
                await reader.read()  # the agent refuses the old proof and hangs up
        finally:
            writer.close()
    await agent.await_log("authentication failed from 127.0.0.9:")
    await asyncio.sleep(0.3)
    assert marker.read_text() == "x\n"  # nothing replayed ran
    failures = [line for line in agent.log_text().splitlines() if "127.0.0.9:" in line]
    assert len(failures) == 10  # the source's lines per interval, not one per replay
    assert failures[0].count("authentication failed") == 1, failures[0]  # said once
    assert "the controller does not hold the token" in failures[0]


async def test_a_hello_dripped_a_byte_a_second_is_one_line_per_attacker(agent, token):
    """Slow peers hold a pre-authentication slot for the handshake's 10 s at most, each
    ends as one line naming its address, and a controller is served meanwhile."""
    hello = encode_frame(  # a real controller's hello, never completed in 10 s
        Hello(role=Role.CONTROLLER.value, version=PROTOCOL_VERSION, nonce="ab" * 32).to_frame()
    )
    sources = [f"127.0.0.{i}" for i in range(10, 14)]

    async def drip(source: str) -> None:
        reader, writer = await asyncio.open_connection(
            agent.host, agent.port, local_addr=(source, 0)
        )
        try:
            async with asyncio.timeout(15):
                for byte in hello:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            if not await reader.read(4096):
                                return  # the agent hung up
        finally:
            writer.close()

    drips = [asyncio.create_task(drip(source)) for source in sources]
    await asyncio.sleep(2)
    plan = parse_config(f't:\n127.0.0.1:{agent.port}: "echo served"\nend\n')
    test = await run_test(plan.tests[0], RunOptions(token=token[0], connect_timeout=5))
    assert test.status is TestStatus.PASSED, test.reason
    await asyncio.gather(*drips)
    lines = agent.log_text().splitlines()
    for source in sources:
        mine = [line for line in lines if f"{source}:" in line]
        assert len(mine) == 1 and "did not authenticate within 10 s" in mine[0], mine


def test_after_authentication_frames_are_full_size():
    controller, agent = ready_pair()
    agent.queue_unchecked(Output(id=0, stream="stdout", body=b"x" * 1024**2))
    data = agent.data_to_send()
    decoder = controller._decoder
    decoder.add(data)
    assert decoder.next_frame() is not None


# -- point 2: weak tokens --------------------------------------------------------------------
def test_weak_tokens_are_named_and_generated_ones_always_pass():
    for weak in (b"benchmark-lab-42", b"benchmarklab1234", b"a" * 40, b"Password-Password-1"):
        assert weakness(weak) is not None, weak
    for _ in range(20000):
        assert weakness(secrets.token_urlsafe(32).encode()) is None
    assert weakness(b"correct-horse-battery-staple-0123456789") is None
    with pytest.raises(TokenError, match=r"weak.*--allow-weak-token") as info:
        refuse_weak(Token(b"benchmark-lab-42", "token file t"))
    assert "benchmark" not in str(info.value)  # the message never quotes the secret


def test_the_agent_refuses_a_weak_token_unless_allowed(tmp_path):
    path = tmp_path / "token"
    path.write_text("benchmark-lab-42\n")
    path.chmod(0o600)
    refused = subprocess.run(
        agent_command(path), env=agent_env(), cwd=REPO, capture_output=True, timeout=30
    )
    assert refused.returncode == 2 and b"weak" in refused.stderr
    assert b"--allow-weak-token" in refused.stderr
    with start_agent(path, "--allow-weak-token") as agent:
        assert agent.proc.poll() is None


def test_the_cli_refuses_a_weak_token_unless_allowed(tmp_path):
    path = tmp_path / "token"
    path.write_text("benchmark-lab-42\n")
    path.chmod(0o600)  # only its weakness is in question
    config = tmp_path / "t.cfg"
    config.write_text('t:\n127.0.0.1:9: "true"\nend\n')
    cli = [sys.executable, "-m", "netjobs_core.cli"]
    args = ["check", str(config), "--token-file", str(path), "--connect-timeout", "1"]
    refused = subprocess.run([*cli, *args], env=agent_env(), capture_output=True, timeout=30)
    assert refused.returncode == 2 and b"weak" in refused.stderr
    allowed = subprocess.run(
        [*cli, *args, "--allow-weak-token"], env=agent_env(), capture_output=True, timeout=30
    )
    assert b"weak" not in allowed.stderr and b"0 of 1 agents ready" in allowed.stdout


# -- point 10: absurd numbers, internal errors ---------------------------------------------
def fake_agent(
    secret: bytes,
    started: dict[str, object],
    pong: Callable[[int], dict[str, object]] = lambda clock: {},
):
    """An agent that answers everything properly, except that its `started` says STARTED
    (and its pongs add what `pong` says for their clock)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(Role.AGENT, secret)
        try:
            async with asyncio.timeout(30):
                while data := await reader.read(65536):
                    for message in conn.receive_data(data):
                        answer(conn, message)
                    writer.write(conn.data_to_send())
        except (ProtocolError, ConnectionError):
            pass  # serving closes the connection

    def answer(conn: Connection, message: Message) -> None:
        if isinstance(message, Ping):
            clock = now_ns()
            conn.send(Pong(seq=message.seq, clock=clock, **pong(clock)))
        elif isinstance(message, StatusQuery):
            conn.send(Status(busy=False, hostname="fake", version="3", platform="x"))
        elif isinstance(message, Prepare):
            items = [{"id": c["id"], "ok": True, "error": None} for c in message.commands]
            conn.send(Prepared(gated=True, commands=items, run_id="fake", grace=0))
        elif isinstance(message, Start):
            conn.queue_unchecked(Frame("started", started))  # past its own checks

    return serving(serve)


@pytest.mark.parametrize(
    "started",
    [
        {"released_at": {"0": 10**400}, "late_ns": 0},
        {"released_at": {"0": 5}, "late_ns": 10**400},
        {"released_at": {"0": float("inf")}, "late_ns": 0},
    ],
    ids=["released_at 10**400", "late_ns 10**400", "released_at inf"],
)
async def test_an_absurd_number_fails_that_host_only(token, started):
    with start_agent(token[1]) as honest:
        async with fake_agent(token[0].secret, started) as fake_port:
            hosts = (honest.port, "echo honest"), (fake_port, "true")
            # -minhosts all: the quorum is lost, the honest host's run is killed in order.
            aborted = await run_test(plan_for(*hosts).tests[0], options(token))
            # -minhosts 1: the honest host runs to its end, its output kept.
            quorum = await run_test(plan_for(*hosts, minhosts="1").tests[0], options(token))
    for test in (aborted, quorum):
        _, bad = test.hosts
        assert bad.state is HostState.FAILED and "protocol error" in bad.error
        assert "'started' message has" in bad.error
    assert aborted.status is TestStatus.ABORTED and not passed_in_json(aborted)
    assert aborted.hosts[0].state in (HostState.KILLED, HostState.DONE)
    assert quorum.hosts[0].commands[0].stdout.read_bytes() == b"honest\n"
    assert quorum.hosts[0].state is HostState.DONE
    assert quorum.reason.startswith("1 of 2 hosts succeeded")


async def test_a_start_instant_beyond_the_schema_is_refused(agent, token_file):
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        await client.prepare("far", commands("true"))
        client.conn.queue_unchecked(Start(at=10**400))
        client.writer.write(client.conn.data_to_send())
        refused = await client.recv()
        assert (refused.TYPE, refused.code) == ("error", "protocol")
        assert "out-of-range 'at'" in refused.message
    await agent.await_log("test 'far' finished")  # killed after the orphan grace: not busy
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        assert (await client.status()).busy is False


async def test_a_start_instant_too_far_ahead_is_refused_at_once(agent, token_file):
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        await client.prepare("far", commands("true"))
        await client.send(Start(at=now_ns() + 2**62))
        refused = await client.recv()
        assert (refused.TYPE, refused.code) == ("error", "bad-request")
        assert "ahead of the agent's clock (at most 600 s)" in refused.message
    await agent.await_log("test 'far' finished", timeout=5)
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        assert (await client.status()).busy is False


async def test_an_internal_error_in_a_run_reaches_the_controller(monkeypatch, token):
    """In process: the agent's code is made to fail where no peer input can reach."""
    from agent import jobs, server

    def broken() -> int:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(jobs.oskit, "coarse_wake_margin_ns", broken)
    agent = server.Agent(token[0])
    listener = await asyncio.start_server(agent.handle_connection, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        async with await AgentClient.connect("127.0.0.1", port, token[0].secret) as client:
            await client.prepare("buggy", commands("true"))
            await client.send(Start(at=now_ns() + 10**6))
            error = await client.recv(timeout=5)
            assert (error.TYPE, error.code) == ("error", "internal")
            assert "simulated bug" in error.message
        assert agent.run is None  # not left busy
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            await agent.shutdown()
        await listener.wait_closed()
