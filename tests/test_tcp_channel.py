"""client.TcpChannel, the controller's end of a TCP connection: reads straight into
one buffer, handed over as a view; reading waits until the view has been used."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

import pytest

from netjobs_core.client import FIRST_READ_SIZE, READ_SIZE, AgentError, Refused, open_tcp
from netjobs_core.wire.address import Address
from tests.loopback import serving


@contextlib.asynccontextmanager
async def serve(handler):
    async with serving(handler) as port:
        yield Address("127.0.0.1", port)


def sending(data: bytes):
    """A server's handler that sends DATA and closes."""

    async def handler(reader, writer):
        writer.write(data)
        await writer.drain()
        writer.close()

    return handler


async def test_reads_in_pieces_then_the_end():
    async with serve(sending(b"0123456789")) as address:
        channel = await open_tcp(address, 5)
        got = b""
        while piece := await channel.read(3):
            assert len(piece) <= 3
            got += bytes(piece)
        assert got == b"0123456789"
        assert await channel.read(3) == b""
        await channel.close(1)


async def test_a_reset_is_an_os_error():
    async def handler(reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # RST

    async with serve(handler) as address:
        channel = await open_tcp(address, 5)
        with pytest.raises(OSError):
            while await channel.read(READ_SIZE):
                pass
        channel.abort()


async def test_an_agent_we_do_not_read_waits_on_tcp():
    sent = 0
    stalled = asyncio.Event()

    async def handler(reader, writer):
        nonlocal sent
        chunk = b"x" * 65536
        try:
            while sent < 256 * 1024 * 1024:
                writer.write(chunk)
                sent += len(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    stalled.set()  # its writes wait on us
                    await writer.drain()
        except ConnectionError:
            writer.close()  # we hung up: the test is over

    async with serve(handler) as address:
        channel = await open_tcp(address, 5)
        first = await channel.read(READ_SIZE)
        assert first
        await asyncio.wait_for(stalled.wait(), 10)
        # We read one buffer; the rest waits in the kernel's buffers, not in ours.
        assert sent < 64 * 1024 * 1024
        total = len(first)
        while total < sent - 65536:
            total += len(await channel.read(READ_SIZE))
        channel.abort()


async def test_the_buffer_starts_small_and_grows_while_a_stream_fills_it():
    async with serve(sending(b"y" * (8 * READ_SIZE))) as address:
        channel = await open_tcp(address, 5)
        sizes = []
        while piece := await channel.read(READ_SIZE):
            sizes.append(len(piece))
        await channel.close(1)
    assert sum(sizes) == 8 * READ_SIZE
    assert sizes[0] <= FIRST_READ_SIZE  # 1000 idle connections hold 4 MB, not 1 GB
    # A stream is read up to a frame at a time: the buffer grew to READ_SIZE (a read
    # larger than the size before it; one equal to it needs the sender a MB ahead).
    assert READ_SIZE // 4 < max(sizes) <= READ_SIZE


async def test_the_last_write_arrives_with_the_close():
    """`write(last=True)` may wait for the close (MSG_MORE), never be lost to it: the
    peer reads those bytes, then the end of the stream."""
    got = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        got.set_result(await reader.read())  # until the end of the stream
        writer.close()

    async with serve(handler) as address:
        channel = await open_tcp(address, 5)
        channel.write(b"first ")
        channel.write(b"bye", last=True)
        await channel.close(1)
        assert await asyncio.wait_for(got, 5) == b"first bye"


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_connects_by_address_and_by_name_and_names_what_fails(loop_name):
    """The connect is made by hand (client._sock_connect): a numeric address and a name
    (through the resolver) connect on either loop; a closed port is Refused and a name
    that does not resolve is named, never a traceback."""
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    async def main():
        async with serve(sending(b"hi")) as address:
            for target in (address, Address("localhost", address.port)):
                channel = await open_tcp(target, 5)
                assert bytes(await channel.read(2)) == b"hi"
                await channel.close(1)
        with socket.socket() as unused:  # a port nothing listens on
            unused.bind(("127.0.0.1", 0))
            closed = Address("127.0.0.1", unused.getsockname()[1])
        with pytest.raises(Refused, match=re.escape(f"127.0.0.1:{closed.port}")):
            await open_tcp(closed, 5)
        with pytest.raises(AgentError, match=re.escape("bücher.invalid")):
            await open_tcp(Address("bücher.invalid", 16192), 5)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
