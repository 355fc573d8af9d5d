"""How long a config of the largest size allowed takes to read and parse.

    .venv/bin/python bench/config_parse.py [--mib 64] [--repeats 1]

Writes configs of MIB MiB (default: the limit, netjobs_core.config.MAX_CONFIG_BYTES) in
a temporary directory, each one test `t` on one host padded to the size in another
shape, and times `load_config` on each: one long comment line, empty lines (the
parser's per-line cost: 64 MiB of them was the 17-23 s functional test this replaces),
comment lines of 80 columns, and as many one-host tests as fit. Prints seconds (best of
REPEATS) and MiB/s per shape. Nothing is asserted: a figure to compare between
versions on the same machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from netjobs_core.config import MAX_CONFIG_BYTES, load_config

MIB = 2**20
BODY = b't:\nhost: "true"\nend\n'


def _fill(unit: bytes, size: int) -> bytes:
    """Whole UNITs up to SIZE bytes, the rest in newlines."""
    count = size // len(unit)
    return unit * count + b"\n" * (size - count * len(unit))


def _tests(size: int) -> bytes:
    """One-host tests t0, t1... up to SIZE bytes, the rest in newlines."""
    parts: list[bytes] = []
    used = 0
    for n in range(size):
        test = b't%d:\nhost: "true"\nend\n' % n
        if used + len(test) > size:
            break
        parts.append(test)
        used += len(test)
    return b"".join(parts) + b"\n" * (size - used)


SHAPES: dict[str, Callable[[int], bytes]] = {
    "one comment line": lambda size: BODY + b"#" * (size - len(BODY) - 1) + b"\n",
    "empty lines": lambda size: BODY + b"\n" * (size - len(BODY)),
    "80-column comments": lambda size: BODY + _fill(b"#" * 79 + b"\n", size - len(BODY)),
    "one-host tests": _tests,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=MAX_CONFIG_BYTES / MIB)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    args = parser.parse_args()
    size = int(args.mib * MIB)
    print(f"load_config of a {size / MIB:g} MiB config, best of {args.repeats}")
    print(f"{'shape':<20} {'tests':>9} {'seconds':>9} {'MiB/s':>8}")
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-") as tmp:
        path = Path(tmp) / "big.cfg"
        for name in args.shapes.split(","):
            data = SHAPES[name](size)
            assert len(data) == size, (name, len(data))
            path.write_bytes(data)
            best = float("inf")
            tests = 0
            for _ in range(args.repeats):
                began = time.perf_counter()
                tests = len(load_config(path).tests)
                best = min(best, time.perf_counter() - began)
            print(f"{name:<20} {tests:>9} {best:>9.2f} {size / MIB / best:>8.1f}")
            path.unlink()


if __name__ == "__main__":
    main()
