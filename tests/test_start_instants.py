"""When the commands really began, late releases, and the lead: real agents on loopback.

The exec instants come from the kernel's process events, which need root in the
initial network namespace: these agents run on 127.0.0.1 there.
"""

import asyncio
import os
import signal
import socket
import sys
import time

import pytest
from agent_harness import start_agent

from agent import execwatch, jobs
from agent.jobs import RELEASE_UNSURE_NS, JobCommand, Run, release_figure
from netjobs_core import text
from netjobs_core.check import check_hosts
from netjobs_core.cli import format_check
from netjobs_core.config import parse_config
from netjobs_core.events import Event, HostChanged
from netjobs_core.lead import Lead, LeadPolicy, default_lead_ns
from netjobs_core.report import format_test
from netjobs_core.results import HostState, StartMode, TestStatus
from netjobs_core.results_json import run_to_json
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, run_test
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import now_ns

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]
ROOT = os.geteuid() == 0 and os.uname().sysname == "Linux"
STOPPED_S = 0.4  # how long the held-back agent stays stopped
# How far past its SIGCONT a held-back agent may report its release: it releases at
# once on waking (0.5-1 ms on a loaded 2-CPU machine: bench/late_release.py); this
# leaves room for a very busy machine and still tells the hold from a guess.
WAKE_SLACK_MS = STOPPED_S * 1e3 / 4


def plan_for(body: str, agents, **names):
    text = body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}, **names)
    return parse_config(text, "test.cfg")


def options(token, **kwargs):
    return RunOptions(token=token.token, connect_timeout=3.0, **kwargs)


@pytest.mark.skipif(not ROOT, reason="exec instants need root on Linux")
@pytest.mark.parametrize("mode", [StartMode.SCHEDULED, StartMode.SEQUENTIAL])
async def test_each_command_began_after_its_release(agents, token, mode):
    # Both shapes of gate: `exec` in place (simple commands) and a child of the shell.
    plan = plan_for(
        't:\n{a0}: "date +%s%N"\n{a1}: "date +%s%N"\n{a1}: "/bin/true && /bin/true"\nend\n',
        agents,
    )
    test = await run_test(plan.tests[0], options(token, start_mode=mode))
    assert test.status is TestStatus.PASSED
    commands = [c for h in test.hosts for c in h.commands]
    for host in test.hosts:
        assert host.exec_error == ""
        for command in host.commands:
            # An exec comes after its release (same agent clock, so within both bounds).
            release_ms = (command.started_at - min(c.started_at for c in commands)) * 1e3
            if test.scheduled_start is not None:
                release_ms = (command.started_at - test.scheduled_start) * 1e3
            assert command.exec_offset_ms >= release_ms - test.start_spread_uncertainty_ms
    offsets = [c.exec_offset_ms for c in commands]
    assert None not in offsets
    assert test.exec_spread_ms == pytest.approx(max(offsets) - min(offsets))
    assert test.exec_spread_uncertainty_ms == test.start_spread_uncertainty_ms
    if mode is StartMode.SCHEDULED:
        assert test.lead_ms > 0
        assert all(c.release_late_ms >= 0 for c in commands)
    else:  # nothing was asked of the agents: nothing to be late for
        assert test.lead_ms is None and all(c.release_late_ms is None for c in commands)
    report = format_test(test)
    assert "commands began within" in report and f"{mode.value} start" in report


@pytest.mark.skipif(not ROOT, reason="exec instants need root on Linux")
async def test_a_command_that_execs_nothing_is_not_measured(agents, token, tmp_path):
    plan = plan_for('t:\n{a0}: "date +%s%N"\n{a1}: "echo builtin"\nend\n', agents)
    runner = Runner(plan, options(token))
    run = await runner.run()
    test = run.tests[0]
    a0, a1 = test.hosts
    assert a0.commands[0].exec_offset_ms is not None and a1.commands[0].exec_offset_ms is None
    assert test.exec_spread_ms is None and test.exec_spread_uncertainty_ms is None
    report = format_test(test)
    assert "released within" in report and "commands began within" not in report
    assert f"not measured (127.0.0.1:{agents[1].port}: a command exec'd no program within" in report
    assert a0.exec_error == "" and a1.exec_error == text.EXEC_NOTHING
    document = run_to_json(run, tmp_path)["tests"][0]
    assert document["exec_spread_ms"] is None and "exec_spread_uncertainty_ms" in document
    assert [c["exec_offset_ms"] is None for h in document["hosts"] for c in h["commands"]] == [
        False,
        True,
    ]


def test_the_words_for_no_exec_give_the_agents_wait():
    assert f"within {jobs.EXEC_WAIT_S:g} s of its release" in text.EXEC_NOTHING


@pytest.mark.skipif(not ROOT, reason="exec instants need root on Linux")
async def test_a_program_started_after_the_agents_wait_is_not_called_builtins_only(
    agents, token, tmp_path
):
    # Before: "a command exec'd no program (shell builtins only?)" for a command that
    # spent its first 0.3 s in a shell loop, then ran /bin/echo.
    go = tmp_path / "go"
    plan = plan_for(
        f't:\n{{a0}}: "date +%s%N"\n{{a1}}: "until [ -e {go} ]; do :; done; /bin/echo late"\nend\n',
        agents,
    )

    def observer(event: Event) -> None:
        # `started` comes once the agent stopped watching: the exec is after its wait.
        if not isinstance(event, HostChanged) or event.host.address.port != agents[1].port:
            return
        if event.host.commands[0].started_at is not None:
            go.touch()

    run = await Runner(plan, options(token), observer).run()
    test = run.tests[0]
    late = test.hosts[1]
    assert late.commands[0].stdout.read_bytes() == b"late\n"
    assert late.exec_error == text.EXEC_NOTHING and late.commands[0].exec_offset_ms is None
    assert "or a program it started later" in format_test(test)


@pytest.mark.skipif(not ROOT, reason="exec instants need root on Linux")
async def test_commands_that_all_exec_nothing_say_so(agents, token):
    # The demo's last test: every command a shell builtin, so no host measured one.
    loop = "i=0; while [ $i -lt 3 ]; do i=$((i+1)); done"
    plan = plan_for(f't:\n{{a0}}: "echo one"\n{{a1}}: "{loop}"\nend\n', agents)
    run = await Runner(plan, options(token)).run()
    test = run.tests[0]
    assert all(c.exec_offset_ms is None for h in test.hosts for c in h.commands)
    assert [h.exec_error for h in test.hosts] == [text.EXEC_NOTHING] * 2
    why = format_test(test).split("when the commands began was not measured (", 1)[1]
    assert why.startswith("127.0.0.1:[") and "a command exec'd no program" in why


def test_a_release_held_back_between_its_clock_reads_is_bounded_by_the_exec():
    ms = 1_000_000
    # Not held back: the read before the write, which the command cannot precede.
    assert release_figure(10 * ms, 10 * ms + RELEASE_UNSURE_NS, 11 * ms) == 10 * ms
    # Held back before the write: the read after it is the write's instant.
    assert release_figure(10 * ms, 50 * ms, 50 * ms + ms // 2) == 50 * ms
    # Held back after the write: the command ran meanwhile; its exec bounds the write.
    assert release_figure(10 * ms, 50 * ms, 10 * ms + ms // 2) == 10 * ms + ms // 2
    # Nothing measured above: the earliest it can have been.
    assert release_figure(10 * ms, 50 * ms, None) == 10 * ms
    assert release_figure(None, None, None) is None


class _Kept:
    """A run's messages, kept (agent.jobs.Sink)."""

    peer = "test"

    def __init__(self) -> None:
        self.messages: list[object] = []

    def post(self, message: object) -> None:
        self.messages.append(message)

    async def output(self, command_id: int, stream: str, data: bytes) -> None:
        pass


@pytest.mark.parametrize("runs", [1, 3])
async def test_the_agent_stands_aside_after_the_last_release_on_its_thread(monkeypatch, runs):
    """After its release an agent's loop sleeps, blocked, while its commands exec; never
    while another run on the same thread (agents sharing a process) has yet to release."""
    asides: list[tuple[int, int]] = []  # (instant, runs released by then)
    monkeypatch.setattr(
        jobs,
        "stand_aside",
        lambda: asides.append(
            (now_ns(), sum(job.released_at is not None for r in started for job in r.jobs))
        ),
    )
    started = [
        Run(f"t{i}", [JobCommand(1, "true", None)], _Kept(), lambda run: None) for i in range(runs)
    ]
    for run in started:
        await run.prepare()
    at = now_ns() + 50_000_000
    for run in started:
        run.start(at)
    await asyncio.gather(*(run.main() for run in started))
    assert len(asides) == 1
    instant, released = asides[0]
    assert released == runs  # after every release on this thread, not between them
    assert instant >= max(job.released_at for run in started for job in run.jobs)
    assert all(run.sink.messages for run in started)


def test_no_exec_instants_without_the_kernel_events(monkeypatch):
    assert execwatch.open_watch("darwin") == (None, "exec instants are measured on Linux only")

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refused)
    watch, why = execwatch.open_watch("linux")
    assert watch is None and "root" in why


def _hold_back(agent, resumed: list[float]):
    """An observer that SIGSTOPs AGENT once, as soon as its host is sent the first
    start, for STOPPED_S; `resumed` gets the epoch just before the SIGCONT."""
    stopped: list[float] = []

    def observe(event: Event) -> None:
        if stopped or not isinstance(event, HostChanged):
            return
        if event.host.state is not HostState.RUNNING or event.host.address.port != agent.port:
            return
        stopped.append(time.time())
        os.kill(agent.process.pid, signal.SIGSTOP)

        def resume() -> None:
            # The clock first: once continued, the agent may release and this process
            # be descheduled before a later reading (1-3 ms under two busy loops).
            resumed.append(time.time())
            os.kill(agent.process.pid, signal.SIGCONT)

        asyncio.get_running_loop().call_later(STOPPED_S, resume)

    return observe


async def test_an_agent_held_back_across_the_start_is_named_late(token, token_file):
    with start_agent(token_file) as a0, start_agent(token_file) as a1:
        plan = plan_for('t:\n{a0}: "true"\n{a1}: "true"\nend\n', [a0, a1])
        resumed: list[float] = []
        observe = _hold_back(a1, resumed)
        try:
            run = await Runner(plan, options(token, late_ms=5.0), observe).run()
        finally:
            os.kill(a1.process.pid, signal.SIGCONT)
    test = run.tests[0]
    assert test.status is TestStatus.PASSED
    late = test.late_hosts()
    assert [host.target for host, _ in late] == [f"127.0.0.1:{a1.port}"]
    # It cannot have released before it was let go again, and it releases as soon as
    # it wakes: its lateness is the time it was held past the instant.
    truth_ms = (resumed[0] - test.scheduled_start) * 1e3
    assert truth_ms - 1.0 <= late[0][1] <= truth_ms + WAKE_SLACK_MS
    report = format_test(test)
    assert f"late releases (more than 5.000 ms, --late-ms): 127.0.0.1:{a1.port} +" in report
    # The spread covers the late host (less how late the other host was itself).
    on_time = max(c.release_late_ms or 0.0 for c in test.hosts[0].commands)
    assert test.start_spread_ms >= late[0][1] - on_time - test.start_spread_uncertainty_ms


async def test_the_lead_grows_for_a_host_that_was_late(token, token_file):
    with start_agent(token_file) as a0, start_agent(token_file) as a1:
        plan = plan_for('t:\n{a0}: "true"\n{a1}: "true"\nend\n', [a0, a1])
        resumed: list[float] = []
        observe = _hold_back(a1, resumed)
        try:
            run = await Runner(plan, options(token, repeat=2), observe).run()
        finally:
            os.kill(a1.process.pid, signal.SIGCONT)
    first, second = run.tests
    assert len(resumed) == 1  # held back in the first repetition only
    # Stopped before the start reached it, its transit grew; stopped after, its wake
    # margin (at most lead.MAX_WAKE_NS): either way the next lead covers more.
    assert first.late_hosts() and second.lead_ms > first.lead_ms


async def test_lead_given_is_the_lead_used(agents, token):
    plan = plan_for('t:\n{a0}: "true"\nend\n', agents)
    test = await run_test(plan.tests[0], options(token, lead_ns=123e6))
    assert test.lead_ms == pytest.approx(123.0)


def test_the_lead_policy_learns_within_its_bound():
    policy = LeadPolicy()
    slow, quick = Address("slow", 1), Address("quick", 1)
    paths = [(slow, 1e6), (quick, 1e6)]
    assert policy.lead(paths, 5e9) == Lead(default_lead_ns(1e6, 2))  # no one named
    assert policy.wake_ns(slow) is None
    # The start reached `slow` 40 ms after the instant of a 20 ms lead; it released 41 ms late.
    policy.observe(slow, 20e6, -40_000_000, 41e6)
    policy.observe(quick, 20e6, 19_000_000, 0.0)
    lead = policy.lead(paths, 5e9)
    assert lead.ns >= 2 * 60e6  # the slow host gets the lead it needs
    # ... and is named for it, with its figure and what the quick one needed.
    assert (lead.host, lead.figure, lead.figure_ns) == (slow, "transit", 60e6)
    assert lead.others_ns == pytest.approx(default_lead_ns(1e6, 2))
    assert policy.wake_ns(slow) == 50_000_000 and policy.wake_ns(quick) is None
    assert policy.lead(paths, 0.1e9).ns == 0.1e9  # never past the cap
    assert LeadPolicy(fixed_ns=7e6).lead(paths, 5e9) == Lead(7e6)
    # A round trip of 100 ms sets it too (3 of them), and says so.
    lead = LeadPolicy().lead([(slow, 100e6), (quick, 1e6)], 5e9)
    assert (lead.host, lead.figure, lead.figure_ns) == (slow, "rtt", 100e6)


@pytest.mark.skipif(not ROOT, reason="real-time priority needs root on Linux")
async def test_the_release_is_real_time_and_the_commands_are_not(token):
    """A permitted agent releases at real-time priority (its log says so at start), one
    started with --no-realtime at ordinary priority; either way its commands are
    ordinary processes."""
    with start_agent(token.path) as fast, start_agent(token.path, "--no-realtime") as plain:
        log = fast.wait_log("releases at")
        assert "waits for its releases at real-time priority (SCHED_FIFO 10)" in log
        assert "waits for its releases at ordinary priority: --no-realtime" in plain.wait_log(
            "releases at"
        )
        # `netjobs check` says it too.
        checks = await check_hosts(
            [Address("127.0.0.1", a.port) for a in (fast, plain)], token.token
        )
        assert [check.realtime for check in checks] == [True, False]
        assert format_check(checks[0]).endswith(", releases at real-time priority")
        assert ", releases at ordinary priority (real-time needs root" in format_check(checks[1])
        policy = f"{sys.executable} -c 'import os; print(os.sched_getscheduler(0))'"
        plan = plan_for('t:\n{a0}: "{p}"\n{a1}: "{p}"\nend\n', [fast, plain], p=policy)
        test = await run_test(plan.tests[0], options(token))
        assert test.status is TestStatus.PASSED
        for host in test.hosts:
            assert host.commands[0].stdout.read_bytes() == f"{os.SCHED_OTHER}\n".encode()
