#!/usr/bin/env python3
"""Hostile peers for the agent's limits: unauthenticated floods.

Bounded by construction: floods go to loopback only (from 127.0.0.x source addresses,
so one flood can play many hosts), with at most `MAX_PEERS` connections and
`MAX_SECONDS` of time. (The cut network of tests/test_agent_faults.py is a network
namespace of tests/netlab.py.)

Floods (`flood()`, or the command line), each peer one connection at a time:
- `partial`: announce the largest frame and send all of it but one byte (memory);
- `idle`: connect and say nothing until the agent hangs up (fds, the pre-auth timeout);
- `error`: a pre-authentication `error` frame carrying `--text` (what reaches the log);
- `junk`: bytes that are not NetJobs (a failing handshake, as fast as it goes).
With `reconnect`, a peer whose connection ended connects again until the time is up.

    python bench/flood.py --port 16192 --mode partial --peers 300 --seconds 10
    python bench/flood.py --port 16192 --mode idle --peers 600 --seconds 5 --reconnect
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netjobs_core.wire import framing
from netjobs_core.wire.messages import Error

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

MAX_PEERS = 5000
MAX_SECONDS = 120.0
CONNECT_TIMEOUT_S = 5.0
MODES = ("partial", "idle", "error", "junk")


@dataclass
class FloodStats:
    connections: int = 0  # established
    failed: int = 0  # could not connect (refused, timed out, out of fds)
    closed_by_agent: int = 0  # the agent hung up (or reset) before the time was up
    bytes_sent: int = 0


def payload(mode: str, text: str = "") -> bytes:
    if mode == "partial":
        # The prefix of the largest frame the decoder accepts, then all of it but one byte.
        prefix = struct.pack(
            ">2sBBII", framing.MAGIC, framing.PROTOCOL_VERSION, 0, framing.MAX_HEADER,
            framing.MAX_BODY,
        )  # fmt: skip
        return prefix + bytes(framing.MAX_HEADER + framing.MAX_BODY - 1)
    if mode == "error":
        return framing.encode_frame(Error(code="protocol", message=text).to_frame())
    if mode == "junk":
        return b"GET / HTTP/1.0\r\n\r\n"
    return b""


def sources(count: int) -> list[str]:
    """COUNT loopback source addresses, 127.0.0.2 onwards (127.0.0.1 stays the controller's)."""
    return [str(ipaddress.IPv4Address("127.0.0.2") + i) for i in range(count)]


def _allow_fds(peers: int) -> None:
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, peers + 256) if hard != resource.RLIM_INFINITY else peers + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _peer(
    host: str, port: int, source: str, data: bytes, deadline: float, reconnect: bool,
    stats: FloodStats,
) -> None:  # fmt: skip
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except (OSError, TimeoutError):
            stats.failed += 1
            await asyncio.sleep(0.05)  # out of fds or refused: no busy loop
            if not reconnect:
                return
            continue
        stats.connections += 1
        try:
            remaining = deadline - time.monotonic()
            async with asyncio.timeout(max(0.0, remaining)):
                if data:
                    writer.write(data)
                    await writer.drain()
                    stats.bytes_sent += len(data)
                while await reader.read(65536):
                    pass  # the agent's error frame, if any
            stats.closed_by_agent += 1
        except TimeoutError:
            pass  # the time is up
        except OSError:
            stats.closed_by_agent += 1  # reset
        finally:
            writer.transport.abort()
        if not reconnect:
            return


async def flood(
    port: int,
    *,
    mode: str,
    peers: int,
    seconds: float,
    host: str = "127.0.0.1",
    source_count: int = 50,
    reconnect: bool = False,
    text: str = "",
) -> FloodStats:
    """PEERS concurrent peers against an agent on loopback for at most SECONDS."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("floods go to loopback only")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if not (0 < peers <= MAX_PEERS and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"at most {MAX_PEERS} peers for at most {MAX_SECONDS:g} s")
    _allow_fds(peers)
    data = payload(mode, text)
    addresses = sources(source_count) if host.startswith("127.") else [host]
    stats = FloodStats()
    deadline = time.monotonic() + seconds
    async with asyncio.TaskGroup() as group:
        for i in range(peers):
            source = addresses[i % len(addresses)]
            group.create_task(_peer(host, port, source, data, deadline, reconnect, stats))
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--mode", choices=MODES, default="idle")
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sources", type=int, default=50, help="127.0.0.x source addresses")
    parser.add_argument("--reconnect", action="store_true")
    parser.add_argument("--text", default="forged\n2026-01-01 00:00:00.000 10.0.0.1 authenticated")
    args = parser.parse_args()
    stats = asyncio.run(
        flood(
            args.port,
            mode=args.mode,
            peers=args.peers,
            seconds=args.seconds,
            host=args.host,
            source_count=args.sources,
            reconnect=args.reconnect,
            text=args.text,
        )
    )
    print(json.dumps(asdict(stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
