"""wire/silence.py: a stall of this process's own loop is not the peer's silence.

The loop is stalled on purpose (a callback that blocks in time.sleep) while the peer's
bytes arrive in a real socket: the mechanism the agent's heartbeat watchdog met under
load, in one process, bounded in time.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from netjobs_core.wire.silence import PeerSilent, receive_within

pytestmark = pytest.mark.timeout(30)

WINDOW_S = 0.1
STALL_S = 0.4  # longer than the window: the deadline passes while the loop is blocked


async def stalled_read(
    reader_call: Callable[[asyncio.StreamReader], Awaitable[bytes]],
) -> bytes:
    """Connect a socket pair; during a stall of this loop the peer sends one byte;
    return what READER_CALL(reader) gives."""
    ours, peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:

        def stall() -> None:
            peer.send(b"x")  # in the kernel before the deadline, not yet read by the loop
            time.sleep(STALL_S)

        asyncio.get_running_loop().call_later(WINDOW_S / 2, stall)
        async with asyncio.timeout(10):
            return await reader_call(reader)
    finally:
        writer.close()
        peer.close()


async def test_a_plain_timeout_calls_the_peer_silent_after_a_stall():
    # Why the module exists: the expired timer runs before the task that the byte woke.
    async def plain(reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(WINDOW_S):
            return await reader.read(100)

    with pytest.raises(TimeoutError):
        await stalled_read(plain)


async def test_bytes_that_came_during_a_stall_are_received():
    async def watched(reader: asyncio.StreamReader) -> bytes:
        return await receive_within(lambda: reader.read(100), WINDOW_S)

    assert await stalled_read(watched) == b"x"


async def test_a_silent_peer_is_still_silent():
    ours, peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(PeerSilent):
                await receive_within(lambda: reader.read(100), WINDOW_S)
        peer.send(b"later")  # the stream is intact after the cancelled reads
        async with asyncio.timeout(10):
            assert await receive_within(lambda: reader.read(100), WINDOW_S) == b"later"
    finally:
        writer.close()
        peer.close()


async def test_a_silent_peer_during_a_stall_is_silent_after_it():
    ours, peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        asyncio.get_running_loop().call_later(WINDOW_S / 2, time.sleep, STALL_S)
        async with asyncio.timeout(10):
            with pytest.raises(PeerSilent):
                await receive_within(lambda: reader.read(100), WINDOW_S)
    finally:
        writer.close()
        peer.close()


async def test_the_sockets_own_timeout_is_passed_on():
    async def keepalive_gave_up() -> bytes:
        raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")

    async with asyncio.timeout(10):
        with pytest.raises(TimeoutError) as caught:
            await receive_within(keepalive_gave_up, WINDOW_S)
    assert caught.value.errno == errno.ETIMEDOUT
