"""What every table shows, how it sorts and what its filters keep: Qt-free.

Each table is a tuple of `Column`s over one row type. A column says its cell
text (from `netjobs_core.text` and `netjobs_core.vocabulary`, the one place
for words and numbers), its sort key and its colour; `models.py` only binds
them to Qt. Sort keys are `(missing, value)` tuples so that a cell with no
value ("—") sorts after every real one.

The few reads of a result's fields that other parts of the project are still
changing (its outputs) are the functions at the top: adapt them there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from netjobs_core import text
from netjobs_core.fold import fold
from netjobs_core.outputs import Output
from netjobs_core.records import RunRecord, TestRecord
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import (
    Status,
    color,
    command_word,
    exit_code_text,
    verdict_color,
    word,
)
from netjobs_core.wire.address import Address

if TYPE_CHECKING:
    from netjobs_core.check import HostCheck

NO_VALUE = "—"
Key = tuple[int, Any]


# --------------------------------------------------------------------------- reading results


def output_of(command: CommandResult, stream: str) -> Output:
    """`stream` ("stdout" or "stderr") of `command`."""
    return command.stdout if stream == "stdout" else command.stderr


def output_size(command: CommandResult, stream: str) -> int:
    """Bytes received so far on `stream` ("stdout" or "stderr")."""
    return len(output_of(command, stream))


def output_from(command: CommandResult, stream: str, start: int) -> bytes:
    """The bytes of `stream` from offset `start` on, as far as memory holds them (the
    whole output is in its spooled file: netjobs_core.outputs)."""
    return output_of(command, stream).since(start)


def whole_file(command: CommandResult, stream: str) -> Path | None:
    """The spooled file holding all of a finished command's `stream`, if there is one."""
    output = output_of(command, stream)
    if not command.status.finished or output.path is None or not output.size or output.error:
        return None
    return output.path


# --------------------------------------------------------------------------- folded outputs


def folded_lines(test: TestResult) -> list[str]:
    """Each set of identical outputs once (netjobs_core.fold): its hosts as a node set,
    then the output."""
    groups = fold(test)
    commands = sum(len(group.pairs) for group in groups)
    lines = [f"{text.count(commands, 'command')}, {text.count(len(groups), 'distinct output')}"]
    for group in groups:
        command = group.command
        lines += [
            "",
            f"{text.members(group.targets)}: {command_word(command.status, command.exit_code)}: "
            f"{text.command_lines(group.command_lines)}",
        ]
        for name in ("stdout", "stderr"):
            output = output_of(command, name)
            if output.size:
                lines.append(f"  {name} ({text.size(output.size)}):")
                lines += [f"    {line}" for line in text.output_excerpt(output)]
            else:
                lines.append(f"  {name}: empty")
    return lines


# --------------------------------------------------------------------------- facts shown


def command_state(host: HostResult, command: CommandResult) -> Status:
    """Where a command stands: its own status once it runs or ended, else its host's."""
    status = command.status
    if status is CommandStatus.RUNNING:
        if command.started_at is None and host.state is HostState.READY:
            return HostState.READY
        return status
    if status.finished:
        return status
    return host.state


# What "problems only" keeps: whatever did not end well.
PROBLEMS: frozenset[Status] = frozenset(
    {
        CommandStatus.FAILED,
        CommandStatus.TIMEOUT,
        CommandStatus.KILLED,
        CommandStatus.ERROR,
        CommandStatus.LOST,
        HostState.FAILED,
        HostState.TIMEOUT,
        HostState.KILLED,
    }
)


def is_problem(status: Status) -> bool:
    return any(status is problem for problem in PROBLEMS)  # StrEnums of two enums compare equal


def has_problems(test: TestResult) -> bool:
    """Not a clean pass: failed, aborted, or passed over commands that did not succeed."""
    return test.status in (TestStatus.FAILED, TestStatus.ABORTED, TestStatus.UNSAVED) or bool(
        test.problems()
    )


def common_start(test: TestResult) -> float | None:
    """Epoch of the common start: the scheduled instant, else the first release."""
    if test.scheduled_start is not None:
        return test.scheduled_start
    starts = [c.started_at for h in test.hosts for c in h.commands if c.started_at is not None]
    return min(starts) if starts else None


def start_offset_ms(
    test: TestResult, host: HostResult, command: CommandResult, start: float | None = None
) -> float | None:
    """When this command was released, relative to the common start (controller clock);
    `start`: the common start when the caller has it (it reads every command)."""
    start = common_start(test) if start is None else start
    if command.started_at is not None and start is not None:
        return (command.started_at - start) * 1000.0
    return host.start_offset_ms


def late_ms(test: TestResult, command: CommandResult) -> float | None:
    """How late the command was released, when more than the test's --late-ms."""
    late = command.release_late_ms
    return late if late is not None and late > test.late_threshold_ms else None


def _start_offset(row: CommandRow) -> str:
    """The offset; a late release is coloured here and said in the Message column
    (beside the offset, its words would be cut off in a column this narrow)."""
    return text.ms(row.start_offset_ms, signed=True, none=NO_VALUE)


def _late_words(row: CommandRow) -> str:
    late = late_ms(row.test, row.command)
    return "" if late is None else text.released_late(late)


def elapsed_s(command: CommandResult, now: float | None = None) -> float | None:
    if command.duration_s is not None:
        return command.duration_s
    if command.status is CommandStatus.RUNNING and command.started_at is not None:
        return max(0.0, (time.time() if now is None else now) - command.started_at)
    return None


def status_color(test: TestResult) -> str:
    return verdict_color(test.status, bool(test.problems()))


# --------------------------------------------------------------------------- column widths


@dataclass(frozen=True)
class Fit:
    """How a column takes its share of a table's width: at least `minimum` pixels,
    and `weight` parts of what is left once every column has its minimum."""

    minimum: int
    weight: float = 0.0


def fit_widths(available: int, fits: Sequence[Fit]) -> list[int]:
    """Column widths filling `available` pixels: every minimum first (so that no column
    the user needs is pushed out of sight), then the rest by weight."""
    widths = [fit.minimum for fit in fits]
    extra = available - sum(widths)
    weights = sum(fit.weight for fit in fits)
    if extra <= 0 or weights <= 0:
        return widths
    shares = [int(extra * fit.weight / weights) for fit in fits]
    widths = [w + s for w, s in zip(widths, shares, strict=True)]
    # Rounding left a few pixels: give them to the last flexible column.
    last = max(i for i, fit in enumerate(fits) if fit.weight > 0)
    widths[last] += available - sum(widths)
    return widths


# --------------------------------------------------------------------------- columns

R = TypeVar("R")


def _number(value: float | None) -> Key:
    return (1, 0.0) if value is None else (0, value)


_DIGITS = re.compile(r"(\d+)")


def _words(value: str) -> Key:
    """Natural order: `10.0.0.9` before `10.0.0.10`; empty cells last."""
    if value in ("", NO_VALUE):
        return (1, ())
    parts = _DIGITS.split(value.casefold())
    return (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p))


@dataclass(frozen=True)
class Column(Generic[R]):
    name: str
    text: Callable[[R], str]
    key: Callable[[R], Key] | None = None  # None: the text, case-folded
    color: Callable[[R], str | None] | None = None
    numeric: bool = False  # right-aligned
    tooltip: Callable[[R], str] | None = None  # None: the text
    # Words read from their start (a message, an error): cut at the end, not in the
    # middle as names and paths are (their tail tells them apart); whole in the tooltip.
    prose: bool = False

    def sort_key(self, row: R) -> Key:
        return self.key(row) if self.key is not None else _words(self.text(row))


def names(columns: Sequence[Column[Any]]) -> tuple[str, ...]:
    return tuple(column.name for column in columns)


@dataclass
class TextFilter:
    """A table's filter: a case-insensitive text (any of the row's words) and
    "problems only" (failed, timed out, killed, error, lost)."""

    text: str = ""
    problems_only: bool = False

    @property
    def active(self) -> bool:
        return bool(self.text.strip()) or self.problems_only

    def accepts(self, words: Sequence[str], problem: bool) -> bool:
        if self.problems_only and not problem:
            return False
        needle = self.text.strip().casefold()
        return not needle or any(needle in word.casefold() for word in words)


# ---- one row per host/command of a test


@dataclass(frozen=True)
class CommandRow:
    test: TestResult
    host: HostResult
    index: int
    now: float | None = None
    start: float | None = None  # the test's common start, if the caller has it

    @property
    def command(self) -> CommandResult:
        return self.host.commands[self.index]

    @property
    def start_offset_ms(self) -> float | None:
        return start_offset_ms(self.test, self.host, self.command, self.start)

    @property
    def state(self) -> Status:
        return command_state(self.host, self.command)

    @property
    def message(self) -> str:
        """Why it ended so, then its host's interruptions (lost and resumed connections
        stay in sight after the run, as the terminal report lists them)."""
        said = self.command.message or self.host.error
        parts = [said] if said else []
        late = late_ms(self.test, self.command)
        if late is not None:
            parts.append(text.released_late(late))
        parts += text.interruptions(self.host)
        return "; ".join(parts)


def _exit(row: CommandRow) -> str:
    code = row.command.exit_code
    return NO_VALUE if code is None else exit_code_text(code)


COMMAND_COLUMNS: tuple[Column[CommandRow], ...] = (
    Column("Host", lambda r: str(r.host.address), key=lambda r: _words(str(r.host.address))),
    Column("Command", lambda r: r.command.command),
    Column("State", lambda r: word(r.state), color=lambda r: color(r.state)),
    Column(
        "Start offset",
        _start_offset,
        key=lambda r: _number(r.start_offset_ms),
        numeric=True,
        color=lambda r: None if late_ms(r.test, r.command) is None else color(CommandStatus.FAILED),
        tooltip=lambda r: "; ".join(p for p in (_start_offset(r), _late_words(r)) if p),
    ),
    Column(
        "Began",
        lambda r: text.ms(r.command.exec_offset_ms, signed=True, none=NO_VALUE),
        key=lambda r: _number(r.command.exec_offset_ms),
        numeric=True,
    ),
    Column(
        "Elapsed",
        lambda r: text.duration(elapsed_s(r.command, r.now), none=NO_VALUE),
        key=lambda r: _number(elapsed_s(r.command, r.now)),
        numeric=True,
    ),
    Column(
        "Exit",
        _exit,
        key=lambda r: _number(r.command.exit_code),
        numeric=True,
        color=lambda r: None if r.command.exit_code in (None, 0) else color(CommandStatus.FAILED),
    ),
    Column("Message", lambda r: r.message, prose=True),
)
COMMAND_FIT = (
    Fit(110, 2),
    Fit(120, 3),
    Fit(70),
    Fit(95),
    Fit(90),  # "+695.127 ms": a loaded machine's exec offsets
    Fit(65),
    Fit(95),
    Fit(120, 3),
)
METRIC_FIT = Fit(80)  # a metric's column ("1.93 GiB/s"), after COMMAND_FIT's


def metric_column(name: str) -> Column[CommandRow]:
    """A metric's values (netjobs_core.metrics), in the unit its name says; empty
    where it did not match."""
    return Column(
        name,
        lambda r: (
            NO_VALUE
            if (value := r.command.metrics.get(name)) is None
            else text.metric_value(name, value)
        ),
        key=lambda r: _number(r.command.metrics.get(name)),
        numeric=True,
    )


def command_columns(test: TestResult | None) -> tuple[Column[CommandRow], ...]:
    """COMMAND_COLUMNS, then a column per metric of `test` once it has ended."""
    return COMMAND_COLUMNS + tuple(metric_column(name) for name in (test.metrics if test else ()))


def command_matches(row: CommandRow, wanted: TextFilter) -> bool:
    return wanted.accepts(
        (str(row.host.address), row.host.target, row.command.command, row.message),
        is_problem(row.state),
    )


# ---- the hosts page


@dataclass
class HostRow:
    address: Address
    in_config: bool = False
    manual: bool = False
    check: HostCheck | None = None
    checking: bool = False

    @property
    def target(self) -> str:
        return str(self.address)

    @property
    def ready(self) -> bool:
        c = self.check
        return c is not None and bool(c.authenticated) and not c.error and not c.busy

    @property
    def problem(self) -> bool:
        c = self.check
        return c is not None and bool(c.error or not c.authenticated)


def _yes_no(value: bool | None) -> str:
    if value is None:
        return NO_VALUE
    return "✔ yes" if value else "✘ no"


GOOD, BAD = color(HostState.DONE), color(HostState.FAILED)


def _checked(cell: Callable[[HostCheck], str], empty: str = NO_VALUE) -> Callable[[HostRow], str]:
    def text_of(row: HostRow) -> str:
        if row.checking:
            return ""
        return empty if row.check is None else cell(row.check)

    return text_of


def _reachable(row: HostRow) -> str:
    if row.checking:
        return "checking…"
    return NO_VALUE if row.check is None else _yes_no(row.check.reachable)


def _reach_color(row: HostRow) -> str | None:
    if row.checking or row.check is None:
        return None
    return GOOD if row.check.reachable else BAD


def _auth_color(row: HostRow) -> str | None:
    if row.checking or row.check is None or not row.check.reachable:
        return None
    return GOOD if row.check.authenticated else BAD


def _busy_color(row: HostRow) -> str | None:
    if row.checking or row.check is None or row.check.busy is None:
        return None
    return color(HostState.TIMEOUT) if row.check.busy else GOOD


def _check_number(value: Callable[[HostCheck], float | None]) -> Callable[[HostRow], Key]:
    return lambda r: _number(None if r.check is None or r.checking else value(r.check))


HOST_COLUMNS: tuple[Column[HostRow], ...] = (
    Column("Host", lambda r: r.target, key=lambda r: _words(r.target)),
    Column(
        "Source",
        lambda r: " + ".join(
            w for w, flag in (("config", r.in_config), ("added", r.manual)) if flag
        ),
    ),
    Column("Reachable", _reachable, color=_reach_color),
    Column(
        "Authenticated",
        _checked(lambda c: _yes_no(c.authenticated) if c.reachable else NO_VALUE),
        color=_auth_color,
    ),
    Column("Agent", _checked(lambda c: c.agent_version or NO_VALUE)),
    Column(
        "Round trip",
        _checked(lambda c: text.ms(c.rtt_ms, none=NO_VALUE)),
        key=_check_number(lambda c: c.rtt_ms),
        numeric=True,
    ),
    Column(
        "Clock offset",
        _checked(
            lambda c: text.ms_pm(
                c.clock_offset_ms, c.clock_uncertainty_ms, signed=True, none=NO_VALUE
            )
        ),
        key=_check_number(lambda c: c.clock_offset_ms),
        numeric=True,
    ),
    Column(
        "Wall clock",
        _checked(  # as `netjobs check` says it: `-0.011 ms ± 0.017 ms`
            lambda c: text.ms_pm(
                c.wall_clock_offset_ms, c.clock_uncertainty_ms, signed=True, none=NO_VALUE
            )
        ),
        key=_check_number(lambda c: c.wall_clock_offset_ms),
        numeric=True,
        tooltip=_checked(text.wall_clock),
    ),
    Column(
        "Busy",
        _checked(lambda c: NO_VALUE if c.busy is None else ("busy" if c.busy else "idle")),
        color=_busy_color,
    ),
    Column(
        "Host name",
        _checked(lambda c: " · ".join(p for p in (c.hostname, c.platform) if p) or NO_VALUE),
    ),
    Column(
        "Error",
        _checked(lambda c: text.beside_host(c.error, c.address), empty=""),
        color=lambda r: BAD if r.check is not None and r.check.error else None,
        prose=True,
    ),
)
HOST_FIT = (
    Fit(110, 1),
    Fit(55),
    Fit(75),
    Fit(95),
    Fit(50),
    Fit(80),
    Fit(150),  # "-0.014 ms ± 0.018 ms"
    Fit(150),
    Fit(45),
    Fit(90, 1),
    Fit(90, 3),
)
# While no host has an error, its column gives its share to the host names.
HOST_FIT_NO_ERROR = (*HOST_FIT[:-2], Fit(90, 3), Fit(60, 1))


def host_matches(row: HostRow, wanted: TextFilter) -> bool:
    words = [row.target, row.address.short]
    if row.check is not None:
        words += [row.check.hostname, row.check.error]
    return wanted.accepts(words, row.problem or bool(row.check and row.check.busy))


def hosts_summary(rows: Sequence[HostRow]) -> str:
    """`36 hosts: checking 30, 5 ready, 1 with problems` (counts of the current check)."""
    if not rows:
        return "No hosts: open a config or add a host."
    summary = text.count(len(rows), "host")
    checking = sum(row.checking for row in rows)
    checked = [row for row in rows if row.check is not None and not row.checking]
    if not checking and not checked:
        return summary
    parts = [f"checking {checking}"] if checking else []
    parts.append(f"{sum(row.ready for row in checked)} ready")
    busy = sum(1 for row in checked if row.check is not None and row.check.busy)
    if busy:
        parts.append(f"{busy} busy")
    bad = sum(row.problem for row in checked)
    if bad:
        parts.append(f"{bad} with problems")
    return summary + ": " + ", ".join(parts)


# ---- the tests of a plan


@dataclass(frozen=True)
class TestRow:
    __test__ = False
    position: int  # in the file
    label: str
    hosts: int
    result: TestResult | None


def _test_text(
    cell: Callable[[TestResult], str], pending: str = NO_VALUE
) -> Callable[[TestRow], str]:
    return lambda r: pending if r.result is None else cell(r.result)


def _spread_key(test: TestResult | None) -> Key:
    return _number(None if test is None else test.start_spread_ms)


def _duration_key(test: TestResult | None) -> Key:
    return _number(None if test is None else test.duration_s)


TEST_COLUMNS: tuple[Column[TestRow], ...] = (
    Column("Test", lambda r: r.label, key=lambda r: (0, r.position)),
    Column(
        "Status",
        _test_text(text.status_text, word(TestStatus.PENDING)),
        color=lambda r: color(TestStatus.PENDING) if r.result is None else status_color(r.result),
        tooltip=lambda r: (
            (r.result.reason if r.result and r.result.reason else "")
            or (text.status_text(r.result) if r.result else word(TestStatus.PENDING))
        ),
    ),
    Column("Hosts", lambda r: str(r.hosts), key=lambda r: (0, r.hosts), numeric=True),
    Column(
        "Progress",
        _test_text(lambda t: text.progress_fraction(t) if t.hosts else NO_VALUE),  # not run
        key=lambda r: _number(None if r.result is None else text.commands_count(r.result)[0]),
        numeric=True,
    ),
    Column(
        "Start spread",
        _test_text(lambda t: text.spread(t, none=NO_VALUE)),
        key=lambda r: _spread_key(r.result),
        numeric=True,
    ),
    Column(
        "Duration",
        _test_text(lambda t: text.duration(t.duration_s, none=NO_VALUE)),
        key=lambda r: _duration_key(r.result),
        numeric=True,
    ),
)
TEST_FIT = (Fit(60, 1), Fit(95, 3), Fit(40), Fit(60), Fit(105, 1), Fit(70))


# ---- the session's results


@dataclass
class SessionEntry:
    run: RunResult
    test: TestResult
    source: str  # "run 14:02:11" or the JSON file it came from
    saved: list[str] = field(default_factory=list)
    origin: str = ""  # the resolved JSON path it was loaded from ("" for a run here)

    @property
    def identity(self) -> tuple[str, str, float | None, int | None]:
        """Two entries with one identity are one test (the same JSON opened twice)."""
        return (
            self.origin or self.run.run_id or str(id(self.run)),
            self.test.label,
            self.test.started_at,
            self.test.repetition,
        )


def _when(entry: SessionEntry) -> str:
    started = entry.test.started_at
    return NO_VALUE if started is None else text.date_time(started)


def _window_s(test: TestResult) -> float | None:
    return None if test.concurrent_window is None else test.concurrent_window.seconds


def _together(test: TestResult) -> str:
    """How long every command ran at once (the concurrent window); `never`, or — before."""
    found = test.concurrent_window
    if found is not None:  # as window_line: "at least" when it closed as a command was lost
        return (
            f"at least {text.seconds(found.seconds)}"
            if found.at_least
            else text.seconds(found.seconds)
        )
    finished = test.status not in (TestStatus.PENDING, TestStatus.RUNNING)
    return "never" if finished and test.hosts else NO_VALUE


RESULT_COLUMNS: tuple[Column[SessionEntry], ...] = (
    Column("When", _when, key=lambda e: _number(e.test.started_at)),
    Column("Test", lambda e: e.test.label),
    Column(
        "Status",
        lambda e: text.status_text(e.test),
        color=lambda e: status_color(e.test),
        tooltip=lambda e: e.test.reason or text.status_text(e.test),
        prose=True,
    ),
    Column(
        "Start spread",
        lambda e: text.spread(e.test, none=NO_VALUE),
        key=lambda e: _spread_key(e.test),
        numeric=True,
    ),
    Column(
        "Duration",
        lambda e: text.duration(e.test.duration_s, none=NO_VALUE),
        key=lambda e: _duration_key(e.test),
        numeric=True,
    ),
    Column(
        "Together",
        lambda e: _together(e.test),
        key=lambda e: _number(_window_s(e.test)),
        numeric=True,
        tooltip=lambda e: text.window_line(e.test) if e.test.hosts else NO_VALUE,
    ),
    Column(
        "Hosts",
        lambda e: text.hosts_succeeded(e.test) if e.test.hosts else NO_VALUE,  # not run
        key=lambda e: (0, len(e.test.hosts)),
        numeric=True,
    ),
    Column(
        "Config",
        lambda e: e.run.config_path.replace("\\", "/").rsplit("/", 1)[-1],
        tooltip=lambda e: e.run.config_path,
    ),
    Column("From", lambda e: e.source),
)
RESULT_FIT = (
    Fit(135),
    Fit(80, 1),
    Fit(120, 2),
    Fit(150),
    Fit(70),
    Fit(110),  # "at least 1.999 s"
    Fit(110),  # "33/39 succeeded"
    Fit(90, 1),
    Fit(90, 1),
)


# ---- the run history (netjobs_core.history): past runs across sessions


def _config_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] or "untitled"


def _results_text(record: RunRecord) -> str:
    return record.results_dir if record.results_kept else f"deleted: {record.results_dir}"


def record_color(record: RunRecord) -> str:
    """A past run's colour as every other view colours its tests: the first test that
    did not pass (rose 'passed, output not saved', red, purple), amber for a pass over
    commands that did not succeed, grey while it is only known to have started."""
    if not record.ended:
        return color(TestStatus.PENDING)
    worst = next((t.status for t in record.tests if t.status is not TestStatus.PASSED), None)
    if worst is not None:
        return color(worst)
    return verdict_color(TestStatus.PASSED, bool(record.problems))


HISTORY_COLUMNS: tuple[Column[RunRecord], ...] = (
    Column(
        "When",
        lambda r: NO_VALUE if r.started_at is None else text.date_time(r.started_at),
        key=lambda r: _number(r.started_at),
    ),
    Column(
        "Outcome",
        text.record_summary,
        color=record_color,
    ),
    Column("Tests", lambda r: str(len(r.tests)), key=lambda r: (0, len(r.tests)), numeric=True),
    Column("Config", lambda r: _config_name(r.config_path), tooltip=lambda r: r.config_path),
    Column(
        "Results",
        _results_text,
        color=lambda r: None if r.results_kept else color(TestStatus.PENDING),
    ),
    Column("Run", lambda r: r.run_id),
)
HISTORY_FIT = (Fit(135), Fit(120, 2), Fit(45), Fit(90, 1), Fit(150, 2), Fit(150))


def history_matches(record: RunRecord, wanted: TextFilter) -> bool:
    words = [
        record.run_id,
        text.record_summary(record),
        record.config_path,
        *(t.label for t in record.tests),
    ]
    return wanted.accepts(words, not record.passed)


@dataclass(frozen=True)
class SpreadPoint:
    """One run of a test, for the plot of its start spread over runs."""

    started_at: float | None
    spread_ms: float | None  # None: the run measured none (a host never started)
    run_id: str
    repetition: int | None


def spread_series(records: Sequence[RunRecord], config_path: str, label: str) -> list[SpreadPoint]:
    """Every run of test `label` of config `config_path` in `records` (repetitions of
    --repeat included), oldest first."""
    return [
        SpreadPoint(record.started_at, test.start_spread_ms, record.run_id, test.repetition)
        for record, test in _runs_of(records, config_path, label)
    ]


@dataclass(frozen=True)
class MetricPoint:
    """One run of a test, for the plot of a metric's sum over hosts over runs."""

    started_at: float | None
    value: float | None  # the sum over its hosts; None: no host of that run had it
    hosts: int  # over how many hosts (0 with no value)
    run_id: str
    repetition: int | None


def _runs_of(
    records: Sequence[RunRecord], config_path: str, label: str
) -> list[tuple[RunRecord, TestRecord]]:
    """(record, test) of every run of test `label` of config `config_path`, oldest first
    (repetitions of --repeat included), as the plots over runs take them."""
    found = [
        (record, test)
        for record in records
        if record.config_path == config_path
        for test in record.tests
        if test.label == label
    ]
    return sorted(
        found, key=lambda rt: (rt[0].started_at or 0.0, rt[0].run_id, rt[1].repetition or 0)
    )


def metric_names(records: Sequence[RunRecord], config_path: str, label: str) -> list[str]:
    """The metrics the history kept of test `label` of `config_path`, first seen first
    (the oldest run first): what the Results page's metric chooser offers."""
    names: dict[str, None] = {}
    for _record, test in _runs_of(records, config_path, label):
        names.update((name, None) for name, _sum, _hosts in test.metrics)
    return list(names)


def metric_series(
    records: Sequence[RunRecord], config_path: str, label: str, name: str
) -> list[MetricPoint]:
    """Metric `name`'s figure over hosts (their sum; a latency percentile's largest) in
    every run of test `label` of `config_path`, oldest first; a run without it is a
    point without a value (a gap, never a zero)."""
    points = []
    for record, test in _runs_of(records, config_path, label):
        found = next(((s, h) for n, s, h in test.metrics if n == name), None)
        value, hosts = found if found is not None else (None, 0)
        points.append(MetricPoint(record.started_at, value, hosts, record.run_id, test.repetition))
    return points
