"""The agent's side of -collect: matching, and streaming through the run's outbox at
the connection's pace (one chunk in flight), again in full on a replay."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from agent import collect
from agent.spool import Outbox
from netjobs_core import text
from netjobs_core.wire.messages import Collected, Exit, File, FileData, FileEnd, Finished, Message

pytestmark = pytest.mark.timeout(30)


class GatedPeer:
    """A connection whose drain blocks while its gate is closed, and says so."""

    def __init__(self) -> None:
        self.peer = "test"
        self.closed = False
        self.heartbeat = None
        self.sent: list[Message] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.blocked = asyncio.Event()

    def send(self, message: Message, linger: bool = False) -> None:
        self.sent.append(message)

    async def drain(self) -> None:
        if not self.gate.is_set():
            self.blocked.set()
        await self.gate.wait()

    def abort(self) -> None:
        self.closed = True


def test_patterns_expand_the_commands_variables_and_glob(tmp_path):
    for name in ("out-3.json", "out-3.log", "other.json"):
        (tmp_path / name).write_text(name)
    (tmp_path / "dir-3.json").mkdir()  # only regular files count
    env = {"NETJOBS_INDEX": "3"}
    marker = collect.match(
        7,
        (
            f"{tmp_path}/out-$NETJOBS_INDEX.*",
            f"{tmp_path}/*-${{NETJOBS_INDEX}}.json",
            "/nonexistent/*",
        ),
        env,
        100,
    )
    assert isinstance(marker, collect.Matches) and marker.limit == 100
    assert marker.matched == [2, 1, 0]
    assert marker.files == [
        (0, f"{tmp_path}/out-3.json"),
        (0, f"{tmp_path}/out-3.log"),
        (1, f"{tmp_path}/out-3.json"),
    ]
    assert (
        collect.expand("$NETJOBS_NOPE/$HOME", env) == "$NETJOBS_NOPE/$HOME"
    )  # only known NETJOBS_*


async def test_a_file_goes_one_chunk_at_a_time_and_again_on_a_replay(tmp_path):
    data = os.urandom(5 * collect.FILE_CHUNK + 123)
    (tmp_path / "big.bin").write_bytes(data)
    outbox = Outbox("r", [0])
    first, second = GatedPeer(), GatedPeer()
    try:
        first.gate.clear()  # the controller reads nothing for now
        outbox.attach(first)
        outbox.post(Exit(id=0, status="ok", message=""))
        outbox.post(collect.match(0, (f"{tmp_path}/*.bin",), {}, None))
        outbox.post(Finished())
        async with asyncio.timeout(10):
            await first.blocked.wait()
        # Held at the first chunk's drain: the rest of the file is still on disk.
        assert [m.TYPE for m in first.sent] == ["exit", "file", "file_data"]
        assert len(first.sent[-1].body) == collect.FILE_CHUNK
        outbox.attach(second)  # a resume: the replay starts over, files included
        async with asyncio.timeout(10):
            while not outbox.delivered:  # noqa: ASYNC110 - a condition of plain state
                await asyncio.sleep(0.001)
        kinds = [m.TYPE for m in second.sent]
        assert kinds == ["exit", "file", *["file_data"] * 6, "file_end", "collected", "finished"]
        header, end, report = second.sent[1], second.sent[-3], second.sent[-2]
        assert header == File(id=0, pattern=0, name="big.bin", size=len(data))
        assert b"".join(m.body for m in second.sent if isinstance(m, FileData)) == data
        assert end.to_frame().fields == {
            "id": 0,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert report == Collected(id=0, matched=[1])
    finally:
        outbox.close()


async def test_too_large_unreadable_and_fifo_files_end_with_an_error(tmp_path):
    (tmp_path / "a-big").write_bytes(b"x" * 101)
    (tmp_path / "b-locked").write_bytes(b"x")
    (tmp_path / "b-locked").chmod(0)
    os.mkfifo(tmp_path / "c-fifo")
    peer = GatedPeer()
    files = [(0, str(tmp_path / name)) for name in ("a-big", "b-locked", "c-fifo")]
    marker = collect.Matches(0, files, [3], 100)
    async with asyncio.timeout(10):
        await collect.send_files(peer, marker)
    big, locked, fifo = (m for m in peer.sent if isinstance(m, FileEnd))
    # Codes and numbers on the wire; the controller words them (netjobs_core.text).
    assert (big.error, big.limit, big.bytes) == ("too-large", 100, 0)
    assert words(big) == "larger than the 100 B limit"
    assert (fifo.error, fifo.limit, fifo.bytes) == ("not-regular", None, 0)
    assert words(fifo) == "not a regular file"
    if os.geteuid() == 0:  # root reads a mode-0 file
        assert "error" not in locked.to_frame().fields and locked.bytes == 1
    else:
        assert (locked.error, locked.os_error, locked.bytes) == ("unreadable", "EACCES", 0)
        assert words(locked) == "cannot read it: Permission denied"
    assert sum(isinstance(m, FileData) for m in peer.sent) == (os.geteuid() == 0)


def words(end: FileEnd) -> str:
    assert end.error is not None
    return text.file_not_collected(
        end.error, sent=end.bytes, limit=end.limit, os_error=end.os_error
    )


def test_the_controller_words_the_codes_and_an_older_agents_sentence_as_it_is():
    sentence = "101 bytes: larger than the 100-byte limit (--collect-max)"
    assert text.file_not_collected(sentence, sent=0) == sentence
    assert text.file_not_collected("read-failed", sent=2048, os_error="EIO") == (
        "read failed after 2.0 KiB: Input/output error"
    )
    assert text.file_not_collected("grew", sent=0, limit=None, os_error="ENOSUCH") == (
        "it grew past the size limit while being read"
    )
    assert text.os_error_text("ENOSUCH") == "ENOSUCH"
