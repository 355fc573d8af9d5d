"""The agent's start as over SSH: its CPU and time to the ready line, per tree.

    .venv/bin/python bench/ssh_agent_start.py [--starts 20] [--rounds 3] [--before TREE]

Starts the agent as the SSH start script does once its interpreter is remembered
(`netjobs_core/ssh.py`: `python -I -S -c CHECK_AND_RUN ZIPAPP SHA256 "" --stdio
--quiet`, with each tree's own zipapp and script, in a temporary folder), writes the
link line on its stdin, reads its ready line, closes stdin; STARTS starts one at a
time per round, this tree and --before alternated for ROUNDS rounds. Prints per
round the CPU per start (`getrusage(RUSAGE_CHILDREN)`, p50) and the wall time to the
ready line (p50), then each tree's `-X importtime` of the agent (minimum of 7 starts,
ms). No SSH, no namespaces: what 8 hosts' sshd then pay 8 times on the same CPUs.

Where valgrind is installed, also each tree's instructions per start (valgrind's
cachegrind, `I refs`, millions; the agent's own process, not its forked watcher):
a count that does not move with the machine's load, as CPU time does on a shared
machine. `--instructions-only` prints just those.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30.0
# Run inside each tree's own Python path: its zipapp (written to argv[1]) and start script.
_PREPARE = (
    "import json, os, sys\n"
    "sys.path.insert(0, sys.argv[2])\n"
    "from netjobs_core import agent_zipapp, ssh\n"
    "from netjobs_core.wire.tokens import stdio_greeting\n"
    "p = agent_zipapp.agent_zipapp()\n"
    "open(sys.argv[1], 'wb').write(p.data)\n"
    "print(json.dumps([ssh._CHECK_AND_RUN, p.sha256, stdio_greeting(os.urandom(32)).decode()]))\n"
)
SHOWN = ("netjobs_agent.__main__", "asyncio", "netjobs_core.wire.messages", "netjobs_agent.server")


def prepare(tree: Path, folder: Path) -> tuple[list[str], str]:
    """The argv of TREE's agent start (its zipapp written into FOLDER), and its link line."""
    pyz = folder / f"{len(list(folder.iterdir()))}.pyz"
    out = subprocess.run(
        [sys.executable, "-I", "-c", _PREPARE, str(pyz), str(tree)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    code, sha256, greeting = json.loads(out)
    python = os.path.realpath(sys.executable)
    return [python, "-I", "-S", "-c", code, str(pyz), sha256, "", "--stdio", "--quiet"], greeting


def start(argv: list[str], greeting: str, extra: tuple[str, ...] = ()) -> tuple[float, str]:
    """One start: seconds to the ready line, and what it wrote on stderr."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [argv[0], *extra, *argv[1:]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(greeting.encode())
    process.stdin.flush()
    ready = process.stdout.readline()
    took = time.perf_counter() - began
    process.stdin.close()  # EOF: the agent ends
    assert process.stderr is not None
    err = process.stderr.read()  # bounded: the agent's few lines, or importtime's
    process.stdout.read()
    process.wait(TIMEOUT_S)
    if not ready.startswith(b"NETJOBS-STDIO"):
        raise SystemExit(f"no ready line: {err.decode(errors='replace')[-500:]}")
    return took, err.decode(errors="replace")


def cpu_and_wall(argv: list[str], greeting: str, starts: int) -> tuple[float, float]:
    cpus, walls = [], []
    for _ in range(starts):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        took, _ = start(argv, greeting)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        walls.append(took)
    return statistics.median(cpus), statistics.median(walls)


def import_times(argv: list[str], greeting: str, runs: int = 7) -> dict[str, float]:
    """Cumulative import time (ms) of the SHOWN modules, each the minimum of RUNS starts."""
    best: dict[str, float] = {}
    for _ in range(runs):
        _, err = start(argv, greeting, ("-X", "importtime"))
        for line in err.splitlines():
            fields = line.removeprefix("import time:").split("|")
            if len(fields) == 3 and fields[1].strip().isdigit():
                name = fields[2].strip()
                best[name] = min(best.get(name, float("inf")), int(fields[1]) / 1000)
    return {name: best[name] for name in SHOWN if name in best}


def instructions(argv: list[str], greeting: str, folder: Path) -> float:
    """Millions of instructions one start executes, under valgrind (~50x slower).
    Its watcher (forked) writes a count too, the agent's own up to the fork included:
    the agent's is the largest."""
    logs = folder / "valgrind"
    logs.mkdir(exist_ok=True)
    valgrind = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        f"--log-file={logs}/%p.txt",
    ]
    start([*valgrind, *argv], greeting)
    counts = []
    for log in logs.iterdir():
        if found := re.search(r"I\s+refs:\s+([\d,]+)", log.read_text()):
            counts.append(int(found.group(1).replace(",", "")))
        log.unlink()
    return max(counts) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20, help="starts per tree and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another tree, alternated with this one")
    parser.add_argument(
        "--instructions-only", action="store_true", help="only the instruction counts"
    )
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.before is not None:
        trees[f"before ({args.before})"] = args.before.resolve()
    with tempfile.TemporaryDirectory(prefix="netjobs-agent-start-") as folder:
        ways = {name: prepare(tree, Path(folder)) for name, tree in trees.items()}
        for argv, greeting in ways.values():
            start(argv, greeting)  # warm the page cache
        if shutil.which("valgrind"):
            for name, (argv, greeting) in ways.items():
                count = instructions(argv, greeting, Path(folder))
                print(f"{name}: {count:.1f} M instructions per start (valgrind)", flush=True)
        elif args.instructions_only:
            raise SystemExit("--instructions-only: valgrind is not installed")
        if args.instructions_only:
            return 0
        print("| per start | CPU p50 (ms) | to the ready line p50 (ms) |\n|---|---|---|")
        for _ in range(args.rounds):
            for name, (argv, greeting) in ways.items():
                cpu, wall = cpu_and_wall(argv, greeting, args.starts)
                print(f"| {name} | {cpu * 1e3:.1f} | {wall * 1e3:.1f} |", flush=True)
        for name, (argv, greeting) in ways.items():
            shown = ", ".join(f"{k} {v:.1f}" for k, v in import_times(argv, greeting).items())
            print(f"{name}: importtime (ms, min of 7): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
