"""What the controller learns of an agent before running anything on it:
connect and authenticate, measure the clock, ask its status. `netjobs check`,
the GUI's Check hosts and every test run do it the same way.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netjobs_core.client import AgentError, AgentLink
from netjobs_core.clock_offset import (
    NoUsableSamples,
    OffsetEstimate,
    Sample,
    estimate_offset,
    usable,
)
from netjobs_core.wire.messages import Message, Status, StatusQuery

MIN_CLOCK_TIMEOUT_S = 5.0  # sixteen pings on a slow link outlast a short connect timeout


@dataclass(frozen=True)
class ClockPolicy:
    """How each host's clock is measured: back-to-back pings (an idle pause between
    them wakes CPUs and adds noise), until the estimate has settled.

    Pings carry the kernel's arrival stamps at both ends (wire/rx_stamps.py), so a pong
    read late, because other hosts' pongs came first or the CPU was busy, lengthens its
    round trip instead of biasing its offset. Hosts are then measured `batch` at a time
    (one set of turns per event loop, shared by every probe on it, checks and runs
    alike): on this 2-CPU machine with every agent on it, 32 at once kept the worst
    error at 200 hosts at 0.02-0.03 ms, where one at a time without stamps gave
    0.06-0.25 ms (bench/scale.py, docs/performance.md). A channel without stamps (an SSH
    channel's pipes, a platform without SO_TIMESTAMPNS), or an agent that sends none, is
    measured strictly one host at a time: there the same concurrency cost 0.1-6 ms. A
    slow path (first round trip above `slow_path_ns`) lets its turn go after that ping:
    its pongs are sparse, its bound is wide anyway.

    A host is measured once it has `min_pings` (`min_stamped` when both ends stamp every
    ping: its bound then holds whatever either process was doing) and either its
    uncertainty is within `tight_ns`, or the last `patience` pings did not shrink it by a
    tenth (more pings would not tell more) and it is within half the fastest round trip
    seen on the loop; at most after `max_pings`. Within ± 50 µs after 4 pings, every one of 200
    loopback hosts here stopped there with worst errors of 0.02 ms; at ± 30 µs a
    quarter of them went on to 16 pings for no better error (bench/scale.py).

    `kernel_stamps=False` measures as NetJobs 3.1 did (its own clock readings
    only), for comparison in the benchmark.
    """

    batch: int = 32
    min_pings: int = 4
    min_stamped: int = 2
    max_pings: int = 16
    tight_ns: int = 50_000
    patience: int = 4
    slow_path_ns: int = 2_000_000
    kernel_stamps: bool = True


DEFAULT_CLOCK = ClockPolicy()
# NetJobs 3.0 and 3.1's measurement: 16 pings, strictly one host at a time, each
# side's own clock readings (bench/scale.py compares).
STRICT_TURNS = ClockPolicy(batch=1, min_pings=16, min_stamped=16, max_pings=16, kernel_stamps=False)


@dataclass
class _LoopClocks:
    """What the probes on one event loop share: their turns (at most `batch` fast paths
    measured at once) and the fastest round trip any host has shown (see `settled`).
    Looked up once a host, not at each ping."""

    turns: dict[int, asyncio.Semaphore] = field(default_factory=dict)
    floor_ns: float = math.inf

    def turn(self, batch: int) -> asyncio.Semaphore:
        found = self.turns.get(batch)
        if found is None:
            found = self.turns[batch] = asyncio.Semaphore(batch)
        return found

    def floor_with(self, sample: Sample) -> float:
        self.floor_ns = min(self.floor_ns, _rtt(sample))
        return self.floor_ns


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClocks] = (
    weakref.WeakKeyDictionary()
)


def _loop_clocks() -> _LoopClocks:
    loop = asyncio.get_running_loop()
    found = _loops.get(loop)
    if found is None:
        found = _loops[loop] = _LoopClocks()
    return found


def settled(
    samples: Sequence[Sample],
    policy: ClockPolicy,
    floor_ns: float,
    stamped: bool = False,
    estimate: Callable[[Sequence[Sample]], OffsetEstimate] = estimate_offset,
) -> bool:
    """Enough pings for an estimate that more pings would not tighten.

    `stamped`: every sample carries both kernel stamps (`ClockPolicy.min_stamped`).
    `floor_ns`: the fastest round trip any host has shown on this event loop. A
    stalled estimate is only good enough within half of it (what the best ping
    anywhere bounds): a host whose pings all met a busy moment goes on (up to
    `max_pings`) rather than keep a wide bound. So does one without a usable sample
    yet (clock_offset.py `usable`). `estimate`: how an estimate is worked out (the
    probe's remembers each, for the next ping's check and the result).
    """
    count = len(samples)
    if count < (policy.min_stamped if stamped else policy.min_pings):
        return False
    if count >= policy.max_pings:
        return True
    uncertainty = _uncertainty(samples, estimate)
    if uncertainty <= policy.tight_ns:
        return True
    if count <= policy.patience or uncertainty > floor_ns / 2:
        return False
    earlier = _uncertainty(samples[: count - policy.patience], estimate)
    return uncertainty > 0.9 * earlier


def _uncertainty(
    samples: Sequence[Sample], estimate: Callable[[Sequence[Sample]], OffsetEstimate]
) -> float:
    try:
        return estimate(samples).uncertainty_ns
    except NoUsableSamples:
        return math.inf


def _rtt(sample: Sample) -> float:
    """The round trip of `sample` as an estimate would take it alone; inf if unusable."""
    kept = usable([sample])
    return kept[0].rtt if kept else math.inf


async def measure_clock(link: AgentLink, policy: ClockPolicy, timeout: float) -> OffsetEstimate:
    """Ping until settled; `timeout` bounds the pinging, not the wait for a turn
    (with 1000 hosts the last one waits seconds, each holder at most `timeout`).

    An agent whose arrival stamps are impossible is measured as one without stamps
    (clock_offset.py `usable`): one host at a time. Raises AgentError if not one
    sample is usable."""
    samples: list[Sample] = []
    estimates: dict[int, OffsetEstimate] = {}  # of the first N samples, by N
    shared = _loop_clocks()

    def estimate(first: Sequence[Sample]) -> OffsetEstimate:
        found = estimates.get(len(first))
        if found is None:
            found = estimates[len(first)] = estimate_offset(first)
        return found

    async def ping() -> bool:
        """One more sample; whether the samples are settled now (worked out once)."""
        samples.append(await link.ping(policy.kernel_stamps))
        floor = shared.floor_with(samples[-1])
        return settled(samples, policy, floor, stamped(), estimate)

    def fast() -> bool:
        return _rtt(samples[0]) < policy.slow_path_ns

    def stamped() -> bool:
        return link.stamped and all(s.stamp_possible for s in samples)

    batch = policy.batch if policy.kernel_stamps and link.kernel_stamps else 1
    try:
        async with shared.turn(batch):
            async with asyncio.timeout(timeout) as deadline:
                done = await ping()
                while not done and fast() and (stamped() or batch == 1):
                    done = await ping()
        if not done and fast():  # an agent without stamps
            async with shared.turn(1):
                async with asyncio.timeout(timeout) as deadline:
                    while not done:
                        done = await ping()
        if not done:  # a slow path
            async with asyncio.timeout_at(deadline.when()):
                while not done:
                    done = await ping()
    except TimeoutError:
        raise AgentError(f"clock measurement took longer than {timeout:g} s") from None
    try:
        return estimate(samples)
    except NoUsableSamples as exc:
        raise AgentError(f"clock not measured: {exc}") from None


@dataclass(frozen=True)
class AgentProbe:
    estimate: OffsetEstimate
    version: str
    hostname: str
    platform: str
    busy: bool
    label: str  # of the test it runs when busy, else ""
    realtime: bool | None = None  # releases at real-time priority; None: not said
    controller: str = ""  # whose test it runs, when busy ("": an older agent)
    kept: float | None = None  # that controller is silent: seconds its test is kept


async def connect_measured(
    link: AgentLink,
    timeout: float,
    on_connected: Callable[[], None] | None = None,
    policy: ClockPolicy = DEFAULT_CLOCK,
    along: Sequence[Message] = (),
    then: Sequence[Message] = (),
) -> OffsetEstimate:
    """Connect `link` (left open for the caller) and measure its clock; raises
    AgentError. `on_connected` runs once the agent is authenticated, before the
    measurement. ALONG and THEN: requests sent with the auth, before and behind the
    first ping (AgentLink.connect)."""
    await link.connect(timeout, along=along, ping=policy.kernel_stamps, then=then)
    if on_connected is not None:
        on_connected()
    return await measure_clock(link, policy, timeout=max(MIN_CLOCK_TIMEOUT_S, timeout))


async def probe(
    link: AgentLink,
    timeout: float,
    on_connected: Callable[[], None] | None = None,
    policy: ClockPolicy = DEFAULT_CLOCK,
) -> AgentProbe:
    """Connect `link` (left open for the caller), measure, ask; raises AgentError.
    `on_connected` runs once the agent is authenticated, before the measurement."""
    # The status query and the first ping go with our auth: no round trip of their own.
    estimate = await connect_measured(link, timeout, on_connected, policy, along=[StatusQuery()])
    # Its answer came before the first pong; an agent that did not answer is asked again.
    status = link.status or await link.request(StatusQuery(), Status, timeout)
    return AgentProbe(
        estimate=estimate,
        version=status.version,
        hostname=status.hostname,
        platform=status.platform,
        busy=status.busy,
        label=status.label or "",
        realtime=status.realtime,
        controller=status.controller or "",
        kept=status.kept,
    )
