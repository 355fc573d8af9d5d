"""A peer's silence, not counting this process's own stalls (standard library only).

A peer is silent when nothing came from it for a window. While this process's event
loop is stalled (a blocking call, a process starved of CPU or stopped), what the peer
sends waits in the socket, and the deadline fires as the loop wakes: asyncio runs the
expired timer before the task that the arriving bytes woke, so a plain timeout calls
the peer silent with its bytes already read. Here a deadline that fires late gives the
peer as long again as the loop was late; only a punctual deadline ends the wait.

One `Silence` watches all the receives of one connection with one timer, moved only
when it fires: a receive only notes its deadline. An `asyncio.timeout` per receive made
and cancelled a timer each time, a tenth of a controller's CPU per host.
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


class Silence:
    """The receives of one task from one peer, each within its window (`receive`).

    Its timer fires at the first deadline it was given; a receive begun since has
    pushed the deadline on, so it re-arms for that (a receive with a shorter window
    re-arms it at once); with nobody waiting it lapses until the next receive.
    `close` it when done: an armed timer holds it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._task: asyncio.Task[object] | None = None  # the one waiting now
        self._armed_for = 0.0  # when the timer fires
        self._silent = False  # the timer cancelled the waiting task

    async def receive(self, receive: Callable[[], Awaitable[T]], window: float) -> T:
        """RECEIVE()'s result, or PeerSilent after WINDOW seconds of this loop's own
        responsive time without one. RECEIVE must be safe to cancel and call again (a
        stream's read is: what was read stays buffered). A TimeoutError that RECEIVE
        raises itself (ETIMEDOUT from a socket) is passed on."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None and self._task is None, "one receive at a time, in a task"
        self._deadline = deadline = loop.time() + window
        if self._timer is None or deadline < self._armed_for:  # a shorter window
            self._arm(deadline)
        self._task = task
        try:
            return await receive()
        except asyncio.CancelledError:
            if self._silent:
                self._silent = False
                if task.uncancel() == 0:  # cancelled by us alone
                    raise PeerSilent(f"nothing received for {window:g} s") from None
            raise
        finally:
            self._task = None

    def _fire(self) -> None:
        self._timer = None
        if self._task is None:
            return  # nobody waits: the next receive arms it again
        assert self._loop is not None
        now = self._loop.time()
        late = now - self._deadline
        if late < 0:  # a receive since pushed the deadline on
            self._arm(self._deadline)
        elif late >= LOOP_STALL_S:  # our own stall: the peer gets as long again
            self._deadline = now + late
            self._arm(self._deadline)
        else:
            self._silent = True
            self._task.cancel()

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._armed_for = when

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def receive_within(receive: Callable[[], Awaitable[T]], window: float) -> T:
    """One receive watched on its own (`Silence.receive`)."""
    silence = Silence()
    try:
        return await silence.receive(receive, window)
    finally:
        silence.close()
