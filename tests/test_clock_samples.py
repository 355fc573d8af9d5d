"""Impossible clock samples, end to end (issue 18, points 9 and 13).

An agent whose arrival stamps are not on its clock (`faketime` shifts a process's
clock readings, not the kernel's stamps) once crashed `netjobs check` and every run
with an ExceptionGroup ("no usable clock samples"); a hostile pong whose stamp comes
after its answer once made a 7200 s round trip, the start hours ahead. Such stamps
are not used: the host is measured as an agent without stamps and runs. A host with
no usable sample at all fails alone, with a message.
"""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys

import pytest

from netjobs_core import local_agents, probe
from netjobs_core.check import check_hosts
from netjobs_core.client import AgentLink
from netjobs_core.clock_offset import Sample
from netjobs_core.probe import DEFAULT_CLOCK, measure_clock
from netjobs_core.results import CommandStatus, HostState
from netjobs_core.runner import run_test
from netjobs_core.wire.address import Address
from tests.agent_harness import REPO, agent_env, start_agent
from tests.test_attacks import fake_agent, options, plan_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

SHIFT_S = 37
# Loaded by the agent's interpreter at start-up: the kernel's stamps 37 s behind its
# clock, as under `faketime -f +37s`.
SHIFTED_STAMPS = f"""
from netjobs_core.wire import rx_stamps

_real = rx_stamps._to_clock


def _shifted(stamp):
    clock = _real(stamp)
    return None if clock is None else clock - {SHIFT_S} * 10**9


rx_stamps._to_clock = _shifted
"""


@pytest.fixture
def shifted_agent(token_file, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SHIFTED_STAMPS)
    with start_agent(token_file, env={**os.environ, "PYTHONPATH": str(tmp_path)}) as agent:
        yield agent


def netjobs(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=agent_env(),
    )


def assert_both_ran(test) -> None:
    for host, output in zip(test.hosts, (b"shifted\n", b"honest\n"), strict=True):
        assert host.state is HostState.DONE, host.error
        assert host.commands[0].status is CommandStatus.OK
        assert host.commands[0].stdout.read_bytes() == output


# -- point 13: stamps not on the agent's clock --------------------------------------------
def test_check_measures_an_agent_whose_stamps_are_off_its_clock(
    shifted_agent, agent, token_file, tmp_path
):
    config = tmp_path / "run.cfg"
    config.write_text(
        f't:\n127.0.0.1:{shifted_agent.port}: "true"\n127.0.0.1:{agent.port}: "true"\nend\n'
    )
    checked = netjobs("check", "--token-file", token_file, config)
    assert "Traceback" not in checked.stderr and "ExceptionGroup" not in checked.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 of 2 agents ready" in checked.stdout


async def test_a_run_measures_an_agent_whose_stamps_are_off_its_clock(shifted_agent, agent, token):
    plan = plan_for((shifted_agent.port, "echo shifted"), (agent.port, "echo honest"))
    test = await run_test(plan.tests[0], options(token))
    assert_both_ran(test)
    shifted = test.hosts[0]
    assert shifted.rtt_ms is not None and shifted.rtt_ms < 100  # not -37 s
    assert shifted.clock_uncertainty_ms is not None and shifted.clock_uncertainty_ms < 50


# libfaketime itself: the `faketime` wrapper forks, and killing it would leave the agent.
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


async def test_impossible_stamps_leave_the_fastest_round_trip_alone(shifted_agent, agent, token):
    # Its stamped round trips are -37 s: taken as the loop's fastest, they would keep
    # every other host pinging to the last (probe.settled), and a 7200 s one slow.
    links = [
        AgentLink(Address("127.0.0.1", a.port), token[0].secret) for a in (shifted_agent, agent)
    ]
    try:
        for link in links:
            await link.connect(5)
        shifted = await measure_clock(links[0], DEFAULT_CLOCK, 10)
        assert 0 < probe._loops[asyncio.get_running_loop()].floor_ns == shifted.rtt_ns
        honest = await measure_clock(links[1], DEFAULT_CLOCK, 10)
    finally:
        for link in links:
            await link.close()
    for estimate in (shifted, honest):  # one clock: 0 within the bound
        assert abs(estimate.offset_ns) <= estimate.uncertainty_ns


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed (apt faketime)")
async def test_a_run_with_an_agent_under_faketime(agent, token):
    assert LIBFAKETIME is not None
    env = agent_env({**os.environ, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+{SHIFT_S}s"})
    faked = local_agents.start_agent(token[1], env=env, cwd=REPO)
    try:
        plan = plan_for((faked.port, "echo shifted"), (agent.port, "echo honest"))
        test = await run_test(plan.tests[0], options(token))
    finally:
        faked.kill()
    assert_both_ran(test)
    wall = test.hosts[0].wall_clock_offset_ms
    assert wall is not None and abs(wall - SHIFT_S * 1000) < 1000
    assert test.start_spread_ms is not None and test.start_spread_ms < 100


# -- point 9: a hostile pong whose stamp comes after its answer ---------------------------
def hours_late(clock: int) -> dict[str, object]:
    return {"received": clock + 7_200 * 10**9}  # a negative hold: a 7200 s round trip


async def test_check_ignores_a_stamp_after_the_answer(token):
    async with fake_agent(token[0].secret, {}, pong=hours_late) as port:
        [check] = await check_hosts([Address("127.0.0.1", port)], token[0])
    assert check.ok, check.error
    assert check.rtt_ms is not None and check.rtt_ms < 100


async def test_a_stamp_after_the_answer_does_not_put_the_start_hours_ahead(agent, token):
    started = {"released_at": {"0": 10**400}, "late_ns": 0}  # the fake host fails there
    async with fake_agent(token[0].secret, started, pong=hours_late) as port:
        plan = plan_for((agent.port, "echo honest"), (port, "true"), minhosts="1")
        test = await run_test(plan.tests[0], options(token))
    honest, fake = test.hosts
    assert fake.rtt_ms is not None and fake.rtt_ms < 100
    assert honest.state is HostState.DONE, honest.error
    assert honest.commands[0].stdout.read_bytes() == b"honest\n"


# -- no usable sample at all: that host fails alone ---------------------------------------
@pytest.fixture
def backwards_pongs(monkeypatch):
    """Every pong from the hosts in the returned set comes back before its ping left."""
    bad: set[int] = set()
    real = AgentLink.ping

    async def ping(self: AgentLink, kernel_stamps: bool = True) -> Sample:
        sample = await real(self, kernel_stamps)
        if self.address.port in bad:
            return Sample(sample.received, sample.agent, sample.sent, sample.agent_wall)
        return sample

    monkeypatch.setattr(AgentLink, "ping", ping)
    return bad


NO_SAMPLE = "clock not measured: no usable clock samples (16 pongs, each back before its ping"


async def test_check_fails_only_the_host_without_a_usable_sample(backwards_pongs, agents, token):
    bad, good = agents[:2]
    backwards_pongs.add(bad.port)
    addresses = [Address("127.0.0.1", agent.port) for agent in (bad, good)]
    checks = await check_hosts(addresses, token[0])
    assert not checks[0].ok and NO_SAMPLE in checks[0].error
    assert checks[1].ok, checks[1].error


async def test_a_run_fails_only_the_host_without_a_usable_sample(backwards_pongs, agents, token):
    bad, good = agents[:2]
    backwards_pongs.add(bad.port)
    plan = plan_for((bad.port, "echo bad"), (good.port, "echo honest"), minhosts="1")
    test = await run_test(plan.tests[0], options(token))
    failed, ran = test.hosts
    assert failed.state is HostState.FAILED and NO_SAMPLE in failed.error
    assert failed.commands[0].status is CommandStatus.ERROR
    assert ran.state is HostState.DONE, ran.error
    assert ran.commands[0].stdout.read_bytes() == b"honest\n"
    assert test.reason  # not empty
