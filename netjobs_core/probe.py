"""What the controller learns of an agent before running anything on it:
connect and authenticate, measure the clock, ask its status. `netjobs check`,
the GUI's Check hosts and every test run do it the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from netjobs_core.client import AgentLink
from netjobs_core.wire.clock import OffsetEstimate
from netjobs_core.wire.protocol import Message

SYNC_PINGS = 16
MIN_CLOCK_TIMEOUT_S = 5.0  # sixteen pings on a slow link outlast a short connect timeout

# One clock turn per event loop, shared by every probe on it (checks and runs
# alike): see AgentLink.measure_clock for why fast paths take turns.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def clock_turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = asyncio.Lock()
    return turn


@dataclass(frozen=True)
class AgentProbe:
    estimate: OffsetEstimate
    version: str
    hostname: str
    platform: str
    busy: bool
    label: str  # of the test it runs when busy, else ""


async def probe(
    link: AgentLink, timeout: float, on_connected: Callable[[], None] | None = None
) -> AgentProbe:
    """Connect `link` (left open for the caller), measure, ask; raises AgentError.

    `on_connected` runs once the agent is authenticated, before the measurement.
    """
    await link.connect(timeout)
    if on_connected is not None:
        on_connected()
    estimate = await link.measure_clock(
        SYNC_PINGS, timeout=max(MIN_CLOCK_TIMEOUT_S, timeout), turn=clock_turn()
    )
    status = await link.request(Message("status"), "status", timeout)
    return AgentProbe(
        estimate=estimate,
        version=status["version"],
        hostname=status["hostname"],
        platform=status["platform"],
        busy=status["busy"],
        label=status.get("label") or "",
    )
