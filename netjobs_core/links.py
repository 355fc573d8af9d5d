"""The run's authenticated links to its agents, kept from one test to the next.

A host's link that ends its test at a boundary (the agent's `finished` read,
nothing prepared, nothing unread) is kept here instead of closed; the host's
next test in the run takes it and goes straight to its clock pings and its
`prepare`: no TCP connection, no handshake, no new agent over SSH. The agent's
per-test state is its run's, which ends with `finished`; the session (its keys,
its frame counters) goes on. Whatever else ends a test on a host (a failure, a
cut, an abort) closes its link as before, and its next test connects anew.

A kept link the agent closed meanwhile (its idle limit, a restart) is found out
by the next test's first read: with nothing heard on it since it was taken, the
host connects anew (host_run.HostRun.measure). After each test the run closes,
each with a `bye`, the links of hosts no later test has (`retire`): the agent
keeps a finished run's output spooled until its session moves on to another test
or ends, so a host done with the run frees it at once; the rest at the run's end
(run.Run: once its results are written; an agent over SSH ends with the run's SSH
connection to its host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from netjobs_core.client import AgentLink
from netjobs_core.wire.address import Address


class Links:
    """Idle links by address, for the run's next tests; at most one an address."""

    def __init__(self) -> None:
        self._idle: dict[Address, AgentLink] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._idle)

    def __contains__(self, address: object) -> bool:
        return address in self._idle

    def take(self, address: Address) -> AgentLink | None:
        """The kept link to ADDRESS, now the caller's; None when there is none (or it
        is closed already)."""
        link = self._idle.pop(address, None)
        if link is not None and not link.authenticated:
            link.abort()
            return None
        return link

    def keep(self, link: AgentLink) -> bool:
        """Keep LINK for the next test on its host when it is at a boundary; False:
        it is not (the caller closes it)."""
        if not link.at_boundary or link.address in self._idle:
            return False
        self._idle[link.address] = link
        return True

    def retire(self, addresses: Iterable[Address]) -> None:
        """Close the kept links to ADDRESSES (no later test has them), each with a
        `bye`, meanwhile: the next test need not wait for them."""
        for address in addresses:
            link = self._idle.pop(address, None)
            if link is not None:
                task = asyncio.create_task(link.close(), name=f"bye {address}")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Say `bye` on every kept link and close it (each within its close timeout);
        wait for those `retire` is closing too."""
        idle, self._idle = list(self._idle.values()), {}
        closing = [*self._closing, *(asyncio.ensure_future(link.close()) for link in idle)]
        if closing:
            await asyncio.gather(*closing)
