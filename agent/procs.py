"""Containment: nothing a command starts outlives it, nor a dead agent.

Linux, best first:
- cgroup v2 (where the agent may create cgroups: root, or a delegated
  subtree): each command's gate shell is moved into its own cgroup
  `<agent's cgroup>/netjobs-<port>-net<netns>/cmd-<agent pid>-<n>` before it is released
  (blocked in `read`, it cannot have forked yet), and `cgroup.kill` ends
  everything in it, double-forked `setsid` daemons included. The path is
  known to the next agent on the same port and network namespace: at start it
  kills and removes what a dead agent left (binding the port first proves that
  agent is gone), and removes every other dead agent's empty cgroups.
- otherwise a child subreaper: orphans re-parent to the agent, and a kill
  takes every process descending from the command's main process, or carrying
  its cookie in the environment (`NETJOBS_JOB`, set at spawn; a process that
  scrubs its environment and daemonizes escapes this mode).
In both modes a watcher process, forked at the agent's start, outlives a killed
agent: the end of the pipe the agent holds wakes it, and it kills every process
of the dead agent's commands (its cgroups, and whatever carries its cookie),
then removes its cgroups. A restarted agent kills processes whose cookie names
its port (for when the watcher was killed too), and the agent reaps orphaned
zombies when it is PID 1 or a subreaper, without touching its own commands'
main processes (their reaper threads wait for them).
Elsewhere (macOS, Windows) only the process group / taskkill tree of oskit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import glob
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

LINUX = sys.platform.startswith("linux")
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
COOKIE_VAR = "NETJOBS_JOB"
EMPTY_WAIT_S = 1.0  # after cgroup.kill, for the kernel to empty the cgroup
WATCHER_NAME = b"netjobs-watch"  # its name in ps/top (comm), not the agent's
WATCHER_KILL_S = 2.0  # the watcher's rounds of cookie kills (forks meanwhile)

log = logging.getLogger("netjobs.agent")


def _prctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not LINUX:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = _prctl()


def set_parent_death_signal(parent: int) -> None:
    """preexec_fn of the gate shells: SIGKILL when the agent dies.

    Runs between fork and exec: one foreign call, no Python locks, no imports
    (safe with the agent's reaper threads, which hold nothing). If the agent
    died before the prctl, the shell is already an orphan: exit at once.
    """
    if PRCTL is not None:
        PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(125)


def _cgroup2_dir() -> str | None:
    """This process's cgroup v2 directory, if a cgroup2 hierarchy is mounted."""
    try:
        own = next(
            line[3:]
            for line in _read_proc("/proc/self/cgroup").decode().splitlines()
            if line.startswith("0::")
        )
        mounts = _read_proc("/proc/self/mountinfo").decode().splitlines()
    except (OSError, StopIteration):
        return None
    for line in mounts:
        fields = line.split()
        dash = fields.index("-")
        if fields[dash + 1] != "cgroup2":
            continue
        root, mountpoint = fields[3], fields[4]
        if own == root or own.startswith(root.rstrip("/") + "/"):
            relative = own[len(root.rstrip("/")) :].lstrip("/")
            return os.path.join(mountpoint, relative) if relative else mountpoint
    return None


# Paths as strings, files through os: pathlib (with urllib and ipaddress) would be
# ~5 % of an agent's start over SSH, where eight of them share a host's CPUs.
def _write(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


def _mkdir(path: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)


def _netns() -> str:
    try:
        return os.readlink("/proc/self/ns/net").split("[")[-1].rstrip("]")
    except OSError:
        return "0"


def _read_proc(path: str) -> bytes:
    """A /proc file, whole: os calls, not pathlib's objects and text decoding, since
    a scan reads one or two per process (650 processes: 15 ms instead of 37 here)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every process we can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = _read_proc(f"/proc/{entry}/stat")
            except OSError:
                continue
            fields = stat.rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
    return table


def _cookie(pid: int) -> str | None:
    try:
        environ = _read_proc(f"/proc/{pid}/environ")
    except OSError:
        return None
    prefix = COOKIE_VAR.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _ancestry(pid: int, ancestor: int, table: dict[int, tuple[int, str]]) -> bool | None:
    """True: PID is ANCESTOR or descends from it; False: its line of parents reached
    the top without passing it; None: the line broke off at a process that exited
    while the table was read (its children went to a subreaper since), or ran on."""
    seen = 0
    while pid in table and seen < 4096:
        if pid == ancestor:
            return True
        pid = table[pid][0]
        seen += 1
    return False if pid == 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pids: object, sig: int) -> None:
    for pid in pids:  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _tcp_listening(net_dir: str) -> set[int]:
    """The TCP ports in LISTEN state in the network namespace of NET_DIR
    (`/proc/self/net` or `/proc/<pid>/net`); OSError if it cannot be read."""
    ports = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = _read_proc(os.path.join(net_dir, name)).decode().splitlines()[1:]
        except FileNotFoundError:
            if name == "tcp6":  # no IPv6
                continue
            raise
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class _Listeners:
    """Whether a port agent is alive: something listens on its port in its network
    namespace (it binds before it makes its cgroup, and holds the port until its end).
    Asked of a namespace no process of which can be seen: no."""

    def __init__(self) -> None:
        self._ports: dict[str, set[int] | None] = {}  # netns -> ports, None: cannot tell
        self._members: dict[str, list[int]] | None = None
        self._partial = False  # some process's namespace was not readable

    def alive(self, port: int, netns: str) -> bool:
        if netns not in self._ports:
            self._ports[netns] = self._listening(netns)
        ports = self._ports[netns]
        return ports is None or port in ports

    def _listening(self, netns: str) -> set[int] | None:
        if netns == _netns():
            try:
                return _tcp_listening("/proc/self/net")
            except OSError:
                return None
        if self._members is None:
            self._members = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        ns = os.readlink(f"/proc/{entry}/ns/net").split("[")[-1].rstrip("]")
                    except PermissionError:
                        self._partial = True
                        continue
                    except OSError:
                        continue
                    self._members.setdefault(ns, []).append(int(entry))
        for pid in self._members.get(netns, []):
            try:
                return _tcp_listening(f"/proc/{pid}/net")
            except (FileNotFoundError, ProcessLookupError):
                continue  # it ended: another one of the namespace
            except OSError:
                return None
        return None if self._partial else set()


def _owner_alive(name: str, listeners: _Listeners) -> bool:
    """Whether the agent of the cgroup NAME (netjobs-...) may be alive: a stdio agent
    by its process id, a port agent by its listening socket; anything else: yes."""
    rest = name.removeprefix("netjobs-")
    if rest.startswith("stdio"):
        owner = rest.removeprefix("stdio")
        return not owner.isdigit() or _alive(int(owner))
    port, sep, netns = rest.partition("-net")
    if not (sep and port.isdigit() and netns.isdigit()):
        return True
    return listeners.alive(int(port), netns)


def _set_name(name: bytes) -> None:
    if PRCTL is not None:
        PRCTL(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


class Containment:
    """The agent's record of its commands' processes (one per agent process)."""

    def __init__(self) -> None:
        self.mode = "process groups"
        self.key = f"{os.getpid()}"
        self._base: str | None = None  # netjobs-<port>-net<ns> when cgroups work
        self._seq = 0
        self._jobs: dict[int, tuple[str, str | None]] = {}  # main pid -> (cookie, cgroup)
        self._scan_pending = False
        self.reaps_orphans = False
        self.watcher: int | None = None  # its process id while it watches
        self._watch_fd: int | None = None  # the agent's end of the watcher's pipe

    # -- start ------------------------------------------------------------------
    def start(self, port: int | None) -> None:
        """Pick the mode, kill what a dead agent on PORT left, reap where needed.

        None: a stdio agent (started over SSH), one of any number at once: its key
        is its own process id, so it never takes another live agent's processes."""
        if not LINUX:
            return
        self.key = f"{port}-net{_netns()}" if port is not None else f"stdio{os.getpid()}"
        parent = _cgroup2_dir()
        if parent is not None:
            base = os.path.join(parent, f"netjobs-{self.key}")
            try:
                for attempt in range(3):  # another agent's start may remove it meanwhile
                    try:
                        _mkdir(base)
                        self._probe(base)
                        break
                    except FileNotFoundError:
                        if attempt == 2:
                            raise
                self._base = base
                self.mode = f"cgroup v2 ({base})"
            except OSError as exc:
                log.info("no cgroup for the commands (%s): subreaper mode", exc.strerror or exc)
        if self._base is None:
            if PRCTL is not None and PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
                self.mode = "child subreaper"
                self.reaps_orphans = True
        self.reaps_orphans |= os.getpid() == 1
        self._start_watcher()
        self._kill_leftovers()
        if self.reaps_orphans:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGCHLD, self._schedule_scan)
            self._schedule_scan()
        log.info("commands are contained by %s", self.mode)
        if self.watcher is not None:
            log.info("watcher %d ends them should this agent be killed", self.watcher)

    @staticmethod
    def _probe(base: str) -> None:
        """A cgroup we can fill and kill; raises OSError if not."""
        probe = os.path.join(base, "probe")
        _mkdir(probe)
        try:
            if not os.path.exists(os.path.join(probe, "cgroup.kill")):
                raise OSError(errno.ENOTSUP, "cgroup.kill needs Linux 5.14")
            _write(os.path.join(probe, "cgroup.procs"), str(os.getpid()))  # in and out again
            _write(os.path.join(os.path.dirname(base), "cgroup.procs"), str(os.getpid()))
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(probe)

    def _kill_leftovers(self) -> None:
        # A stdio agent's key is its own new process id: no cookie to look for (the
        # watcher of an earlier agent with this id ended its processes), and the
        # other agents' dead cgroups are swept at its end (stop): reading every
        # process's environment and the listening sockets of every namespace was a
        # quarter of an SSH agent's start.
        stdio = self.key.startswith("stdio")
        mine = self.key + ":"
        me = os.getpid()
        table = {} if stdio else _proc_table()
        stale = [pid for pid in table if pid != me and (_cookie(pid) or "").startswith(mine)]
        if stale:
            log.warning("killing %d process(es) a previous agent on this port left", len(stale))
            _kill(stale, signal.SIGKILL)
        if self._base is not None:
            # Another agent starting now may have just removed our (empty) directory
            # as a leftover: nothing of ours is in it yet, and adopt() makes it again.
            try:
                with os.scandir(self._base) as entries:
                    children = [entry.path for entry in entries if entry.is_dir()]
            except FileNotFoundError:
                children = []
            for child in children:
                self._destroy(child)
            if not stdio:
                self._remove_dead_agents_cgroups()

    def _remove_dead_agents_cgroups(self) -> None:
        """The empty cgroups of other agents that were killed (with their watcher:
        it removes them otherwise); rmdir fails on a populated cgroup. Only a dead
        owner's (_owner_alive): removing a live agent's fresh directory raced with
        its first spawn. Listed before the owners are looked up: an agent binds its
        port before it makes its directory."""
        assert self._base is not None
        parent = os.path.dirname(self._base)
        others = [
            p for p in glob.glob(os.path.join(glob.escape(parent), "netjobs-*")) if p != self._base
        ]
        listeners = _Listeners()
        removed = 0
        for other in others:
            if _owner_alive(os.path.basename(other), listeners):
                continue
            for empty in [*glob.glob(os.path.join(glob.escape(other), "cmd-*")), other]:
                with contextlib.suppress(OSError):
                    os.rmdir(empty)
                    removed += empty == other
        if removed:
            log.info("removed %d empty cgroup(s) of agents that were killed", removed)

    def stop(self) -> None:
        """At the agent's end: its (by now empty) cgroup goes, and its watcher; a
        stdio agent sweeps the other agents' dead cgroups on its way out."""
        if self._base is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._base)
            if self.key.startswith("stdio"):
                self._remove_dead_agents_cgroups()
        self._stop_watcher()

    # -- the watcher ----------------------------------------------------------------
    def _start_watcher(self) -> None:
        """Fork the process that outlives a killed agent (see _watch).

        Forked, not spawned: no second interpreter (nor a one-file executable's
        unpacking) and a few hundred KiB of its own memory; at start, on the loop's
        thread, before any command and its reaper thread.
        """
        agent = os.getpid()
        read_end, write_end = os.pipe()  # not inheritable: commands never hold it
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            log.warning("no watcher (%s): a killed agent leaves its commands", exc)
            return
        if pid == 0:  # the watcher: never returns
            try:
                os.close(write_end)
                self._watch(read_end, agent)
            finally:
                os._exit(0)
        os.close(read_end)
        self.watcher, self._watch_fd = pid, write_end

    def _stop_watcher(self) -> None:
        """At the agent's end: the watcher sees it, checks, exits; reap it."""
        if self._watch_fd is None or self.watcher is None:
            return
        os.close(self._watch_fd)
        self._watch_fd = None
        deadline = time.monotonic() + EMPTY_WAIT_S + WATCHER_KILL_S
        with contextlib.suppress(ChildProcessError):  # reaped by _reap_orphans
            while os.waitpid(self.watcher, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    break  # init reaps it after the agent's exit
                time.sleep(0.005)
        self.watcher = None

    def _watch(self, fd: int, agent: int) -> None:
        """The watcher: wait for the agent's end, then end what its commands left.

        Its own session (no terminal's Ctrl-C or hang-up reaches it) and name (`kill
        -9` or killall of the agent spares it); no parent-death signal (fork clears
        it). It holds only FD (and stderr for one log line): never the agent's
        listening sockets or the controller's connections.
        """
        with contextlib.suppress(OSError):
            os.setsid()
        _set_name(WATCHER_NAME)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for entry in os.listdir("/proc/self/fd"):
            if int(entry) not in (fd, 2):
                with contextlib.suppress(OSError):
                    os.close(int(entry))
        while True:
            try:
                if not os.read(fd, 64):
                    break  # EOF: every copy of the write end closed, the agent is gone
            except InterruptedError:
                continue
        killed = self._end_commands_of(agent)
        if killed:
            log.warning(
                "netjobs agent %d ended without ending its commands: "
                "killed %d process(es) they left",
                agent,
                killed,
            )

    def _end_commands_of(self, agent: int) -> int:
        """Kill every process of AGENT's commands, remove their cgroups; how many."""
        killed = 0
        cgroups = []
        if self._base is not None:
            cgroups = glob.glob(os.path.join(glob.escape(self._base), f"cmd-{agent}-*"))
            for cgroup in cgroups:
                with contextlib.suppress(OSError, ValueError):
                    killed += len(_read_proc(os.path.join(cgroup, "cgroup.procs")).split())
                    _write(os.path.join(cgroup, "cgroup.kill"), "1")
        # What carries the cookie: all of it without cgroups, what left one with them.
        prefix = f"{self.key}:{agent}."
        me = os.getpid()
        deadline = time.monotonic() + WATCHER_KILL_S
        while True:
            stale = [
                pid
                for pid, (_, state) in _proc_table().items()
                if pid != me and state != "Z" and (_cookie(pid) or "").startswith(prefix)
            ]
            if not stale or time.monotonic() > deadline:
                break
            _kill(stale, signal.SIGKILL)
            killed += len(stale)
            time.sleep(0.01)  # forks meanwhile, the dying's children
        for cgroup in cgroups:
            self._destroy(cgroup)
        if self._base is not None:
            with contextlib.suppress(OSError):  # not a successor's busy one
                os.rmdir(self._base)
        return killed

    # -- commands -----------------------------------------------------------------
    def spawn_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The environment of the next command: the agent's minus its token, the
        NETJOBS_* variables of EXTRA (the protocol refuses any other name), a cookie."""
        env = {k: v for k, v in os.environ.items() if k != "NETJOBS_TOKEN"}
        env.update((k, v) for k, v in extra.items() if k.startswith("NETJOBS_"))
        env.pop("NETJOBS_TOKEN", None)
        self._seq += 1
        env[COOKIE_VAR] = f"{self.key}:{os.getpid()}.{self._seq}"
        return env

    def adopt(self, pid: int, env: dict[str, str]) -> None:
        """Record a just-spawned gate shell (not released yet: it has no children)."""
        cgroup = None
        if self._base is not None:
            # cmd-<agent's pid>-<n>: the watcher of a killed agent takes its own only.
            instance = env[COOKIE_VAR].rsplit(":", 1)[1].replace(".", "-")
            cgroup = os.path.join(self._base, f"cmd-{instance}")
            try:
                for attempt in range(3):  # a dead agent's watcher may remove the base
                    try:
                        _mkdir(self._base)
                        os.mkdir(cgroup)
                        break
                    except FileNotFoundError:
                        if attempt == 2:
                            raise
                _write(os.path.join(cgroup, "cgroup.procs"), str(pid))
            except OSError as exc:
                log.warning("cannot put process %d in %s: %s", pid, cgroup, exc)
                with contextlib.suppress(OSError):
                    os.rmdir(cgroup)
                cgroup = None
        self._jobs[pid] = (env[COOKIE_VAR], cgroup)

    def members(self, pid: int) -> set[int]:
        """Every live process of the command whose main process is PID."""
        cookie, cgroup = self._jobs.get(pid, ("", None))
        if cgroup is not None:
            with contextlib.suppress(OSError):
                return {int(p) for p in _read_proc(os.path.join(cgroup, "cgroup.procs")).split()}
        if not LINUX or not cookie:
            return set()
        table = _proc_table()
        me = os.getpid()
        # A subreaper's commands' processes all stay below it (orphans re-parent to
        # it): the environment, the dearer read, only of those (650 processes here:
        # 35 ms of reads otherwise, at every command's end).

        def may_be_ours(p: int) -> bool:
            return not self.reaps_orphans or _ancestry(p, me, table) is not False

        return {
            p
            for p, (_, state) in table.items()
            if state != "Z"
            and (_ancestry(p, pid, table) is True or (may_be_ours(p) and _cookie(p) == cookie))
        }

    def signal(self, pid: int, sig: int) -> None:
        """SIG to everything of the command; SIGKILL goes through cgroup.kill."""
        _, cgroup = self._jobs.get(pid, ("", None))
        if sig == signal.SIGKILL and cgroup is not None:
            with contextlib.suppress(OSError):
                _write(os.path.join(cgroup, "cgroup.kill"), "1")
                return
        _kill(self.members(pid), sig)

    def forget(self, pid: int) -> None:
        """The command's main process ended: kill what is left, drop its cgroup."""
        if pid not in self._jobs:
            return
        self.signal(pid, signal.SIGKILL)
        _, cgroup = self._jobs.pop(pid)
        if cgroup is not None:
            self._destroy(cgroup)

    @staticmethod
    def _destroy(cgroup: str) -> None:
        with contextlib.suppress(OSError):
            _write(os.path.join(cgroup, "cgroup.kill"), "1")
        deadline = time.monotonic() + EMPTY_WAIT_S
        while True:
            try:
                os.rmdir(cgroup)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("cannot remove %s: %s", cgroup, exc.strerror)
                    return
            time.sleep(0.005)  # the kernel empties it within microseconds

    # -- orphans ------------------------------------------------------------------
    def _schedule_scan(self) -> None:
        if not self._scan_pending:
            self._scan_pending = True
            asyncio.get_running_loop().call_soon(self._reap_orphans)

    def _reap_orphans(self) -> None:
        """Reap zombie children that are not our commands' main processes.

        Runs on the event loop, like spawn and adopt: a main process is always
        recorded before this can see it, so no reaper thread loses its status.
        """
        self._scan_pending = False
        me = os.getpid()
        for pid, (ppid, state) in _proc_table().items():
            if ppid == me and state == "Z" and pid not in self._jobs:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)


CONTAINMENT = Containment()
