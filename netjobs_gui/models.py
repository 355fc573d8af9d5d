"""Qt table models over the Qt-free columns of `columns.py` (no widgets needed).

- `HostsModel`: the hosts of the open config plus the hand-added ones, with
  the latest `HostCheck` of each.
- `TestsModel`: the tests of a plan with the state of their latest run.
- `CommandsModel`: one row per host/command of one `TestResult`.
- `ResultsModel`: every test run (or loaded) in this window's session.
- `HistoryModel`: past runs, from the run history's database.
- `TableProxy`: sorting by any column and the filter of a table.

The models read the live result objects the runner keeps updating; the
views call `refresh()` from a timer, so output bursts cost one repaint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor

from netjobs_core.results import CommandStatus
from netjobs_core.text import printable
from netjobs_gui import columns
from netjobs_gui.columns import (
    Column,
    CommandRow,
    HostRow,
    Key,
    SessionEntry,
    TestRow,
    TextFilter,
)

if TYPE_CHECKING:
    from netjobs_core.check import HostCheck
    from netjobs_core.config import Plan
    from netjobs_core.records import RunRecord
    from netjobs_core.results import CommandResult, HostResult, RunResult, TestResult
    from netjobs_core.wire.address import Address

_Index = QModelIndex | QPersistentModelIndex
DISPLAY = Qt.ItemDataRole.DisplayRole
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class ColumnsModel(QAbstractTableModel):
    """A flat table over `SPEC` (Qt-free columns); subclasses say what each row is."""

    SPEC: tuple[Column[Any], ...] = ()
    COLUMNS: tuple[str, ...] = ()

    def row_count(self) -> int:
        raise NotImplementedError

    def row_item(self, row: int) -> Any:
        raise NotImplementedError

    def matches(self, row: int, wanted: TextFilter) -> bool:
        return True

    def cell(self, row: int, column: int) -> str:
        return self.SPEC[column].text(self.row_item(row))

    def sort_key(self, row: int, column: int) -> Key:
        return self.SPEC[column].sort_key(self.row_item(row))

    def refresh(self) -> None:
        """Every cell may have changed (cheap: the view repaints only what it shows)."""
        if self.row_count():
            self.dataChanged.emit(
                self.index(0, 0), self.index(self.row_count() - 1, len(self.SPEC) - 1)
            )

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.row_count()

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.SPEC)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
            return self.SPEC[section].name
        return None

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or index.row() >= self.row_count():
            return None
        column = self.SPEC[index.column()]
        # Every cell as people read it (text.printable): a peer's control characters
        # and bidirectional overrides escaped, as on the terminal.
        if role == DISPLAY:
            return printable(column.text(self.row_item(index.row())))
        if role == Qt.ItemDataRole.ToolTipRole:
            return printable((column.tooltip or column.text)(self.row_item(index.row()))) or None
        if role == Qt.ItemDataRole.ForegroundRole and column.color is not None:
            value = column.color(self.row_item(index.row()))
            return None if value is None else QColor(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return RIGHT
        return None


class TableProxy(QSortFilterProxyModel):
    """Sorts by the columns' keys and keeps the rows the filter accepts."""

    def __init__(self, source: ColumnsModel) -> None:
        super().__init__(source)
        self.source = source
        self.filter = TextFilter()
        self.setSourceModel(source)
        self.setDynamicSortFilter(True)

    def set_filter(self, text: str | None = None, problems_only: bool | None = None) -> None:
        # Qt 6.9 has begin/endFilterChange() and deprecates invalidate*Filter().
        new_api = hasattr(self, "beginFilterChange")
        if new_api:
            self.beginFilterChange()
        if text is not None:
            self.filter.text = text
        if problems_only is not None:
            self.filter.problems_only = problems_only
        if new_api:
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:
        return not self.filter.active or self.source.matches(source_row, self.filter)

    def lessThan(self, left: _Index, right: _Index) -> bool:
        # Ties keep the model's order (the config's), whatever was sorted before.
        column = left.column()
        mine = (self.source.sort_key(left.row(), column), left.row())
        theirs = (self.source.sort_key(right.row(), column), right.row())
        return mine < theirs

    def source_rows(self) -> list[int]:
        """The source rows shown, in the order shown."""
        return [self.mapToSource(self.index(r, 0)).row() for r in range(self.rowCount())]


# --------------------------------------------------------------------------- hosts


class HostsModel(ColumnsModel):
    SPEC = columns.HOST_COLUMNS
    COLUMNS = columns.names(SPEC)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[HostRow] = []

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

    def set_check(self, check: HostCheck) -> None:
        """One host's answer, as soon as it arrives."""
        for number, row in enumerate(self.rows):
            if row.address == check.address:
                row.check, row.checking = check, False
                self.dataChanged.emit(self.index(number, 0), self.index(number, len(self.SPEC) - 1))

    def set_checks(self, checks: Sequence[HostCheck]) -> None:
        for check in checks:
            self.set_check(check)

    def clear_checking(self) -> None:
        for row in self.rows:
            row.checking = False
        self.refresh()

    def summary(self) -> str:
        return columns.hosts_summary(self.rows)

    def row_count(self) -> int:
        return len(self.rows)

    def row_item(self, row: int) -> HostRow:
        return self.rows[row]

    def matches(self, row: int, wanted: TextFilter) -> bool:
        return columns.host_matches(self.rows[row], wanted)


# --------------------------------------------------------------------------- tests of a plan


class TestsModel(ColumnsModel):
    """The plan's tests (file order) with the state of their latest run."""

    __test__ = False
    SPEC = columns.TEST_COLUMNS
    COLUMNS = columns.names(SPEC)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.labels: list[str] = []
        self.host_counts: list[int] = []
        self.results: dict[str, TestResult] = {}
        # Each cell once per refresh: a wrapped list sizes its rows from every cell,
        # many times a tick, and a running test's status reads all its commands.
        self._cells: dict[tuple[int, int, int], Any] = {}

    def refresh(self) -> None:
        self._cells.clear()
        super().refresh()

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        key = (index.row(), index.column(), role)
        if key not in self._cells:
            self._cells[key] = super().data(index, role)
        return self._cells[key]

    def set_plan(self, plan: Plan | None) -> None:
        self._cells.clear()
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

    def row_item(self, row: int) -> TestRow:
        label = self.labels[row]
        return TestRow(row, label, self.host_counts[row], self.results.get(label))

    def matches(self, row: int, wanted: TextFilter) -> bool:
        item = self.row_item(row)
        problem = item.result is not None and columns.has_problems(item.result)
        return wanted.accepts([item.label], problem)


# --------------------------------------------------------------------------- one test's commands


class CommandsModel(ColumnsModel):
    """One row per host/command of a TestResult (live or finished); after the fixed
    columns, one per metric of the test once it has ended.

    At 1000 hosts a refresh tick must not touch every row: `refresh()` says changed
    only the rows whose facts changed since the last tick (and, for the commands
    still running, only their Elapsed cell), so a sorted or filtered proxy re-sorts
    and re-filters only those; each row's cell texts, colours and sort keys are
    kept until its facts change."""

    SPEC = columns.COMMAND_COLUMNS
    COLUMNS = columns.names(SPEC)
    ELAPSED = COLUMNS.index("Elapsed")
    SHARED_COLUMNS = (COLUMNS.index("Start offset"), COLUMNS.index("Message"))

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.test: TestResult | None = None
        self.keys: list[tuple[int, int]] = []  # (host index, command index)
        self._facts: list[tuple[Any, ...]] = []  # each row's, as of the last refresh
        self._shared: tuple[Any, ...] = ()  # what every row's cells depend on
        self._cells: list[dict[int, dict[int, Any]]] = []  # row -> column -> role -> value
        self._start: float | None = None  # the test's common start, once per refresh

    def set_test(self, test: TestResult | None) -> None:
        self.beginResetModel()
        self.test = test
        self.keys = self._keys()
        self.SPEC = columns.command_columns(test)
        self.COLUMNS = columns.names(self.SPEC)
        self._remember()
        self.endResetModel()

    def _keys(self) -> list[tuple[int, int]]:
        if self.test is None:
            return []
        return [(h, c) for h, host in enumerate(self.test.hosts) for c in range(len(host.commands))]

    def _remember(self) -> None:
        self._facts = self._all_facts()
        self._shared = self._shared_facts()
        self._cells = [{} for _ in self.keys]

    def _shared_facts(self) -> tuple[Any, ...]:
        test = self.test
        if test is None:
            return ()
        self._start = columns.common_start(test)
        return (self._start, test.late_threshold_ms)

    def _all_facts(self) -> list[tuple[Any, ...]]:
        if self.test is None:
            return []
        hosts = self.test.hosts
        return [_facts(hosts[h], hosts[h].commands[c]) for h, c in self.keys]

    def refresh(self) -> None:
        keys = self._keys()
        metrics = tuple(self.test.metrics) if self.test is not None else ()
        if keys != self.keys or self.COLUMNS[len(columns.COMMAND_COLUMNS) :] != metrics:
            self.set_test(self.test)
            return
        shared = self._shared_facts()
        if shared != self._shared:
            # The common start (the first release) or --late-ms: every row's Start
            # offset and Message; said per column, so a table sorted by another column
            # is not re-sorted whole.
            self._shared = shared
            last_row = len(self.keys) - 1
            for column in self.SHARED_COLUMNS:
                for cells in self._cells:
                    cells.pop(column, None)
                if last_row >= 0:
                    self.dataChanged.emit(self.index(0, column), self.index(last_row, column))
        changed, ticking = [], []
        for row, facts in enumerate(self._all_facts()):
            if facts != self._facts[row]:
                self._facts[row] = facts
                self._cells[row] = {}
                changed.append(row)
            elif facts[0] is CommandStatus.RUNNING and facts[1] is not None and facts[2] is None:
                ticking.append(row)  # its Elapsed grows
        last = len(self.SPEC) - 1
        for first, end in _ranges(changed):
            self.dataChanged.emit(self.index(first, 0), self.index(end, last))
        for row in ticking:
            self._cells[row].pop(self.ELAPSED, None)
        for first, end in _ranges(ticking):
            self.dataChanged.emit(
                self.index(first, self.ELAPSED), self.index(end, self.ELAPSED), [DISPLAY]
            )

    def data(self, index: _Index, role: int = DISPLAY) -> Any:
        # Every role the view asks (ten or so a cell, each paint) from the row's cache.
        row = index.row()
        if not index.isValid() or row >= len(self._cells):
            return None
        column = index.column()
        roles = self._cells[row].setdefault(column, {})
        if role not in roles:
            roles[role] = super().data(index, role)
        return roles[role]

    def sort_key(self, row: int, column: int) -> Key:
        roles = self._cells[row].setdefault(column, {})
        if _SORT not in roles:
            roles[_SORT] = super().sort_key(row, column)
        return roles[_SORT]

    # Qt asks these thousands of times a tick (every index() of a sorted proxy).
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.keys)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.SPEC)

    def item(self, row: int) -> tuple[HostResult, int]:
        assert self.test is not None
        host_index, command_index = self.keys[row]
        return self.test.hosts[host_index], command_index

    def row_of(self, host: HostResult, index: int) -> int:
        assert self.test is not None
        return self.keys.index((self.test.hosts.index(host), index))

    def row_count(self) -> int:
        return len(self.keys)

    def row_item(self, row: int) -> CommandRow:
        assert self.test is not None
        host, index = self.item(row)
        return CommandRow(self.test, host, index, start=self._start)

    def matches(self, row: int, wanted: TextFilter) -> bool:
        return columns.command_matches(self.row_item(row), wanted)


def _facts(host: HostResult, c: CommandResult) -> tuple[Any, ...]:
    """What a command's row shows, but its Elapsed while it runs (columns.py)."""
    return (
        c.status,
        c.started_at,
        c.duration_s,
        c.exit_code,
        c.exec_offset_ms,
        c.release_late_ms,
        c.message,
        len(c.metrics),
        host.state,
        host.start_offset_ms,
        host.error,
        len(host.interruptions),
        host.interruptions_folded,
    )


_SORT = -1  # a cell's sort key, kept beside its roles


def _ranges(rows: list[int]) -> list[tuple[int, int]]:
    """Ascending rows as (first, last) runs of consecutive rows."""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs


# --------------------------------------------------------------------------- the session's results


class ResultsModel(ColumnsModel):
    SPEC = columns.RESULT_COLUMNS
    COLUMNS = columns.names(SPEC)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[SessionEntry] = []

    def add_run(self, run: RunResult, source: str, origin: str = "") -> list[int]:
        """Add the run's tests not yet listed; returns the rows of all of the run's tests
        that were new. A test listed already (this run, or the same JSON opened again)
        is not added twice: see `rows_of()`."""
        known = {entry.identity for entry in self.entries}
        known_tests = {id(entry.test) for entry in self.entries}
        new = []
        for test in run.tests:
            entry = SessionEntry(run, test, source, origin=origin)
            if id(test) not in known_tests and entry.identity not in known:
                new.append(entry)
                known.add(entry.identity)
        if not new:
            return []
        first = len(self.entries)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        self.entries.extend(new)
        self.endInsertRows()
        return list(range(first, first + len(new)))

    def rows_of(self, run: RunResult, origin: str = "") -> list[int]:
        """The rows already listing the tests of `run` (or of the file `origin`)."""
        wanted = {SessionEntry(run, test, "", origin=origin).identity for test in run.tests}
        return [
            row
            for row, entry in enumerate(self.entries)
            if entry.run is run or entry.identity in wanted
        ]

    def remove_rows(self, rows: Sequence[int]) -> None:
        for row in sorted(set(rows), reverse=True):
            if 0 <= row < len(self.entries):
                self.beginRemoveRows(QModelIndex(), row, row)
                del self.entries[row]
                self.endRemoveRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.entries.clear()
        self.endResetModel()

    def row_count(self) -> int:
        return len(self.entries)

    def row_item(self, row: int) -> SessionEntry:
        return self.entries[row]

    def matches(self, row: int, wanted: TextFilter) -> bool:
        entry = self.entries[row]
        words = [entry.test.label, entry.source, entry.run.config_path]
        return wanted.accepts(words, columns.has_problems(entry.test))


# --------------------------------------------------------------------------- the run history


class HistoryModel(ColumnsModel):
    """Past runs from the run history (netjobs_core.history), newest first."""

    SPEC = columns.HISTORY_COLUMNS
    COLUMNS = columns.names(SPEC)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.records: list[RunRecord] = []

    def set_records(self, records: Sequence[RunRecord]) -> None:
        self.beginResetModel()
        self.records = list(records)
        self.endResetModel()

    def row_count(self) -> int:
        return len(self.records)

    def row_item(self, row: int) -> RunRecord:
        return self.records[row]

    def matches(self, row: int, wanted: TextFilter) -> bool:
        return columns.history_matches(self.records[row], wanted)
