"""Shared fixtures: one token, one factory of real agent processes (tests/agent_harness.py);
the session's check that its agents left no cgroup behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from anywhere, without installing the project
    sys.path.insert(0, str(REPO))

from agent_harness import AgentProcess, start_agent  # noqa: E402
from schema_check import RESULTS_SCHEMA  # noqa: E402

from netjobs_agent import procs  # noqa: E402
from netjobs_core import results_json  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402


# -- every results document the suite makes follows the published schema --------------
@pytest.fixture(autouse=True)
def results_follow_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document written in-process (results.json, --json, the GUI's Save) is
    checked against `netjobs schema` as it is made; tests that run `netjobs` as a
    process check theirs themselves (RESULTS_SCHEMA)."""
    make = results_json.run_to_json

    def checked(*args: Any, **kwargs: Any) -> dict[str, Any]:
        document = make(*args, **kwargs)
        RESULTS_SCHEMA.validate(document)
        return document

    monkeypatch.setattr(results_json, "run_to_json", checked)


# -- cgroups left behind ------------------------------------------------------------
# Where the agent may make cgroups (root here), the session runs in a cgroup of its
# own, `njtests-<pid>` beside its own: every agent it starts (a descendant) makes its
# netjobs-* cgroups in there, so what is left at the end is this session's, whatever
# other test sessions on the machine do. An agent removes its cgroups at its end, and
# its watcher does when it is killed: any left is a failure of the session.
SESSION_CGROUP = pytest.StashKey[tuple[Path, Path]]()
LEFT_WAIT_S = 5.0  # for the watchers of the last killed agents


def _remove_tree(cgroup: Path) -> None:
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")
    for child in [path for path in cgroup.iterdir() if path.is_dir()]:
        _remove_tree(child)
    deadline = time.monotonic() + 1
    while cgroup.exists() and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        time.sleep(0.01)


def pytest_sessionstart(session: pytest.Session) -> None:
    found = procs._cgroup2_dir() if sys.platform.startswith("linux") else None
    if found is None or not os.access(found, os.W_OK):
        return
    home = Path(found)
    for stale in home.glob("njtests-*"):  # of killed sessions, when empty
        owner = stale.name.removeprefix("njtests-")
        if owner.isdigit() and not procs._alive(int(owner)):
            for cgroup in [*stale.glob("netjobs-*/cmd-*"), *stale.glob("netjobs-*"), stale]:
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
    mine = home / f"njtests-{os.getpid()}"
    try:
        mine.mkdir(exist_ok=True)
        (mine / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        with contextlib.suppress(OSError):
            mine.rmdir()
        return
    session.config.stash[SESSION_CGROUP] = (home, mine)


def pytest_sessionfinish(session: pytest.Session) -> None:
    found = session.config.stash.get(SESSION_CGROUP, None)
    if found is None:
        return
    home, mine = found
    deadline = time.monotonic() + LEFT_WAIT_S
    while (left := sorted(mine.glob("netjobs-*"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    for cgroup in left:
        _remove_tree(cgroup)
    with contextlib.suppress(OSError):
        (home / "cgroup.procs").write_text(str(os.getpid()))
        mine.rmdir()  # busy while processes the session started live on
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        names = ", ".join(path.name for path in left[:5]) + (", ..." if len(left) > 5 else "")
        message = f"the session's agents left {len(left)} cgroup(s) behind: {names}"
        if reporter is not None:
            reporter.line("")
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message, file=sys.stderr)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
