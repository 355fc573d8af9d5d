"""How numbers and summaries read, for the terminal, the logs and the GUI alike.

Qt-free and rich-free: every unit is written here, once. A missing value reads
`n/a` unless the caller (a GUI table cell) passes its own placeholder.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from netjobs_core.config import Plan
from netjobs_core.results import CommandResult, RunResult, TestResult
from netjobs_core.vocabulary import Status, word

NA = "n/a"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 test`, `2 tests`."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def ms(value: float | None, signed: bool = False, none: str = NA) -> str:
    """Milliseconds, 3 decimals (`+0.400 ms`); from 1000 ms on, seconds (`2.500 s`)."""
    if value is None:
        return none
    sign = "+" if signed else ""
    if abs(value) >= 1000:
        return f"{value / 1000:{sign}.3f} s"
    return f"{value:{sign}.3f} ms"


def ms_pm(
    value: float | None, uncertainty: float | None, signed: bool = False, none: str = NA
) -> str:
    """A value with its bound, both with their unit: `0.591 ms ± 0.162 ms`."""
    if value is None:
        return none
    text = ms(value, signed)
    if uncertainty is not None:
        text += f" ± {ms(uncertainty)}"
    return text


def spread(test: TestResult, none: str = NA) -> str:
    """A test's start spread with its uncertainty bound."""
    return ms_pm(test.start_spread_ms, test.start_spread_uncertainty_ms, none=none)


def seconds(value: float | None, none: str = NA) -> str:
    """A measured duration to the millisecond: `12.345 s`."""
    return none if value is None else f"{value:.3f} s"


def duration(value: float | None, none: str = NA) -> str:
    """A duration at a glance: `1.500 s`, `12.3 s`, `1m 15.0s`, `2h 03m 04s`."""
    if value is None:
        return none
    if value < 60:
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)}m {secs:04.1f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h {int(minutes):02d}m {int(secs):02d}s"


def timeout(value: float | None) -> str:
    """A configured timeout, as the config could write it: `300s`, `none`."""
    return "none" if value is None else f"{value:g}s"


def size(n: int) -> str:
    """`512 B`, `1.5 KiB`, `3.2 MiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def timestamp(epoch: float | None, timespec: str = "microseconds") -> str:
    """ISO 8601 local time with its UTC offset, for the logs and progress lines:
    `2025-03-01T14:02:11.123456+01:00`."""
    if epoch is None:
        return NA
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec=timespec)


def time_of_day(epoch: float) -> str:
    """`14:02:11.123` (local time)."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f"{epoch % 1:.3f}"[1:]


# C0 controls but tab and newline, DEL, and C1: what a terminal acts on.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """`line` safe for a terminal: each control character but tab and newline as
    its escape (`\\x1b`), so that a peer's text cannot move the cursor or clear
    the screen. Only for what is shown: the files keep the exact bytes."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", line)


def tally(statuses: Iterable[Status]) -> str:
    """`2 running, 1 done`: how many of each, in the order they first appear."""
    return ", ".join(f"{n} {word(status)}" for status, n in Counter(statuses).items())


def progress(test: TestResult) -> tuple[int, int]:
    """(finished commands, all commands) of one test."""
    commands = [c for h in test.hosts for c in h.commands]
    return sum(c.status.finished for c in commands), len(commands)


def commands_finished(test: TestResult) -> str:
    done, total = progress(test)
    return f"{done}/{total} commands finished"


def summary_parts(test: TestResult) -> list[str]:
    """The parts of a test's summary line after its label and status."""
    parts = [commands_finished(test), count(len(test.hosts), "host")]
    if test.start_spread_ms is not None:
        parts.append(f"start spread {spread(test)}")
    if test.duration_s is not None:
        parts.append(f"took {duration(test.duration_s)}")
    return parts


def run_summary(run: RunResult) -> str:
    """`1 test passed`, `3 tests passed`, `1 failed, 1 passed`, `no test ran`."""
    if not run.tests:
        return "no test ran"
    if run.passed:
        return f"{count(len(run.tests), 'test')} passed"
    return tally(test.status for test in run.tests)


class ClockFigures(Protocol):
    """What a host's clock measurement left (a HostResult, a HostCheck)."""

    rtt_ms: float | None
    clock_uncertainty_ms: float | None
    wall_clock_offset_ms: float | None


def wall_clock(host: ClockFigures) -> str:
    """`wall clock +37.002 s ± 0.100 ms`: the agent's wall clock minus ours, as NTP/chrony
    users compare clocks (the monotonic offset that scheduling uses is not for reading)."""
    if host.wall_clock_offset_ms is None:
        return "wall clock not reported by the agent"
    return f"wall clock {ms_pm(host.wall_clock_offset_ms, host.clock_uncertainty_ms, signed=True)}"


def host_line_numbers(host: ClockFigures) -> str:
    """`rtt 0.123 ms, wall clock +0.010 ms ± 0.050 ms` (empty before the clock is measured)."""
    if host.rtt_ms is None:
        return ""
    return f"rtt {ms(host.rtt_ms)}, {wall_clock(host)}"


def command_details(command: CommandResult) -> list[str]:
    """What the report and the log say after a command's status: its run time, its message."""
    parts = []
    if command.duration_s is not None:
        parts.append(f"ran {seconds(command.duration_s)}")
    if command.message:
        parts.append(command.message)
    return parts


def output_lines(data: bytes | bytearray) -> list[str]:
    """A command's output as lines (no trailing empty one); what is not UTF-8 escaped."""
    if not data:
        return []
    return bytes(data).decode("utf-8", "backslashreplace").removesuffix("\n").split("\n")


def plan_summary(plan: Plan) -> list[str]:
    """What a run of this plan would do, for the dry run (-s, the GUI's Dry Run)."""
    lines = [f"{plan.path}: {count(len(plan.tests), 'test')}"]
    for spec in plan.tests:
        hosts = count(len(spec.addresses), "host")
        need = "all" if spec.minhosts is None else str(spec.minhosts)
        lines.append(
            f"test {spec.label!r} (line {spec.line}): {count(len(spec.commands), 'command')} "
            f"on {hosts}, -minhosts {need} ({spec.required_hosts} must stay up), "
            f"-generaltimeout {timeout(spec.general_timeout)}"
        )
        for command in spec.commands:
            lines.append(
                f"  {command.target}: {command.command!r}  timeout {timeout(command.timeout)}"
                f"  (line {command.line})"
            )
        lines.append(
            f"  would connect to {hosts}, measure their clocks, prepare every command, "
            "start all at one scheduled instant"
        )
    return lines
