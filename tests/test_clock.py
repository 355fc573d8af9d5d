import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netjobs_core.clock_offset import NoUsableSamples, Sample, estimate_offset, usable


def simulate(
    offset: int, n: int, seed: int, out_jitter=(20_000, 400_000), back_jitter=(20_000, 400_000)
):
    """Pings over a path whose two directions each take a random, positive time."""
    rng = random.Random(seed)
    samples, now = [], 1_000_000_000
    for _ in range(n):
        sent = now
        arrive = sent + rng.randint(*out_jitter)
        back = arrive + rng.randint(*back_jitter)
        samples.append(Sample(sent, arrive + offset, back))
        now = back + 10_000
    return samples


def test_single_exact_sample():
    estimate = estimate_offset([Sample(100, 1_000_150, 200)])
    assert estimate.offset_ns == 1_000_000
    assert estimate.uncertainty_ns == 50
    assert estimate.rtt_ns == 100


@pytest.mark.parametrize("offset", [0, 5_000_000_000, -123_456_789])
def test_bound_holds_and_estimate_close(offset):
    for seed in range(20):
        estimate = estimate_offset(simulate(offset, 16, seed))
        assert abs(estimate.offset_ns - offset) <= estimate.uncertainty_ns
        assert estimate.uncertainty_ns < 400_000


def test_outliers_do_not_move_the_estimate():
    samples = simulate(7_000, 16, 1, (50_000, 60_000), (50_000, 60_000))
    # Two pings stuck in queues for milliseconds, in one direction only.
    samples[3] = Sample(
        samples[3].sent, samples[3].sent + 9_000_000 + 7_000, samples[3].sent + 9_100_000
    )
    samples[9] = Sample(
        samples[9].sent, samples[9].sent + 50_000 + 7_000, samples[9].sent + 8_000_000
    )
    estimate = estimate_offset(samples)
    assert abs(estimate.offset_ns - 7_000) < 10_000


def test_conversions_are_inverse():
    estimate = estimate_offset([Sample(0, 5_000_050, 100)])
    assert estimate.to_controller(estimate.to_agent(123_456)) == 123_456


def test_no_samples():
    with pytest.raises(ValueError):
        estimate_offset([])
    with pytest.raises(ValueError):
        estimate_offset([Sample(10, 5, 0)])


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(-(10**12), 10**12),
    legs=st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), min_size=1, max_size=40),
)
def test_truth_always_within_the_reported_bound(offset, legs):
    samples, now = [], 0
    for out, back in legs:
        samples.append(Sample(now, now + out + offset, now + out + back))
        now += out + back + 1
    estimate = estimate_offset(samples)
    assert abs(estimate.offset_ns - offset) <= estimate.uncertainty_ns + 1e-6


# -- the agent's two stamps (NTP's four) ------------------------------------------------
def test_the_time_an_agent_held_a_ping_is_no_part_of_its_round_trip():
    # 20 µs each way, held 5 ms by the agent (its CPU was busy), offset 3 ms.
    sample = Sample(0, 3_000_000 + 5_020_000, 5_040_000, agent_received=3_000_000 + 20_000)
    assert sample.held == 5_000_000
    assert sample.rtt == 40_000
    assert sample.offset == 3_000_000
    estimate = estimate_offset([sample])
    assert estimate.offset_ns == 3_000_000 and estimate.uncertainty_ns == 20_000


def test_without_an_arrival_stamp_the_agent_is_taken_to_answer_at_once():
    assert Sample(100, 1_000_150, 200).held == 0
    assert Sample(100, 1_000_150, 200).offset == Sample(100, 1_000_150, 200, None, 1_000_150).offset


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(-(10**12), 10**12),
    pings=st.lists(
        st.tuples(
            st.integers(5_000, 100_000),  # the way there
            st.integers(0, 20_000_000),  # held by the agent
            st.integers(5_000, 100_000),  # the way back
        ),
        min_size=1,
        max_size=16,
    ),
)
def test_holding_never_breaks_the_bound(offset, pings):
    samples, now = [], 0
    for there, held, back in pings:
        arrived = now + there
        answered = arrived + held
        samples.append(Sample(now, answered + offset, answered + back, None, arrived + offset))
        now = answered + back + 1_000
    estimate = estimate_offset(samples)
    assert abs(estimate.offset_ns - offset) <= estimate.uncertainty_ns + 1
    assert estimate.uncertainty_ns <= 100_000  # holding widened nothing


# -- impossible samples (issue 18, points 9 and 13) ------------------------------------
def stamped_pings(offset: int, shift: int, n: int = 8) -> list[Sample]:
    """Honest pings (20 µs each way, held 5 µs) whose arrival stamps are off by `shift`."""
    samples, now = [], 1_000_000_000
    for _ in range(n):
        arrived, answered = now + 20_000, now + 25_000
        stamp = arrived + shift + offset
        samples.append(Sample(now, answered + offset, answered + 20_000, None, stamp))
        now += 100_000
    return samples


def test_an_arrival_stamp_after_the_answer_is_not_used():
    # A hostile pong: `received` two hours after its `clock` (a negative hold) once
    # made a 7200 s round trip, and the common start was scheduled hours ahead.
    samples = stamped_pings(offset=3_000_000, shift=7_200 * 10**9)
    assert samples[0].held < 0 and not samples[0].stamp_possible
    estimate = estimate_offset(samples)
    assert estimate.rtt_ns == 45_000  # the round trip on our clock, the hold in it
    assert abs(estimate.offset_ns - 3_000_000) <= estimate.uncertainty_ns <= 22_500


def test_a_hold_longer_than_the_round_trip_is_not_used():
    # An agent under `faketime -f +37s`: its clock 37 s ahead, the kernel's arrival
    # stamps not, so it seems to have held every ping 37 s of a 45 µs round trip.
    # Every sample was dropped ("no usable clock samples"), the whole run with it.
    samples = stamped_pings(offset=37 * 10**9, shift=-37 * 10**9)
    assert samples[0].held > samples[0].received - samples[0].sent
    estimate = estimate_offset(samples)
    assert estimate.rtt_ns == 45_000
    assert abs(estimate.offset_ns - 37 * 10**9) <= estimate.uncertainty_ns <= 22_500


def test_one_impossible_stamp_discredits_all_of_that_agents_stamps():
    # A stamp 30 µs early cannot be seen in a sample alone (the hold fits the round
    # trip), 50 µs can: once one is impossible, none is used, and the bound holds.
    samples = stamped_pings(offset=0, shift=-30_000)
    assert all(s.stamp_possible for s in samples)
    samples[3] = stamped_pings(offset=0, shift=-50_000)[3]
    estimate = estimate_offset(samples)
    assert estimate.rtt_ns == 45_000
    assert abs(estimate.offset_ns) <= estimate.uncertainty_ns


def test_no_usable_sample_says_so():
    with pytest.raises(NoUsableSamples, match=r"no usable clock samples \(2 pongs, each back"):
        estimate_offset([Sample(10, 5, 0), Sample(20, 15, 10, None, 14)])
    assert issubclass(NoUsableSamples, ValueError)
    assert usable([Sample(10, 5, 0)]) == []


def test_clock_readings_that_fit_no_one_offset_are_no_measurement():
    """A hostile agent's pongs an hour apart in turn: each sample is a fine interval
    alone, but no offset is in all of them. No bound would be true: not measured."""
    samples = [
        Sample(k * 1000, k * 1000 + 50 + (-1) ** k * 3600 * 10**9, k * 1000 + 100)
        for k in range(1, 9)
    ]
    with pytest.raises(NoUsableSamples, match="fit no one clock offset"):
        estimate_offset(samples)


def test_arrival_stamps_that_fit_no_one_offset_together_are_not_used():
    """Each stamp possible alone (held within the round trip), together in no one offset
    (a wall-clock step between a stamp and its read): measured as without stamps."""
    samples = [
        Sample(0, 5_000_090, 100, agent_received=5_000_080),
        Sample(200, 5_000_210, 300, agent_received=5_000_120),
    ]
    assert [s.stamp_possible for s in samples] == [True, True]
    estimate = estimate_offset(samples)  # was 4 999 975 +- 65: in neither stamped interval
    assert (estimate.offset_ns, estimate.uncertainty_ns) == (5_000_000, 10)
