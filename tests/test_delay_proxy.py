"""bench/delay_proxy.py on loopback: bytes intact both ways, the delay really applied."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from script_modules import BENCH, load_script

from tests.loopback import serving

delay_proxy = load_script(BENCH / "delay_proxy.py", "netjobs_bench_delay_proxy")


class Upstream:
    """A loopback server that records what it gets, stamps its arrival, and
    answers each connection with `reply` once it has read `expect` bytes."""

    def __init__(self, expect: int, reply: bytes) -> None:
        self.expect = expect
        self.reply = reply
        self.received = bytearray()
        self.first_byte_ns: int | None = None
        self._serving = serving(self.handle)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while len(self.received) < self.expect:
            data = await reader.read(65536)
            if not data:
                break
            if self.first_byte_ns is None:
                self.first_byte_ns = time.perf_counter_ns()
            self.received += data
        writer.write(self.reply)
        await writer.drain()

    async def __aenter__(self) -> int:
        return await self._serving.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(*exc)


async def test_bytes_pass_intact_both_ways():
    up_data = os.urandom(300_000)  # several reads, so several scheduled chunks
    down_data = os.urandom(200_000)
    upstream = Upstream(len(up_data), down_data)
    async with (
        upstream as port,
        delay_proxy.DelayProxy("127.0.0.1", port, delay_ms=1.0, jitter_ms=0.5, seed=1) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        for i in range(0, len(up_data), 7_000):  # many small writes: order must hold
            writer.write(up_data[i : i + 7_000])
            await writer.drain()
        got = await asyncio.wait_for(reader.read(-1), 10)  # until the upstream closes
        writer.close()
    assert bytes(upstream.received) == up_data
    assert got == down_data
    assert proxy.connections == 1
    assert len(proxy.lateness_ns) >= 2


async def test_one_way_delay_is_applied():
    upstream = Upstream(5, b"pong!")
    async with upstream as port, delay_proxy.DelayProxy("127.0.0.1", port, delay_ms=5.0) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        sent = time.perf_counter_ns()
        writer.write(b"ping!")
        answer = await asyncio.wait_for(reader.readexactly(5), 5)
        back = time.perf_counter_ns()
        writer.close()
    assert answer == b"pong!"
    assert upstream.first_byte_ns is not None
    assert (upstream.first_byte_ns - sent) / 1e6 >= 4.0  # one way
    assert (back - sent) / 1e6 >= 8.0  # there and back


def test_refuses_non_loopback():
    with pytest.raises(ValueError):
        delay_proxy.DelayProxy("192.0.2.1", 80, delay_ms=1.0)


def test_command_line_stops_when_stdin_closes():
    argv = [sys.executable, str(BENCH / "delay_proxy.py"), "--upstream", "127.0.0.1:9"]
    with subprocess.Popen(
        [*argv, "--delay-ms", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:  # closes its pipes, whatever happens
        try:
            assert process.stdout is not None and process.stdin is not None
            assert process.stdout.readline().startswith("listening on 127.0.0.1:")
            process.stdin.close()
            process.wait(timeout=10)
            out = process.stdout.read()
        finally:
            if process.poll() is None:
                process.kill()
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["stopped"] == "stdin closed"
    assert stats["delay_ms"] == 2.0
