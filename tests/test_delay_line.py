"""bench/delay_line.py between namespaces joined by TUN pairs (tests/netlab.py,
`tun=True`): nothing crosses without it; with it, bytes cross intact both ways, each
path held for its own delay."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from netlab import Namespace
from script_modules import BENCH, load_script

delay_line = load_script(BENCH / "delay_line.py", "netjobs_bench_delay_line")

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        sys.platform != "linux"
        or os.geteuid() != 0
        or shutil.which("ip") is None
        or not os.path.exists("/dev/net/tun"),
        reason="TUN devices in namespaces need Linux, root, iproute2 and /dev/net/tun",
    ),
]

PORT = 9099
# Echoes each connection's bytes back until it closes, then exits.
ECHO = f"""
import socket, sys
server = socket.create_server((sys.argv[1], {PORT}))
print("listening", flush=True)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(65536):
    conn.sendall(data)
"""


@contextlib.contextmanager
def echo_in(host: Namespace) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [*host.launcher, sys.executable, "-c", ECHO, host.address],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None and server.stdout.readline() == "listening\n"
            yield server
        finally:
            server.kill()


def round_trip_s(conn: socket.socket) -> float:
    began = time.monotonic()
    conn.sendall(b"x")
    assert conn.recv(1) == b"x"
    return time.monotonic() - began


def test_without_the_forwarder_nothing_crosses():
    with Namespace("t", tun=True) as host, echo_in(host):
        with pytest.raises(OSError):  # TimeoutError: the SYN went nowhere
            socket.create_connection((host.address, PORT), timeout=0.5)


def test_each_path_holds_its_delay_and_bytes_cross_intact():
    payload = os.urandom(256 * 1024)
    with contextlib.ExitStack() as stack:
        near, far = (stack.enter_context(Namespace("t", tun=True)) for _ in range(2))
        servers = [stack.enter_context(echo_in(host)) for host in (near, far)]
        with delay_line.DelayLine([(near, 2.0), (far, 15.0)]) as line:
            for host, one_way_s in ((near, 0.002), (far, 0.015)):
                with socket.create_connection((host.address, PORT), timeout=10) as conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.settimeout(10)
                    # Each round trip crosses the path twice: never quicker.
                    assert min(round_trip_s(conn) for _ in range(3)) >= 2 * one_way_s
                    conn.sendall(payload)
                    back = bytearray()
                    while len(back) < len(payload):
                        back += conn.recv(65536)
                    assert bytes(back) == payload
            for server in servers:  # the end of each connection crossed too
                assert server.wait(10) == 0
    assert line.summary.startswith("delay line: ")
    packets = int(line.summary.split()[2])
    assert packets > 2 * len(payload) // 1500  # every segment crossed, both ways counted
