"""When a TCP segment really arrived: the kernel's receive timestamp (SO_TIMESTAMPNS).

A process stamps a message when it gets to read it. Between the segment's arrival
and that read lie the scheduler (another process had the CPU) and the event loop
(other connections' messages went first), and both delay only one direction of a
clock ping: the offset estimate moves by half the delay, and with many hosts
pinged at once no round-trip filter removes it (bench/scale.py: 0.4-6 ms with 8
hosts at once on a 2-CPU machine). The kernel stamps each segment as it lands,
before any of that; with the stamps on both ends a delay in either process only
lengthens the round trip, which the estimator discards (wire/clock.py).

asyncio's selector transports read a socket with its `recv` method, or
`recv_into` for a buffered protocol (CPython 3.11-3.13), so a socket of the class
below, handed to asyncio, reads with `recvmsg` and keeps the stamp of its latest
read. Where the option is missing
(not Linux) sockets are plain and `arrival_ns` says None: callers fall back to
their own reading of the clock.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
import weakref
from typing import Any

from netjobs_core.wire.clock import now_ns

# Linux's SO_TIMESTAMPNS (the "old" one, whose stamp is a native struct timespec);
# the socket module does not name it.
SO_TIMESTAMPNS: int | None = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0

# Accepted and connected stamped sockets by file descriptor: asyncio hands a
# connection's owner a wrapper, not the socket it reads from.
_by_fd: weakref.WeakValueDictionary[int, StampedSocket] = weakref.WeakValueDictionary()


class StampedSocket(socket.socket):
    """A TCP socket that remembers when the data of its latest `recv` arrived."""

    __slots__ = ("arrived_ns", "stamping")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.arrived_ns: int | None = None
        self.stamping = False  # the kernel took the option
        assert SO_TIMESTAMPNS is not None
        try:
            self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:  # a kernel (or sandbox) without it: no stamps, reads as usual
            return
        self.stamping = True
        _by_fd[self.fileno()] = self

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY, flags)
        self._stamp(ancillary)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer)
        if nbytes:
            view = view[:nbytes]
        count, ancillary, _, _ = self.recvmsg_into([view], _ANCILLARY, flags)
        self._stamp(ancillary)
        return count

    def _stamp(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                self.arrived_ns = _to_clock(seconds * 1_000_000_000 + nanoseconds)

    def accept(self) -> tuple[socket.socket, object]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        sock = StampedSocket(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)  # as socket.socket.accept does
        return sock, address


def _to_clock(wall_stamp_ns: int) -> int | None:
    """A wall-clock stamp on `now_ns`'s clock; None if it cannot be one (the wall
    clock stepped back since: the stamp would lie in the future)."""
    wall, now = time.clock_gettime_ns(time.CLOCK_REALTIME), now_ns()  # the kernel's stamp clock
    stamp = wall_stamp_ns - (wall - now)
    return stamp if stamp <= now else None


def stream_socket(family: int, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A socket to hand asyncio: stamped where the kernel stamps, else plain."""
    if SO_TIMESTAMPNS is None:
        return socket.socket(family, kind, proto)
    return StampedSocket(family, kind, proto)


def arrival_ns(sock: object) -> int | None:
    """When the data of `sock`'s latest read arrived (`now_ns` clock), if known.

    `sock` is a socket or asyncio's wrapper of one (`get_extra_info("socket")`).
    """
    if isinstance(sock, StampedSocket):
        return sock.arrived_ns
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    fd = fileno()
    stamped = _by_fd.get(fd)
    if stamped is None or stamped.fileno() != fd:
        return None
    return stamped.arrived_ns
