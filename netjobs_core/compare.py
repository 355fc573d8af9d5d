"""Two results of a test side by side: its start spread and concurrent window in each,
and every host's outcome, start offset and run time in each, with the hosts whose
outcome differs marked. Facts only; netjobs_core.text words them."""

from __future__ import annotations

from dataclasses import dataclass

from netjobs_core.results import HostResult, TestResult
from netjobs_core.vocabulary import command_said, word

__all__ = ["HostPair", "TestComparison", "compare"]


def _outcome(host: HostResult | None) -> str:
    """A host's outcome in the words of the GUI's views (`ok (exit 0)`, `killed (exit
    -15 (SIGTERM))`), or its state when it ran none; "" when not in the test."""
    if host is None:
        return ""
    words = [command_said(c.status, c.exit_code) for c in host.commands]
    return ", ".join(words) if words else word(host.state)


def _longest(host: HostResult | None) -> float | None:
    if host is None:
        return None
    runs = [c.duration_s for c in host.commands if c.duration_s is not None]
    return max(runs) if runs else None


@dataclass(frozen=True)
class HostPair:
    target: str
    outcome_a: str  # "" when the host was not in A
    outcome_b: str
    offset_a_ms: float | None
    offset_b_ms: float | None
    ran_a_s: float | None  # its longest command's run time
    ran_b_s: float | None

    @property
    def differs(self) -> bool:
        return self.outcome_a != self.outcome_b

    @property
    def offset_change_ms(self) -> float | None:
        if self.offset_a_ms is None or self.offset_b_ms is None:
            return None
        return self.offset_b_ms - self.offset_a_ms


@dataclass(frozen=True)
class TestComparison:
    __test__ = False
    a: TestResult
    b: TestResult
    hosts: tuple[HostPair, ...]  # A's hosts in A's order, then those only in B

    @property
    def differing(self) -> tuple[HostPair, ...]:
        return tuple(pair for pair in self.hosts if pair.differs)


def compare(a: TestResult, b: TestResult) -> TestComparison:
    in_a = {h.target: h for h in a.hosts}
    in_b = {h.target: h for h in b.hosts}
    targets = list(in_a) + [t for t in in_b if t not in in_a]
    pairs = []
    for target in targets:
        host_a, host_b = in_a.get(target), in_b.get(target)
        pairs.append(
            HostPair(
                target,
                _outcome(host_a),
                _outcome(host_b),
                host_a.start_offset_ms if host_a else None,
                host_b.start_offset_ms if host_b else None,
                _longest(host_a),
                _longest(host_b),
            )
        )
    return TestComparison(a, b, tuple(pairs))
