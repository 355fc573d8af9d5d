"""bench/start_spread.py's interval for a row's ratio to the floor: rounds drawn whole."""

from script_modules import BENCH, load_script

start_spread = load_script(BENCH / "start_spread.py", "netjobs_bench_start_spread")
Sample = start_spread.Sample


def rows(mode, spreads, *, ok=True, discarded=False):
    found = []
    for repeat, spread in enumerate(spreads):
        sample = Sample(2, False, mode, repeat, ok=ok, stamps_spread_ms=spread)
        sample.discarded = discarded
        found.append(sample)
    return found


def test_a_row_twice_the_floor_in_every_round_is_twice_it_without_doubt():
    floor = rows(start_spread.FLOOR_DIRECT, [0.01 * (1 + r % 7) for r in range(40)])
    row = rows("scheduled", [2 * s.stamps_spread_ms for s in floor])
    low, high = start_spread.ratio_interval(row, floor)
    assert low == high == 2.0


def test_noisy_rounds_give_an_interval_that_holds_the_ratio_and_is_wide():
    spreads = [0.005, 0.040, 0.012, 0.090, 0.020] * 8
    floor = rows(start_spread.FLOOR_DIRECT, spreads)
    row = rows("scheduled", list(reversed(spreads)))  # the same values, other rounds
    low, high = start_spread.ratio_interval(row, floor)
    assert low < 1.0 < high
    assert high / low > 1.5
    # Seeded: the same figures, the same interval.
    assert start_spread.ratio_interval(row, floor) == (low, high)


def test_rounds_are_paired_by_repeat_and_only_counted_ones_are_drawn():
    floor = rows(start_spread.FLOOR_DIRECT, [0.01] * 12)
    row = rows("scheduled", [0.03] * 12)
    # The floor's failed and discarded tests of other rounds are not rounds in common.
    floor[10].ok = False
    floor[11].discarded = True
    assert start_spread.ratio_interval(row, floor) == (3.0, 3.0)
    # Below ten rounds in common, no interval.
    assert start_spread.ratio_interval(row[:9], floor) is None


def test_a_floor_of_zero_gives_no_interval():
    floor = rows(start_spread.FLOOR_DIRECT, [0.0] * 20)
    row = rows("scheduled", [0.01] * 20)
    assert start_spread.ratio_interval(row, floor) is None


def test_the_floor_table_prints_the_interval_beside_the_ratio():
    floor = rows(start_spread.FLOOR_DIRECT, [0.010] * 20)
    row = rows("scheduled", [0.015] * 20)
    options = start_spread.Options.__new__(start_spread.Options)
    lines = start_spread.floor_table(floor + row, options)
    scheduled = next(line for line in lines if "| scheduled |" in line)
    assert "1.50× (+5 µs; 1.50-1.50×)" in scheduled
    own = next(line for line in lines if f"| {start_spread.FLOOR_DIRECT} |" in line)
    assert "1.00× (+0 µs)" in own  # no interval against itself
