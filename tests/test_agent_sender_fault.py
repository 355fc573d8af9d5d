"""An agent whose sender fails (a bug of ours, injected here into a real agent process)
tells its controller and ends the run: the controller never waits on results that
cannot come (before: it waited as long as the commands could run, without end for a
command with no timeout)."""

from __future__ import annotations

import textwrap

import pytest

from netjobs_core.config import parse_config
from netjobs_core.results import CommandStatus, HostState
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test
from tests.agent_harness import start_agent

pytestmark = pytest.mark.timeout(60)

# Loaded by the agent's Python at its start (site imports `sitecustomize` from its path):
# sending a collected file raises, as an unexpected bug in the sender would.
FAULT = textwrap.dedent(
    """
    import netjobs_agent.collect as collect

    async def send_files(*args, **kwargs):
        raise RuntimeError("injected sender fault")

    collect.send_files = send_files
    """
)


async def test_a_sender_that_fails_is_reported_and_the_run_ended(token, tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAULT)
    wanted = tmp_path / "f.bin"
    with start_agent(token[1], env={"PYTHONPATH": str(inject)}) as agent:
        plan = parse_config(
            f't:\n-collect: {wanted}\n127.0.0.1:{agent.port}: "echo x > {wanted}"\n'
            f'127.0.0.1:{agent.port}: "sleep 600"\nend\n',
            "t.cfg",
        )
        test = await run_test(plan.tests[0], RunOptions(token=token[0], connect_timeout=5))
        log = agent.log_text()
    host = test.hosts[0]
    assert host.state is HostState.FAILED
    assert "internal agent error sending the test's results" in host.error
    assert "injected sender fault" in host.error
    # The command still running when the sender failed is ended, not left for 600 s.
    assert test.hosts[0].commands[1].status in (CommandStatus.LOST, CommandStatus.KILLED)
    assert "internal error sending test 't'" in log
