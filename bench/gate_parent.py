#!/usr/bin/env python3
"""Does it matter which process spawned the gate it releases? (issue 19, 2 agents on 2 CPUs)

At 2 agents on 2 CPUs NetJobs' stamps are 1.6-2.5x the C floor's (docs/performance.md,
"Two agents, judged"), and so were those of the gate-only stand-in, which spawns and
releases both gates from one process. This separates the gate's hand-over from who
spawned it, with the static stamp binary of bench/start_spread.py as the command, in
the same rounds, each form in a random order within a round:

- the floor: N C waiters, clock_nanosleep to one deadline, exec (start_spread.run_floor);
- `apart`: N gates spawned by this process as the stand-in spawns them (setpriv, own
  session), each released by a releaser process of its own, as an agent releases
  (real-time priority where permitted, sleep, spin the last 200 µs, one write);
- `child`: N releasers that each spawn their own gate the agent's way (agent.oskit.spawn)
  and release it likewise: the gate is its releaser's child, as a command is its agent's;
- `sleep`: as `child`, but each releaser sleeps to the instant itself (its real-time
  clock_nanosleep) with no spin, so that its CPU is idle until the instant as the
  floor's are;
- `self`: no hand-over at all: N Python waiters (`python3 -S -I`, ordinary priority)
  that sleep to the instant themselves and exec the command, as a self-timed gate would
  (bench/self_timed_gate.py's waiter). Its "release" is the waiter's wake;
- `spawn`: as `self`, but the waiter starts the command with os.posix_spawn (glibc's
  vfork and exec), so that its Python's memory is not given up before the exec.

Each releaser reports when it wrote, so each form's spread splits into the releases'
spread and what came after the write (the gate's wake-up, its exec, the binary's start).

    flock /tmp/netjobs-bench.lock .venv/bin/python bench/gate_parent.py --rounds 300
"""

from __future__ import annotations

import argparse
import math
import os
import random
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

from agent import oskit  # noqa: E402

FORMS = ("floor", "apart", "child", "sleep", "self", "spawn")
LEAD_MS = 250  # every releaser started (a Python each) and asleep well before the instant
# One releaser: sleep to 200 µs before the instant AT (CLOCK_MONOTONIC ns) and spin (as
# the agent, agent.jobs.FINE_MARGIN_NS) or sleep to it (sleep), write the start line on
# fd W (apart) or on the gate it spawned (child, sleep), report the write's instant as
# "W<ns>" beside the gate's output on standard output.
RELEASER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from agent import oskit
form, at, stamp = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if form != "apart":
    read_fd, write_fd = os.pipe()
    gate = oskit.spawn(stamp, gated=True, stdin=read_fd, env={})
    os.close(read_fd)
else:
    gate, write_fd = None, int(sys.argv[5])
with oskit.realtime_priority():
    wait = (at - (0 if form == "sleep" else 200_000) - time.monotonic_ns()) / 1e9
    if wait > 0:
        time.sleep(wait)
    while time.monotonic_ns() < at:
        pass
    written = time.time_ns()
    os.write(write_fd, oskit.gate_release(written))
time.sleep(0.05)  # out of the way, as an agent stands aside
out = gate.communicate(timeout=30)[0] if gate is not None else b""
sys.stdout.buffer.write(out + b"W%d\n" % written)
"""


# A self-timed waiter: sleep to AT, note the wake on stderr as "W<ns>", exec the command.
WAITER = r"""
import os, sys, time
at = int(sys.argv[1])
wait = (at - time.monotonic_ns()) / 1e9
if wait > 0:
    time.sleep(wait)
os.write(2, b"W%d\n" % time.time_ns())
if sys.argv[2] == "spawn":  # vfork and exec (glibc's posix_spawn): Python's memory stays
    os.waitpid(os.posix_spawn(sys.argv[3], sys.argv[3:], {}), 0)
else:
    os.execv(sys.argv[3], sys.argv[3:])
"""


def _waiter(form: str, at: int, stamp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", WAITER, str(at), form, str(stamp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _releaser(form: str, at: int, stamp: Path, fd: int | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-S", "-c", RELEASER, str(ROOT), form, str(at), str(stamp)]
    return subprocess.Popen(
        [*args, str(fd)] if fd is not None else args,
        pass_fds=(fd,) if fd is not None else (),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )


def _writes(output: bytes) -> list[int]:
    return [int(word[1:]) for word in output.split() if word.startswith(b"W")]


def gates(form: str, count: int, stamp: Path) -> tuple[list[int], list[int]]:
    """One round of FORM: the commands' stamps and the releases' writes, gate by gate.
    Whatever it started and is still running when it leaves (a timeout) is killed."""
    at = time.monotonic_ns() + LEAD_MS * 1_000_000
    started: list[subprocess.Popen[bytes]] = []
    try:
        if form in ("self", "spawn"):
            started += [_waiter(form, at, stamp) for _ in range(count)]
            pairs = [w.communicate(timeout=30) for w in started]
            return (
                [start_spread._stamps(out)[0] for out, _ in pairs],
                [_writes(err)[0] for _, err in pairs],
            )
        if form != "apart":
            started += [_releaser(form, at, stamp) for _ in range(count)]
            outputs = [r.communicate(timeout=30)[0] for r in started]
            return [start_spread._stamps(o)[0] for o in outputs], [_writes(o)[0] for o in outputs]
        wrapper = oskit.death_signal_wrapper() or []
        for _ in range(count):
            read_fd, write_fd = os.pipe()
            try:
                started.append(
                    subprocess.Popen(
                        [
                            *wrapper,
                            *oskit.shell_args(str(stamp), gated=True, path=os.environ.get("PATH")),
                        ],
                        stdin=read_fd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                started.append(_releaser(form, at, stamp, write_fd))
            finally:
                os.close(read_fd)
                os.close(write_fd)
        shells, releasers = started[0::2], started[1::2]
        stamps = [start_spread._stamps(g.communicate(timeout=30)[0])[0] for g in shells]
        writes = [_writes(r.communicate(timeout=30)[0])[0] for r in releasers]
        return stamps, writes
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def floor(helpers: start_spread.Helpers, count: int, repeat: int) -> float:
    assert helpers.stamp is not None
    sample = start_spread.Sample(count, False, start_spread.FLOOR_DIRECT, repeat)
    start_spread.run_floor(helpers, count, [str(helpers.stamp)], sample)
    if sample.stamps_spread_ms is None:
        raise RuntimeError(sample.error)
    return sample.stamps_spread_ms * 1000


def as_samples(form: str, count: int, spreads_us: list[float]) -> list[start_spread.Sample]:
    """Round by round, as start_spread's interval of a ratio to the floor reads them."""
    return [
        start_spread.Sample(count, False, form, repeat, ok=True, stamps_spread_ms=spread / 1000)
        for repeat, spread in enumerate(spreads_us)
    ]


def spread_us(values: list[int]) -> float:
    return (max(values) - min(values)) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--count", type=int, default=2, help="gates a round (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="netjobs-gate-parent-") as where:
        helpers = start_spread.compile_helpers(Path(where))
        if helpers.floor is None or helpers.stamp is None:
            print(f"no floor: {helpers.error}", file=sys.stderr)
            return 2
        stamps: dict[str, list[float]] = {form: [] for form in FORMS}
        releases: dict[str, list[float]] = {form: [] for form in FORMS[1:]}
        after: dict[str, list[float]] = {form: [] for form in FORMS[1:]}
        order = list(FORMS)
        for repeat in range(args.rounds):
            random.shuffle(order)
            for form in order:
                if form == "floor":
                    stamps[form].append(floor(helpers, args.count, repeat))
                    continue
                stamped, written = gates(form, args.count, helpers.stamp)
                stamps[form].append(spread_us(stamped))
                releases[form].append(spread_us(written))
                after[form].append(
                    spread_us([s - w for s, w in zip(stamped, written, strict=True)])
                )
    base = stamps["floor"]
    print(f"{args.count} gates, {args.rounds} rounds; spreads in µs, p50 / p90")
    for form, found in stamps.items():
        p90 = start_spread.percentile(found, 0.9)
        line = f"{form:6} stamps {statistics.median(found):6.1f} / {p90:6.1f}"
        if form != "floor":
            found_interval = start_spread.ratio_interval(
                as_samples(form, args.count, found), as_samples("floor", args.count, base)
            )
            low, high = found_interval or (math.nan, math.nan)
            wins = sum(mine < floor_ for mine, floor_ in zip(found, base, strict=True))
            line += (
                f"  {statistics.median(found) / statistics.median(base):.2f}x the floor "
                f"(95 %: {low:.2f}-{high:.2f}x; below it in {wins}/{len(base)} rounds)"
                f"  releases {statistics.median(releases[form]):5.1f}"
                f"  write -> stamp {statistics.median(after[form]):6.1f}"
            )
        print(line, flush=True)
    pairs = (("child", "apart"), ("sleep", "child"), ("self", "child"), ("spawn", "child"))
    for form, other in pairs:
        mine, theirs = stamps[form], stamps[other]
        both = start_spread.ratio_interval(
            as_samples(form, args.count, mine), as_samples(other, args.count, theirs)
        )
        low, high = both or (math.nan, math.nan)
        above = sum(m > t for m, t in zip(mine, theirs, strict=True))
        print(
            f"{form} / {other}: {statistics.median(mine) / statistics.median(theirs):.2f}x "
            f"(95 %: {low:.2f}-{high:.2f}x; above it in {above}/{len(theirs)} rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
