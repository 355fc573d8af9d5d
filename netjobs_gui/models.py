"""Table models over netjobs_core's plain result objects (no widgets needed).

- `HostsModel`: the hosts of the open config plus the hand-added ones, with
  the latest `HostCheck` of each.
- `TestsModel`: the tests of a plan with the state of their latest run.
- `CommandsModel`: one row per host/command of one `TestResult`.
- `ResultsModel`: every test run (or loaded) in this window's session.

The models read the live result objects the runner keeps updating; the
views call `refresh()` from a timer, so output bursts cost one repaint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from netjobs_core import text
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import Status, color, exit_code_text, word
from netjobs_core.wire.address import Address

if TYPE_CHECKING:
    from netjobs_core.check import HostCheck
    from netjobs_core.config import Plan

_Index = QModelIndex | QPersistentModelIndex
DISPLAY = Qt.ItemDataRole.DisplayRole
NO_VALUE = "—"


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


def common_start(test: TestResult) -> float | None:
    """Epoch of the common start: the scheduled instant, else the first release."""
    if test.scheduled_start is not None:
        return test.scheduled_start
    starts = [c.started_at for h in test.hosts for c in h.commands if c.started_at is not None]
    return min(starts) if starts else None


def start_offset_ms(test: TestResult, host: HostResult, command: CommandResult) -> float | None:
    """When this command was released, relative to the common start (controller clock)."""
    start = common_start(test)
    if command.started_at is not None and start is not None:
        return (command.started_at - start) * 1000.0
    return host.start_offset_ms


def elapsed_s(command: CommandResult, now: float | None = None) -> float | None:
    if command.duration_s is not None:
        return command.duration_s
    if command.status is CommandStatus.RUNNING and command.started_at is not None:
        return max(0.0, (time.time() if now is None else now) - command.started_at)
    return None


def _color(status: Status | None) -> QColor | None:
    return None if status is None else QColor(color(status))


# --------------------------------------------------------------------------- hosts


class ColumnsModel(QAbstractTableModel):
    """A flat table with named COLUMNS; subclasses say how many rows and what cells hold."""

    COLUMNS: tuple[str, ...] = ()

    def row_count(self) -> int:
        raise NotImplementedError

    def refresh(self) -> None:
        """Every cell may have changed (cheap: the view repaints only what it shows)."""
        if self.row_count():
            self.dataChanged.emit(
                self.index(0, 0), self.index(self.row_count() - 1, len(self.COLUMNS) - 1)
            )

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.row_count()

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
            return self.COLUMNS[section]
        return None


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


def _yes_no(value: bool | None) -> str:
    if value is None:
        return NO_VALUE
    return "✔ yes" if value else "✘ no"


class HostsModel(ColumnsModel):
    COLUMNS = (
        "Host",
        "Source",
        "Reachable",
        "Authenticated",
        "Agent",
        "Round trip",
        "Clock offset",
        "Busy",
        "Host name",
        "Error",
    )

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[HostRow] = []

    # ---- content
    def set_hosts(self, config: Sequence[Address], manual: Sequence[Address]) -> None:
        """The config's hosts first (in order), then the hand-added ones; checks are kept."""
        previous = {row.address: row for row in self.rows}
        rows: dict[Address, HostRow] = {}
        for address in config:
            rows.setdefault(address, HostRow(address)).in_config = True
        for address in manual:
            rows.setdefault(address, HostRow(address)).manual = True
        for address, row in rows.items():
            old = previous.get(address)
            if old is not None:
                row.check, row.checking = old.check, old.checking
        self.beginResetModel()
        self.rows = list(rows.values())
        self.endResetModel()

    def addresses(self) -> list[Address]:
        return [row.address for row in self.rows]

    def set_checking(self, addresses: Sequence[Address]) -> None:
        wanted = set(addresses)
        for row in self.rows:
            if row.address in wanted:
                row.checking = True
        self.refresh()

    def set_checks(self, checks: Sequence[HostCheck]) -> None:
        by_address = {check.address: check for check in checks}
        for row in self.rows:
            check = by_address.get(row.address)
            if check is not None:
                row.check = check
                row.checking = False
        self.refresh()

    def clear_checking(self) -> None:
        for row in self.rows:
            row.checking = False
        self.refresh()

    def summary(self) -> str:
        checked = [row.check for row in self.rows if row.check is not None]
        if not self.rows:
            return "No hosts: open a config or add a host."
        summary = text.count(len(self.rows), "host")
        if checked:
            ready = sum(1 for c in checked if c.authenticated and not c.error and not c.busy)
            busy = sum(1 for c in checked if c.busy)
            bad = sum(1 for c in checked if c.error or not c.authenticated)
            parts = [f"{ready} ready"]
            if busy:
                parts.append(f"{busy} busy")
            if bad:
                parts.append(f"{bad} with problems")
            summary += ": " + ", ".join(parts)
        return summary

    # ---- Qt
    def row_count(self) -> int:
        return len(self.rows)

    def cell(self, row: int, column: int) -> str:
        item = self.rows[row]
        check = item.check
        name = self.COLUMNS[column]
        if name == "Host":
            return item.target
        if name == "Source":
            return " + ".join(
                word for word, flag in (("config", item.in_config), ("added", item.manual)) if flag
            )
        if item.checking:
            return "checking…" if name == "Reachable" else ""
        if check is None:
            return NO_VALUE if name != "Error" else ""
        if name == "Reachable":
            return _yes_no(check.reachable)
        if name == "Authenticated":
            return _yes_no(check.authenticated) if check.reachable else NO_VALUE
        if name == "Agent":
            return check.agent_version or NO_VALUE
        if name == "Round trip":
            return text.ms(check.rtt_ms, none=NO_VALUE)
        if name == "Clock offset":
            return text.ms_pm(
                check.clock_offset_ms, check.clock_uncertainty_ms, signed=True, none=NO_VALUE
            )
        if name == "Busy":
            return NO_VALUE if check.busy is None else ("busy" if check.busy else "idle")
        if name == "Host name":
            return " · ".join(part for part in (check.hostname, check.platform) if part) or NO_VALUE
        if name == "Error":
            return check.error
        raise AssertionError(name)

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role in (DISPLAY, Qt.ItemDataRole.ToolTipRole):
            return self.cell(row, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            check = self.rows[row].check
            name = self.COLUMNS[column]
            if check is None or self.rows[row].checking:
                return None
            good, bad = HostState.DONE, HostState.FAILED
            if name == "Reachable":
                return _color(good if check.reachable else bad)
            if name == "Authenticated" and check.reachable:
                return _color(good if check.authenticated else bad)
            if name == "Busy" and check.busy is not None:
                return _color(HostState.TIMEOUT if check.busy else good)
            if name == "Error":
                return _color(bad)
        return None


# --------------------------------------------------------------------------- tests of a plan


class TestsModel(ColumnsModel):
    """The plan's tests (file order) with the state of their latest run."""

    __test__ = False
    COLUMNS = ("Test", "Status", "Hosts", "Progress", "Start spread", "Duration")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.labels: list[str] = []
        self.host_counts: list[int] = []
        self.results: dict[str, TestResult] = {}

    def set_plan(self, plan: Plan | None) -> None:
        self.beginResetModel()
        if plan is None:
            self.labels, self.host_counts = [], []
        else:
            self.labels = [test.label for test in plan.tests]
            self.host_counts = [len(test.addresses) for test in plan.tests]
            self.results = {k: v for k, v in self.results.items() if k in self.labels}
        self.endResetModel()

    def set_result(self, test: TestResult) -> None:
        self.results[test.label] = test
        self.refresh()

    def clear_results(self) -> None:
        self.results.clear()
        self.refresh()

    def row_of(self, label: str) -> int:
        return self.labels.index(label)

    def row_count(self) -> int:
        return len(self.labels)

    def cell(self, row: int, column: int) -> str:
        label = self.labels[row]
        test = self.results.get(label)
        name = self.COLUMNS[column]
        if name == "Test":
            return label
        if name == "Hosts":
            return str(self.host_counts[row])
        if test is None:
            return word(TestStatus.PENDING) if name == "Status" else NO_VALUE
        if name == "Status":
            return word(test.status)
        if name == "Progress":
            done, total = text.progress(test)
            return f"{done}/{total}"
        if name == "Start spread":
            return text.spread(test, none=NO_VALUE)
        if name == "Duration":
            return text.duration(test.duration_s, none=NO_VALUE)
        raise AssertionError(name)

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        if role in (DISPLAY, Qt.ItemDataRole.ToolTipRole):
            if role == Qt.ItemDataRole.ToolTipRole:
                test = self.results.get(self.labels[index.row()])
                if test is not None and test.reason:
                    return test.reason
            return self.cell(index.row(), index.column())
        if role == Qt.ItemDataRole.ForegroundRole and self.COLUMNS[index.column()] == "Status":
            test = self.results.get(self.labels[index.row()])
            return _color(TestStatus.PENDING if test is None else test.status)
        return None


# --------------------------------------------------------------------------- one test's commands


class CommandsModel(ColumnsModel):
    """One row per host/command of a TestResult (live or finished)."""

    COLUMNS = ("Host", "Command", "State", "Start offset", "Elapsed", "Exit", "Message")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.test: TestResult | None = None
        self.keys: list[tuple[int, int]] = []  # (host index, command index)

    def set_test(self, test: TestResult | None) -> None:
        self.beginResetModel()
        self.test = test
        self.keys = self._keys()
        self.endResetModel()

    def _keys(self) -> list[tuple[int, int]]:
        if self.test is None:
            return []
        return [(h, c) for h, host in enumerate(self.test.hosts) for c in range(len(host.commands))]

    def refresh(self) -> None:
        keys = self._keys()
        if keys != self.keys:
            self.set_test(self.test)
        else:
            super().refresh()

    def item(self, row: int) -> tuple[HostResult, int]:
        assert self.test is not None
        host_index, command_index = self.keys[row]
        return self.test.hosts[host_index], command_index

    def row_of(self, host: HostResult, index: int) -> int:
        assert self.test is not None
        return self.keys.index((self.test.hosts.index(host), index))

    def row_count(self) -> int:
        return len(self.keys)

    def cell(self, row: int, column: int, now: float | None = None) -> str:
        assert self.test is not None
        host, index = self.item(row)
        command = host.commands[index]
        name = self.COLUMNS[column]
        if name == "Host":
            return str(host.address)
        if name == "Command":
            return command.command
        if name == "State":
            return word(command_state(host, command))
        if name == "Start offset":
            return text.ms(start_offset_ms(self.test, host, command), signed=True, none=NO_VALUE)
        if name == "Elapsed":
            return text.duration(elapsed_s(command, now), none=NO_VALUE)
        if name == "Exit":
            return NO_VALUE if command.exit_code is None else exit_code_text(command.exit_code)
        if name == "Message":
            return command.message or host.error
        raise AssertionError(name)

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or self.test is None:
            return None
        if role in (DISPLAY, Qt.ItemDataRole.ToolTipRole):
            return self.cell(index.row(), index.column())
        if role == Qt.ItemDataRole.ForegroundRole and self.COLUMNS[index.column()] == "State":
            host, command_index = self.item(index.row())
            return _color(command_state(host, host.commands[command_index]))
        if role == Qt.ItemDataRole.TextAlignmentRole and self.COLUMNS[index.column()] in (
            "Start offset",
            "Elapsed",
            "Exit",
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


# --------------------------------------------------------------------------- the session's results


@dataclass
class SessionEntry:
    run: RunResult
    test: TestResult
    source: str  # "run 14:02:11" or the JSON file it came from
    saved: list[str] = field(default_factory=list)


class ResultsModel(ColumnsModel):
    COLUMNS = ("From", "Config", "Test", "Status", "Hosts", "Start spread", "Duration")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[SessionEntry] = []

    def add_run(self, run: RunResult, source: str) -> list[int]:
        """Add the run's tests not yet listed; returns their rows."""
        known = {id(entry.test) for entry in self.entries}
        new = [SessionEntry(run, test, source) for test in run.tests if id(test) not in known]
        if not new:
            return []
        first = len(self.entries)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        self.entries.extend(new)
        self.endInsertRows()
        return list(range(first, first + len(new)))

    def row_count(self) -> int:
        return len(self.entries)

    def cell(self, row: int, column: int) -> str:
        entry = self.entries[row]
        test = entry.test
        name = self.COLUMNS[column]
        if name == "From":
            return entry.source
        if name == "Config":
            return entry.run.config_path.replace("\\", "/").rsplit("/", 1)[-1]
        if name == "Test":
            return test.label
        if name == "Status":
            return word(test.status)
        if name == "Hosts":
            ok = sum(1 for h in test.hosts if h.state is HostState.DONE)
            return f"{ok}/{len(test.hosts)} done"
        if name == "Start spread":
            return text.spread(test, none=NO_VALUE)
        if name == "Duration":
            return text.duration(test.duration_s, none=NO_VALUE)
        raise AssertionError(name)

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        entry = self.entries[index.row()]
        if role == DISPLAY:
            return self.cell(index.row(), index.column())
        if role == Qt.ItemDataRole.ToolTipRole:
            if self.COLUMNS[index.column()] == "Config":
                return entry.run.config_path
            return entry.test.reason or self.cell(index.row(), index.column())
        if role == Qt.ItemDataRole.ForegroundRole and self.COLUMNS[index.column()] == "Status":
            return _color(entry.test.status)
        return None
