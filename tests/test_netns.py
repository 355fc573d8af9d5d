"""Agents on separate network hosts: Linux network namespaces joined by veth pairs.

Needs root and `ip`; skipped otherwise. The namespaces, their names and their /24
subnets are this run's own (tests/netlab.py), removed afterwards.
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time

import netlab
import pytest
from agent_harness import HostWatch
from netlab import Namespace, ip

from netjobs_core.config import parse_config
from netjobs_core.events import HostChanged
from netjobs_core.local_agents import LocalAgent, start_agent
from netjobs_core.results import CommandStatus, HostState, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, run_test

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need Linux, root and iproute2",
    ),
]


@pytest.fixture(scope="module")
def hosts():
    """Three namespaces; the controller (this process) reaches them over veth links."""
    with contextlib.ExitStack() as made:
        try:
            spaces = [made.enter_context(Namespace("n")) for _ in range(3)]
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
        yield spaces


def agent_in(host: Namespace, token_path) -> LocalAgent:
    # The agent listens on the default port inside its own namespace, as on a real host.
    return start_agent(token_path, port=16192, bind=host.address, launcher=host.launcher)


@pytest.fixture(scope="module")
def agents(hosts, token):
    started = [agent_in(host, token.path) for host in hosts[:2]]
    yield started
    for agent in started:
        agent.stop()


def test_two_hosts_start_together_on_the_default_port(agents, hosts, token):
    one, two = hosts[0].address, hosts[1].address
    plan = parse_config(
        f't:\n{one}: "date +%s%N"\n{two}: "date +%s%N"\n'
        f'{one}: "grep -c eth0 /proc/self/net/dev"\nend\n'
    )
    test = asyncio.run(run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=3)))
    assert test.status is TestStatus.PASSED, test.reason
    assert [h.target for h in test.hosts] == [one, two]
    for host in test.hosts:
        assert host.state is HostState.DONE and host.gated
        assert host.rtt_ms < 20 and abs(host.clock_offset_ms) <= host.clock_uncertainty_ms + 0.05
    # The commands really ran inside the namespaces (they see their own eth0).
    assert test.hosts[0].commands[1].stdout.read_bytes().strip() == b"1"
    stamps = [int(h.commands[0].stdout.read_bytes()) for h in test.hosts]
    assert test.start_spread_ms < 50 and abs(stamps[0] - stamps[1]) / 1e6 < 50


def test_a_host_with_no_agent_is_a_failed_host(agents, hosts, token):
    targets = "".join(f'{host.address}: "true"\n' for host in hosts)
    plan = parse_config(f"t:\n-minhosts: 2\n{targets}end\n")
    test = asyncio.run(run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=2)))
    assert test.status is TestStatus.PASSED
    dead = test.hosts[2]
    assert dead.state is HostState.FAILED and "refused" in dead.error
    assert dead.commands[0].status is CommandStatus.ERROR


def test_a_host_that_dies_mid_run_fails_the_quorum(hosts, token):
    agent = agent_in(hosts[2], token.path)
    try:
        plan = parse_config(f't:\n{hosts[2].address}: "sleep 30"\nend\n')

        async def kill_and_run():
            options = RunOptions(token=token.token, connect_timeout=2)
            watch = HostWatch()
            task = asyncio.create_task(run_test(plan.tests[0], options, watch))
            await watch.host_reaches(0, HostState.RUNNING)
            agent.kill()  # its end of the connection resets
            return await asyncio.wait_for(task, 30)

        test = asyncio.run(kill_and_run())
        assert test.status is TestStatus.ABORTED and "quorum lost" in test.reason
        assert test.hosts[0].state is HostState.FAILED
        assert "connection lost" in test.hosts[0].error
    finally:
        agent.kill()


def test_namespaces_get_names_and_subnets_no_one_else_has(hosts):
    # Another run's namespaces (here: this module's) hold theirs: a new one avoids them.
    with Namespace("n") as extra:
        made = [*hosts, extra]
        assert len({ns.name for ns in made}) == len({ns.outside for ns in made}) == 4
        assert len({ns.subnet for ns in made}) == 4
        assert all(ns.subnet is not None and ns.subnet.subnet_of(netlab.POOL) for ns in made)
        assert f"{os.getpid():x}" in extra.name
    taken = [ns.subnet for ns in hosts]
    assert netlab.free_subnet(taken) not in taken
    with pytest.raises(RuntimeError):
        netlab.free_subnet([netlab.POOL])


def test_a_host_cut_off_the_network_mid_run_is_noticed(agents, hosts, token):
    """No FIN, no reset: the link just goes silent. TCP keepalive must notice.

    Kept last in this module: the agent on the cut-off host stays busy until its
    own keepalive gives up on the dead connection."""
    outside = hosts[1].outside
    plan = parse_config(
        f't:\n-minhosts: 1\n{hosts[0].address}: "sleep 60"\n{hosts[1].address}: "sleep 60"\nend\n'
    )

    async def scenario():
        failed = asyncio.Event()

        watch = HostWatch()

        def observe(event):
            watch(event)
            if isinstance(event, HostChanged) and event.host.state is HostState.FAILED:
                failed.set()

        # A short reconnect grace: the host is given up soon after the heartbeat notices.
        options = RunOptions(token=token.token, connect_timeout=2, reconnect_grace=1)
        runner = Runner(plan, options, observe)
        task = asyncio.create_task(runner.run())
        await watch.host_started(1)
        ip("link", "set", outside, "down")
        cut = time.monotonic()
        async with asyncio.timeout(40):
            await failed.wait()
        noticed = time.monotonic() - cut
        runner.stop()
        return noticed, runner.result.tests[0].hosts[1], await asyncio.wait_for(task, 20)

    try:
        noticed, host, result = asyncio.run(scenario())
    finally:
        ip("link", "set", outside, "up")
    assert "lost for its 1 s reconnect grace" in host.error and host.interruptions
    assert noticed < 30  # the heartbeat: 5 unanswered 2 s pings, then the grace
    test = result.tests[0]
    assert test.status is TestStatus.ABORTED and test.reason == "stopped by user"
    assert test.hosts[0].commands[0].status is CommandStatus.KILLED
