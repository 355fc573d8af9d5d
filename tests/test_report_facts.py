"""What the report says matches what happened (issue 18 point 16): how many commands a
start spread is over, what a command that never started is called, one error of many
hosts said once."""

import pytest
from agent_harness import free_port

from netjobs_core import nodesets, text
from netjobs_core.config import parse_config
from netjobs_core.events import HostChanged
from netjobs_core.fold import said_once
from netjobs_core.report import format_test
from netjobs_core.results import CommandStatus, HostResult, HostState, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, run_test
from netjobs_core.wire.address import SSH_DEFAULT_PORT, Address
from netjobs_core.wire.messages import Exit, Finished
from tests.test_hostile_agent import fake_agent, options, plan

pytestmark = [pytest.mark.posix, pytest.mark.timeout(60)]


async def test_a_spread_of_one_released_command_of_three_is_not_measured(agents, token):
    # Before: "start spread 0.000 ms ± 0.000 ms (scheduled start, 3 commands on 3 hosts)".
    body = 't:\n-minhosts: 1\n{0}: "true"\n{1}: "true"\n{2}: "true"\nend\n'
    names = [f"127.0.0.1:{agents[0].port}", f"127.0.0.1:{free_port()}"]
    names.append(f"127.0.0.1:{free_port()}")
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "s.cfg").tests[0], options)
    assert test.status.value == "passed"
    assert test.start_spread_ms is None  # in the JSON and the history too
    report = format_test(test).splitlines()
    assert report[1] == (
        "  start spread not measured: 1 of 3 commands released, on 1 of 3 hosts (scheduled start)"
    )
    assert test.hosts[0].start_offset_ms is not None  # its own offset is still a fact


async def test_a_spread_over_some_of_the_commands_says_how_many(agents, token):
    body = 't:\n-minhosts: 2\n{0}: "true"\n{1}: "true"\n{2}: "true"\nend\n'
    names = [f"127.0.0.1:{agents[0].port}", f"127.0.0.1:{agents[1].port}"]
    names.append(f"127.0.0.1:{free_port()}")
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "s.cfg").tests[0], options)
    assert test.start_spread_ms is not None
    assert text.spread_line(test) == (
        f"{text.began(test)} (scheduled start, lead {text.ms(test.lead_ms)}, "
        "2 of 3 commands released, on 2 of 3 hosts)"
    )


async def test_commands_of_a_test_aborted_before_their_start_are_not_started(agent, token):
    # Before: KILLED, as if they had run and been killed.
    body = 't:\n{0}: "sleep 5"\n{0}: "sleep 5"\n{1}: "true"\nend\n'
    names = [f"127.0.0.1:{agent.port}", f"127.0.0.1:{free_port()}"]
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "a.cfg").tests[0], options)
    assert test.status is TestStatus.ABORTED
    host = test.hosts[0]
    assert host.state is HostState.KILLED
    for command in host.commands:
        assert command.status is CommandStatus.ERROR and command.started_at is None
        assert command.message == f"not started: test aborted: {test.reason}"
    assert "KILLED" not in format_test(test)


async def test_a_command_killed_behind_its_gate_is_not_started(token, tmp_path):
    # The agent got the start and then the kill before the common instant: it reports
    # the kill, and no release.
    async def killed_before_release(send):
        send(Exit(id=0, status="killed", message="killed before it started"))
        send(Finished())

    async with fake_agent(token.token.secret, killed_before_release) as port:
        test = await run_test(plan(port, minhosts="0"), options(token, tmp_path))
    command = test.hosts[0].commands[0]
    assert command.status is CommandStatus.ERROR
    assert command.message == "not started: killed before it started"


async def test_prepared_commands_of_a_test_stopped_before_the_start_are_not_started(agents, token):
    body = 't:\n{0}: "sleep 5"\n{1}: "sleep 5"\nend\n'
    config = parse_config(body.format(*(f"127.0.0.1:{a.port}" for a in agents)), "p.cfg")
    options = RunOptions(token=token.token, connect_timeout=3.0)

    def stop_when_prepared(event):
        if isinstance(event, HostChanged) and event.host.state is HostState.READY:
            runner.stop()

    runner = Runner(config, options, stop_when_prepared)
    test = (await runner.run()).tests[0]
    assert test.status is TestStatus.ABORTED and test.reason == "stopped by user"
    statuses = {(c.status, c.message) for h in test.hosts for c in h.commands}
    assert statuses == {(CommandStatus.ERROR, "not started: test aborted: stopped by user")}


async def test_one_error_of_many_hosts_is_said_once_with_their_node_set(agent, token):
    # Before: each of 8 unreachable hosts had its own line and its own message on the
    # commands' line: "connection refused by 127.0.0.1:P (is the agent running...)" 16 times.
    free: set[int] = set()
    while len(free) < 8:  # nothing holds a free port: the same one may come twice
        free.add(free_port())
    ports = sorted(free)
    targets = [f"127.0.0.1:{agent.port}", *(f"127.0.0.1:{p}" for p in ports)]
    body = "t:\n-minhosts: 1\n" + "".join(f'{t}: "true"\n' for t in targets) + "end\n"
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body, "e.cfg").tests[0], options)
    report = format_test(test, fold=True)
    assert test.status is TestStatus.PASSED, report
    assert report.count("is the agent running") == 1, report
    down = nodesets.fold(targets[1:])
    assert f"  {down} (8 hosts)  error (connection refused (is" in report  # named once


async def test_an_abort_reason_is_said_once_in_the_folded_report(start_agents, token):
    agents = start_agents(2)
    body = 't:\n{0}: "true"\n{1}: "true"\n{2}: "true"\nend\n'
    names = [f"127.0.0.1:{agents[0].port}", f"127.0.0.1:{agents[1].port}"]
    names.append(f"127.0.0.1:{free_port()}")
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "e.cfg").tests[0], options)
    assert test.status is TestStatus.ABORTED
    report = format_test(test, fold=True)
    assert report.count("quorum lost because") == 1, report  # the head
    assert "ERROR, not started: test aborted: true" in report


def test_host_errors_that_differ_only_in_the_host_name_fold():
    def refused(name: str, fingerprint: str = "SHA256:same") -> HostResult:
        address = Address(name, SSH_DEFAULT_PORT, "ssh", "bench")
        error = f"the SSH host key of {address} is not known: {fingerprint}; refused. Check it"
        return HostResult(address, HostState.FAILED, error)

    hosts = [refused(f"node0{k}") for k in range(1, 9)] + [refused("node09", "SHA256:other")]
    said = said_once((host, host.error) for host in hosts)
    assert [(len(group), error) for group, error in said] == [
        (
            8,
            "the SSH host key of ssh://bench@node[01-08] is not known: SHA256:same; refused. "
            "Check it",
        ),
        (1, hosts[-1].error),  # another key: another fact
    ]
