"""A run's outbox: its output spooled to disk, its messages kept, a sender at the peer's pace.

The pipe readers append a command's output to a per-stream temp file and
never wait for the network; one sender task per attached connection drains
the spool to it, so a slow, suspended or absent controller does not slow the
command. Only when the backlog (spooled but not yet sent) reaches the spool
limit do the readers wait, which back-pressures the command's pipe.

The run's other messages (started, exit, finished) are kept in order, each
with the stream sizes at the moment it was posted, so the sender sends a
command's output before its exit. Everything is kept until the run's outbox
is dropped: a controller that comes back after a silent loss says how many
bytes of each stream it holds (`resume`), and the sender replays the messages
from the start and the output from those offsets, so nothing is lost or sent
twice. The files are unlinked temp files: they vanish with the agent.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from netjobs_core.wire.messages import STREAMS, Finished, Message, OffsetsItem, Output

from . import collect

CHUNK = 1024 * 1024  # largest output frame body (framing.MAX_BODY)
DEFAULT_LIMIT = 1024**3  # backlog in bytes past which the command waits
MIN_LIMIT = 64 * 1024  # the smallest backlog limit taken

log = logging.getLogger("netjobs.agent")

Key = tuple[int, str]  # (command id, stream)


class Peer(Protocol):
    """The connection a sender writes to (agent.server.Session)."""

    peer: str
    closed: bool
    heartbeat: float | None

    def send(self, message: Message) -> None: ...

    async def drain(self) -> None: ...

    def abort(self) -> None: ...


class StreamSpool:
    """One stream's bytes in an append-only, unlinked temp file."""

    def __init__(self, directory: str | None = None) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(
            prefix="netjobs-spool-", dir=directory, buffering=0
        )
        self.size = 0

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        self._file.seek(self.size)
        while view:
            written = self._file.write(view)
            assert written is not None  # a regular file never would-block
            view = view[written:]
        self.size += len(data)

    def read(self, offset: int, count: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(max(0, min(count, self.size - offset))) or b""

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class _Posted:
    message: Message | collect.Matches  # files: sent as the messages they become
    marks: dict[Key, int]  # stream sizes when posted: that output goes first


class Outbox:
    """What one run says to its controller, whichever connection that is now."""

    def __init__(
        self,
        run_id: str,
        ids: list[int],
        *,
        limit: int = DEFAULT_LIMIT,
        directory: str | None = None,
        grace: float = 0.0,
    ) -> None:
        self.run_id = run_id
        self.grace = grace  # how long it is kept for a silently lost controller
        self.heartbeat: float | None = None  # of the controller, carried to a resumed connection
        self.run: Any = None  # the run writing here (agent.jobs.Run)
        self.drop_when_done = False  # nobody will read it: forget it when its run ends
        self.limit = max(MIN_LIMIT, limit)
        self.streams: dict[Key, StreamSpool] = {}
        try:
            for i in ids:
                for stream in sorted(STREAMS):
                    self.streams[i, stream] = StreamSpool(directory)
        except BaseException:
            self.close()
            raise
        self._posted: list[_Posted] = []
        self._sent: dict[Key, int] = dict.fromkeys(self.streams, 0)
        self._changed = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.session: Peer | None = None
        self._sender: asyncio.Task[None] | None = None
        self.delivered = False  # `finished` went out on the attached connection
        self.last_peer = "-"
        self.on_sender_error: Callable[[BaseException], None] | None = None

    @property
    def peer(self) -> str:
        return self.session.peer if self.session is not None else f"{self.last_peer} (lost)"

    @property
    def backlog(self) -> int:
        return sum(spool.size - self._sent[key] for key, spool in self.streams.items())

    @property
    def written(self) -> int:
        return sum(spool.size for spool in self.streams.values())

    # -- the run's side -----------------------------------------------------------
    async def output(self, command_id: int, stream: str, data: bytes) -> None:
        """Spool DATA; waits only while the backlog is at the limit."""
        while self.backlog >= self.limit:
            self._space.clear()
            await self._space.wait()
        self.streams[command_id, stream].append(data)
        self._changed.set()

    def post(self, message: Message | collect.Matches) -> None:
        marks = {key: spool.size for key, spool in self.streams.items()}
        self._posted.append(_Posted(message, marks))
        self._changed.set()

    # -- connections ----------------------------------------------------------
    def attach(self, session: Peer, offsets: dict[Key, int] | None = None) -> None:
        """Send to SESSION from the first message; output from OFFSETS (default 0)."""
        self.detach()
        self._sent = {
            key: min(spool.size, (offsets or {}).get(key, 0)) for key, spool in self.streams.items()
        }
        self._update_space()
        self.session = session
        self.last_peer = session.peer
        self.delivered = False
        self._sender = asyncio.create_task(self._send_all(session), name=f"sender {session.peer}")
        self._sender.add_done_callback(self._sender_done)

    def detach(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        self.session = None

    def close(self) -> None:
        self.detach()
        for spool in self.streams.values():
            spool.close()
        self._space.set()  # a reader waiting for room goes on (into a closed file: the run is gone)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.on_sender_error is not None:
            self.on_sender_error(exc)

    def _update_space(self) -> None:
        if self.backlog < self.limit:
            self._space.set()

    async def _send_all(self, session: Peer) -> None:
        index = 0
        while not session.closed:
            upto = self._posted[index] if index < len(self._posted) else None
            for key, spool in self.streams.items():
                end = upto.marks[key] if upto is not None else spool.size
                while self._sent[key] < end:
                    data = spool.read(self._sent[key], min(CHUNK, end - self._sent[key]))
                    session.send(Output(id=key[0], stream=key[1], body=data))
                    if session.closed:
                        return
                    self._sent[key] += len(data)
                    self._update_space()
                    await session.drain()
                    if session.closed:
                        return
            if upto is not None:
                if isinstance(upto.message, collect.Matches):
                    await collect.send_files(session, upto.message)  # read at the peer's pace
                    if session.closed:
                        return
                else:
                    session.send(upto.message)
                index += 1
                if isinstance(upto.message, Finished):
                    self.delivered = not session.closed
                    return
                continue
            self._changed.clear()
            if index < len(self._posted) or any(
                self._sent[key] < spool.size for key, spool in self.streams.items()
            ):
                continue
            await self._changed.wait()


def parse_offsets(items: list[OffsetsItem]) -> dict[Key, int]:
    offsets: dict[Key, int] = {}
    for item in items:
        offsets[item["id"], "stdout"] = item["stdout"]
        offsets[item["id"], "stderr"] = item["stderr"]
    return offsets
