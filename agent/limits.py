"""Bounds on what unauthenticated peers can cost the agent: connections, fds, log lines.

- `Caps` / `Gate`: at most `unauthenticated` connections before authentication (and
  `per_source` from one address); a new one beyond a cap closes the oldest such
  connection of the address that holds the most (a real handshake takes milliseconds,
  so the oldest of the busiest address is the likeliest attacker, and a flood mostly
  evicts itself). Authenticated sessions never count against these caps and are never
  evicted; the total cap (below the fd limit) keeps room for them.
- The fd limit itself (raised at start) is netjobs_core/wire/fd_limits.py's, shared
  with the controller.
- `LogLimiter`: a few lines per source and interval, then one "N more suppressed" line.
- `shown`: a peer-supplied string as it may appear in the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import NamedTuple

PEER_TEXT_LIMIT = 200  # characters of a peer's string kept in a log line
MAX_TRACKED_SOURCES = 4096  # LogLimiter: beyond this many sources in an interval, just count


def shown(value: object, limit: int = PEER_TEXT_LIMIT) -> str:
    """VALUE as repr (no raw newline or control character can forge a log line), truncated."""
    return clip(repr(value), limit)


def clip(text: str, limit: int = PEER_TEXT_LIMIT) -> str:
    """TEXT cut to LIMIT characters (for messages that quote a peer's strings with !r)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


# -- connection caps --------------------------------------------------------------
class Caps(NamedTuple):
    total: int  # all connections: stays below the fd limit
    unauthenticated: int = 64
    per_source: int = 8

    @classmethod
    def for_fd_limit(cls, soft: int | None) -> Caps:
        """Leave a quarter of the fds (at least 32) to runs' pipes, logs and the loop;
        unauthenticated peers may take at most half of the rest."""
        if soft is None:
            return cls(total=4096)
        total = max(8, soft - max(32, soft // 4))
        return cls(total=total, unauthenticated=max(2, min(64, total // 2)))


class Gate:
    """Counts connections; tells which one to close when a new one comes in over a cap."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._pending: dict[Hashable, str] = {}  # unauthenticated -> source, oldest first
        self._sources: Counter[str] = Counter()
        self._authenticated: set[Hashable] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def authenticated(self) -> int:
        return len(self._authenticated)

    def admit(self, conn: Hashable, source: str) -> tuple[bool, Hashable | None]:
        """(admitted, the connection to close to make room for it, if any)."""
        caps = self.caps
        victim: Hashable | None = None
        if self._sources[source] >= caps.per_source:
            victim = next(c for c, s in self._pending.items() if s == source)
        elif self._pending and (
            len(self._pending) >= caps.unauthenticated
            or len(self._pending) + len(self._authenticated) >= caps.total
        ):
            # The oldest from the source holding the most: a flood evicts itself, not
            # the handshake of a controller from elsewhere.
            most = max(self._sources.values())
            victim = next(c for c, s in self._pending.items() if self._sources[s] == most)
        elif len(self._authenticated) >= caps.total:
            return False, None  # full of authenticated sessions: their room is theirs
        if victim is not None:
            self.left(victim)
        self._pending[conn] = source
        self._sources[source] += 1
        return True, victim

    def promote(self, conn: Hashable) -> None:
        """CONN authenticated: it no longer counts against the unauthenticated caps."""
        if self._forget_pending(conn):
            self._authenticated.add(conn)

    def left(self, conn: Hashable) -> None:
        self._forget_pending(conn)
        self._authenticated.discard(conn)

    def _forget_pending(self, conn: Hashable) -> bool:
        source = self._pending.pop(conn, None)
        if source is None:
            return False
        self._sources[source] -= 1
        if not self._sources[source]:
            del self._sources[source]
        return True


# -- log lines --------------------------------------------------------------------
class LogLimiter:
    """At most `per_key` lines per key and `total` lines in all per `interval` seconds;
    the rest are counted and summed up in one line when the interval is over."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        per_key: int = 10,
        total: int = 50,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.per_key = per_key
        self.total = total
        self.interval = interval
        self.clock = clock
        self._start = clock()
        self._lines = 0
        self._counts: Counter[str] = Counter()
        self._suppressed = 0
        self._suppressed_keys: set[str] = set()

    def log(self, key: str, level: int, msg: str, *args: object) -> None:
        self.tick()
        if not self.logger.isEnabledFor(level):
            return
        known = key in self._counts or len(self._counts) < MAX_TRACKED_SOURCES
        if known and self._counts[key] < self.per_key and self._lines < self.total:
            self._counts[key] += 1
            self._lines += 1
            self.logger.log(level, msg, *args)
            return
        self._suppressed += 1
        if len(self._suppressed_keys) < MAX_TRACKED_SOURCES:
            self._suppressed_keys.add(key)

    def tick(self) -> None:
        """End the interval if it is over (also called by a timer, so a summary of a
        flood that stopped still appears)."""
        now = self.clock()
        if now - self._start < self.interval:
            return
        if self._suppressed:
            sources = len(self._suppressed_keys)
            self.logger.warning(
                "%d more %s suppressed in the last %.0f s (%s%d source%s)",
                self._suppressed,
                self.what,
                now - self._start,
                "at least " if sources >= MAX_TRACKED_SOURCES else "",
                sources,
                "" if sources == 1 else "s",
            )
        self._start = now
        self._lines = 0
        self._counts.clear()
        self._suppressed = 0
        self._suppressed_keys.clear()
