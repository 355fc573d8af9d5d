"""Clock-offset estimation from ping-pong samples (the controller's: an agent only
reads its clocks, netjobs_core/wire/clock.py). Pure functions, no I/O.

A sample is (sent, agent_received, agent, received): the controller's clock
when the ping left, the agent's clock when the ping arrived and when it
answered, the controller's clock when the pong arrived (NTP's four stamps).
The time the agent held the ping is no part of the round trip, and the offset
is the mean of the two one-way differences,
`((agent_received - sent) + (agent - received)) / 2`; whatever the paths did,
the true offset lies within half the round trip of that. Both arrivals are the
kernel's stamps where it gives them (wire/rx_stamps.py), so a process that
reads late (its CPU was busy, its event loop served other hosts first) only
lengthens the round trip; an agent that sends no arrival stamp is taken to have
answered at once. Queueing delays only ever
lengthen a round trip, so the fastest samples are the most truthful: we keep
the quickest quarter and take their median offset, which also shrugs off
the odd sample skewed in one direction. The reported uncertainty is a hard
bound, not a statistic: the intersection of every sample's interval. Path
asymmetry cannot be seen by any ping-based method; it goes into the error
unseen, within the bound.

Impossible samples are never used (`usable`). An arrival stamp is impossible when
the agent says it held the ping for less than nothing or for longer than the whole
round trip on our clock: the stamp is then not on the agent's clock (an agent under
faketime shifts its own clock readings, not the kernel's stamps; a broken or hostile
agent sends what it likes), and since a stamp off by less than a round trip cannot
be seen, none of that host's stamps is trusted once one is impossible: its samples
are taken as an agent's without stamps, its answer somewhere between our ping and
its pong, which bounds the offset as surely (only more widely). Its clock, the one
it starts commands by, is not in question. So are stamps that fit no one offset
together (each possible alone: a wall-clock step between a stamp and its read). A
round trip negative even so (our own clock would have gone back) is dropped; a host
with no sample left cannot be measured (`NoUsableSamples`), nor one whose own clock
readings fit no one offset between our pings and its pongs: a monotonic clock
read between them always does, so that agent's clock jumped or it lies, and no
bound on its offset would be true.

Scheduling uses the monotonic clocks (they never step). What users compare is
the wall clocks (NTP, chrony): an agent may also stamp its wall clock in the
pong; with each side's wall-minus-monotonic difference, the wall-clock offset
follows from the monotonic one, with the same uncertainty.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    sent: int  # controller clock, ns
    agent: int  # agent clock when it answered, ns
    received: int  # controller clock, ns
    agent_wall: int | None = None  # the agent's wall clock next to `agent`, if it sent it
    agent_received: int | None = None  # agent clock when the ping arrived, if it sent it

    # Worked out once (a host's estimate is recomputed after each of its pings:
    # probe.settled); cached_property would take a lock at each first read.
    held: int = field(init=False, repr=False, compare=False)
    """How long the agent held the ping (0 if it did not say)."""
    rtt: int = field(init=False, repr=False, compare=False)
    offset: float = field(init=False, repr=False, compare=False)
    stamp_possible: bool = field(init=False, repr=False, compare=False)
    """The agent's arrival stamp can be true: it held the ping no less than nothing
    and no longer than the whole round trip (True without a stamp)."""

    def __post_init__(self) -> None:
        held = 0 if self.agent_received is None else self.agent - self.agent_received
        round_trip = self.received - self.sent
        derive = object.__setattr__  # frozen
        derive(self, "held", held)
        derive(self, "rtt", round_trip - held)
        derive(self, "offset", self.agent - held / 2 - (self.sent + self.received) / 2)
        derive(self, "stamp_possible", self.agent_received is None or 0 <= held <= round_trip)

    def unstamped(self) -> Sample:
        """This sample as from an agent that sends no arrival stamp."""
        return Sample(self.sent, self.agent, self.received, self.agent_wall)


class NoUsableSamples(ValueError):
    """Not one clock sample an estimate could use."""


def usable(samples: Sequence[Sample]) -> list[Sample]:
    """The samples an estimate may use: all of them without their arrival stamps
    if any stamp is impossible, and none whose round trip is negative."""
    if not all(s.stamp_possible for s in samples):
        samples = [s.unstamped() for s in samples]
    return [s for s in samples if s.rtt >= 0]


@dataclass(frozen=True)
class OffsetEstimate:
    offset_ns: float  # agent clock minus controller clock
    uncertainty_ns: float  # the true offset lies within +/- this (symmetric paths)
    rtt_ns: int  # fastest round trip seen
    samples: int
    agent_anchor_ns: float | None = None  # the agent's wall clock minus its clock (wall_anchor_ns)

    def wall_offset_ns(self, controller_anchor_ns: float) -> float | None:
        """Agent wall clock minus controller wall clock (same uncertainty), given the
        controller's own wall_anchor_ns; None if the agent sent no wall clock."""
        if self.agent_anchor_ns is None:
            return None
        return self.offset_ns + self.agent_anchor_ns - controller_anchor_ns

    def to_agent(self, controller_ns: float) -> int:
        return round(controller_ns + self.offset_ns)

    def to_controller(self, agent_ns: float) -> float:
        return agent_ns - self.offset_ns


def estimate_offset(samples: Sequence[Sample], keep_fraction: float = 0.25) -> OffsetEstimate:
    valid = usable(samples)
    if not valid:
        raise NoUsableSamples(
            f"no usable clock samples ({len(samples)} pongs, each back before its ping left)"
            if samples
            else "no clock samples"
        )
    low, high = _bounds(valid)
    if low > high and any(s.agent_received is not None for s in valid):
        valid = [s for s in (s.unstamped() for s in samples) if s.rtt >= 0]
        low, high = _bounds(valid)
    if low > high:
        raise NoUsableSamples(
            f"no usable clock samples (its {len(samples)} pongs fit no one clock offset: "
            "its clock jumped while it was measured, or the agent lies)"
        )
    fastest = sorted(valid, key=lambda s: s.rtt)
    keep = fastest[: max(3, round(len(fastest) * keep_fraction))]
    estimate = min(max(statistics.median(s.offset for s in keep), low), high)
    uncertainty = max(estimate - low, high - estimate)
    # The agent reads its clock, then its wall clock: a pause between the two (it was
    # preempted: milliseconds on a busy machine) only adds to their difference. The
    # median of the lower half: the smallest of two (a median of two would be their
    # mean, half of such a pause in the wall-clock offset), and of more, one that a
    # wall-clock step in one reading, either way, cannot move.
    anchors = sorted(s.agent_wall - s.agent for s in valid if s.agent_wall is not None)
    anchor = statistics.median(anchors[: (len(anchors) + 1) // 2]) if anchors else None
    return OffsetEstimate(estimate, uncertainty, fastest[0].rtt, len(valid), anchor)


def _bounds(samples: Sequence[Sample]) -> tuple[float, float]:
    """Each sample confines the true offset to within rtt/2 of its own offset (the
    agent read its clock somewhere inside the round trip); all of them hold at once,
    so the truth lies in the intersection of those intervals: its (low, high), empty
    when low > high."""
    low = max(s.offset - s.rtt / 2 for s in samples)
    high = min(s.offset + s.rtt / 2 for s in samples)
    return low, high
