"""Awaiting Qt from async tests (which run on a qasync loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_signal(signal: Any, within: float = 10.0) -> tuple[Any, ...]:
    """Await the next emission of a Qt signal (never qtbot.waitSignal in async tests)."""
    future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def handler(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    signal.connect(handler)
    try:
        return await asyncio.wait_for(future, within)
    finally:
        signal.disconnect(handler)


async def wait_until(predicate: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)
