"""Process hygiene with real agents: nothing a command starts outlives it or a dead agent.

Linux only; the PID 1 test needs root and `unshare`. The agent picks cgroup v2 where it
may and a child subreaper otherwise: these tests hold in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import (
    REPO,
    AgentClient,
    agent_env,
    commands,
    kill_pids,
    pid_alive,
    read_lines,
    wait_gone,
)

from netjobs_agent import oskit, procs
from netjobs_core import local_agents
from netjobs_core.wire.messages import Kill

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

ROOT = os.geteuid() == 0 and shutil.which("unshare") is not None


def cgroup2_mount() -> str | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return fields[4]
    return None


# "default": what the agent picks here (cgroup v2 when root); "subreaper": the agent in a
# mount namespace where the cgroup2 hierarchy is read-only, as for an unprivileged agent.
MODES = [
    "default",
    pytest.param(
        "subreaper",
        marks=pytest.mark.skipif(
            not ROOT or cgroup2_mount() is None, reason="needs root, unshare and cgroup2"
        ),
    ),
]


@contextlib.contextmanager
def launch(
    token_file: Path, log: Path, mode: str, port: int = 0, env: dict[str, str] | None = None
) -> Iterator[local_agents.LocalAgent]:
    launcher: list[str] = []
    if mode == "subreaper":
        remount = 'mount -o remount,bind,ro "$0" && exec "$@"'
        launcher = ["unshare", "--mount", "sh", "-c", remount, str(cgroup2_mount())]
    agent = local_agents.start_agent(
        token_file, port=port, launcher=launcher, env=agent_env(env), cwd=REPO, log=log
    )
    try:
        if mode == "subreaper":
            assert "contained by child subreaper" in agent.log_text()
        yield agent
    finally:
        agent.kill()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def agent(token_file: Path, tmp_path: Path, mode: str) -> Iterator[local_agents.LocalAgent]:
    with launch(token_file, tmp_path / "agent.log", mode) as process:
        yield process


# A double-forked daemon in its own session: its parent subshell exits at once.
DAEMON = "(setsid sleep 1000 >/dev/null 2>&1 & echo $!)"


async def pids(client: AgentClient, count: int = 1) -> list[int]:
    """The first COUNT stdout lines of command 1, as PIDs; the messages stay queued."""
    return [int(line) for line in await read_lines(client, count)]


async def test_a_double_forked_daemon_goes_when_its_command_ends(agent, token_file):
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        outcome = await client.run(commands(DAEMON))
    daemon = int(outcome.stdout(1))
    try:
        assert outcome.exits[1].status == "ok"
        assert await wait_gone([daemon], 3) == []
    finally:
        kill_pids([daemon])


@pytest.mark.parametrize("end", ["timeout", "kill"])
async def test_a_setsid_child_goes_at_timeout_and_kill(agent, token_file, end):
    timeout = 1 if end == "timeout" else None
    command = "setsid sleep 1000 >/dev/null 2>&1 & echo $!; sleep 1000"
    async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
        await client.prepare("t", commands((command, timeout)))
        await client.start()
        (escaped,) = await pids(client)
        try:
            if end == "kill":
                await client.send(Kill(reason="test"))
            outcome = await client.collect(timeout=15)
            assert outcome.exits[1].status == ("timeout" if end == "timeout" else "killed")
            assert await wait_gone([escaped], 3) == []
        finally:
            kill_pids([escaped])


def watcher_of(agent: local_agents.LocalAgent) -> int:
    """The process id of the agent's watcher, from its start log."""
    match = re.search(r"watcher (\d+) ends them", agent.log_text())
    assert match, agent.log_text()
    return int(match.group(1))


def processes_of(agent_pid: int) -> set[int]:
    """Every live process of the commands of the agent AGENT_PID: what carries its cookie
    (NETJOBS_JOB=<key>:<agent pid>.<n>; nothing here scrubs its environment)."""
    mark = f"{procs.COOKIE_VAR}=".encode()
    infix = f":{agent_pid}.".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name)):
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(item.startswith(mark) and infix in item for item in environ):
                found.add(int(entry.name))
    return found


# Command 1 forks: a double-forked daemon, and a child shell whose own child is the
# grandchild; command 2, `sleep 300; :`, is no simple command: the gate shell forks
# it (no parent-death signal) rather than exec it in place (agent.oskit.exec_in_place).
FORKING = f"{DAEMON}; sh -c 'sleep 300 & echo $!; wait'; :"
RUN_PROCESSES = 6  # gate shell, daemon, child shell, grandchild; gate shell, sleep


def left_of(cgroup: Path) -> list[str] | None:
    """What CGROUP holds; None if it is gone."""
    return sorted(os.listdir(cgroup)) if cgroup.exists() else None


async def test_every_process_of_a_run_dies_with_its_killed_agent(token_file, tmp_path, mode):
    with launch(token_file, tmp_path / "agent.log", mode) as agent:
        async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
            await client.prepare("t", commands(FORKING, "sleep 300; :"))
            await client.start()
            daemon, grandchild = await pids(client, 2)
            deadline = time.monotonic() + 10
            while len(run := processes_of(agent.process.pid)) < RUN_PROCESSES:
                assert time.monotonic() < deadline, run
                await asyncio.sleep(0.02)
            assert {daemon, grandchild} <= run
            agent.process.send_signal(signal.SIGKILL)
            agent.process.wait(10)
            killed_at = time.monotonic()
    try:
        assert await wait_gone(run, 5) == [], "the killed agent's commands ran on"
        assert processes_of(agent.process.pid) == set()
        assert time.monotonic() - killed_at < 5
        assert await wait_gone([watcher_of(agent)], 5) == [], "its watcher ends when done"
        parent = procs._cgroup2_dir()
        if "contained by cgroup v2" in agent.log_text() and parent is not None:
            base = Path(parent, f"netjobs-{agent.port}-net{procs._netns()}")
            assert left_of(base) is None, f"the watcher leaves {left_of(base)}"
    finally:
        kill_pids(run)


async def test_a_restarted_agent_kills_what_a_killed_one_left(token_file, tmp_path, mode):
    command = f"{DAEMON}; echo $$; exec sleep 1000"
    with launch(token_file, tmp_path / "first.log", mode) as first:
        async with await AgentClient.connect(first.host, first.port, token_file) as client:
            await client.prepare("t", commands(command))
            await client.start()
            daemon, main = await pids(client, 2)
            # Its watcher killed first, as a `kill -9` of every process of the agent would.
            watcher = watcher_of(first)
            os.kill(watcher, signal.SIGKILL)
            assert await wait_gone([watcher], 3) == []
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
    try:
        # The parent-death signal takes the command's main process at once.
        assert await wait_gone([main], 3) == []
        assert pid_alive(daemon), "nothing should have killed the daemon before the restart"
        with launch(token_file, tmp_path / "second.log", mode, first.port) as second:
            assert await wait_gone([daemon], 3) == []
            assert "a previous agent on this port left" in second.log_text()
    finally:
        kill_pids([main, daemon])


NO_SETPRIV = """\
import pathlib
from netjobs_agent import oskit, procs
oskit.death_signal_wrapper = lambda: None
pathlib.Path(__file__).with_name("hooked").touch()
"""


def test_this_machine_spawns_gate_shells_through_setpriv():
    if not any(Path(path).exists() for path in oskit.SETPRIV_PATHS):
        pytest.skip("no util-linux setpriv here")
    assert oskit.death_signal_wrapper() == [oskit.SETPRIV_PATHS[0], "--pdeathsig", "KILL", "--"]


@pytest.mark.parametrize("spawn", ["setpriv", "preexec_fn"])
async def test_a_quiet_command_dies_with_its_killed_agent(token_file, tmp_path, spawn):
    env = None
    if spawn == "preexec_fn":  # a machine without setpriv: the agent's own prctl
        (tmp_path / "sitecustomize.py").write_text(NO_SETPRIV)
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    with launch(token_file, tmp_path / "agent.log", "default", env=env) as agent:
        async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
            await client.prepare("t", commands("echo $$; exec sleep 1000"))
            await client.start()
            (main,) = await pids(client)
            agent.process.send_signal(signal.SIGKILL)
            agent.process.wait(10)
    try:
        assert await wait_gone([main], 3) == []
    finally:
        kill_pids([main])
    assert (tmp_path / "hooked").exists() == (spawn == "preexec_fn")


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def lasting_zombies(pid: int, timeout: float) -> list[int]:
    """Zombie children of PID still there after TIMEOUT (or none, as soon as none)."""
    deadline = time.monotonic() + timeout
    while (zombies := zombies_of(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return zombies


def only_child(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


@pytest.mark.skipif(not ROOT, reason="needs root and unshare")
async def test_an_agent_as_pid_1_reaps_orphans(token_file, tmp_path):
    agent = local_agents.start_agent(
        token_file,
        launcher=["unshare", "--pid", "--fork", "--mount-proc"],
        env=agent_env(),
        cwd=REPO,
        log=tmp_path / "agent.log",
    )
    try:
        init = only_child(agent.process.pid)  # the agent, PID 1 inside unshare
        async with await AgentClient.connect(agent.host, agent.port, token_file) as client:
            for _ in range(10):
                # The subshell's sleep is orphaned to PID 1, then dies.
                outcome = await client.run(commands("(sleep 0.01 &); true"))
                assert outcome.exits[1].status == "ok"
        zombies = await asyncio.to_thread(lasting_zombies, init, 5)
        assert zombies == [], f"{len(zombies)} zombies after 10 runs"
        # Stopped, not killed: its watcher dies with the PID namespace of its PID 1.
        os.kill(init, signal.SIGTERM)
        assert await wait_gone([init], 10) == []
    finally:
        kill_pids([init])
        agent.kill()


NETNS = ROOT and shutil.which("ip") is not None and cgroup2_mount() is not None

# Listens on a free port of its network namespace, says which, lives until killed.
LISTENER = (
    "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); time.sleep(600)"
)


@contextlib.contextmanager
def own_netns() -> Iterator[str]:
    """A network namespace of this test's own (its name: this pid and the branch)."""
    name = f"njproc-{os.getpid()}-proc18"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def blind_to_some_process() -> bool:
    """Whether the network namespace of some process cannot be read (a process of
    another user namespace: PID 1 of some sandboxes)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                os.readlink(entry / "ns" / "net")
            except PermissionError:
                return True
            except OSError:
                pass
    return False


@pytest.mark.skipif(not NETNS, reason="needs root, ip netns and cgroup2")
def test_an_agent_removes_the_empty_cgroups_of_dead_agents_only(token_file, tmp_path):
    """Killed with its watcher, an agent leaves its cgroup; the next agent to start,
    on any port, removes it, and never a live neighbour's (here or in another netns)."""
    found = procs._cgroup2_dir()
    assert found is not None
    parent = Path(found)
    here = procs._netns()
    made: list[Path] = []
    with own_netns() as netns, socket.socket() as neighbour:
        neighbour.bind(("0.0.0.0", 0))
        neighbour.listen()
        there = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", LISTENER],
            stdout=subprocess.PIPE,
        )
        try:
            assert there.stdout is not None
            there_port = int(there.stdout.readline())
            there_ns = os.readlink(f"/proc/{there.pid}/ns/net").split("[")[-1].rstrip("]")
            live = [
                f"netjobs-{neighbour.getsockname()[1]}-net{here}",
                f"netjobs-{there_port}-net{there_ns}",
                f"netjobs-stdio{os.getpid()}",
                "netjobs-not-an-agent",
            ]
            dead = [
                f"netjobs-{free_port()}-net{here}",
                f"netjobs-{there_port + 1 if there_port < 65535 else 1}-net{there_ns}",
                f"netjobs-stdio{2**22 + 1}",  # above pid_max's default
            ]
            # A namespace no process is in: dead, unless some process cannot be seen.
            (live if blind_to_some_process() else dead).append("netjobs-1-net1")
            for name in live + dead:
                made += [parent / name, parent / name / "cmd-1-1"]
                made[-1].mkdir(parents=True)
            with launch(token_file, tmp_path / "agent.log", "default") as agent:
                assert "contained by cgroup v2" in agent.log_text()
                assert [name for name in live if not (parent / name).is_dir()] == []
                assert [name for name in dead if (parent / name).exists()] == []
                # Other tests' (or other users') dead agents count too.
                said = re.search(r"removed (\d+) empty cgroup\(s\) of agents", agent.log_text())
                assert said and int(said.group(1)) >= len(dead), agent.log_text()
        finally:
            there.kill()
            there.wait()
            if there.stdout is not None:
                there.stdout.close()
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    path.rmdir()


LEAKING_TEST = """\
import os
from netjobs_agent import procs

def test_leaves_a_cgroup():
    os.mkdir(os.path.join(procs._cgroup2_dir(), f"netjobs-1-net{os.getpid()}"))
"""


@pytest.mark.skipif(not ROOT or cgroup2_mount() is None, reason="needs root and cgroup2")
def test_a_session_whose_agents_leave_a_cgroup_fails(tmp_path):
    """tests/conftest.py: the session runs in a cgroup of its own and fails when
    netjobs-* cgroups are left in it (then removes them)."""
    (tmp_path / "test_leak.py").write_text(LEAKING_TEST)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert re.search(r"agents left 1 cgroup\(s\) behind: netjobs-1-net\d+", run.stdout)
    parent = procs._cgroup2_dir()
    assert parent is not None
    assert list(Path(parent).glob("njtests-*/netjobs-1-net*")) == []


def test_a_subreapers_cookie_search_reads_its_subtree_and_broken_lines_only():
    """Orphans re-parent to the subreaper agent: its commands' processes are all
    below it. A line of parents that breaks off (a parent exited while /proc was
    read) may be below it too; a whole line up to the top that never passes it is
    not."""
    agent, table = 100, {1: (0, "S"), 100: (1, "S"), 200: (100, "S"), 300: (200, "S")}
    table |= {400: (999, "S"), 500: (1, "S"), 600: (500, "S")}  # 999: gone meanwhile
    below = [p for p in sorted(table) if procs._ancestry(p, agent, table) is not False]
    assert below == [100, 200, 300, 400]
    assert procs._ancestry(600, agent, table) is False  # up to the top, never below
    assert procs._ancestry(400, agent, table) is None  # broken off: may be below
