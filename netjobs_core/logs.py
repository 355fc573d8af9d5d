"""Result files: the per-test text log (-l) and the JSON document (--json)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from netjobs_core import __version__, text
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    Interruption,
    RunResult,
    StartMode,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import command_word, word
from netjobs_core.wire.address import Address

JSON_FORMAT = "netjobs-results/1"


def log_path(config_path: str | os.PathLike[str], label: str, when: float) -> Path:
    """`<config>_<label>_<ISO time with ':' as '.'>.log`, as NetJobs 2.x named them."""
    stamp = dt.datetime.fromtimestamp(when).isoformat().replace(":", ".")
    return Path(f"{os.fspath(config_path)}_{label}_{stamp}.log")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def format_test_log(test: TestResult, config_path: str) -> str:
    lines = [
        f"# NetJobs {__version__}: test {test.label!r} from {config_path}",
        f"# started {text.timestamp(test.started_at)}, status {word(test.status)}"
        + (f": {test.reason}" if test.reason else ""),
        f"# start mode {test.start_mode.value}, common start "
        f"{text.timestamp(test.scheduled_start)}, start spread {text.spread(test)}",
        "# TARGET\tCOMMAND\tSTATUS\tDETAILS, then stdout and stderr in full, each line behind '| '",
    ]
    for host in test.hosts:
        lines.append(
            f"# host {host.target}: {word(host.state)}"
            + (f" ({host.error})" if host.error else "")
            + f", agent {host.agent_version or 'n/a'} on {host.hostname or 'n/a'}, "
            f"rtt {text.ms(host.rtt_ms)}, clock offset "
            f"{text.ms_pm(host.clock_offset_ms, host.clock_uncertainty_ms, signed=True)}, "
            f"start offset {text.ms(host.start_offset_ms, True)}"
        )
    for host in test.hosts:
        for command in host.commands:
            details = [f"started {text.timestamp(command.started_at)}"]
            details += text.command_details(command)
            status = command_word(command.status, command.exit_code)
            lines.append(f"{host.target}\t{command.command}\t{status}\t{', '.join(details)}")
            for name, data in (("stdout", command.stdout), ("stderr", command.stderr)):
                lines.append(f"  {name} ({len(data)} bytes)")
                lines.extend(f"  | {line}" for line in text.output_lines(data))
    return "\n".join(lines) + "\n"


def write_test_log(config_path: str | os.PathLike[str], test: TestResult) -> Path:
    when = test.started_at if test.started_at is not None else dt.datetime.now().timestamp()
    path = log_path(config_path, test.label, when)
    path.write_text(format_test_log(test, os.fspath(config_path)), encoding="utf-8")
    return path


# -- JSON ------------------------------------------------------------------------


def _bytes_fields(name: str, data: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = {name: _text(data)}
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # The text above escapes what is not UTF-8; keep the exact bytes too.
        fields[f"{name}_base64"] = base64.b64encode(data).decode("ascii")
    return fields


def _command_json(command: CommandResult) -> dict[str, Any]:
    return {
        "command": command.command,
        "line": command.line,
        "status": command.status.value,
        "exit_code": command.exit_code,
        "message": command.message,
        **_bytes_fields("stdout", bytes(command.stdout)),
        **_bytes_fields("stderr", bytes(command.stderr)),
        "started_at": command.started_at,
        "duration_s": command.duration_s,
        "lost_at": command.lost_at,
    }


def _host_json(host: HostResult) -> dict[str, Any]:
    return {
        "target": host.target,
        "host": host.address.host,
        "port": host.address.port,
        "status": host.state.value,
        "error": host.error,
        "agent_version": host.agent_version,
        "hostname": host.hostname,
        "gated": host.gated,
        "rtt_ms": host.rtt_ms,
        "clock_offset_ms": host.clock_offset_ms,
        "clock_uncertainty_ms": host.clock_uncertainty_ms,
        "start_offset_ms": host.start_offset_ms,
        "commands": [_command_json(c) for c in host.commands],
        "interruptions": [dataclasses.asdict(i) for i in host.interruptions],
    }


def _test_json(test: TestResult) -> dict[str, Any]:
    return {
        "label": test.label,
        "status": test.status.value,
        "reason": test.reason,
        "minhosts": "all" if test.minhosts is None else test.minhosts,
        "start_mode": test.start_mode.value,
        "started_at": test.started_at,
        "scheduled_start": test.scheduled_start,
        "duration_s": test.duration_s,
        "start_spread_ms": test.start_spread_ms,
        "start_spread_uncertainty_ms": test.start_spread_uncertainty_ms,
        "hosts": [_host_json(h) for h in test.hosts],
    }


def run_to_json(run: RunResult) -> dict[str, Any]:
    return {
        "format": JSON_FORMAT,
        "netjobs_version": __version__,
        "config": run.config_path,
        "passed": run.passed,
        "tests": [_test_json(t) for t in run.tests],
    }


def write_json(run: RunResult, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(run_to_json(run), indent=2) + "\n", encoding="utf-8")


class ResultsFileError(Exception):
    pass


def _load_bytes(item: dict[str, Any], name: str) -> bytearray:
    encoded = item.get(f"{name}_base64")
    if encoded is not None:
        return bytearray(base64.b64decode(encoded))
    return bytearray(str(item.get(name, "")).encode("utf-8"))


def load_json(path: str | os.PathLike[str]) -> RunResult:
    """Read back what write_json wrote."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
            raise ResultsFileError(f"{path}: not a NetJobs results file")
        run = RunResult(config_path=document.get("config", ""))
        for item in document["tests"]:
            minhosts = item.get("minhosts")
            test = TestResult(
                label=item["label"],
                minhosts=None if minhosts == "all" else minhosts,
                start_mode=StartMode(item.get("start_mode", "scheduled")),
                status=TestStatus(item["status"]),
                reason=item.get("reason", ""),
                started_at=item.get("started_at"),
                scheduled_start=item.get("scheduled_start"),
                duration_s=item.get("duration_s"),
                start_spread_ms=item.get("start_spread_ms"),
                start_spread_uncertainty_ms=item.get("start_spread_uncertainty_ms"),
            )
            for h in item["hosts"]:
                host = HostResult(
                    address=Address(h["host"], h["port"]),
                    state=HostState(h["status"]),
                    error=h.get("error", ""),
                    agent_version=h.get("agent_version", ""),
                    hostname=h.get("hostname", ""),
                    gated=h.get("gated"),
                    rtt_ms=h.get("rtt_ms"),
                    clock_offset_ms=h.get("clock_offset_ms"),
                    clock_uncertainty_ms=h.get("clock_uncertainty_ms"),
                    start_offset_ms=h.get("start_offset_ms"),
                    interruptions=[Interruption(**i) for i in h.get("interruptions", [])],
                )
                for c in h["commands"]:
                    host.commands.append(
                        CommandResult(
                            command=c["command"],
                            line=c.get("line", 0),
                            status=CommandStatus(c["status"]),
                            exit_code=c.get("exit_code"),
                            stdout=_load_bytes(c, "stdout"),
                            stderr=_load_bytes(c, "stderr"),
                            started_at=c.get("started_at"),
                            duration_s=c.get("duration_s"),
                            message=c.get("message", ""),
                            lost_at=c.get("lost_at"),
                        )
                    )
                test.hosts.append(host)
            run.tests.append(test)
        return run
    except ResultsFileError:
        raise
    except OSError as exc:
        raise ResultsFileError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsFileError(f"{path}: not a valid NetJobs results file ({exc})") from None
