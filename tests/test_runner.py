"""The runner against real agent processes on loopback."""

import asyncio
import hashlib
import re
import secrets
import socket
import time

import pytest
from agent_harness import HostWatch, free_port, pid_alive, start_agent

from netjobs_core import __version__
from netjobs_core.config import parse_config
from netjobs_core.local_agents import AgentStartError
from netjobs_core.results import CommandStatus, HostState, StartMode, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, run_test
from netjobs_core.wire.messages import Kill
from netjobs_core.wire.tokens import Token
from tests.loopback import serving

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]


def plan_for(body: str, agents=(), **names):
    text = body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}, **names)
    return parse_config(text, "test.cfg")


def options(token, **kwargs):
    return RunOptions(token=token.token, connect_timeout=3.0, **kwargs)


async def test_synchronized_run_collects_everything(agents, token):
    plan = plan_for(
        't:\n{a0}: "echo one; echo err >&2"\n{a1}: "exit 3"\n'
        '{a2}: "date +%s%N"\n{a0}: "printf two"\nend\n',
        agents,
    )
    test = await run_test(plan.tests[0], options(token))
    assert test.status is TestStatus.FAILED  # minhosts all, and one host exited 3
    a0, a1, a2 = test.hosts
    assert [c.status for c in a0.commands] == [CommandStatus.OK, CommandStatus.OK]
    assert (
        a0.commands[0].stdout.read_bytes() == b"one\n"
        and a0.commands[0].stderr.read_bytes() == b"err\n"
    )
    assert a0.commands[1].stdout.read_bytes() == b"two"
    assert a1.commands[0].status is CommandStatus.FAILED and a1.commands[0].exit_code == 3
    assert a2.commands[0].status is CommandStatus.OK
    for host in test.hosts:
        assert host.state is HostState.DONE
        assert host.gated is True
        assert host.rtt_ms is not None and host.rtt_ms < 50
        # Same machine, same clock: the measured offset must be tiny and within its bound.
        assert abs(host.clock_offset_ms) <= host.clock_uncertainty_ms + 0.01
        assert host.start_offset_ms is not None
    assert test.start_spread_ms is not None and test.start_spread_ms < 50
    assert test.scheduled_start is not None
    started = [c.started_at for h in test.hosts for c in h.commands]
    assert max(started) - min(started) == pytest.approx(test.start_spread_ms / 1000, abs=1e-6)
    # The command's own wall-clock stamp lies just after the reported release.
    stamp = int(a2.commands[0].stdout.read_bytes()) / 1e9
    assert 0 <= stamp - a2.commands[0].started_at < 0.5


async def test_silent_sleep_killed_at_timeout_with_grandchild(agents, token, tmp_path):
    pids = tmp_path / "pids"
    plan = plan_for(
        't:\n-minhosts: 0\n{a0}: "sleep 30 & echo $! > {pids}; sleep 30"\n-timeout: 1s\nend\n',
        agents,
        pids=pids,
    )
    began = time.monotonic()
    test = await run_test(plan.tests[0], options(token))
    elapsed = time.monotonic() - began
    command = test.hosts[0].commands[0]
    assert command.status is CommandStatus.TIMEOUT
    assert test.hosts[0].state is HostState.TIMEOUT
    assert elapsed < 10
    assert 0.9 < command.duration_s < 5
    assert not pid_alive(int(pids.read_text()))


async def test_quorum_abort_kills_the_others(agents, token, tmp_path):
    marker = tmp_path / "finished"
    plan = plan_for(
        't:\n-minhosts: all\n{a0}: "sleep 30"\n-timeout: 0.5s\n'
        '{a1}: "sleep 20; touch {marker}"\nend\n',
        agents,
        marker=marker,
    )
    began = time.monotonic()
    test = await run_test(plan.tests[0], options(token))
    assert time.monotonic() - began < 10
    assert test.status is TestStatus.ABORTED
    assert "quorum lost" in test.reason and "127.0.0.1" in test.reason
    assert test.hosts[0].commands[0].status is CommandStatus.TIMEOUT
    assert test.hosts[1].commands[0].status is CommandStatus.KILLED
    assert not marker.exists()


async def test_unreachable_host_is_a_failed_host_not_a_crash(agents, token):
    port = free_port()
    plan = plan_for(
        't:\n-minhosts: 2\n{a0}: "echo hi"\n{a1}: "echo hi"\n127.0.0.1:{port}: "echo never"\nend\n',
        agents,
        port=port,
    )
    test = await run_test(plan.tests[0], options(token))
    dead = test.hosts[2]
    assert dead.state is HostState.FAILED and "refused" in dead.error
    assert dead.commands[0].status is CommandStatus.ERROR
    assert test.status is TestStatus.PASSED  # two of three succeeded, -minhosts 2
    assert [h.commands[0].status for h in test.hosts[:2]] == [CommandStatus.OK] * 2


async def test_unreachable_host_with_minhosts_all_aborts_before_running(agents, token, tmp_path):
    marker = tmp_path / "ran"
    plan = plan_for(
        't:\n{a0}: "touch {marker}"\n127.0.0.1:{port}: "true"\nend\n',
        agents,
        port=free_port(),
        marker=marker,
    )
    test = await run_test(plan.tests[0], options(token))
    assert test.status is TestStatus.ABORTED
    command = test.hosts[0].commands[0]
    assert command.status is CommandStatus.ERROR and command.message.startswith("not started")
    assert not marker.exists()


async def test_ten_megabytes_each_way_and_binary_output(agents, token):
    plan = plan_for(
        't:\n{a0}: "head -c 10000000 /dev/urandom | tee /dev/stderr | sha256sum >&2"\n'
        "{a1}: \"printf '\\377\\376 caf\\303\\251\\n'\"\nend\n",
        agents,
    )
    test = await run_test(plan.tests[0], options(token))
    big = test.hosts[0].commands[0]
    assert big.status is CommandStatus.OK
    whole = big.stderr.read_bytes()
    data, trailer = whole[:10_000_000], whole[10_000_000:]
    assert len(big.stderr) > 10_000_000
    assert hashlib.sha256(data).hexdigest().encode() in trailer
    assert test.hosts[1].commands[0].stdout.read_bytes() == b"\xff\xfe caf\xc3\xa9\n"


async def test_ten_megabytes_on_stdout(agents, token):
    plan = plan_for("t:\n{a0}: \"head -c 10485760 /dev/zero | tr '\\0' x\"\nend\n", agents)
    test = await run_test(plan.tests[0], options(token))
    assert test.hosts[0].commands[0].stdout.read_bytes() == b"x" * 10485760


async def test_wrong_token_runs_nothing(agents, tmp_path):
    marker = tmp_path / "ran"
    plan = plan_for('t:\n{a0}: "touch {marker}"\nend\n', agents, marker=marker)
    wrong = Token(secrets.token_urlsafe(32).encode(), "wrong")
    test = await run_test(plan.tests[0], RunOptions(token=wrong, connect_timeout=3))
    assert test.status is TestStatus.ABORTED
    assert "authentication failed" in test.hosts[0].error
    assert not marker.exists()


async def test_every_host_refusing_our_token_stops_the_run(agents, tmp_path):
    """A wrong token on every host: one sentence, every host's refusal once with their
    node set, and no next test (whatever -minhosts and stop_on_failure say)."""
    marker = tmp_path / "ran"
    plan = plan_for(
        't:\n-minhosts: 0\n{a0}: "true"\n{a1}: "true"\n{a2}: "true"\nend\n'
        'u:\n{a0}: "touch {marker}"\nend\n',
        agents,
        marker=marker,
    )
    wrong = Token(secrets.token_urlsafe(32).encode(), "wrong")
    run = await Runner(plan, RunOptions(token=wrong, connect_timeout=3)).run()
    assert [(t.label, t.status) for t in run.tests] == [
        ("t", TestStatus.PASSED),  # -minhosts: 0
        ("u", TestStatus.PENDING),
    ]
    assert run.tests[1].reason == "every host refused our credentials in test 't'"
    reason = run.tests[0].reason
    assert reason.startswith("every host refused our credentials, so no further test is started")
    assert reason.count("authentication failed") == 1
    assert "127.0.0.1:[" in reason  # the three hosts as one node set
    assert not marker.exists()


async def test_one_host_refusing_does_not_stop_the_run(agents, token, tmp_path):
    other_token = tmp_path / "other-token"
    other_token.write_text(secrets.token_urlsafe(32))
    other_token.chmod(0o600)
    with start_agent(other_token) as other:
        plan = plan_for(
            't:\n-minhosts: 1\n{a0}: "true"\n{other}: "true"\nend\nu:\n{a0}: "true"\nend\n',
            agents,
            other=f"127.0.0.1:{other.port}",
        )
        run = await Runner(plan, options(token)).run()
    assert [t.label for t in run.tests] == ["t", "u"]
    assert "every host refused" not in run.tests[0].reason


async def test_sequential_mode_runs_too(agents, token):
    plan = plan_for('t:\n{a0}: "true"\n{a1}: "true"\nend\n', agents)
    test = await run_test(plan.tests[0], options(token, start_mode=StartMode.SEQUENTIAL))
    assert test.status is TestStatus.PASSED
    assert test.scheduled_start is None and test.start_spread_ms is not None
    assert min(h.start_offset_ms for h in test.hosts) == 0


async def test_stop_kills_jobs_and_keeps_results(agents, token, tmp_path):
    plan = plan_for(
        't:\n{a0}: "echo started; sleep 30"\n{a1}: "sleep 30"\nend\nu:\n{a0}: "true"\nend\n', agents
    )
    watch = HostWatch()
    runner = Runner(plan, options(token), watch)
    task = asyncio.create_task(runner.run())
    # The first output has reached us (a TimeoutError fails the test if it never does).
    await watch.until(lambda test: test.hosts[0].commands[0].stdout, timeout=20)
    runner.stop()
    result = await asyncio.wait_for(task, 15)
    # No further tests after a stop: the next is there, not run, and says why.
    assert [(t.label, t.status) for t in result.tests] == [
        ("t", TestStatus.ABORTED),
        ("u", TestStatus.PENDING),
    ]
    assert result.tests[1].reason == "stopped by user" and not result.tests[1].hosts
    test = result.tests[0]
    assert test.status is TestStatus.ABORTED and test.reason == "stopped by user"
    assert test.hosts[0].commands[0].stdout.read_bytes() == b"started\n"
    assert {c.status for h in test.hosts for c in h.commands} == {CommandStatus.KILLED}


async def test_agent_killed_mid_run(token, tmp_path):
    victim = start_agent(token.path)
    survivor = start_agent(token.path)
    try:
        plan = plan_for(
            't:\n-minhosts: 1\n{a0}: "sleep 1; echo done"\n{a1}: "sleep 30"\nend\n',
            [survivor, victim],
        )
        watch = HostWatch()
        task = asyncio.create_task(run_test(plan.tests[0], options(token), watch))
        await watch.host_reaches(1, HostState.RUNNING)
        victim.kill()
        test = await asyncio.wait_for(task, 15)
        assert test.hosts[1].state is HostState.FAILED
        assert "connection lost" in test.hosts[1].error
        assert test.hosts[0].commands[0].status is CommandStatus.OK
        assert test.status is TestStatus.PASSED
    finally:
        victim.kill()
        survivor.stop()


async def test_busy_agent_is_a_failed_host(agents, token):
    plan_long = plan_for('t:\n{a2}: "sleep 2"\nend\n', agents)
    plan_busy = plan_for('t:\n{a2}: "true"\nend\n', agents)
    watch = HostWatch()
    first = asyncio.create_task(run_test(plan_long.tests[0], options(token), watch))
    await watch.host_reaches(0, HostState.RUNNING)
    second = await run_test(plan_busy.tests[0], options(token))
    assert second.hosts[0].state is HostState.FAILED and "busy" in second.hosts[0].error
    assert (await first).status is TestStatus.PASSED


async def test_ipv6_target_in_brackets(token):
    try:
        agent = start_agent(token.path, bind="::1")
    except AgentStartError as exc:  # no IPv6 loopback on this machine
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        plan = parse_config(f't:\n[::1]:{agent.port}: "echo six"\nend\n', "v6.cfg")
        test = await run_test(plan.tests[0], options(token))
        assert test.status is TestStatus.PASSED
        assert test.hosts[0].target == f"[::1]:{agent.port}"
        assert test.hosts[0].commands[0].stdout.read_bytes() == b"six\n"
    finally:
        agent.stop()


async def test_a_bug_in_phase_one_fails_the_run_loudly(agents, token, monkeypatch, tmp_path):
    """A TypeError while connecting is the controller's bug, not a host's failure:
    it must reach the caller, not become a quiet "no host could be prepared"."""
    from netjobs_core.client import AgentLink

    marker = tmp_path / "ran"
    broken = agents[1].port
    connect = AgentLink.connect

    async def connect_or_break(self, timeout, **options):
        if self.address.port == broken:
            raise TypeError("a bug in connect")
        await connect(self, timeout, **options)

    monkeypatch.setattr(AgentLink, "connect", connect_or_break)
    plan = plan_for(
        't:\n-minhosts: 1\n{a0}: "touch {marker}"\n{a1}: "true"\nend\n', agents, marker=marker
    )
    with pytest.raises(ExceptionGroup) as raised:
        await run_test(plan.tests[0], options(token))
    assert raised.group_contains(TypeError, match="a bug in connect")
    assert not marker.exists()


async def test_quorum_lost_while_a_host_still_prepares_stops_waiting(agents, token, tmp_path):
    """One host refuses at once, another accepts and never greets: with -minhosts all
    the run ends now, not after the silent host's connect timeout."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the controller hangs up

    marker = tmp_path / "ran"
    async with serving(silent) as port:
        plan = plan_for(
            't:\n{a0}: "touch {marker}"\n'
            '127.0.0.1:{silent}: "true"\n127.0.0.1:{dead}: "true"\nend\n',
            agents,
            silent=port,
            dead=free_port(),
            marker=marker,
        )
        began = time.monotonic()
        test = await run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=20))
        assert time.monotonic() - began < 10
    assert test.status is TestStatus.ABORTED and "quorum lost" in test.reason
    assert held, "the silent host was reached"
    prepared, waiting, dead = test.hosts
    assert dead.state is HostState.FAILED
    assert waiting.state is HostState.KILLED
    assert prepared.state is HostState.KILLED
    assert prepared.commands[0].status is CommandStatus.ERROR  # prepared, never released
    assert prepared.commands[0].message.startswith("not started: test aborted: quorum lost")
    assert not marker.exists()


async def test_the_prepare_rides_with_the_auth_behind_the_first_ping(agent, token, monkeypatch):
    """On a stamped TCP path a host costs one write and one wait less: the prepare
    leaves with the auth and the first ping (in that order). No status is asked: the
    agent's host name and version come with its `prepared`."""
    from netjobs_core import client
    from netjobs_core.wire import rx_stamps
    from netjobs_core.wire.framing import FrameDecoder

    if rx_stamps.SO_TIMESTAMPNS is None:
        pytest.skip("no kernel arrival stamps here: every clock is measured first")

    writes: list[list[str]] = []
    real_write = client.TcpChannel.write

    def write(self, data, last=False):
        writes.append([frame.type for frame in FrameDecoder().feed(bytes(data))])
        return real_write(self, data, last)

    monkeypatch.setattr(client.TcpChannel, "write", write)
    test = await run_test(plan_for('t:\n{a0}: "echo hi"\nend\n', [agent]).tests[0], options(token))
    assert test.status is TestStatus.PASSED
    assert test.hosts[0].commands[0].stdout.read_bytes() == b"hi\n"
    with_auth = next(types for types in writes if "auth" in types)
    assert with_auth == ["auth", "ping", "prepare"]
    assert sum(types.count("prepare") for types in writes) == 1
    assert not any("status" in types for types in writes), writes
    host = test.hosts[0]
    assert (host.hostname, host.agent_version) == (socket.gethostname(), __version__)


async def test_a_busy_agent_refuses_the_early_prepare_and_its_run_goes_on(agent, token, token_file):
    """The prepare sent with the auth reaches an agent busy with another controller's
    test: the host fails with the agent's words and that test is not touched."""
    from agent_harness import AgentClient, commands, read_lines

    async with await AgentClient.connect(agent.host, agent.port, token_file) as owner:
        await owner.prepare("theirs", commands("echo up; sleep 30"))
        await owner.start()
        await read_lines(owner, 1)
        test = await run_test(
            plan_for('t:\n{a0}: "echo mine"\nend\n', [agent]).tests[0], options(token)
        )
        host = test.hosts[0]
        assert host.state is HostState.FAILED and "busy with test 'theirs'" in host.error
        assert host.commands[0].status is CommandStatus.ERROR
        assert (await owner.status()).busy is True  # still theirs, still running
        await owner.send(Kill(reason="enough"))
        outcome = await owner.collect(timeout=10)
        assert outcome.exits[1].message == "enough"


async def test_a_second_controller_is_told_whose_test_holds_the_agent_and_for_how_long(
    agent, token, token_file
):
    """Before, a controller gone silent (its test kept for its resume, 180 s) read as
    `busy with test 'theirs' for 127.0.0.1:PORT (lost)`, and `netjobs check` named no one."""
    from agent_harness import AgentClient, commands

    from netjobs_core.wire.messages import Prepare, Prepared, Status

    mine = plan_for('t:\n{a0}: "echo mine"\nend\n', [agent]).tests[0]
    owner = await AgentClient.connect(agent.host, agent.port, token_file)
    try:
        where = "{}:{}".format(*owner.writer.get_extra_info("sockname"))
        prepare = Prepare(label="theirs", commands=commands("sleep 30"), grace=60, heartbeat=0.1)
        assert isinstance(await owner.request(prepare, Prepared), Prepared)
        await owner.start()
        async with await AgentClient.connect(agent.host, agent.port, token_file) as other:
            status = await other.status()
            assert isinstance(status, Status)
            assert (status.controller, status.kept) == (where, None)
        host = (await run_test(mine, options(token))).hosts[0]
        assert host.error == f"busy with test 'theirs' for {where}"
        # The owner stops reading and pinging (a cut): the agent keeps its test 60 s.
        await agent.await_log("went silent during test 'theirs'")
        async with await AgentClient.connect(agent.host, agent.port, token_file) as other:
            status = await other.status()
        assert isinstance(status, Status) and status.controller == where
        assert status.kept is not None and 50 < status.kept <= 60
        host = (await run_test(mine, options(token))).hosts[0]
        assert re.fullmatch(
            f"busy with test 'theirs' for {re.escape(where)}, which went silent: "
            r"the test is kept for its resume \d\d s more",
            host.error,
        ), host.error
        log = agent.log_text()
        assert f"test 't' refused: {host.error}" in log  # the agent's log says it too
    finally:
        owner.abort()


async def test_a_finished_test_leaves_no_reference_cycle(agents, token, tmp_path, monkeypatch):
    """Each host's state (its link, connection, files, timers) is freed as the test
    ends, by reference counts: the controller's garbage collector runs seldom
    (event_loop.run) and is not needed to reclaim a test."""
    import gc
    import weakref

    from netjobs_core import host_run

    made: list[weakref.ref] = []
    real_init = host_run.HostRun.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(host_run.HostRun, "__init__", init)
    (tmp_path / "f.txt").write_text("collected\n")
    plan = plan_for(
        't:\n{a0}: "echo one"\n-collect: {f}\n{a1}: "echo two"\nend\n', agents, f=tmp_path / "f.txt"
    )
    gc.collect()
    gc.disable()
    try:
        test = await run_test(plan.tests[0], options(token))
        assert test.status is TestStatus.PASSED
        assert [c.path.read_text() for c in test.hosts[0].commands[0].collected] == ["collected\n"]
        assert len(made) == 2
        assert [ref() for ref in made] == [None, None]
    finally:
        gc.enable()
