#!/usr/bin/env python3
"""What reading metrics adds to a run's end: N hosts (default 1000) that each printed
a real fio JSON document (tests/data/metrics/fio-randrw.json, 14 KB, as fio 3.33 wrote
it), no config needed.

Offline (default): the controller's own work once the last command has ended: the
test's results (results.json in the run folder, rewritten at the test's end and at
the run's), its report, its -l log, the CSV and the run history, timed without
metrics, then with the metrics (metrics.measure_test: every command's fio document
parsed, the test's summary) before them; best of `--repeats` (5) each. The outputs
are in memory, as a real run keeps an output of at most 64 KiB.

`--agents`: a real run (run.Run: results.json, -l logs, CSV, history) of N real
agents on loopback (bench/scale.py's helper processes), every host running `cat` of
the document; the run's end is from the last command's end, as the controller hears
of it, to the run's last event. Runs with and without metrics (the runner's
measure_test made a no-op) alternate, `--repeats` each; medians.
"""

from __future__ import annotations

import argparse
import asyncio
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

from netjobs_core import history, logs, runner  # noqa: E402
from netjobs_core import metrics as metrics_module  # noqa: E402
from netjobs_core.config import parse_config  # noqa: E402
from netjobs_core.events import CommandChanged  # noqa: E402
from netjobs_core.metrics import measure_test  # noqa: E402
from netjobs_core.outputs import Output  # noqa: E402
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
from netjobs_core.results_csv import write_csv  # noqa: E402
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


def end_of_run(run: RunResult, folder: Path) -> None:
    """What the controller writes once the commands have ended (run.Run)."""
    (test,) = run.tests
    write_json(run, folder / "results.json")  # at the test's end
    format_test(test, fold=True)
    logs.write_test_log(folder / "fio.cfg", test, folder=folder)
    write_json(run, folder / "results.json")  # at the run's end
    write_csv(run, folder / "results.csv")
    history.record_run(run, None, folder / "history.sqlite3")


def best(repeats: int, work: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


async def real_end(hosts: AgentHosts, size: int, token: Token, folder: Path, work: Path) -> float:
    """One real run of `size` hosts printing the document: seconds from its last
    command's end to its end."""
    command = f"cat {FIO}"
    lines = ["fio:", *(f'127.0.0.1:{p}: "{command}"' for p in hosts.ports[:size]), "end"]
    config = work / "fio.cfg"
    config.write_text("\n".join(lines) + "\n")
    plan = parse_config(config.read_text(), str(config))
    options = RunOptions(token=token, run_folder=RunFolder.create(folder), heartbeat=10.0)
    last_end = 0.0

    def observe(event: object) -> None:
        nonlocal last_end
        if isinstance(event, CommandChanged) and event.host.commands[event.index].status.finished:
            last_end = time.perf_counter()

    run = Run(plan, options, log=True, csv_path=str(work / "fio.csv"))
    run.subscribe(observe)
    async with run:
        await run.run()
    ended = time.perf_counter()
    test = run.result.tests[0]
    if test.status is not TestStatus.PASSED:
        raise RuntimeError(f"the test did not pass: {test.reason}")
    return ended - last_end


async def real(size: int, repeats: int, per_process: int) -> tuple[float, float, float]:
    """Median run's end (without, with) metrics over `repeats` real runs each, and the
    median time measure_test itself took in the runs with metrics."""
    secret = secrets.token_bytes(32)
    token = Token(secret, "bench")
    hosts = await asyncio.to_thread(start_agents, size, per_process, secret)
    times: dict[bool, list[float]] = {False: [], True: []}
    parsing: list[float] = []

    def timed(*args: Any) -> None:
        began = time.perf_counter()
        metrics_module.measure_test(*args)
        parsing.append(time.perf_counter() - began)

    try:
        with tempfile.TemporaryDirectory(prefix="netjobs-bench-metrics-") as where:
            folder, work = Path(where) / "runs", Path(where)
            for k in range(2 * repeats + 1):
                with_metrics = k % 2 == 0
                measure = timed if with_metrics else (lambda *_: None)
                runner.measure_test = measure  # type: ignore[assignment]
                took = await real_end(hosts, size, token, folder, work)
                if k:  # the first is a warm-up
                    times[with_metrics].append(took)
    finally:
        runner.measure_test = metrics_module.measure_test
        await asyncio.to_thread(hosts.stop)
    return (
        statistics.median(times[False]),
        statistics.median(times[True]),
        statistics.median(parsing[1:]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--agents", action="store_true", help="a real run of real agents")
    parser.add_argument("--per-process", type=int, default=250, help="agents per helper process")
    args = parser.parse_args(argv)
    if args.agents:
        fd_limits.raise_fd_limit()
        os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="netjobs-bench-data-")
        without, measured, parse = asyncio.run(real(args.hosts, args.repeats, args.per_process))
        print(f"{args.hosts} real agents, each host printing a {FIO.stat().st_size} B fio document")
        print(f"run's end without metrics: {without:.3f} s (median of {args.repeats})")
        print(f"run's end with metrics:    {measured:.3f} s (median of {args.repeats})")
        print(f"of which measure_test:     {parse:.3f} s (median)")
        print(f"metrics add {100 * (measured - without) / without:.1f} % to the run's end")
        return 0
    (spec,) = parse_config('fio:\nh: "fio job.fio --output-format=json"\nend\n').tests
    base = fleet(args.hosts)
    specs = [[spec.commands[0]] for _ in base.tests[0].hosts]
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-metrics-") as where:
        folder = Path(where)
        without = best(args.repeats, lambda: end_of_run(base, folder))
        runs = [fleet(args.hosts) for _ in range(args.repeats)]

        def with_metrics() -> None:
            run = runs.pop()
            measure_test(run.tests[0], specs)
            end_of_run(run, folder)

        measured = best(args.repeats, with_metrics)
        parse_only = [fleet(args.hosts) for _ in range(args.repeats)]
        parse = best(args.repeats, lambda: measure_test(parse_only.pop().tests[0], specs))
    metrics = base.tests[0]
    measure_test(metrics, specs)
    print(f"{args.hosts} hosts, each a {FIO.stat().st_size} B fio JSON document on stdout")
    print(f"metrics found: {', '.join(metrics.metrics)}")
    print(f"run's end without metrics: {without:.3f} s")
    print(f"reading the metrics alone: {parse:.3f} s")
    print(f"run's end with metrics:    {measured:.3f} s")
    print(f"metrics add {100 * (measured - without) / without:.1f} % to the run's end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
