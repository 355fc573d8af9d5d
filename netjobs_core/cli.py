"""The `netjobs` command line: run a config (NetJobs 2.x flags), `check`, `demo`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from netjobs_core import __version__
from netjobs_core.check import HostCheck, check_hosts
from netjobs_core.config import ConfigError, Plan, load_config
from netjobs_core.events import Event, HostChanged, TestFinished, TestStarted
from netjobs_core.logs import ResultsFileError, write_json, write_test_log
from netjobs_core.report import format_test, live_table, plan_summary
from netjobs_core.results import RunResult, StartMode
from netjobs_core.runner import Runner, RunOptions
from netjobs_core.wire.tokens import Token, TokenError, load_token

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


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
        "--connect-timeout",
        type=float,
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
    parser.add_argument("--json", metavar="FILE", help="write all results to FILE as JSON")
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


def _load_token(path: str | None, strict: bool = False) -> Token:
    try:
        token = load_token(path, strict=strict)
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    if token.warning:
        print(f"netjobs: warning: {token.warning}", file=sys.stderr)
    return token


def _load_plan(path: str) -> Plan:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _ask_config_path() -> str:
    print("Path to the NetJobs config file: ", end="", flush=True, file=sys.stderr)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise UsageError("no config file given, and standard input is closed: pass CONFIG")
    path = line.strip().strip('"').strip("'")
    if not path:
        raise UsageError("no config file given")
    return path


class _Progress:
    """-v without a terminal: one line per step."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.write(f"[{event.test.label}] starting: {len(event.test.hosts)} hosts")
        elif isinstance(event, HostChanged):
            host = event.host
            extra = (
                f": {host.error}" if host.error and host.state.value in ("failed", "killed") else ""
            )
            if host.state.value == "ready" and host.clock_offset_ms is not None:
                extra = (
                    f" (rtt {host.rtt_ms:.3f} ms, clock offset {host.clock_offset_ms:+.3f} "
                    f"+/- {host.clock_uncertainty_ms:.3f} ms)"
                )
            self.write(f"[{event.test.label}] {host.target}: {host.state.value}{extra}")
        elif isinstance(event, TestFinished):
            self.write(f"[{event.test.label}] {event.test.status.value}")


async def run_plan(
    plan: Plan, options: RunOptions, verbose: bool, log: bool, json_path: str | None, out=None
) -> RunResult:
    out = out or sys.stdout
    err = sys.stderr
    live = None
    observers: list[Callable[[Event], None]] = []
    if verbose and err.isatty():
        live = live_table()
        observers.append(live.observe)
    elif verbose:
        observers.append(_Progress(lambda line: print(line, file=err, flush=True)))

    def observe(event: Event) -> None:
        for observer in observers:
            observer(event)
        if isinstance(event, TestFinished):
            if live is not None:
                live.finish_test()
            print(format_test(event.test), file=out, flush=True)
            if log:
                try:
                    path = write_test_log(plan.path, event.test)
                    print(f"log written to {path}", file=err, flush=True)
                except OSError as exc:
                    print(
                        f"netjobs: cannot write the log for {event.test.label!r}: {exc}", file=err
                    )

    runner = Runner(plan, options, observe)
    loop = asyncio.get_running_loop()
    installed = _install_stop(loop, runner, err)
    try:
        result = await runner.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if live is not None:
            live.close()
        if json_path:
            try:
                write_json(runner.result, json_path)
                print(f"results written to {json_path}", file=err, flush=True)
            except (OSError, ResultsFileError) as exc:
                print(f"netjobs: cannot write {json_path}: {exc}", file=err)
    return result


def _install_stop(loop: asyncio.AbstractEventLoop, runner: Runner, err) -> list[int]:
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


def _main_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    path = args.config or _ask_config_path()
    plan = _load_plan(path)
    if args.s:
        for line in plan_summary(plan):
            print(line)
        print("config is valid; simulated run: nothing was contacted or started")
        return EXIT_OK
    options = RunOptions(
        token=_load_token(args.token_file, args.strict_permissions),
        start_mode=StartMode(args.start_mode),
        connect_timeout=args.connect_timeout,
        stop_on_failure=args.stop_on_failure,
    )
    result = asyncio.run(run_plan(plan, options, args.v, args.l, args.json))
    return EXIT_OK if result.passed and result.tests else EXIT_FAILED


def format_check(check: HostCheck) -> str:
    if not check.ok:
        state = "reachable, " if check.reachable else ""
        return f"{check.address!s:<24} FAILED  {state}{check.error}"
    busy = "busy" if check.busy else "idle"
    return (
        f"{check.address!s:<24} OK      agent {check.agent_version} on {check.hostname} "
        f"({check.platform}), {busy}, rtt {check.rtt_ms:.3f} ms, clock offset "
        f"{check.clock_offset_ms:+.3f} ms +/- {check.clock_uncertainty_ms:.3f} ms"
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
    plan = _load_plan(args.config)
    token = _load_token(args.token_file, args.strict_permissions)
    addresses = list(dict.fromkeys(a for test in plan.tests for a in test.addresses))
    checks = asyncio.run(check_hosts(addresses, token, args.connect_timeout))
    for check in checks:
        print(format_check(check))
    good = sum(check.ok for check in checks)
    print(f"{good} of {len(checks)} agents ready")
    return EXIT_OK if good == len(checks) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "check":
            return _main_check(argv[1:])
        if argv and argv[0] == "demo":
            from netjobs_core.demo import main_demo

            return main_demo(argv[1:])
        return _main_run(argv)
    except UsageError as exc:
        print(f"netjobs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("netjobs: interrupted", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
