"""Shared fixtures: one token, one factory of real agent processes (tests/agent_harness.py)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from anywhere, without installing the project
    sys.path.insert(0, str(REPO))

from agent_harness import AgentProcess, start_agent  # noqa: E402

from netjobs_core.wire.tokens import Token  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run folders and the run history of every test (and of the programs tests start)
    go to a fresh data directory, never the user's own."""
    path = tmp_path_factory.mktemp("xdg-data")
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


class SharedToken(NamedTuple):
    """The token of a module's agents and controller, and the file that holds it."""

    token: Token
    path: Path


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SharedToken:
    secret = secrets.token_urlsafe(32)
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return SharedToken(Token(secret.encode(), "test"), path)


@pytest.fixture(scope="module")
def token_file(token: SharedToken) -> Path:
    return token.path


AgentFactory = Callable[..., list[AgentProcess]]


@pytest.fixture(scope="module")
def start_agents(token: SharedToken) -> Iterator[AgentFactory]:
    """`start_agents(n, **options)`: N more agents on the module's token, all killed at
    the module's end (options as tests/agent_harness.py start_agent takes them)."""
    started: list[AgentProcess] = []

    def start(count: int = 1, **options: Any) -> list[AgentProcess]:
        options.setdefault("token_file", token.path)
        new = [start_agent(**options) for _ in range(count)]
        started.extend(new)
        return new

    yield start
    for agent in started:
        agent.close()


@pytest.fixture(scope="module")
def agents(start_agents: AgentFactory) -> list[AgentProcess]:
    """Three agents on 127.0.0.1 shared by a module's tests."""
    return start_agents(3)


@pytest.fixture
def agent(token_file: Path) -> Iterator[AgentProcess]:
    """A fresh agent of one test's own, on 127.0.0.1 (random port)."""
    with start_agent(token_file) as process:
        yield process


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform != "win32":
        return
    skip = pytest.mark.skip(reason="needs a POSIX shell; Windows is covered by smoke.py")
    for item in items:
        if item.get_closest_marker("posix") is not None:
            item.add_marker(skip)
