#!/usr/bin/env python3
"""Would a self-timed gate close the gap to the floor? (issue 19, 4 agents on 2 CPUs)

The agent's gate is a small shell blocked in a read until the agent writes the start
instant at the deadline (agent.oskit.gate_script); with more agents than CPUs, each
agent must get a CPU at the instant to write it. A gate that sleeps to the deadline
itself would need no agent then. The shell cannot sleep to an instant, so the candidate
is a Python waiter: `python3 -S -I -c` that sleeps to the deadline (time.sleep sleeps
with clock_nanosleep to an absolute CLOCK_MONOTONIC instant on Linux) and execs the
command. Measured in the same rounds, with the static stamp binary of
bench/start_spread.py as the command (its first act reads the clock):

- the floor: N C waiters forked by one small C program, clock_nanosleep to one
  deadline, exec (start_spread.run_floor);
- the shell gate as the agent spawns it, released by one process that sleeps and spins
  to the instant and writes each gate's line (start_spread.run_standin);
- N self-timed Python waiters, each started 150 ms before the deadline.

Prints each one's stamp spread (p50 / p95) and its ratio to the floor at the median.

    flock /tmp/netjobs-bench.lock .venv/bin/python bench/self_timed_gate.py --rounds 40
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import start_spread  # noqa: E402

WAITER = (
    "import os, sys, time\n"
    "at = int(sys.argv[1])\n"
    "wait = (at - time.monotonic_ns()) / 1e9\n"
    "if wait > 0:\n"
    "    time.sleep(wait)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
WAITER_LEAD_MS = 150  # every waiter up and asleep well before the deadline


def self_timed(count: int, stamp: Path) -> float:
    """The stamp spread (ms) of COUNT self-timed Python waiters."""
    at = time.monotonic_ns() + WAITER_LEAD_MS * 1_000_000
    waiters = [
        subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", WAITER, str(at), str(stamp)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    output = b"".join(waiter.communicate(timeout=30)[0] for waiter in waiters)
    stamps = start_spread._stamps(output)
    if len(stamps) != count:
        raise RuntimeError(f"the waiters printed {len(stamps)} stamps of {count}")
    return (max(stamps) - min(stamps)) / 1e6


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--counts", default="2,4", help="waiters per round (default 2,4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="netjobs-self-timed-") as where:
        helpers = start_spread.compile_helpers(Path(where))
        if helpers.floor is None or helpers.stamp is None:
            print(f"no floor: {helpers.error}", file=sys.stderr)
            return 2
        for count in (int(n) for n in args.counts.split(",")):
            spreads: dict[str, list[float]] = {"floor": [], "shell gate": [], "self-timed": []}
            for repeat in range(args.rounds):  # interleaved: the same load for all three
                floor = start_spread.run_floor(
                    helpers,
                    count,
                    [str(helpers.stamp)],
                    start_spread.Sample(count, False, start_spread.FLOOR_DIRECT, repeat),
                )
                gate = start_spread.run_standin(
                    count,
                    str(helpers.stamp),
                    start_spread.Sample(count, False, start_spread.STANDIN, repeat),
                )
                for name, sample in (("floor", floor), ("shell gate", gate)):
                    if sample.error or sample.stamps_spread_ms is None:
                        print(f"N={count}: {sample.error}", file=sys.stderr)
                        return 1
                    spreads[name].append(sample.stamps_spread_ms)
                spreads["self-timed"].append(self_timed(count, helpers.stamp))
            base = statistics.median(spreads["floor"])
            for name, found in spreads.items():
                median = statistics.median(found)
                ratio = f"{median / base:.2f}x" if base > 0 else "-"
                print(
                    f"N={count} {name:10}: stamps p50 {median:.3f} / p95 {p95(found):.3f} ms, "
                    f"{ratio} the floor ({args.rounds} rounds)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
