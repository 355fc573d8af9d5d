"""Every platform difference the agent has, behind one small module.

The functions that differ take the platform (`sys.platform` style) as a
parameter, so the Windows forms can be unit-tested on Linux. Standard library
only: the agent is frozen into a small executable.

POSIX commands are *gated*: spawned at prepare time as `/bin/sh -c GATE_PREFIX
+ COMMAND` with stdin a pipe, so the shell is running and blocked in `read`
before the start instant; one line on that pipe releases it (~1 ms from the
write to the command running, against 2.5-6 ms for a fresh spawn). The prefix
is plain shell text in front of the command, so the command is parsed and run
by that very shell exactly as `sh -c COMMAND` would: same `$0`, no positional
parameters, same error messages. The release line carries the common start
instant (epoch ns on this machine's wall clock), which the gate exports as
NETJOBS_START_EPOCH_NS: it is only known at the start, long after the spawn.
EOF before the newline makes the gate exit 125 without running anything.
A command that is provably one simple command (plain words, a program found on
its PATH at prepare time, nothing the shell itself runs: `exec_in_place`) is
run with `exec` in place of the gate shell: no fork after the release, which
cost as much as the rest of the shell's start (issue 19). Its exit status is
then the program's own (a death by signal is reported as such, as `bash -c`
does), and the gate's pid is the command's.
Windows has no gate: `cmd.exe /d /s /c` is spawned at the release.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .procs import CONTAINMENT, set_parent_death_signal

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

WINDOWS = "win32"

# Read one line, the start instant (see gate_release); EOF first means "never run".
START_VAR = "NETJOBS_START_EPOCH_NS"
GATE_PREFIX = f"IFS= read -r {START_VAR} || exit 125; export {START_VAR}; exec </dev/null; "
GATE_EOF_EXIT = 125
POSIX_SHELL = "/bin/sh"

# A command made only of these characters has no quoting, expansion, redirection,
# operator, comment or keyword punctuation: the shell splits it at blanks and
# nothing else (tilde and glob characters are left out too).
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_./:=,+%@ \t-]+")
# Names the shell runs itself (keywords, dash's, bash's and busybox ash's builtins):
# `exec NAME` would run a file of that name instead of the builtin, or fail.
SHELL_OWN_NAMES = frozenset(
    """! . : [ [[ alias bg bind break builtin caller case cd chdir command compgen
    complete compopt continue declare dirs disown do done echo elif else enable esac
    eval exec exit export false fc fg fi for function getopts hash help history if in
    jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly
    return select set shift shopt source suspend test then time times trap true type
    typeset ulimit umask unalias unset until wait while""".split()
)

# Windows creation flags (literal values: the subprocess constants exist only there).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000

TASKKILL_TIMEOUT_S = 10.0

# SO_REUSEADDR lets a restarted agent bind at once on POSIX; on Windows it
# would let a second process bind the same port, so leave it off there.
REUSE_ADDRESS = os.name == "posix"


def gate_release(start_epoch_ns: int) -> bytes:
    """The line that releases a gate: one write of a few bytes (< PIPE_BUF: atomic)."""
    return b"%d\n" % start_epoch_ns


def gating_supported(platform: str = sys.platform) -> bool:
    return platform != WINDOWS


def comspec(environ: Mapping[str, str] | None = None) -> str:
    """Absolute path of cmd.exe (never a bare name: it would be searched in the cwd)."""
    environ = os.environ if environ is None else environ
    path = environ.get("ComSpec") or environ.get("COMSPEC")
    if path:
        return path
    root = environ.get("SystemRoot") or environ.get("SYSTEMROOT") or r"C:\Windows"
    return root.rstrip("\\") + r"\System32\cmd.exe"


def exec_in_place(command: str, path: str | None) -> bool:
    """Whether the gate may `exec COMMAND` instead of running it as a child, with
    the same result: one simple command of plain words whose first word is no
    assignment, option or shell builtin and names an executable file, found on
    PATH (the command's own; None: never) now, as the shell will look it up at
    the release. Not found now: the shell's usual error, so the usual way.
    """
    if path is None or not _PLAIN_COMMAND.fullmatch(command):
        return False
    words = command.split()
    if not words:
        return False
    program = words[0]
    if program in SHELL_OWN_NAMES or "=" in program or program.startswith("-"):
        return False
    if "/" in program:
        return _executable(program)
    # shutil.which's lookup, without shutil's import (with its compression modules,
    # ~2 % of an agent's start over SSH); an empty entry is the working directory.
    return any(_executable(os.path.join(entry or ".", program)) for entry in path.split(os.pathsep))


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def gate_script(command: str, path: str | None = None) -> str:
    """The gate shell's text for COMMAND; PATH as for exec_in_place."""
    run = f"exec {command}" if exec_in_place(command, path) else command
    return GATE_PREFIX + run


def shell_args(
    command: str,
    *,
    gated: bool = False,
    platform: str = sys.platform,
    environ: dict[str, str] | None = None,
    path: str | None = None,
) -> list[str] | str:
    """What to hand to Popen to run COMMAND through the platform's shell.

    Windows gets one command-line string, passed verbatim to CreateProcess: a
    list would be re-quoted by list2cmdline with backslash escapes that cmd.exe
    does not understand. `/s` makes cmd strip exactly the outer quotes and run
    the rest as typed; `/d` skips AutoRun scripts. PATH: the command's own, for
    a gate that execs in place (gate_script); None keeps the child form.
    """
    if platform == WINDOWS:
        if gated:
            raise ValueError("commands cannot be gated on Windows")
        return f'"{comspec(environ)}" /d /s /c "{command}"'
    return [POSIX_SHELL, "-c", gate_script(command, path) if gated else command]


def popen_kwargs(platform: str = sys.platform) -> dict[str, Any]:
    """Give each command its own process group, so its whole tree can be killed."""
    if platform == WINDOWS:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def spawn(
    command: str, *, gated: bool, stdin: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start COMMAND with stdout/stderr pipes the event loop can read.

    Its environment is the agent's without NETJOBS_TOKEN, plus ENV (the
    controller's NETJOBS_* variables, checked by the protocol) and the cookie
    that procs uses to find its processes. On POSIX the gate shell (and what it
    execs) has a parent-death signal; what it forks does not (fork clears it): on
    Linux procs' watcher kills those when the agent is killed.
    """
    kwargs = popen_kwargs()
    kwargs["env"] = env = CONTAINMENT.spawn_env(env or {})
    args = shell_args(command, gated=gated, path=env.get("PATH"))
    if sys.platform == WINDOWS:
        # Overlapped pipes: the proactor event loop cannot read ordinary ones.
        from asyncio import windows_utils  # Windows-only module

        proc: subprocess.Popen[bytes] = windows_utils.Popen(  # type: ignore[attr-defined]
            args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
        )
        return proc
    wrapper = death_signal_wrapper()
    if wrapper is not None:
        args = [*wrapper, *args]
    else:
        kwargs["preexec_fn"] = functools.partial(set_parent_death_signal, os.getpid())
    proc = subprocess.Popen(
        args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, **kwargs
    )
    CONTAINMENT.adopt(proc.pid, env)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            widen_pipe(pipe.fileno())
    return proc


SETPRIV_PATHS = ("/usr/bin/setpriv", "/bin/setpriv")  # util-linux, fixed paths: not $PATH


@functools.cache
def death_signal_wrapper() -> list[str] | None:
    """The command line prefix that gives a gate shell its parent-death signal, if
    this machine has one: util-linux's `setpriv --pdeathsig KILL` sets it and execs
    the shell, as our preexec_fn would. Without a preexec_fn Python spawns with vfork
    instead of fork: the Popen takes 0.4-0.6 ms instead of 2.3 ms in a 21 MB agent and
    15 ms in a 220 MB one (with the cgroup, 1.5 ms against 2.9 and 12.6 ms:
    docs/process-hygiene.md). Should the agent die before
    setpriv's prctl, the gate's read sees EOF and the shell exits unreleased.
    None (preexec_fn then): not Linux, no setpriv, or one without --pdeathsig (<2.33).
    """
    if not sys.platform.startswith("linux"):
        return None
    for path in SETPRIV_PATHS:
        wrapper = [path, "--pdeathsig", "KILL", "--"]
        try:
            probe = subprocess.run(
                [*wrapper, POSIX_SHELL, "-c", ":"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return wrapper
    return None


PIPE_SIZE = 256 * 1024  # one read of the agent's pipe reader (agent.jobs.CHUNK)


def widen_pipe(fd: int) -> None:
    """Give a command's pipe room for one large read instead of Linux's 64 KiB: a
    command that prints a lot then costs a quarter of the reads and wake-ups. Where
    it cannot be had (another OS, the user's pipe quota), the pipe stays as it is."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, PIPE_SIZE)


def taskkill_args(pid: int, environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    root = environ.get("SystemRoot") or environ.get("SYSTEMROOT") or r"C:\Windows"
    return [root.rstrip("\\") + r"\System32\taskkill.exe", "/T", "/F", "/PID", str(pid)]


async def kill_tree(pid: int, *, force: bool, platform: str = sys.platform) -> bool:
    """Kill the tree of the command whose main process is PID.

    POSIX: signal its process group (SIGTERM, or SIGKILL when forced).
    Windows: `taskkill /T /F`, which has no gentle form for console programs.
    Returns whether anything was signalled.
    """
    if platform != WINDOWS:
        sig = signal.SIGKILL if force else signal.SIGTERM
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        finally:
            CONTAINMENT.signal(pid, sig)  # what left the group too
        return True
    proc = await asyncio.create_subprocess_exec(
        *taskkill_args(pid),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        creationflags=CREATE_NO_WINDOW,
    )
    try:
        async with asyncio.timeout(TASKKILL_TIMEOUT_S):
            return await proc.wait() == 0
    except TimeoutError:
        return False
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


async def kill_leftovers(pid: int, platform: str = sys.platform) -> None:
    """After a command's main process ended, kill what it left behind.

    POSIX: its process group outlives it while members remain, so SIGKILL the
    group, and on Linux everything procs finds of it (its cgroup). Windows:
    nothing to do safely: taskkill /T cannot find the tree of a dead parent,
    and its PID may already belong to someone else.
    """
    if platform != WINDOWS:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        CONTAINMENT.forget(pid)


def coarse_wake_margin_ns(platform: str = sys.platform) -> int:
    """How early to wake from an asyncio sleep before a precise instant.

    Loop timers are ~1 ms coarse on Linux (epoll); the Windows proactor waits
    in steps of the 15.6 ms system tick. time.sleep and a spin do the rest.
    """
    return 20_000_000 if platform == WINDOWS else 3_000_000


# The wait for a release at real-time priority (SCHED_FIFO) where the process may
# (Linux; root, CAP_SYS_NICE or an RLIMIT_RTPRIO): a busy CPU runs it at the instant,
# not when its fair share comes round. Reset on fork: nothing it spawns inherits it.
_REALTIME = getattr(os, "SCHED_FIFO", None)
_RESET_ON_FORK = getattr(os, "SCHED_RESET_ON_FORK", 0)
REALTIME_PRIORITY = 10  # of 1-99: above every ordinary process, below the kernel's threads


def realtime_refused() -> str | None:
    """Why the calling thread may not take real-time priority, or None if it may
    (tried: taken and given back at once)."""
    if _REALTIME is None:
        return "no real-time scheduling on this platform"
    try:
        with realtime_priority() as taken:
            pass
    except OSError as exc:  # could not give it back: never seen, but say so
        return f"cannot leave real-time priority: {exc.strerror or exc}"
    return None if taken else "not permitted (root or CAP_SYS_NICE)"


class _Held(threading.local):
    """The real-time windows open on this thread, and the policy to restore after the
    last: several agents in one process (the benchmarks' helpers) overlap theirs."""

    depth = 0
    saved: tuple[int, Any] = (0, None)


_held = _Held()


@contextlib.contextmanager
def realtime_priority(wanted: bool = True) -> Iterator[bool]:
    """The calling thread (the agent's one) at real-time priority within the block
    where permitted; yields whether it is. Its policy and priority are restored when
    the last block open on it ends (blocks may overlap in any order)."""
    if not wanted or _REALTIME is None:
        yield False
        return
    if _held.depth == 0:
        try:
            saved = os.sched_getscheduler(0), os.sched_getparam(0)
            os.sched_setscheduler(0, _REALTIME | _RESET_ON_FORK, os.sched_param(REALTIME_PRIORITY))
        except OSError:  # not permitted (an ordinary user, a container without the cap)
            yield False
            return
        _held.saved = saved
    _held.depth += 1
    try:
        yield True
    finally:
        _held.depth -= 1
        if _held.depth == 0:
            policy, param = _held.saved
            try:
                os.sched_setscheduler(0, policy, param)
            except PermissionError:  # clearing reset-on-fork takes CAP_SYS_NICE: keep it
                os.sched_setscheduler(0, policy | _RESET_ON_FORK, param)


def kill_tree_now(pid: int, platform: str = sys.platform) -> None:
    """Forced, synchronous kill for cleanup paths that cannot await."""
    if platform != WINDOWS:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        CONTAINMENT.signal(pid, signal.SIGKILL)
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            taskkill_args(pid),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            creationflags=CREATE_NO_WINDOW,
            timeout=TASKKILL_TIMEOUT_S,
            check=False,
        )


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_WINDOWS_STATUS = {
    0xC000013A: "interrupted by Ctrl-C",
    0xC0000005: "access violation",
    0xC00000FD: "stack overflow",
    0xC0000409: "stack buffer overrun",
}


def describe_returncode(returncode: int, platform: str = sys.platform) -> str:
    """A one-line description of how a command's main process ended."""
    if platform != WINDOWS:
        if returncode < 0:
            return f"killed by signal {-returncode} ({signal_name(-returncode)})"
        text = f"exited with code {returncode}"
        if returncode == 126:
            return text + " (command not executable)"
        if returncode == 127:
            return text + " (command not found)"
        if 128 < returncode < 128 + 65:
            # What a shell reports when a child it waited for died of a signal.
            number = returncode - 128
            return text + f" (128 + {number}: a process killed by {signal_name(number)}?)"
        return text
    code = returncode & 0xFFFFFFFF
    if code >= 0x80000000:
        meaning = _WINDOWS_STATUS.get(code)
        suffix = f", {meaning}" if meaning else ""
        return f"exited with code {code} (0x{code:08X}{suffix})"
    return f"exited with code {code}"


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop, callback: Callable[[str], None], platform: str = sys.platform
) -> Callable[[], None]:
    """Call CALLBACK(the signal's name) on the loop on Ctrl-C, SIGTERM or SIGHUP (a
    closed terminal: the agent stops as cleanly as for the others, where the default
    action ended it at once, its controller told nothing); Ctrl-Break on Windows.
    A SIGHUP ignored when the agent started (`nohup netjobs-agent &`) stays ignored: its
    operator asked the agent to outlive the terminal.

    Returns a function that removes the handlers again.
    """
    if platform != WINDOWS:
        posix_signals = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            posix_signals.append(signal.SIGHUP)
        for sig in posix_signals:
            loop.add_signal_handler(sig, callback, signal_name(sig))

        def remove_posix() -> None:
            for sig in posix_signals:
                loop.remove_signal_handler(sig)

        return remove_posix

    # add_signal_handler is POSIX-only; signal.signal handlers run in the main
    # thread between bytecodes, and the proactor loop wakes up for them.
    windows_signals = {signal.SIGINT: "SIGINT", signal.SIGBREAK: "SIGBREAK"}  # type: ignore[attr-defined]

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(callback, windows_signals[signum])

    previous = {sig: signal.signal(sig, handler) for sig in windows_signals}

    def remove_windows() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return remove_windows


def enable_keepalive(sock: Any, idle_s: int = 30, interval_s: int = 10, count: int = 3) -> None:
    """Let TCP notice a controller that vanished without a FIN (~1 minute).

    Keepalive covers an idle connection; TCP_USER_TIMEOUT (Linux) the same bound when
    data is unacknowledged, which retransmission alone would keep trying for ~15 minutes.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", idle_s),
            ("TCP_KEEPINTVL", interval_s),
            ("TCP_KEEPCNT", count),
            ("TCP_USER_TIMEOUT", (idle_s + interval_s * count) * 1000),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
