"""The concurrent window: how long every command of a test was running at once.

Computed on the controller's clock from each command's release (`started_at`) and
run time (`duration_s`): the window opens at the last release and closes at the
first end. A command lost with its host ran at least until it was lost (`lost_at`):
that is its end as far as anyone knows, so a window that closes there is a lower
bound (`at_least`). A command without a release, or without an end it is known to
have reached (never started, lost before anyone knew when, its host unreachable),
leaves no window: nobody can say the load ran everywhere at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from netjobs_core.results import CommandResult, ConcurrentWindow, TestResult

__all__ = ["concurrent_window", "window_of"]


def _known_end(command: CommandResult) -> tuple[float, bool] | None:
    """(when the command is known to have run until, whether it may have run longer)."""
    if command.started_at is None:
        return None
    if command.duration_s is not None:
        return command.started_at + command.duration_s, False
    if command.lost_at is not None:
        return command.lost_at, True
    return None


def concurrent_window(commands: Iterable[CommandResult]) -> ConcurrentWindow | None:
    """The interval every one of `commands` was running; None when there is none."""
    spans = []
    for command in commands:
        known = _known_end(command)
        if command.started_at is None or known is None:
            return None
        spans.append((command.started_at, *known))
    if not spans:
        return None
    start = max(begin for begin, _, _ in spans)
    end, open_ended = min((stop, later) for _, stop, later in spans)
    longest = max(stop - begin for begin, stop, _ in spans)
    if end <= start or longest <= 0:
        return None
    seconds = end - start
    return ConcurrentWindow(start, end, seconds, min(1.0, seconds / longest), open_ended)


def window_of(test: TestResult) -> ConcurrentWindow | None:
    """Over every command of every host of `test`."""
    return concurrent_window(c for host in test.hosts for c in host.commands)
