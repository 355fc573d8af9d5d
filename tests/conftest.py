"""Shared fixtures. Agent processes come from tests/agent_harness.py."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from anywhere, without installing the project
    sys.path.insert(0, str(REPO))

from agent_harness import AgentProcess, start_agent  # noqa: E402

from netjobs_core.wire.tokens import Token  # noqa: E402


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """A fresh token file (owner-only), as `netjobs-agent` would generate it."""
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Token, Path]:
    """One token for a module's agents and controller: (Token, its file)."""
    secret = secrets.token_urlsafe(32)
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(secret)
    return Token(secret.encode(), "test"), path


@pytest.fixture
def agent(token_file: Path) -> Iterator[AgentProcess]:
    """A running agent on 127.0.0.1, random port, using `token_file`."""
    with start_agent(token_file) as process:
        yield process


# These run real commands through /bin/sh and look at /proc; on Windows the agent
# and the controller are exercised by build_scripts/smoke.py on the executables.
POSIX_ONLY = {
    "test_agent.py",
    "test_runner.py",
    "test_cli.py",
    "test_gui_end_to_end.py",
    "test_gui_smoke.py",
    "test_gui_load.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform != "win32":
        return
    skip = pytest.mark.skip(reason="needs a POSIX shell; Windows is covered by smoke.py")
    for item in items:
        if item.path.name in POSIX_ONLY:
            item.add_marker(skip)
