"""`netjobs-agent --echo`: every output line on the agent's own standard output.

Each line is written as `[<test> <command id> <stream>] <line>`. The pipe readers
hand over whole chunks (complete lines; a partial line waits for its end, up to
MAX_LINE) and never wait: a writer thread empties a bounded queue, so a slow or
blocked terminal drops lines rather than slow a command. What was dropped is
counted and said on the next line that gets through: `[echo] 1234 lines dropped`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import BinaryIO

QUEUE_ITEMS = 32  # chunks of at most a pipe read each (agent.jobs.CHUNK): a few MiB at most
MAX_LINE = 64 * 1024  # a longer line is echoed in pieces
CLOSE_WAIT_S = 2.0  # for the writer to flush at shutdown (its output may be blocked)

Key = tuple[str, int, str]  # (test label, command id, stream)


class Echo:
    def __init__(self, out: BinaryIO, items: int = QUEUE_ITEMS) -> None:
        self._out = out
        self._queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(items)
        self._partial: dict[Key, bytes] = {}
        self._lock = threading.Lock()
        self._dropped = 0  # lines, since the last report
        self._thread = threading.Thread(target=self._write_all, name="echo", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def feed(self, label: str, command_id: int, stream: str, data: bytes) -> None:
        """Some bytes of one stream; never waits."""
        key = (label, command_id, stream)
        data = self._partial.pop(key, b"") + data
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) < MAX_LINE:
            self._partial[key] = data
            return
        if end == 0:
            end = len(data)
        elif len(data) - end >= MAX_LINE:
            end = len(data)
        if end < len(data):
            self._partial[key] = data[end:]
        block = data[:end]
        if not block.endswith(b"\n"):
            block += b"\n"
        self._put(key, block)

    def end(self, label: str, command_id: int, stream: str) -> None:
        """The stream closed: its last, unterminated line goes out too."""
        rest = self._partial.pop((label, command_id, stream), b"")
        if rest:
            self._put((label, command_id, stream), rest + b"\n")

    def _put(self, key: Key, block: bytes) -> None:
        prefix = f"[{key[0]} {key[1]} {key[2]}] ".encode("utf-8", "backslashreplace")
        try:
            self._queue.put_nowait((prefix, block))
        except queue.Full:
            with self._lock:
                self._dropped += block.count(b"\n")

    def _take_dropped(self) -> bytes:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return f"[echo] {dropped} lines dropped\n".encode() if dropped else b""

    def _write_all(self) -> None:
        while (item := self._queue.get()) is not None:
            prefix, block = item
            # One C-level pass puts the prefix before every line.
            text = self._take_dropped() + prefix + block[:-1].replace(b"\n", b"\n" + prefix)
            text += b"\n"
            if self._queue.empty():  # caught up: what was dropped meanwhile is said now
                text += self._take_dropped()
            try:
                self._out.write(text)
                self._out.flush()
            except (OSError, ValueError):
                return  # our standard output is gone: nothing more to echo to

    def close(self) -> None:
        """Flush what is queued (waiting a little at most), then say what was dropped."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=CLOSE_WAIT_S)
        self._thread.join(CLOSE_WAIT_S)
        if not self._thread.is_alive() and (report := self._take_dropped()):
            with contextlib.suppress(OSError, ValueError):
                self._out.write(report)
                self._out.flush()
