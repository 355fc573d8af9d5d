"""`netjobs-agent` / `python -m netjobs_agent`: command line, token, logging, event loop."""

# ruff: noqa: E402  (the Python version is checked before the other imports)
from __future__ import annotations

import sys

from netjobs_core.wire.python_version import require_python

require_python("netjobs-agent")

import asyncio
import gc
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from netjobs_core import __version__
from netjobs_core.wire import fd_limits, tokens

from . import envblock, server, spool

if TYPE_CHECKING:
    import argparse

PROG = "netjobs-agent"
ORPHAN_GRACE_S = 2.0  # --orphan-grace's default


def _port(text: str) -> int:
    import argparse

    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535 (0: any free port)")
    return value


def _seconds(text: str) -> float:
    import argparse

    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    # Here, not at the top: the start over SSH (stdio_main) parses nothing (~7 ms of it),
    # nor has it a port (wire.address, ~1 ms).
    import argparse

    from netjobs_core.wire.address import DEFAULT_PORT

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="NetJobs agent: runs the commands a NetJobs controller sends, "
        "started at the instant it asks for.",
    )
    parser.add_argument(
        "--bind",
        metavar="ADDR",
        action="append",
        help="address to listen on (repeatable; default: all IPv4 and IPv6 addresses)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free port)",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the shared token, or this agent's own credential (HOST.token "
        f"from `netjobs token issue`) (default: ${tokens.ENV_VAR}, "
        f"then {tokens.default_token_path()})",
    )
    parser.add_argument(
        "--strict-permissions",
        action="store_true",
        help="refuse a token file that group or others may read (default: warn)",
    )
    parser.add_argument(
        "--orphan-grace",
        type=_seconds,
        default=ORPHAN_GRACE_S,
        metavar="SECONDS",
        help="kill a test this long after its controller closed the connection (default 2)",
    )
    parser.add_argument(
        "--reconnect-grace",
        type=_seconds,
        default=server.DEFAULT_RECONNECT_GRACE_S,
        metavar="SECONDS",
        help="keep a test whose controller went silent (cut network, suspended controller) "
        "this long for it to reconnect and resume; a controller may ask for another value "
        f"per test (default {server.DEFAULT_RECONNECT_GRACE_S:g})",
    )
    parser.add_argument(
        "--spool-limit",
        type=int,
        default=spool.DEFAULT_LIMIT,
        metavar="BYTES",
        help="output of a test kept on disk and not yet sent, past which the command "
        f"waits (default {spool.DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--allow-weak-token",
        action="store_true",
        help="accept a token that looks guessable (short, few kinds of characters, words)",
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="print every output line of the commands on standard output too, as "
        "'[TEST COMMAND-ID STREAM] line'; lines a slow terminal cannot take are dropped "
        "and counted, never slowing a command",
    )
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="serve one controller on standard input/output, then exit (how a controller "
        "starts the agent over SSH: it sends a token of its own first; listens nowhere)",
    )
    parser.add_argument(
        "--no-realtime",
        action="store_true",
        help="release commands at ordinary priority (default: from a test's start message to "
        "its release at real-time priority where permitted, root or CAP_SYS_NICE, so that a "
        "busy CPU runs the agent at the instant; commands never inherit it)",
    )
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 2


def _load_token(token_file: str | None, strict: bool) -> tokens.Token:
    """The shared token; on a first start with none anywhere, a new token file."""
    try:
        return tokens.load_token(token_file, strict=strict)
    except tokens.TokenError:
        path = tokens.default_token_path()
        if token_file or os.environ.get(tokens.ENV_VAR, "").strip() or path.exists():
            raise  # a token was named but is unusable: say so, do not paper over it
    token = tokens.generate_token_file(path)
    print(f"generated a new token in {path}: copy this file to the controller", flush=True)
    return token


def _forget_env_token() -> None:
    """Out of this process's environment for good, NETJOBS_TOKEN's value included: a
    command could read it in /proc/<agent>/environ (agent/envblock.py)."""
    left = envblock.forget(tokens.ENV_VAR)
    if left:
        print(f"{PROG}: warning: {left}; prefer --token-file", file=sys.stderr, flush=True)


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    )
    logger = logging.getLogger("netjobs.agent")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _serve_stdio(orphan_grace: float, spool_limit: int, realtime: bool = True) -> int:
    _forget_env_token()  # the token comes on standard input
    try:
        return asyncio.run(
            server.serve_stdio(
                orphan_grace=orphan_grace, spool_limit=spool_limit, realtime=realtime
            )
        )
    except server.ListenError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0


def stdio_main() -> int:
    """`netjobs-agent --stdio --quiet` as a controller starts it over SSH
    (netjobs_core/ssh.py), without building and running the argument parser: argparse
    is ~7 ms of each agent's start, 8 of them sharing a host's CPUs in a cold run."""
    # The SSH start turns the collector off for the imports (netjobs_core/ssh.py); what
    # they made lives as long as the agent: out of the collector's sight for good, or
    # its first collections walk all of it (~4 ms of each start).
    gc.freeze()
    gc.enable()
    _setup_logging(quiet=True)
    fd_limits.raise_fd_limit()
    return _serve_stdio(ORPHAN_GRACE_S, spool.DEFAULT_LIMIT)


def main(argv: Sequence[str] | None = None) -> int:
    gc.enable()  # the SSH start turns it off for the imports (netjobs_core/ssh.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stdio and args.echo:
        parser.error("--echo cannot go with --stdio: standard output carries the protocol")
    _setup_logging(args.quiet)
    fd_limits.raise_fd_limit()  # the connection caps follow the limit in force
    if args.stdio:
        return _serve_stdio(args.orphan_grace, args.spool_limit, not args.no_realtime)
    try:
        token = _load_token(args.token_file, args.strict_permissions)
        if not args.allow_weak_token:
            tokens.refuse_weak(token)
    except tokens.TokenError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot create a token file: {exc}")
    finally:
        _forget_env_token()
    if token.warning:
        print(f"{PROG}: warning: {token.warning}", file=sys.stderr, flush=True)
    try:
        return asyncio.run(
            server.serve(
                token,
                hosts=args.bind,
                port=args.port,
                orphan_grace=args.orphan_grace,
                reconnect_grace=args.reconnect_grace,
                spool_limit=args.spool_limit,
                echo=args.echo,
                realtime=not args.no_realtime,
            )
        )
    except server.ListenError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        return 0


if __name__ == "__main__":
    sys.exit(main())
