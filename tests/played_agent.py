"""An agent played by a test: the real `Connection` and the real token, honest but
for what the test gives it to say, checking nothing it sends (`queue_unchecked`), as a
compromised agent would not. tests/test_hostile_figures.py, tests/test_hostile_stalls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.messages import (
    Message,
    Ping,
    Pong,
    Prepare,
    Prepared,
    Resume,
    Role,
    Start,
    StatusQuery,
)
from netjobs_core.wire.messages import Status as StatusMessage

Send = Callable[[Message], None]


class HangUp(Exception):
    """A script ends the connection (a cut the controller resumes from)."""


async def silent(send: Send, *_: object) -> None:
    """Say nothing more, read nothing more: a silent cut as the controller sees it."""
    await asyncio.sleep(30)


@dataclass
class Played:
    """ON_START(send, start, n) answers the n-th start of the run (from 1), ON_RESUME(send,
    n) the n-th resume (None: silence); NAME is what it says it is (host name, version,
    platform), GRACE the reconnect grace it claims, CLOCK what its pongs say."""

    secret: bytes
    on_start: Callable[[Send, Start, int], Awaitable[None]]
    on_resume: Callable[[Send, int], Awaitable[None]] | None = None
    name: str = "h"
    grace: float = 60
    clock: Callable[[], int] = now_ns
    starts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    resumes: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(Role.AGENT, self.secret)

        def send(message: Message) -> None:
            conn._advance(Role.AGENT, message)  # its own table, not its own checks
            conn.queue_unchecked(message)
            writer.write(conn.data_to_send())

        name = self.name
        with contextlib.suppress(ProtocolError, ConnectionError, TimeoutError, HangUp):
            async with asyncio.timeout(40):
                while data := await reader.read(65536):
                    for message in conn.receive_data(data):
                        if isinstance(message, Ping):
                            send(Pong(seq=message.seq, clock=self.clock()))
                        elif isinstance(message, StatusQuery):
                            send(
                                StatusMessage(
                                    busy=False, hostname=name, version=name, platform=name
                                )
                            )
                        elif isinstance(message, Prepare):
                            items = [
                                {"id": c["id"], "ok": True, "error": None} for c in message.commands
                            ]
                            send(
                                Prepared(gated=True, commands=items, run_id="r", grace=self.grace,
                                         hostname=name, version=name, platform=name)
                            )  # fmt: skip
                        elif isinstance(message, Start):
                            await self.on_start(send, message, next(self.starts))
                        elif isinstance(message, Resume):
                            await (self.on_resume or silent)(send, next(self.resumes))
                    writer.write(conn.data_to_send())
