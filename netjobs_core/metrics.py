"""A test's metrics: each command's, read as soon as its output and collected files are
complete (while the test's other commands still run), then the test's summary at its end.

A command's metrics are its config's `-metric` regexes applied to its stdout
(metric_spec) and the figures of every fio or iperf3 JSON document among its stdout
and collected files (builtin_metrics); a config metric of the same name as a built-in
one wins. A regex reads an output of any size a window at a time: never more than
`WINDOW` + `OVERLAP` characters in memory, so a match may span window boundaries up
to `OVERLAP` characters long, and each window begins at a line start where the
overlap has one.

A command is read as it ends (host_run.HostRun) only when its stdout and collected files
together are at most `EARLY_BYTES`: that work is then a few milliseconds on the event
loop; a larger one is read at the test's end (`measure_test`), where it delays nothing
that still runs.

What cannot be read (a damaged document, a match that is no number, a spooled file
gone) is a warning on the command, naming its host; the metric is then absent.
"""

from __future__ import annotations

import codecs
import re
import statistics
from collections.abc import Sequence, Set

from netjobs_core import builtin_metrics
from netjobs_core.builtin_metrics import MAX_DOCUMENT_BYTES, SNIFF_BYTES, DocumentError
from netjobs_core.config import CommandSpec
from netjobs_core.metric_spec import read_number
from netjobs_core.outputs import Output, OutputFileError
from netjobs_core.results import CommandResult, HostResult, MetricSummary, TestResult
from netjobs_core.wire.status import CommandStatus

__all__ = [
    "EARLY_BYTES",
    "OVERLAP",
    "WINDOW",
    "fleet_figure",
    "last_match",
    "measure_command",
    "measure_test",
    "read_early",
    "summarize",
]

WINDOW = 1024 * 1024  # bytes of an output decoded and searched at a time
OVERLAP = 64 * 1024  # characters of a window searched again with the next one
EARLY_BYTES = 1024 * 1024  # a command's outputs read as it ends, on the loop: ~10 ms at most


def last_match(output: Output, pattern: re.Pattern[str]) -> str | None:
    """The capture group of the last match of `pattern` in `output` (UTF-8, what is
    not UTF-8 replaced), read a window at a time; None when it never matches."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    found: str | None = None
    carry = ""
    chunks = output.chunks(WINDOW)
    while True:
        chunk = next(chunks, None)
        text = carry + decoder.decode(chunk or b"", final=chunk is None)
        for match in pattern.finditer(text):
            found = match.group(1)
        if chunk is None:
            return found
        carry = text[-OVERLAP:]
        line_start = carry.find("\n")
        if 0 <= line_start < len(carry) - 1:
            carry = carry[line_start + 1 :]


def _documents(command: CommandResult) -> list[tuple[str, bytes]]:
    """(what it is, its bytes) of the stdout and collected files that may be a fio or
    iperf3 document: one whose head says so, read whole only then, or a stdout held
    whole in memory (read_document tells; its head is not copied to ask first)."""
    found = []
    stdout = command.stdout
    if stdout.whole_in_memory:  # read_document says whether it is one: no copy of its head
        found.append(("stdout", stdout.read_bytes()))
    elif builtin_metrics.kind_of(stdout.head(SNIFF_BYTES)) is not None:
        if stdout.size > MAX_DOCUMENT_BYTES:
            raise DocumentError(f"stdout is over {MAX_DOCUMENT_BYTES >> 20} MiB: not read")
        found.append(("stdout", stdout.read_bytes()))
    for item in command.collected:
        try:
            with open(item.path, "rb") as file:
                if builtin_metrics.kind_of(file.read(SNIFF_BYTES)) is None:
                    continue
                if item.bytes > MAX_DOCUMENT_BYTES:
                    raise DocumentError(
                        f"{item.path} is over {MAX_DOCUMENT_BYTES >> 20} MiB: not read"
                    )
                file.seek(0)
                found.append((str(item.path), file.read(MAX_DOCUMENT_BYTES)))
        except OSError as exc:
            raise DocumentError(f"cannot read {item.path}: {exc.strerror or exc}") from None
    return found


def _builtin(command: CommandResult, host: str) -> dict[str, float]:
    try:
        documents = _documents(command)
    except (DocumentError, OutputFileError) as exc:
        command.warnings.append(f"{host}: no fio or iperf3 metrics: {exc}")
        return {}
    read: list[dict[str, float]] = []
    for where, data in documents:
        try:
            metrics = builtin_metrics.read_document(data)
        except DocumentError as exc:
            command.warnings.append(f"{host}: {where} is {exc}: no metrics from it")
            continue
        if metrics:
            read.append(metrics)
    if len(read) == 1:  # the usual case: one document, nothing to combine
        return read[0]
    values: dict[str, list[float]] = {}
    for metrics in read:
        for name, value in metrics.items():
            values.setdefault(name, []).append(value)
    return {name: builtin_metrics.combine(name, found) for name, found in values.items()}


def measure_command(command: CommandResult, spec: CommandSpec, host: str) -> None:
    """Set `command.metrics`; what cannot be read becomes a warning naming `host`."""
    metrics = _builtin(command, host)
    for metric in spec.metrics:
        metrics.pop(metric.name, None)  # the config's own wins over a built-in one
        try:
            text = last_match(command.stdout, metric.pattern)
        except OutputFileError as exc:
            command.warnings.append(f"{host}: metric {metric.name!r}: {exc}")
            continue
        if text is None:
            continue  # no match on this host: absent, the summary says over how many
        value = read_number(text)
        if value is None:
            command.warnings.append(
                f"{host}: metric {metric.name!r}: {text[:80]!r} is not a number: left out"
            )
            continue
        metrics[metric.name] = value
    command.metrics = metrics


def read_early(command: CommandResult) -> bool:
    """Whether `command` (ended, its files in) is small enough to read at once."""
    size = command.stdout.size + sum(item.bytes for item in command.collected)
    return size <= EARLY_BYTES


def fleet_figure(name: str, summary: MetricSummary) -> float:
    """The one figure of a metric over a test's hosts: their sum, or for a latency
    percentile the largest (the worst host's)."""
    return summary.sum if builtin_metrics.adds_up(name) else summary.max


def summarize(hosts: Sequence[HostResult]) -> dict[str, MetricSummary]:
    """Every metric over the hosts that have it: each host's value is the sum over its
    commands (the largest, for a latency percentile); the names in the order first seen."""
    per_host: dict[str, list[float]] = {}
    failed: dict[str, int] = {}  # per name: hosts with a value and a command not ok
    for host in hosts:
        commands = host.commands
        not_ok = any(
            c.metrics and c.status.finished and c.status is not CommandStatus.OK for c in commands
        )
        if len(commands) == 1:  # most hosts: its command's values are its sums
            sums = commands[0].metrics
        else:
            sums = {}
            for command in commands:
                for name, value in command.metrics.items():
                    if name not in sums:
                        sums[name] = 0.0 + value
                    elif builtin_metrics.adds_up(name):
                        sums[name] += value
                    else:  # a percentile: the largest of its commands'
                        sums[name] = max(sums[name], value)
        for name, value in sums.items():
            found = per_host.get(name)
            if found is None:
                per_host[name] = [0.0 + value]  # a sum's start, as for several commands
            else:
                found.append(0.0 + value)
            if not_ok:
                failed[name] = failed.get(name, 0) + 1
    return {
        name: MetricSummary(
            sum=sum(values),
            min=min(values),
            median=statistics.median(values),
            max=max(values),
            hosts=len(values),
            hosts_failed=failed.get(name, 0),
        )
        for name, values in per_host.items()
    }


def measure_test(
    test: TestResult,
    specs: Sequence[Sequence[CommandSpec]],
    read: Sequence[Set[int]] | None = None,
) -> None:
    """Every command's metrics (`specs[h][c]` is host h's command c) but those already
    read (`read[h]`: host h's command indexes), then the test's."""
    for h, (host, host_specs) in enumerate(zip(test.hosts, specs, strict=True)):
        if read is not None and len(read[h]) == len(host.commands):
            continue  # every command of the host was read as it ended
        for c, (command, spec) in enumerate(zip(host.commands, host_specs, strict=True)):
            if read is None or c not in read[h]:
                measure_command(command, spec, host.target)
    test.metrics = summarize(test.hosts)
