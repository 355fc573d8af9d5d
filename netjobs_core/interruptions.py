"""How long a cut to a host really lasted, and whose silence it was.

`Hearing`: when the host was last heard. A live agent answers every heartbeat, so a gap
in what arrives longer than two heartbeats is a silence, even when a few late bytes
(held by a cut path, or sent by an agent that woke) end it just before the connection
closes: the interruption began with the last bytes before that silence.

`LoopStalls`: this controller's own event loop, seen by a task that wakes every
heartbeat. When it wakes late, the loop did not run (the controller was stopped, its
machine suspended, a blocking call): the silence was ours, not the host's. Measured on
a clock that counts a suspend (CLOCK_BOOTTIME where there is one), as the agent's
watchdog leaves its own stalls out of the controller's silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STALL_S = 0.1  # a wake this late means the loop did not run; less is the loop's jitter


def _clock() -> float:
    """Seconds on a clock that goes on while the machine sleeps, where there is one."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if boottime is None else time.clock_gettime(boottime)


@dataclass
class Hearing:
    """When the host was heard, on the `now_ns` clock."""

    gap_ns: float  # a longer gap between arrivals is a silence: two heartbeats
    last_ns: int = 0  # the latest arrival
    silence: tuple[int, int] = (0, 0)  # the latest silence: its last arrival, the next

    def heard(self, at_ns: int) -> None:
        if self.last_ns and at_ns - self.last_ns > self.gap_ns:
            self.silence = (self.last_ns, at_ns)
        self.last_ns = max(self.last_ns, at_ns)

    def silent_since(self, now_ns: int) -> int:
        """When the silence behind a loss noticed at `now_ns` began: the last bytes heard,
        or those before a silence that late bytes ended only just before (0: never heard)."""
        before, after = self.silence
        if after and now_ns - after <= self.gap_ns:
            return before
        return self.last_ns

    def restart(self, at_ns: int) -> None:
        """A resumed connection: what came before it is the interruption's, not the next."""
        self.last_ns, self.silence = at_ns, (0, 0)


@dataclass
class LoopStalls:
    """How late this process's loop ran a task that sleeps between `expect` and `woke`."""

    _due: float | None = None
    _latest: tuple[float, float] = (0.0, 0.0)  # the latest stall: when it ended, how long

    def expect(self, seconds: float) -> None:
        self._due = _clock() + seconds

    def woke(self) -> None:
        if self._due is not None:
            late = _clock() - self._due
            if late >= STALL_S:
                self._latest = (_clock(), late)
        self._due = None

    def within(self, seconds: float) -> float:
        """The longest stall that ended in the last `seconds`, or the one still going on
        (the task has not woken yet); 0.0 when none."""
        now = _clock()
        ended, late = self._latest
        found = late if ended and now - ended <= seconds else 0.0
        if self._due is not None:
            found = max(found, now - self._due)
        return found if found >= STALL_S else 0.0
