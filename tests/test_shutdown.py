"""An agent stopped mid-test (issue 8, point 9): SIGTERM/SIGINT tells the controller,
which treats it at once as a lost host; kill -9 leaves its commands LOST, not ERROR."""

import asyncio
import signal
import time

import pytest

from netjobs_core.config import parse_config
from netjobs_core.events import CommandOutput
from netjobs_core.report import format_test
from netjobs_core.results import CommandStatus, HostState, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from tests.agent_harness import start_agent

pytestmark = pytest.mark.timeout(60)

CONFIG = 't:\n{a0}: "echo go; sleep 30"\n{a1}: "echo go; sleep 30"\nend\n'


def plan(agents):
    text = CONFIG.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)})
    return parse_config(text, "test.cfg").tests[0]


async def run_and_stop(token, token_path, sig):
    """Run under -minhosts all; SIG the second agent once its command printed."""
    with start_agent(token_path) as a0, start_agent(token_path) as a1:
        stopped_at = []

        def observer(event):
            if (
                isinstance(event, CommandOutput)
                and event.host.address.port == a1.port
                and not stopped_at
            ):
                stopped_at.append(time.monotonic())
                a1.send_stop(sig)

        test = await run_test(
            plan([a0, a1]), RunOptions(token=token, connect_timeout=3.0), observer
        )
        a1.process.wait(20)
        return test, time.monotonic() - stopped_at[0], a1.log_text()


# SIGHUP: the terminal an agent was started in closed. Before, it ended the agent at once
# (its watcher killed the commands): the controller read "the agent closed it", the log
# said nothing, and the agent's status was -1.
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
async def test_a_stopped_agent_aborts_a_minhosts_all_test_at_once(token, sig):
    test, after, log = await run_and_stop(token[0], token[1], sig)
    assert test.status is TestStatus.ABORTED, test.reason
    assert after < 5.0  # not the 30 s of the other host's command
    assert "quorum lost" in test.reason
    stopped = test.hosts[1]
    assert stopped.state is HostState.FAILED
    assert f"shut down mid-test: the agent is stopping ({sig.name})" in stopped.error
    assert f"stopping ({sig.name})" in log and log.rstrip().endswith("stopped"), log
    assert "is gone while" not in log  # the run was being killed already: no orphan timer
    assert stopped.commands[0].status is CommandStatus.LOST
    assert stopped.commands[0].lost_at is not None
    assert test.hosts[0].commands[0].status is CommandStatus.KILLED


async def test_kill_9_of_an_agent_leaves_its_commands_lost_with_a_time(token):
    before = time.time()
    test, after, _ = await run_and_stop(token[0], token[1], signal.SIGKILL)
    assert test.status is TestStatus.ABORTED and after < 5.0
    lost = test.hosts[1].commands[0]
    assert lost.status is CommandStatus.LOST, lost
    assert lost.lost_at is not None and before <= lost.lost_at <= time.time()
    assert lost.message.startswith("lost at ")
    assert "could not run" not in test.reason


async def test_a_killed_agent_is_lost_when_its_connection_closed_not_at_its_last_word(token):
    # Before: "connection lost at" the last bytes heard, up to a heartbeat before the
    # kill; the close itself is when it was lost, and the window runs to it.
    with start_agent(token[1]) as a0, start_agent(token[1]) as a1:
        loop = asyncio.get_running_loop()
        killed: list[float] = []

        def kill():
            killed.append(time.time())
            a1.send_stop(signal.SIGKILL)

        timer: list[asyncio.TimerHandle] = []

        def observer(event):
            if isinstance(event, CommandOutput) and event.host.address.port == a1.port:
                if not timer:  # a second of silence first, no heartbeat in it
                    timer.append(loop.call_later(1.0, kill))

        options = RunOptions(token=token[0], connect_timeout=3.0, heartbeat=5.0)
        test = await run_test(plan([a0, a1]), options, observer)
    lost = test.hosts[1].commands[0]
    [gap] = test.hosts[1].interruptions
    assert lost.status is CommandStatus.LOST and lost.lost_at == gap.at
    assert lost.lost_at >= killed[0] - 0.001  # the close came after the kill
    window = test.concurrent_window
    assert window is not None and window.at_least and window.end == lost.lost_at
    assert window.seconds >= 0.9  # the second of silence before the kill counts
    # Its line names the host: the reconnect's refusal does not name it again.
    (line,) = [line for line in format_test(test, fold=True).splitlines() if "LOST" in line]
    assert line.startswith(f"  127.0.0.1:{a1.port} (1 host): LOST, lost at ")
    assert "connection refused (is the agent running" in line and line.count(str(a1.port)) == 1
