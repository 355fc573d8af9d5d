"""One run, five views, one truth: what a run printed (its live report), its `-l`
logs, its JSON document, its CSV and the run history (`history`, `show`, `show
--json`, `show --csv`) compared fact by fact. `disagreements(...)` lists each fact
two views tell differently; an empty list is one truth."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from netjobs_core.metric_spec import CSV_COLUMNS

# Lines only a live run prints: progress, where its files went, a stop's notice.
LIVE_ONLY = re.compile(
    r"^(\d{4}-\d\d-\d\dT\S+ test |log written to |results written to |CSV written to "
    r"|results folder: |netjobs: stopping on |$)"
)
FIGURE = re.compile(r"(-?\d+(?:\.\d+)?) (ms|s|%)\b")


def report_lines(console: str) -> list[str]:
    """The live report, its live-only lines left out."""
    return [line for line in console.splitlines() if not LIVE_ONLY.match(line)]


def _close(printed: str, value: float | None) -> bool:
    """`printed` (`0.093`) is `value` to its printed precision."""
    if value is None:
        return False
    places = len(printed.partition(".")[2])
    return abs(float(printed) - value) <= 0.5 * 10**-places + 1e-9


def _start_figures(line: str, test: dict[str, Any]) -> list[str]:
    """The report's start line against the test's figures."""
    wrong = []
    pairs = [
        (r"released within (\S+) ms ± (\S+) ms", "start_spread_ms", "start_spread_uncertainty_ms"),
        (r"began within (\S+) ms ± (\S+) ms", "exec_spread_ms", "exec_spread_uncertainty_ms"),
    ]
    for pattern, key, bound in pairs:
        found = re.search(pattern, line)
        if found is None:
            continue
        for printed, name in zip(found.groups(), (key, bound), strict=True):
            if not _close(printed, test[name]):
                wrong.append(f"{test['label']}: {name} {test[name]} printed {printed}")
    lead = re.search(r"lead (\S+) (ms|s)\b", line)
    if lead is not None:
        value = test["lead_ms"] / (1000 if lead.group(2) == "s" else 1)
        if not _close(lead.group(1), value):
            wrong.append(f"{test['label']}: lead_ms {test['lead_ms']} printed {lead.group(0)}")
    return wrong


def _window_figures(line: str, test: dict[str, Any]) -> list[str]:
    found = re.search(r"for (?:at least )?(\S+) (ms|s) \((\S+) % of the longest", line)
    window = test["concurrent_window"]
    if found is None or window is None:
        return []
    wrong = []
    seconds = window["seconds"] * (1000 if found.group(2) == "ms" else 1)
    if not _close(found.group(1), seconds):
        wrong.append(f"{test['label']}: window {window['seconds']} s printed {found.group(0)}")
    if not _close(found.group(3), 100 * window["fraction"]):
        wrong.append(f"{test['label']}: fraction {window['fraction']} printed {found.group(3)} %")
    if ("at least" in line) != bool(window.get("at_least")):
        wrong.append(f"{test['label']}: at_least {window.get('at_least')} but {line!r}")
    return wrong


def figures(report: Sequence[str], document: dict[str, Any]) -> list[str]:
    """Every start and window figure of the report against the JSON's numbers."""
    wrong = []
    tests = iter(document["tests"])
    test: dict[str, Any] | None = None
    for line in report:
        if line.startswith("test '") and " over " not in line.partition(":")[0]:
            test = next(tests, None)
            continue
        if test is None:
            continue
        if "released within" in line:
            wrong += _start_figures(line, test)
        elif "ran together for" in line:
            wrong += _window_figures(line, test)
    return wrong


def csv_against_json(table: str, document: dict[str, Any]) -> list[str]:
    """Each CSV row against its command in the JSON: verdicts, exit codes, run times,
    start figures, metrics."""
    rows = list(csv.DictReader(io.StringIO(table)))
    wrong = []
    expected = []
    for test in document["tests"]:
        for host in test["hosts"]:
            for index, command in enumerate(host["commands"]):
                expected.append((test, host, index, command))
    if len(rows) != len(expected):
        return [f"CSV has {len(rows)} rows, the JSON {len(expected)} commands"]
    for row, (test, host, index, command) in zip(rows, expected, strict=True):
        where = f"CSV {test['label']}/{host['target']}/{index}"
        facts = {
            "run": document["run_id"],
            "test": test["label"],
            "repetition": test["repetition"],
            "test_status": test["status"],
            "host": host["target"],
            "command_index": index,
            "status": command["status"],
            "exit_code": command["exit_code"],
            "release_late_ms": command["release_late_ms"],
            "exec_offset_ms": command["exec_offset_ms"],
            "elapsed_s": command["duration_s"],
            **{name: value for name, value in command["metrics"].items()},
        }
        for key, value in facts.items():
            cell = row.get(key)
            if value is None and cell == "":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if cell in (None, "") or float(cell) != float(value):
                    wrong.append(f"{where}: {key} {value!r}, CSV {cell!r}")
            elif str(value) != cell:
                wrong.append(f"{where}: {key} {value!r}, CSV {cell!r}")
        metric_cells = {
            key for key, cell in row.items() if key not in _CSV_OWN and cell not in ("", None)
        }
        if metric_cells != set(command["metrics"]):
            wrong.append(
                f"{where}: metrics {sorted(command['metrics'])}, CSV {sorted(metric_cells)}"
            )
    return wrong


_CSV_OWN = frozenset(CSV_COLUMNS)  # the rest are metrics


def logs_against_report(logs: Iterable[Path], report: Sequence[str]) -> list[str]:
    """Each `-l` log's head (its verdict, start lines, window, late hosts, connection
    losses, metrics) against the live report's lines for that test."""
    wrong = []
    for path in logs:
        lines = path.read_text(encoding="utf-8").splitlines()
        said = [line.removeprefix("# ") for line in lines if line.startswith("# ")]
        label = re.match(r"NetJobs \S+: test '(.*)' from ", said[0])
        assert label is not None, path
        for line in said[3:]:
            if line.startswith(("TARGET\t", "host ")) or line.startswith("  "):
                continue
            if f"  {line}" not in report:
                wrong.append(f"{path.name}: {line!r} is not in the report")
        losses = [line.removeprefix("#   ") for line in lines if line.startswith("#   ")]
        report_losses = [
            line.split(": ", 1)[1]
            for line in report
            if line.startswith("    ") and "connection lost at" in line
        ]
        for loss in report_losses:
            if loss not in losses:
                wrong.append(f"{path.name}: the report's {loss!r} is not in the log")
        metrics = [line for line in lines if re.match(r"^\S+: .* over \d+ host", line)]
        for metric in metrics:
            if f"  {metric}" not in report:
                wrong.append(f"{path.name}: metric line {metric!r} is not in the report")
    return wrong


def disagreements(
    console: str,
    logs: Iterable[Path],
    document: dict[str, Any],
    table: str,
    show: str,
    show_json: str,
    show_csv: str,
    history_line: str,
) -> list[str]:
    """Every fact two of the views tell differently."""
    report = report_lines(console)
    shown = show.splitlines()
    wrong = []
    if report != shown[1:-1]:
        wrong.append(f"show reprints another report:\nlive {report}\nshow {shown[1:-1]}")
    if shown[-1] not in history_line:
        wrong.append(f"history says {history_line!r}, show {shown[-1]!r}")
    if json.loads(show_json) != document:
        wrong.append("show --json is not the run's JSON document")
    if show_csv != table:
        wrong.append("show --csv is not the run's CSV")
    wrong += figures(report, document)
    wrong += csv_against_json(table, document)
    wrong += logs_against_report(logs, report)
    return wrong
