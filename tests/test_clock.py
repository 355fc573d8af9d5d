import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netjobs_core.wire.clock import Sample, estimate_offset


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
