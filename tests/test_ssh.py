"""Hosts over SSH against real OpenSSH servers, each in its own network namespace.

Needs root, iproute2 and Debian's openssh-server (/usr/sbin/sshd); skipped otherwise.
Namespaces, names and /24 subnets of this run's own (tests/netlab.py). Each sshd has its own
config, host key, authorized_keys and HOME (so its agent cache is private); the
controller uses a test key, a private ssh config and known_hosts: never ~/.ssh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from agent_harness import HostWatch
from netlab import ip
from ssh_lab import SSHD, SUBNETS, WAIT_S, Lab, SshHost, keygen, ssh_lab

from netjobs_agent import procs
from netjobs_core import agent_zipapp as agent_zipapp_module
from netjobs_core import ssh
from netjobs_core.agent_zipapp import agent_zipapp
from netjobs_core.client import AgentError, AgentLink
from netjobs_core.clock_offset import Sample
from netjobs_core.config import parse_config
from netjobs_core.events import Event, HostChanged
from netjobs_core.probe import DEFAULT_CLOCK, measure_clock
from netjobs_core.results import CommandStatus, HostState, RunResult, TestStatus
from netjobs_core.results_json import run_from_json, run_to_json
from netjobs_core.run import Run
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, run_test
from netjobs_core.ssh import READ_LIMIT, REMEMBERED, SshDialer, _Stdout
from netjobs_core.wire.address import Address
from netjobs_core.wire.sealing import LINK_SECRET_BYTES
from netjobs_core.wire.tokens import STDIO_READY, Token, stdio_greeting

REPO = Path(__file__).resolve().parent.parent
HOSTS = 8

pytestmark = pytest.mark.timeout(180)
NO_SSHD = (
    sys.platform != "linux"
    or os.geteuid() != 0
    or shutil.which("ip") is None
    or not os.path.exists(SSHD)
    or shutil.which("ssh-keygen") is None
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, monkeypatch_module):
    if NO_SSHD:
        pytest.skip("SSH hosts need Linux, root, iproute2 and openssh-server")
    monkeypatch_module.delenv("SSH_AUTH_SOCK", raising=False)  # not the user's agent
    try:
        with ssh_lab(tmp_path_factory.mktemp("ssh"), HOSTS) as made:
            yield made
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")


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
    out = result.commands[0].stdout.read_bytes().decode()
    assert host.address in out and str(host.home) in out  # it ran there, as that host's user
    assert result.rtt_ms is not None and result.clock_uncertainty_ms is not None
    cached = list((host.home / ".cache" / "netjobs").iterdir())
    assert sorted(p.name for p in cached) == [agent_zipapp().name, REMEMBERED]
    assert wait_until_gone(host) == []


@pytest.fixture
def trusted(lab):
    """Every host key known before and after the test (tests change known_hosts)."""
    lab.trust_all()
    yield lab
    lab.trust_all()


def fingerprint(host: SshHost) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(host.dir / "host_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]  # SHA256:...


def test_unknown_host_key_is_refused_with_its_fingerprint_unless_accept_new(trusted):
    lab, host = trusted, trusted.hosts[1]
    lab.known_hosts.write_text("")
    config = f't:\nssh://{host.address}: "true"\nend\n'
    refused = asyncio.run(run_over_ssh(lab, config))
    assert refused.status is not TestStatus.PASSED
    error = refused.hosts[0].error
    assert refused.hosts[0].state is HostState.FAILED
    assert "not known" in error and fingerprint(host) in error and host.address in error
    assert "--ssh-accept-new" in error
    assert lab.known_hosts.read_text() == ""  # refusing adds nothing

    accepted = asyncio.run(run_over_ssh(lab, config, accept_new=True))
    assert accepted.status is TestStatus.PASSED, accepted.reason
    assert lab.known_hosts.read_text().startswith(f"{host.address} ssh-ed25519 ")
    again = asyncio.run(run_over_ssh(lab, config))  # known now, without the flag
    assert again.status is TestStatus.PASSED, again.reason


def test_a_changed_host_key_is_refused_even_with_accept_new(trusted, tmp_path):
    lab, host = trusted, trusted.hosts[2]
    keygen(tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    lab.known_hosts.write_text(f"{host.address} {other[0]} {other[1]}\n")
    test = asyncio.run(
        run_over_ssh(lab, f't:\nssh://{host.address}: "true"\nend\n', accept_new=True)
    )
    error = test.hosts[0].error
    assert test.status is not TestStatus.PASSED and "HAS CHANGED" in error
    assert fingerprint(host) in error and "ssh-keygen -R" in error
    assert lab.known_hosts.read_text() == f"{host.address} {other[0]} {other[1]}\n"


def test_ssh_failures_are_the_hosts_failures_and_count_for_the_quorum(trusted, tmp_path):
    lab, good, stopped = trusted, trusted.hosts[6], trusted.hosts[7]
    keygen(tmp_path / "stranger")
    config = (
        f't:\n-minhosts: 1\nssh://{good.address}: "true"\nssh://{stopped.address}: "true"\nend\n'
    )
    stopped.stop()
    try:
        test = asyncio.run(run_over_ssh(lab, config))
    finally:
        stopped.start()
    assert test.status is TestStatus.PASSED, test.reason
    assert test.hosts[0].state is HostState.DONE
    down = test.hosts[1]
    assert down.state is HostState.FAILED and "refused" in down.error
    assert down.commands[0].status is CommandStatus.ERROR

    strangers = asyncio.run(
        run_over_ssh(
            lab,
            f't:\nssh://{good.address}: "true"\nend\n',
            client_keys=[str(tmp_path / "stranger")],
        )
    )
    assert strangers.status is not TestStatus.PASSED
    error = strangers.hosts[0].error
    assert "SSH authentication failed" in error and "user root" in error


def test_aes_gcm_is_preferred_unless_the_users_ssh_config_names_ciphers(trusted, tmp_path):
    """asyncssh computes chacha20-poly1305 (OpenSSH's first choice) in several calls a
    packet; a user's own Ciphers line still decides."""
    lab, host = trusted, trusted.hosts[1]
    chosen = tmp_path / "ssh_config"
    chosen.write_text(lab.config.read_text() + "  Ciphers chacha20-poly1305@openssh.com\n")

    async def cipher(config: Path) -> str:
        async with SshDialer(lab.options(config=[str(config)])) as dialer:
            connected = await dialer._connect(Address.parse(f"ssh://{host.address}"), 5)
            connected.conn.close()
            await connected.conn.wait_closed()
            return connected.conn.get_extra_info("recv_cipher")

    assert asyncio.run(cipher(lab.config)) == "aes128-gcm@openssh.com"
    assert asyncio.run(cipher(chosen)) == "chacha20-poly1305@openssh.com"


def standin_executable(lab: Lab) -> Path:
    """dist/netjobs-agent when built; else a one-file stand-in that needs no python3
    on PATH (it names its interpreter by absolute path, as the frozen agent holds its own)."""
    built = REPO / "dist" / "netjobs-agent"
    if built.is_file():
        return built
    pyz = lab.dir / "standin.pyz"
    pyz.write_bytes(agent_zipapp().data)
    standin = lab.dir / "netjobs-agent-standin"
    standin.write_text(f'#!/bin/sh\nexec {sys.executable} {pyz} "$@"\n')
    standin.chmod(0o755)
    return standin


def test_a_host_without_python3_gets_the_one_file_agent(trusted):
    lab, host = trusted, trusted.hosts[3]
    tools = minimal_tools(host)
    host.start(PATH=str(tools))
    try:
        config = f't:\nssh://{host.address}: "echo $PATH"\nend\n'
        without = asyncio.run(run_over_ssh(lab, config, executable=None))
        assert without.status is not TestStatus.PASSED
        assert "no python3 >= 3.11" in without.hosts[0].error

        test = asyncio.run(run_over_ssh(lab, config, executable=standin_executable(lab)))
        assert test.status is TestStatus.PASSED, test.reason
        assert test.hosts[0].commands[0].stdout.read_bytes().decode().strip() == str(tools)
        cached = [p.name for p in (host.home / ".cache" / "netjobs").iterdir()]
        assert len(cached) == 1 and not cached[0].endswith(".pyz")
        assert wait_until_gone(host) == []  # the one-file agent's bootloader too
    finally:
        host.start()


def test_an_agent_started_over_ssh_loads_no_tls_library(trusted):
    """asyncio imports ssl, which the agent never uses (its frames are sealed by its own
    protocol): the start script keeps it out, ~6 ms of each start over SSH."""
    lab, host = trusted, trusted.hosts[2]
    look = "echo $NETJOBS_JOB; p=${NETJOBS_JOB#stdio}; grep -c _ssl /proc/${p%%:*}/maps || true"
    test = asyncio.run(run_over_ssh(lab, f't:\nssh://{host.address}: "{look}"\nend\n'))
    assert test.status is TestStatus.PASSED, test.reason
    lines = test.hosts[0].commands[0].stdout.read_bytes().decode().split()
    assert agent_pid(test) > 0 and lines[1] == "0"


def agent_pid(test) -> int:
    """The stdio agent that ran a test's `echo $NETJOBS_JOB` (its cookie names it)."""
    cookie = test.hosts[0].commands[0].stdout.read_bytes().decode()
    assert cookie.startswith("stdio"), cookie
    return int(cookie[len("stdio") :].partition(":")[0])


def test_one_agent_serves_every_test_of_the_run_and_ends_with_it(trusted):
    lab, host = trusted, trusted.hosts[0]
    plan = parse_config(f't:\nssh://{host.address}: "echo $NETJOBS_JOB"\nend\n')

    async def three_tests():
        async with SshDialer(lab.options()) as dialer:
            options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer, repeat=3)
            return (await asyncio.wait_for(Runner(plan, options).run(), 60)).tests

    tests = asyncio.run(three_tests())
    assert [t.status for t in tests] == [TestStatus.PASSED] * 3, [t.reason for t in tests]
    assert len({agent_pid(t) for t in tests}) == 1  # one agent, its link kept between tests
    assert {t.hosts[0].credential for t in tests} == {"link"}
    assert wait_until_gone(host) == []  # it ended with the run's SSH connection


def test_a_test_that_ends_mid_run_leaves_its_agent_to_end_and_the_next_gets_a_new_one(trusted):
    """Only a link that ended at a test's boundary is kept: one given up mid-run ends
    its agent (its commands killed), and the next test starts a fresh agent."""
    lab, host = trusted, trusted.hosts[1]
    long = parse_config(f't:\nssh://{host.address}: "sleep 303"\nend\n').tests[0]
    short = parse_config(f't:\nssh://{host.address}: "echo $NETJOBS_JOB"\nend\n').tests[0]

    async def scenario():
        async with SshDialer(lab.options()) as dialer:
            options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer)
            watch = HostWatch()
            task = asyncio.create_task(run_test(long, options, watch))
            await watch.host_started(0)
            first = [p for p in host.processes() if "--stdio" in p]
            task.cancel()  # the controller gives the test up mid-run
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return first, await asyncio.wait_for(run_test(short, options), 60)

    first, test = asyncio.run(scenario())
    assert test.status is TestStatus.PASSED, test.reason
    assert first and agent_pid(test) not in {int(p.split()[0]) for p in first}
    assert wait_until_gone(host) == []  # sleep 303 and both agents


def test_eight_cold_ssh_hosts_cost_the_controller_no_scrypt(trusted, monkeypatch):
    """Each link's secret is random: its key is an HKDF. A scrypt per host on the
    controller's loop (~100 ms each, longer on a loaded machine) once ran the other
    hosts' greetings past the connect timeout: "no answer to the NetJobs greeting
    within 5 s" and a lost quorum, 3 cold runs in 20 under load."""

    def no_scrypt(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("scrypt on the controller for an SSH link")

    monkeypatch.setattr(hashlib, "scrypt", no_scrypt)
    lines = "".join(f'ssh://{h.address}: "true"\n' for h in trusted.hosts)
    test = asyncio.run(run_over_ssh(trusted, f"t:\n{lines}end\n"))
    assert test.status is TestStatus.PASSED, test.reason


def fake_shims(where: Path) -> Path:
    """pyenv-like shims of every name the start script tries, for versions that are not
    active: each exits 127 with pyenv's several lines on stderr."""
    where.mkdir(exist_ok=True)
    for name in ("python3.14", "python3.13", "python3.12", "python3.11", "python3"):
        shim = where / name
        shim.write_text(
            "#!/bin/sh\n"
            f"echo 'pyenv: {name}: command not found' >&2\n"
            "echo >&2\n"
            f'echo "The \\`{name}\' command exists in these Python versions:" >&2\n'
            "echo '  3.99.0' >&2\n"
            "echo >&2\n"
            "echo \"Note: See 'pyenv help global' for tips on allowing both\" >&2\n"
            "echo '      python2 and python3 to be found at the same time.' >&2\n"
            "exit 127\n"
        )
        shim.chmod(0o755)
    return where


def old_python() -> Path | None:
    """A real python3 older than 3.11 on this machine (pyenv's, say), if any."""
    found = sorted(Path("/root/.pyenv/versions").glob("3.[6-9]*/bin/python3"))
    found += sorted(Path("/usr/bin").glob("python3.[6-9]"))
    found += sorted(Path("/root/.pyenv/versions").glob("3.10*/bin/python3"))
    return found[0] if found else None


def minimal_tools(host: SshHost) -> Path:
    """What the start script needs of a host besides python: sh and a few tools."""
    tools = host.dir / "bin"
    tools.mkdir(exist_ok=True)
    for tool in ("sh", "cat", "mkdir", "chmod", "mv", "uname", "sha256sum"):
        link = tools / tool
        if not link.exists():
            link.symlink_to(shutil.which(tool, path="/usr/bin:/bin") or tool)
    return tools


def test_shims_first_on_path_that_do_not_run_are_passed_over(trusted):
    lab, host = trusted, trusted.hosts[2]
    shims = fake_shims(host.dir / "shims")
    host.start(PATH=f"{shims}:/usr/local/bin:/usr/bin:/bin")
    try:
        config = f't:\nssh://{host.address}: "echo $NETJOBS_JOB"\nend\n'
        test = asyncio.run(run_over_ssh(lab, config, executable=None))
        assert test.status is TestStatus.PASSED, test.reason
    finally:
        host.start()
    assert wait_until_gone(host) == []


def test_with_only_shims_and_an_old_python3_the_hosts_first_error_lines_are_said(trusted):
    lab, host = trusted, trusted.hosts[2]
    shims, tools = fake_shims(host.dir / "shims"), minimal_tools(host)
    old = old_python()
    if old is not None:
        (tools / "python3").unlink(missing_ok=True)
        (tools / "python3").symlink_to(old)  # found after the shims: too old to use
    host.start(PATH=f"{shims}:{tools}")
    try:
        config = f't:\nssh://{host.address}: "echo $PATH"\nend\n'
        without = asyncio.run(run_over_ssh(lab, config, executable=None))
        error = without.hosts[0].error
        assert without.status is not TestStatus.PASSED
        assert "no python3 >= 3.11 there" in error
        # The first lines, where the host says what is wrong; not pyenv's last line.
        assert "the host said: pyenv: python3.14: command not found / The `python3.14'" in error

        sent = asyncio.run(run_over_ssh(lab, config, executable=standin_executable(lab)))
        assert sent.status is TestStatus.PASSED, sent.reason
        assert sent.hosts[0].commands[0].stdout.read_bytes().decode().strip() == f"{shims}:{tools}"
    finally:
        (tools / "python3").unlink(missing_ok=True)
        host.start()
    assert wait_until_gone(host) == []


def test_a_host_whose_python3_is_too_old_is_told_with_its_version(trusted):
    """A RHEL 8-like host (python3 is 3.6): the message says what python3 is there."""
    lab, host = trusted, trusted.hosts[2]
    old = old_python()
    if old is None:
        pytest.skip("no python3 older than 3.11 on this machine")
    tools = minimal_tools(host)
    (tools / "python3").unlink(missing_ok=True)
    (tools / "python3").symlink_to(old)
    host.start(PATH=str(tools))
    try:
        config = f't:\nssh://{host.address}: "true"\nend\n'
        test = asyncio.run(run_over_ssh(lab, config, executable=None))
    finally:
        (tools / "python3").unlink()
        host.start()
    version = subprocess.run(
        [old, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    error = test.hosts[0].error
    assert "no python3 >= 3.11 there" in error
    assert f"the host said: {tools / 'python3'} is Python {version}, older than 3.11" in error


def test_the_interpreter_found_is_remembered_and_forgotten_when_it_fails(trusted):
    """The next start runs the remembered interpreter, no probing (one Python start);
    one that no longer runs, or is too old now, is forgotten and PATH searched again."""
    lab, host = trusted, trusted.hosts[2]
    remembered = host.home / ".cache" / "netjobs" / "python"
    config = f't:\nssh://{host.address}: "true"\nend\n'
    test = asyncio.run(run_over_ssh(lab, config, executable=None))
    assert test.status is TestStatus.PASSED, test.reason
    path, found = remembered.read_text().splitlines()
    assert Path(found).is_file() and path  # the PATH it was found on, then where

    marker = host.dir / "wrapper-ran"
    marker.unlink(missing_ok=True)
    wrapper = host.dir / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\ntouch {marker}\nexec {found} "$@"\n')
    wrapper.chmod(0o755)
    shim = fake_shims(host.dir / "shims") / "python3"
    old = old_python()
    for stale in [shim, wrapper] + ([old] if old is not None else []):
        remembered.write_text(f"{path}\n{stale}\n")
        test = asyncio.run(run_over_ssh(lab, config, executable=None))
        assert test.status is TestStatus.PASSED, (stale, test.reason)
        if stale == wrapper:
            assert marker.exists()  # the remembered one was started, and nothing else
            assert remembered.read_text() == f"{path}\n{wrapper}\n"
        else:
            assert remembered.read_text() == f"{path}\n{found}\n"  # searched again
    assert wait_until_gone(host) == []


def test_an_agent_that_cannot_be_put_on_the_host_is_that_hosts_failure(trusted):
    lab, host = trusted, trusted.hosts[3]
    host.start(HOME="/proc/njs-nowhere")  # no cache can be made there
    try:
        test = asyncio.run(run_over_ssh(lab, f't:\nssh://{host.address}: "true"\nend\n'))
    finally:
        host.start()
    error = test.hosts[0].error
    assert test.hosts[0].state is HostState.FAILED
    assert f"cannot upload the agent to ssh://{host.address}" in error and "mkdir" in error


def test_an_upload_that_fills_the_hosts_disk_is_said_and_removed(trusted, tmp_path):
    """A home with too little room for the agent: the host's failure names the full disk,
    and the partial upload is removed (one left per run would fill it further)."""
    lab, host = trusted, trusted.hosts[3]
    home = tmp_path / "small-home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "njtest", home], check=True)
    try:
        host.start(HOME=str(home))  # its sshd's mount namespace, made now, has the tmpfs
        try:
            test = asyncio.run(run_over_ssh(lab, f't:\nssh://{host.address}: "true"\nend\n'))
        finally:
            host.start()
        left = sorted(p.name for p in (home / ".cache" / "netjobs").iterdir())
    finally:
        subprocess.run(["umount", home], check=True)
    assert test.hosts[0].state is HostState.FAILED
    assert "No space left on device" in test.hosts[0].error, test.hosts[0].error
    assert left == []


def test_a_connection_cut_mid_run_kills_the_remote_commands(trusted):
    lab, host = trusted, trusted.hosts[4]
    config = f't:\nssh://{host.address}: "sleep 300"\nssh://{host.address}: "sleep 301"\nend\n'

    async def cut_mid_run():
        watch = HostWatch()
        task = asyncio.create_task(run_over_ssh(lab, config, watch))
        await watch.host_started(0)  # the agent reported the release: they run
        running = host.processes()
        assert any("sleep 300" in p for p in running), running
        assert any("--stdio" in p for p in running), running
        ip("link", "set", host.outside, "down")  # no FIN, no RST: the link just goes silent
        return await asyncio.wait_for(task, 60)

    try:
        test = asyncio.run(cut_mid_run())
        assert test.status is not TestStatus.PASSED
        assert test.hosts[0].state is HostState.FAILED
        assert {c.status for c in test.hosts[0].commands} == {CommandStatus.LOST}
        # The agent noticed the silence (heartbeats), killed its commands and exited.
        assert wait_until_gone(host) == []
    finally:
        ip("link", "set", host.outside, "up")


def test_eight_ssh_hosts_start_together(trusted):
    lab = trusted
    lines = "".join(f'ssh://{h.address}: "date +%s%N"\n' for h in lab.hosts)
    test = asyncio.run(run_over_ssh(lab, f"t:\n{lines}end\n"))
    assert test.status is TestStatus.PASSED, test.reason
    assert all(h.state is HostState.DONE and h.gated for h in test.hosts)
    stamps = [int(h.commands[0].stdout.read_bytes()) for h in test.hosts]
    print(
        f"8 SSH hosts: start spread {test.start_spread_ms:.3f} ms "
        f"(+/- {test.start_spread_uncertainty_ms:.3f}), date stamps within "
        f"{(max(stamps) - min(stamps)) / 1e6:.3f} ms, rtt "
        f"{max(h.rtt_ms for h in test.hosts):.3f} ms max"
    )
    assert test.start_spread_ms < 50 and (max(stamps) - min(stamps)) / 1e6 < 50
    for host in lab.hosts:
        assert wait_until_gone(host) == []


NETJOBS = [sys.executable, "-m", "netjobs_core.cli"]


def user_env(lab: Lab, home: Path) -> dict[str, str]:
    """An environment whose ~/.ssh is set up as a user's: key, known_hosts, config."""
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    shutil.copy(lab.key, dot_ssh / "id_ed25519")
    shutil.copy(lab.known_hosts, dot_ssh / "known_hosts")
    (dot_ssh / "config").write_text(f"Host {SUBNETS}\n  User root\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETJOBS_", "SSH_"))}
    return env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg")}


def test_the_token_is_not_sent_to_ssh_hosts_even_when_ssh_config_sends_everything(
    trusted, tmp_path, monkeypatch
):
    """SendEnv * in ~/.ssh/config and an sshd that accepts it: every other variable goes
    as ssh would send it, NETJOBS_TOKEN does not (an agent over SSH needs none)."""
    lab, host = trusted, trusted.hosts[4]
    monkeypatch.setenv("NETJOBS_TOKEN", "a-token-for-the-installed-agents-only-0123456789")
    monkeypatch.setenv("NJTEST_SENT", "sent")
    sending = tmp_path / "ssh_config"
    sending.write_text(lab.config.read_text() + "  SendEnv *\n")
    host.start(accept_env="*")
    try:
        command = "tr '\\0' '\\n' < /proc/$PPID/environ"  # the agent's environment
        config = f't:\nssh://{host.address}: "{command}"\nend\n'
        test = asyncio.run(run_over_ssh(dataclasses.replace(lab, config=sending), config))
    finally:
        host.start()
    assert test.status is TestStatus.PASSED, test.reason
    agent_environment = test.hosts[0].commands[0].stdout.read_bytes().decode().splitlines()
    assert "NJTEST_SENT=sent" in agent_environment
    assert not [line for line in agent_environment if "NETJOBS_TOKEN" in line]


def test_a_key_that_needs_its_passphrase_with_no_ssh_agent_is_named_with_what_to_do(
    trusted, tmp_path
):
    """NetJobs asks for no passphrase: such a key is skipped as ssh -o BatchMode=yes skips
    it, and the refusal names the key and ssh-add, not only 'Permission denied'."""
    lab, host = trusted, trusted.hosts[4]
    env = user_env(lab, tmp_path)
    key = tmp_path / ".ssh" / "id_ed25519"
    key.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", key], check=True
    )
    config = tmp_path / "one.cfg"
    config.write_text(f't:\n{host.address}: "true"\nend\n')

    def error() -> str:
        run = subprocess.run(
            [*NETJOBS, "--ssh", config], env=env, capture_output=True, text=True, timeout=90
        )
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        return run.stdout

    said = error()
    assert f"{key} needs its passphrase, which NetJobs never asks for" in said, said
    assert f"ssh-add {key}" in said
    one = f't:\nssh://{host.address}: "true"\nend\n'
    test = asyncio.run(run_over_ssh(lab, one, client_keys=[str(key)]))  # the GUI's key file
    assert f"{key} needs its passphrase" in test.hosts[0].error, test.hosts[0].error
    key.unlink()
    said = error()
    assert "no key to offer: no ssh-agent, and no key file (~/.ssh/id_ed25519" in said, said


def test_the_controller_going_away_kills_the_remote_commands(trusted, tmp_path):
    lab, host = trusted, trusted.hosts[5]
    config = tmp_path / "long.cfg"
    config.write_text(f't:\nssh://{host.address}: "sleep 302"\nend\n')
    with subprocess.Popen(
        [*NETJOBS, str(config)],
        env=user_env(lab, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as controller:
        try:
            deadline = time.monotonic() + WAIT_S
            while not any("sleep 302" in p for p in host.processes()):
                assert time.monotonic() < deadline and controller.poll() is None
                time.sleep(0.05)
        finally:
            controller.kill()  # no bye, no kill: its TCP connection just closes
    assert wait_until_gone(host) == []


def test_the_cli_runs_and_checks_ssh_hosts_with_the_users_own_ssh_setup(trusted, tmp_path):
    """One command, as the README shows: --ssh over a plain config, with ~/.ssh as the
    user has it (here a private HOME) and no token anywhere."""
    lab = trusted
    env = user_env(lab, tmp_path)
    config = tmp_path / "bench.cfg"
    config.write_text(
        f't:\n{lab.hosts[5].address}: "echo one $NETJOBS_HOST"\n'
        f'{lab.hosts[6].address}: "echo two"\nend\n'
    )
    run = subprocess.run(
        [*NETJOBS, "--ssh", str(config)], env=env, capture_output=True, text=True, timeout=90
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"ssh://{lab.hosts[5].address}" in run.stdout
    # The command's NETJOBS_HOST is the target as the config writes it, --ssh or not
    # (a file name built from it keeps working).
    assert f"one {lab.hosts[5].address}\n" in run.stdout, run.stdout
    check = subprocess.run(
        [*NETJOBS, "check", "--ssh", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 of 2 agents ready" in check.stdout


# -- the stdio agent and AgentLink's seam, without sshd (any user, any Linux) -------------
class _PipeChannel:
    """client.Channel over a local agent's stdin/stdout, as SshChannel over SSH's."""

    kernel_stamps = False

    def __init__(self, proc: asyncio.subprocess.Process, host: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self._in, self._out = proc, proc.stdin, proc.stdout
        self.host = host

    async def read(self, n: int) -> bytes:
        return await self._out.read(n)

    def write(self, data: bytes) -> None:
        self._in.write(data)

    def arrival_ns(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._in.is_closing()

    def abort(self) -> None:
        self._in.close()

    async def close(self, timeout: float) -> None:
        self._in.close()
        async with asyncio.timeout(timeout):
            await self.proc.wait()


class LocalStdioDialer:
    """Starts `netjobs-agent --stdio` on this machine, bootstrapped as SshDialer does."""

    def __init__(self) -> None:
        self.channels: list[_PipeChannel] = []

    async def open(self, address, timeout):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "netjobs_agent",
            "--stdio",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        channel = _PipeChannel(proc, address.host)
        self.channels.append(channel)
        secret = os.urandom(LINK_SECRET_BYTES)
        channel.write(stdio_greeting(secret))
        async with asyncio.timeout(WAIT_S):
            ready = await proc.stdout.readline()  # type: ignore[union-attr]
        assert ready.startswith(STDIO_READY), ready
        return channel, secret

    async def wait_all_ended(self) -> list[int | None]:
        async with asyncio.timeout(WAIT_S):
            return [await c.proc.wait() for c in self.channels]


class _Reading:
    """What _Stdout asks of its SSH channel."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_a_login_banner_past_the_ready_lines_reach_names_its_first_line_and_the_cure():
    """A ~/.bashrc that prints more than BANNER_LINES lines: the error quotes what the host
    printed first and says where such output comes from, not only 'no ready line'."""

    async def scenario():
        noisy, quiet = ssh._Stdout(), ssh._Stdout()
        noisy.feed(b"".join(b"Welcome to node03, line %d\n" % i for i in range(ssh.BANNER_LINES)))
        noisy.feed(b"NETJOBS-STDIO 3\n")
        with pytest.raises(ValueError) as raised:
            await ssh._ready_line(noisy)
        assert "'Welcome to node03, line 0'" in str(raised.value)
        assert "~/.bashrc" in str(raised.value)
        quiet.feed(b"motd\n" * (ssh.BANNER_LINES - 1) + b"NETJOBS-STDIO 3\n")
        assert await ssh._ready_line(quiet) == b"NETJOBS-STDIO 3\n"

    asyncio.run(scenario())


def test_the_agents_stdout_hands_out_what_ssh_delivered_in_order_and_paused_when_full():
    """Lines for the start, reads of the rest in order and whole, a packet taken as it
    came; past READ_LIMIT unread the channel pauses, and resumes once it is read; data
    before an error or the end is still read, then the error, then b""."""

    async def scenario():
        out, channel = _Stdout(), _Reading()
        out.set_channel(channel)  # type: ignore[arg-type]
        out.feed(b"a banner\nNETJOBS-")
        out.feed(b"STDIO 3\nframe")
        assert await out.readline() == b"a banner\n"
        assert await out.readline() == b"NETJOBS-STDIO 3\n"
        packet = b"x" * 1000
        out.feed(packet)
        assert await out.read(5) == b"frame"
        assert await out.read(4096) is packet  # one packet, not copied
        out.feed(b"1" * (READ_LIMIT // 2))
        out.feed(b"2" * (READ_LIMIT // 2 + 1))
        assert channel.calls == ["pause"]
        assert await out.read(READ_LIMIT // 2) == b"1" * (READ_LIMIT // 2)
        assert channel.calls == ["pause"]  # still more than half the limit unread
        assert await out.read(10**7) == b"2" * (READ_LIMIT // 2 + 1)
        assert channel.calls == ["pause", "resume"]
        waiting = asyncio.ensure_future(out.read(10))
        await asyncio.sleep(0)
        out.feed(b"late")
        assert await waiting == b"late"
        out.feed(b"no newline")
        out.set_exception(ConnectionResetError("SSH connection lost"))
        assert await out.read(100) == b"no newline"
        with pytest.raises(ConnectionResetError):
            await out.read(100)
        ended = _Stdout()
        ended.feed(b"partial")
        ended.feed_eof()
        assert await ended.readline() == b"partial"
        assert await ended.readline() == b"" and await ended.read(10) == b""
        long = _Stdout()
        long.feed(b"y" * (READ_LIMIT + 1))
        with pytest.raises(ValueError, match="longer than"):
            await long.readline()

    asyncio.run(scenario())


def test_an_ssh_agent_slow_to_answer_the_greeting_is_named_as_such():
    """Not "not a NetJobs 3 agent?": over SSH the agent is ours, started and ready."""

    class SilentDialer:
        async def open(self, address, timeout):
            proc = await asyncio.create_subprocess_exec(
                "sh",
                "-c",
                f"read l; echo {STDIO_READY.decode()}x; cat >/dev/null",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            self.channel = _PipeChannel(proc, address.host)
            self.channel.write(stdio_greeting(bytes(LINK_SECRET_BYTES)))
            await proc.stdout.readline()  # type: ignore[union-attr]
            return self.channel, bytes(LINK_SECRET_BYTES)

    async def scenario():
        dialer = SilentDialer()
        link = AgentLink(Address.parse("ssh://slow"), b"", dialer)
        try:
            await link.connect(0.5)
        finally:
            if dialer.channel.proc.returncode is None:
                dialer.channel.proc.kill()
            await dialer.channel.proc.wait()

    with pytest.raises(AgentError) as failed:
        asyncio.run(scenario())
    assert str(failed.value) == (
        "the agent started over SSH did not complete the handshake within 0.5 s"
    )


def stdio_jobs(agent_pid: int) -> list[int]:
    """Processes carrying the cookie of the stdio agent `agent_pid` (its commands)."""
    mine = f"NETJOBS_JOB=stdio{agent_pid}:".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mine in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for this container's init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_stdio_agent_runs_a_test_and_exits():
    async def scenario():
        dialer = LocalStdioDialer()
        plan = parse_config('t:\nssh://local: "echo over the pipe"\nend\n')
        options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer)
        test = await asyncio.wait_for(run_test(plan.tests[0], options), 30)
        return test, await dialer.wait_all_ended()

    test, statuses = asyncio.run(scenario())
    assert test.status is TestStatus.PASSED, test.reason
    assert test.hosts[0].commands[0].stdout.read_bytes() == b"over the pipe\n"
    assert test.hosts[0].target == "ssh://local" and test.hosts[0].rtt_ms is not None
    assert statuses == [0]  # the end of its channel (the run's) ended the agent
    document = run_to_json(RunResult(config_path="t.cfg", tests=[test]))
    assert document["tests"][0]["hosts"][0]["target"] == "ssh://local"
    assert run_from_json(document).tests[0].hosts[0].address == test.hosts[0].address


def test_a_stdio_agent_serves_test_after_test_on_its_channel():
    """The run keeps the link between tests: every test on that host goes to the same
    agent on the same channel, its run state reset in between; the run's end ends it."""

    async def scenario():
        dialer = LocalStdioDialer()
        plan = parse_config('t:\nssh://local: "echo $NETJOBS_JOB"\nend\n')
        options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer, repeat=3)
        result = await asyncio.wait_for(Runner(plan, options).run(), 30)
        return result.tests, len(dialer.channels), await dialer.wait_all_ended()

    tests, agents, statuses = asyncio.run(scenario())
    assert [t.status for t in tests] == [TestStatus.PASSED] * 3, [t.reason for t in tests]
    outputs = [t.hosts[0].commands[0].stdout.read_bytes() for t in tests]
    assert agents == 1 and len({agent_pid(t) for t in tests}) == 1
    assert len(set(outputs)) == 3  # each test its own run (cookie), nothing replayed
    assert statuses == [0]


def test_stdio_agents_have_no_kernel_stamps_and_are_measured_one_at_a_time():
    """Pipes carry no arrival stamps: concurrent pongs would be read late and bias the
    offsets (netjobs_core/probe.py), so these hosts take strict turns."""
    in_flight, most = 0, 0

    class CountingLink(AgentLink):
        async def ping(self, kernel_stamps: bool = True) -> Sample:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await super().ping(kernel_stamps)
            finally:
                in_flight -= 1

    async def scenario():
        dialer = LocalStdioDialer()
        links = [CountingLink(Address.parse(f"ssh://h{i}"), b"", dialer) for i in range(4)]
        try:
            await asyncio.gather(*(link.connect(WAIT_S) for link in links))
            # However slow a loaded machine makes the first ping (a slow path leaves
            # the turn by design), pipes take strict turns.
            policy = dataclasses.replace(DEFAULT_CLOCK, slow_path_ns=10**12)
            estimates = await asyncio.gather(
                *(measure_clock(link, policy, WAIT_S) for link in links)
            )
            return estimates, [link.stamped for link in links]
        finally:
            for link in links:
                await link.close()
            await dialer.wait_all_ended()

    estimates, stamped = asyncio.run(scenario())
    assert DEFAULT_CLOCK.batch > 1 and most == 1
    assert stamped == [False] * 4
    for estimate in estimates:  # one machine's clock: the truth is 0, within the bound
        assert abs(estimate.offset_ns) <= estimate.uncertainty_ns


def test_with_an_ssh_host_every_clock_is_measured_before_any_host_prepares(agents, token):
    """Its pipes have no arrival stamps: another host's spawning would bias its pings."""
    measured_at_first_prepare: list[bool] = []

    def observe(event: Event) -> None:
        if isinstance(event, HostChanged) and event.host.state is HostState.PREPARING:
            if not measured_at_first_prepare:
                hosts = event.test.hosts
                measured_at_first_prepare.append(all(h.clock_offset_ms is not None for h in hosts))

    async def scenario():
        dialer = LocalStdioDialer()
        plan = parse_config(f't:\n127.0.0.1:{agents[0].port}: "true"\nssh://local: "true"\nend\n')
        options = RunOptions(token=token.token, connect_timeout=5, dialer=dialer)
        test = await asyncio.wait_for(run_test(plan.tests[0], options, observe), 30)
        await dialer.wait_all_ended()
        return test

    test = asyncio.run(scenario())
    assert test.status is TestStatus.PASSED, test.reason
    assert measured_at_first_prepare == [True]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_eof_on_a_stdio_agents_input_kills_its_commands_and_ends_it():
    async def scenario():
        dialer = LocalStdioDialer()
        plan = parse_config('t:\nssh://local: "sleep 300"\nend\n')
        options = RunOptions(token=TOKEN, connect_timeout=5, dialer=dialer)
        watch = HostWatch()
        task = asyncio.create_task(run_test(plan.tests[0], options, watch))
        await watch.host_started(0)
        channel = dialer.channels[0]
        jobs = stdio_jobs(channel.proc.pid)
        assert jobs, "the command carries its agent's cookie"
        channel.abort()  # the channel's end, as when the SSH connection drops
        test = await asyncio.wait_for(task, 30)
        return test, jobs, channel.proc.pid, await dialer.wait_all_ended()

    test, jobs, agent_pid, statuses = asyncio.run(scenario())
    assert test.status is not TestStatus.PASSED
    assert test.hosts[0].state is HostState.FAILED
    assert statuses == [0]
    assert stdio_jobs(agent_pid) == []
    assert not [pid for pid in jobs if running(pid)]


@pytest.mark.parametrize(
    "first_line",
    [
        b"not a token\n",
        os.urandom(LINK_SECRET_BYTES).hex().encode() + b"\n",  # no kind named: refused
        b"link " + b"correct horse battery staple".hex().encode() + b"\n",  # not 256 bits
    ],
)
def test_a_stdio_agent_wants_a_link_secret_named_as_one_first(first_line):
    """Only a 256-bit secret the line calls a link secret gets the cheap key: a
    human-chosen token is never taken unstretched."""
    run = subprocess.run(
        [sys.executable, "-m", "netjobs_agent", "--stdio"],
        input=first_line,
        capture_output=True,
        timeout=WAIT_S,
    )
    assert run.returncode == 2 and run.stdout == b""
    assert b"expected the controller's link secret ('link <64 hex digits>')" in run.stderr


def test_eight_stdio_agents_starting_at_once_all_start():
    """Each one's start clears other agents' empty cgroup directories: one that a
    neighbour cleared before its first command must not die of it."""
    agents = [
        subprocess.Popen(
            [sys.executable, "-m", "netjobs_agent", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    try:
        for agent in agents:
            assert agent.stdin is not None
            agent.stdin.write(stdio_greeting(os.urandom(LINK_SECRET_BYTES)))
            agent.stdin.flush()
        for agent in agents:
            assert agent.stdout is not None
            assert agent.stdout.readline().startswith(STDIO_READY)
        parent = procs._cgroup2_dir()
        if parent is not None:  # no neighbour took a live agent's (empty) cgroup away
            mine = [os.path.join(parent, f"netjobs-stdio{a.pid}") for a in agents]
            missing = [path for path in mine if not os.path.isdir(path)]
            assert missing == []
    finally:
        for agent in agents:
            assert agent.stdin is not None
            agent.stdin.close()  # EOF: the controller is gone
        statuses = [agent.wait(timeout=WAIT_S) for agent in agents]
    errors = [agent.stderr.read()[-300:] for agent in agents if agent.stderr is not None]
    for agent in agents:
        for pipe in (agent.stdout, agent.stderr):
            if pipe is not None:
                pipe.close()
    assert statuses == [0] * 8, errors


def test_the_zipapp_carries_bytecode_its_own_python_uses_and_builds_the_same_anywhere(tmp_path):
    """Bytecode beside each module (zipimport would compile every module at every
    start), stored (it would inflate each one at every start); the bytes do not depend
    on the hash seed or on what was imported first."""
    payload = agent_zipapp()
    pyz = tmp_path / payload.name
    pyz.write_bytes(payload.data)
    with zipfile.ZipFile(pyz) as archive:
        assert {m.compress_type for m in archive.infolist()} == {zipfile.ZIP_STORED}
    origin = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import netjobs_agent.server as m; print(m.__spec__.origin)",
            str(pyz),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
    ).stdout.strip()
    assert origin == f"{pyz}/netjobs_agent/server.pyc"
    elsewhere = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncssh, netjobs_core.cli; "
            "from netjobs_core.agent_zipapp import agent_zipapp; print(agent_zipapp().sha256)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
        cwd=REPO,
        env=os.environ | {"PYTHONHASHSEED": "12345", "XDG_CACHE_HOME": str(tmp_path / "fresh")},
    ).stdout.strip()
    assert elsewhere == payload.sha256


def test_the_zipapp_is_built_once_and_kept_in_the_controllers_cache(tmp_path, monkeypatch):
    """A cold run reads it (compiling it is a Python start and ~0.1 s of CPU); an
    archive of other sources or another Python is removed when a new one is kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stale = tmp_path / "netjobs" / "zipapp-0123.pyz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"older sources")
    built = agent_zipapp.__wrapped__()  # past the in-process cache
    kept = list(stale.parent.glob("zipapp-*.pyz"))
    assert len(kept) == 1 and kept[0] != stale
    assert kept[0].read_bytes() == built.data and built.sha256 == agent_zipapp().sha256

    def no_compiling(files: object) -> dict[str, bytes]:
        raise AssertionError("compiled again")

    monkeypatch.setattr(agent_zipapp_module, "_bytecode", no_compiling)
    assert agent_zipapp.__wrapped__() == built


def test_asyncssh_is_imported_without_its_x509_part_which_stays_importable():
    """Its X.509 certificates (PKIX-SSH's, not OpenSSH's) cost every start the import
    of cryptography.x509; asyncssh is imported without them, then the module is as it
    was (importable again for whoever asks)."""
    probe = (
        "import sys\n"
        "import netjobs_core.ssh, asyncssh\n"
        "from asyncssh import public_key\n"
        "assert 'cryptography.x509' not in sys.modules, 'cryptography.x509 imported'\n"
        "assert not public_key._x509_available\n"
        "assert 'asyncssh.crypto.x509' not in sys.modules, 'left unimportable'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_importing_the_ssh_layer_warns_of_nothing():
    """cryptography 51 deprecates DSA, and asyncssh 2.24 names its key types as it is
    imported: no user of `--ssh` should read that warning on every run."""
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import netjobs_core.ssh"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_a_run_begins_its_first_tests_ssh_connections_as_it_is_entered(trusted, tmp_path):
    """Before its first results file and history line: the handshakes wait on the
    hosts meanwhile. The first test's hosts only; the later test's as it comes."""
    first, second = trusted.hosts[0].address, trusted.hosts[1].address
    plan = parse_config(f't:\nssh://{first}: "true"\nend\nu:\nssh://{second}: "true"\nend\n')
    options = RunOptions(token=TOKEN, connect_timeout=5, run_folder=RunFolder.create(tmp_path))

    async def main() -> tuple[list[str], RunResult]:
        async with Run(plan, options, ssh=trusted.options(), in_history=False) as run:
            dialer = run.options.dialer
            assert isinstance(dialer, SshDialer)
            ahead = [host for host, _, _ in dialer._hosts]
            return ahead, await asyncio.wait_for(run.run(), 60)

    ahead, result = asyncio.run(main())
    assert ahead == [first]
    assert [t.status for t in result.tests] == [TestStatus.PASSED, TestStatus.PASSED]
