"""A token-holding agent must not hold a test past its own deadline.

Each test runs the real runner against a hostile agent on loopback, speaking the real
protocol with the real token, beside a real honest agent (-minhosts 1): the hostile one
must end by its deadline, named, and the honest one's output must be there. The
controller's timings are shortened (BACKSTOP_S, the heartbeat, the reconnect cap) so
that each case ends in seconds; every hostile connection ends within its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from netjobs_core import host_run
from netjobs_core.config import parse_config
from netjobs_core.results import HostState, TestResult
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.messages import (
    MAX_GRACE_S,
    Exit,
    File,
    FileData,
    FileEnd,
    Resumed,
    Start,
    Started,
)
from tests.agent_harness import start_agent
from tests.loopback import serving
from tests.played_agent import Played, Send, silent

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]

Script = Callable[[Send], Awaitable[None]]
HEARTBEAT = 0.2  # the controller counts 5 unanswered: a silence of 1 s is a cut


def started_now() -> Started:
    return Started(released_at={"0": now_ns()}, late_ns=0)


@contextlib.asynccontextmanager
async def hostile_agent(
    secret: bytes,
    on_start: Script,
    on_resume: Script | None = None,
    clock: Callable[[], int] = now_ns,
) -> AsyncIterator[int]:
    """An agent that claims a week's reconnect grace, is honest up to the `start`
    (its pongs say CLOCK), then runs ON_START; on a later connection it answers a
    `resume` with ON_RESUME (None: not at all). Its port."""

    async def started(send: Send, start: Start, n: int) -> None:
        await on_start(send)

    async def resumed(send: Send, n: int) -> None:
        await (on_resume or silent)(send)

    played = Played(secret, started, resumed, grace=MAX_GRACE_S, clock=clock)
    async with serving(played.serve) as port:
        yield port


async def beside_an_honest_agent(
    token,
    tmp_path,
    lines: str,
    on_start: Script,
    on_resume: Script | None = None,
    clock: Callable[[], int] = now_ns,
    **options,
) -> tuple[TestResult, float]:
    """One test (-minhosts 1) of the hostile agent and a real one echoing `honest`,
    with LINES under the hostile one's target; the test and how long it took (s)."""
    with start_agent(token.path) as honest:
        async with hostile_agent(token.token.secret, on_start, on_resume, clock) as port:
            spec = parse_config(
                f't:\n-minhosts: 1\n127.0.0.1:{port}: "true"\n{lines}'
                f'127.0.0.1:{honest.port}: "echo honest"\nend\n',
                "t.cfg",
            ).tests[0]
            run_options = RunOptions(
                token=token.token,
                run_folder=RunFolder.create(tmp_path / "runs"),
                connect_timeout=1.0,
                heartbeat=HEARTBEAT,
                **options,
            )
            loop = asyncio.get_running_loop()
            began = loop.time()
            async with asyncio.timeout(40):
                test = await run_test(spec, run_options)
            took = loop.time() - began
    good = test.hosts[1]
    assert good.state is HostState.DONE and good.commands[0].stdout.read_bytes() == b"honest\n"
    return test, took


async def test_an_agent_claiming_a_weeks_grace_is_waited_for_no_longer_than_our_cap(
    token, tmp_path, monkeypatch
):
    """The run asks no grace (the CLI and the GUI never do): the agent's word was
    taken, up to a week. It vanishes after its start and holds every reconnection
    without a `resumed`: the test waited for it for a week."""
    monkeypatch.setattr(host_run, "MAX_RECONNECT_GRACE_S", 1.0)

    async def vanish(send: Send) -> None:
        send(started_now())
        await silent(send)

    test, took = await beside_an_honest_agent(token, tmp_path, "", vanish)
    hostile = test.hosts[0]
    assert hostile.state is HostState.FAILED
    assert "lost for its 1 s reconnect grace" in hostile.error
    assert took < 10  # 1 s of silence, 1 s of grace


async def test_cut_after_cut_does_not_push_the_deadline_for_ever(token, tmp_path, monkeypatch):
    """Each resumed cut moved the deadline later by the time it lost: an agent that went
    silent again after every resume held a `-timeout: 1s` test for ever."""
    monkeypatch.setattr(host_run, "BACKSTOP_S", 1.0)

    async def resume_then_vanish(send: Send) -> None:
        send(Resumed(run_id="r"))
        send(started_now())  # the replay, as an agent sends it
        await silent(send)

    async def vanish(send: Send) -> None:
        send(started_now())
        await silent(send)

    test, took = await beside_an_honest_agent(
        token, tmp_path, "-timeout: 1s\n", vanish, resume_then_vanish, reconnect_grace=3.0
    )
    hostile = test.hosts[0]
    assert hostile.state is HostState.TIMEOUT, hostile.error
    assert hostile.interruptions and all(i.resumed for i in hostile.interruptions[:-1])
    # 1 s timeout + 1 s backstop + at most 3 s of cuts, and the last cut's own grace.
    assert took < 15


async def test_file_after_file_does_not_hold_the_deadline_past_its_bytes(
    token, tmp_path, monkeypatch
):
    """Each collected file held the deadline its own BACKSTOP_S past its start: 30 files
    each trickling a byte just inside it held a `-timeout: 1s` test 30 backstops (up to
    256 files a pattern: over two hours at the real 30 s)."""
    monkeypatch.setattr(host_run, "BACKSTOP_S", 1.0)
    sha = hashlib.sha256(b"x").hexdigest()

    async def trickle(send: Send) -> None:
        send(started_now())
        send(Exit(id=0, status="ok", exit_code=0, ended_at=now_ns(), message=""))
        for k in range(30):
            send(File(id=0, pattern=0, name=f"f{k}", size=1))
            send(FileData(id=0, body=b"x"))  # its byte at once: the backstop from now
            await asyncio.sleep(0.9)  # the next file within it
            send(FileEnd(id=0, bytes=1, sha256=sha))

    test, took = await beside_an_honest_agent(
        token, tmp_path, "-timeout: 1s\n-collect: /f*\n", trickle
    )
    hostile = test.hosts[0]
    assert hostile.state is HostState.TIMEOUT, hostile.error
    assert took < 8  # 1 s timeout + 1 s backstop, not 30 files x 0.9 s


async def test_an_agent_whose_clock_readings_fit_no_offset_fails_alone(token, tmp_path):
    """Pongs an hour ahead and an hour behind in turn fit no one offset: the estimate
    was one of them with a bound of half a round trip ("+3600 s +- 0.02 ms"), a bound
    no sample agreed with. Now the host's clock is not measured: it fails alone."""
    pongs = itertools.count()

    def swinging() -> int:
        return now_ns() + (3600 if next(pongs) % 2 else -3600) * 10**9 + 4000 * 10**9

    async def never(send: Send) -> None:
        raise AssertionError("an agent with no measured clock was started")

    test, _ = await beside_an_honest_agent(token, tmp_path, "", never, clock=swinging)
    hostile = test.hosts[0]
    assert hostile.state is HostState.FAILED
    assert "fit no one clock offset" in hostile.error
    assert hostile.clock_uncertainty_ms is None
