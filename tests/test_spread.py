"""The start spread and its bound, from plain numbers."""

import pytest

from netjobs_core.spread import HostReleases, start_spread


def test_nothing_released_yet_is_no_spread():
    assert start_spread([], 1_000) is None
    assert start_spread([HostReleases([], 50_000)], None) is None


def test_spread_is_latest_minus_earliest_over_every_command():
    common = 1_000_000_000
    spread = start_spread(
        [
            HostReleases([common + 200_000, common + 900_000], 10_000),
            HostReleases([common - 100_000], 30_000),
            HostReleases([common + 400_000], 20_000),
        ],
        common,
    )
    assert spread is not None
    assert spread.spread_ms == pytest.approx(1.0)  # -0.1 ms .. +0.9 ms
    # Each host's first release against the instant they were all given.
    assert spread.start_offsets_ms == pytest.approx([0.2, -0.1, 0.4])


def test_bound_is_the_two_widest_clock_bounds():
    """Two hosts can err in opposite directions; a third adds nothing worse."""
    spread = start_spread(
        [HostReleases([0.0], 10_000), HostReleases([5.0], 162_000), HostReleases([9.0], 429_000)],
        None,
    )
    assert spread is not None
    assert spread.uncertainty_ms == pytest.approx(0.591)


def test_one_host_errs_only_with_itself():
    """All commands on one clock: whatever its offset error, it shifts them all alike."""
    spread = start_spread([HostReleases([100.0, 600_100.0], 900_000)], 0)
    assert spread is not None
    assert spread.spread_ms == pytest.approx(0.6)
    assert spread.uncertainty_ms == 0.0
    assert spread.start_offsets_ms == pytest.approx([0.0001])


def test_without_a_common_start_offsets_count_from_the_first_release():
    spread = start_spread([HostReleases([3_000_000.0], 1), HostReleases([1_000_000.0], 1)], None)
    assert spread is not None
    assert spread.start_offsets_ms == pytest.approx([2.0, 0.0])


def test_a_host_with_no_release_yet_has_no_offset_and_no_bound():
    spread = start_spread([HostReleases([0.0], 10_000), HostReleases([], 500_000)], 0)
    assert spread is not None
    assert spread.start_offsets_ms == [0.0, None]
    assert spread.uncertainty_ms == 0.0
