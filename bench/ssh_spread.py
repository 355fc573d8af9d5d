#!/usr/bin/env python3
"""Start spread over SSH next to the same hosts with installed agents.

Makes N network namespaces (tests/ssh_lab.py: one real sshd each, with names and /24
subnets of this run's own, tests/netlab.py, so it may run next to the suite), starts an
installed agent in each too (`python -m netjobs_agent` on port 16192 there),
then runs --repeats one-test plans of `date +%s%N` on every host, alternating
the two ways of reaching them: ssh:// targets (one SSH connection and one agent
per host for the run) and plain targets (the installed agents). It prints, per
way: the start spread as the runner reports it and from the commands' own
timestamps (p50 / max), the reported uncertainty, the largest round trip, and the
median time from the test's start to the commands being ready (connect + deploy +
clock + prepare). Needs root, iproute2, sshd.

    sudo .venv/bin/python bench/ssh_spread.py                 # 8 hosts, 10 repeats: ~1 min
    sudo .venv/bin/python bench/ssh_spread.py --hosts 4 --repeats 20

With --delays, unequal paths instead: one sshd per host on 127.0.0.1, each behind its
own delay proxy (bench/delay_proxy.py: one-way delays spread over 0.2-10 ms), and the
scheduled start alternating with the sequential one (NetJobs 2.x's), both over SSH.

    sudo .venv/bin/python bench/ssh_spread.py --delays        # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ssh_lab import Lab, loopback_lab, ssh_lab  # noqa: E402
from start_spread import Proxy, spread_delays, start_proxy  # noqa: E402

from netjobs_core.config import parse_config  # noqa: E402
from netjobs_core.links import Links  # noqa: E402
from netjobs_core.local_agents import LocalAgent, start_agent  # noqa: E402
from netjobs_core.results import StartMode, TestResult, TestStatus  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.runner import run_test  # noqa: E402
from netjobs_core.ssh import SshDialer  # noqa: E402
from netjobs_core.wire.tokens import Token, generate_token_file  # noqa: E402


def _plan(lab: Lab, ssh: bool) -> str:
    prefix = "ssh://" if ssh else ""
    lines = "".join(f'{prefix}{h.address}: "date +%s%N"\n' for h in lab.hosts)
    return f"t:\n{lines}end\n"


def _figures(test: TestResult, took_s: float) -> dict[str, float]:
    stamps = [int(h.commands[0].stdout.read_bytes()) for h in test.hosts]
    return {
        "spread": test.start_spread_ms or 0.0,
        "stamps": (max(stamps) - min(stamps)) / 1e6,
        "uncertainty": test.start_spread_uncertainty_ms or 0.0,
        "rtt": max(h.rtt_ms or 0.0 for h in test.hosts),
        "took": took_s,
    }


async def _measure(lab: Lab, token: Token, repeats: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"ssh": [], "installed": []}
    failed = {"ssh": 0, "installed": 0}
    links = Links()  # each host's link kept from test to test, as in one run
    async with SshDialer(lab.options()) as dialer:
        options = RunOptions(token=token, connect_timeout=10, dialer=dialer)
        plans = {way: parse_config(_plan(lab, way == "ssh")).tests[0] for way in results}
        for way in results:  # warm-up: the first SSH test uploads the agent and connects
            await run_test(plans[way], options, links=links)
        for repeat in range(repeats):
            for way in ("ssh", "installed") if repeat % 2 == 0 else ("installed", "ssh"):
                began = time.monotonic()
                test = await asyncio.wait_for(run_test(plans[way], options, links=links), 60)
                if test.status is TestStatus.PASSED:
                    results[way].append(_figures(test, time.monotonic() - began))
                else:
                    failed[way] += 1
                    print(f"{way}: test failed: {test.reason}", file=sys.stderr)
        await links.close()
    return results


async def _measure_modes(
    lab: Lab, proxies: list[Proxy], repeats: int
) -> dict[str, list[dict[str, float]]]:
    lines = "".join(f'ssh://127.0.0.1:{p.port}: "date +%s%N"\n' for p in proxies)
    test = parse_config(f"t:\n{lines}end\n").tests[0]
    token = Token(os.urandom(32), "unused: every target is over SSH")
    results: dict[str, list[dict[str, float]]] = {"scheduled": [], "sequential": []}
    links = Links()  # each host's link kept from test to test, as in one run
    async with SshDialer(lab.options()) as dialer:
        modes = {way: RunOptions(token, StartMode(way), 10, dialer=dialer) for way in results}
        await run_test(test, modes["scheduled"], links=links)  # warm-up: uploads, connections
        for repeat in range(repeats):
            for way in (
                ("scheduled", "sequential") if repeat % 2 == 0 else ("sequential", "scheduled")
            ):
                began = time.monotonic()
                result = await asyncio.wait_for(run_test(test, modes[way], links=links), 60)
                if result.status is TestStatus.PASSED:
                    results[way].append(_figures(result, time.monotonic() - began))
                else:
                    print(f"{way}: test failed: {result.reason}", file=sys.stderr)
        await links.close()
    return results


def _delays(base: Path, hosts: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    with loopback_lab(base, hosts) as lab:
        proxies: list[Proxy] = []
        try:
            for host, delay in zip(lab.hosts, spread_delays(hosts, 0.2, 10.0, 1), strict=True):
                proxies.append(start_proxy(host.port, delay, 0.1, host.n, base / "proxy.log"))
                lab.trust(host, proxies[-1].port)
            return asyncio.run(_measure_modes(lab, proxies, repeats))
        finally:
            for proxy in proxies:
                proxy.stop()


def _table(results: dict[str, list[dict[str, float]]], hosts: int) -> str:
    rows = [
        f"| {hosts} hosts | spread p50 / max (ms) | timestamps p50 / max (ms) "
        "| uncertainty p50 (ms) | rtt max (ms) | test p50 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for way, runs in results.items():
        if not runs:
            rows.append(f"| {way} | no test passed | | | | |")
            continue

        def col(key: str, runs: list[dict[str, float]] = runs) -> list[float]:
            return [run[key] for run in runs]

        rows.append(
            f"| {way} ({len(runs)} tests) "
            f"| {statistics.median(col('spread')):.3f} / {max(col('spread')):.3f} "
            f"| {statistics.median(col('stamps')):.3f} / {max(col('stamps')):.3f} "
            f"| {statistics.median(col('uncertainty')):.3f} "
            f"| {max(col('rtt')):.3f} | {statistics.median(col('took')):.2f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--delays", action="store_true", help="unequal paths: scheduled vs sequential over SSH"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    os.environ.pop("SSH_AUTH_SOCK", None)
    with tempfile.TemporaryDirectory(prefix="njs-bench-") as tmp:
        base = Path(tmp)
        (base / "lab").mkdir()
        if args.delays:
            print(_table(_delays(base / "lab", args.hosts, args.repeats), args.hosts))
            return 0
        with ssh_lab(base / "lab", args.hosts) as lab:
            token_path = base / "token"
            agents: list[LocalAgent] = []
            try:
                token = generate_token_file(token_path)
                for host in lab.hosts:
                    agents.append(
                        start_agent(
                            token_path,
                            port=16192,
                            bind=host.address,
                            launcher=["ip", "netns", "exec", host.ns],
                        )
                    )
                results = asyncio.run(_measure(lab, token, args.repeats))
            finally:
                for agent in agents:
                    agent.stop()
    print(_table(results, args.hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
