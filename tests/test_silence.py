"""wire/silence.py: a stall of this process's own loop is not the peer's silence.

The loop is stalled on purpose (a callback that blocks in time.sleep) while the peer's
bytes arrive in a real socket: the mechanism the agent's heartbeat watchdog met under
load, in one process, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import socket
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from netjobs_core.wire.silence import PeerSilent, Silence, receive_within

pytestmark = pytest.mark.timeout(30)

WINDOW_S = 0.1
STALL_S = 0.4  # longer than the window: the deadline passes while the loop is blocked


@contextlib.asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[asyncio.StreamReader, socket.socket]]:
    """A stream reader on one end of a socket pair, and the other end: the peer."""
    ours, peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        yield reader, peer
    finally:
        writer.close()
        peer.close()


async def stalled_read(
    reader_call: Callable[[asyncio.StreamReader], Awaitable[bytes]],
) -> bytes:
    """Connect a socket pair; during a stall of this loop the peer sends one byte;
    return what READER_CALL(reader) gives."""
    async with socket_pair() as (reader, peer):

        def stall() -> None:
            peer.send(b"x")  # in the kernel before the deadline, not yet read by the loop
            time.sleep(STALL_S)

        asyncio.get_running_loop().call_later(WINDOW_S / 2, stall)
        async with asyncio.timeout(10):
            return await reader_call(reader)


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
    async with socket_pair() as (reader, peer):
        async with asyncio.timeout(10):
            with pytest.raises(PeerSilent):
                await receive_within(lambda: reader.read(100), WINDOW_S)
        peer.send(b"later")  # the stream is intact after the cancelled reads
        async with asyncio.timeout(10):
            assert await receive_within(lambda: reader.read(100), WINDOW_S) == b"later"


async def test_a_silent_peer_during_a_stall_is_silent_after_it():
    async with socket_pair() as (reader, _peer):
        asyncio.get_running_loop().call_later(WINDOW_S / 2, time.sleep, STALL_S)
        async with asyncio.timeout(10):
            with pytest.raises(PeerSilent):
                await receive_within(lambda: reader.read(100), WINDOW_S)


async def test_the_sockets_own_timeout_is_passed_on():
    async def keepalive_gave_up() -> bytes:
        raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")

    async with asyncio.timeout(10):
        with pytest.raises(TimeoutError) as caught:
            await receive_within(keepalive_gave_up, WINDOW_S)
    assert caught.value.errno == errno.ETIMEDOUT


async def test_one_watch_over_many_receives_moves_one_timer():
    # Bytes every 20 ms for longer than a window: each receive is within its own
    # window, and the watch's one timer is re-armed only when it fires (about once a
    # window, more only after a stall of this loop), not once per receive.
    window, sends = 0.3, 20
    loop = asyncio.get_running_loop()
    armed = receives = 0
    call_at = loop.call_at
    silence = Silence()

    def counting_call_at(when, callback, *args, **kwargs):
        nonlocal armed
        if getattr(callback, "__self__", None) is silence:
            armed += 1
        return call_at(when, callback, *args, **kwargs)

    async with socket_pair() as (reader, peer):

        async def read() -> bytes:
            nonlocal receives
            receives += 1
            return await reader.read(100)

        loop.call_at = counting_call_at
        try:
            for i in range(sends):
                loop.call_later(0.02 * (i + 1), peer.send, b"x")
            async with asyncio.timeout(10):
                got = b""
                while len(got) < sends:
                    got += await silence.receive(read, window)
                with pytest.raises(PeerSilent):
                    await silence.receive(read, window)
            assert armed <= receives // 2
        finally:
            loop.call_at = call_at
            silence.close()


async def test_a_cancel_from_outside_is_not_the_peers_silence():
    silence = Silence()
    async with socket_pair() as (reader, peer):
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(WINDOW_S / 4):
                    await silence.receive(lambda: reader.read(100), WINDOW_S)
            peer.send(b"after")  # the watch goes on serving receives
            async with asyncio.timeout(10):
                assert await silence.receive(lambda: reader.read(100), WINDOW_S) == b"after"
        finally:
            silence.close()


async def test_a_closed_watch_leaves_nothing_armed():
    async with socket_pair() as (reader, peer):
        peer.send(b"x")
        silence = Silence()
        async with asyncio.timeout(10):
            assert await silence.receive(lambda: reader.read(100), 3600) == b"x"
        watch = weakref.ref(silence)
        silence.close()  # its timer, armed for an hour, holds it no more
        del silence
        gc.collect()
        assert watch() is None


async def test_a_shorter_window_after_a_long_one_ends_at_its_own_deadline():
    # The agent waits an hour between runs and WINDOW_S during one: the watch's timer,
    # armed for the hour, must not hold the short window's silence back.
    silence = Silence()
    async with socket_pair() as (reader, peer):
        try:
            peer.send(b"x")
            async with asyncio.timeout(10):
                assert await silence.receive(lambda: reader.read(100), 3600) == b"x"
                began = time.monotonic()
                with pytest.raises(PeerSilent):
                    await silence.receive(lambda: reader.read(100), WINDOW_S)
            assert time.monotonic() - began < 5
        finally:
            silence.close()
