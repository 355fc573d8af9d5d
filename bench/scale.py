#!/usr/bin/env python3
"""How a test's cost grows with its host count: N real agents on loopback.

For each N (default 10, 100, 200, 500, 1000) it runs one-test plans through
`netjobs_core.runner.Runner`, every host running `date +%s%N` (a real command,
spawned gated by the real agent code, that prints the wall clock in ns at the
instant it really runs), and prints per N:

* to start: from the test's beginning to its common start (the scheduled instant);
* total: the whole test's wall time;
* controller CPU per host (user + system of this process over the test) and its RSS
  (current after the test, and the process's peak so far); of its CPU, what its
  garbage collections took over the test (gc.callbacks, median per test); the agents' CPU per host
  (their processes and the commands they ran), and how busy the machine's CPUs were
  over the test (all that CPU time over wall time and CPU count: near 100 %, nothing
  waits and only less work could be faster);
* worst clock-offset error: every agent shares this machine's monotonic clock, so the
  true offset is 0 and the largest |estimate| is the error; the same for the wall clock;
* start spread: max - min of the commands' printed timestamps (the truth) and the one
  the runner reports from the agents' release instants.

The agents are the real `agent/server.py` `Agent`, several per helper process
(`--per-process`, so that 1000 agents do not need 1000 interpreters), each on its own
port; the helper processes are this script run with `--serve K`. They own their
commands' processes as an agent process does (one containment per helper process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from netjobs_agent import execwatch, procs, server  # noqa: E402
from netjobs_core import event_loop  # noqa: E402
from netjobs_core.config import Plan, parse_config  # noqa: E402
from netjobs_core.events import Event, HostChanged, TestFinished, TestStarted  # noqa: E402
from netjobs_core.probe import DEFAULT_CLOCK, STRICT_TURNS, ClockPolicy  # noqa: E402
from netjobs_core.results import HostState, TestResult, TestStatus  # noqa: E402
from netjobs_core.run_folder import RunFolder  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.runner import Runner  # noqa: E402
from netjobs_core.wire import fd_limits  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402

COMMAND = "date +%s%N"


# ----------------------------------------------------------------------------- agents
async def serve_agents(count: int, secret: bytes) -> None:
    """COUNT real agents in this process on 127.0.0.1; their ports on one stdout line;
    they stop when standard input closes (the benchmark ended or died)."""
    token = Token(secret, "bench")
    if os.environ.get("NETJOBS_BENCH_EXEC_WATCH") == "0":  # --no-exec-watch
        execwatch.open_watch = lambda platform=sys.platform: (None, "off in this bench")
    # Ordinary priority: one thread serves COUNT agents here, so their real-time
    # windows (agent/oskit.py realtime_priority) would merge into one that holds the
    # thread through every sibling's release and starves the controller and the
    # commands (1000 hosts: start spread 1.4 s -> 6.7-8.3 s); an agent alone in its
    # process holds it from its start message to its own release only.
    agents = [server.Agent(token, orphan_grace=2.0, realtime=False) for _ in range(count)]
    listeners = [await server._listen(agent, ["127.0.0.1"], 0) for agent in agents]
    ports = [listener.sockets[0].getsockname()[1] for listener in listeners]
    procs.CONTAINMENT.start(ports[0])
    print(" ".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), closed.set)
    try:
        await closed.wait()
    finally:
        loop.remove_reader(sys.stdin.fileno())
        for listener in listeners:
            listener.close()
        await asyncio.gather(*(agent.shutdown() for agent in agents))
        procs.CONTAINMENT.stop()


@dataclass
class AgentHosts:
    processes: list[subprocess.Popen[bytes]]
    by_process: list[list[int]]  # the ports of each process's agents

    @property
    def ports(self) -> list[int]:
        """Round robin over the processes: the first N hosts of a test are spread over
        as many processes as can be, as agents on machines of their own would be."""
        longest = max(map(len, self.by_process), default=0)
        return [p[i] for i in range(longest) for p in self.by_process if i < len(p)]

    def stop(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_agents(
    total: int, per_process: int, secret: bytes, exec_watch: bool = True
) -> AgentHosts:
    """TOTAL agents, PER_PROCESS in each helper process; EXEC_WATCH: whether they read
    the kernel's exec events, as a root agent does (agent/execwatch.py)."""
    hosts = AgentHosts([], [])
    env = {
        **os.environ,
        "NETJOBS_BENCH_SECRET": secret.hex(),
        "NETJOBS_BENCH_EXEC_WATCH": "1" if exec_watch else "0",
    }
    try:
        for first in range(0, total, per_process):
            count = min(per_process, total - first)
            # An agent process starting tidies the empty cgroups of agents on other
            # ports, and one starting alongside (here, or another user's) can lose its
            # own before it lists it (agent/procs.py Containment.start): try again.
            for attempt in range(3):
                process = subprocess.Popen(
                    [sys.executable, __file__, "--serve", str(count)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
                hosts.processes.append(process)
                assert process.stdout is not None
                line = process.stdout.readline()
                if line:
                    break
                process.wait()
                if attempt == 2:
                    raise RuntimeError(f"agent host process {process.pid} did not listen")
            hosts.by_process.append([int(port) for port in line.split()])
    except BaseException:
        hosts.stop()
        raise
    return hosts


# ----------------------------------------------------------------------------- tests
@dataclass
class Figures:
    hosts: int
    measured_s: float  # from the test's beginning until the last host's clock is measured
    connected_s: float  # ... until the last host is authenticated
    to_start_s: float
    total_s: float
    cpu_ms_per_host: float
    user_ms_per_host: float  # the controller's user time alone (the rest is its kernel time)
    agents_cpu_ms_per_host: float  # the agent processes', their commands' included
    busy: float  # CPU time of all of it over the test's wall time, per CPU of the machine
    rss_mb: float
    peak_rss_mb: float
    gc_ms: float  # the controller's CPU in garbage collections over the test
    offset_error_ms: float
    wall_error_ms: float | None
    true_spread_ms: float | None
    reported_spread_ms: float | None
    error: str = ""


def plan_for(ports: Sequence[int]) -> Plan:
    lines = ["scale:", "-generaltimeout: 60s", "-minhosts: all"]
    lines += [f'127.0.0.1:{port}: "{COMMAND}"' for port in ports]
    lines.append("end")
    return parse_config("\n".join(lines) + "\n", "<scale>")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class GcClock:
    """The controller thread's CPU time spent in garbage collections (gc.callbacks)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.spent += time.thread_time() - self._began


GC_CLOCK = GcClock()


def cpu_s() -> tuple[float, float]:
    """This process's (user, system) CPU time so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def agents_cpu_s(processes: Sequence[subprocess.Popen[bytes]]) -> float:
    """User + system time of the agent processes and of the commands they reaped."""
    ticks = 0
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class Phases:
    """When the last host reached each state (monotonic seconds), from the events."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.last: dict[HostState, float] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, HostChanged):
            self.last[event.host.state] = time.monotonic() - self.began


Snapshot = tuple[tuple[float, float], float, float]  # (user, sys), agents' CPU, GC


class Costs:
    """Each test's phases and CPU (this process's, the agents', the collector's), from
    its TestStarted to its TestFinished; the last test's to the run's end (`ended`),
    which closes the links the run kept between its tests."""

    def __init__(self, processes: Sequence[subprocess.Popen[bytes]]) -> None:
        self.processes = processes
        self.phases: list[Phases] = []
        self.spans: list[list[Snapshot]] = []

    def _now(self, starting: bool) -> Snapshot:
        if starting:  # reading the agents' /proc files: before the test's own clock starts
            agents = agents_cpu_s(self.processes)
            return cpu_s(), agents, GC_CLOCK.spent
        cpu = cpu_s()
        return cpu, agents_cpu_s(self.processes), GC_CLOCK.spent

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestStarted):
            self.spans.append([self._now(starting=True)])
            self.phases.append(Phases())
        elif isinstance(event, TestFinished):
            self.spans[-1][1:] = [self._now(starting=False)]
        if self.phases:
            self.phases[-1](event)

    def ended(self) -> None:
        self.spans[-1][1:] = [self._now(starting=False)]

    def figures(self, tests: Sequence[TestResult]) -> list[Figures]:
        found = []
        for test, phases, (before, after) in zip(tests, self.phases, self.spans, strict=True):
            cpu = (after[0][0] - before[0][0], after[0][1] - before[0][1])
            found.append(figures_of(test, cpu, after[1] - before[1], phases, after[2] - before[2]))
        return found


def figures_of(
    test: TestResult, cpu: tuple[float, float], agents_cpu: float, phases: Phases, gc_s: float
) -> Figures:
    user, system = cpu
    hosts = len(test.hosts)
    offsets = [abs(h.clock_offset_ms) for h in test.hosts if h.clock_offset_ms is not None]
    walls = [
        abs(w) for h in test.hosts if (w := getattr(h, "wall_clock_offset_ms", None)) is not None
    ]
    stamps = []
    for host in test.hosts:
        for command in host.commands:
            with contextlib.suppress(ValueError, IndexError):
                stamps.append(int(command.stdout.read_bytes().split()[-1]))
    error = "" if test.status is TestStatus.PASSED else f"{test.status.value}: {test.reason}"
    assert test.started_at is not None and test.duration_s is not None
    return Figures(
        hosts=hosts,
        connected_s=phases.last.get(HostState.SYNCING, float("nan")),
        measured_s=phases.last.get(HostState.PREPARING, float("nan")),
        to_start_s=(test.scheduled_start or test.started_at) - test.started_at,
        total_s=test.duration_s,
        cpu_ms_per_host=(user + system) * 1e3 / max(1, hosts),
        user_ms_per_host=user * 1e3 / max(1, hosts),
        agents_cpu_ms_per_host=agents_cpu * 1e3 / max(1, hosts),
        busy=(user + system + agents_cpu) / test.duration_s / (os.cpu_count() or 1),
        rss_mb=rss_mb(),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        gc_ms=gc_s * 1e3,
        offset_error_ms=max(offsets, default=float("nan")),
        wall_error_ms=max(walls) if walls else None,
        true_spread_ms=(max(stamps) - min(stamps)) / 1e6 if len(stamps) == hosts else None,
        reported_spread_ms=test.start_spread_ms,
        error=error,
    )


async def run_tests(
    hosts: AgentHosts, size: int, token: Token, folder: Path, policy: ClockPolicy, tests: int = 1
) -> list[Figures]:
    """One run of TESTS tests of SIZE hosts (`--repeat`: from the second on, each host's
    link kept from the test before); each test's figures."""
    ports = hosts.ports[:size]
    plan = plan_for(ports)
    # Agents sharing a process block each other's event loop while they spawn (a
    # second or more per process under load): a patient heartbeat keeps that from
    # reading as a silent controller, which one agent per machine never sees.
    options = RunOptions(
        token=token,
        run_folder=RunFolder.create(folder),
        clock=policy,
        heartbeat=10.0,
        repeat=tests,
    )
    costs = Costs(hosts.processes)
    result = await Runner(plan, options, costs).run()
    costs.ended()
    return costs.figures(result.tests)


# ----------------------------------------------------------------------------- report
def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = (
    "| hosts | clock measurement | all connected / clocks measured / common start (s) "
    "| total (s) | CPU per host, controller / agents (ms) | controller user / sys (ms) "
    "| CPUs busy "
    "| RSS / peak (MB) | GC (ms) "
    "| worst offset error (ms) | worst wall-clock error (ms) "
    "| start spread, timestamps / reported (ms) |"
)


def row(runs: list[Figures], name: str) -> str:
    """The median test of those run for one N (the worst for the offset error)."""

    def med(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    walls = [r.wall_error_ms for r in runs if r.wall_error_ms is not None]
    return (
        f"| {runs[0].hosts} | {name} | {_f(med([r.connected_s for r in runs]), 3)} / "
        f"{_f(med([r.measured_s for r in runs]), 3)} / {_f(med([r.to_start_s for r in runs]), 3)} "
        f"| {_f(med([r.total_s for r in runs]), 3)} "
        f"| {_f(med([r.cpu_ms_per_host for r in runs]), 2)} / "
        f"{_f(med([r.agents_cpu_ms_per_host for r in runs]), 2)} "
        f"| {_f(med([r.user_ms_per_host for r in runs]), 2)} / "
        f"{_f(med([r.cpu_ms_per_host - r.user_ms_per_host for r in runs]), 2)} "
        f"| {_f(med([100 * r.busy for r in runs]), 0)} % "
        f"| {runs[-1].rss_mb:.0f} / {runs[-1].peak_rss_mb:.0f} "
        f"| {_f(med([r.gc_ms for r in runs]), 0)} "
        f"| {_f(max(r.offset_error_ms for r in runs), 3)} "
        f"| {_f(max(walls) if walls else None, 3)} "
        f"| {_f(med([r.true_spread_ms for r in runs]), 2)} / "
        f"{_f(med([r.reported_spread_ms for r in runs]), 2)} |"
    )


def file_cost(folder: Path, count: int = 200) -> str:
    """What the file system under FOLDER charges this process for what a test makes per
    host: its folder and its command's output file (CPU, the mean over COUNT). The kernel's
    share of the controller's CPU in the table includes it: on an ext4 without a journal
    that has just deleted many files (as this machine's /tmp after a test suite), each
    new inode was measured at 0.3-0.9 ms, skipping the recently deleted ones one by one."""
    with tempfile.TemporaryDirectory(prefix="cost-", dir=folder) as inside:
        began = time.process_time_ns()
        for k in range(count):
            host = Path(inside) / f"h{k}"
            host.mkdir(mode=0o700)
            fd = os.open(host / "cmd0.stdout", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"1764897600123456789\n")
            os.close(fd)
        took = time.process_time_ns() - began
    return f"a host's folder and output file cost {took / count / 1e3:.0f} µs of CPU here"


async def bench(
    sizes: list[int],
    repeats: int,
    per_process: int,
    policies: dict[str, ClockPolicy],
    exec_watch: bool = True,
    where: str | None = None,
    run_of: int = 1,
) -> int:
    fd_limits.raise_fd_limit()  # one socket per host on this side too
    secret = secrets.token_bytes(32)
    token = Token(secret, "bench")
    hosts = await asyncio.to_thread(start_agents, max(sizes), per_process, secret, exec_watch)
    failed = 0
    try:
        ports = hosts.ports
        loop = event_loop.loop_name(asyncio.get_running_loop())
        print(f"{len(ports)} agents in {len(hosts.by_process)} processes; controller on {loop}")
        with tempfile.TemporaryDirectory(prefix="netjobs-scale-", dir=where) as folder:
            print(f"run folders in {folder}: {file_cost(Path(folder))}")
            print(HEADER)
            print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|", flush=True)
            for policy in policies.values():  # warm-up, uncounted
                await run_tests(hosts, 2, token, Path(folder), policy)
            for size in sizes:
                # The measurements interleaved run by run: compared under the same load.
                firsts: dict[str, list[Figures]] = {name: [] for name in policies}
                laters: dict[str, list[Figures]] = {name: [] for name in policies}
                for _ in range(repeats):
                    for name, policy in policies.items():
                        tests = await run_tests(hosts, size, token, Path(folder), policy, run_of)
                        for figures in tests:
                            if figures.error:
                                failed += 1
                                print(f"  N={size} {name}: {figures.error}", file=sys.stderr)
                        firsts[name].append(tests[0])
                        laters[name].extend(tests[1:])
                for name in policies:
                    if run_of == 1:
                        print(row(firsts[name], name), flush=True)
                    else:
                        print(row(firsts[name], f"{name}, a run's first test"), flush=True)
                        print(row(laters[name], f"{name}, its later tests"), flush=True)
    finally:
        await asyncio.to_thread(hosts.stop)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10,100,200,500,1000",
        type=lambda text: [int(n) for n in text.split(",")],
        help="host counts (default 10,100,200,500,1000)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per host count")
    parser.add_argument(
        "--run-of",
        type=int,
        default=1,
        metavar="K",
        help="tests in each run (`--repeat K`; default 1): with K > 1 a row for the runs' "
        "first tests and one for their later tests, on links kept between tests",
    )
    parser.add_argument("--per-process", type=int, default=20, help="agents per helper process")
    parser.add_argument(
        "--clock",
        default="strict,default",
        help="measurements to compare: strict (3.0 and 3.1: 16 pings, one host at a time, no "
        "kernel stamps), default (ClockPolicy()), or batch=B/min=M/smin=S/max=X/tight=NS/"
        "patience=P/stamps=0|1 (default: strict,default)",
    )
    parser.add_argument(
        "--loop",
        choices=("controller", "asyncio"),
        default="controller",
        help="the controller's event loop: its own (uvloop where installed) or asyncio's",
    )
    parser.add_argument(
        "--no-exec-watch",
        action="store_true",
        help="the agents do not read the kernel's exec events: on one machine each of N "
        "agents reads every exec of all N tests' commands (N x N events a test, 17 "
        "against 9 ms of the agents' CPU per host at 1000), where an agent alone on its "
        "host reads its own few; the controller's figures do not change",
    )
    parser.add_argument(
        "--where",
        help="the folder the tests' run folders go in (default: the system's temporary "
        "folder); what creating a host's files costs there is printed first",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead: the controller's instructions per host and test, under valgrind "
        "(one size, one --clock; --repeats more tests than a first run: ~1 min at 100; "
        "with --run-of K > 1, those tests later tests of one run)",
    )
    parser.add_argument("--serve", type=int, metavar="K", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve_agents(args.serve, bytes.fromhex(os.environ["NETJOBS_BENCH_SECRET"])))
        return 0
    if args.instructions:
        return instructions(
            args.sizes[0], args.repeats, args.clock, args.where, in_one_run=args.run_of > 1
        )
    policies = {name: policy_named(name) for name in args.clock.split(",")}
    main = bench(
        args.sizes,
        args.repeats,
        args.per_process,
        policies,
        exec_watch=not args.no_exec_watch,
        where=args.where,
        run_of=args.run_of,
    )
    return event_loop.run(main, fast=args.loop == "controller")


def instructions(
    size: int, repeats: int, clock: str, where: str | None, in_one_run: bool = False
) -> int:
    """This bench's controller run under valgrind (cachegrind's `I refs`; the agents'
    helper processes run natively) with 1 test of SIZE hosts, then 1 + REPEATS: the
    difference over REPEATS x SIZE is its instructions per host and test, a count
    that a shared machine's load moves by a few per cent (how many times the event
    loop wakes), where the CPU time moves by tens. Each test its own run, or
    IN_ONE_RUN: the tests one run's (the REPEATS then later tests, on kept links)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions: valgrind is not installed")
    counts = []
    with tempfile.TemporaryDirectory(prefix="netjobs-scale-vg-") as logs:
        for tests in (1, 1 + repeats):
            argv = [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
                f"--log-file={logs}/{tests}.txt",
                sys.executable,
                __file__,
                f"--sizes={size}",
                *(("--repeats=1", f"--run-of={tests}") if in_one_run else (f"--repeats={tests}",)),
                f"--clock={clock}",
                *([f"--where={where}"] if where else []),
            ]
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            found = re.search(r"I\s+refs:\s+([\d,]+)", Path(logs, f"{tests}.txt").read_text())
            assert found is not None, "no count in valgrind's log"
            counts.append(int(found.group(1).replace(",", "")))
    per_host = (counts[1] - counts[0]) / (repeats * size)
    print(
        f"controller: {per_host / 1e6:.3f} M instructions per host and "
        f"{'later test of a run' if in_one_run else 'test'} ({size} hosts, "
        f"{clock} clock; {counts[0] / 1e6:.0f} M with 1 test, {counts[1] / 1e6:.0f} M with "
        f"{1 + repeats})"
    )
    return 0


_POLICY_KEYS = {
    "batch": "batch",
    "min": "min_pings",
    "smin": "min_stamped",
    "max": "max_pings",
    "tight": "tight_ns",
    "patience": "patience",
    "stamps": "kernel_stamps",
}


def policy_named(name: str) -> ClockPolicy:
    if name == "strict":
        return STRICT_TURNS
    if name == "default":
        return DEFAULT_CLOCK
    fields = {}
    for part in name.split("/"):
        key, _, value = part.partition("=")
        fields[_POLICY_KEYS[key]] = bool(int(value)) if key == "stamps" else int(value)
    return ClockPolicy(**fields)


if __name__ == "__main__":
    sys.exit(main())
