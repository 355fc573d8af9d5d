"""How far ahead the common start goes, learned from how the hosts kept it.

A scheduled start sends every host the same instant, `lead` ahead of now. Too short,
and a host gets its `start` after the instant or wakes too late for it: its commands
start late. Too long only costs waiting. The first test of a run takes a fixed
formula of its round trips (`default_lead_ns`). Each start then teaches, per host
(agents that report it, `Started.ahead_ns`): how long the start took to reach it
under its present load (the lead minus how far ahead of the instant it arrived),
and how late it released. The next lead covers the slowest host's transit twice
plus its wake-up margin, and that host is told to wake earlier by what it lost
(Start.wake), within the bounds below; `--lead` fixes it instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from netjobs_core.wire.address import Address

BASE_NS = 15_000_000  # room for an agent to leave its coarse sleep, on a quiet host
PER_HOST_NS = 200_000  # writing the start to one more host
COARSE_WAKE_NS = 3_000_000  # the agent's own margin (agent.oskit.coarse_wake_margin_ns)
MAX_WAKE_NS = 50_000_000  # the most we ask an agent to wake early (agent.jobs caps it so)
MEMORY = 5  # the last starts of a host that count


def default_lead_ns(rtt_ns: float, hosts: int) -> float:
    """Far enough to reach every host (one-way ~ rtt/2, with room for jitter and for
    writing to every host), and for an agent to wake from its coarse sleep."""
    return BASE_NS + 3 * rtt_ns + PER_HOST_NS * hosts


@dataclass
class _Seen:
    transit_ns: deque[float] = field(default_factory=lambda: deque(maxlen=MEMORY))
    late_ns: deque[float] = field(default_factory=lambda: deque(maxlen=MEMORY))


class LeadPolicy:
    """The lead of each test of a run, and the wake margin of each host."""

    def __init__(self, fixed_ns: float | None = None) -> None:
        self.fixed_ns = fixed_ns  # --lead
        self._seen: dict[Address, _Seen] = {}

    def observe(
        self, address: Address, lead_ns: float, ahead_ns: int | None, late_ns: float | None
    ) -> None:
        """What one start showed of a host: it came AHEAD_NS before the instant (None:
        an agent that does not say), and its latest release was LATE_NS after it."""
        seen = self._seen.setdefault(address, _Seen())
        if ahead_ns is not None:
            seen.transit_ns.append(max(0.0, lead_ns - ahead_ns))
        if late_ns is not None:
            seen.late_ns.append(max(0.0, late_ns))

    def wake_ns(self, address: Address) -> int | None:
        """How early the host should leave its coarse sleep (None: its own margin)."""
        seen = self._seen.get(address)
        if seen is None or not seen.late_ns or max(seen.late_ns) <= 0:
            return None
        return int(min(MAX_WAKE_NS, COARSE_WAKE_NS + 2 * max(seen.late_ns)))

    def lead_ns(self, hosts: Iterable[tuple[Address, float]], cap_ns: float) -> float:
        """The lead for HOSTS (address, round trip ns), at most CAP_NS."""
        hosts = list(hosts)
        if self.fixed_ns is not None:
            return min(self.fixed_ns, cap_ns)
        worst_rtt = max((rtt for _, rtt in hosts), default=0.0)
        lead = default_lead_ns(worst_rtt, len(hosts))
        for address, _ in hosts:
            seen = self._seen.get(address)
            if seen is None or not seen.transit_ns:
                continue
            wake = self.wake_ns(address) or COARSE_WAKE_NS
            lead = max(lead, 2 * max(seen.transit_ns) + wake + PER_HOST_NS * len(hosts))
        return min(lead, cap_ns)
