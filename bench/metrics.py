#!/usr/bin/env python3
"""What reading metrics adds to a run's end: N hosts (default 1000) that each printed
a real fio JSON document (tests/data/metrics/fio-randrw.json, 14 KB, as fio 3.33 wrote
it), no config needed.

Offline (default): the controller's own work once the last command has ended: the
test's results (results.json in the run folder, written at the test's end; run.Run
does not write it again at the run's end), its report, its -l log, the CSV and the run
history, timed without metrics, then with them: each command's metrics already read as
it ended (as host_run does), so only the test's summary (metrics.measure_test) comes
before the files; then, for comparison, with every document read at the end (as before
issue 21's change). In the first two, each command's part of the -l log and its CSV
cells were formed as it ended (as run.Run does); in the third, at the end. A fresh
fleet for every end; rounds interleaved, best of `--repeats` (5) each; and each step of
the end timed in thread CPU, with and without metrics, each round's difference's median
and its 95 % interval. The outputs are in memory, as a real run keeps an output of at
most 64 KiB.

`--agents`: a real run (run.Run: results.json, history, and by `--files` the -l log,
a --json file, a CSV; -l and --json by default, as issue 21's user ran fio) of N real
agents on loopback (bench/scale.py's helper processes), every host running `cat` of
the document; the run's end is from the last command's end, as the controller hears
of it, to the run's last event, in wall time and in the controller's CPU (user +
system, all its threads: what the load of other programs inflates least). As the 1000
commands end at about the same instant, the controller's work on their ends (each
command's metrics, and with -l its part of the log, formed as it ends) is timed too:
from the first command's end, as heard, to the run's last event. Runs with
and without metrics (metrics made no-ops: host_run's measure_command, the runner's
measure_test) come in `--repeats` pairs, one of each, the pairs' order alternating
(without first, then with first); medians, and the pairs' differences' median with its
95 % interval. `--where /dev/shm` keeps the disk's flushes out of the end; `--raw FILE`
keeps each run's figures (JSON lines) to pool sittings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from scale import AgentHosts, start_agents  # noqa: E402

from netjobs_core import (  # noqa: E402
    builtin_metrics,
    event_loop,
    fast_json,
    history,
    host_run,
    logs,
    results_json,
    runner,
)
from netjobs_core import metrics as metrics_module  # noqa: E402
from netjobs_core.config import parse_config  # noqa: E402
from netjobs_core.events import CommandChanged  # noqa: E402
from netjobs_core.log_parts import LogParts  # noqa: E402
from netjobs_core.metrics import measure_test  # noqa: E402
from netjobs_core.outputs import SHOW_BYTES, Output  # noqa: E402
from netjobs_core.report import format_test  # noqa: E402
from netjobs_core.results import (  # noqa: E402
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_csv import MetricCells, write_csv  # noqa: E402
from netjobs_core.results_json import write_json  # noqa: E402
from netjobs_core.run import Run  # noqa: E402
from netjobs_core.run_folder import RunFolder  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.wire import fd_limits  # noqa: E402
from netjobs_core.wire.address import Address  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402

FIO = ROOT / "tests" / "data" / "metrics" / "fio-randrw.json"


def fleet(hosts: int) -> RunResult:
    document = FIO.read_bytes()
    test = TestResult("fio", None, status=TestStatus.PASSED, started_at=time.time())
    for i in range(hosts):
        command = CommandResult(
            "fio job.fio --output-format=json",
            line=2,
            status=CommandStatus.OK,
            exit_code=0,
            stdout=Output.from_bytes(document),
            duration_s=60.0,
        )
        address = Address(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 16192)
        test.hosts.append(HostResult(address, HostState.DONE, commands=[command]))
    return RunResult("fio.cfg", "bench", tests=[test])


STEPS = ("results.json", "report", "-l log", "CSV", "history")


def end_steps(
    run: RunResult, folder: Path, parts: LogParts | None, cells: MetricCells | None
) -> dict[str, Callable[[], object]]:
    """What the controller writes once the commands have ended (run.Run), by step;
    `parts` and `cells`: the log's parts and the CSV's metric cells, formed as the
    commands ended (None: at the end, as before they were)."""
    (test,) = run.tests
    return {
        # at the test's end; not again at the run's
        "results.json": lambda: write_json(run, folder / "results.json"),
        "report": lambda: format_test(test, fold=True),
        "-l log": lambda: logs.write_test_log(folder / "fio.cfg", test, folder=folder, parts=parts),
        "CSV": lambda: write_csv(run, folder / "results.csv", cells),
        "history": lambda: history.record_run(run, None, folder / "history.sqlite3"),
    }


def parser_name() -> str:
    whole = "orjson" if builtin_metrics.ORJSON is not None else "json (standard library)"
    if builtin_metrics.FIO_FIELDS is not None and fast_json.fio_fields_reader() is not None:
        return f"msgspec for fio's figures, {whole} for the rest"
    return whole


async def real_end(
    hosts: AgentHosts, size: int, token: Token, folder: Path, work: Path, files: set[str]
) -> Ends:
    """One real run of `size` hosts printing the document: seconds from its last
    command's end to its end, and the controller's CPU (user + system, all its
    threads) over that time; the same from its first command's end."""
    command = f"cat {FIO}"
    lines = ["fio:", *(f'127.0.0.1:{p}: "{command}"' for p in hosts.ports[:size]), "end"]
    config = work / "fio.cfg"
    config.write_text("\n".join(lines) + "\n")
    plan = parse_config(config.read_text(), str(config))
    options = RunOptions(token=token, run_folder=RunFolder.create(folder), heartbeat=10.0)
    last_end = last_cpu = last_system = last_thread = 0.0
    first: list[tuple[float, float]] = []  # the first command's end: (wall, CPU)
    collections: list[tuple[float, float, int]] = []  # the garbage collector's: start, end, gen
    began = [0.0]

    def collecting(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            collections.append((began[0], time.perf_counter(), info["generation"]))

    def observe(event: object) -> None:
        nonlocal last_end, last_cpu, last_system, last_thread
        if isinstance(event, CommandChanged) and event.host.commands[event.index].status.finished:
            last_end, last_cpu = time.perf_counter(), time.process_time()
            last_thread = time.thread_time()  # observers run on the event loop's thread
            last_system = os.times().system
            if not first:
                first.append((last_end, last_cpu))

    run = Run(
        plan,
        options,
        log="log" in files,
        json_path=str(work / "fio.json") if "json" in files else None,
        csv_path=str(work / "fio.csv") if "csv" in files else None,
    )
    run.subscribe(observe)
    gc.callbacks.append(collecting)
    try:
        async with run:
            await run.run()
    finally:
        gc.callbacks.remove(collecting)
    ended, cpu, system = time.perf_counter(), time.process_time(), os.times().system
    thread = time.thread_time()
    test = run.result.tests[0]
    if test.status is not TestStatus.PASSED:
        raise RuntimeError(f"the test did not pass: {test.reason}")
    in_end = [(end - start, gen) for start, end, gen in collections if start >= last_end]
    return Ends(
        ended - last_end,
        cpu - last_cpu,
        ended - first[0][0],
        cpu - first[0][1],
        sum(took for took, _ in in_end),
        sum(1 for _, gen in in_end if gen == 2),
        system - last_system,
        thread - last_thread,
    )


@dataclasses.dataclass
class Ends:
    """One real run: from its last command's end to its end (wall, controller CPU), and
    from its first command's end; the garbage collections in the run's end (seconds,
    how many were full ones)."""

    wall: float
    cpu: float
    wall_from_first: float
    cpu_from_first: float
    collecting: float
    full_collections: int
    system: float  # of `cpu`, the kernel's (os.times: 10 ms ticks on Linux)
    loop_cpu: float  # of `cpu`, the event loop's thread's (not the history's writer)


@dataclasses.dataclass
class RealEnds:
    """Medians over the real runs: the run's end (wall and controller CPU) without
    and with metrics, the same from the first command's end, measure_test at the
    test's end, and the reading of the commands as they ended (off the end)."""

    wall: dict[bool, float]
    cpu: dict[bool, float]
    loop_cpu: dict[bool, float]
    wall_from_first: dict[bool, float]
    cpu_from_first: dict[bool, float]
    collecting: dict[bool, float]  # medians
    system: dict[bool, float]
    full_collections: dict[bool, int]  # in all the runs
    at_end: float
    as_ended: float
    paired: dict[str, tuple[float, float, float]]  # by figure: median difference, interval
    loop: str  # what ran the controller's event loop


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """The median of VALUES and a distribution-free interval for it at LEVEL: the order
    statistics the binomial distribution gives (21 values: the 6th and 16th)."""
    ordered = sorted(values)
    n = len(ordered)
    tail, below, k = (1 - level) / 2, 0.0, 0
    while below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:  # too few values for LEVEL: all of them
        return statistics.median(ordered), ordered[0], ordered[-1]
    return statistics.median(ordered), ordered[k - 1], ordered[n - k]


async def real(
    size: int,
    repeats: int,
    per_process: int,
    files: set[str],
    where: str | None = None,
    raw: Path | None = None,
) -> RealEnds:
    """`repeats` pairs of real runs, one without metrics and one with, in alternating
    order; the runs' folders and files under `where`; each run's figures appended to
    `raw` (JSON lines) when given."""
    secret = secrets.token_bytes(32)
    token = Token(secret, "bench")
    hosts = await asyncio.to_thread(start_agents, size, per_process, secret)
    found: dict[bool, list[Ends]] = {False: [], True: []}
    at_end: list[float] = []
    as_ended: list[float] = []
    reading = [0.0]

    def timed_test(*args: Any) -> None:
        began = time.perf_counter()
        metrics_module.measure_test(*args)
        at_end.append(time.perf_counter() - began)

    def timed_command(*args: Any) -> None:
        began = time.perf_counter()
        metrics_module.measure_command(*args)
        reading[0] += time.perf_counter() - began

    # Pairs alternate their order (without then with, with then without, ...): a load
    # that drifts over the minutes then favours neither side of the differences.
    order = [True] + [m for i in range(repeats) for m in ((False, True), (True, False))[i % 2]]
    try:
        with tempfile.TemporaryDirectory(prefix="netjobs-bench-metrics-", dir=where) as inside:
            folder, work = Path(inside) / "runs", Path(inside)
            for k, with_metrics in enumerate(order):
                nothing: Callable[..., None] = lambda *_: None  # noqa: E731
                runner.measure_test = timed_test if with_metrics else nothing  # type: ignore[assignment]
                host_run.measure_command = timed_command if with_metrics else nothing  # type: ignore[assignment]
                reading[0] = 0.0
                ends = await real_end(hosts, size, token, folder, work, files)
                if k:  # the first is a warm-up
                    found[with_metrics].append(ends)
                    if with_metrics:
                        as_ended.append(reading[0])
                    if raw is not None:
                        with raw.open("a") as out:
                            record = {"pair": (k - 1) // 2, "metrics": with_metrics}
                            out.write(json.dumps(record | dataclasses.asdict(ends)) + "\n")
    finally:
        runner.measure_test = metrics_module.measure_test
        host_run.measure_command = metrics_module.measure_command
        await asyncio.to_thread(hosts.stop)

    def medians(what: str) -> dict[bool, float]:
        return {m: statistics.median(getattr(e, what) for e in runs) for m, runs in found.items()}

    def paired(what: str) -> tuple[float, float, float]:
        """Each run with metrics against the run without beside it: the load that
        drifts between minutes is nearly the same within a pair."""
        pairs = zip(found[False], found[True], strict=True)
        return median_interval([getattr(w, what) - getattr(o, what) for o, w in pairs])

    return RealEnds(
        loop=event_loop.loop_name(asyncio.get_running_loop()),
        wall=medians("wall"),
        cpu=medians("cpu"),
        loop_cpu=medians("loop_cpu"),
        wall_from_first=medians("wall_from_first"),
        cpu_from_first=medians("cpu_from_first"),
        collecting=medians("collecting"),
        system=medians("system"),
        full_collections={m: sum(e.full_collections for e in runs) for m, runs in found.items()},
        at_end=statistics.median(at_end[1:]),
        as_ended=statistics.median(as_ended),
        paired={
            what: paired(what)
            for what in ("wall", "cpu", "loop_cpu", "wall_from_first", "cpu_from_first")
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--agents", action="store_true", help="a real run of real agents")
    parser.add_argument("--per-process", type=int, default=250, help="agents per helper process")
    parser.add_argument(
        "--reader",
        choices=("fast", "orjson", "json"),
        default="fast",
        help="what reads the documents: what is installed (msgspec for fio's figures, "
        "orjson for the rest), orjson for whole documents only, or Python's json (which "
        "then writes results.json too)",
    )
    parser.add_argument(
        "--files",
        default="log,json",
        help="what the real run writes besides results.json, of log (-l), json (--json "
        "FILE), csv (--csv FILE); default: -l and --json, as issue 21's user ran fio; "
        "'' for none",
    )
    parser.add_argument(
        "--where",
        help="the folder for the runs' folders and files (default: the system's temporary "
        "folder; /dev/shm leaves the disk's flushes out, which makes the end shorter and "
        "so the metrics' share larger)",
    )
    parser.add_argument(
        "--raw", type=Path, help="append each real run's figures to this file (JSON lines)"
    )
    args = parser.parse_args(argv)
    files = {name for name in args.files.split(",") if name}
    if files - {"log", "json", "csv"}:
        parser.error(f"--files: unknown {', '.join(sorted(files - {'log', 'json', 'csv'}))}")
    if args.reader != "fast":
        builtin_metrics.FIO_FIELDS = None
    if args.reader == "json":
        builtin_metrics.ORJSON = results_json.ORJSON = None
    if args.agents:
        fd_limits.raise_fd_limit()
        os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="netjobs-bench-data-", dir=args.where)
        # As the CLI runs (uvloop where installed, its garbage collector's thresholds):
        # the same run on asyncio's loop with Python's thresholds had a full collection
        # of 40-60 ms in the end of one run in three, which of the two at random.
        ends = event_loop.run(
            real(args.hosts, args.repeats, args.per_process, files, args.where, args.raw)
        )
        print(f"{args.hosts} real agents, each host printing a {FIO.stat().st_size} B fio document")
        print(
            f"JSON parser: {parser_name()}; controller on {ends.loop}; "
            f"medians of {args.repeats} runs each way"
        )
        print(f"the run writes results.json and {', '.join(sorted(files)) or 'nothing else'}")
        for what, figures in (
            ("run's end, wall", ends.wall),
            ("run's end, controller CPU", ends.cpu),
            ("of which the kernel's (system time)", ends.system),
            ("of which the event loop thread's", ends.loop_cpu),
            ("from the first command's end, wall", ends.wall_from_first),
            ("from the first command's end, controller CPU", ends.cpu_from_first),
        ):
            without, measured = figures[False], figures[True]
            added = f"{100 * (measured - without) / without:+.1f} %" if without else "-"
            print(f"{what}: {without:.3f} s without metrics, {measured:.3f} s with ({added})")
        print("what metrics add, paired (each run with them less the run without beside it;")
        print("median of the differences and its 95 % interval, as a share of the median without):")
        for what, words in (
            ("wall", "run's end, wall"),
            ("cpu", "run's end, controller CPU"),
            ("loop_cpu", "run's end, the event loop thread's CPU"),
            ("wall_from_first", "from the first command's end, wall"),
            ("cpu_from_first", "from the first command's end, controller CPU"),
        ):
            median, low, high = ends.paired[what]
            base = getattr(ends, what)[False]
            print(
                f"  {words}: {1e3 * median:+.1f} ms ({1e3 * low:+.1f} to {1e3 * high:+.1f}), "
                f"{100 * median / base:+.1f} % "
                f"({100 * low / base:+.1f} to {100 * high / base:+.1f} %)"
            )
        print(f"of which measure_test:     {ends.at_end:.3f} s (median, the test's end)")
        print(
            f"of which garbage collection: {ends.collecting[False]:.3f} s without metrics, "
            f"{ends.collecting[True]:.3f} s with (medians); full collections in the ends: "
            f"{ends.full_collections[False]} without, {ends.full_collections[True]} with "
            f"(of {args.repeats} runs each)"
        )
        print(f"read as commands ended:    {ends.as_ended:.3f} s in all (median, before the end)")
        return 0
    (spec,) = parse_config('fio:\nh: "fio job.fio --output-format=json"\nend\n').tests
    specs = [[spec.commands[0]] for _ in range(args.hosts)]
    read_all = [{0} for _ in range(args.hosts)]
    # A fresh fleet for every end, as a real run has: one fleet written again and again
    # took longer than fresh ones (0.102 s without metrics against 0.087 s with them).
    runs = {
        kind: [fleet(args.hosts) for _ in range(args.repeats)]
        for kind in ("without", "early", "end", "parse")
    }
    formed: dict[int, tuple[LogParts | None, MetricCells | None]] = {}  # as commands ended
    early = {id(run) for run in runs["early"]}
    for run in (*runs["without"], *runs["early"]):  # each command read as it ended...
        log_parts, metric_cells = LogParts(), MetricCells()
        formed[id(run)] = log_parts, metric_cells
        for host in run.tests[0].hosts:
            if id(run) in early:  # (as host_run does)
                metrics_module.measure_command(host.commands[0], spec.commands[0], host.target)
            log_parts.form(host.target, host.commands[0], SHOW_BYTES)  # ...its log part
            metric_cells.cells(host.commands[0])  # ...and CSV cells (run.Run, with --csv)
    times: dict[str, list[float]] = {kind: [] for kind in runs}
    steps: dict[tuple[str, str], list[float]] = {}  # (kind, step): thread CPU

    def timed(kind: str, step: str, work: Callable[..., object], *args: Any) -> None:
        began = time.thread_time()
        work(*args)
        steps.setdefault((kind, step), []).append(time.thread_time() - began)

    with tempfile.TemporaryDirectory(prefix="netjobs-bench-metrics-") as where:
        folder = Path(where)
        for _ in range(args.repeats):  # interleaved rounds: the load is the same for all
            for kind in runs:
                run = runs[kind].pop()
                test = run.tests[0]
                began = time.perf_counter()
                if kind == "early":  # the summary: all were read already
                    timed(kind, "summary", measure_test, test, specs, read_all)
                elif kind in ("end", "parse"):
                    timed(kind, "summary", measure_test, test, specs)
                if kind != "parse":
                    kept = formed.get(id(run))  # none: formed at the end
                    parts, cells = kept if kept else (None, None)
                    for step, work in end_steps(run, folder, parts, cells).items():
                        timed(kind, step, work)
                times[kind].append(time.perf_counter() - began)
    best = {kind: min(found) for kind, found in times.items()}
    metrics = fleet(args.hosts).tests[0]
    measure_test(metrics, specs)
    alone = best["without"]
    print(f"{args.hosts} hosts, each a {FIO.stat().st_size} B fio JSON document on stdout")
    print(f"JSON parser: {parser_name()}; metrics found: {', '.join(metrics.metrics)}")
    print(f"run's end without metrics:             {alone:.3f} s (best of {args.repeats})")
    print(f"reading every document (now as each command ends): {best['parse']:.3f} s")
    for kind, words in (("early", "read as each command ended"), ("end", "all read at the end")):
        took = best[kind]
        print(
            f"run's end with metrics, {words}: {took:.3f} s ({100 * (took - alone) / alone:+.1f} %)"
        )
    print(
        "what metrics add to each step of the end (read as each command ended; thread CPU, "
        "each round's difference: median and 95 % interval):"
    )
    rounds = range(args.repeats)
    in_all = [0.0 for _ in rounds]
    for step in ("summary", *STEPS):
        plain = steps.get(("without", step), [0.0 for _ in rounds])
        measuring = steps[("early", step)]
        differences = [w - o for o, w in zip(plain, measuring, strict=True)]
        in_all = [a + d for a, d in zip(in_all, differences, strict=True)]
        median, low, high = median_interval(differences)
        print(
            f"  {step:13s} {1e3 * statistics.median(plain):7.2f} ms without, "
            f"{1e3 * statistics.median(measuring):7.2f} ms with: {1e3 * median:+.2f} ms "
            f"({1e3 * low:+.2f} to {1e3 * high:+.2f})"
        )
    csv_added = [
        w - o for o, w in zip(steps[("without", "CSV")], steps[("early", "CSV")], strict=True)
    ]
    for label, sums in (
        ("in all", in_all),
        ("without CSV", [a - c for a, c in zip(in_all, csv_added, strict=True)]),
    ):
        median, low, high = median_interval(sums)
        print(f"  {label:13s} {1e3 * median:+.2f} ms ({1e3 * low:+.2f} to {1e3 * high:+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
