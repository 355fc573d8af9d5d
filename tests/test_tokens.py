"""The token stays secret: not in the commands' environment, not in a file others may read."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from agent_harness import REPO, AgentClient, agent_command, agent_env, commands, start_agent

from netjobs_core.wire import tokens

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.mark.skipif(sys.platform == "win32", reason="runs /bin/sh commands")
async def test_a_command_does_not_see_the_agents_token(tmp_path):
    secret = secrets.token_urlsafe(32)
    env = agent_env() | {tokens.ENV_VAR: secret, "XDG_CONFIG_HOME": str(tmp_path)}
    with start_agent(None, env=env) as agent:
        async with await AgentClient.connect(agent.host, agent.port, secret.encode()) as client:
            outcome = await client.run(commands("env"))
    assert outcome.exits[1].status == "ok"
    assert b"PATH=" in outcome.stdout(1)
    assert secret.encode() not in outcome.stdout(1)
    assert tokens.ENV_VAR.encode() not in outcome.stdout(1)


@posix_only
def test_a_token_file_others_may_read_is_used_with_a_warning(tmp_path):
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o644)
    token = tokens.load_token(path)
    assert token.warning is not None
    assert "accessible by group or others" in token.warning and "0644" in token.warning
    path.chmod(0o600)
    assert tokens.load_token(path).warning is None


@posix_only
def test_strict_permissions_refuse_it(tmp_path):
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o640)
    with pytest.raises(tokens.TokenError, match="--strict-permissions"):
        tokens.load_token(path, strict=True)


def run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=agent_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@posix_only
def test_the_agent_warns_and_refuses_with_strict_permissions(tmp_path):
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o644)
    with start_agent(path) as agent:
        assert "warning: token file" in agent.log_text()
    refused = run([*agent_command(path, "--strict-permissions")])
    assert refused.returncode == 2
    assert "accessible by group or others" in refused.stderr
    assert "refused" in refused.stderr


@posix_only
def test_the_controller_warns_and_refuses_with_strict_permissions(tmp_path):
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o644)
    config = tmp_path / "config.txt"
    config.write_text('t:\n127.0.0.1:1: "true"\nend\n')  # a closed port: fails fast
    netjobs = [sys.executable, "-m", "netjobs_core.cli", "check", str(config)]
    warned = run([*netjobs, "--token-file", str(path), "--connect-timeout", "1"])
    assert "netjobs: warning: token file" in warned.stderr
    refused = run([*netjobs, "--token-file", str(path), "--strict-permissions"])
    assert refused.returncode == 2
    assert "refused: --strict-permissions" in refused.stderr
