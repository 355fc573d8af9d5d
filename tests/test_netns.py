"""Agents on separate network hosts: Linux network namespaces joined by veth pairs.

Needs root and `ip`; skipped otherwise. Every address lives inside namespaces this
test creates (10.231.N.0/24) and is removed afterwards.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from agent_harness import HostWatch

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


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Three namespaces; the controller (this process) reaches them over veth links."""
    tag = uuid.uuid4().hex[:6]
    made = []
    try:
        for n in (1, 2, 3):
            ns, outside = f"nj{tag}{n}", f"nj{tag}{n}o"
            ip("netns", "add", ns)
            made.append((ns, outside))
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("addr", "add", f"10.231.{n}.1/24", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"10.231.{n}.2/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for ns, outside in made:
            subprocess.run(["ip", "link", "del", outside], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    yield made
    for ns, outside in made:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def agent_in(ns: str, address: str, token_path) -> LocalAgent:
    # The agent listens on the default port inside its own namespace, as on a real host.
    agent = start_agent(token_path, port=16192, bind=address, launcher=["ip", "netns", "exec", ns])
    return agent


@pytest.fixture(scope="module")
def agents(hosts, token):
    started = [agent_in(ns, f"10.231.{n}.2", token.path) for n, (ns, _) in enumerate(hosts[:2], 1)]
    yield started
    for agent in started:
        agent.stop()


def test_two_hosts_start_together_on_the_default_port(agents, token):
    plan = parse_config(
        't:\n10.231.1.2: "date +%s%N"\n10.231.2.2: "date +%s%N"\n'
        '10.231.1.2: "grep -c eth0 /proc/self/net/dev"\nend\n'
    )
    test = asyncio.run(run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=3)))
    assert test.status is TestStatus.PASSED, test.reason
    assert [h.target for h in test.hosts] == ["10.231.1.2", "10.231.2.2"]
    for host in test.hosts:
        assert host.state is HostState.DONE and host.gated
        assert host.rtt_ms < 20 and abs(host.clock_offset_ms) <= host.clock_uncertainty_ms + 0.05
    # The commands really ran inside the namespaces (they see their own eth0).
    assert test.hosts[0].commands[1].stdout.read_bytes().strip() == b"1"
    stamps = [int(h.commands[0].stdout.read_bytes()) for h in test.hosts]
    assert test.start_spread_ms < 50 and abs(stamps[0] - stamps[1]) / 1e6 < 50


def test_a_host_with_no_agent_is_a_failed_host(agents, token):
    plan = parse_config(
        't:\n-minhosts: 2\n10.231.1.2: "true"\n10.231.2.2: "true"\n10.231.3.2: "true"\nend\n'
    )
    test = asyncio.run(run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=2)))
    assert test.status is TestStatus.PASSED
    dead = test.hosts[2]
    assert dead.state is HostState.FAILED and "refused" in dead.error
    assert dead.commands[0].status is CommandStatus.ERROR


def test_a_host_that_dies_mid_run_fails_the_quorum(hosts, token):
    ns, _ = hosts[2]
    agent = agent_in(ns, "10.231.3.2", token.path)
    try:
        plan = parse_config('t:\n10.231.3.2: "sleep 30"\nend\n')

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


def test_a_host_cut_off_the_network_mid_run_is_noticed(agents, hosts, token):
    """No FIN, no reset: the link just goes silent. TCP keepalive must notice.

    Kept last in this module: the agent on the cut-off host stays busy until its
    own keepalive gives up on the dead connection."""
    _, outside = hosts[1]
    plan = parse_config('t:\n-minhosts: 1\n10.231.1.2: "sleep 60"\n10.231.2.2: "sleep 60"\nend\n')

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
