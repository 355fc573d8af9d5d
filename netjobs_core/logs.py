"""The per-test text log (-l); the JSON document (--json) is results_json.py."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from netjobs_core import __version__, text
from netjobs_core.atomic import write_atomic
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import TestResult
from netjobs_core.vocabulary import command_word, word


def log_path(
    config_path: str | os.PathLike[str],
    label: str,
    when: float,
    repetition: int | None = None,
    run_id: str = "",
) -> Path:
    """`<config>_<label>_<ISO time with ':' as '.'>.log`, as NetJobs 2.x named them; a
    repetition of a repeated test (--repeat) adds its number and the run's id:
    `<config>_<label>_<time>_rep2_<run id>.log`."""
    stamp = dt.datetime.fromtimestamp(when).isoformat().replace(":", ".")
    repeated = f"_rep{repetition}" + (f"_{run_id}" if run_id else "") if repetition else ""
    return Path(f"{os.fspath(config_path)}_{label}_{stamp}{repeated}.log")


def format_test_log(test: TestResult, config_path: str, show: int = SHOW_BYTES) -> str:
    """The log of one test; of each output at most `show` bytes (its head and tail),
    with where the whole is."""
    lines = [
        f"# NetJobs {__version__}: test {test.label!r} from {config_path}",
        f"# started {text.timestamp(test.started_at)}, status {word(test.status)}"
        + (f": {text.field(test.reason)}" if test.reason else ""),
        f"# start mode {test.start_mode.value}, common start "
        f"{text.timestamp(test.scheduled_start)}, start spread {text.spread(test)}",
        "# TARGET\tCOMMAND\tSTATUS\tDETAILS, then stdout and stderr (a large one: its head "
        "and tail), each line behind '| '",
    ]
    for host in test.hosts:
        # What the agent says of itself is escaped (text.field): it cannot forge a line.
        lines.append(
            f"# host {host.target}: {word(host.state)}"
            + (f" ({text.field(host.error)})" if host.error else "")
            + f", agent {text.field(host.agent_version or 'n/a')} on "
            f"{text.field(host.hostname or 'n/a')}, {text.credential(host.credential)}, "
            f"rtt {text.ms(host.rtt_ms)}, {text.wall_clock(host)}, "
            f"start offset {text.ms(host.start_offset_ms, True)}"
        )
    for host in test.hosts:
        for command in host.commands:
            details = [f"started {text.timestamp(command.started_at)}"]
            details += text.command_details(command)
            status = command_word(command.status, command.exit_code)
            lines.append(f"{host.target}\t{command.command}\t{status}\t{', '.join(details)}")
            lines.extend(f"  {line}" for line in text.file_lines(command))
            for name, output in (("stdout", command.stdout), ("stderr", command.stderr)):
                lines.append(f"  {name} ({len(output)} bytes, sha256 {output.sha256})")
                lines.extend(f"  | {line}" for line in text.output_excerpt(output, show))
    lines.extend(text.metric_line(name, summary) for name, summary in test.metrics.items())
    return "\n".join(lines) + "\n"


def write_test_log(
    config_path: str | os.PathLike[str],
    test: TestResult,
    show: int = SHOW_BYTES,
    folder: Path | None = None,
    run_id: str = "",
) -> Path:
    """Write the log beside the config, or in `folder` (the name stays the same; a
    repetition's names `run_id`): all or nothing, mode 0600 (atomic.write_atomic).
    Raises OSError, an older log intact."""
    when = test.started_at if test.started_at is not None else dt.datetime.now().timestamp()
    beside = config_path if folder is None else folder / Path(config_path).name
    path = log_path(beside, test.label, when, test.repetition, run_id)
    write_atomic(path, format_test_log(test, os.fspath(config_path), show).encode("utf-8"))
    return path
