"""`netjobs demo`: a real synchronized run on three local agents, on loopback."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import netjobs_resources
from netjobs_core import event_loop
from netjobs_core.config import Plan
from netjobs_core.console import run_on_terminal
from netjobs_core.local_agents import AgentStartError, LocalAgent, start_agent
from netjobs_core.results import StartMode
from netjobs_core.run_options import RunOptions
from netjobs_core.session import UsageError, plan_addresses, read_plan
from netjobs_core.wire.address import Address
from netjobs_core.wire.tokens import Token


def demo_config() -> Path:
    """The shipped demo config: a file on disk in a checkout, a wheel and a PyInstaller
    bundle alike (none of them is imported from a zip)."""
    # Local agents run commands with the local shell: cmd.exe on Windows.
    name = "demo-windows.cfg" if sys.platform == "win32" else "demo.cfg"
    return Path(str(importlib.resources.files(netjobs_resources) / "examples" / name))


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1-65535): {value!r}")
    return int(value)


def _on_agents(plan: Plan, ports: dict[Address, Address]) -> Plan:
    """The plan with each target on the port its agent got."""
    tests = tuple(
        dataclasses.replace(
            test,
            commands=tuple(dataclasses.replace(c, address=ports[c.address]) for c in test.commands),
        )
        for test in plan.tests
    )
    return dataclasses.replace(plan, tests=tests)


def main_demo(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="netjobs demo",
        description="Start three agents on free ports of 127.0.0.1, run "
        "resources/examples/demo.cfg against them (its targets moved to those ports) with a "
        "fresh token, print the results with the measured start spread, stop them.",
    )
    parser.add_argument("-v", action="store_true", help="show progress for each step")
    parser.add_argument("--json", metavar="FILE", help="write the results to FILE as JSON")
    parser.add_argument(
        "--start-mode", choices=[m.value for m in StartMode], default=StartMode.SCHEDULED.value
    )
    parser.add_argument(
        "--config",
        default=None,
        help="another config to run (its targets must be 127.0.0.1; each distinct one "
        "gets an agent of its own)",
    )
    parser.add_argument(
        "--port-base",
        type=_port,
        default=0,
        metavar="PORT",
        help="start the agents on PORT, PORT+1... (default: ports the system says are free)",
    )
    args = parser.parse_args(argv)
    path = Path(args.config) if args.config else demo_config()
    plan = read_plan(path)
    addresses = plan_addresses(plan)
    if any(address.host not in ("127.0.0.1", "localhost") for address in addresses):
        raise UsageError(f"{path}: the demo only starts agents on 127.0.0.1")
    agents: list[LocalAgent] = []
    with tempfile.TemporaryDirectory(prefix="netjobs-demo-") as tmp:
        secret = secrets.token_urlsafe(32)
        token_file = Path(tmp) / "token"
        token_file.write_text(secret + "\n")
        token_file.chmod(0o600)
        try:
            for index in range(len(addresses)):
                port = args.port_base + index if args.port_base else 0
                agents.append(
                    start_agent(token_file, port=port, log=Path(tmp) / f"agent-{index + 1}.log")
                )
        except AgentStartError as exc:
            for agent in agents:
                agent.stop()
            raise UsageError(f"{exc} (is another program using the port?)") from None
        plan = _on_agents(
            plan,
            {a: Address(a.host, agent.port) for a, agent in zip(addresses, agents, strict=True)},
        )
        ports = ", ".join(str(agent.port) for agent in agents)
        print(
            f"demo: started {len(agents)} agents on 127.0.0.1 ports {ports} "
            f"with a fresh token; running {path}",
            file=sys.stderr,
            flush=True,
        )
        options = RunOptions(
            token=Token(secret.encode(), "demo token"), start_mode=StartMode(args.start_mode)
        )
        try:
            outcome = event_loop.run(run_on_terminal(plan, options, args.v, False, args.json))
        finally:
            for agent in agents:
                agent.stop()
            print("demo: agents stopped", file=sys.stderr, flush=True)
    return outcome.exit_code
