"""-collect throughput and memory, and the cost of carrying the start instant through the gate.

    .venv/bin/python bench/collect.py [--sizes 64,256] [--hosts 4] [--gate-runs 300]

1. Collected files: HOSTS local agents (127.0.0.1, one port each) each write a random
   file of SIZE MiB, and one run collects them all. Prints per size the wall time of
   the transfer (from the last command's end to the test's end), the aggregate
   throughput, the controller's peak RSS growth and the largest agent peak RSS: a
   streamed transfer keeps both flat whatever the size.
2. The gate: a gated /bin/sh released by one write, first with the old one-byte
   release line (`read -r _`), then with the start instant (`read -r
   NETJOBS_START_EPOCH_NS; export ...`): the time from the write to the shell's
   first builtin (median and p99, in us). The shell reads a pipe byte by byte, so
   the ~20-byte line costs a few more reads; the same on every host, so no spread.

Finishes in well under three minutes on an idle two-CPU machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from netjobs_agent import oskit
from netjobs_core.config import parse_config
from netjobs_core.local_agents import LocalAgent, start_agent
from netjobs_core.results import TestStatus
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.wire.tokens import Token

MIB = 2**20


def _rss_kib(pid: int | None = None) -> int:
    """Peak resident set (VmHWM) of PID, or of this process."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _collect_once(agents: list[LocalAgent], token: Token, size_mib: int, work: Path):
    lines = ["t:", f"-collect: {work}/f-$NETJOBS_INDEX.bin"]
    for agent in agents:
        lines.append(
            f'127.0.0.1:{agent.port}: "head -c {size_mib * MIB} /dev/urandom'
            f' > {work}/f-$NETJOBS_INDEX.bin"'
        )
    plan = parse_config("\n".join([*lines, "end", ""]), "bench.cfg")
    folder = RunFolder.create(work / "runs")
    options = RunOptions(token=token, run_folder=folder, collect_max=None)
    rss_before = _rss_kib()
    run = await Runner(plan, options).run()
    [test] = run.tests
    assert test.status is TestStatus.PASSED, test.reason
    ends = [
        c.started_at + c.duration_s
        for h in test.hosts
        for c in h.commands
        if c.started_at and c.duration_s
    ]
    assert test.started_at is not None and test.duration_s is not None
    transfer = test.started_at + test.duration_s - max(ends)
    total = sum(c.bytes for h in test.hosts for cmd in h.commands for c in cmd.collected)
    assert total == size_mib * MIB * len(agents)
    return transfer, total, _rss_kib() - rss_before


def bench_collect(sizes: list[int], hosts: int) -> None:
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-") as tmp:
        work = Path(tmp)
        secret = secrets.token_urlsafe(32)
        token_file = work / "token"
        token_file.write_text(secret + "\n")
        token_file.chmod(0o600)
        token = Token(secret.encode(), "bench token")
        agents = [start_agent(token_file) for _ in range(hosts)]
        try:
            print(f"collected files, {hosts} agents on loopback (one file each)")
            print(
                f"{'MiB/host':>9} {'transfer s':>11} {'MiB/s':>8} {'ctl RSS +MiB':>13} "
                f"{'agent peak MiB':>15}"
            )
            for size in sizes:
                transfer, total, grown = asyncio.run(_collect_once(agents, token, size, work))
                for path in work.glob("f-*.bin"):
                    path.unlink()
                agent_peak = max(_rss_kib(a.process.pid) for a in agents)
                print(
                    f"{size:>9} {transfer:>11.2f} {total / MIB / transfer:>8.0f} "
                    f"{grown / 1024:>13.1f} {agent_peak / 1024:>15.1f}"
                )
        finally:
            for agent in agents:
                agent.stop()


def _gate_latency(prefix: str, line: bytes, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            ["/bin/sh", "-c", prefix + "printf x"], stdin=read_fd, stdout=subprocess.PIPE
        )
        os.close(read_fd)
        assert proc.stdout is not None
        time.sleep(0.003)  # let the shell reach its read
        before = time.perf_counter_ns()
        os.write(write_fd, line)
        proc.stdout.read(1)
        samples.append((time.perf_counter_ns() - before) / 1000)
        os.close(write_fd)
        proc.wait()
    return samples


def bench_gate(runs: int) -> None:
    old = ("IFS= read -r _ || exit 125; exec </dev/null; ", b"\n")
    new = (oskit.GATE_PREFIX, oskit.gate_release(time.time_ns()))
    print(f"\ngate release to the shell's first builtin, {runs} runs each (us)")
    print(f"{'release line':<28} {'median':>8} {'p99':>8}")
    for name, (prefix, line) in (
        ("1 byte (before)", old),
        (f"{len(new[1])} bytes (start instant)", new),
    ):
        samples = sorted(_gate_latency(prefix, line, runs))
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        print(f"{name:<28} {statistics.median(samples):>8.0f} {p99:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,256", help="MiB per host, comma-separated")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--gate-runs", type=int, default=300)
    args = parser.parse_args()
    bench_collect([int(s) for s in args.sizes.split(",")], args.hosts)
    bench_gate(args.gate_runs)


if __name__ == "__main__":
    main()
