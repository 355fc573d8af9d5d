"""The run keeps each host's authenticated link between its tests (netjobs_core/links.py):
real agents, real runs; a proxy in front of an agent counts its connections and can
hang them up between two tests, as an agent closing an idle connection does."""

import asyncio
import contextlib
import os
import re
import signal

import pytest

from netjobs_core.client import AgentLink
from netjobs_core.config import parse_config
from netjobs_core.events import TestFinished, TestStarted
from netjobs_core.links import Links
from netjobs_core.results import TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.wire.address import Address

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

AUTHENTICATED = re.compile(r" authenticated$", re.MULTILINE)


class CountingProxy:
    """Forwards connections to an agent's port; counts them; `hang_up` closes every
    connection open now, both ways (FIN), as an agent ending an idle one would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "CountingProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self.hang_up()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def hang_up(self) -> None:
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)  # closed by hang_up even if the upstream never answers
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()


async def test_a_run_keeps_each_hosts_link_between_its_tests(start_agents, token):
    """Two tests of three hosts (one in both), each twice: every agent authenticates one
    connection for the whole run and hears one `bye`, after its last test; each test is
    still its own run on the agent (its own output), and every test passes."""
    agents = start_agents(3)
    a0, a1, a2 = (f"127.0.0.1:{a.port}" for a in agents)
    plan = parse_config(
        f't:\n{a0}: "echo $NETJOBS_JOB"\n{a1}: "echo $NETJOBS_JOB"\nend\n'
        f'u:\n{a1}: "echo $NETJOBS_JOB"\n{a2}: "echo $NETJOBS_JOB"\nend\n',
        "links.cfg",
    )
    options = RunOptions(token=token.token, connect_timeout=5.0, repeat=2)
    kept_at_start: list[list[bool]] = []

    def kept(event: object) -> None:
        if isinstance(event, TestStarted):
            kept_at_start.append([Address.parse(a) in runner.links for a in (a0, a1, a2)])

    runner = Runner(plan, options, kept)
    run = await asyncio.wait_for(runner.run(), 60)
    assert [t.status for t in run.tests] == [TestStatus.PASSED] * 4, [t.reason for t in run.tests]
    # a0 has no test after t's second: its link went then, with a `bye` (its agent frees
    # the finished run's spool at once); a1's went on into u.
    assert kept_at_start == [
        [False, False, False],
        [True, True, False],
        [False, True, False],
        [False, True, True],
    ]
    outputs = [c.stdout.read_bytes() for t in run.tests for h in t.hosts for c in h.commands]
    assert len(set(outputs)) == 8  # each test its own run on its agents: nothing replayed
    for agent in agents:
        log = await agent.await_log("said bye")  # the run's end: its links closed
        assert len(AUTHENTICATED.findall(log)) == 1, log
        assert log.count("said bye") == 1, log
        assert log.count("prepared for") == (2 if agent is agents[2] or agent is agents[0] else 4)


async def test_a_kept_link_the_agent_closed_gives_way_to_a_new_connection(start_agents, token):
    """The agent ends a kept link between two tests (its idle limit, say): the host's
    next test finds it closed before any answer, connects anew and passes."""
    (agent,) = start_agents(1)
    async with CountingProxy(agent.port) as proxy:
        plan = parse_config(f't:\n127.0.0.1:{proxy.port}: "echo $NETJOBS_TEST"\nend\n', "c.cfg")

        def hang_up_after_the_first(event: object) -> None:
            if isinstance(event, TestFinished) and event.test.repetition == 1:
                proxy.hang_up()

        options = RunOptions(token=token.token, connect_timeout=5.0, repeat=3)
        runner = Runner(plan, options, hang_up_after_the_first)
        run = await asyncio.wait_for(runner.run(), 60)
    assert [t.status for t in run.tests] == [TestStatus.PASSED] * 3, [t.reason for t in run.tests]
    assert [t.hosts[0].error for t in run.tests] == ["", "", ""]
    assert proxy.connections == 2  # the first test's, then one for the second and third


async def test_an_agent_that_stops_answering_between_tests_is_named_as_such(start_agents, token):
    """Stopped between two tests (SIGSTOP): the kept link gets no answer, and the host
    fails its next test within the usual time, saying where it waited."""
    (agent,) = start_agents(1)
    plan = parse_config(f't:\n127.0.0.1:{agent.port}: "true"\nend\n', "s.cfg")

    def stop_after_the_first(event: object) -> None:
        if isinstance(event, TestFinished) and event.test.repetition == 1:
            os.kill(agent.pid, signal.SIGSTOP)

    options = RunOptions(token=token.token, connect_timeout=1.0, repeat=2)
    try:
        run = await asyncio.wait_for(Runner(plan, options, stop_after_the_first).run(), 60)
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    first, second = run.tests
    assert first.status is TestStatus.PASSED, first.reason
    assert second.status is not TestStatus.PASSED
    assert second.hosts[0].error == (
        "no answer on the connection kept from its last test: "
        "clock measurement took longer than 5 s"
    )


async def test_the_links_keep_only_a_link_between_tests_and_close_the_rest_with_a_bye(agent, token):
    address = Address.parse(f"127.0.0.1:{agent.port}")
    links = Links()
    fresh = AgentLink(address, token.token.secret)
    assert not links.keep(fresh)  # never authenticated: nothing to go on with
    link = AgentLink(address, token.token.secret)
    await link.connect(5.0)
    assert link.at_boundary and links.keep(link) and len(links) == 1
    second = AgentLink(address, token.token.secret)
    await second.connect(5.0)
    assert not links.keep(second)  # one a host
    await second.close()
    assert links.take(address) is link and links.take(address) is None
    assert links.keep(link)
    await links.close()
    assert len(links) == 0 and not link.authenticated
    async with asyncio.timeout(10):  # the second link's and the kept one's
        while True:  # a file to poll: nothing to wait on
            if agent.log_text().count("said bye") == 2:
                break
            await asyncio.sleep(0.02)
