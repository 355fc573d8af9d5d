#!/usr/bin/env python3
"""A delaying TCP proxy for loopback benchmarks: an artificial network path.

Every chunk of bytes read from one side is written to the other side
`delay` (plus a random jitter) after it arrived, in both directions, so one
proxy in front of one agent turns loopback into a path with a one-way delay
of `delay` and a round trip of twice that. Byte order is kept per direction:
a chunk is never released before the one read before it in the same
direction (jitter can only postpone, never reorder).

asyncio's timers are about 1 ms coarse (epoll), far too coarse for a delay
of 0.2 ms, so releases are timed in three steps: sleep with asyncio until
~3 ms before the target, `time.sleep` until ~200 µs before it, then spin on
the clock. This releases within a few µs of the target on an idle machine
(docs: /work/shared/notes/timing-limits.md); the proxy measures how late it
really was and reports it (`DelayProxy.lateness_ns`, the JSON line printed on
exit in command-line mode).

Bounded and self-stopping: loopback only (listen and upstream), at most
`max_connections` connections, at most `MAX_PENDING_BYTES` held per
direction (reading pauses beyond), and it stops by itself after `lifetime_s`,
after `idle_timeout_s` without any connection or traffic, or (command line)
when its standard input closes, i.e. when the process that started it exits.

Command line (standard library only, so it runs as a plain script)::

    python bench/delay_proxy.py --upstream 127.0.0.1:16201 --delay-ms 5 --jitter-ms 0.2
    -> prints "listening on 127.0.0.1:PORT", forwards until stdin closes,
       then prints one JSON line of statistics (chunks, lateness percentiles).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import ipaddress
import itertools
import json
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

now_ns = time.perf_counter_ns  # the same clock as netjobs_core.wire.clock.now_ns

ASYNC_MARGIN_NS = 3_000_000  # wake from asyncio this long before a release...
SPIN_MARGIN_NS = 200_000  # ...then time.sleep until this long before it, then spin
READ_SIZE = 64 * 1024
MAX_PENDING_BYTES = 1024 * 1024  # per direction, read but not yet released
MAX_LATENESS_SAMPLES = 100_000


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wait_until(target_ns: int) -> None:
    """Block the thread until `target_ns`: time.sleep most of the way, then spin."""
    remaining = target_ns - now_ns()
    if remaining > SPIN_MARGIN_NS:
        time.sleep((remaining - SPIN_MARGIN_NS) / 1e9)
    while now_ns() < target_ns:
        pass


class _Scheduler:
    """Releases actions at their due instants, earliest first (ties: FIFO)."""

    def __init__(self, lateness: deque[int]) -> None:
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self.lateness = lateness

    def push(self, due_ns: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (due_ns, next(self._order), action))
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._heap[0][0]
            early = due - now_ns() - ASYNC_MARGIN_NS
            if early > 0:
                # Coarse wait; a new, earlier item wakes us up to re-plan.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), early / 1e9)
                continue
            wait_until(due)
            # Release everything due by now (back-to-back items), then let the
            # loop read again.
            while self._heap and self._heap[0][0] <= now_ns():
                due, _, action = heapq.heappop(self._heap)
                late = now_ns() - due
                action()
                if len(self.lateness) < MAX_LATENESS_SAMPLES:
                    self.lateness.append(late)
            await asyncio.sleep(0)


class _Direction:
    """One direction of one connection: read, stamp, schedule, write."""

    def __init__(
        self,
        proxy: DelayProxy,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.link = link
        self.last_due = 0
        self.pending = 0
        self.space = asyncio.Event()
        self.done = False

    async def pump(self) -> None:
        proxy = self.proxy
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                due = max(now_ns() + proxy.one_way_ns(), self.last_due)
                self.last_due = due
                proxy.touch()
                if not data:
                    proxy.scheduler.push(due, self._eof)
                    return
                self.pending += len(data)
                proxy.scheduler.push(due, lambda data=data: self._deliver(data))
                while self.pending > MAX_PENDING_BYTES and not self.link.closed:
                    self.space.clear()
                    await self.space.wait()
                await self.writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            self.link.close()  # reset on one side: reset the other at once

    def _deliver(self, data: bytes) -> None:
        self.pending -= len(data)
        self.space.set()
        if not self.link.closed and not self.writer.is_closing():
            self.writer.write(data)

    def _eof(self) -> None:
        self.done = True
        if not self.link.closed:
            with contextlib.suppress(OSError, RuntimeError):
                if self.writer.can_write_eof():
                    self.writer.write_eof()
        if self.link.other(self).done:
            self.link.close()


class _Link:
    """A client connection and its upstream connection."""

    def __init__(self) -> None:
        self.closed = False
        self.closed_event = asyncio.Event()
        self.directions: list[_Direction] = []
        self.writers: list[asyncio.StreamWriter] = []

    def other(self, direction: _Direction) -> _Direction:
        return self.directions[1] if direction is self.directions[0] else self.directions[0]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.closed_event.set()
        for direction in self.directions:
            direction.space.set()
        for writer in self.writers:
            writer.close()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DelayProxy:
    """Forward 127.0.0.1:`port` to `upstream`, each direction delayed by `delay_ms` ± `jitter_ms`.

    Use inside a running event loop::

        async with DelayProxy("127.0.0.1", agent_port, delay_ms=5) as proxy:
            ...connect to ("127.0.0.1", proxy.port)...
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        delay_ms: float,
        jitter_ms: float = 0.0,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int | None = None,
        lifetime_s: float | None = 3600.0,
        idle_timeout_s: float | None = 600.0,
        max_connections: int = 64,
    ) -> None:
        if not (is_loopback(upstream_host) and is_loopback(listen_host)):
            raise ValueError("the delay proxy is for loopback only")
        if delay_ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0")
        self.upstream = (upstream_host, upstream_port)
        self.listen = (listen_host, listen_port)
        self.delay_ns = round(delay_ms * 1e6)
        self.jitter_ns = round(jitter_ms * 1e6)
        self.lifetime_s = lifetime_s
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.port = 0
        self.connections = 0  # accepted so far
        self.lateness_ns: deque[int] = deque()
        self._rng = random.Random(seed)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._last_activity = 0.0
        self._stopped = asyncio.Event()
        self.stop_reason = ""
        self.scheduler: _Scheduler

    def one_way_ns(self) -> int:
        if not self.jitter_ns:
            return self.delay_ns
        return max(0, self.delay_ns + self._rng.randint(-self.jitter_ns, self.jitter_ns))

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    async def start(self) -> int:
        self.scheduler = _Scheduler(self.lateness_ns)
        self._spawn(self.scheduler.run())
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]
        self.touch()
        self._spawn(self._watchdog())
        return self.port

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watchdog(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if self.lifetime_s is not None and now - started > self.lifetime_s:
                self.stop("lifetime reached")
            elif (
                self.idle_timeout_s is not None
                and not self._links
                and now - self._last_activity > self.idle_timeout_s
            ):
                self.stop("idle")

    def stop(self, reason: str = "stopped") -> None:
        if not self._stopped.is_set():
            self.stop_reason = reason
            self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.touch()
        if len(self._links) >= self.max_connections or self._stopped.is_set():
            writer.close()
            return
        self.connections += 1
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        _no_delay(writer)
        _no_delay(up_writer)
        link = _Link()
        link.writers = [writer, up_writer]
        link.directions = [
            _Direction(self, reader, up_writer, link),
            _Direction(self, up_reader, writer, link),
        ]
        self._links.add(link)
        try:
            await asyncio.gather(*(d.pump() for d in link.directions))
            # Both sides sent EOF; the last releases close the link.
            waits = [
                asyncio.ensure_future(link.closed_event.wait()),
                asyncio.ensure_future(self._stopped.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        finally:
            link.close()
            self._links.discard(link)
            self.touch()

    async def close(self) -> None:
        self.stop()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        if self._handlers:  # they end on their own once their link is closed
            await asyncio.wait(list(self._handlers), timeout=1.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()

    async def __aenter__(self) -> DelayProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, object]:
        late = sorted(self.lateness_ns)

        def pick(q: float) -> float | None:
            return late[min(len(late) - 1, int(q * len(late)))] / 1e3 if late else None

        return {
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "delay_ms": self.delay_ns / 1e6,
            "jitter_ms": self.jitter_ns / 1e6,
            "connections": self.connections,
            "chunks": len(late),
            "late_us_p50": pick(0.5),
            "late_us_p99": pick(0.99),
            "late_us_max": late[-1] / 1e3 if late else None,
            "stopped": self.stop_reason,
        }


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> dict[str, object]:
    upstream_host, upstream_port = args.upstream
    proxy = DelayProxy(
        upstream_host,
        upstream_port,
        args.delay_ms,
        args.jitter_ms,
        listen_host=args.bind,
        listen_port=args.port,
        seed=args.seed,
        lifetime_s=args.lifetime or None,
        idle_timeout_s=args.idle_timeout or None,
    )
    await proxy.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, proxy.stop, f"signal {signum}")
    if not args.ignore_stdin:
        # Standard input closing means whoever started us is done (or dead).
        def watch_stdin() -> None:
            with contextlib.suppress(OSError, ValueError):
                while sys.stdin.buffer.read(4096):
                    pass
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(proxy.stop, "stdin closed")

        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"listening on {args.bind}:{proxy.port}", flush=True)
    try:
        await proxy.wait_stopped()
    finally:
        await proxy.close()
    return proxy.stats()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=_parse_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each way")
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="uniform jitter, +/- this, per chunk (order is kept)",
    )
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds; 0 = none")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds; 0 = none")
    parser.add_argument(
        "--ignore-stdin", action="store_true", help="do not stop when standard input closes"
    )
    args = parser.parse_args(argv)
    for host in (args.bind, args.upstream[0]):
        if not is_loopback(host):
            parser.error(f"{host}: the delay proxy is for loopback only")
    stats = asyncio.run(_serve(args))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
