"""The per-test text log (-l); the JSON document (--json) is results_json.py."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from netjobs_core import __version__
from netjobs_core.results import CommandResult, TestResult


def log_path(config_path: str | os.PathLike[str], label: str, when: float) -> Path:
    """`<config>_<label>_<ISO time with ':' as '.'>.log`, as NetJobs 2.x named them."""
    stamp = dt.datetime.fromtimestamp(when).isoformat().replace(":", ".")
    return Path(f"{os.fspath(config_path)}_{label}_{stamp}.log")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f} ms" if signed else f"{value:.3f} ms"


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "n/a"
    return dt.datetime.fromtimestamp(epoch).isoformat(timespec="microseconds")


def _status_word(command: CommandResult) -> str:
    word = command.status.value.upper()
    if command.exit_code is not None:
        word += f" (exit {command.exit_code})"
    return word


def format_test_log(test: TestResult, config_path: str) -> str:
    lines = [
        f"# NetJobs {__version__}: test {test.label!r} from {config_path}",
        f"# started {_clock(test.started_at)}, status {test.status.value}"
        + (f": {test.reason}" if test.reason else ""),
        f"# start mode {test.start_mode.value}, common start {_clock(test.scheduled_start)}, "
        f"start spread {_ms(test.start_spread_ms)} "
        f"(+/- {_ms(test.start_spread_uncertainty_ms)})",
        "# TARGET\tCOMMAND\tSTATUS\tDETAILS, then stdout and stderr in full, each line behind '| '",
    ]
    for host in test.hosts:
        lines.append(
            f"# host {host.target}: {host.state.value}"
            + (f" ({host.error})" if host.error else "")
            + f", agent {host.agent_version or 'n/a'} on {host.hostname or 'n/a'}, "
            f"rtt {_ms(host.rtt_ms)}, clock offset {_ms(host.clock_offset_ms, True)} "
            f"(+/- {_ms(host.clock_uncertainty_ms)}), "
            f"start offset {_ms(host.start_offset_ms, True)}"
        )
    for host in test.hosts:
        for command in host.commands:
            details = [f"started {_clock(command.started_at)}"]
            if command.duration_s is not None:
                details.append(f"ran {command.duration_s:.3f} s")
            if command.message:
                details.append(command.message)
            lines.append(
                f"{host.target}\t{command.command}\t{_status_word(command)}\t{', '.join(details)}"
            )
            for name, data in (("stdout", command.stdout), ("stderr", command.stderr)):
                lines.append(f"  {name} ({len(data)} bytes)")
                if data:
                    body = _text(bytes(data))
                    lines.extend(f"  | {line}" for line in body.removesuffix("\n").split("\n"))
    return "\n".join(lines) + "\n"


def write_test_log(config_path: str | os.PathLike[str], test: TestResult) -> Path:
    when = test.started_at if test.started_at is not None else dt.datetime.now().timestamp()
    path = log_path(config_path, test.label, when)
    path.write_text(format_test_log(test, os.fspath(config_path)), encoding="utf-8")
    return path
