"""An agent left running for weeks: what a test leaves behind must not pile up.

One real agent runs a couple of hundred tests of every ending (output, collected
files, a timeout, a kill, a controller that vanishes or goes silent, a refused
handshake); afterwards its open files, threads, child processes and cgroups are
what they were after the first round. Before, every test whose controller closed
its connection mid-run kept its two spool files open (and their disk space) until
the agent's end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from agent_harness import AgentClient, AgentProcess, commands, start_agent

from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.messages import Kill, Prepare, Prepared, Status

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc"),
    pytest.mark.timeout(90),
]

ROUNDS = 25  # of 9 tests each
# Threads the agent may add once and keep: asyncio's default executor (collect's globs).
POOL = min(32, (os.cpu_count() or 1) + 4)


def footprint(pid: int) -> dict[str, int]:
    """What a leak would grow: open files (spools among them), threads, children, cgroups."""
    fds = os.listdir(f"/proc/{pid}/fd")
    spools = 0
    for fd in fds:
        try:
            spools += os.readlink(f"/proc/{pid}/fd/{fd}").endswith("(deleted)")
        except OSError:
            continue
    threads = len(os.listdir(f"/proc/{pid}/task"))
    children = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children += int(stat.rsplit(")", 1)[1].split()[1]) == pid
    # The commands' cgroups this agent left (docs/process-hygiene.md: cmd-<agent pid>-<n>).
    cgroups = 0
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            cgroups += len(list(Path(fields[4]).glob(f"**/netjobs-*/cmd-{pid}-*")))
    return {
        "fds": len(fds),
        "spool files": spools,
        "threads": threads,
        "children": children,
        "cgroups": cgroups,
    }


async def idle(agent: AgentProcess, secret: bytes) -> None:
    """Until the agent holds no run (an orphaned or abandoned one is being killed)."""
    async with asyncio.timeout(10):
        while True:
            async with await AgentClient.connect(*agent.address, secret) as client:
                status = await client.status()
            assert isinstance(status, Status)
            if not status.busy:
                return
            await asyncio.sleep(0.02)


async def one_round(agent: AgentProcess, secret: bytes, files: Path, n: int) -> None:
    address = agent.address
    async with await AgentClient.connect(*address, secret) as client:
        await client.run(commands("echo hello"))
        outcome = await client.run(commands("head -c 200000 /dev/zero; echo err >&2"))
        assert len(outcome.stdout(1)) == 200000
        item = {**commands(f"echo x > {files}/f{n}")[0], "collect": [f"{files}/f{n}"]}
        await client.run([item])
        outcome = await client.run(commands(("sleep 30 & sleep 30", 0.1)))
        assert outcome.exits[1].status == "timeout"
        await client.prepare("kill", commands("sleep 30"))
        await client.start()
        await client.send(Kill(reason="enough"))
        assert (await client.collect()).exits[1].status == "killed"
    # A controller that vanishes mid-test (its process killed: a clean close), and one
    # that vanishes between its prepare and its start.
    for started in (True, False):
        client = await AgentClient.connect(*address, secret)
        await client.prepare("vanish", commands("sleep 30"))
        if started:
            await client.start()
        client.abort()
        await idle(agent, secret)
    # A refused handshake, then a command that fails.
    with pytest.raises((ProtocolError, ConnectionError)):
        await AgentClient.connect(*address, b"not the token at all, not at all")
    async with await AgentClient.connect(*address, secret) as client:
        assert (await client.run(commands("exit 3"))).exits[1].exit_code == 3
    # A controller that goes silent (a cut): kept for its grace, then dropped.
    client = await AgentClient.connect(*address, secret)
    prepare = Prepare(label="silent", commands=commands("sleep 30"), grace=0.1, heartbeat=0.05)
    assert isinstance(await client.request(prepare, Prepared), Prepared)
    await client.start()
    await idle(agent, secret)
    client.abort()


async def test_two_hundred_and_more_tests_leave_nothing_behind(token_file, tmp_path):
    secret = AgentClient.secret_of(token_file)
    with start_agent(token_file, "--orphan-grace", "0.05") as agent:
        await one_round(agent, secret, tmp_path, 0)  # the thread pool, lazy imports
        await asyncio.sleep(0.3)  # reaper threads end
        before = footprint(agent.pid)
        for n in range(1, ROUNDS):
            await one_round(agent, secret, tmp_path, n)
        await asyncio.sleep(0.3)
        after = footprint(agent.pid)
        log = agent.log_text()
    threads = after.pop("threads") - before.pop("threads")
    assert after == before and threads <= POOL, (before, after, threads, log[-3000:])
    silent = "killing test 'silent': controller lost for its 0.1 s reconnect grace"
    assert log.count(silent) == log.count("keeping it") == ROUNDS
    assert log.count("killing it in 0.05 s") == ROUNDS  # the vanished ones
    # Each line says which test and, where one is involved, which controller.
    assert f"test 'test' command 1: collected {tmp_path}/f1 (2 bytes) for 127.0.0.1:" in log
