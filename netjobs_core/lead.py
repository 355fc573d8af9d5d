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

What a host reports is checked as it comes (host_run: an arrival before the start was
sent or after the report of it reached the controller fails that host), but a host
may be slow, or say it is: the lead then follows it, up to the cap, and a host whose
figures alone asked at least SET_BY_FACTOR times the lead the others needed is named
with its figure (`Lead.host`), in the report and in results.json.
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
SET_BY_FACTOR = 2  # a host that asked this many times the others' lead is named


def default_lead_ns(rtt_ns: float, hosts: int) -> float:
    """Far enough to reach every host (one-way ~ rtt/2, with room for jitter and for
    writing to every host), and for an agent to wake from its coarse sleep."""
    return BASE_NS + 3 * rtt_ns + PER_HOST_NS * hosts


@dataclass
class _Seen:
    transit_ns: deque[float] = field(default_factory=lambda: deque(maxlen=MEMORY))
    late_ns: deque[float] = field(default_factory=lambda: deque(maxlen=MEMORY))


@dataclass(frozen=True)
class Lead:
    """A test's lead, and the host whose figures set it (None: no one host did), with
    FIGURE ("rtt": its round trip; "transit": the longest its start took to reach it
    in its last starts), FIGURE_NS, and OTHERS_NS: the lead the other hosts needed."""

    ns: float
    host: Address | None = None
    figure: str = ""
    figure_ns: float = 0.0
    others_ns: float = 0.0


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

    def _need(self, address: Address, rtt_ns: float, hosts: int) -> tuple[float, str, float]:
        """The lead one host needs among HOSTS, and the figure that sets it."""
        need = (default_lead_ns(rtt_ns, hosts), "rtt", rtt_ns)
        seen = self._seen.get(address)
        if seen is not None and seen.transit_ns:
            transit = max(seen.transit_ns)
            wake = self.wake_ns(address) or COARSE_WAKE_NS
            need = max(need, (2 * transit + wake + PER_HOST_NS * hosts, "transit", transit))
        return need

    def lead(self, hosts: Iterable[tuple[Address, float]], cap_ns: float) -> Lead:
        """The lead for HOSTS (address, round trip ns), at most CAP_NS."""
        hosts = list(hosts)
        if self.fixed_ns is not None:
            return Lead(min(self.fixed_ns, cap_ns))
        floor = default_lead_ns(0.0, len(hosts))  # what a host with no figures needs
        needs = sorted((self._need(address, rtt, len(hosts)), address) for address, rtt in hosts)
        if not needs:
            return Lead(min(floor, cap_ns))
        (top, figure, value), address = needs[-1]
        others = max([floor, *(need for (need, _, _), _ in needs[:-1])])
        lead = min(max(top, floor), cap_ns)
        if top < SET_BY_FACTOR * others:
            return Lead(lead)
        return Lead(lead, address, figure, value, others)
