"""When each released command really began: the kernel's exec events (Linux, root).

The agent knows when it let a command go (`released_at`); the command's first act
comes later, after its shell ran and exec'd it (0.4-1.2 ms, more under load), and
that part differs between hosts. Linux reports every exec through the proc
connector: a NETLINK_CONNECTOR socket bound to CN_IDX_PROC, once subscribed with
PROC_CN_MCAST_LISTEN, receives PROC_EVENT_FORK and PROC_EVENT_EXEC with a
`timestamp_ns` on CLOCK_MONOTONIC, the clock the agent schedules by
(wire.clock.now_ns). A command began at the first exec, after its release, of its
gate shell or of a process that shell forked (followed through fork events). A
command run by the shell alone (`echo`, a loop of builtins) never execs: not measured.

The subscription needs root (CAP_NET_ADMIN) in the initial network namespace;
elsewhere `open_watch` says why in words and nothing is measured. A socket is
opened just before a release and closed once its events are read: between tests
nobody queues the whole machine's events for us.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import sys
from collections.abc import Mapping

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
NLMSG_DONE = 3

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns (CLOCK_MONOTONIC)
_PIDS = struct.Struct("=IIII")  # fork: parent pid, tgid, child pid, tgid; exec: pid, tgid
_HEADERS = _NLMSGHDR.size + _CN_MSG.size
RECEIVE_BUFFER = 4 * 1024 * 1024  # a busy machine's events between release and read
READ_SIZE = 64 * 1024


def _control(operation: int) -> bytes:
    payload = struct.pack("=I", operation)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0)
    length = _NLMSGHDR.size + len(cn) + len(payload)
    return _NLMSGHDR.pack(length, NLMSG_DONE, 0, 0, os.getpid()) + cn + payload


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return "exec instants need the agent to run as root (kernel process events)"
    if exc.errno == errno.ECONNREFUSED:
        return "exec instants are refused in this network namespace (container?)"
    if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return "this kernel has no process events connector"
    return f"exec instants unavailable: {exc.strerror or exc}"


class ExecWatch:
    """One subscription: the exec events of the commands it tracks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.owner: dict[int, int] = {}  # tgid -> command id
        self.released: dict[int, int] = {}  # command id -> release (ns)
        self.exec_at: dict[int, int] = {}  # command id -> first exec (ns)
        self.lost = False  # the socket overflowed: some events were dropped

    def track(self, roots: Mapping[int, int], released: Mapping[int, int]) -> None:
        """ROOTS: gate shell pid -> command id; RELEASED: command id -> release ns."""
        self.owner.update({pid: command for pid, command in roots.items()})
        self.released.update(released)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> None:
        """Read every event queued so far (never blocks)."""
        while True:
            try:
                data = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost = True
                    continue
                return
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        offset = 0
        while offset + _HEADERS + _EVENT.size + 8 <= len(data):
            length = _NLMSGHDR.unpack_from(data, offset)[0]
            if length < _HEADERS + _EVENT.size + 8:
                return
            what, _cpu, stamp = _EVENT.unpack_from(data, offset + _HEADERS)
            pids = offset + _HEADERS + _EVENT.size
            if what == PROC_EVENT_FORK and offset + length >= pids + _PIDS.size:
                _ppid, parent, _pid, child = _PIDS.unpack_from(data, pids)
                command = self.owner.get(parent)
                if command is not None:
                    self.owner[child] = command
            elif what == PROC_EVENT_EXEC:
                _pid, tgid = struct.unpack_from("=II", data, pids)
                command = self.owner.get(tgid)
                released = self.released.get(command) if command is not None else None
                if command is not None and released is not None and stamp >= released:
                    self.exec_at.setdefault(command, stamp)
            offset += (length + 3) & ~3  # NLMSG_ALIGN

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(_control(PROC_CN_MCAST_IGNORE))
        self.sock.close()


def open_watch(platform: str = sys.platform) -> tuple[ExecWatch | None, str]:
    """A new subscription, or None and why there is none."""
    if not platform.startswith("linux"):
        return None, "exec instants are measured on Linux only"
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        return None, _why(exc)
    try:
        with contextlib.suppress(OSError):  # SO_RCVBUFFORCE: past rmem_max, as root
            sock.setsockopt(socket.SOL_SOCKET, 33, RECEIVE_BUFFER)
        sock.bind((0, CN_IDX_PROC))
        sock.send(_control(PROC_CN_MCAST_LISTEN))
    except OSError as exc:
        sock.close()
        return None, _why(exc)
    return ExecWatch(sock), ""
