"""Peers that are not NetJobs 3 agents: clear errors naming the host, never a hang."""

import asyncio
import contextlib
import secrets
import socket
import time

import pytest

from netjobs_core.check import check_hosts
from netjobs_core.wire.address import Address
from netjobs_core.wire.framing import MAGIC
from netjobs_core.wire.tokens import Token
from tests.loopback import serving

pytestmark = pytest.mark.timeout(30)
TOKEN = Token(secrets.token_urlsafe(32).encode(), "test")


async def http_server(reader, writer):
    await reader.read(100)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def echo_server(reader, writer):  # what a NetJobs 2.x agent does with a greeting
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


async def silent_server(reader, writer):
    await reader.read()  # never answers, never closes


async def closing_server(reader, writer):
    writer.close()


async def future_agent(reader, writer):
    # A NetJobs agent of a later protocol version answers in its own version.
    await reader.read(100)
    writer.write(MAGIC + bytes([99, 0]) + bytes(8))
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (http_server, "not a NetJobs agent or controller (it sent 'HTTP/1.1 400 Bad Request"),
        (echo_server, "original NetJobs 2.x agent"),
        (silent_server, "no answer to the NetJobs greeting within 1 s"),
        (closing_server, "closed the connection during the handshake"),
        (future_agent, "peer speaks NetJobs protocol 99"),
    ],
)
async def test_foreign_peer_is_named_and_explained(handler, expected):
    async with serving(handler) as port:  # closes the silent server's end too
        async with asyncio.timeout(10):
            [check] = await check_hosts([Address("127.0.0.1", port)], TOKEN, timeout=1.0)
    assert check.reachable and not check.authenticated
    assert str(check.address) == f"127.0.0.1:{port}"
    assert expected in check.error


async def test_a_host_whose_port_never_answers_is_named_at_the_connect_timeout():
    # A listener whose queue is full and that never accepts: the kernel drops further
    # SYNs, so a connect hangs as one to a filtered port would. The connection and the
    # handshake share one deadline: it is the connection's that ran out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # the queue holds one or two: more only wait
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        began = time.monotonic()
        async with asyncio.timeout(10):
            [check] = await check_hosts([Address("127.0.0.1", port)], TOKEN, timeout=0.5)
        assert time.monotonic() - began < 5
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert not check.reachable
    assert f"connection to 127.0.0.1:{port} timed out: no answer within 0.5 s" in check.error
