"""One command stream's output: spooled to its file, summed, a bounded head and tail kept.

The runner appends chunks as they arrive. The bytes go to the stream's file in the
run folder (`run_folder.RunFolder.host_dir() / cmd<k>.stdout`, mode 0600 in 0700
folders: atomic.open_private) exactly as the command wrote them; memory holds at most
the first and the last `keep` bytes (for the live display and the reports) and a
write buffer, whatever the output's size. An output of at most `keep` bytes stays
whole in memory until it ends and is written in one go, so small outputs cost one
file open, and only large ones hold a file open while they run. Nothing is decoded
here: text.output_excerpt words what people see.

A large output's file writes and its sha256 go to one writer thread (both release
the GIL): the event loop goes on verifying and reading frames meanwhile. At most
`IN_FLIGHT` bytes wait for it; past that `append` waits, as a write would have.
Anything that reads the file, the sum or the error first waits for the writes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from netjobs_core.atomic import make_private_dirs, open_private, write_private

__all__ = ["KEEP_BYTES", "SHOW_BYTES", "Output", "OutputFileError"]

KEEP_BYTES = 64 * 1024  # kept in memory at each end of an output
SHOW_BYTES = 64 * 1024  # what a report or log shows of a large output, head and tail together
WRITE_BUFFER = 256 * 1024
IN_FLIGHT = 16 * 1024 * 1024  # bytes handed to the writer thread, not written yet
READ_CHUNK = 1024 * 1024  # what `chunks` reads of a file at a time


class _Writer:
    """The one thread that writes large outputs and sums them, in order."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._room = threading.Condition()
        self._in_flight = 0

    def submit(self, size: int, job: Callable[[], None]) -> Future[None]:
        with self._room:
            # Wait while the thread is behind by more than IN_FLIGHT (the disk is slow).
            self._room.wait_for(lambda: self._in_flight == 0 or self._in_flight + size <= IN_FLIGHT)
            self._in_flight += size
            if self._pool is None:  # its thread is joined at exit, after what is queued
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="netjobs-output")
            return self._pool.submit(self._run, size, job)

    def _run(self, size: int, job: Callable[[], None]) -> None:
        try:
            job()
        finally:
            with self._room:
                self._in_flight -= size
                self._room.notify_all()


_WRITER = _Writer()


class OutputFileError(Exception):
    """An output's file is missing, or not what the results say it was."""


class Output:
    """The bytes of one stream of one command (`CommandResult.stdout` / `.stderr`)."""

    def __init__(self, path: Path | None = None, keep: int = KEEP_BYTES) -> None:
        self.path = path  # where the whole output is (or goes); None: memory only
        self.keep = max(1, keep)
        self.size = 0
        self._sha256: str | None = None  # known without the bytes (loaded from a document)
        self._hash = hashlib.sha256()
        self._head = bytearray()  # the first `keep` bytes (all of them while size <= keep)
        self._tail = bytearray()  # ends with the last `keep` bytes once size > keep
        self._file: BinaryIO | None = None
        self._written: Future[None] | None = None  # the writer thread's latest job for us
        self.closed = False
        self._error = ""

    # -- made from what a document says ----------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, path: Path | None = None) -> Output:
        """A finished output held whole (inline in a document, or made by a test)."""
        output = cls(path, keep=max(1, len(data)))
        output._head[:] = data
        output.size = len(data)
        output._hash.update(data)
        output.closed = True
        return output

    @classmethod
    def from_file(
        cls, path: Path | None, size: int, sha256: str, error: str = "", keep: int = KEEP_BYTES
    ) -> Output:
        """A finished output whose bytes are in `path` (referenced by a document).
        Its head and tail are read now (bounded); a missing or changed file is an `error`."""
        output = cls(path, keep)
        output.size, output._sha256, output.closed, output.error = size, sha256, True, error
        if path is None:
            output.error = output.error or "the output was not kept"
            return output
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size != size:
                    output.error = f"{path} is not the output on record (its size changed)"
                output._head[:] = file.read(min(size, output.keep))
                if size > output.keep:
                    file.seek(max(output.keep, size - output.keep))
                    output._tail[:] = file.read(output.keep)
        except OSError as exc:
            output.error = f"cannot read {path}: {exc.strerror or exc}"
        return output

    # -- written as it comes ----------------------------------------------------
    @property
    def error(self) -> str:
        """The file could not be written: the bytes in memory are all there is."""
        self._wait_written()
        return self._error

    @error.setter
    def error(self, text: str) -> None:
        self._error = text

    def _wait_written(self) -> None:
        if self._written is not None:
            self._written.result()

    def append(self, data: bytes) -> None:
        if not data:
            return
        if self.closed:
            raise ValueError("output already closed")
        room = self.keep - len(self._head)
        if room > 0:
            self._head += data[:room]
        if self.size + len(data) > self.keep:
            chunk = bytes(data)  # the thread keeps it: the caller may reuse its buffer
            self._written = _WRITER.submit(len(chunk), lambda: self._spill(chunk, room))
            if len(data) >= self.keep:
                self._tail[:] = memoryview(data)[-self.keep :]
            else:
                self._tail += data
                if len(self._tail) > 2 * self.keep:  # trimmed now and then: amortized O(1)
                    del self._tail[: -self.keep]
        else:
            self._hash.update(data)
        self.size += len(data)

    def _spill(self, data: bytes, room: int) -> None:
        """In the writer thread: sum DATA and write what the head does not hold to the
        file (opened on the first spill). A file that cannot be written is an `error`;
        the counting goes on."""
        self._hash.update(data)
        if self._error:
            return
        try:
            if self._file is None:
                self._file = self._open()
                self._file.write(self._head)
                rest = max(room, 0)
                if rest < len(data):
                    self._file.write(data[rest:])
            else:
                self._file.write(data)
        except (OSError, ValueError) as exc:
            self._error = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"
            self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self._error = self._error or f"cannot write {self.path}: {exc.strerror or exc}"

    def _open(self) -> BinaryIO:
        if self.path is None:
            raise ValueError("no file to spool to")
        name = os.fspath(self.path)
        make_private_dirs(os.path.dirname(name))
        return open_private(name, buffering=WRITE_BUFFER)

    def close(self) -> None:
        """The stream ended (or the run did): the file is complete. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._wait_written()
        if self._file is not None:
            self._close_file()
        elif self.size and self.path is not None and not self._error:
            # As text: a Path's parent is a new Path, formatted again (1000 hosts' worth).
            name = os.fspath(self.path)
            try:
                make_private_dirs(os.path.dirname(name))
                write_private(name, self._head)
            except OSError as exc:
                self.error = f"cannot write {self.path}: {exc.strerror or exc}"

    # -- read ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (self.size, self.sha256) == (other.size, other.sha256)

    __hash__ = None  # type: ignore[assignment]  # mutable while it runs

    def __repr__(self) -> str:
        return f"Output({self.size} bytes, path={os.fspath(self.path) if self.path else None})"

    @property
    def sha256(self) -> str:
        if self._sha256 is not None:
            return self._sha256
        self._wait_written()
        return self._hash.hexdigest()

    @property
    def whole_in_memory(self) -> bool:
        return self.size <= len(self._head)

    def read_bytes(self) -> bytes:
        """Every byte (from the file when it is not all in memory), checked against
        the size and sha256 on record; OutputFileError when the file does not match."""
        if self.whole_in_memory:
            return bytes(self._head)
        self._wait_written()
        if self._file is not None:
            self._file.flush()
        if self.path is None:  # memory only: its middle was never kept
            raise OutputFileError(
                f"only the first and last {self.keep} bytes of {self.size} were kept"
            )
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise OutputFileError(f"{self.path}: {exc.strerror or exc}") from None
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise OutputFileError(f"{self.path}: not the output on record (size or sha256)")
        return data

    def head(self, size: int) -> bytes:
        """Its first `size` bytes (from its file when memory holds fewer)."""
        if len(self._head) >= min(size, self.size):
            return bytes(self._head[:size])
        return next(self.chunks(size), b"")

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """Every byte in order, at most `size` at a time: from memory, or from the file
        without ever holding it whole (metrics.py reads large outputs so). A file that
        cannot be read is OutputFileError."""
        if self.whole_in_memory:
            for start in range(0, self.size, size):
                yield bytes(self._head[start : start + size])
            return
        self._wait_written()
        if self._file is not None:
            self._file.flush()
        if self._error or self.path is None:
            raise OutputFileError(self._error or "the output was not kept")
        left = self.size
        try:
            with open(self.path, "rb") as file:
                while left > 0 and (data := file.read(min(size, left))):
                    left -= len(data)
                    yield data
        except OSError as exc:
            raise OutputFileError(f"{self.path}: {exc.strerror or exc}") from None

    def since(self, offset: int) -> bytes:
        """The bytes from `offset` to the end, as far as memory holds them (live views)."""
        offset = max(0, offset)
        if offset >= self.size:
            return b""
        if self.whole_in_memory:
            return bytes(self._head[offset:])
        start = self.size - len(self._tail)
        return bytes(self._tail[max(0, offset - start) :])

    def excerpt(self, show: int = SHOW_BYTES) -> tuple[bytes, int, bytes]:
        """(head, bytes left out, tail) for people: the whole as the head when it is at
        most `show` bytes, else at most `show` bytes of its two ends, cut at line ends
        where it can (text.output_excerpt words it)."""
        if self.size <= show and self.whole_in_memory:
            return bytes(self._head), 0, b""
        half = max(1, min(show, 2 * self.keep) // 2)
        head = bytes(self._head[:half])
        if self.whole_in_memory:
            tail = bytes(self._head[max(half, self.size - half) :])
        else:
            tail = bytes(self._tail[max(0, len(self._tail) - half) :])
        # Whole lines where the cut allows: the head ends, the tail begins, at a newline.
        cut = head.rfind(b"\n")
        if cut >= 0:
            head = head[: cut + 1]
        cut = tail.find(b"\n")
        if 0 <= cut < len(tail) - 1:
            tail = tail[cut + 1 :]
        return head, self.size - len(head) - len(tail), tail
