#!/usr/bin/env python3
"""A packet-level delay line: each IP packet held for its path's one-way delay.

tests/netlab.py's `Namespace(tun=True)` joins a namespace to this one by two TUN
devices, which carry nothing by themselves. `DelayLine` starts one forwarder process
that reads every packet from either end of each pair and writes it to the other end
once the path's delay has passed: FIFO per direction, no jitter, the same delay both
ways. Unlike bench/delay_proxy.py (a TCP relay: Python reads and writes the bytes of
each connection at the socket level), the hosts' own TCP stacks talk to each other,
with their handshakes, acknowledgements and segment boundaries, as over a real path.
The forwarder runs at real-time priority where permitted (SCHED_FIFO 20, above the
agents' own release window; without it a packet's lateness follows the machine's
load), waits in `select` until 0.25 ms before the next packet is due and polls from
there (a timed wake-up alone came 0.1-0.2 ms late here: p99 0.5 ms late instead of
0.07, 500 round trips over 5 ms), and on exit prints how late it delivered: `delay
line: N packets, late p50 / p99 / max (ms)` (the percentiles of a uniform sample of
LATE_KEPT packets beyond that many). Bounded: at most HELD_MAX packets held per
direction and path (beyond, a packet is dropped, as a full queue drops it); it exits
on SIGTERM or when its standard input closes (its parent has gone).

    with DelayLine([(namespace, 5.0), (other, 20.0)]) as line:  # one-way ms
        ...
    print(line.summary)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

# Above the agents' own real-time window (SCHED_FIFO 10: agent/oskit.py), which would
# otherwise hold a packet for as long as an agent spins on its CPU.
REALTIME_PRIORITY = 20
READ_MAX = 65_536
SPIN_NS = 250_000
HELD_MAX = 4096  # packets per direction and path (a 20 ms path at 1 Gb/s holds ~1700)
STOP_TIMEOUT_S = 5.0
LATE_KEPT = 100_000  # lateness figures kept for the summary: a uniform sample beyond


class DelayLine:
    """A forwarder process for PATHS (namespace with `tun_fds`, one-way delay in ms)."""

    def __init__(self, paths: Sequence[tuple[Any, float]]) -> None:
        self.paths = list(paths)
        self.process: subprocess.Popen[str] | None = None
        self.summary = ""

    def __enter__(self) -> DelayLine:
        specs, fds = [], []
        for namespace, delay_ms in self.paths:
            outside, inside = namespace.tun_fds
            specs.append(f"{outside}:{inside}:{delay_ms}")
            fds += [outside, inside]
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--forward", *specs],
            pass_fds=fds,
            stdin=subprocess.PIPE,  # its end: the forwarder's cue to go, should we die
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # its summary, then it exits
        try:
            out, _ = self.process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        self.summary = out.strip()


def forward(paths: list[tuple[int, int, float]]) -> None:
    """Move packets between each pair of fds after its delay (ms), until SIGTERM."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    route: dict[int, tuple[int, int]] = {}  # fd read -> (fd to write, delay ns)
    for outside, inside, delay_ms in paths:
        delay_ns = int(delay_ms * 1e6)
        route[outside] = (inside, delay_ns)
        route[inside] = (outside, delay_ns)
    held: dict[int, collections.deque[tuple[int, bytes]]] = {
        fd: collections.deque() for fd in route
    }
    late = Lateness()
    readable = [*route, sys.stdin.fileno()]

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            now = time.monotonic_ns()
            for target, queue in held.items():  # due packets, FIFO per direction
                while queue and queue[0][0] <= now:
                    due, packet = queue.popleft()
                    with contextlib.suppress(BlockingIOError):
                        os.write(target, packet)
                    late.add(time.monotonic_ns() - due)
            heads = [queue[0][0] for queue in held.values() if queue]
            # The last SPIN_NS polled: a timed wake-up comes up to ~0.2 ms late here.
            wait = (min(heads) - time.monotonic_ns() - SPIN_NS) / 1e9 if heads else None
            timeout = None if wait is None else max(0.0, wait)
            ready, _, _ = select.select(readable, [], [], timeout)
            for fd in ready:
                if fd not in route:  # standard input: our parent has gone
                    if not os.read(fd, 1):
                        return
                    continue
                target, delay_ns = route[fd]
                while True:
                    try:
                        packet = os.read(fd, READ_MAX)
                    except BlockingIOError:
                        break
                    if len(held[target]) < HELD_MAX:  # else dropped, as a full queue does
                        held[target].append((time.monotonic_ns() + delay_ns, packet))
    finally:
        print(late.summary(), flush=True)


class Lateness:
    """How late each packet went out: a count, the worst, and a uniform sample of at
    most LATE_KEPT of them (reservoir sampling) for the percentiles."""

    def __init__(self) -> None:
        self.count = 0
        self.worst = 0
        self.kept: list[int] = []
        self._pick = random.Random(0)

    def add(self, late_ns: int) -> None:
        self.count += 1
        self.worst = max(self.worst, late_ns)
        if len(self.kept) < LATE_KEPT:
            self.kept.append(late_ns)
        elif (slot := self._pick.randrange(self.count)) < LATE_KEPT:
            self.kept[slot] = late_ns

    def summary(self) -> str:
        if not self.count:
            return "delay line: no packets"
        from start_spread import percentile  # its neighbour; only once, at the end

        p50, p99 = (percentile(self.kept, q) / 1e6 for q in (0.5, 0.99))
        return (
            f"delay line: {self.count} packets, late p50 {p50:.3f} / p99 {p99:.3f}"
            f" / max {self.worst / 1e6:.3f} ms"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", nargs="+", metavar="OUT:IN:MS", required=True)
    args = parser.parse_args(argv)
    paths = []
    for spec in args.forward:
        outside, inside, delay = spec.split(":")
        paths.append((int(outside), int(inside), float(delay)))
    forward(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
