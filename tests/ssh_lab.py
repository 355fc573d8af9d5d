"""A lab of SSH hosts for tests/test_ssh.py and bench/ssh_spread.py: one real
OpenSSH server per Linux network namespace (tests/netlab.py: a name and a /24 of this
run's own), each
with its own config, host key, authorized_keys and HOME; a test client key, ssh
config and known_hosts under the lab's directory (never ~/.ssh). Needs root.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netlab import Namespace

from netjobs_core.ssh import SshOptions

SSHD = "/usr/sbin/sshd"
# The namespaces' addresses (netlab.POOL, 10.224.0.0/12) in ssh config patterns, which
# know only * and ?: a little wider than the pool, in the lab's own config.
SUBNETS = "10.22?.* 10.23?.*"
WAIT_S = 20.0


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netjobs-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class SshHost:
    n: int
    dir: Path
    netns: Namespace | None = None  # None: on this machine's loopback
    proc: subprocess.Popen[bytes] | None = None
    port: int = 22  # on loopback, a free port of this machine's

    @property
    def ns(self) -> str:
        return self.netns.name if self.netns is not None else ""

    @property
    def outside(self) -> str:
        """This side's end of the host's veth pair."""
        return self.netns.outside if self.netns is not None else ""

    @property
    def address(self) -> str:
        return self.netns.address if self.netns is not None else "127.0.0.1"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def start(self, accept_env: str = "", **env: str) -> None:
        """sshd in the foreground (-D), one per namespace, with its own everything;
        ENV set in every session, and the variables ACCEPT_ENV names taken from clients."""
        self.stop()
        # A private HOME: its own agent cache, and none of root's dot files.
        settings = " ".join(f"{k}={v}" for k, v in ({"HOME": str(self.home)} | env).items())
        config = self.dir / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir.parent / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "LogLevel ERROR\n"
            f"SetEnv {settings}\n" + (f"AcceptEnv {accept_env}\n" if accept_env else "")
        )
        log = self.dir / "sshd.log"
        with log.open("wb") as err:
            netns = ["ip", "netns", "exec", self.ns] if self.ns else []
            self.proc = subprocess.Popen(
                [*netns, SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + WAIT_S
        while not (self.dir / "sshd.pid").exists():  # written once it listens
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT_S)
            self.proc = None
        (self.dir / "sshd.pid").unlink(missing_ok=True)

    def processes(self) -> list[str]:
        """What runs on this host besides its sshd processes: the agent and
        everything it started (all of them live in the host's network namespace)."""
        netns = os.stat(f"/run/netns/{self.ns}").st_ino
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.stat(entry / "ns" / "net").st_ino != netns:
                    continue
                comm = (entry / "comm").read_text().strip()
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue  # it ended meanwhile
            # A zombie is dead: it waits for this container's init to reap it.
            if comm != "sshd" and state != "Z":
                found.append(f"{entry.name} {args}")
        return found


@dataclass
class Lab:
    hosts: list[SshHost]
    dir: Path
    key: Path
    config: Path
    known_hosts: Path

    def options(self, **kwargs: object) -> SshOptions:
        settings = {"config": [str(self.config)], "client_keys": [str(self.key)]} | kwargs
        return SshOptions(**settings)  # type: ignore[arg-type]

    def trust(self, host: SshHost, port: int = 22) -> None:
        public = (host.dir / "host_key.pub").read_text().split()
        pattern = host.address if port == 22 else f"[{host.address}]:{port}"
        with self.known_hosts.open("a") as out:
            out.write(f"{pattern} {public[0]} {public[1]}\n")

    def trust_all(self) -> None:
        self.known_hosts.write_text("")
        for host in self.hosts:
            self.trust(host)


def _client_files(base: Path) -> tuple[Path, Path, Path]:
    """The lab's client key (authorized on every host), known_hosts and ssh config."""
    os.chmod(base, 0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    key = base / "client_key"
    keygen(key)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    known_hosts = base / "known_hosts"
    config = base / "ssh_config"
    config.write_text(
        f"Host {SUBNETS} 127.0.0.1\n  User root\n  UserKnownHostsFile {known_hosts}\n"
        f"  IdentityFile {key}\n"
    )
    return key, known_hosts, config


@contextlib.contextmanager
def loopback_lab(base: Path, count: int) -> Iterator[Lab]:
    """`count` sshd on 127.0.0.1 (free ports), in this namespace: for delay proxies,
    which forward on loopback only. Not trusted yet: trust the proxies' ports."""
    key, known_hosts, config = _client_files(base)
    hosts: list[SshHost] = []
    try:
        for n in range(1, count + 1):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            host = SshHost(n, base / f"host{n}", port=port)
            hosts.append(host)
            host.dir.mkdir()
            host.home.mkdir()
            keygen(host.dir / "host_key")
            host.start()
        known_hosts.write_text("")
        yield Lab(hosts, base, key, config, known_hosts)
    finally:
        for host in hosts:
            host.stop()


@contextlib.contextmanager
def ssh_lab(base: Path, count: int, first: int = 1) -> Iterator[Lab]:
    """`count` hosts numbered from `first` (their folders), each in a namespace of its
    own, sshd started and trusted; all removed at the end. Raises
    subprocess.CalledProcessError when namespaces cannot be made."""
    key, known_hosts, config = _client_files(base)
    hosts: list[SshHost] = []
    try:
        for n in range(first, first + count):
            host = SshHost(n, base / f"host{n}", Namespace("s"))
            hosts.append(host)
            assert host.netns is not None
            host.netns.__enter__()
            host.dir.mkdir()
            host.home.mkdir()
            keygen(host.dir / "host_key")
        for host in hosts:
            host.start()
        lab = Lab(hosts, base, key, config, known_hosts)
        lab.trust_all()
        yield lab
    finally:
        for host in hosts:
            host.stop()
            if host.netns is not None:
                host.netns.remove()
