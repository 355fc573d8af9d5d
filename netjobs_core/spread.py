"""The start spread: how far apart the commands of one test were released.

This is the product's headline number, so it is computed here from plain
numbers alone. Release instants are on the controller's clock (ns), converted
from each agent's clock with that host's offset estimate; the estimate's bound
is what the spread may be off by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostReleases:
    """One host's releases in a test, on the controller's clock."""

    released_ns: Sequence[float]  # one per command released so far
    uncertainty_ns: float  # the bound of this host's clock offset estimate


@dataclass(frozen=True)
class Spread:
    spread_ms: float  # latest release minus earliest, over every command of every host
    uncertainty_ms: float  # how far the true spread may differ from spread_ms
    start_offsets_ms: list[float | None]  # per host: first release minus the common start


def start_spread(hosts: Sequence[HostReleases], common_start_ns: float | None) -> Spread | None:
    """The spread of the releases so far; None before the first release.

    `common_start_ns` is the instant every host was told to release at (scheduled
    mode); without one (sequential mode) offsets count from the earliest release.
    """
    instants = [at for host in hosts for at in host.released_ns]
    if not instants:
        return None
    first = min(instants)
    common = first if common_start_ns is None else common_start_ns
    # Hosts on one clock share their error, but two hosts can err in opposite
    # directions: the two widest bounds add up; one host alone errs with itself.
    bounds = sorted((h.uncertainty_ns for h in hosts if h.released_ns), reverse=True)
    uncertainty = sum(bounds[:2]) if len(bounds) > 1 else 0.0
    return Spread(
        spread_ms=(max(instants) - first) / 1e6,
        uncertainty_ms=uncertainty / 1e6,
        start_offsets_ms=[
            (min(h.released_ns) - common) / 1e6 if h.released_ns else None for h in hosts
        ],
    )
