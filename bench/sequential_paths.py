#!/usr/bin/env python3
"""`--start-mode sequential` against NetJobs 2.3 on unequal paths (issue 19, point 5).

Each host is a network namespace joined to this one by a packet-level delay line
(bench/delay_line.py: each IP packet held for its path's one-way delay, default
0.5 / 5 / 10 / 20 ms), so the controller's starts reach the hosts that much apart, as
they did where the issue measured NetJobs' sequential start at 23-25 ms against 19.4-19.8
for NetJobs 2.3. On every host the command appends the static stamp binary's reading
(start_spread.py's: its first act reads CLOCK_REALTIME) to a file of its own; one
machine, one clock, so the stamps compare directly. Blocks of `--block` tests
alternate: NetJobs 2.3 (its own controller and agents, from `--netjobs23 DIR`, a
checkout of github.com/TheOtherOtherOperation/NetJobs; left out without it), this
build's sequential start, and its scheduled start. Per mode it prints the stamps'
spread (p50 / p95 / max) and, per host, its "excess": its stamp's distance from the
nearest host's, less the difference of their path delays (the path alone explains
the rest), p50 and max.

    flock /tmp/netjobs-bench.lock .venv/bin/python bench/sequential_paths.py --netjobs23 /tmp/nj23

Root (namespaces and TUN devices) and a C compiler; Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench", ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import delay_line  # noqa: E402
import netlab  # noqa: E402
import start_spread  # noqa: E402

from netjobs_core.config import parse_config  # noqa: E402
from netjobs_core.local_agents import LocalAgent, start_agent  # noqa: E402
from netjobs_core.results import StartMode, TestStatus  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.runner import Runner  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402

OURS_PORT = 16193  # NetJobs 2.3's agents hold 16192 in the same namespaces
NETJOBS23 = "NetJobs 2.3"
SEQUENTIAL = "NetJobs sequential"
SCHEDULED = "NetJobs scheduled"
RUN_TIMEOUT_S = 300.0
AGENT_START_S = 15.0


@dataclass
class Mode:
    name: str
    stamps: list[list[int]] = field(default_factory=list)  # ns, per test and host
    failures: list[str] = field(default_factory=list)


def config_text(label: str, commands: list[str], targets: list[str], tests: int) -> str:
    lines = []
    for n in range(tests):
        lines += [f"{label}{n}:", "-generaltimeout: 30s", "-minhosts: all"]
        lines += [
            f'{target}: "{command}"' for target, command in zip(targets, commands, strict=True)
        ]
        lines.append("end")
    return "\n".join(lines) + "\n"


def read_stamps(files: list[Path]) -> list[list[int]]:
    """Per test, each host's stamp (ns); the files hold one line per test each."""
    columns = [[int(line) for line in file.read_text().split()] for file in files]
    if len({len(column) for column in columns}) != 1:
        raise RuntimeError(f"hosts stamped {[len(c) for c in columns]} tests: not one each")
    return [list(row) for row in zip(*columns, strict=True)]


def excess(stamps: list[int], delays_ms: list[float]) -> dict[int, float]:
    """Per host but the nearest: its stamp's distance from the nearest host's, less the
    difference of their paths (ms)."""
    near = min(range(len(delays_ms)), key=lambda i: delays_ms[i])
    return {
        i: (stamp - stamps[near]) / 1e6 - (delays_ms[i] - delays_ms[near])
        for i, stamp in enumerate(stamps)
        if i != near
    }


def start_netjobs23_agents(
    source: Path, hosts: list[netlab.Namespace], work: Path
) -> list[subprocess.Popen[bytes]]:
    """NetJobs 2.3's agent in each host (port 16192), once each says it listens (its
    first line: a probe connection would not do, as a bare connect-and-close leaves
    that agent spinning). Its output goes to a file: it prints a countdown after every
    test."""
    agents = []
    for n, host in enumerate(hosts):
        with open(work / f"netjobs23-agent{n}.out", "wb") as out:
            agents.append(
                subprocess.Popen(
                    [*host.launcher, sys.executable, "-u", str(source / "NetJobsAgent.py")],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + AGENT_START_S
    for n, agent in enumerate(agents):
        said = work / f"netjobs23-agent{n}.out"
        while b"listening" not in said.read_bytes():
            if agent.poll() is not None or time.monotonic() > deadline:
                for started in agents:
                    started.kill()
                    started.wait()
                tail = said.read_bytes()[-300:].decode(errors="replace")
                raise RuntimeError(f"NetJobs 2.3's agent {n} did not listen: {tail}")
            time.sleep(0.02)
    return agents


def run_netjobs23(source: Path, config: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(source / "NetJobs.py"), str(config)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"NetJobs 2.3 exited {done.returncode}: {done.stdout[-300:]}")


async def run_ours(config: Path, text: str, token: Token, mode: StartMode) -> None:
    plan = parse_config(text, str(config))
    result = await Runner(plan, RunOptions(token=token, start_mode=mode)).run()
    failed = [t.label for t in result.tests if t.status is not TestStatus.PASSED]
    if failed:
        raise RuntimeError(f"tests {failed} did not pass")


def report(modes: list[Mode], delays_ms: list[float]) -> list[str]:
    far = sorted(range(len(delays_ms)), key=lambda i: delays_ms[i])[1:]
    lines = [
        "| start | tests | stamps spread p50 / p95 / max (ms) | "
        + " | ".join(f"excess at {delays_ms[i]:g} ms, p50 / max (ms)" for i in far)
        + " |",
        "|---|---:|---|" + "---|" * len(far),
    ]
    for mode in modes:
        if not mode.stamps:
            continue
        spreads = [(max(test) - min(test)) / 1e6 for test in mode.stamps]
        gaps = [excess(test, delays_ms) for test in mode.stamps]
        cells = [
            f"{statistics.median(g[i] for g in gaps):+.2f} / {max(g[i] for g in gaps):+.2f}"
            for i in far
        ]
        lines.append(
            f"| {mode.name} | {len(spreads)} | {statistics.median(spreads):.2f} / "
            f"{start_spread.percentile(spreads, 0.95):.2f} / {max(spreads):.2f} | "
            + " | ".join(cells)
            + " |"
        )
    for mode in modes:
        for failure in mode.failures:
            lines.append(f"- {mode.name}: {failure}")
    return lines


async def main_async(args: argparse.Namespace) -> int:
    delays_ms = [float(d) for d in args.paths.split(",")]
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="netjobs-seq-")))
        helpers = start_spread.compile_helpers(work)
        if helpers.stamp is None:
            print(f"no stamp binary: {helpers.error}", file=sys.stderr)
            return 2
        hosts = [stack.enter_context(netlab.Namespace("q", tun=True)) for _ in delays_ms]
        line = stack.enter_context(delay_line.DelayLine(list(zip(hosts, delays_ms, strict=True))))
        secret = secrets.token_urlsafe(32)
        token_file = work / "token"
        token_file.touch(0o600)
        token_file.write_text(secret + "\n")
        token = Token(secret.encode(), "benchmark token")
        agents: list[LocalAgent] = []
        stack.callback(lambda: [agent.kill() for agent in agents])
        for host in hosts:
            agents.append(
                start_agent(token_file, port=OURS_PORT, bind=host.address, launcher=host.launcher)
            )
        if args.netjobs23:
            old = start_netjobs23_agents(args.netjobs23, hosts, work)
            stack.callback(lambda: [(p.kill(), p.wait()) for p in old])
        modes = [Mode(NETJOBS23)] if args.netjobs23 else []
        modes += [Mode(SEQUENTIAL), Mode(SCHEDULED)]
        for block in range(args.blocks):
            for mode in modes:
                tag = f"{mode.name.split()[-1]}{block}"
                files = [work / f"{tag}-h{i}" for i in range(len(hosts))]
                commands = [f"{helpers.stamp} >> {file}" for file in files]
                if mode.name == NETJOBS23:
                    targets = [host.address for host in hosts]
                else:
                    targets = [f"{host.address}:{OURS_PORT}" for host in hosts]
                config = work / f"{tag}.cfg"
                text = config_text(tag, commands, targets, args.block)
                config.write_text(text)
                try:
                    if mode.name == NETJOBS23:
                        run_netjobs23(args.netjobs23, config)
                    else:
                        how = StartMode(mode.name.split()[-1])
                        await run_ours(config, text, token, how)
                    mode.stamps += read_stamps(files)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    mode.failures.append(f"block {block}: {exc}")
                print(f"block {block} {mode.name}: done", file=sys.stderr, flush=True)
    print(
        f"Paths (one-way): {' / '.join(f'{d:g}' for d in delays_ms)} ms, a packet-level delay "
        f"line; {args.blocks} blocks of {args.block} tests per start, alternated; "
        f"{start_spread.machine()[0]}."
    )
    print()
    print("\n".join(report(modes, delays_ms)))
    print()
    print(line.summary)
    if args.json:
        found = {"paths_ms": delays_ms, "stamps_ns": {mode.name: mode.stamps for mode in modes}}
        args.json.write_text(json.dumps(found))
    return 1 if any(mode.failures for mode in modes) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="0.5,5,10,20", help="one-way delays, ms")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--block", type=int, default=4, help="tests per block")
    parser.add_argument("--json", type=Path, help="write each test's stamps (ns) to FILE")
    parser.add_argument(
        "--netjobs23", type=Path, help="a checkout of NetJobs 2.3 (NetJobs.py, NetJobsAgent.py)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: network namespaces and TUN devices")
    if args.netjobs23 and not (args.netjobs23 / "NetJobsAgent.py").is_file():
        parser.error(f"--netjobs23 {args.netjobs23}: no NetJobsAgent.py there")
    try:
        return asyncio.run(main_async(args))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"sequential_paths: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
