"""Collected files: match a command's patterns after it ends, stream the files.

The patterns come only from the authenticated controller's `prepare`; the
agent reads whatever file its own user may read (docs: run it as a user that
may read only what the tests need). NETJOBS_* variables of the command's
environment are expanded in a pattern (`$NETJOBS_INDEX`, `${NETJOBS_HOST}`),
then `~`, then it is globbed (relative to the agent's working directory, where
the commands run too); only regular files count.

The files are read when the outbox's sender reaches them, in chunks of
FILE_CHUNK, each sent and drained before the next is read: the connection's
pace is the only buffer, and a file never sits whole in memory. A replay after
a resume reads them again.

A file is stat'ed (on its open descriptor) when it is opened and again once read
whole: if its size or times moved, or the read found another size than the open,
a writer changed it meanwhile and what was sent is no version of it (a stat cannot
tell an append from a rewrite): its `file_end` says CHANGED, and the controller
keeps none of it.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import hashlib
import itertools
import logging
import os
import re
import stat
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from netjobs_core.wire.framing import MAX_BODY
from netjobs_core.wire.messages import (
    MAX_COLLECT_FILES,
    Collected,
    File,
    FileData,
    FileEnd,
    FileError,
    Message,
)

FILE_CHUNK = 256 * 1024  # a file_data body (the protocol allows up to MAX_BODY)
MAX_SCAN = 100_000  # names a pattern's glob may list before the agent stops looking

assert FILE_CHUNK <= MAX_BODY

log = logging.getLogger("netjobs.agent")

_VAR_RE = re.compile(r"\$(?:\{(NETJOBS_[A-Z0-9_]+)\}|(NETJOBS_[A-Z0-9_]+))")


class Peer(Protocol):
    peer: str
    closed: bool

    def send(self, message: Message) -> None: ...

    async def drain(self) -> None: ...


def expand(pattern: str, env: Mapping[str, str]) -> str:
    """PATTERN with its NETJOBS_* variables replaced (unknown ones are left as written)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    return os.path.expanduser(_VAR_RE.sub(value, pattern))


class Matches(NamedTuple):
    """A command's files, found after its end: posted to the outbox in the place of
    the messages they become, which its sender reads at the peer's pace."""

    id: int  # the command's
    files: list[tuple[int, str]]  # (pattern index, path), in the order they are sent
    matched: list[int]  # how many regular files each pattern matched
    limit: int | None  # the largest file sent (--collect-max)
    label: str = ""  # the test's, for the log

    @property
    def name(self) -> str:
        """The command as the agent's log names it (agent.jobs.Job.name)."""
        return f"test {self.label!r} command {self.id}"


def match(
    command_id: int,
    patterns: tuple[str, ...],
    env: Mapping[str, str],
    limit: int | None,
    label: str = "",
) -> Matches:
    """The files of a command's patterns. Blocking: run it in a thread."""
    files: list[tuple[int, str]] = []
    matched = []
    for index, pattern in enumerate(patterns):
        found = sorted(
            path
            for path in itertools.islice(glob.iglob(expand(pattern, env)), MAX_SCAN)
            if os.path.isfile(path)
        )
        matched.append(len(found))
        files.extend((index, path) for path in found[:MAX_COLLECT_FILES])
    return Matches(command_id, files, matched, limit, label)


async def send_files(session: Peer, matches: Matches) -> None:
    """Stream the files, then the command's `collected` report."""
    for index, path in matches.files:
        await _send_file(session, matches, index, path)
        if session.closed:
            return
    session.send(Collected(id=matches.id, matched=matches.matched))


def _errno_name(exc: OSError) -> str | None:
    """The errno's symbol (EACCES): a fact the controller words on any platform."""
    return errno.errorcode.get(exc.errno) if exc.errno is not None else None


class _Stamp(NamedTuple):
    """What a stat says of a file's content: any write changes one of these (the
    times as the file system keeps them: a write within its clock's tick, ~4 ms on
    Linux, that leaves the size as it was is not seen)."""

    size: int
    mtime_ns: int
    ctime_ns: int


def _stamp(fd: int) -> _Stamp:
    info = os.fstat(fd)
    return _Stamp(info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _open(path: str) -> tuple[int | None, _Stamp | None, FileError | None, str | None]:
    """(fd, stamp, error, os_error): O_NONBLOCK, so a FIFO put there since the glob
    cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return None, None, FileError.UNREADABLE, _errno_name(exc)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None, None, FileError.NOT_REGULAR, None
    return fd, _Stamp(info.st_size, info.st_mtime_ns, info.st_ctime_ns), None, None


def changed(before: _Stamp, after: _Stamp, sent: int) -> bool:
    """Whether a file read whole (SENT bytes) is not the file as it was at BEFORE: its
    size or times moved, or the read found another size. A file of size 0 whose stat
    stays as it was is one the system writes as it is read (/proc): what was read is it."""
    return after != before or (sent != before.size and before.size != 0)


async def _send_file(session: Peer, matches: Matches, index: int, path: str) -> None:
    command_id, limit = matches.id, matches.limit
    fd, before, error, os_error = await asyncio.to_thread(_open, path)
    size = before.size if before is not None else 0
    name = os.path.basename(path)
    session.send(File(id=command_id, pattern=index, name=name, size=size))
    digest = hashlib.sha256()
    sent = 0
    after: _Stamp | None = None
    try:
        if error is None and limit is not None and size > limit:
            error = FileError.TOO_LARGE
        while fd is not None and error is None:
            try:
                chunk = await asyncio.to_thread(os.read, fd, FILE_CHUNK)
            except OSError as exc:
                error, os_error = FileError.READ_FAILED, _errno_name(exc)
                break
            if not chunk:
                break
            if limit is not None and sent + len(chunk) > limit:
                error = FileError.GREW
                break
            digest.update(chunk)
            sent += len(chunk)
            session.send(FileData(id=command_id, body=chunk))
            await session.drain()
            if session.closed:
                return
        if fd is not None and error is None:  # read whole: still the file it was at the open?
            after = _stamp(fd)
    finally:
        if fd is not None:
            os.close(fd)
    if error is None and before is not None and after is not None and changed(before, after, sent):
        error = FileError.CHANGED
    if error is not None:
        log.warning(
            "%s: %s: not collected: %s%s (%d of %d bytes sent%s)",
            matches.name,
            path,
            error,
            f" {os_error}" if os_error else "",
            sent,
            size,
            f", {after.size} when the read ended" if error is FileError.CHANGED and after else "",
        )
    else:
        log.info("%s: collected %s (%d bytes) for %s", matches.name, path, sent, session.peer)
    session.send(
        FileEnd(
            id=command_id,
            bytes=sent,
            sha256=digest.hexdigest(),
            error=error,
            limit=limit if error in (FileError.TOO_LARGE, FileError.GREW) else None,
            os_error=os_error,
            size=after.size if error is FileError.CHANGED and after is not None else None,
        )
    )
