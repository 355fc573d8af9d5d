"""How a command stands: the one status vocabulary of agent, protocol and results.

The agent reports a command's end with one of the finished values; the protocol
accepts only those in an `exit` message; the controller's results use the same
enum, plus the two values a command has before it ends and LOST, which only
the controller can conclude. How each value is shown
(word, colour) is decided in one place, netjobs_core/vocabulary.py.
"""

from __future__ import annotations

import enum


class CommandStatus(enum.StrEnum):
    PENDING = "pending"  # not started yet
    RUNNING = "running"
    OK = "ok"  # exit 0
    FAILED = "failed"  # non-zero exit, or killed by a signal it did not get from us
    TIMEOUT = "timeout"  # killed at its -timeout
    KILLED = "killed"  # aborted or stopped by the user
    ERROR = "error"  # could not run: see message
    LOST = "lost"  # it ran, but its host was lost (the controller decides: not in ENDS)

    @property
    def finished(self) -> bool:
        return self not in _UNFINISHED  # a set: a tuple of members took lookups a call


_UNFINISHED = frozenset({CommandStatus.PENDING, CommandStatus.RUNNING})


ENDS = frozenset(
    status for status in CommandStatus if status.finished and status is not CommandStatus.LOST
)
