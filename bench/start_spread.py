#!/usr/bin/env python3
"""How close together do the agents really start their commands?

Starts N real local agents (`python -m netjobs_agent`, N = 2, 8, 32 by default), and
optionally puts each behind its own delaying TCP proxy (bench/delay_proxy.py,
one process per agent, one-way delays spread evenly over 0.2-10 ms across the
agents, with jitter), then runs many one-test plans through
`netjobs_core.runner.Runner` whose command prints the wall clock in ns at the
moment it really runs (`date +%s%N`). For every configuration (agents x
delays x start mode) it reports p50 / p95 / max of the start spread

* from the commands' own timestamps: max - min of the printed values of one
  test (the truth: all agents share this machine's clock), and
* as the runner reports it: `TestResult.start_spread_ms`, from the instants
  the agents say they released their commands, converted to the controller
  clock with the measured offsets,

plus the median of the reported uncertainty of that spread. The start modes
and the with/without-delay variants are interleaved repeat by repeat, so
they are measured side by side under the same machine load.

    .venv/bin/python bench/start_spread.py                       # the default matrix
    .venv/bin/python bench/start_spread.py --agents 2 --repeats 5 --markdown out.md

Every agent and proxy is stopped at the end, whatever happens; a failed test
is counted and reported, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import secrets
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from netjobs_core.config import Plan, parse_config  # noqa: E402
from netjobs_core.local_agents import AgentStartError, LocalAgent, start_agent  # noqa: E402
from netjobs_core.probe import DEFAULT_CLOCK, STRICT_TURNS, ClockPolicy  # noqa: E402
from netjobs_core.results import StartMode, TestResult, TestStatus  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.runner import Runner  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402

PROXY_SCRIPT = Path(__file__).resolve().parent / "delay_proxy.py"
DEFAULT_COMMAND = "date +%s%N"


# ----------------------------------------------------------------------------- proxies


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int
    delay_ms: float
    stats: dict[str, Any] = field(default_factory=dict)

    def stop(self, timeout: float = 5.0) -> None:
        """Closing its stdin stops it; it then prints its statistics."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                for line in self.process.stdout.read().decode("utf-8", "replace").splitlines():
                    with contextlib.suppress(ValueError):
                        self.stats = json.loads(line)
            self.process.stdout.close()


def start_proxy(
    upstream_port: int,
    delay_ms: float,
    jitter_ms: float,
    seed: int,
    log: Path,
    nice: int = 0,
    timeout: float = 10.0,
) -> Proxy:
    argv = [
        sys.executable,
        str(PROXY_SCRIPT),
        "--upstream",
        f"127.0.0.1:{upstream_port}",
        "--delay-ms",
        f"{delay_ms:.4f}",
        "--jitter-ms",
        f"{jitter_ms:.4f}",
        "--seed",
        str(seed),
        "--lifetime",
        "7200",
    ]
    with open(log, "ab") as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
    assert process.stdout is not None
    if nice:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, process.pid, nice)
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    line = seen.decode("utf-8", "replace").strip()
    if not line.startswith("listening on "):
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        raise RuntimeError(f"delay proxy did not start: {line or 'no output'} (log: {log})")
    return Proxy(process, int(line.rsplit(":", 1)[1]), delay_ms)


def spread_delays(count: int, low_ms: float, high_ms: float, seed: int) -> list[float]:
    """`count` one-way delays evenly over [low, high], in a shuffled (seeded) order."""
    if count == 1:
        return [low_ms]
    delays = [low_ms + (high_ms - low_ms) * i / (count - 1) for i in range(count)]
    random.Random(seed).shuffle(delays)
    return delays


# ----------------------------------------------------------------------------- machine load

POST_WINDOW_S = 0.25
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_busy_s() -> tuple[float, float] | None:
    """CPU-seconds all processes spent in user+nice+system, and hypervisor steal."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system = fields[:3]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system) / TICK, steal / TICK


def _process_cpu_s(pid: int) -> float:
    """A live process's CPU time, with that of the children it reaped (its commands)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    after = text[text.rindex(")") + 2 :].split()  # after = fields 3.. (comm may hold spaces)
    return sum(int(v) for v in after[11:15]) / TICK  # utime stime cutime cstime


class LoadMeter:
    """How much CPU other processes took while we measured: this benchmark's own time
    is this process plus its live agents and proxies (which count their reaped
    commands); everything else busy on the machine is someone else's."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def snapshot(self) -> tuple[float, float, float, float] | None:
        system = _system_busy_s()
        if system is None:
            return None
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        own += sum(_process_cpu_s(pid) for pid in self.pids)
        return time.monotonic(), system[0], system[1], own

    @staticmethod
    def others(
        before: tuple[float, float, float, float] | None,
        after: tuple[float, float, float, float] | None,
    ) -> tuple[float, float, float]:
        """(others' CPU-s, our CPU-s, capacity CPU-s) between two snapshots."""
        if before is None or after is None:
            return 0.0, 0.0, 0.0
        capacity = (after[0] - before[0]) * (os.cpu_count() or 1)
        own = after[3] - before[3]
        return max(0.0, after[1] - before[1] - own), own, capacity

    def share(
        self,
        before: tuple[float, float, float, float] | None,
        after: tuple[float, float, float, float] | None,
    ) -> float | None:
        others, _, capacity = self.others(before, after)
        return others / capacity if capacity > 0 else None

    async def wait_quiet(
        self, limit_s: float, threshold: float, window_s: float = 0.5
    ) -> tuple[float, float, float, float] | None:
        """Wait up to `limit_s` for a `window_s` during which others stay under
        `threshold`; the snapshot taken at the start of the last window."""
        deadline = time.monotonic() + limit_s
        while True:
            before = self.snapshot()
            await asyncio.sleep(window_s)
            share = self.share(before, self.snapshot())
            if share is None or share < threshold or time.monotonic() >= deadline:
                return before


def load_note(
    label: str,
    meter: LoadMeter,
    before: tuple[float, float, float, float] | None,
    after: tuple[float, float, float, float] | None,
) -> str:
    others, own, capacity = meter.others(before, after)
    if capacity <= 0:
        return f"{label}: no CPU accounting here (/proc/stat)"
    steal = after[2] - before[2] if before and after else 0.0
    return (
        f"{label}: of {capacity:.0f} CPU-s available, this benchmark (controller, agents, "
        f"proxies, commands) used {own:.1f}, other processes {others:.1f} "
        f"({others / capacity:.0%}), hypervisor steal {steal:.1f}"
    )


# ----------------------------------------------------------------------------- the floor
# A command whose first act is to read the clock: `date` adds 0.5-1 ms of dynamic
# loading that varies with load. Static, so what follows its exec is its own few µs.
STAMP_C = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    char line[32];
    int n = snprintf(line, sizeof line, "%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return write(1, line, n) == n ? 0 : 1;
}
"""
# The physical limit of a start on this machine, whatever the protocol: N processes
# already forked, each sleeping with clock_nanosleep to one CLOCK_MONOTONIC deadline,
# then exec'ing the command. `floor N LEAD_US RT PROGRAM ARGS...`; RT 1: each sleeps at
# real-time priority and drops it before its exec, as a permitted agent releases
# (agent/oskit.py realtime_priority), so that its floor has the same privilege.
FLOOR_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    int n = atoi(argv[1]), rt = atoi(argv[3]);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long at = now.tv_sec * 1000000000LL + now.tv_nsec + atoll(argv[2]) * 1000LL;
    struct timespec deadline = {at / 1000000000LL, at % 1000000000LL};
    struct sched_param fifo = {10}, other = {0};
    for (int i = 0; i < n; i++) {
        if (fork() == 0) {
            if (rt && sched_setscheduler(0, SCHED_FIFO, &fifo)) _exit(126);
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)) {}
            if (rt) sched_setscheduler(0, SCHED_OTHER, &other);
            execv(argv[4], argv + 4);
            _exit(127);
        }
    }
    while (wait(NULL) > 0) {}
    return 0;
}
"""
FLOOR_LEAD_US = 30_000  # every child forked and asleep well before the deadline
FLOOR_DIRECT = "floor: exec the command"
FLOOR_REALTIME = "floor: exec the command, woken at real-time priority"
FLOOR_SHELL = "floor: exec sh -c command"
STANDIN = "gate-only stand-in"
STANDIN_CHILD = "gate-only stand-in, command as the shell's child (before issue 19)"
_NOT_NETJOBS = frozenset({FLOOR_DIRECT, FLOOR_REALTIME, FLOOR_SHELL, STANDIN, STANDIN_CHILD})


@dataclass
class Helpers:
    """The compiled helpers, or why there are none (no compiler: `apt-get install gcc`)."""

    stamp: Path | None = None
    floor: Path | None = None
    error: str = ""


def compile_helpers(workdir: Path) -> Helpers:
    compiler = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        return Helpers(error="no C compiler here (cc, gcc, clang): no floor, `date` as command")
    built = Helpers()
    for name, source, flags in (("stamp", STAMP_C, ["-static"]), ("floor", FLOOR_C, [])):
        (workdir / f"{name}.c").write_text(source)
        out = workdir / name
        done = subprocess.run(
            [compiler, "-O2", *flags, "-o", str(out), str(workdir / f"{name}.c")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0 and flags:  # no static libc: dynamic is still a C binary
            done = subprocess.run(
                [compiler, "-O2", "-o", str(out), str(workdir / f"{name}.c")],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        if done.returncode != 0:
            built.error = f"{compiler} failed on {name}.c: {done.stderr.strip()[:200]}"
            return built
        setattr(built, name, out)
    return built


def _stamps(output: bytes) -> list[int]:
    return [int(line) for line in output.split() if line.strip().isdigit()]


def run_floor(
    helpers: Helpers, count: int, command: list[str], sample: Sample, realtime: bool = False
) -> Sample:
    """N C waiters exec'ing COMMAND at one deadline: the spread of their stamps."""
    assert helpers.floor is not None
    try:
        done = subprocess.run(
            [str(helpers.floor), str(count), str(FLOOR_LEAD_US), str(int(realtime)), *command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        sample.error = "the floor helper did not finish within 30 s"
        return sample
    stamps = _stamps(done.stdout)
    if len(stamps) != count:
        sample.error = f"the floor printed {len(stamps)} stamps of {count}"
        if realtime and done.returncode:
            sample.error += " (no real-time priority here: not root?)"
        return sample
    sample.stamps_spread_ms = (max(stamps) - min(stamps)) / 1e6
    sample.ok = True
    return sample


def run_standin(count: int, command: str, sample: Sample, *, in_place: bool = True) -> Sample:
    """The agent's gate and release and nothing else: N gated shells spawned as the
    agent spawns them (agent.oskit: gate prefix, setpriv, own session), released by
    one write each after the agent's sleep and spin; then this process only waits.
    Release -> first act here is what the agent would give if it did nothing else.
    IN_PLACE: a simple command is exec'd in place of the gate, as the agent does
    (agent.oskit.exec_in_place); False: always the shell's child, as before."""
    from agent import oskit

    wrapper = oskit.death_signal_wrapper() or []
    gates: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(count):
            read_fd, write_fd = os.pipe()
            proc = subprocess.Popen(
                [
                    *wrapper,
                    *oskit.shell_args(
                        command, gated=True, path=os.environ.get("PATH") if in_place else None
                    ),
                ],
                stdin=read_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.close(read_fd)
            gates.append((proc, write_fd))
        time.sleep(0.03)  # every gate shell blocked in its read
        at = time.perf_counter_ns() + 5_000_000
        time.sleep(max(0.0, (at - time.perf_counter_ns() - 200_000) / 1e9))
        while time.perf_counter_ns() < at:
            pass
        released = []
        epoch = time.time_ns()
        for _, write_fd in gates:
            released.append(time.time_ns())
            os.write(write_fd, oskit.gate_release(epoch))
        for _, write_fd in gates:
            os.close(write_fd)
        stamps = []
        for proc, _ in gates:
            out, _ = proc.communicate(timeout=30)
            stamps.extend(_stamps(out))
    except (OSError, subprocess.SubprocessError) as exc:
        sample.error = f"stand-in: {exc}"
        return sample
    finally:
        for proc, write_fd in gates:
            with contextlib.suppress(OSError):
                os.close(write_fd)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if len(stamps) != count:
        sample.error = f"the stand-in's commands printed {len(stamps)} stamps of {count}"
        return sample
    sample.stamps_spread_ms = (max(stamps) - min(stamps)) / 1e6
    sample.release_to_stamp_ms = statistics.median(
        (stamp - at) / 1e6 for stamp, at in zip(stamps, released, strict=True)
    )
    sample.ok = True
    return sample


# ----------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    agents: int
    delayed: bool
    mode: str
    repeat: int
    ok: bool = False
    error: str = ""
    stamps_spread_ms: float | None = None  # max - min of the commands' own timestamps
    reported_spread_ms: float | None = None  # TestResult.start_spread_ms
    uncertainty_ms: float | None = None  # TestResult.start_spread_uncertainty_ms
    release_to_stamp_ms: float | None = None  # median over commands: stamp - reported release
    offset_error_ms: float | None = None  # max |estimated clock offset| (the true one is 0)
    max_rtt_ms: float | None = None
    duration_s: float | None = None
    other_cpu: float | None = None  # share of the CPUs other processes took meanwhile
    other_cpu_s: float | None = None
    discarded: bool = False  # the machine was busy: measured again
    exec_spread_ms: float | None = None  # TestResult.exec_spread_ms (the kernel's exec events)
    exec_uncertainty_ms: float | None = None
    # The slowest command's own start-up: its stamp minus its exec instant (the static
    # binary's is ~0.4 ms; what it takes beyond that no exec event can see).
    startup_max_ms: float | None = None
    late_ms: float | None = None  # the latest CommandResult.release_late_ms
    lead_ms: float | None = None
    # per command: [port, timestamp - earliest timestamp (ms), reported offset from the
    # common start (ms), clock-offset estimate (ms), rtt (ms)]
    commands: list[list[float | None]] = field(default_factory=list)


def plan_for(ports: Sequence[int], command: str, label: str) -> Plan:
    lines = [f"{label}:", "-generaltimeout: 20s", "-minhosts: all"]
    lines += [f'127.0.0.1:{port}: "{command}"' for port in ports]
    lines.append("end")
    return parse_config("\n".join(lines) + "\n", f"<{label}>")


def analyse(sample: Sample, test: TestResult) -> Sample:
    sample.duration_s = test.duration_s
    sample.reported_spread_ms = test.start_spread_ms
    sample.uncertainty_ms = test.start_spread_uncertainty_ms
    sample.exec_spread_ms = test.exec_spread_ms
    sample.exec_uncertainty_ms = test.exec_spread_uncertainty_ms
    sample.lead_ms = test.lead_ms
    late = [c.release_late_ms for h in test.hosts for c in h.commands if c.release_late_ms]
    sample.late_ms = max(late, default=None)
    offsets = [abs(h.clock_offset_ms) for h in test.hosts if h.clock_offset_ms is not None]
    sample.offset_error_ms = max(offsets) if offsets else None
    rtts = [h.rtt_ms for h in test.hosts if h.rtt_ms is not None]
    sample.max_rtt_ms = max(rtts) if rtts else None
    if test.status is not TestStatus.PASSED:
        sample.error = f"{test.status.value}: {test.reason or 'no reason given'}"
        return sample
    stamps: list[int] = []
    lags: list[float] = []
    startups: list[float] = []
    for host in test.hosts:
        for command in host.commands:
            text = command.stdout.read_bytes().decode("utf-8", "replace").strip()
            try:
                stamp = int(text.split()[-1])
            except (ValueError, IndexError):
                sample.error = f"{host.target}: no timestamp in the output {text[:40]!r}"
                return sample
            stamps.append(stamp)
            if test.scheduled_start is not None and command.exec_offset_ms is not None:
                exec_ns = test.scheduled_start * 1e9 + command.exec_offset_ms * 1e6
                startups.append((stamp - exec_ns) / 1e6)
            sample.commands.append(
                [host.address.port, stamp, host.start_offset_ms, host.clock_offset_ms, host.rtt_ms]
            )
            if command.started_at is not None:
                lags.append((stamp - command.started_at * 1e9) / 1e6)
    if len(stamps) < 2:
        sample.error = "fewer than two timestamps"
        return sample
    if test.start_spread_ms is None:
        sample.error = "the runner reported no start spread"
        return sample
    sample.stamps_spread_ms = (max(stamps) - min(stamps)) / 1e6
    for row in sample.commands:
        row[1] = (row[1] - min(stamps)) / 1e6  # type: ignore[operator]
    sample.release_to_stamp_ms = statistics.median(lags) if lags else None
    sample.startup_max_ms = max(startups) if len(startups) == len(stamps) else None
    sample.ok = True
    return sample


async def run_one(
    plan: Plan,
    token: Token,
    mode: StartMode,
    sample: Sample,
    limit_s: float,
    clock: ClockPolicy = DEFAULT_CLOCK,
    lead_ms: float | None = None,
) -> Sample:
    runner = Runner(
        plan,
        RunOptions(
            token=token,
            start_mode=mode,
            clock=clock,
            lead_ns=None if lead_ms is None else lead_ms * 1e6,
        ),
    )
    try:
        async with asyncio.timeout(limit_s):
            result = await runner.run()
    except TimeoutError:
        sample.error = f"the test did not finish within {limit_s:g} s"
        return sample
    except Exception as exc:  # a failed test is a data point, not a crash
        sample.error = f"{type(exc).__name__}: {exc}"
        return sample
    if not result.tests:
        sample.error = "the runner ran no test"
        return sample
    return analyse(sample, result.tests[0])


# ----------------------------------------------------------------------------- the matrix
CLOCKS = {"default": DEFAULT_CLOCK, "strict": STRICT_TURNS}


@dataclass
class Options:
    agents: list[int]
    repeats: int
    modes: list[StartMode]
    delays: list[bool]
    clocks: list[str]  # names in CLOCKS
    min_delay_ms: float
    max_delay_ms: float
    jitter_ms: float
    proxy_nice: int
    command: str
    warmup: int
    test_timeout: float
    seed: int
    verbose: bool
    workdir: str | None = None
    quiet_wait: float = 0.0
    max_other_cpu: float = 1.0
    retries: int = 3
    helpers: Helpers | None = None  # the floor and the stamp binary (--no-floor: None)
    lead_ms: float | None = None  # --lead: fixed; None: the runner learns it
    agent_args: tuple[str, ...] = ()  # --no-realtime: passed to every agent


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def extra_samples(
    count: int, repeat: int, helpers: Helpers, command: str, samples: list[Sample]
) -> None:
    """One round of the floor (both forms) and the gate-only stand-in, beside the tests."""
    if helpers.floor is not None and helpers.stamp is not None:
        for mode, argv in (
            (FLOOR_DIRECT, [str(helpers.stamp)]),
            (FLOOR_SHELL, ["/bin/sh", "-c", str(helpers.stamp)]),
        ):
            samples.append(run_floor(helpers, count, argv, Sample(count, False, mode, repeat)))
        sample = Sample(count, False, FLOOR_REALTIME, repeat)
        samples.append(run_floor(helpers, count, [str(helpers.stamp)], sample, realtime=True))
    samples.append(run_standin(count, command, Sample(count, False, STANDIN, repeat)))
    samples.append(
        run_standin(count, command, Sample(count, False, STANDIN_CHILD, repeat), in_place=False)
    )


async def measure_agents(
    count: int,
    options: Options,
    token: Token,
    token_file: Path,
    workdir: Path,
    samples: list[Sample],
    notes: list[str],
    paths: dict[int, dict[str, float]],
) -> None:
    agents: list[LocalAgent] = []
    proxies: list[Proxy] = []
    began = time.monotonic()
    meter = LoadMeter()
    block_before = meter.snapshot()
    try:
        spawn_began = time.monotonic()
        for i in range(count):
            log_file = workdir / f"agent-{count}-{i}.log"
            agents.append(start_agent(token_file, *options.agent_args, port=0, log=log_file))
        spawn_s = time.monotonic() - spawn_began
        plans = {False: plan_for([a.port for a in agents], options.command, f"n{count}-direct")}
        delays: list[float] = []
        if True in options.delays:
            delays = spread_delays(
                count, options.min_delay_ms, options.max_delay_ms, options.seed + count
            )
            for i, (agent, delay) in enumerate(zip(agents, delays, strict=True)):
                proxies.append(
                    start_proxy(
                        agent.port,
                        delay,
                        options.jitter_ms,
                        options.seed * 1000 + i,
                        workdir / f"proxy-{count}-{i}.log",
                        options.proxy_nice,
                    )
                )
                paths[proxies[-1].port] = {"agent_port": agent.port, "delay_ms": delay}
            plans[True] = plan_for([p.port for p in proxies], options.command, f"n{count}-delayed")
        meter.pids = [a.process.pid for a in agents] + [p.process.pid for p in proxies]
        log(
            f"{count} agents up in {spawn_s:.1f} s"
            + (
                f", behind proxies with one-way delays {min(delays):.1f}-{max(delays):.1f} ms"
                if delays
                else ""
            )
        )
        for w in range(options.warmup):  # first spawns and imports: not counted
            warm = await run_one(
                plans[False],
                token,
                StartMode.SCHEDULED,
                Sample(count, False, "warmup", w),
                options.test_timeout,
            )
            if not warm.ok:
                log(f"  warm-up test failed: {warm.error}")
        combos = list(itertools.product(options.delays, options.modes, options.clocks))
        for repeat in range(options.repeats):
            if options.helpers is not None:
                extra_samples(count, repeat, options.helpers, options.command, samples)
            # Rotate the order each repeat: no variant always runs first.
            shift = repeat % len(combos)
            for delayed, mode, clock in combos[shift:] + combos[:shift]:
                for attempt in range(1 + options.retries):
                    # The load is judged over a window around the test (quiet-wait
                    # window, the test, POST_WINDOW_S after it): CPU accounting
                    # comes in 10 ms ticks, too coarse for a 20 ms test alone.
                    checking = options.max_other_cpu < 1
                    before = meter.snapshot()
                    if checking and options.quiet_wait > 0:
                        before = await meter.wait_quiet(options.quiet_wait, options.max_other_cpu)
                    label = mode.value if len(options.clocks) == 1 else f"{mode.value}, {clock}"
                    sample = Sample(count, delayed, label, repeat)
                    await run_one(
                        plans[delayed],
                        token,
                        mode,
                        sample,
                        options.test_timeout,
                        CLOCKS[clock],
                        options.lead_ms,
                    )
                    if checking:
                        await asyncio.sleep(POST_WINDOW_S)
                    after = meter.snapshot()
                    sample.other_cpu = meter.share(before, after)
                    sample.other_cpu_s = meter.others(before, after)[0]
                    busy = sample.other_cpu is not None and sample.other_cpu > options.max_other_cpu
                    sample.discarded = busy and attempt < options.retries
                    samples.append(sample)
                    if options.verbose or not sample.ok:
                        status = "ok" if sample.ok else f"FAILED ({sample.error})"
                        if sample.discarded:
                            status += f", discarded: others took {sample.other_cpu:.0%} of the CPUs"
                        log(
                            f"  n={count} {'delayed' if delayed else 'direct '} {mode.value:10} "
                            f"#{repeat}: stamps {_fmt(sample.stamps_spread_ms)} ms, reported "
                            f"{_fmt(sample.reported_spread_ms)} ms, {status}"
                        )
                    if not sample.discarded:
                        break
    except AgentStartError as exc:
        notes.append(f"{count} agents: could not start them all: {exc}")
        log(notes[-1])
    except (RuntimeError, OSError) as exc:
        notes.append(f"{count} agents: {exc}")
        log(notes[-1])
    finally:
        meter.pids = []
        for proxy in proxies:
            proxy.stop()
        for agent in agents:
            agent.stop()
    late = [p.stats for p in proxies if p.stats.get("chunks")]
    if late:
        chunks = sum(s["chunks"] for s in late)
        p50 = statistics.median(s["late_us_p50"] for s in late)
        p99 = max(s["late_us_p99"] for s in late)
        worst = max(s["late_us_max"] for s in late)
        notes.append(
            f"{count} agents: the delay proxies released {chunks} chunks, late by a "
            f"median {p50:.1f} µs (median of the proxies' medians), worst proxy's p99 "
            f"{p99:.0f} µs, max {worst / 1000:.2f} ms"
        )
    block_after = meter.snapshot()
    note = load_note(f"{count} agents, whole block", meter, block_before, block_after)
    share = meter.share(block_before, block_after)
    if share is not None and share > 0.05:
        note += " (the machine was not quiet)"
    notes.append(note)
    log(f"{count} agents: done in {time.monotonic() - began:.0f} s; {note}")


# ----------------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _triple(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(
        _fmt(v, 3) for v in (percentile(values, 0.5), percentile(values, 0.95), max(values))
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def groups(
    samples: list[Sample], discarded: bool = False
) -> dict[tuple[int, bool, str], list[Sample]]:
    """Tests per configuration: the counted ones, or (`discarded`) the discarded ones."""
    grouped: dict[tuple[int, bool, str], list[Sample]] = {}
    for sample in samples:
        if sample.discarded != discarded:
            continue
        grouped.setdefault((sample.agents, sample.delayed, sample.mode), []).append(sample)
    return dict(sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])))


def delay_label(delayed: bool, options: Options) -> str:
    if not delayed:
        return "none"
    return f"{options.min_delay_ms:g}-{options.max_delay_ms:g} ms ±{options.jitter_ms:g}"


def main_table(samples: list[Sample], options: Options) -> list[str]:
    lines = [
        "| agents | one-way delays | start mode | tests ok | spread from the commands' "
        "timestamps p50 / p95 / max (ms) | spread reported by the runner p50 / p95 / max (ms) "
        "| median reported uncertainty (ms) |",
        "|---:|---|---|---:|---|---|---:|",
    ]
    for (count, delayed, mode), group in groups(samples).items():
        ok = [s for s in group if s.ok]
        lines.append(
            f"| {count} | {delay_label(delayed, options)} | {mode} | {len(ok)}/{len(group)} "
            f"| {_triple([s.stamps_spread_ms for s in ok if s.stamps_spread_ms is not None])} "
            f"| {_triple([s.reported_spread_ms for s in ok if s.reported_spread_ms is not None])} "
            f"| {_fmt(_median([s.uncertainty_ms for s in ok]), 3)} |"
        )
    return lines


def diagnostics_table(samples: list[Sample], options: Options) -> list[str]:
    lines = [
        "| agents | one-way delays | start mode | median release → timestamp (ms) "
        "| median (timestamps − reported) spread (ms) | median worst clock-offset error (ms) "
        "| median worst RTT (ms) | median test duration (s) | other processes' CPU share, "
        "median / max | tests discarded (busy machine) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    thrown = groups(samples, discarded=True)
    for (count, delayed, mode), group in groups(samples).items():
        shares = [s.other_cpu for s in group if s.other_cpu is not None]
        load = f"{statistics.median(shares):.0%} / {max(shares):.0%}" if shares else "-"
        ok = [s for s in group if s.ok]
        diff = [
            s.stamps_spread_ms - s.reported_spread_ms
            for s in ok
            if s.stamps_spread_ms is not None and s.reported_spread_ms is not None
        ]
        lines.append(
            f"| {count} | {delay_label(delayed, options)} | {mode} "
            f"| {_fmt(_median([s.release_to_stamp_ms for s in ok]))} "
            f"| {_fmt(_median(list(diff)))} "
            f"| {_fmt(_median([s.offset_error_ms for s in ok]), 3)} "
            f"| {_fmt(_median([s.max_rtt_ms for s in ok]))} "
            f"| {_fmt(_median([s.duration_s for s in ok]))} | {load} "
            f"| {len(thrown.get((count, delayed, mode), []))} |"
        )
    return lines


EXEC_STARTUP_MS = 0.2  # what the static stamp binary may add after its exec event
# A miss whose slowest command took longer than this from its exec to its stamp (its
# usual ~0.4 ms) is named as such: the command itself was held up after the exec.
SLOW_STARTUP_MS = 1.0


def _covered(sample: Sample, spread: float | None, bound: float | None, extra: float) -> bool:
    """The commands' own stamps fall inside `spread ± bound` (+ `extra`)."""
    assert sample.stamps_spread_ms is not None
    return spread is not None and abs(sample.stamps_spread_ms - spread) <= (bound or 0) + extra


RATIO_RESAMPLES = 1000
RATIO_MIN_ROUNDS = 10


def ratio_interval(row: list[Sample], floor: list[Sample]) -> tuple[float, float] | None:
    """The 95 % interval of median(ROW) / median(FLOOR), resampling whole rounds.

    Rows are measured round by round (`repeat`), so a round's load hits both: resampling
    rounds, not tests, keeps that pairing. Seeded: the same figures give the same
    interval. None with fewer than RATIO_MIN_ROUNDS rounds in common or a floor of 0."""

    def by_round(samples: list[Sample]) -> dict[int, float]:
        found = {s.repeat: s.stamps_spread_ms for s in samples if s.ok and not s.discarded}
        return {repeat: spread for repeat, spread in found.items() if spread is not None}

    mine, base = by_round(row), by_round(floor)
    rounds = sorted(mine.keys() & base.keys())
    if len(rounds) < RATIO_MIN_ROUNDS:
        return None
    pick = random.Random(19)
    found = []
    for _ in range(RATIO_RESAMPLES):
        chosen = pick.choices(rounds, k=len(rounds))
        below = statistics.median(base[r] for r in chosen)
        if below <= 0:
            return None
        found.append(statistics.median(mine[r] for r in chosen) / below)
    return percentile(found, 0.025), percentile(found, 0.975)


def floor_table(samples: list[Sample], options: Options) -> list[str]:
    """Every way of starting, against the floor measured in the same rounds."""
    lines = [
        "| agents | start | tests ok | stamps p50 / p95 (ms) "
        "| ratio to the floor, plain / real-time (p50; 95 % interval) "
        "| exec spread p50 (ms) | stamps inside exec ± (+0.2 ms) | stamps inside release ± "
        "| release → first act p50 (ms) | latest release late, max (ms) |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    grouped = groups(samples)

    def floor_of(count: int, mode: str) -> float | None:
        return _median([s.stamps_spread_ms for s in grouped.get((count, False, mode), []) if s.ok])

    def versus(p50: float | None, base: float | None, row: list[Sample], mode: str) -> str:
        if p50 is None or not base:
            return "-"
        # With the excess beside it: over a floor of a few µs the ratio alone says
        # little; the interval says whether the rounds can tell it from 1.
        cell = f"{p50 / base:.2f}× ({(p50 - base) * 1e3:+.0f} µs"
        floor_rows = grouped.get((row[0].agents, False, mode), [])
        interval = None if row[0].mode == mode else ratio_interval(row, floor_rows)
        if interval is not None:
            cell += f"; {interval[0]:.2f}-{interval[1]:.2f}×"
        return cell + ")"

    for count in sorted({k[0] for k in grouped}):
        floor, rt_floor = floor_of(count, FLOOR_DIRECT), floor_of(count, FLOOR_REALTIME)
        for (n, delayed, mode), group in grouped.items():
            if n != count or delayed:
                continue
            ok = [s for s in group if s.ok and s.stamps_spread_ms is not None]
            stamps = [s.stamps_spread_ms for s in ok if s.stamps_spread_ms is not None]
            p50 = _median(list(stamps))
            ratio = " / ".join(
                versus(p50, base, ok, against)
                for base, against in ((floor, FLOOR_DIRECT), (rt_floor, FLOOR_REALTIME))
            )
            netjobs = mode not in _NOT_NETJOBS
            execs = [s for s in ok if s.exec_spread_ms is not None]
            exec_cover = release_cover = "-"
            if netjobs and ok:
                missed = [
                    s
                    for s in ok
                    if not _covered(s, s.exec_spread_ms, s.exec_uncertainty_ms, EXEC_STARTUP_MS)
                ]
                exec_cover = f"{len(ok) - len(missed)}/{len(ok)}" + (
                    "" if execs else " (not measured)"
                )
                slow = sorted(
                    s.startup_max_ms
                    for s in missed
                    if s.startup_max_ms is not None and s.startup_max_ms > SLOW_STARTUP_MS
                )
                if slow:  # the command's own start-up, after its exec: out of sight
                    exec_cover += f" ({len(slow)} with a start-up of {_fmt(slow[0], 1)}"
                    exec_cover += f"-{_fmt(slow[-1], 1)} ms)" if len(slow) > 1 else " ms)"
                inside = sum(_covered(s, s.reported_spread_ms, s.uncertainty_ms, 0.0) for s in ok)
                release_cover = f"{inside}/{len(ok)}"
            late = [s.late_ms for s in ok if s.late_ms is not None]
            lines.append(
                f"| {count} | {mode} | {len(ok)}/{len(group)} "
                f"| {_fmt(p50, 3)} / {_fmt(percentile(stamps, 0.95) if stamps else None, 3)} "
                f"| {ratio} | {_fmt(_median([s.exec_spread_ms for s in execs]), 3)} "
                f"| {exec_cover} | {release_cover} "
                f"| {_fmt(_median([s.release_to_stamp_ms for s in ok]), 3)} "
                f"| {_fmt(max(late) if late else None, 3)} |"
            )
    return lines


def ratios(samples: list[Sample]) -> list[str]:
    """Sequential / scheduled median spreads, per agent count and delay variant."""
    lines = []
    grouped = groups(samples)
    for count, delayed in sorted({(k[0], k[1]) for k in grouped}):
        seq = grouped.get((count, delayed, StartMode.SEQUENTIAL.value), [])
        sch = grouped.get((count, delayed, StartMode.SCHEDULED.value), [])
        parts = []
        for name, attr in (("timestamps", "stamps_spread_ms"), ("reported", "reported_spread_ms")):
            a = _median([getattr(s, attr) for s in seq if s.ok])
            b = _median([getattr(s, attr) for s in sch if s.ok])
            if a is not None and b:
                times = f"{a / b:.0f}×" if a / b >= 10 else f"{a / b:.1f}×"
                parts.append(f"{name} {a:.3f} / {b:.3f} ms = {times}")
        if parts:
            lines.append(
                f"- {count} agents, {'with' if delayed else 'no'} delays: sequential / "
                f"scheduled median spread: {'; '.join(parts)}"
            )
    return lines


def machine() -> list[str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [
        f"{os.cpu_count()} CPUs ({model}){memory}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}{load}"
    ]


def report(
    samples: list[Sample], notes: list[str], options: Options, elapsed_s: float, machine_line: str
) -> str:
    failed = [s for s in samples if not s.ok and not s.discarded]
    out = [
        "## Start spread",
        "",
        f"Machine: {machine_line} (at the start).",
        f"Command: `{options.command}`; {options.repeats} tests per row; "
        f"run took {elapsed_s / 60:.1f} min."
        + (
            f" Tests during which other processes took more than {options.max_other_cpu:.0%} "
            f"of the CPUs were discarded and run again (up to {options.retries} times)."
            if options.max_other_cpu < 1
            else ""
        ),
        "",
        *main_table(samples, options),
        "",
        "Against the floor (no delays; every row measured in the same rounds):",
        "",
        *floor_table(samples, options),
        "",
        "Sequential vs scheduled, measured side by side:",
        "",
        *(ratios(samples) or ["- (not enough data)"]),
        "",
        "### Diagnostics",
        "",
        *diagnostics_table(samples, options),
        "",
    ]
    if notes:
        out += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    if failed:
        out += [f"Failed tests ({len(failed)}):", ""]
        reasons: dict[str, int] = {}
        for sample in failed:
            reasons[sample.error] = reasons.get(sample.error, 0) + 1
        out += [f"- {n}× {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("every agent count must be at least 2")
    return values


def parse_args(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--agents",
        type=_int_list,
        default=[2, 8, 32],
        help="agent counts, comma-separated (default 2,8,32)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="tests per row (default 20)")
    parser.add_argument(
        "--modes",
        default="scheduled,sequential",
        help="start modes, comma-separated (default scheduled,sequential)",
    )
    parser.add_argument(
        "--delays",
        default="off,on",
        help="'off', 'on' or 'off,on' (default): without / with delay proxies",
    )
    parser.add_argument(
        "--clock",
        default="default",
        help="clock measurements, comma-separated: default (ClockPolicy()) and/or strict "
        "(3.0 and 3.1's: 16 pings one host at a time, no kernel stamps); default: default",
    )
    parser.add_argument("--min-delay-ms", type=float, default=0.2)
    parser.add_argument("--max-delay-ms", type=float, default=10.0)
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.1,
        help="uniform jitter, +/- this, per chunk and direction (default 0.1)",
    )
    parser.add_argument(
        "--proxy-nice", type=int, default=0, help="nice value of the proxy processes (default 0)"
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the token, agent and proxy logs in DIR (default: a temporary "
        "directory, removed)",
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=1.0,
        metavar="SHARE",
        help="discard and repeat (up to --retries times) a test during which "
        "other processes took more than this share of the CPUs, e.g. 0.2 "
        "(default 1: keep every test; the share is always recorded)",
    )
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each test, wait up to this long for 0.5 s during which "
        "other processes stay under --max-other-cpu (default 0: no wait)",
    )
    parser.add_argument(
        "--command",
        help="must print a timestamp in ns last (default: the compiled static stamp "
        "binary, else date +%%s%%N)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the C floor and the gate-only stand-in (default: compile them with cc "
        "when there is one, and use the static stamp binary as the command)",
    )
    parser.add_argument("--lead", type=float, metavar="MS", help="fix the lead (default: learned)")
    parser.add_argument(
        "--no-realtime",
        action="store_true",
        help="agents release at ordinary priority (default: real-time where permitted)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="uncounted tests per agent count")
    parser.add_argument("--test-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--json", metavar="FILE", help="write every test's figures to FILE")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per test")
    args = parser.parse_args(argv)
    try:
        modes = [StartMode(m.strip()) for m in args.modes.split(",") if m.strip()]
    except ValueError:
        parser.error(f"--modes: expected scheduled and/or sequential, got {args.modes!r}")
    clocks = [c.strip() for c in args.clock.split(",") if c.strip()]
    if not clocks or any(c not in CLOCKS for c in clocks):
        parser.error(f"--clock: expected default and/or strict, got {args.clock!r}")
    words = [d.strip() for d in args.delays.split(",") if d.strip()]
    if not words or any(w not in ("off", "on") for w in words):
        parser.error(f"--delays: expected off and/or on, got {args.delays!r}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not 0 <= args.min_delay_ms <= args.max_delay_ms:
        parser.error("need 0 <= --min-delay-ms <= --max-delay-ms")
    options = Options(
        agents=args.agents,
        repeats=args.repeats,
        modes=modes,
        delays=[w == "on" for w in dict.fromkeys(words)],
        clocks=clocks,
        min_delay_ms=args.min_delay_ms,
        max_delay_ms=args.max_delay_ms,
        jitter_ms=args.jitter_ms,
        command=args.command or DEFAULT_COMMAND,
        warmup=args.warmup,
        test_timeout=args.test_timeout,
        seed=args.seed,
        verbose=args.verbose,
        proxy_nice=args.proxy_nice,
        workdir=args.workdir,
        quiet_wait=args.quiet_wait,
        max_other_cpu=args.max_other_cpu,
        retries=args.retries,
        lead_ms=args.lead,
        agent_args=("--no-realtime",) if args.no_realtime else (),
    )
    return options, args


async def run_matrix(
    options: Options,
    workdir: Path,
    samples: list[Sample],
    notes: list[str],
    paths: dict[int, dict[str, float]],
) -> None:
    secret = secrets.token_urlsafe(32)
    token_file = workdir / "token"
    token_file.unlink(missing_ok=True)
    token_file.touch(0o600)
    token_file.write_text(secret + "\n")
    token = Token(secret.encode(), "benchmark token")
    for count in options.agents:
        await measure_agents(count, options, token, token_file, workdir, samples, notes, paths)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # same clean-up as Ctrl-C: every agent and proxy stopped


def main(argv: Sequence[str] | None = None) -> int:
    options, args = parse_args(argv)
    with contextlib.suppress(ValueError, AttributeError):  # not in the main thread / no SIGTERM
        signal.signal(signal.SIGTERM, _terminated)
    samples: list[Sample] = []
    notes: list[str] = []
    paths: dict[int, dict[str, float]] = {}  # proxy port -> its agent and delay
    began = time.monotonic()
    interrupted = False
    machine_line = machine()[0]
    with contextlib.ExitStack() as stack:
        if options.workdir:
            workdir = Path(options.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            temporary = tempfile.TemporaryDirectory(prefix="netjobs-bench-")
            workdir = Path(stack.enter_context(temporary))
        if not args.no_floor:
            options.helpers = compile_helpers(workdir)
            if options.helpers.error:
                notes.append(options.helpers.error)
                log(notes[-1])
            elif args.command is None and options.helpers.stamp is not None:
                options.command = str(options.helpers.stamp)
        try:
            asyncio.run(run_matrix(options, workdir, samples, notes, paths))
        except KeyboardInterrupt:
            interrupted = True
            notes.append("interrupted: the figures are partial")
            log(notes[-1])
    text = report(samples, notes, options, time.monotonic() - began, machine_line)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        dump = {
            "options": asdict(options),
            "proxies": paths,
            "notes": notes,
            "tests": [asdict(s) for s in samples],
        }
        Path(args.json).write_text(json.dumps(dump, indent=1, default=str) + "\n")
    if interrupted:
        return 130
    return 0 if samples and all(s.ok or s.discarded for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
