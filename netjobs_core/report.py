"""How results look on a terminal: the end-of-test report and the live -v display."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from netjobs_core import text
from netjobs_core.events import Event, TestStarted
from netjobs_core.results import CommandResult, HostResult, TestResult
from netjobs_core.vocabulary import command_word, word

__all__ = ["LiveTable", "format_test"]


def _command_line(command: CommandResult) -> str:
    parts = [command_word(command.status, command.exit_code), *text.command_details(command)]
    return f"    {', '.join(parts)}: {command.command}"


def _host_line(host: HostResult) -> str:
    line = f"  {host.target}  {word(host.state)}"
    if host.error:
        line += f" ({host.error})"
    if host.rtt_ms is not None:
        line += f"  {text.host_line_numbers(host)}"
    if host.start_offset_ms is not None:
        line += f", started {text.ms(host.start_offset_ms, True)} from the common start"
    return line


def _output(name: str, data: bytearray) -> list[str]:
    return [f"      {name}: {line}" for line in text.output_lines(data)]


def format_test(test: TestResult) -> str:
    head = f"test {test.label!r}: {word(test.status).upper()}"
    if test.reason:
        head += f" ({test.reason})"
    lines = [head]
    if test.start_spread_ms is not None:
        lines.append(
            f"  start spread {text.spread(test)} ({test.start_mode.value} start, "
            f"{text.count(sum(len(h.commands) for h in test.hosts), 'command')} on "
            f"{text.count(len(test.hosts), 'host')})"
        )
    for host in test.hosts:
        lines.append(_host_line(host))
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
        title = Text(text.printable(f"test {test.label!r}" if test else "netjobs"))
        table = Table(title=title, expand=False)
        for column in ("host", "state", "rtt", "wall clock", "start offset", "done", "output"):
            table.add_column(column)
        if test is not None:
            for host in test.hosts:
                done = sum(c.status.finished for c in host.commands)
                size = sum(len(c.stdout) + len(c.stderr) for c in host.commands)
                cells = (
                    str(host.address),
                    word(host.state) + (f": {host.error}" if host.error else ""),
                    text.ms(host.rtt_ms),
                    text.ms(host.wall_clock_offset_ms, True),
                    text.ms(host.start_offset_ms, True),
                    f"{done}/{len(host.commands)}",
                    text.size(size),
                )
                # Text, not markup: a peer's "[bold]" or escape sequence shows as written.
                table.add_row(*(Text(text.printable(cell)) for cell in cells))
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
