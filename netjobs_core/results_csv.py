"""A run as CSV: one row per command of every test and repetition (`netjobs show RUN
--csv`, `netjobs --csv FILE`, the GUI's export).

Columns: `run, test, repetition, test_status, host, command_index, status, exit_code,
start_offset_ms, release_late_ms, exec_offset_ms, elapsed_s`, then one per metric name
seen in the run, first seen first. `test_status` is the test's verdict (a command can be
ok in a test that failed: its quorum lost), so rows can be kept or dropped by it. The
start figures are the command's own: its release and its exec minus the common start
(the first release in a sequential start), and how late its agent released it. A value
that is not known (a command that never ran, a metric that did not match) is an empty
cell; numbers are written exactly (text.csv_number).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from netjobs_core import text
from netjobs_core.atomic import write_atomic
from netjobs_core.metric_spec import CSV_COLUMNS
from netjobs_core.results import CommandResult, HostResult, RunResult

__all__ = [
    "COLUMNS",
    "MetricCells",
    "csv_rows",
    "csv_text",
    "metric_names",
    "release_offset_ms",
    "write_csv",
]

COLUMNS = CSV_COLUMNS  # no metric may take one of these names (metric_spec.parse_metric)


def metric_names(run: RunResult) -> list[str]:
    """Every metric name of the run's commands, first seen first."""
    names: dict[str, float] = {}  # the keys only: an update keeps each first place
    for test in run.tests:
        for host in test.hosts:
            for command in host.commands:
                names.update(command.metrics)
    return list(names)


class MetricCells:
    """Each command's metric cells (text.csv_number), formed as the command ends (run.Run,
    with --csv: 6000 of them at 1000 fio hosts) and kept with the metrics they were
    formed from: a command whose metrics changed since (read at the test's end) gets
    them formed again, so the CSV is the same whenever they were formed."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[dict[str, float], dict[str, str]]] = {}

    def cells(self, command: CommandResult) -> dict[str, str]:
        """By metric name: the kept ones if the command's metrics are still those."""
        kept = self._kept.get(id(command))
        if kept is not None and kept[0] == command.metrics:
            return kept[1]
        cells = {name: text.csv_number(value) for name, value in command.metrics.items()}
        self._kept[id(command)] = (dict(command.metrics), cells)
        return cells


def release_offset_ms(
    host: HostResult, command: CommandResult, start: float | None
) -> float | None:
    """The command's release minus the test's `start` (TestResult.common_start), in ms;
    None when it was never released. Counted from its host's first release, whose
    offset the host has exactly (an epoch's float is 0.24 µs coarse: the difference of
    two is rounded to the nanosecond)."""
    if command.started_at is None:
        return None
    released = [c.started_at for c in host.commands if c.started_at is not None]
    if host.start_offset_ms is not None:
        after_first = command.started_at - min(released)
        if not after_first:
            return host.start_offset_ms
        return round(host.start_offset_ms + after_first * 1000.0, 6)
    return None if start is None else round((command.started_at - start) * 1000.0, 6)


def csv_rows(run: RunResult, metric_cells: MetricCells | None = None) -> Iterator[list[str]]:
    """The header, then a row per command (`metric_cells`: formed as they ended)."""
    names = metric_names(run)
    formed = (metric_cells or MetricCells()).cells
    yield [*COLUMNS, *names]
    for test in run.tests:
        start = test.common_start()
        for host in test.hosts:
            for index, command in enumerate(host.commands):
                cells = formed(command)
                yield [
                    run.run_id,
                    test.label,
                    "" if test.repetition is None else str(test.repetition),
                    test.status.value,
                    host.target,
                    str(index),
                    command.status.value,
                    text.csv_number(command.exit_code),
                    text.csv_number(release_offset_ms(host, command, start)),
                    text.csv_number(command.release_late_ms),
                    text.csv_number(command.exec_offset_ms),
                    text.csv_number(command.duration_s),
                    *[cells.get(name, "") for name in names],
                ]


def csv_text(run: RunResult, metric_cells: MetricCells | None = None) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(run, metric_cells))
    return buffer.getvalue()


def write_csv(
    run: RunResult, path: str | os.PathLike[str], metric_cells: MetricCells | None = None
) -> None:
    """All or nothing, mode 0600 (atomic.write_atomic); OSError with an older file intact."""
    write_atomic(Path(path), csv_text(run, metric_cells).encode("utf-8"))
