"""agent.oskit: the Windows forms as pure functions, the POSIX forms for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import pid_alive, wait_gone

from netjobs_agent import oskit

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX behaviour")
WIN_ENV = {"ComSpec": r"C:\Windows\System32\cmd.exe", "SystemRoot": r"C:\Windows"}


# -- pure functions ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("platform", "expected"), [("linux", True), ("darwin", True), ("win32", False)]
)
def test_gating_supported(platform, expected):
    assert oskit.gating_supported(platform) is expected


def test_posix_shell_args():
    assert oskit.shell_args("echo 'a b'", platform="linux") == ["/bin/sh", "-c", "echo 'a b'"]
    gated = oskit.shell_args("echo hi", gated=True, platform="linux")
    assert gated == ["/bin/sh", "-c", oskit.GATE_PREFIX + "echo hi"]


@pytest.mark.parametrize(
    "command",
    [
        "echo hi",
        'fio --filename="D:\\My Data\\test file.dat" --rw=read',
        "echo héllo wörld ✓ 日本 & dir",
        'copy "C:\\Program Files\\x.txt" "C:\\Temp\\ü y.txt"',
        "",
    ],
)
def test_windows_command_line_is_verbatim(command):
    line = oskit.shell_args(command, platform="win32", environ=WIN_ENV)
    # One string handed to CreateProcess as is: cmd /s strips exactly the outer quotes.
    assert isinstance(line, str)
    assert line == f'"C:\\Windows\\System32\\cmd.exe" /d /s /c "{command}"'


def test_windows_comspec_with_spaces_is_quoted():
    env = {"ComSpec": r"C:\Program Files\Shells\cmd.exe"}
    line = oskit.shell_args("echo x", platform="win32", environ=env)
    assert line.startswith('"C:\\Program Files\\Shells\\cmd.exe" /d /s /c ')


def test_windows_comspec_fallbacks():
    assert oskit.comspec({"SystemRoot": "D:\\Win\\"}) == r"D:\Win\System32\cmd.exe"
    assert oskit.comspec({}) == r"C:\Windows\System32\cmd.exe"
    assert oskit.comspec({"COMSPEC": r"E:\cmd.exe"}) == r"E:\cmd.exe"


def test_windows_cannot_gate():
    with pytest.raises(ValueError):
        oskit.shell_args("echo", gated=True, platform="win32")


def test_popen_kwargs():
    assert oskit.popen_kwargs("linux") == {"start_new_session": True}
    assert oskit.popen_kwargs("win32") == {"creationflags": 0x200}  # CREATE_NEW_PROCESS_GROUP


def test_taskkill_args():
    assert oskit.taskkill_args(4242, {"SystemRoot": r"C:\Windows"}) == [
        r"C:\Windows\System32\taskkill.exe",
        "/T",
        "/F",
        "/PID",
        "4242",
    ]


@pytest.mark.parametrize(
    ("returncode", "platform", "expected"),
    [
        (0, "linux", "exited with code 0"),
        (3, "linux", "exited with code 3"),
        (-9, "linux", "killed by signal 9 (SIGKILL)"),
        (-15, "linux", "killed by signal 15 (SIGTERM)"),
        (127, "linux", "exited with code 127 (command not found)"),
        (126, "linux", "exited with code 126 (command not executable)"),
        (139, "linux", "exited with code 139 (128 + 11: a process killed by SIGSEGV?)"),
        (255, "linux", "exited with code 255"),
        (0, "win32", "exited with code 0"),
        (1, "win32", "exited with code 1"),
        (0xC000013A, "win32", "exited with code 3221225786 (0xC000013A, interrupted by Ctrl-C)"),
        (-1073741819, "win32", "exited with code 3221225477 (0xC0000005, access violation)"),
        (0xE0434352, "win32", "exited with code 3762504530 (0xE0434352)"),
    ],
)
def test_describe_returncode(returncode, platform, expected):
    assert oskit.describe_returncode(returncode, platform) == expected


def test_signal_name_unknown():
    assert oskit.signal_name(int(signal.SIGINT)) == "SIGINT"
    assert oskit.signal_name(250) == "signal 250"


def test_windows_stop_handlers_use_signal_signal(monkeypatch):
    installed: dict[int, object] = {}

    def fake_signal(sig, handler):
        previous = installed.get(sig, signal.SIG_DFL)
        installed[sig] = handler
        return previous

    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    monkeypatch.setattr(signal, "signal", fake_signal)
    calls = []

    class Loop:
        def call_soon_threadsafe(self, *args):
            calls.append(args)

    remove = oskit.install_stop_handlers(Loop(), lambda name: None, platform="win32")  # type: ignore[arg-type]
    assert set(installed) == {signal.SIGINT, 21}
    installed[21](21, None)  # Ctrl-Break arrives
    installed[signal.SIGINT](signal.SIGINT, None)
    assert [args[1:] for args in calls] == [("SIGBREAK",), ("SIGINT",)]
    remove()
    assert installed == {signal.SIGINT: signal.SIG_DFL, 21: signal.SIG_DFL}


# -- POSIX, for real --------------------------------------------------------------
@posix_only
async def test_posix_stop_handlers():
    loop = asyncio.get_running_loop()
    called = asyncio.Event()
    names: list[str] = []

    def stop(name: str) -> None:
        names.append(name)
        called.set()

    remove = oskit.install_stop_handlers(loop, stop)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            called.clear()
            os.kill(os.getpid(), sig)
            async with asyncio.timeout(5):
                await called.wait()
    finally:
        remove()
    assert names == ["SIGTERM", "SIGINT", "SIGHUP"]


def gated(command: str) -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    try:
        proc = oskit.spawn(command, gated=True, stdin=read_fd)
    finally:
        os.close(read_fd)
    return proc, write_fd


@posix_only
def test_gate_holds_until_released(tmp_path: Path):
    marker = tmp_path / "ran"
    proc, gate = gated(f"touch '{marker}'; echo \"[$#][$0][$1]\"; readlink /proc/self/fd/0")
    try:
        time.sleep(0.3)
        assert proc.poll() is None and not marker.exists()
        os.write(gate, oskit.gate_release(time.time_ns()))
        out, err = proc.communicate(timeout=10)
    finally:
        os.close(gate)
    assert proc.returncode == 0, err
    assert marker.exists()
    lines = out.decode().splitlines()
    assert lines[0] == "[0][/bin/sh][]"  # what `sh -c COMMAND` shows: nothing of the gate
    if sys.platform.startswith("linux"):
        assert lines[1] == "/dev/null"


@posix_only
def test_gate_eof_means_never_run(tmp_path: Path):
    marker = tmp_path / "ran"
    proc, gate = gated(f"touch '{marker}'")
    os.close(gate)
    assert proc.wait(10) == oskit.GATE_EOF_EXIT
    proc.communicate()
    assert not marker.exists()


@posix_only
@pytest.mark.parametrize(
    ("command", "code", "stdout"),
    [
        ("exit 7", 7, b""),
        ("echo 'it''s'; echo \"$HOME\" | wc -l", 0, b"its\n1\n"),
        ("# a comment\necho after", 0, b"after\n"),
        ("cat <<EOF\nline 1\nline 2\nEOF", 0, b"line 1\nline 2\n"),
        ("false && echo no || echo yes", 0, b"yes\n"),
        ("printf '\\377\\000x'", 0, b"\xff\x00x"),
        ("if true; then", 2, b""),  # a syntax error is reported as sh -c would
        # Simple commands, exec'd in place of the gate shell: same result.
        ("/usr/bin/printf x", 0, b"x"),
        ("ls -d /", 0, b"/\n"),
        ("no-such-command-netjobs", 127, b""),  # not found now: the child form, its message
    ],
)
def test_gate_runs_command_like_sh_c(command, code, stdout):
    reference = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=10)
    proc, gate = gated(command)
    try:
        with contextlib.suppress(BrokenPipeError):
            os.write(gate, oskit.gate_release(time.time_ns()))
        out, err = proc.communicate(timeout=10)
    finally:
        os.close(gate)
    assert (proc.returncode, out) == (code, stdout)
    assert (proc.returncode, out, err) == (reference.returncode, reference.stdout, reference.stderr)


@pytest.mark.parametrize(
    ("command", "in_place"),
    [
        ("date +%s%N", True),
        ("no-such-netjobs-tool --name=a -x,y:z@1", False),  # not on PATH: the child form
        ("ls -l --color=never /tmp %s+x", True),
        ("/bin/ls", True),
        ("echo hi", False),  # builtins stay the shell's
        ("test -e /", False),
        ("exec ls", False),
        ("FOO=1 ls", False),
        ("ls; ls", False),
        ("ls | cat", False),
        ("ls *", False),
        ("ls ~", False),
        ("ls $HOME", False),
        ("ls 'a b'", False),
        ("ls >out", False),
        ("ls &", False),
        ("ls\nls", False),
        ("ls # comment", False),
        ("{ ls; }", False),
        ("-ls", False),
        ("", False),
    ],
)
def test_exec_in_place_only_for_provably_simple_commands(command, in_place):
    assert oskit.exec_in_place(command, "/usr/bin:/bin") is in_place
    assert oskit.exec_in_place(command, None) is False  # no PATH known: never
    # A bare name is looked up on the command's PATH; a path is taken as it is.
    absolute = command.startswith("/")
    assert oskit.exec_in_place(command, "/nonexistent") is (in_place and absolute)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_simple_command_runs_in_place_of_the_gate():
    proc, gate = gated("sleep 30")
    try:
        os.write(gate, oskit.gate_release(time.time_ns()))
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        # No shell left between: a signal to the gate's pid is the command's death.
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
        proc.communicate()
    finally:
        os.close(gate)
        oskit.kill_tree_now(proc.pid)


def spawn_group(command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["/bin/sh", "-c", command], stdout=subprocess.PIPE, **oskit.popen_kwargs()
    )


@posix_only
async def test_kill_tree_kills_the_whole_group():
    proc = spawn_group("sleep 30 & echo $!; sleep 30")
    try:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert pid_alive(grandchild)
        assert await oskit.kill_tree(proc.pid, force=False)
        assert proc.wait(10) == -signal.SIGTERM
        assert await wait_gone([grandchild], 5) == []
    finally:
        oskit.kill_tree_now(proc.pid)
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


@posix_only
async def test_kill_tree_of_a_finished_group_signals_nothing():
    proc = spawn_group("true")
    assert proc.communicate(timeout=10)[0] == b""
    assert not await oskit.kill_tree(proc.pid, force=True)


@posix_only
async def test_kill_leftovers_kills_what_the_main_process_left():
    proc = spawn_group("sleep 30 >/dev/null & echo $!")
    leftover = int(proc.communicate(timeout=10)[0])
    assert pid_alive(leftover)
    await oskit.kill_leftovers(proc.pid)
    assert await wait_gone([leftover], 5) == []
    await oskit.kill_leftovers(proc.pid)  # nothing left: no error


async def test_kill_leftovers_does_nothing_on_windows(monkeypatch):
    def forbidden(*args):
        raise AssertionError("must not signal anything")

    monkeypatch.setattr(os, "killpg", forbidden, raising=False)
    await oskit.kill_leftovers(1, platform="win32")


def test_coarse_wake_margin_covers_the_loop_timer_granularity():
    assert oskit.coarse_wake_margin_ns("linux") == 3_000_000
    assert oskit.coarse_wake_margin_ns("win32") > 15_600_000  # the Windows tick


@posix_only
def test_kill_tree_now_forces():
    proc = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; sleep 30"], **oskit.popen_kwargs())
    time.sleep(0.1)
    oskit.kill_tree_now(proc.pid)
    assert proc.wait(10) == -signal.SIGKILL
    oskit.kill_tree_now(proc.pid)  # gone: no error


def test_enable_keepalive():
    with socket.socket() as sock:
        oskit.enable_keepalive(sock, idle_s=31, interval_s=11, count=4)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 31


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="no real-time scheduling here")
def test_realtime_priority_is_taken_for_the_block_and_never_inherited():
    if oskit.realtime_refused() is not None:
        pytest.skip(f"real-time priority not permitted here: {oskit.realtime_refused()}")
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    with oskit.realtime_priority() as taken:
        assert taken
        assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
        assert os.sched_getparam(0).sched_priority == oskit.REALTIME_PRIORITY
        # A process spawned meanwhile (the release spawns none, but whatever did):
        # ordinary, as the commands must be.
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(child.stdout) == os.SCHED_OTHER
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    with oskit.realtime_priority(wanted=False) as taken:
        assert not taken and os.sched_getscheduler(0) == before[0]


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="no real-time scheduling here")
def test_overlapping_realtime_windows_restore_once_the_last_ends():
    """Several agents in one process (the benchmarks' helpers) open and close their
    windows in any order: ordinary again only after the last, never left real-time."""
    if oskit.realtime_refused() is not None:
        pytest.skip(f"real-time priority not permitted here: {oskit.realtime_refused()}")
    before = os.sched_getscheduler(0)
    first, second = oskit.realtime_priority(), oskit.realtime_priority()
    assert first.__enter__() and second.__enter__()
    first.__exit__(None, None, None)  # the first one opened ends first
    assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
    second.__exit__(None, None, None)
    assert os.sched_getscheduler(0) == before


@pytest.mark.parametrize(
    ("rtprio", "refused", "inside"),
    [(0, "not permitted (root or CAP_SYS_NICE)", "False"), (10, "None", "True")],
)
def test_realtime_priority_as_an_ordinary_user(rtprio, refused, inside):
    """An ordinary user (a child that gave up root) is refused without RLIMIT_RTPRIO
    and says why; with it (systemd's LimitRTPRIO=10) it takes real-time priority and
    gives it back, though it may not clear reset-on-fork. Either way it ends ordinary."""
    if os.geteuid() != 0 or not hasattr(os, "SCHED_FIFO"):
        pytest.skip("needs root to become an ordinary user")
    code = (
        "import os, resource, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from netjobs_agent import oskit\n"  # first: the user below may not read the stdlib
        "limit = int(sys.argv[2])\n"
        "try:\n"
        "    resource.setrlimit(resource.RLIMIT_RTPRIO, (limit, limit))\n"
        "except (ValueError, OSError) as exc:\n"  # a container's root without the cap
        "    sys.exit(f'cannot set RLIMIT_RTPRIO to {limit}: {exc}')\n"
        "os.setgid(65534)\n"
        "os.setuid(65534)\n"
        "print(oskit.realtime_refused())\n"
        "with oskit.realtime_priority() as taken:\n"
        "    print(taken, os.sched_getscheduler(0))\n"
        "print(os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK)\n"
    )
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code, repo, str(rtprio)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "cannot set RLIMIT_RTPRIO" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    refused_line, inside_line, after = done.stdout.splitlines()
    assert refused_line == refused
    assert inside_line.split()[0] == inside
    if inside == "True":
        assert int(inside_line.split()[1]) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
    assert int(after) == os.SCHED_OTHER
