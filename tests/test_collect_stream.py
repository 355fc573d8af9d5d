"""The agent's side of -collect: matching, and streaming through the run's outbox at
the connection's pace (one chunk in flight), again in full on a replay."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from agent import collect
from agent.spool import Outbox
from netjobs_core.wire.protocol import Message

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

    def send(self, message: Message) -> None:
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
    assert marker.type == collect.INTERNAL
    assert marker["matched"] == [2, 1, 0]
    assert marker["files"] == [
        [0, f"{tmp_path}/out-3.json"],
        [0, f"{tmp_path}/out-3.log"],
        [1, f"{tmp_path}/out-3.json"],
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
        outbox.post(Message("exit", {"id": 0}))
        outbox.post(collect.match(0, (f"{tmp_path}/*.bin",), {}, None))
        outbox.post(Message("finished"))
        async with asyncio.timeout(10):
            await first.blocked.wait()
        # Held at the first chunk's drain: the rest of the file is still on disk.
        assert [m.type for m in first.sent] == ["exit", "file", "file_data"]
        assert len(first.sent[-1].body) == collect.FILE_CHUNK
        outbox.attach(second)  # a resume: the replay starts over, files included
        async with asyncio.timeout(10):
            while not outbox.delivered:  # noqa: ASYNC110 - a condition of plain state
                await asyncio.sleep(0.001)
        kinds = [m.type for m in second.sent]
        assert kinds == ["exit", "file", *["file_data"] * 6, "file_end", "collected", "finished"]
        header, end, report = second.sent[1], second.sent[-3], second.sent[-2]
        assert header.fields == {"id": 0, "pattern": 0, "name": "big.bin", "size": len(data)}
        assert b"".join(m.body for m in second.sent if m.type == "file_data") == data
        assert end.fields == {
            "id": 0,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert report.fields == {"id": 0, "matched": [1]}
    finally:
        outbox.close()


async def test_too_large_unreadable_and_fifo_files_end_with_an_error(tmp_path):
    (tmp_path / "a-big").write_bytes(b"x" * 101)
    (tmp_path / "b-locked").write_bytes(b"x")
    (tmp_path / "b-locked").chmod(0)
    os.mkfifo(tmp_path / "c-fifo")
    peer = GatedPeer()
    marker = Message(
        collect.INTERNAL,
        {
            "id": 0,
            "files": [[0, str(tmp_path / name)] for name in ("a-big", "b-locked", "c-fifo")],
            "matched": [3],
            "limit": 100,
        },
    )
    async with asyncio.timeout(10):
        await collect.send_files(peer, marker)
    big, locked, fifo = (m for m in peer.sent if m.type == "file_end")
    assert "larger than the 100-byte limit" in big["error"] and big["bytes"] == 0
    assert fifo["error"] == "not a regular file" and fifo["bytes"] == 0
    if os.geteuid() == 0:  # root reads a mode-0 file
        assert "error" not in locked.fields and locked["bytes"] == 1
    else:
        assert "cannot read it" in locked["error"] and locked["bytes"] == 0
    assert sum(m.type == "file_data" for m in peer.sent) == (os.geteuid() == 0)
