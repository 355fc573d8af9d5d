"""The clocks both sides read: the system-wide monotonic clock the protocol
schedules by, and the wall clock users compare. No I/O; stdlib only (the agent's).

How a controller estimates an agent's clock from ping-pong samples of these is in
netjobs_core/clock_offset.py (the agent never estimates: it only reads).
"""

from __future__ import annotations

import time


def now_ns() -> int:
    """The clock both controller and agent measure with (system-wide monotonic)."""
    return time.perf_counter_ns()


def wall_ns() -> int:
    """The wall clock (what NTP sets), in ns since the epoch."""
    return time.time_ns()


def wall_anchor_ns(reads: int = 5) -> float:
    """This machine's wall clock minus `now_ns`, from the tightest of a few paired reads."""
    best: tuple[int, float] | None = None
    for _ in range(reads):
        before = now_ns()
        wall = wall_ns()
        after = now_ns()
        if best is None or after - before < best[0]:
            best = (after - before, wall - (before + after) / 2)
    assert best is not None
    return best[1]
