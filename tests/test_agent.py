"""The agent as a real process on loopback: what it runs, reports, kills and refuses."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import (
    AgentClient,
    AgentProcess,
    agent_command,
    agent_env,
    commands,
    cpu_ticks,
    kill_pids,
    pid_alive,
    read_lines,
    start_agent,
    wait_gone,
)

from agent import oskit, spool
from netjobs_core import __version__, text
from netjobs_core.client import AgentLink, ConnectionLost
from netjobs_core.local_agents import AgentStartError
from netjobs_core.wire.address import Address
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import AuthenticationFailed, ProtocolError
from netjobs_core.wire.framing import PROTOCOL_VERSION, FrameDecoder, encode_frame
from netjobs_core.wire.messages import (
    SENT_BY,
    Auth,
    Exit,
    Hello,
    Kill,
    Message,
    Ping,
    Prepare,
    Prepared,
    Role,
    Start,
    Started,
)
from netjobs_core.wire.sealing import proof as make_proof
from netjobs_core.wire.sealing import token_key
from netjobs_core.wire.states import Phase
from netjobs_core.wire.status import CommandStatus
from netjobs_core.wire.tokens import load_token
from tests.loopback import serving

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]


async def connect(agent: AgentProcess, token_file: Path) -> AgentClient:
    return await AgentClient.connect(agent.host, agent.port, token_file)


# -- basics -------------------------------------------------------------------------
async def test_handshake_ping_and_status(agent, token_file):
    async with await connect(agent, token_file) as client:
        before = time.perf_counter_ns()
        pong = await client.ping(seq=41)
        after = time.perf_counter_ns()
        assert pong.TYPE == "pong" and pong.seq == 41
        # Same machine, same clock (perf_counter_ns is system-wide monotonic here).
        assert before <= pong.clock <= after
        status = await client.status()
        assert status.to_frame().fields == {
            "busy": False,
            "label": None,
            "hostname": socket.gethostname(),
            "version": __version__,
            "platform": status.platform,
            # Whether it waits for releases at real-time priority: as this user may.
            "realtime": oskit.realtime_refused() is None,
        }
        assert status.platform.startswith("Linux")


async def test_the_controllers_close_says_bye(agent, token_file):
    """AgentLink.close sends its `bye` with the FIN (client.TcpChannel `last`): the agent
    still reads it as the controller's last word, not as a lost connection."""
    token = load_token(token_file)
    link = AgentLink(Address(agent.host, agent.port), token.secret)
    await link.connect(5)
    await link.close()
    deadline = time.monotonic() + 10
    while "said bye" not in agent.log_text():
        assert time.monotonic() < deadline, agent.log_text()
        await asyncio.sleep(0.05)
    assert "disconnected" not in agent.log_text()


def test_startup_lines(agent, token_file):
    lines = agent.stdout_text().splitlines()
    assert lines[0] == f"netjobs-agent {__version__} listening on 127.0.0.1:{agent.port}"
    assert lines[1] == f"token: token file {token_file}"
    secret = token_file.read_text().strip()
    assert secret not in agent.stdout_text() and secret not in agent.log_text()


def _loopback_v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _loopback_v6(), reason="no IPv6 loopback")
def test_an_ipv6_agent_is_found_where_it_listens(token_file):
    with start_agent(token_file, bind="::1") as agent:
        assert agent.listening == [Address("::1", agent.port)] and agent.host == "::1"
        assert f"listening on [::1]:{agent.port}" in agent.stdout_text()
    with pytest.raises(AgentStartError, match=r"^agent on \[::1\]:0 exited with status"):
        start_agent(token_file, "--no-such-option", bind="::1")


async def test_exit_statuses_and_signal_deaths(agent, token_file):
    async with await connect(agent, token_file) as client:
        outcome = await client.run(
            commands(
                "echo out; echo err >&2",
                "exit 3",
                "kill -9 $$",
                "kill -TERM $$",
                "no-such-command-netjobs",
            )
        )
    exits = outcome.exits
    assert (exits[1].status, exits[1].exit_code) == ("ok", 0)
    assert (outcome.stdout(1), outcome.stderr(1)) == (b"out\n", b"err\n")
    assert (exits[2].status, exits[2].exit_code) == ("failed", 3)
    assert exits[2].message == "exited with code 3"
    assert (exits[3].status, exits[3].exit_code) == ("failed", -9)
    assert exits[3].message == "killed by signal 9 (SIGKILL)"
    assert (exits[4].exit_code, exits[4].message) == (-15, "killed by signal 15 (SIGTERM)")
    assert (exits[5].status, exits[5].exit_code) == ("failed", 127)
    assert b"not found" in outcome.stderr(5)
    assert outcome.started is not None
    released = outcome.started.released_at
    assert set(released) == {"1", "2", "3", "4", "5"}
    for command_id, message in exits.items():
        assert message.ended_at >= released[str(command_id)]


async def test_command_sees_devnull_stdin_agent_env_and_cwd(tmp_path, token_file):
    env = dict(os.environ, NETJOBS_TEST_MARK="mark-42")
    with start_agent(token_file, env=env, cwd=tmp_path) as agent:
        async with await connect(agent, token_file) as client:
            outcome = await client.run(
                commands(
                    'pwd; echo "$NETJOBS_TEST_MARK"; echo "[$#][$0][$1][$@]"; '
                    "readlink /proc/self/fd/0; cat; echo end"
                )
            )
    assert outcome.exits[1].status == "ok", outcome.stderr(1)
    assert outcome.stdout(1).decode().splitlines() == [
        str(tmp_path),
        "mark-42",
        "[0][/bin/sh][][]",
        "/dev/null",
        "end",
    ]


async def test_binary_output_is_passed_through(agent, token_file):
    async with await connect(agent, token_file) as client:
        outcome = await client.run(
            commands("printf '\\377\\376\\000\\200abc\\r\\n\\351'; printf '\\300\\000' >&2")
        )
    assert outcome.stdout(1) == b"\xff\xfe\x00\x80abc\r\n\xe9"
    assert outcome.stderr(1) == b"\xc0\x00"


async def test_ten_megabytes_on_each_stream(agent, token_file, tmp_path):
    out_file, err_file = tmp_path / "out.bin", tmp_path / "err.bin"
    out_file.write_bytes(secrets.token_bytes(10 * 1024 * 1024))
    err_file.write_bytes(secrets.token_bytes(10 * 1024 * 1024))
    async with await connect(agent, token_file) as client:
        outcome = await client.run(
            commands(f"cat '{out_file}' & cat '{err_file}' >&2; wait"), timeout=50
        )
    assert outcome.exits[1].status == "ok"
    chunks = [m for m in outcome.messages if m.TYPE == "output"]
    assert max(len(m.body) for m in chunks) <= spool.CHUNK
    assert {m.stream for m in chunks} == {"stdout", "stderr"}
    assert (
        hashlib.sha256(outcome.stdout(1)).digest() == hashlib.sha256(out_file.read_bytes()).digest()
    )
    assert (
        hashlib.sha256(outcome.stderr(1)).digest() == hashlib.sha256(err_file.read_bytes()).digest()
    )


async def test_empty_test(agent, token_file):
    async with await connect(agent, token_file) as client:
        outcome = await client.run([])
    assert outcome.started.released_at == {} and outcome.started.late_ns == 0
    assert outcome.exits == {} and outcome.finished


# -- timeouts and process trees -----------------------------------------------------------
async def test_silent_command_is_killed_at_its_timeout(agent, token_file):
    async with await connect(agent, token_file) as client:
        await client.prepare("t", commands(("echo $$; exec sleep 30", 1)))
        started = await client.start()
        [pid] = await read_lines(client, 1)
        outcome = await client.collect(timeout=10)
    exit_ = outcome.exits[1]
    assert exit_.status == "timeout"
    assert (exit_.message, exit_.timeout) == ("", 1)  # facts: the controller says it
    words = text.command_end(CommandStatus.TIMEOUT, exit_.message, exit_.timeout)
    assert words == "killed at its 1 s timeout"
    assert exit_.exit_code == -signal.SIGTERM
    ran_for = (exit_.ended_at - started.released_at["1"]) / 1e9
    assert 0.95 <= ran_for < 1.8
    assert not pid_alive(int(pid))


async def test_grandchildren_die_with_their_command(agent, token_file):
    async with await connect(agent, token_file) as client:
        await client.prepare("t", commands(("sh -c 'echo $$; sleep 30 & echo $!; sleep 30'", 1)))
        await client.start()
        pids = [int(line) for line in await read_lines(client, 2)]
        assert all(pid_alive(pid) for pid in pids)
        outcome = await client.collect(timeout=10)
    assert outcome.exits[1].status == "timeout"
    assert await wait_gone(pids, 3) == []


async def test_background_leftovers_are_killed_when_the_command_exits(agent, token_file):
    async with await connect(agent, token_file) as client:
        outcome = await client.run(commands("sleep 30 >/dev/null 2>&1 & echo $!"))
    assert outcome.exits[1].status == "ok"
    assert await wait_gone([int(outcome.stdout(1))], 3) == []


async def test_a_pipe_held_outside_the_group_does_not_hold_the_exit(agent, token_file):
    # setsid takes the sleep out of the command's process group, with stdout still open.
    async with await connect(agent, token_file) as client:
        begin = time.monotonic()
        outcome = await client.run(commands("setsid sleep 20 & echo $!; sleep 0.5"), timeout=15)
        took = time.monotonic() - begin
    escaped = int(outcome.stdout(1))
    try:
        assert outcome.exits[1].status == "ok"
        assert took < 6
        if sys.platform.startswith("linux"):  # agent.procs finds it (cgroup or cookie)
            assert await wait_gone([escaped], 3) == []
        else:
            assert "output pipes still open" in agent.log_text()
    finally:
        kill_pids([escaped])


# -- concurrency, kill, state -------------------------------------------------------------
async def test_busy_while_running_and_status_answered(agent, token_file):
    async with await connect(agent, token_file) as owner, await connect(agent, token_file) as other:
        await owner.prepare("long one", commands("sleep 30"))
        await owner.start()
        status = await other.status()
        assert (status.busy, status.label) == (True, "long one")
        refused = await other.prepare("second", commands("true"))
        assert (refused.TYPE, refused.code) == ("error", "busy")
        assert "long one" in refused.message and "127.0.0.1:" in refused.message
        assert (await other.ping()).TYPE == "pong"  # still connected
        late = await AgentClient.connect(agent.host, agent.port, token_file)
        async with late:
            assert (await late.status()).busy is True
        await owner.send(Kill(reason="enough"))
        outcome = await owner.collect(timeout=10)
        assert outcome.exits[1].status == "killed"
        assert outcome.exits[1].message == "enough"
        # idle again: the other connection can run a test now
        second = await other.run(commands("echo second"), label="second")
        assert second.stdout(1) == b"second\n"


async def test_kill_request_kills_every_command(agent, token_file):
    async with await connect(agent, token_file) as client:
        await client.prepare("t", commands("echo $$; exec sleep 30", "echo $$; exec sleep 30"))
        await client.start()
        pids = [int(p) for p in await read_lines(client, 1, 1) + await read_lines(client, 1, 2)]
        await client.send(Kill(reason="stop now"))
        outcome = await client.collect(timeout=10)
    for command_id in (1, 2):
        assert outcome.exits[command_id].status == "killed"
        assert outcome.exits[command_id].message == "stop now"
        assert outcome.exits[command_id].exit_code == -signal.SIGTERM
    assert await wait_gone(pids, 3) == []
    assert "stop now" in agent.log_text()


async def test_kill_before_start_never_runs_the_command(agent, token_file, tmp_path):
    marker = tmp_path / "ran"
    async with await connect(agent, token_file) as client:
        prepared = await client.prepare("t", commands(f"touch '{marker}'"))
        assert prepared.gated is True and prepared.commands[0]["ok"] is True
        await client.send(Kill(reason="changed my mind"))
        outcome = await client.collect(timeout=10)
        assert outcome.exits[1].status == "killed"
        assert outcome.exits[1].exit_code is None
        assert not any(m.TYPE == "output" for m in outcome.messages)
        assert (await client.status()).busy is False
    await asyncio.sleep(0.2)
    assert not marker.exists()


@pytest.mark.parametrize("leaving", ["bye", "reset"])
async def test_a_controller_leaving_before_the_start_frees_the_agent_at_once(
    agent, token_file, tmp_path, leaving
):
    """A run never released can never be (a start comes only on the connection that
    prepared it): a controller that leaves before the start, saying bye or not (its
    test aborted while it prepared), frees the agent then, not after the orphan grace."""
    marker = tmp_path / "ran"
    client = await connect(agent, token_file)
    prepared = await client.prepare("t", commands(f"touch '{marker}'"))
    assert prepared.commands[0]["ok"] is True
    if leaving == "bye":
        await client.close()
    else:
        client.abort()  # a reset, as a controller closing with unread replies sends
    async with await connect(agent, token_file) as nxt:  # at once
        outcome = await nxt.run(commands("echo next"), label="next")
        assert outcome.stdout(1) == b"next\n"
    assert "left test 't' before its start: dropping it" in agent.log_text()
    assert "is gone while test 't' is active" not in agent.log_text()
    await asyncio.sleep(0.2)
    assert not marker.exists()


async def test_a_prepare_waits_for_a_killed_run_to_end(agent, token_file):
    """A run killed a moment ago is ending (its command has a SIGTERM trap): a prepare
    arriving then waits for it instead of being refused as busy."""
    async with await connect(agent, token_file) as owner, await connect(agent, token_file) as other:
        await owner.prepare(
            "slow to die", commands("trap 'sleep 0.5; exit 3' TERM; echo up; sleep 30 & wait")
        )
        await owner.start()
        await read_lines(owner, 1)  # its trap is set
        await owner.send(Kill(reason="enough"))
        await agent.await_log("killing test 'slow to die'")
        prepared = await other.prepare("next", commands("echo next"))
        assert prepared.TYPE == "prepared"
        outcome = await owner.collect(timeout=10)
        assert outcome.exits[1].status == "killed"


async def read_until_error(client: AgentClient) -> Message:
    while (message := await client.recv()).TYPE != "error":
        pass
    return message


async def test_start_needs_a_prepared_test(agent, token_file):
    async with await connect(agent, token_file) as client:
        with pytest.raises(ProtocolError, match="'start' out of order"):
            await client.send(Start(at=None))  # the client's own table refuses it
        client.conn.queue_unchecked(Start(at=None))  # past the table
        client.writer.write(client.conn.data_to_send())
        refused = await client.recv()
        assert (refused.TYPE, refused.code) == ("error", "protocol")
        assert "'start' out of order" in refused.message
        with pytest.raises(EOFError):
            await client.recv()
    await agent.await_log("'start' out of order: the controller may not send it")


async def test_a_second_start_is_refused(agent, token_file):
    async with await connect(agent, token_file) as client:
        await client.prepare("t", commands("sleep 0.3"))
        await client.start()
        with pytest.raises(ProtocolError, match="'start' out of order"):
            await client.send(Start(at=None))
        client.conn.queue_unchecked(Start(at=None))
        client.writer.write(client.conn.data_to_send())
        refused = await read_until_error(client)
        assert refused.code == "protocol" and "while the connection is running" in (refused.message)
        with pytest.raises(EOFError):
            await client.recv()


async def test_one_connection_runs_tests_one_after_the_other(agent, token_file):
    async with await connect(agent, token_file) as client:
        for word in ("one", "two"):
            assert (await client.run(commands(f"echo {word}"))).stdout(1) == f"{word}\n".encode()
        killed = await client.prepare("killed", commands("true"))
        assert killed.TYPE == "prepared"
        await client.send(Kill(reason="no"))
        assert (await client.collect()).exits[1].status == CommandStatus.KILLED
        await client.send(Kill(reason="nothing to kill"))  # answered with nothing
        assert (await client.run(commands("echo three"))).stdout(1) == b"three\n"


async def test_the_controller_refuses_an_exit_before_started(token_file):
    """An agent that reports an exit before `started`: the controller's table names it."""
    secret = AgentClient.secret_of(token_file)
    hung_up = asyncio.Event()  # the fake agent's side is closed too: nothing left open

    async def misbehaving_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn = Connection(Role.AGENT, secret)
        while conn.phase is not Phase.PREPARING:
            conn.receive_data(await reader.read(65536))
            writer.write(conn.data_to_send())
        prepared = Prepared(
            gated=True, commands=[{"id": 1, "ok": True, "error": None}], run_id="r1", grace=1.0
        )
        early = Exit(id=1, status="ok", exit_code=0, message="exit 0")
        conn.queue_unchecked(prepared)
        conn.queue_unchecked(early)  # past its own table
        writer.write(conn.data_to_send())
        await reader.read()  # until the controller hangs up
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    async with serving(misbehaving_agent) as port, asyncio.timeout(10):
        link = AgentLink(Address.parse(f"127.0.0.1:{port}"), secret)
        await link.connect(5)
        prepare = Prepare(label="t", commands=commands("true"))
        try:
            with pytest.raises(ConnectionLost) as info:
                # The two frames may come in one read: then the request fails already.
                assert isinstance(await link.request(prepare, Prepared, 5), Prepared)
                await link.recv()
        finally:
            await link.close()
        await hung_up.wait()
    assert str(info.value) == (
        "protocol error: 'exit' of command 1 before 'started' that is not the report of a kill"
    )


def test_every_controller_message_has_a_handler():
    from agent.server import _HANDLERS

    assert set(_HANDLERS) == set(SENT_BY[Role.CONTROLLER].values())


# -- refusing strangers ---------------------------------------------------------------------
async def raw_exchange(agent: AgentProcess, data: bytes, *, read: bool = True) -> bytes:
    """Send DATA, return what comes back until the agent closes (or resets)."""
    reader, writer = await asyncio.open_connection(agent.host, agent.port)
    received = b""
    try:
        writer.write(data)
        await writer.drain()
        if read:
            async with asyncio.timeout(10):
                while chunk := await reader.read(65536):
                    received += chunk
    except ConnectionError:
        pass  # the agent hung up on data it had not read: the kernel sends a reset
    finally:
        writer.close()
    return received


async def test_wrong_token_runs_nothing(agent, token_file, tmp_path):
    marker = tmp_path / "ran"
    bad_token = b"not-the-right-token-at-all-0123456789"
    with pytest.raises(AuthenticationFailed):
        await AgentClient.connect(agent.host, agent.port, bad_token)

    # A controller that ignores the agent's proof and pushes on with a wrong one.
    reader, writer = await asyncio.open_connection(agent.host, agent.port)
    try:
        nonce = secrets.token_hex(32)
        hello = Hello(role="controller", version=PROTOCOL_VERSION, nonce=nonce).to_frame()
        writer.write(encode_frame(hello))
        decoder = FrameDecoder()
        async with asyncio.timeout(10):
            while not decoder.feed(data := await reader.read(65536)):
                pass
        transcript = hashlib.sha256(encode_frame(hello) + data).digest()
        proof = make_proof(token_key(bad_token), b"netjobs-controller", transcript)
        prepare = Prepare(label="x", commands=[{"id": 1, "command": f"touch '{marker}'"}])
        writer.write(
            encode_frame(Auth(proof=proof).to_frame())
            + encode_frame(prepare.to_frame())
            + encode_frame(Start(at=None).to_frame())
        )
        rest = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                rest += chunk
        [error] = decoder.feed(rest)
        assert (error.type, error.fields["code"]) == ("error", "auth")
    finally:
        writer.close()

    # Requests without authenticating at all.
    skip_auth = encode_frame(hello) + encode_frame(prepare.to_frame())
    assert b'"code":"auth"' in await raw_exchange(agent, skip_auth)
    no_hello = encode_frame(prepare.to_frame()) + encode_frame(Start().to_frame())
    assert b'"code":"protocol"' in await raw_exchange(agent, no_hello)

    await asyncio.sleep(0.3)
    assert not marker.exists()
    log = await agent.await_log("hung up after the agent's hello")  # the first, polite attempt
    assert "authentication failed from 127.0.0.1:" in log
    assert "prepared" not in log
    assert token_file.read_text().strip() not in log


async def test_junk_does_not_wedge_the_agent_and_idle_means_no_cpu(agent, token_file):
    for _ in range(5):  # bare connect-and-close
        _, writer = await asyncio.open_connection(agent.host, agent.port)
        writer.close()
    http = await raw_exchange(agent, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"not a NetJobs" in http
    assert b"not a NetJobs" in await raw_exchange(agent, b"\x00\xff" + secrets.token_bytes(300))
    await raw_exchange(agent, secrets.token_bytes(1_000_000))  # more than it will read
    await raw_exchange(agent, b"NJ", read=False)  # a frame cut short, then gone
    _, silent = await asyncio.open_connection(agent.host, agent.port)  # says nothing
    try:
        async with await connect(agent, token_file) as client:
            assert (await client.ping()).TYPE == "pong"
            outcome = await client.run(commands("echo alive"))
            assert outcome.stdout(1) == b"alive\n"
        await asyncio.sleep(0.3)
        before = cpu_ticks(agent.pid)
        await asyncio.sleep(1.0)
        assert cpu_ticks(agent.pid) - before <= 2  # clock ticks of 10 ms
    finally:
        silent.close()
    assert "not a NetJobs" in agent.log_text()


async def test_lost_controller_means_the_jobs_are_killed_after_the_grace(token_file):
    with start_agent(token_file, "--orphan-grace", "0.5") as agent:
        client = await connect(agent, token_file)
        await client.prepare("t", commands("echo $$; sleep 30 & echo $!; sleep 30"))
        await client.start()
        pids = [int(p) for p in await read_lines(client, 2)]
        client.abort()
        lost = time.monotonic()
        await asyncio.sleep(0.3)
        assert all(pid_alive(pid) for pid in pids)  # the grace is not over yet
        assert await wait_gone(pids, 5) == []
        assert time.monotonic() - lost >= 0.45
        log = agent.log_text()
        assert "is gone while test 't' is active" in log
        assert "controller connection lost" in log
        async with await connect(agent, token_file) as again:
            for _ in range(50):
                if not (await again.status()).busy:
                    break
                await asyncio.sleep(0.1)
            assert (await again.run(commands("true"))).exits[1].status == "ok"


async def test_a_stall_of_the_agent_itself_is_not_the_controllers_silence(token_file):
    # The controller pings every 0.05 s (the agent calls it lost after 3 missed) and
    # goes on pinging while the agent's process is stopped for 0.6 s: its pings wait in
    # the socket, so the agent must read them before it judges, not call us silent.
    with start_agent(token_file) as agent:
        client = await connect(agent, token_file)
        try:
            prepared = await client.request(
                Prepare(label="t", commands=commands("sleep 1.5; echo done"), heartbeat=0.05),
                Prepared,
            )
            assert isinstance(prepared, Prepared), prepared
            assert isinstance(await client.start(), Started)
            stop_pinging = asyncio.Event()

            async def pinger() -> None:
                seq = 0
                while not stop_pinging.is_set():
                    seq += 1
                    await client.send(Ping(seq=seq))
                    await asyncio.sleep(0.05)

            pings = asyncio.create_task(pinger())
            try:
                await asyncio.sleep(0.2)
                os.kill(agent.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(0.6)
                finally:
                    os.kill(agent.pid, signal.SIGCONT)
                outcome = await client.collect(timeout=20)
            finally:
                stop_pinging.set()
                await asyncio.wait_for(pings, 10)
            assert outcome.finished and outcome.exits[1].status == "ok"
            assert outcome.stdout(1) == b"done\n"
            assert "sent no heartbeat" not in agent.log_text()
            # A controller really silent during a run is still noticed.
            again = await client.request(
                Prepare(label="u", commands=commands("sleep 30"), heartbeat=0.05), Prepared
            )
            assert isinstance(again, Prepared), again
            await client.start()
            await agent.await_log("sent no heartbeat for 0.15 s: lost")
        finally:
            client.abort()


# -- the gated release ------------------------------------------------------------------
async def test_gated_release_at_the_requested_instant(agent, token_file):
    # How late, and how close together: a figure of bench/release.py, not a bound here.
    async with await connect(agent, token_file) as client:
        for _ in range(3):
            clock = (await client.ping()).clock
            at = clock + 100_000_000
            outcome = await client.run(commands("true", "true", "true"), at=at)
            released = outcome.started.released_at
            assert sorted(released) == ["1", "2", "3"]
            assert min(released.values()) >= at  # never before the instant
            assert outcome.started.late_ns == min(released.values()) - at >= 0
            assert {exit.status for exit in outcome.exits.values()} == {"ok"}


# -- lifecycle ------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
async def test_stopping_the_agent_kills_running_jobs(token_file, sig):
    with start_agent(token_file) as agent:
        client = await connect(agent, token_file)
        await client.prepare("t", commands("echo $$; sleep 30 & echo $!; sleep 30"))
        await client.start()
        pids = [int(p) for p in await read_lines(client, 2)]
        agent.send_stop(sig)
        outcome = await client.collect(timeout=15)  # told before the connection closes
        assert outcome.exits[1].status == "killed"
        assert outcome.exits[1].message == f"the agent is stopping ({sig.name})"
        assert await asyncio.to_thread(agent.proc.wait, 15) == 0
        assert await wait_gone(pids, 3) == []
        client.abort()


async def test_an_agent_started_under_nohup_outlives_the_terminals_sighup(token_file):
    """`nohup netjobs-agent &`: SIGHUP ignored at its start stays ignored (the terminal
    closing must not stop it), while SIGTERM still stops it cleanly."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does, inherited
    try:
        agent = start_agent(token_file)
    finally:
        signal.signal(signal.SIGHUP, previous)
    with agent:
        agent.send_stop(signal.SIGHUP)
        await asyncio.sleep(0.3)  # a handler, had one been set, would have run by now
        async with await connect(agent, token_file) as client:
            assert (await client.run(commands("true"), timeout=15)).exits[1].status == "ok"
        assert agent.proc.poll() is None
        assert "stopping" not in agent.log_text()
        agent.send_stop(signal.SIGTERM)
        assert await asyncio.to_thread(agent.proc.wait, 15) == 0


async def test_token_generated_on_first_start(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "NETJOBS_TOKEN"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    token_path = home / ".config" / "netjobs" / "token"
    with start_agent(None, env=env) as agent:
        out = agent.stdout_text()
        assert f"generated a new token in {token_path}: copy this file to the controller" in out
        assert f"token: token file {token_path}" in out
        assert token_path.stat().st_mode & 0o777 == 0o600
        async with await connect(agent, token_path) as client:
            assert (await client.ping()).TYPE == "pong"
        assert token_path.read_text().strip() not in agent.log_text() + out
    with start_agent(None, env=env) as agent:  # the second start reuses it
        assert "generated a new token" not in agent.stdout_text()


async def test_quiet_logs_only_warnings(token_file):
    with start_agent(token_file, "--quiet") as agent:
        async with await connect(agent, token_file) as client:
            assert (await client.run(commands("true"))).exits[1].status == "ok"
        with pytest.raises(AuthenticationFailed):
            await AgentClient.connect(agent.host, agent.port, b"wrong-token-wrong-token-wrong")
        # A warning: still logged. The agent sees a controller hang up after its hello.
        await agent.await_log("authentication failed from 127.0.0.1:")
        assert agent.stop() == 0
        log = agent.log_text()
        assert "listening on" in agent.stdout_text()
    assert "connection from" not in log and "prepared" not in log


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "netjobs_agent", *args]
    return subprocess.run(
        argv, env=agent_env(env), capture_output=True, text=True, timeout=20, check=False
    )


def test_version_and_help():
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"netjobs-agent {__version__}")
    helped = run_cli("--help")
    assert helped.returncode == 0
    for option in ("--bind", "--port", "--token-file", "--orphan-grace", "--quiet", "--version"):
        assert option in helped.stdout


def test_bad_token_file_is_a_one_line_error(tmp_path):
    missing = run_cli("--port", "0", "--token-file", str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc\n")
    too_short = run_cli("--port", "0", "--token-file", str(short))
    for result in (missing, too_short):
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("netjobs-agent: ")
    assert "cannot read token file" in missing.stderr


def test_port_in_use_is_a_one_line_error(agent, token_file):
    argv = agent_command(token_file, port=agent.port)
    result = subprocess.run(
        argv, env=agent_env(), capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1 port" in result.stderr
    assert "Traceback" not in result.stderr
