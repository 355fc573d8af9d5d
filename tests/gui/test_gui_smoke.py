"""`netjobs-gui --smoke-test CONFIG`, as the executables' smoke test runs it."""

import os
import secrets
import subprocess
import sys

import pytest
from agent_harness import start_agent  # tests/agent_harness.py

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def gui(config, token_file, tmp_path):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "NETJOBS_GUI_SETTINGS_DIR": str(tmp_path),
        "NETJOBS_TOKEN": token_file.read_text().strip(),
    }
    return subprocess.run(
        [sys.executable, "-m", "netjobs_gui", "--smoke-test", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_smoke_test_checks_the_hosts_and_exits(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(secrets.token_urlsafe(32))
    with start_agent(token_file) as agent:
        config = tmp_path / "ok.cfg"
        config.write_text(f't:\n127.0.0.1:{agent.port}: "true"\nend\n')
        good = gui(config, token_file, tmp_path)
        assert good.returncode == 0, good.stderr
        assert f"127.0.0.1:{agent.port}: ok" in good.stderr
        config.write_text(f't:\n127.0.0.1:{agent.port}: "true"\n127.0.0.1:1: "true"\nend\n')
        bad = gui(config, token_file, tmp_path)
        assert bad.returncode == 1
        assert "127.0.0.1:1: connection refused" in bad.stderr
