"""The token given in NETJOBS_TOKEN is gone from the agent's environment, its initial
block included (issue 18, point 12): /proc/<agent>/environ does not show it, and a
command the agent runs finds it neither in its own environment nor in any ancestor's."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from agent_harness import REPO, AgentClient, commands, start_agent

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

# Every ancestor of the command: its pid, then its environment, one variable a line.
WALK = (
    'env; p=$$; while [ "$p" -gt 1 ]; do echo "pid:$p"; '
    "tr '\\000' '\\n' < /proc/$p/environ; p=$(cut -d' ' -f4 /proc/$p/stat); done"
)


def _env(tmp_path: Path, secret: str) -> dict[str, str]:
    home = tmp_path / "home"  # no default token file: the variable is the only source
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETJOBS_")}
    return env | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "NETJOBS_TOKEN": secret,
    }


async def test_the_env_token_is_not_in_proc_environ_nor_reachable_by_a_command(tmp_path):
    secret = secrets.token_urlsafe(32)
    with start_agent(None, env=_env(tmp_path, secret)) as agent:
        assert "token: environment variable NETJOBS_TOKEN" in agent.stdout_text()
        environ = await asyncio.to_thread(Path(f"/proc/{agent.pid}/environ").read_bytes)
        assert secret.encode() not in environ
        assert b"PYTHONPATH=" in environ  # the block is read, the rest of it kept
        assert not any(
            v.startswith(b"NETJOBS_TOKEN=") and v != b"NETJOBS_TOKEN=" for v in environ.split(b"\0")
        )
        # The agent still authenticates with it, and what it runs cannot find it.
        async with await AgentClient.connect(agent.host, agent.port, secret.encode()) as client:
            outcome = await client.run(commands(WALK))
        assert outcome.exits[1].status == "ok", outcome.exits
        out = outcome.stdout(1)
        assert f"pid:{agent.pid}\n".encode() in out  # the walk went through the agent
        assert b"NETJOBS_JOB=" in out and secret.encode() not in out
        assert "warning" not in agent.log_text()


def test_forget_overwrites_the_block_and_unsets_the_variable(tmp_path):
    secret = secrets.token_urlsafe(32)
    code = (
        "import os, subprocess\n"
        "from agent import envblock\n"
        "assert envblock.forget('NETJOBS_TOKEN') is None\n"
        "assert 'NETJOBS_TOKEN' not in os.environ and os.getenv('NETJOBS_TOKEN') is None\n"
        "print(open('/proc/self/environ', 'rb').read().hex())\n"
        "print(subprocess.run(['sh', '-c', 'echo ${NETJOBS_TOKEN-unset}'],"
        " capture_output=True, text=True).stdout.strip())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"NETJOBS_TOKEN": secret, "PYTHONPATH": str(REPO), "OTHER": "kept"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    block, unset = result.stdout.split()
    assert secret.encode() not in bytes.fromhex(block) and b"OTHER=kept" in bytes.fromhex(block)
    assert unset == "unset"


def test_a_parent_that_keeps_the_token_is_named(tmp_path):
    """A one-file executable's launcher keeps the environment it was given: a warning."""
    secret = secrets.token_urlsafe(32)
    code = "from agent import envblock; print(envblock.forget('NETJOBS_TOKEN'))"
    launcher = f'{sys.executable} -c "{code}"; true'  # sh stays the parent, token and all
    result = subprocess.run(
        ["/bin/sh", "-c", launcher],
        env={"NETJOBS_TOKEN": secret, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "still readable in the environment of its parent process" in result.stdout
