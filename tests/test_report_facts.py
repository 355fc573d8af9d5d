"""What the report says matches what happened (issue 18 point 16): how many commands a
start spread is over, what a command that never started is called, one error of many
hosts said once."""

import pytest
from agent_harness import free_port

from netjobs_core import text
from netjobs_core.config import parse_config
from netjobs_core.report import format_test
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test

pytestmark = [pytest.mark.posix, pytest.mark.timeout(60)]


async def test_a_spread_of_one_released_command_of_three_is_not_measured(agents, token):
    # Before: "start spread 0.000 ms ± 0.000 ms (scheduled start, 3 commands on 3 hosts)".
    body = 't:\n-minhosts: 1\n{0}: "true"\n{1}: "true"\n{2}: "true"\nend\n'
    names = [f"127.0.0.1:{agents[0].port}", f"127.0.0.1:{free_port()}"]
    names.append(f"127.0.0.1:{free_port()}")
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "s.cfg").tests[0], options)
    assert test.status.value == "passed"
    assert test.start_spread_ms is None  # in the JSON and the history too
    report = format_test(test).splitlines()
    assert report[1] == (
        "  start spread not measured: 1 of 3 commands released, on 1 of 3 hosts (scheduled start)"
    )
    assert test.hosts[0].start_offset_ms is not None  # its own offset is still a fact


async def test_a_spread_over_some_of_the_commands_says_how_many(agents, token):
    body = 't:\n-minhosts: 2\n{0}: "true"\n{1}: "true"\n{2}: "true"\nend\n'
    names = [f"127.0.0.1:{agents[0].port}", f"127.0.0.1:{agents[1].port}"]
    names.append(f"127.0.0.1:{free_port()}")
    options = RunOptions(token=token.token, connect_timeout=3.0)
    test = await run_test(parse_config(body.format(*names), "s.cfg").tests[0], options)
    assert test.start_spread_ms is not None
    assert text.spread_line(test) == (
        f"start spread {text.spread(test)} (scheduled start, 2 of 3 commands released, "
        "on 2 of 3 hosts)"
    )
