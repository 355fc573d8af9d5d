"""How results look on a terminal: the end-of-test report and the live -v display."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.live import Live
from rich.table import Table

from netjobs_core.config import Plan
from netjobs_core.events import Event, TestStarted
from netjobs_core.results import CommandResult, HostResult, TestResult


def _ms(value: float | None, signed: bool = False, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f} ms" if signed else f"{value:.{digits}f} ms"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _command_line(command: CommandResult) -> str:
    status = command.status.value.upper()
    if command.exit_code is not None:
        status += f" exit {command.exit_code}"
    parts = [status]
    if command.duration_s is not None:
        parts.append(f"{command.duration_s:.3f} s")
    if command.message:
        parts.append(command.message)
    return f"    {', '.join(parts)}: {command.command}"


def _host_line(test: TestResult, host: HostResult) -> str:
    line = f"  {host.target}  {host.state.value}"
    if host.error:
        line += f" ({host.error})"
    if host.rtt_ms is not None:
        line += (
            f"  rtt {_ms(host.rtt_ms)}, clock offset {_ms(host.clock_offset_ms, True)} "
            f"+/- {_ms(host.clock_uncertainty_ms)}"
        )
    if host.start_offset_ms is not None:
        line += f", started {_ms(host.start_offset_ms, True)} from the common start"
    return line


def _output(name: str, data: bytearray) -> list[str]:
    if not data:
        return []
    text = bytes(data).decode("utf-8", "backslashreplace").removesuffix("\n")
    return [f"      {name}: {line}" for line in text.split("\n")]


def format_test(test: TestResult) -> str:
    head = f"test {test.label!r}: {test.status.value.upper()}"
    if test.reason:
        head += f" ({test.reason})"
    lines = [head]
    if test.start_spread_ms is not None:
        lines.append(
            f"  start spread {_ms(test.start_spread_ms)} +/- "
            f"{_ms(test.start_spread_uncertainty_ms)} ({test.start_mode.value} start, "
            f"{_count(sum(len(h.commands) for h in test.hosts), 'command')} on "
            f"{_count(len(test.hosts), 'host')})"
        )
    for host in test.hosts:
        lines.append(_host_line(test, host))
        for command in host.commands:
            lines.append(_command_line(command))
            lines.extend(_output("stdout", command.stdout))
            lines.extend(_output("stderr", command.stderr))
    return "\n".join(lines)


class LiveTable:
    """-v on a terminal: one row per host, redrawn while a test runs, then erased
    so that the test's report prints in its place."""

    def __init__(self) -> None:
        self._test: TestResult | None = None
        self._console = Console(file=sys.stderr)
        self._live: Live | None = None

    def _render(self) -> Table:
        test = self._test
        table = Table(title=f"test {test.label!r}" if test else "netjobs", expand=False)
        for column in ("host", "state", "rtt", "clock offset", "start offset", "done", "output"):
            table.add_column(column)
        if test is not None:
            for host in test.hosts:
                done = sum(c.status.finished for c in host.commands)
                size = sum(len(c.stdout) + len(c.stderr) for c in host.commands)
                table.add_row(
                    host.target,
                    host.state.value + (f": {host.error}" if host.error else ""),
                    _ms(host.rtt_ms),
                    _ms(host.clock_offset_ms, True),
                    _ms(host.start_offset_ms, True),
                    f"{done}/{len(host.commands)}",
                    f"{size} B",
                )
        return table

    def observe(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.finish_test()
            self._test = event.test
            # A fresh Live per test: a restarted one would redraw over the lines
            # printed since. Rendered at the refresh rate, not per event.
            self._live = Live(
                get_renderable=self._render,
                console=self._console,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def finish_test(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._test = None

    def close(self) -> None:
        self.finish_test()


def live_table() -> LiveTable:
    return LiveTable()


def plan_summary(plan: Plan) -> list[str]:
    """What a run of this plan would do, for the dry run (-s)."""
    lines = [f"{plan.path}: {_count(len(plan.tests), 'test')}"]
    for spec in plan.tests:
        hosts = _count(len(spec.addresses), "host")
        need = "all" if spec.minhosts is None else str(spec.minhosts)
        lines.append(
            f"test {spec.label!r} (line {spec.line}): {_count(len(spec.commands), 'command')} "
            f"on {hosts}, -minhosts {need} ({spec.required_hosts} must stay up), "
            f"-generaltimeout {_duration(spec.general_timeout)}"
        )
        for command in spec.commands:
            lines.append(
                f"  {command.target}: {command.command!r}  timeout {_duration(command.timeout)}"
                f"  (line {command.line})"
            )
        lines.append(
            f"  would connect to {hosts}, measure their clocks, prepare every command, "
            "start all at one scheduled instant"
        )
    return lines


def _duration(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds:g}s"
