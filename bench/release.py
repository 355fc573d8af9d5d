"""How late one agent releases a gated test after the instant it was asked for.

    .venv/bin/python bench/release.py [--repeats 20] [--commands 3] [--lead-ms 100]

One real agent on 127.0.0.1 (a fresh token in a temporary directory). Each repeat reads
the agent's clock (a ping), asks for a gated start LEAD ms later, runs COMMANDS `true`s
and reads the agent's `started`: its `released_at` per command and `late_ns`. Prints
the lateness of the first release after the requested instant, and the spread of the
releases over the commands: median, p95 (nearest rank) and max, in ms.

The reference bounds (formerly asserted in tests/test_agent.py): every repeat < 20 ms
late, median lateness < 5 ms, median spread < 5 ms (~0.02 ms on a quiet 2-CPU machine).
The exit status is 1 when a figure is over its bound (`--max-late-ms`,
`--max-median-late-ms`, `--max-median-spread-ms`; 0 disables a bound): run it on a
quiet machine, as every timing figure here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from netjobs_core.client import AgentLink
from netjobs_core.local_agents import LocalAgent, start_agent
from netjobs_core.wire.address import Address
from netjobs_core.wire.messages import Finished, Prepare, Prepared, Start, Started

TIMEOUT_S = 30.0


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def measure(agent: LocalAgent, secret: bytes, repeats: int, count: int, lead_ms: float):
    """(lateness, spread) in ms, one pair per repeat."""
    link = AgentLink(Address.parse(f"127.0.0.1:{agent.port}"), secret)
    await link.connect(TIMEOUT_S)
    late_ms: list[float] = []
    spread_ms: list[float] = []
    try:
        async with asyncio.timeout(TIMEOUT_S * (repeats + 1)):
            for index in range(repeats):
                sample = await link.ping(kernel_stamps=False)
                at = sample.agent + int(lead_ms * 1e6)
                commands = [{"id": i, "command": "true"} for i in range(1, count + 1)]
                label = f"release {index}"
                prepare = Prepare(label=label, commands=commands)
                prepared = await link.request(prepare, Prepared, TIMEOUT_S)
                assert prepared.gated, "this agent cannot gate its commands"
                started = await link.request(Start(at=at), Started, TIMEOUT_S)
                while not isinstance(await link.recv(), Finished):
                    pass
                released = list(started.released_at.values())
                assert len(released) == count and min(released) >= at, started
                assert started.late_ns == min(released) - at, started
                late_ms.append((min(released) - at) / 1e6)
                spread_ms.append((max(released) - min(released)) / 1e6)
    finally:
        await link.close()
    return late_ms, spread_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--commands", type=int, default=3, help="gated `true`s per test")
    parser.add_argument("--lead-ms", type=float, default=100.0, help="start this long ahead")
    parser.add_argument("--max-late-ms", type=float, default=20.0)
    parser.add_argument("--max-median-late-ms", type=float, default=5.0)
    parser.add_argument("--max-median-spread-ms", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-") as tmp:
        token_file = Path(tmp) / "token"
        secret = secrets.token_urlsafe(32)
        token_file.write_text(secret + "\n")
        token_file.chmod(0o600)
        agent = start_agent(token_file)
        try:
            late, spread = asyncio.run(
                measure(agent, secret.encode(), args.repeats, args.commands, args.lead_ms)
            )
        finally:
            agent.stop()
    print(f"gated release, {args.commands} commands, {args.repeats} repeats (ms)")
    print(f"{'':<26} {'median':>8} {'p95':>8} {'max':>8}")
    for name, values in (("late after the instant", late), ("spread over the commands", spread)):
        print(
            f"{name:<26} {statistics.median(values):>8.3f} "
            f"{nearest_rank(values, 0.95):>8.3f} {max(values):>8.3f}"
        )
    over = []
    if args.max_late_ms and max(late) >= args.max_late_ms:
        over.append(f"a release {max(late):.3f} ms late (bound {args.max_late_ms:g})")
    if args.max_median_late_ms and statistics.median(late) >= args.max_median_late_ms:
        over.append(f"median lateness over {args.max_median_late_ms:g} ms")
    if args.max_median_spread_ms and statistics.median(spread) >= args.max_median_spread_ms:
        over.append(f"median spread over {args.max_median_spread_ms:g} ms")
    for line in over:
        print(f"OVER: {line}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
