"""What the CLI, the demo and the GUI share around a run: loading a config and a
token (their errors worded for the user), every address of a plan, running a
plan with its logs and JSON document, saving results, and the exit codes.

Qt-free and rich-free: the terminal's display is handed in (netjobs_core.console).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Protocol, TextIO

from netjobs_core import logs
from netjobs_core.config import ConfigError, Plan, load_config
from netjobs_core.events import Event, TestFinished
from netjobs_core.results import RunResult
from netjobs_core.runner import Runner, RunOptions
from netjobs_core.wire.address import Address
from netjobs_core.wire.tokens import Token, TokenError, load_token, refuse_weak

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """What the user asked for cannot be done as asked: no config, no token..."""


def exit_code(run: RunResult) -> int:
    """EXIT_OK when tests ran and every one passed."""
    return EXIT_OK if run.passed and run.tests else EXIT_FAILED


def plan_addresses(plan: Plan) -> list[Address]:
    """Every agent a plan needs, once each, in the order the config names them."""
    return list(dict.fromkeys(a for test in plan.tests for a in test.addresses))


def read_token(path: str | os.PathLike[str] | None, *, allow_weak: bool = False) -> Token:
    """The token from `path`, $NETJOBS_TOKEN or the config directory; raises UsageError."""
    try:
        token = load_token(path)
        if not allow_weak:
            refuse_weak(token)
        return token
    except TokenError as exc:
        raise UsageError(str(exc)) from None


def read_plan(path: str | os.PathLike[str]) -> Plan:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def save_results(run: RunResult, json_path: str | os.PathLike[str]) -> list[Path]:
    """The CLI's `-l` logs (one per test, beside the config) and its `--json` document.

    A run of an untitled or relative config puts its logs beside the JSON file.
    Raises OSError.
    """
    json_path = Path(json_path)
    config_path = run.config_path or "netjobs"
    if not os.path.isabs(config_path):
        config_path = os.fspath(json_path.parent / Path(config_path).name)
    written = [logs.write_test_log(config_path, test) for test in run.tests]
    logs.write_json(run, json_path)
    written.append(json_path)
    return written


class Display(Protocol):
    """Shows a run as it goes (the terminal's live table, progress lines...)."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


async def run_plan(
    plan: Plan,
    options: RunOptions,
    display: Display,
    *,
    log: bool = False,
    json_path: str | None = None,
    err: TextIO | None = None,
) -> RunResult:
    """Run every test of `plan`: `-l` writes each test's log as it ends, `json_path`
    gets the whole run at the end (even a stopped one). Ctrl-C stops cleanly."""
    err = err or sys.stderr

    def observe(event: Event) -> None:
        display(event)
        if log and isinstance(event, TestFinished):
            try:
                path = logs.write_test_log(plan.path, event.test)
                print(f"log written to {path}", file=err, flush=True)
            except OSError as exc:
                print(f"netjobs: cannot write the log for {event.test.label!r}: {exc}", file=err)

    runner = Runner(plan, options, observe)
    loop = asyncio.get_running_loop()
    installed = _install_stop(loop, runner, err)
    try:
        result = await runner.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        display.close()
        if json_path:
            try:
                logs.write_json(runner.result, json_path)
                print(f"results written to {json_path}", file=err, flush=True)
            except (OSError, logs.ResultsFileError) as exc:
                print(f"netjobs: cannot write {json_path}: {exc}", file=err)
    return result


def _install_stop(loop: asyncio.AbstractEventLoop, runner: Runner, err: TextIO) -> list[int]:
    """First Ctrl-C stops cleanly (agents kill their jobs, results kept); a second one
    falls back to the default handler."""
    installed = []

    def on_signal(sig: int) -> None:
        if runner.stopped:
            loop.remove_signal_handler(sig)
            signal.raise_signal(sig)
            return
        print(
            "\nnetjobs: stopping: the agents kill their jobs (Ctrl-C again to quit now)",
            file=err,
            flush=True,
        )
        runner.stop("stopped by user (Ctrl-C)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    return installed
