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

When the spool cannot grow (a full disk, a quota) or cannot be made at all, the
run goes on without it: what comes next is held in memory only until it is sent,
with a much smaller backlog limit, and the agent says so once in its log. A
resume then replays only what the spool kept: output it streamed without the
spool and the cut lost is skipped, and the first frame after a skip says where it
starts (`Output.at`), so the controller knows what is missing. A spool that
cannot be read back (the disk failed under it) loses what it held: the command's
`exit` then says ERROR with the errno (`spool_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
from collections.abc import Callable
from typing import IO, Any, NamedTuple, Protocol

from netjobs_core.wire.messages import (
    STREAMS,
    Exit,
    Finished,
    Message,
    OffsetsItem,
    Output,
    Started,
)
from netjobs_core.wire.status import CommandStatus

from . import collect

CHUNK = 1024 * 1024  # largest output frame body (framing.MAX_BODY)
DEFAULT_LIMIT = 1024**3  # backlog in bytes past which the command waits
MIN_LIMIT = 64 * 1024  # the smallest backlog limit taken
HELD_LIMIT = 8 * 1024 * 1024  # the backlog limit once the output is held in memory

log = logging.getLogger("netjobs.agent")

Key = tuple[int, str]  # (command id, stream)


class Peer(Protocol):
    """The connection a sender writes to (agent.server.Session)."""

    peer: str
    closed: bool
    heartbeat: float | None

    def send(self, message: Message, linger: bool = False) -> None: ...

    async def drain(self) -> None: ...

    def abort(self) -> None: ...


class StreamSpool:
    """One stream's bytes: the first `spooled` in an append-only, unlinked temp
    file; once that stops (`stop`), the rest in memory from `held_from` until sent."""

    def __init__(self, file: IO[bytes] | None) -> None:
        self._file = file  # None: the spool could not be made, nothing is kept
        self.size = 0  # bytes of the stream so far
        self.spooled = 0  # bytes [0, spooled) are in the file
        self.spooling = file is not None
        self._held = bytearray()  # bytes [held_from, size), not spooled and not yet sent
        self.held_from = 0

    def append(self, data: bytes) -> None:
        """OSError: the file cannot take DATA (nothing of it counts as spooled)."""
        if self.spooling:
            assert self._file is not None
            view = memoryview(data)
            self._file.seek(self.spooled)
            while view:
                written = self._file.write(view)
                assert written is not None  # a regular file never would-block
                view = view[written:]
            self.spooled += len(data)
        else:
            self._held += data
        self.size += len(data)

    def stop(self) -> None:
        """Spool no more: what comes next is held until it is sent."""
        if self.spooling:
            self.spooling = False
            self.held_from = self.spooled
            assert self._file is not None
            with contextlib.suppress(OSError):
                self._file.truncate(self.spooled)  # a partial write's bytes: room for others

    def lose_file(self) -> None:
        """The file cannot be read back: what it held is gone."""
        self.stop()  # while spooling, the file held everything: held_from = size
        self.spooled = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def available(self, offset: int) -> int:
        """The first byte at or after OFFSET that can still be read (a gap is lost)."""
        if offset < self.spooled or offset >= self.held_from:
            return offset
        return self.held_from

    def read(self, offset: int, count: int) -> bytes:
        """Up to COUNT bytes at OFFSET (an available one); OSError: the file failed."""
        if offset < self.spooled:
            assert self._file is not None
            self._file.seek(offset)
            return self._file.read(min(count, self.spooled - offset)) or b""
        start = offset - self.held_from
        return bytes(self._held[start : start + max(0, min(count, self.size - offset))])

    def release(self, upto: int) -> None:
        """Bytes before UPTO were sent: the held ones among them are let go."""
        if not self.spooling and upto > self.held_from:
            del self._held[: upto - self.held_from]
            self.held_from = upto

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._held.clear()


def spool_file(directory: str) -> IO[bytes]:
    """An unnamed file in DIRECTORY: O_TMPFILE where the system has it, else
    tempfile's (whose import, with shutil and its compression modules, was ~4 % of
    an agent's start over SSH; every run spools)."""
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            pass  # a file system without it; or an error that tempfile's try says again
        else:
            return open(fd, "w+b", buffering=0)
    import tempfile

    return tempfile.TemporaryFile(prefix="netjobs-spool-", dir=directory, buffering=0)


def temporary_directory() -> str:
    """Where spools go by default, as tempfile.gettempdir() picks it: $TMPDIR, $TEMP
    or $TMP, else /tmp where it can be written; else tempfile's own answer."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        if value := os.environ.get(name):
            return value
    if os.name == "posix" and os.access("/tmp", os.W_OK | os.X_OK):
        return "/tmp"
    import tempfile

    return tempfile.gettempdir()


def errno_name(exc: OSError) -> str:
    """The errno's name (ENOSPC): what the wire carries, the controller words."""
    return errno.errorcode.get(exc.errno or 0, "EIO")


class _Posted(NamedTuple):
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
        self.directory = directory or temporary_directory()  # the agent's disk, in its log
        self.spool_error: str | None = None  # why the spool stopped (an errno name)
        self.read_errors: dict[int, str] = {}  # command id -> the errno its spool failed with
        self._closed = False
        self._peer_has: dict[Key, int] = {}
        self.streams: dict[Key, StreamSpool] = {}
        keys = [(i, stream) for i in ids for stream in sorted(STREAMS)]
        files: list[IO[bytes]] = []
        try:
            files = [spool_file(self.directory) for _ in keys]
        except OSError as exc:
            for file in files:
                file.close()
            files = []
            self._spool_stopped(exc)
        for n, key in enumerate(keys):
            self.streams[key] = StreamSpool(files[n] if files else None)
        self._posted: list[_Posted] = []
        self._sent: dict[Key, int] = dict.fromkeys(self.streams, 0)
        self._changed = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.session: Peer | None = None
        self._sender: asyncio.Task[None] | None = None
        self.delivered = False  # `finished` went out on the attached connection
        self.last_peer = "-"
        # Its controller left (the agent's loop time by which the run is killed) or went
        # silent (until when it is kept for a resume): what a second controller is told.
        self.left_until: float | None = None
        self.kept_until: float | None = None
        self.on_sender_error: Callable[[BaseException], None] | None = None

    @property
    def peer(self) -> str:
        return self.session.peer if self.session is not None else f"{self.last_peer} (lost)"

    @property
    def room(self) -> int:
        """The backlog past which the command waits: small once nothing is spooled."""
        return self.limit if self.spool_error is None else min(self.limit, HELD_LIMIT)

    @property
    def backlog(self) -> int:
        return sum(spool.size - self._sent[key] for key, spool in self.streams.items())

    @property
    def written(self) -> int:
        return sum(spool.size for spool in self.streams.values())

    # -- the run's side -----------------------------------------------------------
    async def output(self, command_id: int, stream: str, data: bytes) -> None:
        """Spool DATA (or hold it, when the spool cannot grow); waits only while
        the backlog is at the limit."""
        while self.backlog >= self.room and not self._closed:
            self._space.clear()
            await self._space.wait()
        if self._closed:
            return  # the run's outbox is gone: nobody will read it
        spool = self.streams[command_id, stream]
        try:
            spool.append(data)
        except OSError as exc:
            self._spool_stopped(exc)
            spool.append(data)  # held now
        self._changed.set()

    def _spool_stopped(self, exc: OSError) -> None:
        """Once per run: the spool cannot grow; stream without it from here on."""
        if self.spool_error is not None:
            return
        self.spool_error = errno_name(exc)
        for spool in self.streams.values():
            spool.stop()
        log.warning(
            "run %s: the output spool in %s cannot grow (%s): streaming without it; "
            "a resume replays only the %d bytes spooled so far",
            self.run_id,
            self.directory,
            exc.strerror or exc,
            sum(spool.spooled for spool in self.streams.values()),
        )

    def _read_failed(self, key: Key, exc: OSError) -> None:
        """The disk failed under the spool: what it held of KEY is lost."""
        self.streams[key].lose_file()
        if key[0] not in self.read_errors:
            self.read_errors[key[0]] = errno_name(exc)
            log.error(
                "run %s command %d: cannot read its output spool back from %s (%s): "
                "output lost, the command ends as an error",
                self.run_id,
                key[0],
                self.directory,
                exc.strerror or exc,
            )
        self._spool_stopped(exc)

    def post(self, message: Message | collect.Matches) -> None:
        marks = {key: spool.size for key, spool in self.streams.items()}
        self._posted.append(_Posted(message, marks))
        self._changed.set()

    # -- connections ----------------------------------------------------------
    def lost(self, offsets: dict[Key, int]) -> int:
        """How many bytes past OFFSETS a resume cannot replay (not spooled, sent, cut)."""
        total = 0
        for key, spool in self.streams.items():
            held = min(spool.size, offsets.get(key, 0))
            total += spool.available(held) - held
        return total

    def attach(self, session: Peer, offsets: dict[Key, int] | None = None) -> None:
        """Send to SESSION from the first message; output from OFFSETS (default 0)."""
        self.detach()
        self._sent = {
            key: min(spool.size, (offsets or {}).get(key, 0)) for key, spool in self.streams.items()
        }
        self._peer_has = dict(self._sent)  # where the peer's copy of each stream ends
        self._update_space()
        self.session = session
        self.last_peer = session.peer
        self.left_until = self.kept_until = None
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
        self._closed = True
        for spool in self.streams.values():
            spool.close()
        self._space.set()  # a reader waiting for room goes on (its bytes dropped: the run is gone)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.on_sender_error is not None:
            self.on_sender_error(exc)

    def _update_space(self) -> None:
        if self.backlog < self.room:
            self._space.set()

    async def _send_all(self, session: Peer) -> None:
        index = 0
        while not session.closed:
            upto = self._posted[index] if index < len(self._posted) else None
            for key, spool in self.streams.items():
                end = upto.marks[key] if upto is not None else spool.size
                while self._sent[key] < end:
                    at = self._sent[key] = spool.available(self._sent[key])  # skip what is lost
                    if at >= end:
                        break
                    try:
                        data = spool.read(at, min(CHUNK, end - at))
                    except OSError as exc:
                        self._read_failed(key, exc)
                        continue
                    # After a skip, the frame says where it starts: the peer knows the gap.
                    skipped = self._peer_has[key] != at
                    session.send(
                        Output(id=key[0], stream=key[1], body=data, at=at if skipped else None),
                        linger=True,
                    )
                    if session.closed:
                        return
                    self._sent[key] = self._peer_has[key] = at + len(data)
                    spool.release(self._sent[key])
                    self._update_space()
                    await session.drain()
                    if session.closed:
                        return
            if upto is not None:
                if isinstance(upto.message, collect.Matches):
                    await collect.send_files(session, upto.message)  # read at the peer's pace
                    if session.closed:
                        return
                else:  # started and exits may wait for company; finished goes at once
                    message = self._as_sent(upto.message)
                    session.send(message, linger=isinstance(message, Started | Exit))
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

    def _as_sent(self, message: Message) -> Message:
        """A command whose spool could not be read back ends as an error: its output is
        not whole."""
        if isinstance(message, Exit) and message.id in self.read_errors:
            return dataclasses.replace(
                message,
                status=CommandStatus.ERROR,
                message="",
                timeout=None,
                spool_error=self.read_errors[message.id],
            )
        return message


def parse_offsets(items: list[OffsetsItem]) -> dict[Key, int]:
    offsets: dict[Key, int] = {}
    for item in items:
        offsets[item["id"], "stdout"] = item["stdout"]
        offsets[item["id"], "stderr"] = item["stderr"]
    return offsets
