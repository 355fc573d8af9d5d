"""What the CLI, the demo and the GUI share around a run: loading a config and a
token (their errors worded for the user), every address of a plan, running a
plan with its logs and JSON document, saving results, and the exit codes.

Qt-free and rich-free: the terminal's display is handed in (netjobs_core.console).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from netjobs_core import history, logs
from netjobs_core.config import ConfigError, Plan, load_config
from netjobs_core.events import Event, TestFinished
from netjobs_core.nodesets import NO_GROUPS, GroupsError, load_groups
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import RunResult
from netjobs_core.results_json import json_text, write_json
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.text import printable
from netjobs_core.wire.address import Address
from netjobs_core.wire.tokens import Token, TokenError, load_token, refuse_weak

if TYPE_CHECKING:
    from netjobs_core.ssh import SshDialer, SshOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STDOUT = "-"  # as a --json path: the document goes to standard output


class UsageError(Exception):
    """What the user asked for cannot be done as asked: no config, no token..."""


def exit_code(run: RunResult, unsaved: Sequence[str] = ()) -> int:
    """EXIT_OK when tests ran, every one passed and every result file was written."""
    return EXIT_OK if run.passed and run.tests and not unsaved else EXIT_FAILED


_closed: set[int] = set()  # file descriptors whose reader went away


def say(line: str, file: TextIO) -> None:
    """Print `line` for a person: control characters escaped (text.printable). A
    closed pipe (`netjobs ... | head`) ends the printing to it, not the run."""
    try:
        fd = file.fileno()
    except (OSError, ValueError, AttributeError):
        fd = None
    if fd in _closed:
        return
    try:
        print(printable(line), file=file, flush=True)
    except BrokenPipeError:
        if fd is not None:
            _closed.add(fd)
            # What is still buffered would fail again at exit, with a traceback.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)


def plan_addresses(plan: Plan) -> list[Address]:
    """Every agent a plan needs, once each, in the order the config names them."""
    return list(dict.fromkeys(a for test in plan.tests for a in test.addresses))


def over_ssh(plan: Plan) -> Plan:
    """`--ssh`: every target of the plan reached over SSH (Address.as_ssh)."""
    tests = tuple(
        dataclasses.replace(
            test,
            commands=tuple(
                dataclasses.replace(command, address=command.address.as_ssh())
                for command in test.commands
            ),
        )
        for test in plan.tests
    )
    return dataclasses.replace(plan, tests=tests)


def run_token(
    addresses: Sequence[Address],
    path: str | os.PathLike[str] | None,
    *,
    strict: bool = False,
    allow_weak: bool = False,
) -> Token:
    """read_token, except that a run whose every target is over SSH needs none
    (each agent started over SSH gets a token of its own) unless one is named."""
    if not path and addresses and all(a.over_ssh for a in addresses):
        return Token(secrets.token_bytes(32), "none needed: every target is over SSH")
    return read_token(path or None, strict=strict, allow_weak=allow_weak)


@contextlib.asynccontextmanager
async def ssh_dialer(
    addresses: Sequence[Address], options: SshOptions | None = None, err: TextIO | None = None
) -> AsyncIterator[SshDialer | None]:
    """The run's SSH connections when any target is over SSH (closed at the end), else None."""
    if not any(a.over_ssh for a in addresses):
        yield None
        return
    from netjobs_core.ssh import SshDialer  # asyncssh costs ~0.2 s to import: only when used

    async with SshDialer(options) as dialer:
        try:
            yield dialer
        finally:
            for line in dialer.accepted:
                say(f"netjobs: host key accepted: {line}", err or sys.stderr)


def read_token(
    path: str | os.PathLike[str] | None, *, strict: bool = False, allow_weak: bool = False
) -> Token:
    """The token from `path`, $NETJOBS_TOKEN or the config directory; raises UsageError.

    A token file others may read is refused when `strict`, else warned about; a
    guessable token is refused unless `allow_weak`."""
    try:
        token = load_token(path, strict=strict)
        if not allow_weak:
            refuse_weak(token)
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    if token.warning:
        say(f"netjobs: warning: {token.warning}", sys.stderr)
    return token


def read_plan(
    path: str | os.PathLike[str], groups_path: str | os.PathLike[str] | None = None
) -> Plan:
    """The config at PATH, its `@name` targets from the groups file (--groups)."""
    try:
        groups = load_groups(groups_path) if groups_path is not None else NO_GROUPS
        return load_config(path, groups=groups)
    except (ConfigError, GroupsError) as exc:
        raise UsageError(str(exc)) from None


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Raise UsageError unless a file can be written at `path` (before the run,
    rather than lose its results after it)."""
    path = Path(path)
    directory = path.parent
    if path.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a directory")
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"cannot write {what} {path}: directory {directory} {problem}")
    try:  # the real test: permissions, ACLs, read-only file systems, root alike
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot write {what} {path}: directory {directory} is not writable "
            f"({exc.strerror or exc})"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {what} {path}: the file is not writable")


def save_results(
    run: RunResult, json_path: str | os.PathLike[str], show: int = SHOW_BYTES
) -> list[Path]:
    """The CLI's `-l` logs (one per test) and its `--json` document, all in the JSON
    file's folder (the one the user chose), named as `-l` names them. Raises OSError."""
    json_path = Path(json_path)
    config_path = run.config_path or "netjobs"
    written = [logs.write_test_log(config_path, test, show, json_path.parent) for test in run.tests]
    write_json(run, json_path)
    written.append(json_path)
    return written


class Display(Protocol):
    """Shows a run as it goes (the terminal's live table, progress lines...)."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass
class Outcome:
    """A finished run_plan: the results, and each result file that could not be written."""

    result: RunResult
    unsaved: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.result, self.unsaved)


async def run_plan(
    plan: Plan,
    options: RunOptions,
    display: Display,
    *,
    log: bool = False,
    json_path: str | None = None,
    show: int = SHOW_BYTES,
    err: TextIO | None = None,
    in_history: bool = True,
) -> Outcome:
    """Run every test of `plan`: `-l` writes each test's log as it ends (of each output
    at most `show` bytes), `json_path` gets the whole run at the end (even a stopped
    one; `-`: standard output) besides the run folder's results.json, and the run goes
    into the run history unless not `in_history`.
    Ctrl-C or SIGTERM stops cleanly. Raises UsageError, before anything runs, when
    a result file could not be written."""
    err = err or sys.stderr
    config_text = read_config_text(plan.path) if in_history and plan.path else None
    if log:
        check_writable(logs.log_path(plan.path, "label", 0), "the -l logs")
    if json_path and json_path != STDOUT:
        check_writable(json_path, "the --json file")

    def observe(event: Event) -> None:
        display(event)
        if log and isinstance(event, TestFinished):
            try:
                path = logs.write_test_log(plan.path, event.test, show)
                say(f"log written to {path}", err)
            except OSError as exc:
                outcome.unsaved.append(f"the log of test {event.test.label!r} ({exc})")
                say(f"netjobs: cannot write the log of test {event.test.label!r}: {exc}", err)

    runner = Runner(plan, options, observe)
    outcome = Outcome(runner.result)
    loop = asyncio.get_running_loop()
    installed = _install_stop(loop, runner, err)
    try:
        await runner.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        display.close()
        if runner.save_error:
            outcome.unsaved.append(f"the run's results.json ({runner.save_error})")
        if json_path:
            _write_json(runner.result, json_path, options.inline_limit, outcome, err)
        problem = record_run(runner.result, config_text, in_history=in_history)
        if problem:
            say(f"netjobs: warning: {problem}", err)
        say(f"results folder: {runner.folder.path}", err)
        if outcome.unsaved:
            say(f"netjobs: NOT SAVED: {'; '.join(outcome.unsaved)}", err)
    return outcome


def read_config_text(path: str | os.PathLike[str]) -> str | None:
    """The config's text as the run history keeps it; None when unreadable or too big."""
    try:
        with open(path, "rb") as file:
            data = file.read(history.CONFIG_TEXT_LIMIT + 1)
    except OSError:
        return None
    if len(data) > history.CONFIG_TEXT_LIMIT:
        return None
    return data.decode("utf-8", "replace")


def record_run(
    run: RunResult, config_text: str | None = None, *, in_history: bool = True
) -> str | None:
    """After every run (the CLI's and the GUI's): unless not `in_history`, its line in
    the run history (`config_text`: read from its config when None). The problem in one
    line when it could not be kept, else None; never raises."""
    if not in_history:
        return None
    if config_text is None and run.config_path:
        config_text = read_config_text(run.config_path)
    return history.record_run(run, config_text)


def _write_json(
    run: RunResult, json_path: str, inline_limit: int, outcome: Outcome, err: TextIO
) -> None:
    try:
        if json_path == STDOUT:
            sys.stdout.write(json_text(run, None, inline_limit))
            sys.stdout.flush()
        else:
            write_json(run, json_path, inline_limit)
            say(f"results written to {json_path}", err)
    except OSError as exc:  # BrokenPipeError too: `--json - | head`
        where = "standard output" if json_path == STDOUT else json_path
        outcome.unsaved.append(f"the results ({where}: {exc.strerror or exc})")
        say(f"netjobs: cannot write the results to {where}: {exc.strerror or exc}", err)


def _install_stop(loop: asyncio.AbstractEventLoop, runner: Runner, err: TextIO) -> list[int]:
    """First Ctrl-C stops cleanly (agents kill their jobs, results kept); a second one
    falls back to the default handler."""
    installed: list[int] = []

    def on_signal(sig: int) -> None:
        if runner.stopped:
            loop.remove_signal_handler(sig)
            signal.raise_signal(sig)
            return
        how = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
        say(f"\nnetjobs: stopping on {how}: the agents kill their jobs ({how} again: now)", err)
        runner.stop("stopped by user (Ctrl-C)" if sig == signal.SIGINT else f"stopped by {how}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    return installed
