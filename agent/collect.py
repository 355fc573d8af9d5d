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
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import itertools
import logging
import os
import re
import stat
from collections.abc import Mapping
from typing import Any, Protocol

from netjobs_core.wire.protocol import MAX_BODY, MAX_COLLECT_FILES, Message

FILE_CHUNK = 256 * 1024  # a file_data body (the protocol allows up to MAX_BODY)
MAX_SCAN = 100_000  # names a pattern's glob may list before the agent stops looking
INTERNAL = "collect"  # the outbox's marker: never sent as such

assert FILE_CHUNK <= MAX_BODY

log = logging.getLogger("netjobs.agent")

_VAR_RE = re.compile(r"\$(?:\{(NETJOBS_[A-Z0-9_]+)\}|(NETJOBS_[A-Z0-9_]+))")


class Peer(Protocol):
    closed: bool

    def send(self, message: Message) -> None: ...

    async def drain(self) -> None: ...


def expand(pattern: str, env: Mapping[str, str]) -> str:
    """PATTERN with its NETJOBS_* variables replaced (unknown ones are left as written)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    return os.path.expanduser(_VAR_RE.sub(value, pattern))


def match(
    command_id: int, patterns: tuple[str, ...], env: Mapping[str, str], limit: int | None
) -> Message:
    """The outbox marker for a command's files: [pattern index, path] pairs and
    how many regular files each pattern matched. Blocking: run it in a thread."""
    files: list[list[Any]] = []
    matched = []
    for index, pattern in enumerate(patterns):
        found = sorted(
            path
            for path in itertools.islice(glob.iglob(expand(pattern, env)), MAX_SCAN)
            if os.path.isfile(path)
        )
        matched.append(len(found))
        files.extend([index, path] for path in found[:MAX_COLLECT_FILES])
    return Message(INTERNAL, {"id": command_id, "files": files, "matched": matched, "limit": limit})


async def send_files(session: Peer, marker: Message) -> None:
    """Stream the marker's files, then the command's `collected` report."""
    command_id = marker["id"]
    for index, path in marker["files"]:
        await _send_file(session, command_id, index, path, marker["limit"])
        if session.closed:
            return
    session.send(Message("collected", {"id": command_id, "matched": marker["matched"]}))


def _open(path: str) -> tuple[int | None, int, str | None]:
    """(fd, size, error): O_NONBLOCK, so a FIFO put there since the glob cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return None, 0, f"cannot read it: {exc.strerror or exc}"
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None, 0, "not a regular file"
    return fd, info.st_size, None


async def _send_file(
    session: Peer, command_id: int, index: int, path: str, limit: int | None
) -> None:
    fd, size, error = await asyncio.to_thread(_open, path)
    name = os.path.basename(path)
    session.send(Message("file", {"id": command_id, "pattern": index, "name": name, "size": size}))
    digest = hashlib.sha256()
    sent = 0
    try:
        if error is None and limit is not None and size > limit:
            error = f"{size} bytes: larger than the {limit}-byte limit (--collect-max)"
        while fd is not None and error is None:
            try:
                chunk = await asyncio.to_thread(os.read, fd, FILE_CHUNK)
            except OSError as exc:
                error = f"read failed after {sent} bytes: {exc.strerror or exc}"
                break
            if not chunk:
                break
            if limit is not None and sent + len(chunk) > limit:
                error = f"it grew past the {limit}-byte limit (--collect-max) while being read"
                break
            digest.update(chunk)
            sent += len(chunk)
            session.send(Message("file_data", {"id": command_id}, chunk))
            await session.drain()
            if session.closed:
                return
    finally:
        if fd is not None:
            os.close(fd)
    end: dict[str, Any] = {"id": command_id, "bytes": sent, "sha256": digest.hexdigest()}
    if error is not None:
        end["error"] = error
        log.warning("command %d: %s: not collected: %s", command_id, path, error)
    else:
        log.info("command %d: collected %s (%d bytes)", command_id, path, sent)
    session.send(Message("file_end", end))
