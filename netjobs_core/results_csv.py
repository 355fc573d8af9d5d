"""A run as CSV: one row per command of every test and repetition (`netjobs show RUN
--csv`, `netjobs --csv FILE`, the GUI's export).

Columns: `run, test, repetition, host, command_index, status, exit_code,
start_offset_ms, elapsed_s`, then one per metric name seen in the run, first seen
first. A value that is not known (a command that never ran, a metric that did not
match) is an empty cell; numbers are written exactly (text.csv_number).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from netjobs_core import text
from netjobs_core.atomic import write_atomic
from netjobs_core.results import RunResult

__all__ = ["COLUMNS", "csv_rows", "csv_text", "metric_names", "write_csv"]

COLUMNS = (
    "run",
    "test",
    "repetition",
    "host",
    "command_index",
    "status",
    "exit_code",
    "start_offset_ms",
    "elapsed_s",
)


def metric_names(run: RunResult) -> list[str]:
    """Every metric name of the run's commands, first seen first."""
    names: dict[str, None] = {}
    for test in run.tests:
        for host in test.hosts:
            for command in host.commands:
                names.update(dict.fromkeys(command.metrics))
    return list(names)


def csv_rows(run: RunResult) -> Iterator[list[str]]:
    """The header, then a row per command."""
    names = metric_names(run)
    yield [*COLUMNS, *names]
    for test in run.tests:
        for host in test.hosts:
            for index, command in enumerate(host.commands):
                yield [
                    run.run_id,
                    test.label,
                    "" if test.repetition is None else str(test.repetition),
                    host.target,
                    str(index),
                    command.status.value,
                    text.csv_number(command.exit_code),
                    text.csv_number(host.start_offset_ms),
                    text.csv_number(command.duration_s),
                    *map(text.csv_number, map(command.metrics.get, names)),
                ]


def csv_text(run: RunResult) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(run))
    return buffer.getvalue()


def write_csv(run: RunResult, path: str | os.PathLike[str]) -> None:
    """All or nothing, mode 0600 (atomic.write_atomic); OSError with an older file intact."""
    write_atomic(Path(path), csv_text(run).encode("utf-8"))
