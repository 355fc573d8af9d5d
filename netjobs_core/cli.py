"""The `netjobs` command line: run a config (NetJobs 2.x flags), `check`, `demo`,
`history` and `show` (past runs), `token` (agent credentials), `schema` (of the results
document)."""

# ruff: noqa: E402  (the Python version is checked before the other imports)
from __future__ import annotations

import sys

from netjobs_core.wire.python_version import require_python

require_python("netjobs")

import argparse
import atexit
import contextlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from netjobs_core import __version__, credentials, event_loop, rerun, run_flags, text
from netjobs_core.config import Plan
from netjobs_core.console import run_on_terminal
from netjobs_core.history import History, HistoryError
from netjobs_core.nodesets import NO_GROUPS, GroupsError, load_groups
from netjobs_core.report import format_run
from netjobs_core.results import RunResult
from netjobs_core.results_csv import csv_text
from netjobs_core.results_json import ResultsFileError, load_json, read_document
from netjobs_core.run import Outcome
from netjobs_core.run_flags import (
    COMMON,
    add_flags,
    flag,
    make_run_folder,
    option_values,
    positive_count,
    run_values,
)
from netjobs_core.run_folder import OUTPUT_NAME
from netjobs_core.run_options import RunOptions
from netjobs_core.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STDOUT,
    UsageError,
    over_ssh,
    plan_addresses,
    read_plan,
    run_token,
    say,
    ssh_dialer,
)
from netjobs_core.wire.tokens import Token

if TYPE_CHECKING:
    from netjobs_core.check import HostCheck
    from netjobs_core.ssh import SshOptions
from netjobs_core.wire import fd_limits


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, COMMON)


def _ssh_options(args: argparse.Namespace) -> SshOptions | None:
    if not args.ssh_accept_new and args.ssh_agent is None:
        return None  # the defaults, without importing asyncssh for nothing
    from netjobs_core.ssh import SshOptions

    options = SshOptions(accept_new=args.ssh_accept_new)
    if args.ssh_agent is not None:
        options.executable = Path(args.ssh_agent)
    return options


def _read_plan(args: argparse.Namespace, path: str) -> Plan:
    plan = read_plan(path, args.groups)
    return over_ssh(plan) if args.ssh else plan


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netjobs",
        description="Run the tests of a NetJobs config: every target's commands start at the "
        "same measured instant. Also: 'netjobs check CONFIG' (reach and measure the agents, run "
        "nothing), 'netjobs demo' (a real run on three local agents), 'netjobs history' (past "
        "runs), 'netjobs show RUN' (a past run's report), 'netjobs token issue TARGET...' "
        "(each agent's own credential file) and 'netjobs schema' (the JSON Schema of the "
        "results).",
        epilog="Exit status: 0 every test passed and every result file was written; 1 a test "
        "did not pass, or a result file could not be written; 2 usage error (config, token, "
        "an output path that cannot be written: checked before anything runs).",
    )
    add_flags(parser, run_flags.RUN[:3])
    parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="path to the config file (asked for when missing)",
    )
    add_flags(parser, run_flags.RUN[3:])
    _add_common(parser)
    parser.add_argument("--version", action="version", version=f"netjobs {__version__}")
    return parser


def _past_run(ref: str) -> tuple[RunResult, str]:
    """A past run's results and its config's path, by its results folder or results.json,
    else by the run history's id (`netjobs show`'s RUN: its config's absolute path)."""
    config = ""
    if os.path.exists(ref):
        path = Path(ref) / "results.json" if os.path.isdir(ref) else Path(ref)
    else:
        try:
            with History() as history:
                record = history.find(ref)
        except HistoryError as exc:
            raise UsageError(str(exc)) from None
        path, config = record.json_path, record.config_path
    try:
        run = load_json(path)
    except (OSError, ResultsFileError) as exc:
        raise UsageError(f"--rerun-failed {ref}: {exc}") from None
    return run, config or run.config_path


def _rerun_plan(args: argparse.Namespace, failed: RunResult, path: str) -> Plan | None:
    """--rerun-failed: the config's tests on the hosts that did not succeed in the run
    `failed`; None when every host there succeeded."""
    hosts = rerun.failed_in(failed)
    if not hosts:
        return None
    plan = rerun.failed_hosts_plan(_read_plan(args, path), failed)
    names = text.members([host.short for host in hosts])
    if plan is None:
        raise UsageError(
            f"none of the hosts that failed in run {failed.run_id} is in {path}: {names}"
        )
    say(f"netjobs: run {failed.run_id} again on the hosts that failed in it: {names}", sys.stderr)
    return plan


def _ask_config_path() -> str:
    print("Path to the NetJobs config file: ", end="", flush=True, file=sys.stderr)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise UsageError("no config file given, and standard input is closed: pass CONFIG")
    path = line.strip().strip('"').strip("'")
    if not path:
        raise UsageError("no config file given")
    return path


def _main_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.q and args.v:
        raise UsageError("-q shows the verdicts only, -v every step: give one of them")
    if args.json == args.csv == STDOUT:
        raise UsageError("--json - and --csv - cannot both take standard output: give one a FILE")
    if args.rerun_failed:
        failed, config = _past_run(args.rerun_failed)
        path = args.config or config or _ask_config_path()
        rerun_plan = _rerun_plan(args, failed, path)
        if rerun_plan is None:
            say(
                f"netjobs: no host failed or timed out in run {failed.run_id}: nothing to run",
                sys.stdout,
            )
            return EXIT_OK
        plan = rerun_plan
    else:
        path = args.config or _ask_config_path()
        plan = _read_plan(args, path)
    if args.s:
        for line in text.plan_summary(plan):
            say(line, sys.stdout)
        say("config is valid; simulated run: nothing was contacted or started", sys.stdout)
        return EXIT_OK
    options = RunOptions(
        token=run_token(
            plan_addresses(plan),
            args.token_file,
            strict=args.strict_permissions,
            allow_weak=args.allow_weak_token,
        ),
        run_folder=make_run_folder(args.results),
        **option_values(vars(args)),
    )
    outcome = event_loop.run(_run(plan, options, args))
    return outcome.largest_exit_status if args.S else outcome.exit_code


async def _run(plan: Plan, options: RunOptions, args: argparse.Namespace) -> Outcome:
    return await run_on_terminal(
        plan,
        options,
        args.v,
        ssh=_ssh_options(args),
        fold=not args.no_fold,
        **run_values(vars(args)),
        quiet=args.q,
    )


async def _check(plan: Plan, token: Token, args: argparse.Namespace) -> list[HostCheck]:
    from netjobs_core.check import check_hosts  # a subcommand's: not at each run's start

    addresses = plan_addresses(plan)
    async with ssh_dialer(addresses, _ssh_options(args)) as dialer:
        return await check_hosts(addresses, token, args.connect_timeout, dialer)


def format_check(check: HostCheck) -> str:
    if check.error:
        state = "reachable, " if check.reachable else ""
        return (
            f"{check.address!s:<24} FAILED  {state}{text.beside_host(check.error, check.address)}"
        )
    # A busy agent answers but cannot run a test now: not ready.
    word, busy = (
        ("BUSY   ", text.busy_with(check.busy_with, check.busy_for, check.kept_s))
        if check.busy
        else ("OK     ", "idle")
    )
    priority = text.release_priority(check.realtime)
    return (
        f"{check.address!s:<24} {word} agent {text.field(check.agent_version)} on "
        f"{text.field(check.hostname)} ({text.field(check.platform)}), {busy}, "
        f"{text.credential(check.credential)}, {text.host_line_numbers(check)}"
        + (f", {priority}" if priority else "")
    )


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netjobs check",
        description="Reach and authenticate every agent of a config; report version, round trip "
        "and clock offset. Runs nothing.",
    )
    parser.add_argument("config", metavar="CONFIG")
    _add_common(parser)
    return parser


def _main_check(argv: Sequence[str]) -> int:
    args = _check_parser().parse_args(argv)
    plan = _read_plan(args, args.config)
    token = run_token(
        plan_addresses(plan),
        args.token_file,
        strict=args.strict_permissions,
        allow_weak=args.allow_weak_token,
    )
    checks = event_loop.run(_check(plan, token, args))
    for check in checks:
        say(format_check(check), sys.stdout)
    good = sum(check.ok for check in checks)
    say(f"{good} of {len(checks)} agents ready", sys.stdout)
    return EXIT_OK if good == len(checks) else EXIT_FAILED


def _main_history(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="netjobs history",
        description="List the recent runs, newest first: run id, start, outcome, config.",
    )
    parser.add_argument(
        "-n", type=positive_count, default=20, metavar="N", help="how many (default 20)"
    )
    args = parser.parse_args(argv)
    try:
        with History() as history:
            records = history.recent(args.n)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    if not records:
        say("no run recorded yet", sys.stdout)
    for record in records:
        say(text.history_line(record), sys.stdout)
    return EXIT_OK


def _main_show(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="netjobs show",
        description="Print a past run's report, as it was shown, from its results folder.",
    )
    parser.add_argument("run", metavar="RUN", help="its run id (or the start of it), or 'last'")
    printed = parser.add_mutually_exclusive_group()
    printed.add_argument("--json", action="store_true", help="print its JSON document instead")
    printed.add_argument(
        "--csv",
        action="store_true",
        help="print it as CSV instead: a row per command, a column per metric",
    )
    flag("no_fold").add_to(parser)
    args = parser.parse_args(argv)
    try:
        with History() as history:
            record = history.find(args.run)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    if not record.results_kept:
        say(
            f"netjobs: run {record.run_id}: its results were deleted ({record.json_path}); "
            f"the history recorded: {text.record_summary(record)}",
            sys.stderr,
        )
        # --json and --csv print the document or nothing: what the history kept is words
        where = sys.stderr if args.json or args.csv else sys.stdout
        for test in record.tests:
            say(text.test_record_line(test), where)
        return EXIT_FAILED
    notes = sys.stderr if args.json or args.csv else sys.stdout
    if not record.ended:  # the document holds what was written last, not what became of it
        say(text.stale_states(record), notes)
    try:
        document = read_document(record.json_path)
        run = load_json(record.json_path, document)
    except (OSError, ResultsFileError) as exc:
        say(f"netjobs: run {record.run_id}: {exc}", sys.stderr)
        return EXIT_FAILED
    ended = [(t.label, t.repetition, t.status) for t in record.tests]
    if record.ended and [(t.label, t.repetition, t.status) for t in run.tests] != ended:
        # It ended, but its last results.json could not be written (a full disk).
        say(text.unsaved_states(record), notes)
    if args.json:
        sys.stdout.write(document)
        return EXIT_OK
    if args.csv:
        sys.stdout.write(csv_text(run))
        return EXIT_OK
    say(format_run(run, fold=not args.no_fold), sys.stdout)
    if record.note:
        say(f"note: {text.printable(record.note)}", sys.stdout)
    if not record.ended:
        say(f"run {record.run_id}: {text.record_summary(record)} before its end", sys.stdout)
        # Its outputs went to disk as they came, whatever results.json says of them.
        for line in text.kept_outputs(record.results_dir, _outputs_in(record.results_dir)):
            say(line, sys.stdout)
    return EXIT_OK


def _outputs_in(folder: str) -> list[tuple[str, int]]:
    """The non-empty command outputs (run_folder.OUTPUT_NAME) under a run's folder, as
    (path in it, bytes); one removed meanwhile is left out."""
    found = []
    for path in sorted(Path(folder).glob("**/cmd*.std*")):
        with contextlib.suppress(OSError):  # (no `:=`: this module parses on old Pythons)
            size = path.stat().st_size if OUTPUT_NAME.fullmatch(path.name) else 0
            if size:
                found.append((str(path.relative_to(folder)), size))
    return found


def _main_note(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="netjobs note",
        description="Keep a note with a past run in the run history (shown by 'netjobs "
        "history' and on the History page); with no TEXT, print the run's note.",
    )
    parser.add_argument("run", metavar="RUN", help="its run id (or the start of it), or 'last'")
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the note ('' removes it)")
    args = parser.parse_args(argv)
    try:
        with History() as history:
            record = history.find(args.run)
            if args.text is not None:
                history.set_note(record.run_id, args.text.strip())
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    if args.text is None:
        say(text.printable(record.note) if record.note else "no note", sys.stdout)
    else:
        say(f"run {record.run_id}: note {'kept' if args.text.strip() else 'removed'}", sys.stdout)
    return EXIT_OK


def _token_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netjobs token",
        description="Per-host agent credentials (docs/security.md): 'issue' writes HOST.token "
        "for each target, its own secret derived from the controller's token; 'rotate' makes "
        "a new controller token and re-issues the agent files in --out (and the TARGETs).",
    )
    parser.add_argument("action", choices=["issue", "rotate"])
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="hosts as a config writes them; node sets (node[01-32], 10.0.0.[5-20], @group)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=".",
        help="where to write the agent files (default: the current folder)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="the controller's token (default: $NETJOBS_TOKEN, then the token file in your "
        "NetJobs config directory; created when missing)",
    )
    parser.add_argument("--groups", metavar="FILE", help="groups file for '@name' targets")
    return parser


def _main_token(argv: Sequence[str]) -> int:
    args = _token_parser().parse_args(argv)
    if args.action == "issue" and not args.targets:
        raise UsageError("token issue: name the TARGETs to issue agent files for")
    out = Path(args.out).expanduser()
    try:
        groups = load_groups(args.groups) if args.groups else NO_GROUPS
        hosts = credentials.target_hosts(args.targets, groups)
        if args.action == "rotate":
            hosts = list(dict.fromkeys(credentials.issued_hosts(out) + hosts))
            path = credentials.rotate(args.token_file)
            say(
                f"netjobs: a new controller token in {path}: every agent file issued "
                "before is refused from now on, and agents holding a copy of the old "
                "token need the new file",
                sys.stdout,
            )
        found = credentials.controller_token(args.token_file)
        if found.created:
            say(f"netjobs: created the controller's token: {found.token.source}", sys.stdout)
        written = credentials.issue(found.token, hosts, out)
    except (GroupsError, credentials.CredentialError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the agent files in {out}: {exc.strerror or exc}") from None
    for host, path in zip(hosts, written, strict=True):
        say(f"wrote {path} (the credential of {host})", sys.stdout)
    if written:
        say("give each agent its own file: netjobs-agent --token-file HOST.token", sys.stdout)
    return EXIT_OK


def _main_schema(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="netjobs schema",
        description="Print the JSON Schema (draft 2020-12) of the results document "
        "(results.json, --json): docs/results.md explains its fields.",
    ).parse_args(argv)
    from netjobs_core.results_schema import SCHEMA

    sys.stdout.write(json.dumps(SCHEMA, indent=2) + "\n")
    return EXIT_OK


def _main_demo(argv: Sequence[str]) -> int:
    from netjobs_core.demo import main_demo  # a subcommand's: not at each run's start

    return main_demo(argv)


_SUBCOMMANDS = {
    "check": _main_check,
    "demo": _main_demo,
    "history": _main_history,
    "schema": _main_schema,
    "note": _main_note,
    "show": _main_show,
    "token": _main_token,
}


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every argument parser of the command line: "" the run's, then each subcommand's
    by name; each is taken from its subcommand as that one makes it, so that what is
    built from them (the shell completion, the man page, docs/cli.md's synopsis:
    build_scripts/cli_files.py) cannot drift from what `netjobs` accepts."""

    def caught(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    found = {"": _run_parser()}
    parse_args = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = caught  # type: ignore[method-assign,assignment]
    try:
        for name, subcommand in _SUBCOMMANDS.items():
            try:
                subcommand([])
            except _Parsed as parsed:
                found[name] = parsed.parser
    finally:
        argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fd_limits.raise_fd_limit()  # one socket per host: 1000 hosts outgrow a soft limit of 1024
    try:
        if argv and argv[0] in _SUBCOMMANDS:
            return _SUBCOMMANDS[argv[0]](argv[1:])
        return _main_run(argv)
    except UsageError as exc:
        say(f"netjobs: {exc}", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("netjobs: interrupted", sys.stderr)
        return EXIT_FAILED


def command() -> NoReturn:
    """The `netjobs` program: main(), then out of the process without the interpreter's
    teardown. Freeing every module and object of a run (asyncssh, cryptography, the
    loop's) took 0.1 s of CPU after main returned, 8-10 % of a cold 8-host run's wall
    time; everything main wrote is whole on disk by then (atomic, fsync'd) and the
    exit handlers still run. With another thread alive, or an output that cannot be
    flushed, the ordinary exit, as Python does it."""
    code = main()
    if threading.active_count() > 1 or not _flushed():
        sys.exit(code)
    atexit._run_exitfuncs()
    _flushed()
    os._exit(code)


def _flushed() -> bool:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # closed, or None (no console)
        return False
    return True


if __name__ == "__main__":
    command()
