"""Start real agent processes on this machine (the demo, the benchmark, tests)."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")


class AgentStartError(Exception):
    pass


def agent_command() -> list[str]:
    """How to launch an agent: the frozen sibling executable, or this Python."""
    if getattr(sys, "frozen", False):
        name = "netjobs-agent.exe" if sys.platform == "win32" else "netjobs-agent"
        return [str(Path(sys.executable).with_name(name))]
    return [sys.executable, "-m", "agent"]


@dataclass
class LocalAgent:
    process: subprocess.Popen[bytes]
    host: str
    port: int

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the agent to stop (it kills its jobs), then make sure it is gone."""
        if self.process.poll() is None and sys.platform != "win32":
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

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
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_agent(
    token_file: str | os.PathLike[str],
    port: int = 0,
    bind: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    log: str | os.PathLike[str] | None = None,
    timeout: float = 15.0,
    launcher: Sequence[str] = (),
) -> LocalAgent:
    """Launch an agent and wait until it listens; its log goes to `log` (or nowhere).

    `launcher` goes in front of the command, e.g. `ip netns exec NS` to run the
    agent on a test host of its own (it must exec the agent, not fork it)."""
    argv = [
        *launcher,
        *agent_command(),
        "--bind",
        bind,
        "--port",
        str(port),
        "--token-file",
        os.fspath(token_file),
        *extra_args,
    ]
    stderr = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
    except OSError as exc:
        raise AgentStartError(f"cannot start the agent ({' '.join(argv)}): {exc}") from None
    finally:
        if log is not None:
            stderr.close()
    assert process.stdout is not None
    agent = LocalAgent(process, bind, port)
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            match = _LISTENING.search(seen.decode("utf-8", "replace"))
            if match:
                agent.host = match.group(1).strip("[]")
                agent.port = int(match.group(2))
                return agent
            remaining = deadline - time.monotonic()
            chunk = (
                os.read(process.stdout.fileno(), 4096)
                if remaining > 0 and selector.select(remaining)
                else None
            )
            if not chunk:
                agent.kill()
                why = "exited" if chunk == b"" else f"did not listen within {timeout:g} s"
                detail = seen.decode("utf-8", "replace").strip()
                raise AgentStartError(
                    f"agent on {bind}:{port} {why}"
                    + (f": {detail}" if detail else "")
                    + (f" (its log: {log})" if log else "")
                )
            seen += chunk
