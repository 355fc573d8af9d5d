"""The concurrent window: how long every command of a test was running at once.

Computed on the controller's clock from each command's release (`started_at`) and
run time (`duration_s`): the window opens at the last release and closes at the
first end. A command without both (never started, lost, its host unreachable)
leaves no window: nobody can say the load ran everywhere at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from netjobs_core.results import CommandResult, ConcurrentWindow, TestResult

__all__ = ["concurrent_window", "window_of"]


def concurrent_window(commands: Iterable[CommandResult]) -> ConcurrentWindow | None:
    """The interval every one of `commands` was running; None when there is none."""
    spans = []
    for command in commands:
        if command.started_at is None or command.duration_s is None:
            return None
        spans.append((command.started_at, command.started_at + command.duration_s))
    if not spans:
        return None
    start = max(begin for begin, _ in spans)
    end = min(stop for _, stop in spans)
    longest = max(stop - begin for begin, stop in spans)
    if end <= start or longest <= 0:
        return None
    seconds = end - start
    return ConcurrentWindow(start, end, seconds, min(1.0, seconds / longest))


def window_of(test: TestResult) -> ConcurrentWindow | None:
    """Over every command of every host of `test`."""
    return concurrent_window(c for host in test.hosts for c in host.commands)
