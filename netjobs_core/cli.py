"""The `netjobs` command line: run a config (NetJobs 2.x flags), `check`, `demo`,
`history` and `show` (past runs), `token` (agent credentials)."""

# ruff: noqa: E402  (the Python version is checked before the other imports)
from __future__ import annotations

import sys

from netjobs_core.wire.python_version import require_python

require_python("netjobs")

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netjobs_core import __version__, credentials, event_loop, text
from netjobs_core.check import HostCheck, check_hosts
from netjobs_core.config import Plan
from netjobs_core.console import run_on_terminal
from netjobs_core.demo import main_demo
from netjobs_core.history import History, HistoryError
from netjobs_core.nodesets import NO_GROUPS, GroupsError, load_groups
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.report import format_run
from netjobs_core.results import StartMode
from netjobs_core.results_json import INLINE_LIMIT, ResultsFileError, load_json
from netjobs_core.run import Outcome
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import DEFAULT_COLLECT_MAX, RunOptions
from netjobs_core.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
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
    from netjobs_core.ssh import SshOptions
from netjobs_core.wire import fd_limits


def _positive_seconds(value_text: str) -> float:
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value_text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {value_text}")
    return value


def _positive_count(value_text: str) -> int:
    try:
        value = int(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value_text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value_text}")
    return value


def _size(value_text: str) -> int:
    """`65536`, `64k`, `1M`, `2g` (binary units: text.parse_size)."""
    try:
        return text.parse_size(value_text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="the controller's token, which agents hold a copy of or their own credentials "
        "issued from (default: $NETJOBS_TOKEN, "
        "then the token file in your NetJobs config directory)",
    )
    parser.add_argument(
        "--strict-permissions",
        action="store_true",
        help="refuse a token file that group or others may read (default: warn)",
    )
    parser.add_argument(
        "--allow-weak-token",
        action="store_true",
        help="use a token that looks guessable (short, few kinds of characters, words)",
    )
    parser.add_argument(
        "--groups",
        metavar="FILE",
        help="groups file for '@name' targets: one 'name: nodeset' a line (e.g. 'web: web[01-16]')",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for each agent to connect and answer (default 5)",
    )
    parser.add_argument(
        "--ssh",
        action="store_true",
        help="reach every target over SSH and start the agent there for this run "
        "(a port in the config is then SSH's), as if each were written ssh://host",
    )
    parser.add_argument(
        "--ssh-accept-new",
        action="store_true",
        help="add the host key of an SSH host that known_hosts does not list "
        "(as StrictHostKeyChecking=accept-new; a changed key is still refused)",
    )
    parser.add_argument(
        "--ssh-agent",
        metavar="FILE",
        type=_existing_file,
        help="the one-file agent to send to SSH hosts without python3 >= 3.11 (default: "
        "netjobs-agent beside a one-file netjobs, else dist/netjobs-agent of the checkout)",
    )


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
        "runs), 'netjobs show RUN' (a past run's report) and 'netjobs token issue TARGET...' "
        "(each agent's own credential file).",
        epilog="Exit status: 0 every test passed and every result file was written; 1 a test "
        "did not pass, or a result file could not be written; 2 usage error (config, token, "
        "an output path that cannot be written: checked before anything runs).",
    )
    parser.add_argument(
        "-s",
        action="store_true",
        help="simulate: check the config, print the "
        "plan and what a run would do; no network, no commands",
    )
    parser.add_argument(
        "-v",
        action="store_true",
        help="verbose: show progress for each step (a live per-host display on a terminal)",
    )
    parser.add_argument(
        "-l",
        action="store_true",
        help="write a log file per test next to the config: <config>_<label>_<time>.log",
    )
    parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="path to the config file (asked for when missing)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="write all results to FILE as JSON; '-' writes them to standard output "
        "(for '| jq') and the reports to standard error",
    )
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="put the run's folder (results.json, every output whole, collected files) "
        "in DIR (default: runs/ in your NetJobs data directory)",
    )
    parser.add_argument(
        "--inline-limit",
        type=_size,
        default=INLINE_LIMIT,
        metavar="BYTES",
        help="outputs up to this size are written inside the JSON; larger ones are "
        f"referenced by their file in the run folder (default {INLINE_LIMIT // 1024**2}M)",
    )
    parser.add_argument(
        "--show-bytes",
        type=_size,
        default=SHOW_BYTES,
        metavar="BYTES",
        help="the report and the -l log show at most this much of each output, its head "
        f"and tail, and where the whole is (default {SHOW_BYTES // 1024}k)",
    )
    parser.add_argument(
        "--start-mode",
        choices=[m.value for m in StartMode],
        default=StartMode.SCHEDULED.value,
        help="scheduled (default): all agents release at one instant of the "
        "controller's clock; sequential: each starts when told, like NetJobs 2.x",
    )
    parser.add_argument(
        "--collect-max",
        type=_size,
        default=DEFAULT_COLLECT_MAX,
        metavar="SIZE",
        help="largest file -collect brings back, e.g. 200M or 4G (default "
        f"{text.size(DEFAULT_COLLECT_MAX)}); a larger one is a warning and is not copied",
    )
    parser.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="run no further tests once one has not passed",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_count,
        default=1,
        metavar="N",
        help="run each test N times in a row; the report adds the start spread's median "
        "and max and the concurrent window's minimum over the repetitions",
    )
    _add_no_fold(parser)
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="do not record this run in the run history ('netjobs history')",
    )
    _add_common(parser)
    parser.add_argument("--version", action="version", version=f"netjobs {__version__}")
    return parser


def _add_no_fold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-fold",
        action="store_true",
        help="report every host on its own (default: hosts with the same status and "
        "output once, under their folded names, as clush -b does; -v never folds)",
    )


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
        start_mode=StartMode(args.start_mode),
        connect_timeout=args.connect_timeout,
        stop_on_failure=args.stop_on_failure,
        repeat=args.repeat,
        run_folder=_run_folder(args.results),
        inline_limit=args.inline_limit,
        collect_max=args.collect_max,
    )
    outcome = event_loop.run(_run(plan, options, args))
    return outcome.exit_code


def _run_folder(parent: str | None) -> RunFolder:
    try:
        return RunFolder.create(parent)
    except OSError as exc:
        where = parent or "the NetJobs data directory"
        raise UsageError(
            f"cannot make the run's folder in {where}: {exc.strerror or exc}"
        ) from None


async def _run(plan: Plan, options: RunOptions, args: argparse.Namespace) -> Outcome:
    return await run_on_terminal(
        plan,
        options,
        args.v,
        args.l,
        args.json,
        ssh=_ssh_options(args),
        show=args.show_bytes,
        fold=not args.no_fold,
        in_history=not args.no_history,
    )


async def _check(plan: Plan, token: Token, args: argparse.Namespace) -> list[HostCheck]:
    addresses = plan_addresses(plan)
    async with ssh_dialer(addresses, _ssh_options(args)) as dialer:
        return await check_hosts(addresses, token, args.connect_timeout, dialer)


def format_check(check: HostCheck) -> str:
    if check.error:
        state = "reachable, " if check.reachable else ""
        return f"{check.address!s:<24} FAILED  {state}{check.error}"
    # A busy agent answers but cannot run a test now: not ready.
    word, busy = (
        ("BUSY   ", f"busy with test {check.busy_with!r}") if check.busy else ("OK     ", "idle")
    )
    return (
        f"{check.address!s:<24} {word} agent {text.field(check.agent_version)} on "
        f"{text.field(check.hostname)} ({text.field(check.platform)}), {busy}, "
        f"{text.credential(check.credential)}, {text.host_line_numbers(check)}"
    )


def _main_check(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="netjobs check",
        description="Reach and authenticate every agent of a config; report version, round trip "
        "and clock offset. Runs nothing.",
    )
    parser.add_argument("config", metavar="CONFIG")
    _add_common(parser)
    args = parser.parse_args(argv)
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
        "-n", type=_positive_count, default=20, metavar="N", help="how many (default 20)"
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
    parser.add_argument("--json", action="store_true", help="print its JSON document instead")
    _add_no_fold(parser)
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
        for test in record.tests:
            say(text.test_record_line(test), sys.stdout)
        return EXIT_FAILED
    try:
        if args.json:
            sys.stdout.write(record.json_path.read_text(encoding="utf-8"))
            return EXIT_OK
        run = load_json(record.json_path)
    except (OSError, ResultsFileError) as exc:
        say(f"netjobs: run {record.run_id}: {exc}", sys.stderr)
        return EXIT_FAILED
    say(format_run(run, fold=not args.no_fold), sys.stdout)
    if not record.ended:
        say(f"run {record.run_id}: {text.record_summary(record)} before its end", sys.stdout)
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


_SUBCOMMANDS = {
    "check": _main_check,
    "demo": main_demo,
    "history": _main_history,
    "show": _main_show,
    "token": _main_token,
}


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


if __name__ == "__main__":
    sys.exit(main())
