"""The `netjobs` command line: run a config (NetJobs 2.x flags), `check`, `demo`."""

# ruff: noqa: E402  (the Python version is checked before the other imports)
from __future__ import annotations

import sys

from netjobs_core.wire.python_version import require_python

require_python("netjobs")

import argparse
import asyncio
import math
from collections.abc import Sequence

from netjobs_core import __version__, text
from netjobs_core.check import HostCheck, check_hosts
from netjobs_core.console import run_on_terminal
from netjobs_core.demo import main_demo
from netjobs_core.results import StartMode
from netjobs_core.runner import RunOptions
from netjobs_core.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    plan_addresses,
    read_plan,
    read_token,
    say,
)
from netjobs_core.wire import fd_limits


def _positive_seconds(value_text: str) -> float:
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value_text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {value_text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="shared token (default: $NETJOBS_TOKEN, "
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
        "--connect-timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for each agent to connect and answer (default 5)",
    )


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netjobs",
        description="Run the tests of a NetJobs config: every target's commands start at the "
        "same measured instant. Also: 'netjobs check CONFIG' (reach and measure the agents, run "
        "nothing) and 'netjobs demo' (a real run on three local agents).",
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
        "--start-mode",
        choices=[m.value for m in StartMode],
        default=StartMode.SCHEDULED.value,
        help="scheduled (default): all agents release at one instant of the "
        "controller's clock; sequential: each starts when told, like NetJobs 2.x",
    )
    parser.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="run no further tests once one has not passed",
    )
    _add_common(parser)
    parser.add_argument("--version", action="version", version=f"netjobs {__version__}")
    return parser


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
    plan = read_plan(path)
    if args.s:
        for line in text.plan_summary(plan):
            say(line, sys.stdout)
        say("config is valid; simulated run: nothing was contacted or started", sys.stdout)
        return EXIT_OK
    options = RunOptions(
        token=read_token(
            args.token_file, strict=args.strict_permissions, allow_weak=args.allow_weak_token
        ),
        start_mode=StartMode(args.start_mode),
        connect_timeout=args.connect_timeout,
        stop_on_failure=args.stop_on_failure,
    )
    outcome = asyncio.run(run_on_terminal(plan, options, args.v, args.l, args.json))
    return outcome.exit_code


def format_check(check: HostCheck) -> str:
    if check.error:
        state = "reachable, " if check.reachable else ""
        return f"{check.address!s:<24} FAILED  {state}{check.error}"
    # A busy agent answers but cannot run a test now: not ready.
    word, busy = (
        ("BUSY   ", f"busy with test {check.busy_with!r}") if check.busy else ("OK     ", "idle")
    )
    return (
        f"{check.address!s:<24} {word} agent {check.agent_version} on {check.hostname} "
        f"({check.platform}), {busy}, {text.host_line_numbers(check)}"
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
    plan = read_plan(args.config)
    token = read_token(
        args.token_file, strict=args.strict_permissions, allow_weak=args.allow_weak_token
    )
    checks = asyncio.run(check_hosts(plan_addresses(plan), token, args.connect_timeout))
    for check in checks:
        say(format_check(check), sys.stdout)
    good = sum(check.ok for check in checks)
    say(f"{good} of {len(checks)} agents ready", sys.stdout)
    return EXIT_OK if good == len(checks) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fd_limits.raise_fd_limit()  # one socket per host: 1000 hosts outgrow a soft limit of 1024
    try:
        if argv and argv[0] == "check":
            return _main_check(argv[1:])
        if argv and argv[0] == "demo":
            return main_demo(argv[1:])
        return _main_run(argv)
    except UsageError as exc:
        say(f"netjobs: {exc}", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("netjobs: interrupted", sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
