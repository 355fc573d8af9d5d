"""Network namespaces for tests and benchmarks, each with a name and a subnet of its own.

A `Namespace` is a host joined to this (root) namespace by a veth pair: `outside` on
this side with `outside_address`, `eth0` inside with `address`, on a /24 of its own.
With `tun=True` the two ends are TUN devices instead, a point-to-point link that
carries nothing by itself: whoever holds `tun_fds` (outside, inside) moves each packet
from one to the other (bench/delay_line.py: a packet-level delay line).
Names and addresses live in the root namespace, so two suite runs on one machine (or a
test and a benchmark) would collide on fixed ones: the names carry this process's pid
(`nj<kind><pid hex><n>`, and `o` for the outside end), the subnet is the first /24 of
POOL that no interface of the root namespace has an address in, searched from a point
derived from the pid, and both are checked and taken under a lock file, so that runs
starting at once do not pick the same. Root and iproute2 only; used by
tests/test_netns.py, tests/test_agent_faults.py and tests/ssh_lab.py (tests/test_ssh.py,
bench/ssh_spread.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

POOL = ipaddress.IPv4Network("10.224.0.0/12")  # 4096 subnets of /24
LOCK = Path("/run/lock/netjobs-netlab.lock")
LOCK_WAIT_S = 30.0
IP_TIMEOUT_S = 10.0
_serial = itertools.count(1)
TUNSETIFF = 0x400454CA  # linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def ip(*args: str) -> str:
    """Run `ip ARGS`; CalledProcessError (with its stderr) when it fails."""
    done = subprocess.run(["ip", *args], check=True, capture_output=True, timeout=IP_TIMEOUT_S)
    return done.stdout.decode()


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as file:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{LOCK} held for {LOCK_WAIT_S:g} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _names_taken() -> set[str]:
    links = set(os.listdir("/sys/class/net"))
    spaces = {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}
    return links | spaces


def _subnets_taken() -> list[ipaddress.IPv4Network]:
    """The subnets of the root namespace's IPv4 addresses, and its routes of /24 or
    narrower (a blackhole left behind: tests/test_agent_faults.py cuts links with one)."""
    taken = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            taken.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(word, strict=False)
                if net.prefixlen >= 24:
                    taken.append(net)
                break
    return taken


def free_subnet(taken: list[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    """The first /24 of POOL that overlaps nothing TAKEN (default: the root namespace's),
    searched from a point derived from this process's pid."""
    if taken is None:
        taken = _subnets_taken()
    subnets = list(POOL.subnets(new_prefix=24))
    start = (os.getpid() * 7) % len(subnets)  # neighbouring pids land apart
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise RuntimeError(f"every /24 of {POOL} is in use here")


class Namespace:
    """A network namespace joined to this one by a veth pair on a /24 of its own.

    A context manager (root only): created on entry, removed on exit, also when the
    creation fails half-way (then subprocess.CalledProcessError says why)."""

    def __init__(self, kind: str = "h", *, tun: bool = False) -> None:
        self.kind = kind
        self.tun = tun
        self.name = ""
        self.outside = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.tun_fds: tuple[int, int] | None = None  # (outside, inside), with tun

    @property
    def outside_address(self) -> str:
        assert self.subnet is not None, "not created yet"
        return str(self.subnet.network_address + 1)

    @property
    def address(self) -> str:
        assert self.subnet is not None, "not created yet"
        return str(self.subnet.network_address + 2)

    @property
    def launcher(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> Namespace:
        try:
            with _allocation_lock():
                taken = _names_taken()
                for n in _serial:
                    name = f"nj{self.kind}{os.getpid():x}{n}"
                    if not {name, f"{name}o", f"{name}i"} & taken:
                        break
                self.name, self.outside = name, f"{name}o"
                ip("netns", "add", self.name)
                if self.tun:
                    self._add_tun_pair()
                else:
                    ip("link", "add", self.outside, "type", "veth", "peer", "name", "eth0",
                       "netns", self.name)  # fmt: skip
                self.subnet = free_subnet()
                outside, inside = self._addresses()
                ip("addr", "add", *outside, "dev", self.outside)
            ip("link", "set", self.outside, "up")
            ip("-n", self.name, "addr", "add", *inside, "dev", "eth0")
            ip("-n", self.name, "link", "set", "eth0", "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _addresses(self) -> tuple[list[str], list[str]]:
        """`ip addr add` words for each end: a TUN pair is point to point (no neighbour
        to resolve), each end with its peer's /24."""
        if not self.tun:
            return [f"{self.outside_address}/24"], [f"{self.address}/24"]
        return (
            [self.outside_address, "peer", f"{self.address}/24"],
            [self.address, "peer", f"{self.outside_address}/24"],
        )

    def _add_tun_pair(self) -> None:
        opened: list[int] = []
        try:
            for name in (self.outside, f"{self.name}i"):
                opened.append(os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
                flags = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
                fcntl.ioctl(opened[-1], TUNSETIFF, flags)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        self.tun_fds = (opened[0], opened[1])
        ip("link", "set", f"{self.name}i", "netns", self.name)
        ip("-n", self.name, "link", "set", f"{self.name}i", "name", "eth0")

    def cut(self) -> None:
        """Cut the link silently, as seen from inside: this side routes the namespace into
        a blackhole (its replies vanish, its reverse-path check drops what comes in),
        so the host inside gets no error at all and TCP ends in ETIMEDOUT. (A blackhole
        inside would hand its TCP an immediate EINVAL instead.)"""
        ip("route", "add", "blackhole", f"{self.address}/32")

    def remove(self) -> None:
        """Remove what was made (the veth pair goes with either end); idempotent."""
        steps = [["link", "del", self.outside], ["netns", "del", self.name]]
        if self.subnet is not None:
            steps.insert(0, ["route", "del", "blackhole", f"{self.address}/32"])
        for args in steps:
            if args[-1]:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(["ip", *args], capture_output=True, timeout=IP_TIMEOUT_S)
        self.subnet = None
        for fd in self.tun_fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)  # a TUN device goes with its last fd
        self.tun_fds = None
