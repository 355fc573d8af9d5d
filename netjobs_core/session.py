"""What the CLI, the demo and the GUI share around a run: loading a config and a
token (their errors worded for the user), every address of a plan, its SSH
dialer, checking and saving result files, and the exit codes. A run itself is
owned by netjobs_core.run.Run.

Qt-free and rich-free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from netjobs_core import logs
from netjobs_core.config import ConfigError, Plan, load_config
from netjobs_core.nodesets import NO_GROUPS, GroupsError, load_groups
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import RunResult
from netjobs_core.results_json import write_json
from netjobs_core.text import output_over_input, printable, same_output_file
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


def largest_exit_status(run: RunResult, unsaved: Sequence[str] = ()) -> int:
    """-S, as pdsh -S: the largest exit status of any command (killed by signal N: 128 + N,
    as a shell says it; at most 255); when every command exited 0, `exit_code`."""
    codes = [
        code if code >= 0 else 128 - code
        for test in run.tests
        for host in test.hosts
        for command in host.commands
        if (code := command.exit_code) is not None
    ]
    return min(max(codes, default=0), 255) or exit_code(run, unsaved)


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
                dataclasses.replace(
                    command, address=command.address.as_ssh(), written=command.as_written
                )
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


def new_ssh_dialer(
    addresses: Sequence[Address], options: SshOptions | None = None
) -> SshDialer | None:
    """SSH connections for `addresses` when any target is over SSH, else None. Nothing
    is connected yet; `async with` the dialer closes what it opened."""
    if not any(a.over_ssh for a in addresses):
        return None
    from netjobs_core.ssh import SshDialer  # asyncssh costs ~0.2 s to import: only when used

    return SshDialer(options)


def host_key_line(accepted: str) -> str:
    """How the terminal tells of an SSH host key added with accept_new."""
    return f"netjobs: host key accepted: {accepted}"


@contextlib.asynccontextmanager
async def ssh_dialer(
    addresses: Sequence[Address], options: SshOptions | None = None, err: TextIO | None = None
) -> AsyncIterator[SshDialer | None]:
    """For a host check: the SSH connections when any target is over SSH (closed at
    the end, its accepted host keys told on `err`), else None."""
    dialer = new_ssh_dialer(addresses, options)
    if dialer is None:
        yield None
        return
    async with dialer:
        try:
            yield dialer
        finally:
            for line in dialer.accepted:
                say(host_key_line(line), err or sys.stderr)


def read_token(
    path: str | os.PathLike[str] | None, *, strict: bool = False, allow_weak: bool = False
) -> Token:
    """The token from `path`, $NETJOBS_TOKEN or the config directory; raises UsageError.

    A token file others may read is refused when `strict`, else warned about; a
    guessable token is refused unless `allow_weak`."""
    try:
        token = load_token(path, strict=strict)
        if token.host is not None:
            raise TokenError(
                f"{token.source} is the credential of the agent on {token.host}, not the "
                "controller's token (the one `netjobs token issue` read)"
            )
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


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:  # a hard link, a symbolic link, another spelling of the same path
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return Path(a).resolve() == Path(b).resolve()


def check_distinct(written: Sequence[tuple[str, str | None]], kept: Sequence[str | None]) -> None:
    """Raise UsageError when two files the run writes, `(what, path)`, are one file, or
    one of them is a file it must keep (the config): the last one written would replace
    the others, found only after the run."""
    named = [(what, path) for what, path in written if path and path != STDOUT]
    for index, (what, path) in enumerate(named):
        for other, other_path in named[:index]:
            if _same_file(path, other_path):
                raise UsageError(same_output_file(other, what, path))
        for keep in kept:
            if keep and _same_file(path, keep):
                raise UsageError(output_over_input(what, path))


def save_results(
    run: RunResult, json_path: str | os.PathLike[str], show: int = SHOW_BYTES
) -> list[Path]:
    """The CLI's `-l` logs (one per test) and its `--json` document, all in the JSON
    file's folder (the one the user chose), named as `-l` names them. Raises OSError."""
    json_path = Path(json_path)
    config_path = run.config_path or "netjobs"
    written = [
        logs.write_test_log(config_path, test, show, json_path.parent, run.run_id)
        for test in run.tests
    ]
    write_json(run, json_path)
    written.append(json_path)
    return written
