"""The agent when the network fails under a run: a lost controller ends the session.

The network-namespace test needs root and iproute2 (skipped otherwise); its namespace,
name and /24 subnet are this run's own (tests/netlab.py), removed afterwards.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from agent_harness import AgentClient, commands, cpu_ticks, pid_alive
from netlab import Namespace

from agent import server
from netjobs_core.local_agents import start_agent
from netjobs_core.wire.messages import Prepared, Started
from netjobs_core.wire.tokens import Token

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


class OneRunAgent(server.Agent):
    """An agent whose session owns an active run, counting how often it is asked."""

    def __init__(self) -> None:
        super().__init__(Token(b"x" * 32, "test"))
        self.asked = 0

    def owns_active_run(self, session: server.Session) -> bool:
        self.asked += 1
        if self.asked > 100:
            raise AssertionError("the session spins on a dead connection")
        return True


async def test_etimedout_from_the_socket_is_a_lost_connection_not_an_idle_one():
    """Keepalive giving up raises OSError(ETIMEDOUT), a TimeoutError since Python 3.11."""
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=left)
    try:
        agent = OneRunAgent()
        session = server.Session(agent, reader, writer)
        reader.set_exception(TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
        async with asyncio.timeout(2):
            with pytest.raises(OSError) as caught:
                await session._serve_requests([])
        assert caught.value.errno == errno.ETIMEDOUT
        assert agent.asked == 0  # not mistaken for the idle timeout
    finally:
        writer.transport.abort()
        right.close()


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)
async def test_a_cut_of_more_than_a_minute_ends_the_session_without_spinning(token_file):
    """No FIN, no reset: keepalive (30 s idle + 3 x 10 s) gives up after ~60 s."""
    ns = Namespace("f")
    try:
        ns.__enter__()
    except subprocess.CalledProcessError as exc:  # no namespaces in this container
        pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
    agent = None
    try:
        log = token_file.parent / "agent.log"
        agent = start_agent(
            token_file, port=0, bind=ns.address, launcher=ns.launcher, log=log, timeout=20
        )
        client = await AgentClient.connect(ns.address, agent.port, token_file)
        prepared = await client.prepare("long", commands("sleep 170"))
        assert isinstance(prepared, Prepared)
        assert isinstance(await client.start(), Started)
        cut_at = time.monotonic()
        ns.cut()
        lost = False
        for _ in range(200):  # ~60 s of keepalive, with room on a loaded machine
            if lost := "connection lost" in log.read_text():
                break
            await asyncio.sleep(0.5)  # a file to poll: nothing to wait on
        lost_after = time.monotonic() - cut_at
        before = cpu_ticks(agent.process.pid)
        await asyncio.sleep(2)  # a measurement window, not a wait for a state
        used = cpu_ticks(agent.process.pid) - before
        print(f"lost after {lost_after:.1f} s; {used} ticks of CPU in the 2 s after")
        assert used <= 20, f"{used} ticks of CPU in 2 s after the cut"  # 100 Hz: <= 10 %
        assert lost and lost_after > 55, log.read_text()
        assert "connection lost (Connection timed out)" in log.read_text()  # ETIMEDOUT
        stopping = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.process.wait, 10) == 0
        assert time.monotonic() - stopping < 10
        assert not pid_alive(agent.process.pid)
        client.abort()
    finally:
        if agent is not None:
            agent.kill()
        ns.remove()
