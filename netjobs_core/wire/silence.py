"""A peer's silence, not counting this process's own stalls (standard library only).

A peer is silent when nothing came from it for a window. While this process's event
loop is stalled (a blocking call, a process starved of CPU or stopped), what the peer
sends waits in the socket, and the deadline fires as the loop wakes: asyncio runs the
expired timer before the task that the arriving bytes woke, so a plain timeout calls
the peer silent with its bytes already read. Here a deadline that fires late gives the
peer as long again as the loop was late; only a punctual deadline ends the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# A deadline at least this late means the loop was stalled when it fired; less is the
# loop's usual jitter (epoll waits in whole milliseconds).
LOOP_STALL_S = 0.005


class PeerSilent(Exception):
    """Nothing came for the window, during which this process's loop was responsive."""


async def receive_within(receive: Callable[[], Awaitable[T]], window: float) -> T:
    """RECEIVE()'s result, or PeerSilent after WINDOW seconds of this loop's own
    responsive time without one. RECEIVE must be safe to cancel and call again (a
    stream's read is: what was read stays buffered). A TimeoutError that RECEIVE
    raises itself (ETIMEDOUT from a socket) is passed on."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with asyncio.timeout(window) as deadline:
                return await receive()
        except TimeoutError:
            if not deadline.expired():
                raise
        when = deadline.when()
        late = loop.time() - when if when is not None else 0.0
        if late < LOOP_STALL_S:
            raise PeerSilent(f"nothing received for {window:g} s")
        window = late
