"""The per-test text log (-l); the JSON document (--json) is results_json.py."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from netjobs_core import __version__, text
from netjobs_core.atomic import write_atomic
from netjobs_core.log_parts import LogParts
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import TestResult
from netjobs_core.vocabulary import word

NAME_MAX_BYTES = 255  # of one file name: Linux, macOS and Windows alike


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
    config = Path(config_path)
    # A long label (a config allows any length) would make a name the file system
    # refuses (ENAMETOOLONG) after the run: the label, then the config's name, is cut.
    tail = f"_{stamp}{repeated}.log"
    room = NAME_MAX_BYTES - len(tail.encode())
    head = f"{config.name}_{label}".encode()[:room].decode("utf-8", "ignore")
    return config.with_name(head + tail)


def format_test_log(
    test: TestResult, config_path: str, show: int = SHOW_BYTES, parts: LogParts | None = None
) -> str:
    """The log of one test; of each output at most `show` bytes (its head and tail),
    with where the whole is."""
    return log_bytes(test, config_path, show, parts).decode("utf-8")


def log_bytes(
    test: TestResult, config_path: str, show: int = SHOW_BYTES, parts: LogParts | None = None
) -> bytes:
    """format_test_log's text in UTF-8. Each command's part comes from `parts` (formed
    as the command ended: log_parts.py), the same bytes whenever it was formed."""
    parts = parts if parts is not None else LogParts()
    lines = [
        f"# NetJobs {__version__}: test {test.label!r} from {config_path}",
        f"# started {text.timestamp(test.started_at)}, status {word(test.status)}"
        + (f": {text.field(test.reason)}" if test.reason else ""),
        f"# start mode {test.start_mode.value}, "
        + (
            f"common start {text.timestamp(test.scheduled_start)}"
            if test.scheduled_start is not None
            else f"no common start: offsets {text.started_from(test)}"
        ),
        # How the commands started, as the report says it (text.start_lines).
        *(f"# {line}" for line in text.start_lines(test) or [text.NOTHING_RELEASED]),
        "# TARGET\tCOMMAND\tSTATUS\tDETAILS, then stdout and stderr (a large one: its head "
        "and tail), each line behind '| '",
    ]
    for host in test.hosts:
        # What the agent says of itself is escaped (text.field): it cannot forge a line.
        lines.append(
            f"# host {host.target}: {word(host.state)}"
            + (f" ({text.field(text.beside_host(host.error, host.address))})" if host.error else "")
            + f", agent {text.field(host.agent_version or 'n/a')} on "
            f"{text.field(host.hostname or 'n/a')}, {text.credential(host.credential)}, "
            f"rtt {text.ms(host.rtt_ms)}, {text.wall_clock(host)}, "
            f"start offset {text.ms(host.start_offset_ms, True)}"
        )
        # Its connection's losses, as the report lists them under the host.
        lines.extend(f"#   {line}" for line in text.interruptions(host))
    commands = [
        parts.part(host.target, command, show) for host in test.hosts for command in host.commands
    ]
    metrics = [text.metric_line(name, summary) for name, summary in test.metrics.items()]
    return b"".join([_lines(lines), *commands, _lines(metrics)])


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def write_test_log(
    config_path: str | os.PathLike[str],
    test: TestResult,
    show: int = SHOW_BYTES,
    folder: Path | None = None,
    run_id: str = "",
    parts: LogParts | None = None,
) -> Path:
    """Write the log beside the config, or in `folder` (the name stays the same; a
    repetition's names `run_id`): all or nothing, mode 0600 (atomic.write_atomic).
    `parts`: the commands' parts formed as they ended (a run's). Raises OSError, an
    older log intact."""
    when = test.started_at if test.started_at is not None else dt.datetime.now().timestamp()
    beside = config_path if folder is None else folder / Path(config_path).name
    path = log_path(beside, test.label, when, test.repetition, run_id)
    write_atomic(path, log_bytes(test, os.fspath(config_path), show, parts))
    return path
