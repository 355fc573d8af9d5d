"""How long an agent takes from its launch to listening, frozen and from source.

    .venv/bin/python bench/startup.py [--repeats 10] [--limit 0.5]

Launches the agent REPEATS times, one at a time, each on 127.0.0.1 port 0 with a
temporary token file, and times the launch to its "listening on" line: the one-file
executable in dist/ (after build_scripts/build.py; it unpacks itself at every start)
and `python -m netjobs_agent` from this checkout. Prints median, p95 (nearest rank) and
max in seconds. `--limit S` (0.5 s was build_scripts/smoke.py's limit on Linux) makes
the exit status 1 when the frozen agent's median is over it: run it on a quiet machine,
where the figure means something (at load 12 on 2 CPUs it does not).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FROZEN = ROOT / "dist" / ("netjobs-agent.exe" if sys.platform == "win32" else "netjobs-agent")
TIMEOUT_S = 30.0


def time_to_listen(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from launch to the "listening on" line; the agent is stopped after."""
    began = time.monotonic()
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env
    )
    heard = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if b"listening on" in line:
                heard.set()
                break

    threading.Thread(target=read, daemon=True).start()
    try:
        if not heard.wait(TIMEOUT_S):
            raise SystemExit(f"{argv[0]}: no 'listening on' within {TIMEOUT_S:g} s")
        return time.monotonic() - began
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return f"{name:<28} {statistics.median(times):>8.3f} {p95:>8.3f} {max(times):>8.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--limit", type=float, default=0.0, help="seconds; 0: none")
    parser.add_argument("--frozen", type=Path, default=FROZEN, help="the one-file agent")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-") as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(secrets.token_urlsafe(32) + "\n")
        token_file.chmod(0o600)
        tail = ["--bind", "127.0.0.1", "--port", "0", "--token-file", str(token_file)]
        env = {**os.environ, "HOME": tmp}
        kinds = {"python -m netjobs_agent": [sys.executable, "-m", "netjobs_agent", *tail]}
        if args.frozen.is_file():
            kinds = {f"frozen ({args.frozen.name})": [str(args.frozen), *tail], **kinds}
        else:
            print(f"({args.frozen} not built: build_scripts/build.py makes it)")
        figures = {
            name: [time_to_listen(argv, env) for _ in range(args.repeats)]
            for name, argv in kinds.items()
        }
    print(f"agent launch to 'listening on', {args.repeats} starts each (s)")
    print(f"{'':<28} {'median':>8} {'p95':>8} {'max':>8}")
    for name, times in figures.items():
        print(summary(name, times))
    frozen = next((times for name, times in figures.items() if name.startswith("frozen")), None)
    if args.limit and frozen is not None and statistics.median(frozen) > args.limit:
        print(f"OVER: the frozen agent's median is over {args.limit:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
