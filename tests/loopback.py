"""A TCP server on loopback for tests that play the other end of a connection.

`asyncio.Server.close()` on Python 3.11 stops accepting but leaves the connections
it accepted open, and their handlers running: one still waiting when the test's
loop closes is cancelled without closing its socket, and the socket surfaces later
as an unraisable `ResourceWarning` in whichever test the garbage collector happens
to run (or at the session's end, failing the whole run). `serving` owns them all:
on exit every handler has ended and every accepted connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, *, sock: socket.socket | None = None) -> AsyncIterator[int]:
    """Serve HANDLER on 127.0.0.1 (or on the bound SOCK); yields the port."""
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[object]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()  # a graceful close: what the handler wrote still goes out
            handlers.discard(task)

    if sock is None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(serve, sock=sock)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        # Each handler's own end (cancelled or not) before the sockets are let go.
        await asyncio.gather(*handlers, return_exceptions=True)
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()
