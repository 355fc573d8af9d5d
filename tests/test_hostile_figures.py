"""What one token-holding agent says of itself must not drive the fleet, nor swamp
what a person reads: its start's transit (which the next tests' lead follows), its
exec and end instants (the test's exec spread, its concurrent window), the length of
its words (host name, version, platform, messages), how many cuts it causes.

Each test plays the agent on loopback with the real `Connection` and the real token,
beside a real honest agent (-minhosts 1); the agent played here checks nothing it
sends (`queue_unchecked`), as a compromised one would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netjobs_core import report, text
from netjobs_core.config import parse_config
from netjobs_core.results import KEPT_INTERRUPTIONS, HostState, RunResult
from netjobs_core.results_json import run_to_json
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import MAX_LEAD_S, Runner
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.messages import (
    MAX_CLOCK,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    Exit,
    Finished,
    Resumed,
    Start,
    Started,
)
from tests.agent_harness import start_agent
from tests.loopback import serving
from tests.played_agent import HangUp, Played, Send

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

REPO = Path(__file__).resolve().parents[1]


def ended(send: Send, message: str = "", exit_code: int = 0, at: int | None = None) -> None:
    """Command 0 ended (failed with MESSAGE when not exit 0), and the run."""
    status = "ok" if exit_code == 0 else "failed"
    send(Exit(id=0, status=status, exit_code=exit_code, ended_at=at or now_ns(), message=message))
    send(Finished())


async def on_time(send: Send, start: Start, n: int) -> None:
    """Released at the instant, the start having come when it came; exit 0."""
    assert start.at is not None
    arrived = now_ns()
    await asyncio.sleep(max(0, start.at - now_ns()) / 1e9)
    send(Started(released_at={"0": now_ns()}, late_ns=0, ahead_ns=start.at - arrived))
    ended(send)


@dataclass
class Fleet:
    """The played agent's target, the honest agent's, and RUN: a run of the tests."""

    target: str
    honest: str
    run: Callable[..., Awaitable[RunResult]]


@contextlib.asynccontextmanager
async def beside_an_honest_agent(token, played: Played, tests: int = 1) -> AsyncIterator[Fleet]:
    """The played agent beside a real one; RUN(tmp_path, **options) runs TESTS tests
    (-minhosts 1) of both, the real one echoing `honest` (checked in each)."""
    with start_agent(token.path) as agent:
        async with serving(played.serve) as port:
            target, honest = f"127.0.0.1:{port}", f"127.0.0.1:{agent.port}"
            config = "".join(
                f't{k}:\n-minhosts: 1\n{target}: "true"\n{honest}: "echo honest"\nend\n'
                for k in range(1, tests + 1)
            )

            async def run(tmp_path: Path, **options: Any) -> RunResult:
                run_options = RunOptions(
                    token=token.token,
                    run_folder=RunFolder.create(tmp_path / "runs"),
                    connect_timeout=2.0,
                    **options,
                )
                async with asyncio.timeout(60):
                    result = await Runner(parse_config(config, "t.cfg"), run_options).run()
                for test in result.tests:
                    good = test.hosts[1]
                    assert good.state is HostState.DONE, good.error
                    assert good.commands[0].stdout.read_bytes() == b"honest\n"
                return result

            yield Fleet(target, honest, run)


# -- 1. the lead ---------------------------------------------------------------------
async def test_an_impossible_start_transit_fails_its_host_and_leaves_the_lead_alone(
    token, tmp_path
):
    """`ahead_ns` -2**62: the start reached it 146 years after the instant. Taken, it
    made every later test's lead the 5 s cap, and no host was named for it."""

    async def lying_once(send: Send, start: Start, n: int) -> None:
        if n > 1:
            return await on_time(send, start, n)
        send(Started(released_at={"0": now_ns()}, late_ns=0, ahead_ns=-(2**62)))
        ended(send)

    async with beside_an_honest_agent(token, Played(token.token.secret, lying_once), 2) as fleet:
        first, second = (await fleet.run(tmp_path)).tests
    assert second.lead_ms is not None and second.lead_ms < 100  # it was 5000
    liar = first.hosts[0]
    assert liar.state is HostState.FAILED
    assert "the start reached the agent at an impossible instant" in liar.error
    assert second.hosts[0].state is HostState.DONE
    assert second.lead_set_by is None


async def test_a_slow_start_sets_the_lead_and_its_host_is_named(token, tmp_path):
    """A host whose start reaches it 300 ms after the instant (so it says, and so its
    `started` comes): the next lead covers it, as an honest slow host needs, and the
    report and results.json name it with its figure (the lead once followed it, the
    5 s cap at worst, and nobody was named)."""

    async def slow(send: Send, start: Start, n: int) -> None:
        assert start.at is not None
        await asyncio.sleep(max(0, start.at + 300_000_000 - now_ns()) / 1e9)
        arrived = now_ns()
        send(Started(released_at={"0": arrived}, late_ns=0, ahead_ns=start.at - arrived))
        ended(send)

    async with beside_an_honest_agent(token, Played(token.token.secret, slow), 2) as fleet:
        result = await fleet.run(tmp_path)
    target = fleet.target
    first, second = result.tests
    assert first.lead_set_by is None  # nothing learned yet
    set_by = second.lead_set_by
    assert set_by is not None and (set_by.host, set_by.figure) == (target, "transit")
    assert 300 < set_by.figure_ms < 300 + first.lead_ms + 100
    assert second.lead_ms >= 2 * set_by.figure_ms  # what it needs, under the cap
    assert second.lead_ms <= MAX_LEAD_S * 1000
    assert set_by.others_ms < 100  # the honest agent's
    said = f"(set by {target}: its start took {text.ms(set_by.figure_ms)} to reach it; "
    assert said in report.format_test(second)  # the report's (and the -l log's) start line
    assert said in ", ".join(text.summary_parts(second))
    document = json.loads(json.dumps(run_to_json(result)))
    assert document["tests"][1]["lead_set_by"]["host"] == target
    assert document["tests"][0]["lead_set_by"] is None


# -- 2. texts --------------------------------------------------------------------------
def _netjobs(*args: object, cwd: Path) -> Awaitable[asyncio.subprocess.Process]:
    return asyncio.create_subprocess_exec(
        sys.executable, "-m", "netjobs_core.cli", *map(str, args),
        cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _ran(*args: object, cwd: Path) -> tuple[int, str]:
    process = await _netjobs(*args, cwd=cwd)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


def _cut(said: str, bound: int) -> None:
    """SAID was cut to BOUND characters, with how many were cut."""
    assert len(said) <= bound and said.endswith(" characters)") and "…(+" in said, said[:80]


async def test_an_agents_words_are_cut_to_their_bounds_where_a_person_reads_them(token, tmp_path):
    """A host name, version and platform of 80 000 characters each, an exit message of
    200 000 (under the frame header's 256 KiB): `netjobs check`, the report, the -l log
    and results.json carried them whole."""
    name = "n" * 80_000

    async def failing_at_length(send: Send, start: Start, n: int) -> None:
        assert start.at is not None
        await asyncio.sleep(max(0, start.at - now_ns()) / 1e9)
        send(Started(released_at={"0": now_ns()}, late_ns=0))
        ended(send, "why " * 50_000, exit_code=1)

    played = Played(token.token.secret, failing_at_length, name=name)
    async with beside_an_honest_agent(token, played) as fleet:
        target = fleet.target
        config = tmp_path / "t.cfg"
        config.write_text(f't:\n-minhosts: 1\n{target}: "false"\n{fleet.honest}: "true"\nend\n')
        code, checked = await _ran("check", "--token-file", token.path, config, cwd=tmp_path)
        assert code == 0, checked
        code, said = await _ran(
            "-v", "-l", "--json", "r.json", "--results", tmp_path / "runs",
            "--token-file", token.path, config, cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, said  # -minhosts 1: the played agent's failed command is one
    (line,) = [line for line in checked.splitlines() if "agent " in line and target in line]
    assert len(line) < 4 * MAX_NAME_CHARS and "…(+" in line, line[:200]
    assert max(map(len, said.splitlines())) < 2 * MAX_MESSAGE_CHARS
    assert "…(+" in said
    host = json.loads((tmp_path / "r.json").read_text())["tests"][0]["hosts"][0]
    _cut(host["hostname"], MAX_NAME_CHARS)
    _cut(host["agent_version"], MAX_NAME_CHARS)
    _cut(host["commands"][0]["message"], MAX_MESSAGE_CHARS)
    (log,) = tmp_path.glob("t.cfg_t_*.log")
    assert max(map(len, log.read_text().splitlines())) < 2 * MAX_MESSAGE_CHARS


# -- 3. interruptions ---------------------------------------------------------------
async def test_cut_after_cut_keeps_the_first_and_last_interruptions_and_counts_the_rest(
    token, tmp_path
):
    """A test with no -timeout has no deadline: an agent that hangs up after every
    resume (each a cut of at least 10 s at the default heartbeat when silent) added a
    record per cut, without end. 30 here, each resumed."""
    cuts = 30

    async def hang_up(send: Send, start: Start, n: int) -> None:
        send(Started(released_at={"0": now_ns()}, late_ns=0))
        raise HangUp

    async def resume_then_hang_up(send: Send, n: int) -> None:
        send(Resumed(run_id="r"))
        send(Started(released_at={"0": now_ns()}, late_ns=0))  # the replay
        if n < cuts:
            raise HangUp
        ended(send)

    played = Played(token.token.secret, hang_up, resume_then_hang_up)
    async with beside_an_honest_agent(token, played) as fleet:
        result = await fleet.run(tmp_path)
    host = result.tests[0].hosts[0]
    assert host.state is HostState.DONE, host.error
    assert len(host.interruptions) == 2 * KEPT_INTERRUPTIONS  # was 30
    assert host.interruptions_folded == cuts - 2 * KEPT_INTERRUPTIONS
    assert all(record.resumed for record in host.interruptions)
    at = [record.at for record in host.interruptions]
    assert at == sorted(at)
    lines = report.format_test(result.tests[0]).splitlines()
    folded = [line for line in lines if "… 20 more connection losses, each resumed" in line]
    assert len(folded) == 1
    # Said after the first ones kept, before the last.
    cut_lines = [n for n, line in enumerate(lines) if "connection lost at" in line]
    assert (
        cut_lines[KEPT_INTERRUPTIONS - 1] < lines.index(folded[0]) < cut_lines[KEPT_INTERRUPTIONS]
    )
    document = json.loads(json.dumps(run_to_json(result)))["tests"][0]["hosts"][0]
    assert len(document["interruptions"]) == 2 * KEPT_INTERRUPTIONS
    assert document["interruptions_folded"] == cuts - 2 * KEPT_INTERRUPTIONS


# -- other instants a host reports that fleet figures are made of ---------------------
async def test_an_exec_instant_after_its_report_fails_its_host_not_the_exec_spread(token, tmp_path):
    """An exec instant at the end of the clock's range (its `started` came well before):
    the test's exec spread read 292 years."""

    async def far_exec(send: Send, start: Start, n: int) -> None:
        released = now_ns()
        send(Started(released_at={"0": released}, late_ns=0, exec_at={"0": MAX_CLOCK}))
        ended(send)

    async with beside_an_honest_agent(token, Played(token.token.secret, far_exec)) as fleet:
        (test,) = (await fleet.run(tmp_path)).tests
    liar = test.hosts[0]
    assert liar.state is HostState.FAILED
    assert "after the report of it reached the controller" in liar.error
    assert test.exec_spread_ms is None or test.exec_spread_ms < 1000


async def test_an_end_after_its_report_is_taken_as_the_report(token, tmp_path):
    """An end instant at the end of the clock's range: the command ran '292 years' and
    the test's concurrent window was a vanishing fraction of that. The end is no later
    than its report reached the controller."""

    async def far_end(send: Send, start: Start, n: int) -> None:
        send(Started(released_at={"0": now_ns()}, late_ns=0))
        ended(send, at=MAX_CLOCK)

    async with beside_an_honest_agent(token, Played(token.token.secret, far_end)) as fleet:
        (test,) = (await fleet.run(tmp_path)).tests
    command = test.hosts[0].commands[0]
    assert command.duration_s is not None and command.duration_s < 10  # was 9.2e9 s
    window = test.concurrent_window
    assert window is None or window.fraction > 1e-6
