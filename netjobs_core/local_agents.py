"""Start real agent processes on this machine (the demo, the benchmark, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netjobs_core.wire.address import Address, AddressError

_LISTENING = " listening on "  # the agent's `netjobs-agent VERSION listening on ADDRESS`


class AgentStartError(Exception):
    pass


def agent_command() -> list[str]:
    """How to launch an agent: the frozen sibling executable, or this Python."""
    if getattr(sys, "frozen", False):
        name = "netjobs-agent.exe" if sys.platform == "win32" else "netjobs-agent"
        return [str(Path(sys.executable).with_name(name))]
    return [sys.executable, "-m", "netjobs_agent"]


def agent_argv(
    token_file: str | os.PathLike[str] | None,
    *extra_args: str,
    port: int = 0,
    bind: str | None = "127.0.0.1",
) -> list[str]:
    """The agent's command line; no token file: its default one, no bind: all addresses."""
    argv = [*agent_command(), "--port", str(port)]
    if bind is not None:
        argv += ["--bind", bind]
    if token_file is not None:
        argv += ["--token-file", os.fspath(token_file)]
    return argv + list(extra_args)


@dataclass
class LocalAgent:
    """A started agent; its stdout goes to `stdout_path`, its stderr to `log_path`."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    log_path: Path | None = None
    host: str = ""  # its first socket's (until it listens: what it was told)
    port: int = 0
    listening: list[Address] = field(default_factory=list)  # every socket
    temporary_stdout: bool = False  # stdout_path is ours: removed by kill()

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_listening(self, timeout: float) -> None:
        """Wait for its `listening on` lines; AgentStartError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.stdout_text().splitlines()
            # The token line follows the listening lines: then all sockets are known.
            if any(line.startswith("token: ") for line in lines):
                self.listening = _listening(lines)
                self.host, self.port = self.listening[0].host, self.listening[0].port
                return
            if self.process.poll() is not None:
                why = f"exited with status {self.process.returncode}"
            elif time.monotonic() > deadline:
                why = f"did not listen within {timeout:g} s"
            else:
                time.sleep(0.01)
                continue
            printed = (self.stdout_text() + self.log_text()).strip()
            raise AgentStartError(
                f"agent on {Address(self.host, self.port)} {why}"
                + (f": {printed}" if printed else "")
            )

    def stop(self, timeout: float = 5.0, sig: int | None = None) -> int:
        """Ask the agent to stop (SIGTERM: it kills its jobs), kill it if it has not
        within TIMEOUT (on Windows right away); returns its exit status."""
        if self.process.poll() is None and sys.platform != "win32":
            self.process.send_signal(signal.SIGTERM if sig is None else sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            if sys.platform == "win32":
                # A one-file executable runs as two processes; killing the outer
                # one would leave the real agent behind (PyInstaller #4858).
                subprocess.run(
                    ["taskkill", "/PID", str(self.process.pid), "/T", "/F"],
                    capture_output=True,
                    check=False,
                )
            self.process.kill()
        self.process.wait()
        if self.temporary_stdout:
            with contextlib.suppress(OSError):
                self.stdout_path.unlink(missing_ok=True)


def _listening(lines: Sequence[str]) -> list[Address]:
    """The addresses of an agent's `listening on` lines (str(Address), as it prints them)."""
    try:
        found = [
            Address.parse(line.partition(_LISTENING)[2]) for line in lines if _LISTENING in line
        ]
    except AddressError as exc:
        raise AgentStartError(f"the agent's listening line: {exc}") from None
    if not found:
        raise AgentStartError("the agent printed its token but no listening line")
    return found


def start_agent(
    token_file: str | os.PathLike[str] | None,
    *extra_args: str,
    port: int = 0,
    bind: str | None = "127.0.0.1",
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: str | os.PathLike[str] | None = None,
    log: str | os.PathLike[str] | None = None,
    timeout: float = 15.0,
) -> LocalAgent:
    """Launch an agent and wait until it listens (and has printed its token line).

    Its stdout goes to the file `stdout` (or a temporary one), its stderr is appended
    to `log` (or dropped). `launcher` goes in front of the command, e.g. `ip netns
    exec NS` to run the agent on a test host of its own (it must exec the agent, not
    fork it). On failure the agent is killed and AgentStartError says what it printed."""
    argv = [*launcher, *agent_argv(token_file, *extra_args, port=port, bind=bind)]
    temporary = stdout is None
    if stdout is None:
        fd, stdout = tempfile.mkstemp(prefix="netjobs-agent-", suffix=".out")
        os.close(fd)
    try:
        with open(stdout, "wb") as out, open(log or os.devnull, "ab") as err:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
            )
    except OSError as exc:
        if temporary:
            os.unlink(stdout)
        raise AgentStartError(f"cannot start the agent ({' '.join(argv)}): {exc}") from None
    log_path = Path(log) if log else None
    agent = LocalAgent(process, Path(stdout), log_path, bind or "*", port, [], temporary)
    try:
        agent.wait_listening(timeout)
    except BaseException:
        agent.kill()
        raise
    return agent
