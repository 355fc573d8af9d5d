"""What the repetitions of one test add up to (`--repeat N`): the release spread's and
the exec spread's median and maximum, the concurrent window's minimum."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from netjobs_core.results import ConcurrentWindow, TestResult

__all__ = ["RepeatStats", "repeat_stats", "repetition_groups"]


@dataclass(frozen=True)
class RepeatStats:
    label: str
    repetitions: int
    spread_median_ms: float | None  # over the repetitions that measured one
    spread_max_ms: float | None
    spreads: int  # how many repetitions measured a spread
    window_min: ConcurrentWindow | None  # the shortest; None when one had no window at all
    without_window: int  # repetitions whose commands never all ran together
    exec_median_ms: float | None = None  # the commands' exec spread, likewise
    exec_max_ms: float | None = None
    execs: int = 0  # how many repetitions measured when every command began


def repetition_groups(tests: Sequence[TestResult]) -> Iterator[list[TestResult]]:
    """Consecutive repetitions of one test, in run order (a test run once: a group of 1)."""
    group: list[TestResult] = []
    for test in tests:
        if group and (
            test.label != group[-1].label or test.repetition is None or test.repetition == 1
        ):
            yield group
            group = []
        group.append(test)
    if group:
        yield group


def repeat_stats(group: Sequence[TestResult]) -> RepeatStats:
    spreads = [t.start_spread_ms for t in group if t.start_spread_ms is not None]
    execs = [t.exec_spread_ms for t in group if t.exec_spread_ms is not None]
    windows = [t.concurrent_window for t in group]
    present = [w for w in windows if w is not None]
    missing = len(windows) - len(present)
    return RepeatStats(
        label=group[0].label,
        repetitions=len(group),
        spread_median_ms=statistics.median(spreads) if spreads else None,
        spread_max_ms=max(spreads) if spreads else None,
        spreads=len(spreads),
        exec_median_ms=statistics.median(execs) if execs else None,
        exec_max_ms=max(execs) if execs else None,
        execs=len(execs),
        window_min=None if missing or not present else min(present, key=lambda w: w.seconds),
        without_window=missing,
    )
