"""Wall clocks as users read them, and how much measuring each host's clock takes.

The agent stamps its wall clock (time.time_ns) next to its monotonic clock in every
pong; with the controller's own wall-minus-monotonic difference, that gives the
agent's wall-clock offset, with the monotonic offset's uncertainty. A real agent runs
here under a wall clock shifted by a `sitecustomize` on its PYTHONPATH (the agent code
is unchanged: it reads time.time_ns like any program).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from agent_harness import start_agent

from netjobs_core import results_json, text
from netjobs_core.check import check_host
from netjobs_core.clock_offset import Sample, estimate_offset
from netjobs_core.config import parse_config
from netjobs_core.probe import STRICT_TURNS, ClockPolicy, settled
from netjobs_core.report import format_test
from netjobs_core.results import RunResult
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import wall_anchor_ns
from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.framing import Frame
from netjobs_core.wire.messages import SENT_BY, Pong, Role, decode

SHIFT_NS = 37_002_000_000  # the agent's wall clock runs 37.002 s ahead of ours
SITECUSTOMIZE = """\
import time
_real_time_ns = time.time_ns
time.time_ns = lambda: _real_time_ns() + {shift}
"""


# -- the estimator ------------------------------------------------------------------
def test_the_wall_offset_follows_from_the_monotonic_one():
    # Agent monotonic = ours + 5 ms; its wall clock = its monotonic + 1000 s.
    samples = [
        Sample(sent, sent + 5_000_000 + 50, sent + 100, sent + 5_000_050 + 1_000 * 10**9)
        for sent in range(0, 10_000, 1_000)
    ]
    estimate = estimate_offset(samples)
    assert estimate.offset_ns == 5_000_000 and estimate.uncertainty_ns == 50
    assert estimate.agent_anchor_ns == 1_000 * 10**9
    # Our wall clock = our monotonic + 999.9 s: the agent's wall clock is 0.1 s + 5 ms ahead.
    assert estimate.wall_offset_ns(999_900_000_000) == 105_000_000


def test_one_stepped_wall_reading_does_not_move_the_wall_offset():
    samples = [Sample(t, t + 50, t + 100, t + 50 + 7_000) for t in range(0, 5_000, 1_000)]
    samples[2] = Sample(2_000, 2_050, 2_100, 2_050 + 3_600 * 10**9)  # a step, once
    assert estimate_offset(samples).agent_anchor_ns == 7_000


def test_one_stepped_wall_reading_back_does_not_move_the_wall_offset_either():
    samples = [Sample(t, t + 50, t + 100, t + 50 + 7_000) for t in range(0, 5_000, 1_000)]
    samples[2] = Sample(2_000, 2_050, 2_100, 2_050 + 7_000 - 3_600 * 10**9)
    assert estimate_offset(samples).agent_anchor_ns == 7_000


def test_an_agent_preempted_between_its_two_clock_readings_does_not_move_the_wall_offset():
    """Two pings (a host with kernel stamps): one pong's wall clock was read 2 ms after
    its monotonic clock. A median of two would put half of that in the wall offset."""
    samples = [Sample(0, 50, 100, 50 + 7_000), Sample(1_000, 1_050, 1_100, 1_050 + 2_007_000)]
    assert estimate_offset(samples).agent_anchor_ns == 7_000


def test_an_agent_that_sends_no_wall_clock_has_no_wall_offset():
    estimate = estimate_offset([Sample(0, 50, 100)])
    assert estimate.agent_anchor_ns is None and estimate.wall_offset_ns(123.0) is None


def test_the_controller_anchor_pairs_its_two_clocks():
    first, second = wall_anchor_ns(), wall_anchor_ns()
    assert abs(first - second) < 1_000_000  # the same pair of clocks, read twice
    assert abs(first + time.perf_counter_ns() - time.time_ns()) < 10_000_000


# -- the pong ---------------------------------------------------------------------
def test_the_pong_wall_field_is_optional_and_bounded():
    agent = SENT_BY[Role.AGENT]
    wall = 1_800_000_000 * 10**9
    assert decode(Frame("pong", {"seq": 1, "clock": 5, "wall": wall}), agent).wall == wall
    older = decode(Frame("pong", {"seq": 1, "clock": 5}), agent)  # an older agent
    assert older == Pong(seq=1, clock=5, wall=None)
    for bad in (-1, 2**63, 1.5, "now"):
        with pytest.raises(ProtocolError):
            decode(Frame("pong", {"seq": 1, "clock": 5, "wall": bad}), agent)


# -- when a host's measurement has settled --------------------------------------------
def _samples(rtts: list[int]) -> list[Sample]:
    out, now = [], 0
    for rtt in rtts:
        out.append(Sample(now, now + rtt // 2, now + rtt))
        now += rtt + 1_000
    return out


def test_a_tight_estimate_stops_at_the_minimum():
    policy = ClockPolicy(min_pings=5, tight_ns=20_000)
    assert not settled(_samples([30_000] * 4), policy, 30_000)
    assert settled(_samples([30_000] * 5), policy, 30_000)  # ± 15 µs


def test_a_wide_estimate_goes_on_while_it_shrinks_and_stops_when_it_does_not():
    policy = ClockPolicy(min_pings=5, max_pings=16, tight_ns=20_000, patience=4)
    shrinking = [400_000, 300_000, 250_000, 200_000, 150_000, 120_000]
    assert not settled(_samples(shrinking), policy, 100_000)
    stalled = [100_000] * 9  # ± 50 µs from the first ping on: more would not help
    assert settled(_samples(stalled), policy, 100_000)
    assert settled(_samples([400_000 - 20_000 * i for i in range(16)]), policy, 1)  # at most 16


def test_a_stalled_estimate_wider_than_the_fastest_path_goes_on():
    # Every ping of this host met a busy moment (1 ms round trips) while others
    # showed 0.1 ms: its bound of ± 0.5 ms is not good enough to stop early.
    policy = ClockPolicy(min_pings=5, max_pings=16, tight_ns=20_000, patience=4)
    assert not settled(_samples([1_000_000] * 9), policy, 100_000)
    assert settled(_samples([1_000_000] * 16), policy, 100_000)
    assert settled(_samples([1_000_000] * 9), policy, 1_000_000)  # the path is that slow


def test_the_strict_policy_is_sixteen_pings_one_host_at_a_time():
    assert STRICT_TURNS.batch == 1
    assert not settled(_samples([10_000] * 15), STRICT_TURNS, 10_000)
    assert settled(_samples([10_000] * 16), STRICT_TURNS, 10_000)


# -- real agents --------------------------------------------------------------------
@pytest.fixture(scope="module")
def shifted_agent(token, tmp_path_factory):
    hook = tmp_path_factory.mktemp("shifted-clock")
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(shift=SHIFT_NS))
    with start_agent(token.path, env={"PYTHONPATH": str(hook)}) as agent:
        yield agent


@pytest.mark.timeout(60)
@pytest.mark.posix
async def test_check_reports_a_shifted_wall_clock(shifted_agent, agents, token):
    shifted = await check_host(Address("127.0.0.1", shifted_agent.port), token.token)
    same = await check_host(Address("127.0.0.1", agents[0].port), token.token)
    for check in (shifted, same):
        assert check.ok, check.error
        assert check.clock_uncertainty_ms is not None and check.wall_clock_offset_ms is not None
        # Both agents share our monotonic clock: 0 within the bound.
        assert abs(check.clock_offset_ms) <= check.clock_uncertainty_ms + 1e-6
    slack = 0.05  # ms: the two wall-minus-monotonic reads on each side
    assert (
        abs(shifted.wall_clock_offset_ms - SHIFT_NS / 1e6) <= shifted.clock_uncertainty_ms + slack
    )
    assert abs(same.wall_clock_offset_ms) <= same.clock_uncertainty_ms + slack
    assert text.host_line_numbers(shifted).split(", ")[1].startswith("wall clock +37.002 s ± ")


@pytest.mark.timeout(60)
@pytest.mark.posix
async def test_a_run_reports_wall_clocks_in_the_report_and_the_json(
    shifted_agent, agents, token, tmp_path: Path
):
    plan = parse_config(
        f't:\n127.0.0.1:{shifted_agent.port}: "true"\n127.0.0.1:{agents[1].port}: "true"\nend\n',
        "test.cfg",
    )
    test = await run_test(plan.tests[0], RunOptions(token=token.token, connect_timeout=3.0))
    shifted, same = test.hosts
    assert shifted.wall_clock_offset_ms is not None and same.wall_clock_offset_ms is not None
    assert abs(shifted.wall_clock_offset_ms - SHIFT_NS / 1e6) < 1.0
    assert abs(same.wall_clock_offset_ms) < 1.0
    # Scheduling keeps to the monotonic clocks: the shifted agent started with the other.
    assert test.start_spread_ms is not None and test.start_spread_ms < 100
    report = format_test(test)
    assert "wall clock +37.00" in report and "clock offset" not in report
    path = tmp_path / "results.json"
    results_json.write_json(RunResult(config_path="test.cfg", tests=[test]), path)
    hosts = json.loads(path.read_text())["tests"][0]["hosts"]
    assert abs(hosts[0]["wall_clock_offset_ms"] - SHIFT_NS / 1e6) < 1.0
    assert abs(hosts[0]["clock_offset_ms"]) < 1.0  # the monotonic one keeps its name
    loaded = results_json.load_json(path).tests[0].hosts[0]
    assert loaded.wall_clock_offset_ms == shifted.wall_clock_offset_ms
