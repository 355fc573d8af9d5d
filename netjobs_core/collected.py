"""Collected files, the controller's side: the mirror of agent/collect.py.

The agent streams each file a command's `-collect` patterns matched as `file`,
`file_data`... `file_end`, one file at a time. Each is written to the host's
folder chunk by chunk as it comes (never whole in memory), under a hidden
`.NAME.part` (atomic.part_name), summed as it is written. Only once the agent's
byte count and SHA-256 match what came, the bytes are the size the agent
announced at the open (else it was written to while read: no version of it) and
the part holds what was summed (created for it, never a file that was there,
which another writer might share, and at its end still that file with that many
bytes: atomic.written_in_place, two stats; reading every byte back would double
the disk's work and block the loop as long), it is flushed to the disk and gets
its own name (atomic.publish, never over a file that is there) and is listed on
its command. A kill of the controller meanwhile leaves a `.part`, never a part of
a file under its own name. A file that breaks a limit, changed while read, cannot
be written, is replaced or is cut off is removed and becomes a warning on its
command.

Bounds, whatever the agent sends: at most MAX_COLLECT_FILES files per pattern
(past that: a protocol error, the host fails), each at most `--collect-max`
bytes, and all of a host's files together at most `--collect-max` times its
patterns. Names are given in O(1) each, however many files share one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from netjobs_core import text
from netjobs_core.atomic import (
    make_private_dirs,
    open_private,
    part_name,
    publish,
    written_in_place,
)
from netjobs_core.client import ConnectionLost
from netjobs_core.results import Collected, CommandResult
from netjobs_core.run_folder import OUTPUT_NAME, safe_name
from netjobs_core.wire.messages import MAX_COLLECT_FILES, File, FileData, FileEnd
from netjobs_core.wire.messages import Collected as CollectedMessage


@dataclass
class _Incoming:
    """A collected file on its way: written to disk chunk by chunk as it comes."""

    index: int  # the command
    pattern: str
    path: Path  # its name once whole
    part: Path  # where it is written until then
    size: int  # as the agent announced it
    file: BinaryIO | None = None  # None once the copy failed: the rest is only counted
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0  # bytes
    error: str = ""
    identity: tuple[int, int] | None = None  # (device, inode) of the file created for it
    unsaved: bool = False  # it failed here, on the controller's disk: not the agent's doing

    def fail(self, error: str) -> None:
        """Stop writing: the file is not kept (the first error is the one reported)."""
        self.error = self.error or error
        if self.file is not None:
            with contextlib.suppress(OSError):  # its error is already the first
                self.file.close()
            self.file = None
        for path in (self.part, self.path):  # the part, or the name it was given
            with contextlib.suppress(OSError):
                there = os.stat(path)
                if (there.st_dev, there.st_ino) == self.identity:  # ours, not another's
                    path.unlink()

    def not_saved(self, error: str) -> None:
        """The controller could not save it (a full disk, another file in its place)."""
        self.unsaved = self.unsaved or not self.error
        self.fail(error)

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.file is None:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.not_saved(f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self.digest.update(data)


def _keep(incoming: _Incoming) -> str:
    """Flush INCOMING's whole part to the disk and give it its own name: nothing (""),
    or what went wrong (the part, and the name if it was given, are the caller's to
    remove: incoming.fail)."""
    file = incoming.file
    assert file is not None  # no error: it was written
    try:
        # A full disk may refuse the last buffered bytes only now.
        problem = written_in_place(file, incoming.part, incoming.received)
        if problem:
            return problem
        os.fsync(file.fileno())
        file.close()
        incoming.file = None
        publish(incoming.part, incoming.path)
        there = os.stat(incoming.path)
    except OSError as exc:
        return f"cannot write {incoming.path}: {exc.strerror or exc}"
    if (there.st_dev, there.st_ino) != incoming.identity:
        return f"{incoming.part} was replaced by another file while it was written"
    return ""


class FileReception:
    """One host's collected files in one test: where each is saved, the one on its way.

    `changed` holds the commands whose list of files or warnings changed, in order,
    for the owner to report and clear (no callback: a host's state that called back
    into its owner would be a reference cycle, freed only by the garbage collector).
    """

    def __init__(
        self,
        directory: Path,
        patterns: Sequence[Sequence[str]],  # each command's -collect patterns
        commands: Sequence[CommandResult],
        limit: int | None,  # bytes per file (--collect-max); None: no limit
    ) -> None:
        self.directory = directory
        self.patterns = patterns
        self.commands = commands
        self.limit = limit
        self.changed: list[int] = []
        self.incoming: _Incoming | None = None
        # (command, agent's name, how many of that name before) -> the name it is saved as;
        # the occurrences count again from 0 on a resume, whose replay resends every file.
        self.names: dict[tuple[int, str, int], str] = {}
        self.taken: set[str] = set()  # the names given, to keep each O(1)
        self.saved: set[Path] = set()  # the paths created here (a replay makes them again)
        self.serials: Counter[tuple[int, str]] = Counter()  # the last serial tried per name
        self.seen: Counter[tuple[int, str]] = Counter()
        self.per_pattern: Counter[tuple[int, int]] = Counter()  # files since the (re)start
        patterns_in_all = sum(len(p) for p in patterns)
        self.total_limit = None if limit is None else limit * max(1, patterns_in_all)
        self.total = 0  # bytes of the files kept since the (re)start

    def resumed(self) -> None:
        """The agent replays every file after a resume: the same names again."""
        self.seen.clear()
        self.per_pattern.clear()
        self.total = 0

    def cut_off(self) -> None:
        """The connection ended mid-file: what came is not the file."""
        if self.incoming is not None:
            incoming, self.incoming = self.incoming, None
            self.warn(incoming.index, f"{incoming.path.name}: incomplete")
            incoming.fail("incomplete")

    def warn(self, index: int, warning: str) -> None:
        warnings = self.commands[index].warnings
        if warning not in warnings:  # a replay after a resume says it again
            warnings.append(warning)
            self.changed.append(index)

    def _name(self, index: int, name: str) -> str:
        """Where command INDEX's file NAME goes in the host's folder: its own name,
        unless another file (or a spooled output) has it."""
        key = (index, name, self.seen[index, name])
        self.seen[index, name] += 1
        saved = self.names.get(key)
        if saved is None:
            safe = saved = safe_name(name)
            while saved in self.taken or OUTPUT_NAME.fullmatch(saved):
                serial = self.serials[index, safe] = self.serials[index, safe] + 1
                saved = f"cmd{index}.{serial}.{safe}" if serial > 1 else f"cmd{index}.{safe}"
            self.names[key] = saved
            self.taken.add(saved)
        return saved

    def on_file(self, message: File) -> None:
        index = message.id
        if not 0 <= index < len(self.patterns) or message.pattern >= len(self.patterns[index]):
            raise ConnectionLost("protocol error: a collected file nobody asked for")
        pattern = message.pattern
        self.per_pattern[index, pattern] += 1
        if self.per_pattern[index, pattern] > MAX_COLLECT_FILES:
            raise ConnectionLost(
                f"protocol error: more than {MAX_COLLECT_FILES} files for one -collect pattern"
            )
        if self.incoming is not None:  # a replay after a resume sends it again
            self.incoming.fail("resent")
        path = self.directory / self._name(index, message.name)
        if path in self.saved:  # a replay after a resume: the copy before is ours
            self.saved.discard(path)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        incoming = self.incoming = _Incoming(
            index, self.patterns[index][pattern], path, part_name(path), message.size
        )
        if self.limit is not None and message.size > self.limit:
            size, limit = text.size(message.size), text.size(self.limit)
            incoming.fail(f"{size}: larger than the {limit} limit")
            return
        try:
            make_private_dirs(self.directory)
            if os.path.lexists(path):  # not ours: found now, not after the whole transfer
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            incoming.file = open_private(incoming.part, exclusive=True)
        except OSError as exc:
            incoming.not_saved(f"cannot write {path}: {exc.strerror or exc}")
            return
        mine = os.fstat(incoming.file.fileno())
        incoming.identity = (mine.st_dev, mine.st_ino)

    def on_file_data(self, message: FileData) -> None:
        incoming = self.incoming
        assert incoming is not None  # the protocol: file_data only inside a file
        incoming.write(message.body)
        if self.limit is not None and incoming.received > self.limit:
            incoming.fail(f"more than the {text.size(self.limit)} limit")
        elif self.total_limit is not None and self.total + incoming.received > self.total_limit:
            incoming.fail(f"the host's files exceed {text.size(self.total_limit)} in all")

    def on_file_end(self, message: FileEnd) -> None:
        incoming = self.incoming
        assert incoming is not None
        self.incoming = None
        # Our own finding first: the agent's code says the same, in fewer facts.
        error = incoming.error or (
            message.error
            and text.file_not_collected(
                message.error,
                sent=message.bytes,
                limit=message.limit,
                os_error=message.os_error,
                announced=incoming.size,
                size_then=message.size,
            )
        )
        digest = incoming.digest.hexdigest()
        if not error and (message.bytes != incoming.received or message.sha256 != digest):
            error = "its SHA-256 does not match what was received"
        if not error and incoming.received != incoming.size and incoming.size != 0:
            # An agent from before the CHANGED code read on to where the file ended then
            # (size 0 and more: a file the system writes as it is read, as /proc's).
            error = text.file_changed(incoming.size, None, incoming.received)
        command = self.commands[incoming.index]
        # A replay after a resume may send a file again: the last copy is the one listed.
        command.collected = [c for c in command.collected if c.path != incoming.path]
        name = incoming.path.name
        if name in command.not_saved:
            command.not_saved.remove(name)
        if error:
            incoming.fail(error)
            self._not_collected(incoming)
            return
        problem = _keep(incoming)
        if problem:
            incoming.not_saved(problem)
            self._not_collected(incoming)
            return
        self.saved.add(incoming.path)
        command.collected.append(
            Collected(incoming.pattern, incoming.path, incoming.received, message.sha256)
        )
        self.total += incoming.received
        self.changed.append(incoming.index)

    def _not_collected(self, incoming: _Incoming) -> None:
        command = self.commands[incoming.index]
        if incoming.unsaved:
            command.not_saved.append(incoming.path.name)
        self.warn(incoming.index, f"{incoming.path.name}: not collected: {incoming.error}")

    def on_collected(self, message: CollectedMessage) -> None:
        index = message.id
        if not 0 <= index < len(self.patterns):
            return
        for pattern, matched in zip(self.patterns[index], message.matched, strict=False):
            if matched == 0:
                self.warn(index, f"-collect {pattern!r}: no file matched")
            elif matched > MAX_COLLECT_FILES:
                self.warn(
                    index,
                    f"-collect {pattern!r}: {matched} files matched, "
                    f"only the first {MAX_COLLECT_FILES} were collected",
                )
