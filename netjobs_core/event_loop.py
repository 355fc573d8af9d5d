"""The controller's event loop: uvloop where it is installed (`pip install
netjobs[fast]`; not on Windows), asyncio's own otherwise.

The controller's one thread serves every host of a test, so the loop's own cost per
message (its turn, its timers, its futures) is paid a few dozen times per host and
test. Nothing else changes with the loop: TCP channels read their sockets themselves
(client.TcpChannel), so the kernel's arrival stamps come through either. The agent
keeps to the standard library and its loop.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it can be imported; None (asyncio's default) when not."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], fast: bool = True) -> T:
    """asyncio.run(MAIN) on the controller's event loop (`fast`: uvloop where installed;
    False: asyncio's, which the benchmarks compare)."""
    # What the program holds before it runs (modules, classes, configuration) lives as
    # long as it does: kept out of the garbage collector's full passes, which otherwise
    # walk it again and again while a test of 1000 hosts allocates.
    gc.freeze()
    # A test allocates its hosts' state as it goes (~140 tracked objects a host) and
    # keeps it to the end, with no reference cycles (tests/test_runner.py checks), then
    # frees it by reference counts, which takes it off the young generation's count
    # again. A young pass walks what is young when it falls: every 700 allocations that
    # was the growing state again and again (1000 hosts: ~200 young, ~20 middle and 1-2
    # full passes, 50-110 ms of CPU a test); every 50 000, 2-3 young passes (10-35 ms).
    # Above what a test of 1000 hosts holds, its allocations trigger none: 0 ms at the
    # median (bench/scale.py), RSS 60 MB against 58; a test of several thousand hosts
    # walks its state a few times. The ratios between the generations stay Python's.
    gc.set_threshold(200_000, 10, 10)
    with asyncio.Runner(loop_factory=loop_factory() if fast else None) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What runs LOOP, for the benchmarks' reports: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
