"""What the controller learns of an agent before running anything on it:
connect and authenticate, measure the clock, ask its status. `netjobs check`,
the GUI's Check hosts and every test run do it the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netjobs_core.client import AgentError, AgentLink
from netjobs_core.wire.clock import OffsetEstimate, Sample, estimate_offset
from netjobs_core.wire.protocol import Message

MIN_CLOCK_TIMEOUT_S = 5.0  # sixteen pings on a slow link outlast a short connect timeout


@dataclass(frozen=True)
class ClockPolicy:
    """How each host's clock is measured: back-to-back pings (an idle pause between
    them wakes CPUs and adds noise), until the estimate has settled.

    Fast paths take turns, `batch` hosts at a time (one set of turns per event loop,
    shared by every probe on it, checks and runs alike): pongs of several hosts
    arriving at once delay our reading of each and bias its offset (~0.5 ms with 32
    loopback hosts at once, ~0.01 ms one at a time; on a 2-CPU machine with the
    agents on it, 2 at a time already doubled the worst error: bench/scale.py), so
    the default is one at a time. A slow path (first round trip above
    `slow_path_ns`) lets its turn go after that ping: its pongs are sparse, its
    bound is wide anyway.

    A host is measured once it has `min_pings` and either its uncertainty is within
    `tight_ns`, or the last `patience` pings did not shrink it by a tenth (more
    pings would not tell more) and it is within half the fastest round trip seen on
    the loop; at most after `max_pings`. With fewer than 10 the worst host's error
    grew 2-3x on a loaded 2-CPU machine, and on a quiet one stopping at 10 still
    doubled it at 200 hosts without saving time (bench/scale.py, docs/performance.md):
    the default takes all 16.
    """

    batch: int = 1
    min_pings: int = 16
    max_pings: int = 16
    tight_ns: int = 20_000
    patience: int = 4
    slow_path_ns: int = 2_000_000


DEFAULT_CLOCK = ClockPolicy()
# NetJobs 3.0's measurement: 16 pings, strictly one host at a time (bench/scale.py).
STRICT_TURNS = ClockPolicy(batch=1, min_pings=16, max_pings=16)

_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def clock_turn(batch: int) -> asyncio.Semaphore:
    """The turns of this event loop: at most `batch` fast paths measured at once."""
    loop = asyncio.get_running_loop()
    turns = _turns.setdefault(loop, {})
    turn = turns.get(batch)
    if turn is None:
        turn = turns[batch] = asyncio.Semaphore(batch)
    return turn


def settled(samples: Sequence[Sample], policy: ClockPolicy, floor_ns: float) -> bool:
    """Enough pings for an estimate that more pings would not tighten.

    `floor_ns`: the fastest round trip any host has shown on this event loop. A
    stalled estimate is only good enough within half of it (what the best ping
    anywhere bounds): a host whose pings all met a busy moment goes on (up to
    `max_pings`) rather than keep a wide bound.
    """
    count = len(samples)
    if count < policy.min_pings:
        return False
    if count >= policy.max_pings:
        return True
    uncertainty = estimate_offset(samples).uncertainty_ns
    if uncertainty <= policy.tight_ns:
        return True
    if count <= policy.patience or uncertainty > floor_ns / 2:
        return False
    earlier = estimate_offset(samples[: count - policy.patience]).uncertainty_ns
    return uncertainty > 0.9 * earlier


# The fastest round trip seen on each event loop, by any host (see `settled`).
_floors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()


def _floor_with(sample: Sample) -> float:
    loop = asyncio.get_running_loop()
    floor = min(_floors.get(loop, float("inf")), sample.rtt)
    _floors[loop] = floor
    return floor


async def measure_clock(link: AgentLink, policy: ClockPolicy, timeout: float) -> OffsetEstimate:
    """Ping until settled; `timeout` bounds the pinging, not the wait for a turn
    (with 1000 hosts the last one waits seconds, each holder at most `timeout`)."""
    samples: list[Sample] = []
    try:
        async with clock_turn(policy.batch):
            async with asyncio.timeout(timeout) as deadline:
                samples.append(await link.ping())
                floor = _floor_with(samples[0])
                while samples[0].rtt < policy.slow_path_ns and not settled(samples, policy, floor):
                    samples.append(await link.ping())
                    floor = _floor_with(samples[-1])
        async with asyncio.timeout_at(deadline.when()):
            while not settled(samples, policy, floor):
                samples.append(await link.ping())
                floor = _floor_with(samples[-1])
    except TimeoutError:
        raise AgentError(f"clock measurement took longer than {timeout:g} s") from None
    return estimate_offset(samples)


@dataclass(frozen=True)
class AgentProbe:
    estimate: OffsetEstimate
    version: str
    hostname: str
    platform: str
    busy: bool
    label: str  # of the test it runs when busy, else ""


async def probe(
    link: AgentLink,
    timeout: float,
    on_connected: Callable[[], None] | None = None,
    policy: ClockPolicy = DEFAULT_CLOCK,
) -> AgentProbe:
    """Connect `link` (left open for the caller), measure, ask; raises AgentError.

    `on_connected` runs once the agent is authenticated, before the measurement.
    """
    await link.connect(timeout)
    if on_connected is not None:
        on_connected()
    estimate = await measure_clock(link, policy, timeout=max(MIN_CLOCK_TIMEOUT_S, timeout))
    status = await link.request(Message("status"), "status", timeout)
    return AgentProbe(
        estimate=estimate,
        version=status["version"],
        hostname=status["hostname"],
        platform=status["platform"],
        busy=status["busy"],
        label=status.get("label") or "",
    )
