"""How results look on a terminal: the end-of-test report and the live -v display."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from netjobs_core import text
from netjobs_core.events import Event, TestStarted
from netjobs_core.fold import fold, groups, said_once
from netjobs_core.metrics import fleet_figure
from netjobs_core.outputs import SHOW_BYTES, Output
from netjobs_core.repeats import repeat_stats, repetition_groups
from netjobs_core.results import CommandResult, HostResult, RunResult, TestResult, TestStatus
from netjobs_core.verdict import ABORTED, aborted_text
from netjobs_core.vocabulary import command_word, word

# rich draws the live displays only (a terminal's): imported by them, not by a run whose
# output goes to a file or a pipe (~25 ms of a cold start's CPU).
if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live
    from rich.table import Table

__all__ = [
    "LiveTable",
    "ProgressLine",
    "format_repeats",
    "format_run",
    "format_summary",
    "format_test",
]


def _command_line(host: HostResult, command: CommandResult) -> str:
    """A command's line, under its host's (which names the host)."""
    parts = [command_word(command.status, command.exit_code)]
    parts.extend(text.command_details(command, host.address))
    return f"    {', '.join(parts)}: {command.command}"


def _host_line(host: HostResult, test: TestResult) -> str:
    line = f"  {host.target}  {word(host.state)}"
    if host.error:
        line += f" ({text.beside_host(host.error, host.address)})"
    if host.rtt_ms is not None:
        line += f"  {text.host_line_numbers(host)}"
    if host.start_offset_ms is not None:
        line += f", started {text.ms(host.start_offset_ms, True)} {text.started_from(test)}"
    return line


def _interruptions(host: HostResult, named: bool) -> list[str]:
    """Each cut of the host's connection, with its cause and how long it lasted."""
    who = f"{host.target}: " if named else ""
    return [f"    {who}{line}" for line in text.interruptions(host)]


def _output(name: str, output: Output, show: int) -> list[str]:
    return [f"      {name}: {line}" for line in text.output_excerpt(output, show)]


def _folded(test: TestResult, show: int) -> list[str]:
    """Hosts in the same state, and commands that ended alike with the same output
    (netjobs_core.fold), once each."""
    lines = []
    for alike in groups(test.hosts, lambda h: h.state):
        lines.extend(_folded_hosts(alike, test))
    for group in fold(test):
        command, commands = group.command, group.commands
        parts = [command_word(command.status, command.exit_code)]
        if any(c.duration_s is not None for c in commands):
            parts.append(f"ran {text.span((c.duration_s for c in commands), text.seconds)}")
        # A message that only repeats its host's error (said on the host's line) is left out.
        messages = [
            (h, text.beside_host(c.message, h.address))  # the line names its hosts
            for h, c in group.pairs
            if c.message and c.message != h.error
        ]
        parts.extend(_said(message, test.reason) for _, message in said_once(messages))
        lines.append(
            f"  {text.members(group.targets)}: {', '.join(parts)}: "
            f"{text.command_lines(group.command_lines)}"
        )
        lines.extend(f"      {line}" for line in _folded_files(commands))
        lines.extend(_output("stdout", command.stdout, show))
        lines.extend(_output("stderr", command.stderr, show))
    return lines


def _said(message: str, reason: str) -> str:
    """A host's or a command's message, without the test's abort reason: its head says
    it. A host that was fine says `test aborted: REASON`, a command killed for it the
    bare REASON: both read `test aborted`."""
    if not reason:
        return message
    if message == reason:
        return ABORTED
    return message.replace(aborted_text(reason), ABORTED)


def _folded_hosts(alike: Sequence[HostResult], test: TestResult) -> list[str]:
    """Hosts in one state, those with the same error (but for their own names) once."""
    reason = test.reason
    lines = []
    for hosts, error in said_once((h, text.beside_host(h.error, h.address)) for h in alike):
        line = f"  {text.members([h.target for h in hosts])}  {word(hosts[0].state)}"
        if error:
            line += f" ({_said(error, reason)})"
        numbers = []
        if any(h.rtt_ms is not None for h in hosts):
            numbers.append(f"rtt {text.span((h.rtt_ms for h in hosts), text.ms)}")
        if any(h.start_offset_ms is not None for h in hosts):
            offsets = text.span((h.start_offset_ms for h in hosts), lambda v: text.ms(v, True))
            numbers.append(f"started {offsets} {text.started_from(test)}")
        lines.append("  ".join([line, ", ".join(numbers)]) if numbers else line)
        for host in hosts:
            lines.extend(_interruptions(host, named=True))
    return lines


def _folded_files(group: Sequence[CommandResult]) -> list[str]:
    """One command's collected files in full; a group's as one line (paths: the JSON),
    then each of their warnings once."""
    if len(group) == 1:
        return text.file_lines(group[0])
    files = [item for command in group for item in command.collected]
    warnings = dict.fromkeys(
        warning for command in group for warning in text.command_warnings(command)
    )
    lines = [text.collected_summary(files)] if files else []
    return lines + [f"warning: {text.printable(w)}" for w in warnings]


def verdict_line(test: TestResult) -> str:
    """`test 'fio' (repetition 2): FAILED (1 command failed)`: a report's first line."""
    head = f"{text.test_title(test)}: {word(test.status).upper()}"
    return f"{head} ({test.reason})" if test.reason else head


def format_summary(test: TestResult) -> str:
    """-q: a test's verdict line and its metrics' lines, nothing else."""
    return "\n".join([verdict_line(test), *_metric_lines(test)])


def _metric_lines(test: TestResult) -> list[str]:
    return [f"  {text.metric_line(name, s)}" for name, s in test.metrics.items()]


def format_test(test: TestResult, fold: bool = False, show: int = SHOW_BYTES) -> str:
    """The report of one test; `fold`: as `clush -b` (hosts with the same outcome once);
    of each output at most `show` bytes (its head and tail)."""
    lines = [verdict_line(test)]
    lines.extend(f"  {line}" for line in text.start_lines(test))
    if (credentials := text.credentials_line(test.hosts)) is not None:
        lines.append(f"  {credentials}")
    if (shared := text.shared_beside_host_credentials(test.hosts)) is not None:
        lines.append(f"  {shared}")
    if fold:
        lines.extend(_folded(test, show))
    else:
        for host in test.hosts:
            lines.append(_host_line(host, test))
            lines.extend(_interruptions(host, named=False))
            for command in host.commands:
                lines.append(_command_line(host, command))
                lines.extend(f"      {line}" for line in text.file_lines(command))
                lines.extend(_output("stdout", command.stdout, show))
                lines.extend(_output("stderr", command.stderr, show))
    lines.extend(_metric_lines(test))
    return "\n".join(lines)


def format_repeats(group: Sequence[TestResult]) -> str | None:
    """The summary of a test's repetitions (`--repeat`); None for a test run once."""
    if len(group) < 2 and (not group or group[0].repetition is None):
        return None
    group = [test for test in group if test.status is not TestStatus.PENDING]  # ran
    if not group:
        return None
    lines = [text.repeat_summary(repeat_stats(group))]
    figures: dict[str, list[float]] = {}
    for test in group:
        for name, summary in test.metrics.items():
            figures.setdefault(name, []).append(fleet_figure(name, summary))
    lines.extend(
        f"  {text.metric_repeats_line(name, found, len(group))}" for name, found in figures.items()
    )
    return "\n".join(lines)


def format_run(run: RunResult, fold: bool = False) -> str:
    """A whole run as its reports showed it (`netjobs show`)."""
    lines = [f"run {run.run_id or 'n/a'} of {run.config_path or 'untitled'}"]
    if run.started_at is not None:
        lines[0] += f", started {text.timestamp(run.started_at, 'seconds')}"
    for group in repetition_groups(run.tests):
        # As the live report: the repetitions run, their summary, then those not run
        # (said as the run ended: console.TerminalDisplay.not_run).
        ran = [test for test in group if test.status is not TestStatus.PENDING]
        lines.extend(format_test(test, fold) for test in ran)
        summary = format_repeats(group)
        if summary is not None:
            lines.append(summary)
        lines.extend(format_test(test, fold) for test in group if test.status is TestStatus.PENDING)
    lines.append(text.run_summary(run))
    return "\n".join(lines)


class _LiveDisplay:
    """A display rich's Live redraws in place while a test runs (at its refresh rate,
    not per event), then erases so that the test's report prints in its place."""

    refresh_per_second = 4.0

    def __init__(self, file: TextIO | None = None) -> None:
        from rich.console import Console

        self._test: TestResult | None = None
        self._console = Console(file=file if file is not None else sys.stderr)
        self._live: Live | None = None

    def _render(self) -> RenderableType:
        raise NotImplementedError

    def observe(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.finish_test()
            self._test = event.test
            from rich.live import Live

            # A fresh Live per test: a restarted one would redraw over the lines
            # printed since.
            self._live = Live(
                get_renderable=self._render,
                console=self._console,
                refresh_per_second=self.refresh_per_second,
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


class ProgressLine(_LiveDisplay):
    """Without -v on a terminal: the running test in one line (text.live_progress),
    its elapsed time counting."""

    def _render(self) -> RenderableType:
        from rich.text import Text

        test = self._test
        # Text, not markup: a label's "[bold]" shows as written.
        return Text(text.printable(text.live_progress(test, time.time()) if test else ""))


class LiveTable(_LiveDisplay):
    """-v on a terminal: one row per host under the progress line, with how long its
    commands have run and how long it has been in its state."""

    refresh_per_second = 8.0

    def __init__(self, file: TextIO | None = None) -> None:
        super().__init__(file)
        self._changed: dict[int, tuple[str, float]] = {}  # id(host): its state, since

    def _in_state(self, host: HostResult, now: float) -> str:
        state, since = self._changed.get(id(host), ("", now))
        if state != host.state:
            self._changed[id(host)] = (host.state, now)
            since = now
        return text.clock(now - since)

    def _render(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        test = self._test
        now = time.time()
        title = text.live_progress(test, now) if test else "netjobs"
        table = Table(title=Text(text.printable(title)), expand=False)
        columns = ("host", "state", "in state", "rtt", "wall clock", "start offset")
        for column in (*columns, "elapsed", "done", "output"):
            table.add_column(column)
        if test is not None:
            for host in test.hosts:
                done = sum(c.status.finished for c in host.commands)
                size = sum(len(c.stdout) + len(c.stderr) for c in host.commands)
                cells = (
                    str(host.address),
                    word(host.state)
                    + (f": {text.beside_host(host.error, host.address)}" if host.error else ""),
                    self._in_state(host, now),
                    text.ms(host.rtt_ms),
                    text.ms(host.wall_clock_offset_ms, True),
                    text.ms(host.start_offset_ms, True),
                    text.host_elapsed(host, now),
                    f"{done}/{len(host.commands)}",
                    text.size(size),
                )
                # Text, not markup: a peer's "[bold]" or escape sequence shows as written.
                table.add_row(*(Text(text.printable(cell)) for cell in cells))
        return table

    def finish_test(self) -> None:
        super().finish_test()
        self._changed.clear()
