"""The concurrent window (netjobs_core.window): on synthetic timings, and on a real run."""

import asyncio
import re
import signal

import pytest
from agent_harness import HostWatch, free_port, start_agent
from hypothesis import given
from hypothesis import strategies as st

from netjobs_core import text
from netjobs_core.config import parse_config
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    ConcurrentWindow,
    HostResult,
    TestResult,
)
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.window import concurrent_window, window_of
from netjobs_core.wire.address import Address


def ran(start: float | None, duration: float | None) -> CommandResult:
    return CommandResult("x", started_at=start, duration_s=duration)


def lost(start: float, lost_at: float) -> CommandResult:
    return CommandResult("x", status=CommandStatus.LOST, started_at=start, lost_at=lost_at)


def test_the_window_is_from_the_last_start_to_the_first_end():
    found = concurrent_window([ran(100.0, 60.0), ran(100.5, 59.0), ran(101.0, 58.0)])
    assert found is not None
    assert (found.start, found.end) == (101.0, 159.0)
    assert found.seconds == pytest.approx(58.0)
    assert found.fraction == pytest.approx(58.0 / 60.0)


def test_a_lost_command_ran_at_least_until_it_was_lost():
    # It closes the window when it was lost first: a lower bound, said as one.
    found = concurrent_window([ran(100.0, 10.0), ran(100.0, 10.0), lost(100.5, 106.0)])
    assert found is not None and found.at_least
    assert (found.start, found.end, found.seconds) == (100.5, 106.0, 5.5)
    assert text.window(found) == "at least 5.500 s (55.0 % of the longest command)"
    # Lost after another command's end: that end is known, the window exact.
    found = concurrent_window([ran(100.0, 3.0), lost(100.5, 106.0)])
    assert found is not None and not found.at_least and found.end == 103.0


@pytest.mark.parametrize(
    "commands",
    [
        [],
        [ran(100.0, 10.0), ran(None, None)],  # one never started (its host unreachable)
        [ran(100.0, 10.0), ran(100.0, None)],  # one lost, and when is not known
        [ran(100.0, 10.0), lost(100.0, 99.0)],  # lost before the others started
        [ran(100.0, 1.0), ran(101.0, 5.0)],  # one ended as the other began
        [ran(100.0, 0.001), ran(100.5, 5.0)],  # one failed at once
        [ran(100.0, 0.0)],
    ],
)
def test_no_window_when_they_never_all_ran_together(commands):
    assert concurrent_window(commands) is None


spans = st.lists(
    st.tuples(
        st.floats(1.7e9, 1.7e9 + 100, allow_nan=False), st.floats(0.0, 100.0, allow_nan=False)
    ),
    min_size=1,
    max_size=40,
)


@given(spans)
def test_the_window_is_inside_every_command_and_as_long_as_can_be(timings):
    found = concurrent_window([ran(s, d) for s, d in timings])
    last_start = max(s for s, _ in timings)
    first_end = min(s + d for s, d in timings)
    if found is None:
        assert first_end <= last_start or max(d for _, d in timings) <= 0
        return
    assert (found.start, found.end) == (last_start, first_end)
    for start, duration in timings:
        assert start <= found.start and found.end <= start + duration
    assert 0 < found.fraction <= 1
    assert found.seconds == pytest.approx(found.end - found.start)


def test_window_of_a_test_covers_every_host():
    test = TestResult("t", None)
    for port, (start, duration) in enumerate([(10.0, 5.0), (11.0, 2.0)], 16201):
        host = HostResult(Address("127.0.0.1", port))
        host.commands = [ran(start, duration), ran(start + 0.5, 3.0)]
        test.hosts.append(host)
    assert window_of(test) == ConcurrentWindow(11.5, 13.0, 1.5, 0.3)
    test.concurrent_window = window_of(test)
    assert text.window_line(test) == (
        "all 4 commands on 2 hosts ran together for 1.500 s (30.0 % of the longest command)"
    )
    test.concurrent_window = None
    assert text.window_line(test) == "the 4 commands on 2 hosts never all ran together"


@pytest.mark.posix
@pytest.mark.timeout(60)
async def test_a_real_run_has_its_window_and_an_unreachable_host_has_none(agents, token):
    body = 't:\n{a0}: "sleep 0.5"\n{a1}: "sleep 0.5"\n{a2}: "sleep 0.7"\nend\n'
    names = {f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(**names), "w.cfg").tests[0], options)
    window = test.concurrent_window
    assert window is not None
    commands = [c for h in test.hosts for c in h.commands]
    assert window.start == max(c.started_at for c in commands)
    assert window.end == min(c.started_at + c.duration_s for c in commands)
    # The three slept 0.5 s or more from one instant: all but the start spread together.
    assert 0.45 < window.seconds <= 0.5 + 0.1
    assert window.fraction == pytest.approx(window.seconds / max(c.duration_s for c in commands))

    names["a2"] = f"127.0.0.1:{free_port()}"  # refused: never started
    body = 't:\n-minhosts: 2\n{a0}: "sleep 0.2"\n{a1}: "sleep 0.2"\n{a2}: "sleep 0.2"\nend\n'
    test = await run_test(parse_config(body.format(**names), "w.cfg").tests[0], options)
    assert test.status.value == "passed" and test.concurrent_window is None
    # How the two that ran overlapped, said beside it (the document's window is all's).
    line = text.window_line(test)
    assert line.startswith("the 3 hosts never all ran together; the 2 of 3 commands released did")
    assert re.search(r"did for 0\.\d{3} s \(\d+\.\d % of the longest command\)$", line)


@pytest.mark.posix
@pytest.mark.timeout(60)
async def test_a_host_lost_mid_run_still_ran_together_with_the_others(agents, token):
    # Issue 18 point 16: "the 3 hosts never all ran together" after one agent's SIGTERM,
    # although all three had run together until then.
    with start_agent(token.path) as doomed:
        body = 't:\n-minhosts: 2\n{a0}: "sleep 3"\n{a1}: "sleep 3"\n{a2}: "sleep 3"\nend\n'
        names = {"a0": f"127.0.0.1:{agents[0].port}", "a1": f"127.0.0.1:{agents[1].port}"}
        names["a2"] = f"127.0.0.1:{doomed.port}"
        watch = HostWatch()
        options = RunOptions(token=token.token, connect_timeout=3.0)
        spec = parse_config(body.format(**names), "w.cfg").tests[0]
        running = asyncio.create_task(run_test(spec, options, watch))
        await watch.host_started(2)
        await asyncio.sleep(1.0)
        doomed.send_stop(signal.SIGTERM)
        test = await asyncio.wait_for(running, 30)
    gone = test.hosts[2].commands[0]
    assert gone.status is CommandStatus.LOST and gone.lost_at is not None
    window = test.concurrent_window
    assert window is not None and window.at_least and window.end == gone.lost_at
    assert window.seconds > 0.5
    assert text.window_line(test).startswith("all 3 hosts ran together for at least ")
