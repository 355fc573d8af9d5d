"""Hosts over SSH against real OpenSSH servers, each in its own network namespace.

Needs root, iproute2 and Debian's openssh-server (/usr/sbin/sshd); skipped otherwise.
Namespaces `njs<tag><n>`, addresses 10.234.<n>.0/24 only. Each sshd has its own
config, host key, authorized_keys and HOME (so its agent cache is private); the
controller uses a test key, a private ssh config and known_hosts: never ~/.ssh.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_harness import HostWatch

from netjobs_core.agent_zipapp import agent_zipapp
from netjobs_core.config import parse_config
from netjobs_core.results import CommandStatus, HostState, TestStatus
from netjobs_core.runner import RunOptions, run_test
from netjobs_core.wire.tokens import Token

SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent
HOSTS = 8
WAIT_S = 20.0

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        sys.platform != "linux"
        or os.geteuid() != 0
        or shutil.which("ip") is None
        or not os.path.exists(SSHD)
        or shutil.which("ssh-keygen") is None,
        reason="SSH hosts need Linux, root, iproute2 and openssh-server",
    ),
]

asyncssh = pytest.importorskip("asyncssh")
from netjobs_core.ssh import SshDialer, SshOptions  # noqa: E402


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netjobs-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class SshHost:
    n: int
    ns: str
    outside: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"10.234.{self.n}.2"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def start(self, extra: str = "") -> None:
        """sshd in the foreground (-D), one per namespace, with its own everything."""
        self.stop()
        config = self.dir / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}:22\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir.parent / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "LogLevel ERROR\n"
            # A private HOME: its own agent cache, and none of root's dot files.
            f"SetEnv HOME={self.home} {extra}\n"
        )
        log = self.dir / "sshd.log"
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f", str(config)],
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
        """Command lines of this host's agents and the commands they started."""
        out = subprocess.run(
            ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True
        ).stdout
        return [
            line
            for line in out.splitlines()
            if "--stdio" in line or f"njs-probe-{self.n}" in line
        ]


@dataclass
class Lab:
    hosts: list[SshHost]
    dir: Path
    key: Path
    config: Path
    known_hosts: Path

    def options(self, **kwargs: object) -> SshOptions:
        return SshOptions(config=[str(self.config)], client_keys=[str(self.key)], **kwargs)  # type: ignore[arg-type]

    def trust(self, host: SshHost) -> None:
        public = (host.dir / "host_key.pub").read_text().split()
        with self.known_hosts.open("a") as out:
            out.write(f"{host.address} {public[0]} {public[1]}\n")

    def trust_all(self) -> None:
        self.known_hosts.write_text("")
        for host in self.hosts:
            self.trust(host)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, monkeypatch_module):
    base = tmp_path_factory.mktemp("ssh")
    os.chmod(base, 0o755)
    tag = uuid.uuid4().hex[:4]
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    key = base / "client_key"
    keygen(key)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    known_hosts = base / "known_hosts"
    config = base / "ssh_config"
    config.write_text(
        f"Host 10.234.*\n  User root\n  UserKnownHostsFile {known_hosts}\n"
        f"  IdentityFile {key}\n"
    )
    monkeypatch_module.delenv("SSH_AUTH_SOCK", raising=False)  # not the user's agent
    hosts: list[SshHost] = []
    try:
        for n in range(1, HOSTS + 1):
            ns, outside = f"njs{tag}{n}", f"njs{tag}{n}o"
            ip("netns", "add", ns)
            host = SshHost(n, ns, outside, base / f"host{n}")
            hosts.append(host)
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("addr", "add", f"10.234.{n}.1/24", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"10.234.{n}.2/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            host.dir.mkdir()
            host.home.mkdir()
            keygen(host.dir / "host_key")
        for host in hosts:
            host.start()
        lab = Lab(hosts, base, key, config, known_hosts)
        lab.trust_all()
        yield lab
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    finally:
        for host in hosts:
            host.stop()
            subprocess.run(["ip", "link", "del", host.outside], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


TOKEN = Token(b"x" * 32, "unused: every target is over SSH")


async def run_over_ssh(lab: Lab, config: str, observer=None, **ssh: object):
    plan = parse_config(config)
    async with SshDialer(lab.options(**ssh)) as dialer:
        options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer)
        return await asyncio.wait_for(run_test(plan.tests[0], options, observer), 60)


def wait_until_gone(host: SshHost) -> list[str]:
    deadline = time.monotonic() + WAIT_S
    while (left := host.processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_key_authentication_runs_a_test_and_leaves_nothing(lab):
    host = lab.hosts[0]
    test = asyncio.run(
        run_over_ssh(
            lab,
            f't:\nssh://root@{host.address}: "echo njs-probe-1 $(hostname -I) $HOME"\nend\n',
        )
    )
    assert test.status is TestStatus.PASSED, test.reason
    result = test.hosts[0]
    assert result.state is HostState.DONE and result.gated
    assert result.target == f"ssh://root@{host.address}"
    out = bytes(result.commands[0].stdout).decode()
    assert host.address in out and str(host.home) in out  # it ran there, as that host's user
    assert result.rtt_ms is not None and result.clock_uncertainty_ms is not None
    cached = list((host.home / ".cache" / "netjobs").iterdir())
    assert [p.name for p in cached] == [agent_zipapp().name]
    assert wait_until_gone(host) == []
