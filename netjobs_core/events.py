"""Progress events the runner reports while a test runs (for the CLI and the GUI).

Events carry the live result objects, which the runner keeps updating; an
observer reads them and must not block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netjobs_core.results import HostResult, TestResult


@dataclass(frozen=True)
class TestStarted:
    __test__ = False
    test: TestResult


@dataclass(frozen=True)
class HostChanged:
    """A host's state, clock figures or error changed."""

    test: TestResult
    host: HostResult


@dataclass(frozen=True)
class CommandChanged:
    """A command started, or finished (its status, exit code, duration are set).
    `final`: its result is complete (its outputs, collected files and metrics read as
    it ended); only the test's end may still change it (the metrics of a large output)."""

    test: TestResult
    host: HostResult
    index: int  # into host.commands
    final: bool = False


@dataclass(frozen=True)
class CommandOutput:
    """A chunk of output; it is already appended to the command's stdout/stderr."""

    test: TestResult
    host: HostResult
    index: int
    stream: str  # "stdout" | "stderr"
    data: bytes


@dataclass(frozen=True)
class TestFinished:
    __test__ = False
    test: TestResult


Event = TestStarted | HostChanged | CommandChanged | CommandOutput | TestFinished
Observer = Callable[[Event], None]
