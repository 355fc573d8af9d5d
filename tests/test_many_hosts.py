"""What many hosts need of the controller: its fd limit, and a first phase that
holds with a slow host among fast ones (on real agents).

Every clock is measured before any agent prepares (an agent spawning, and its
`prepared`, would disturb the pings of hosts still measured), and a prepared host
gets the heartbeat it expects while slower hosts still prepare.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest
from script_modules import BENCH, load_script

from netjobs_core.config import parse_config
from netjobs_core.events import Event, HostChanged
from netjobs_core.results import HostResult, HostState, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import run_test

pytestmark = [pytest.mark.timeout(60), pytest.mark.posix]

RAISED = """
import resource, sys
from netjobs_core.cli import main
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
main(["-s", sys.argv[1]])
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard, file=sys.stderr)
"""


def test_netjobs_raises_its_fd_limit_for_a_socket_per_host(tmp_path):
    config = tmp_path / "many.cfg"
    config.write_text(
        "t:\n" + "".join(f'10.0.{i // 250}.{i % 250 + 1}: "true"\n' for i in range(1000)) + "end\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", RAISED, str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    soft, hard = map(int, done.stderr.split()[-2:])
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here is {hard}")
    assert soft > 1000 + 24


delay_proxy = load_script(BENCH / "delay_proxy.py", "netjobs_bench_delay_proxy")


async def test_hosts_prepare_as_their_clocks_are_measured(agents, token):
    # A 40 ms path is measured slowly (pings of 80 ms round trips) while two loopback
    # hosts are done at once and prepare meanwhile: with kernel arrival stamps their
    # spawning cannot bias the slow host's pings (probe.ClockPolicy).
    async with delay_proxy.DelayProxy("127.0.0.1", agents[2].port, delay_ms=40) as slow:
        plan = parse_config(
            f't:\n127.0.0.1:{agents[0].port}: "true"\n127.0.0.1:{agents[1].port}: "true"\n'
            f'127.0.0.1:{slow.port}: "true"\nend\n',
            "test.cfg",
        )
        slow_measured_at_first_prepare: list[bool] = []

        def observe(event: Event) -> None:
            if isinstance(event, HostChanged) and event.host.state is HostState.PREPARING:
                if not slow_measured_at_first_prepare:
                    slow_host = event.test.hosts[2]
                    slow_measured_at_first_prepare.append(slow_host.clock_offset_ms is not None)

        test = await run_test(
            plan.tests[0], RunOptions(token=token.token, connect_timeout=5.0), observe
        )
    assert test.status is TestStatus.PASSED, test.reason
    assert slow_measured_at_first_prepare == [False]
    assert test.hosts[2].rtt_ms is not None and test.hosts[2].rtt_ms >= 80
    for host in test.hosts:  # one machine's clock: the truth is 0, within each bound
        assert host.clock_offset_ms is not None and host.clock_uncertainty_ms is not None
        assert abs(host.clock_offset_ms) <= host.clock_uncertainty_ms


async def test_a_prepared_host_keeps_its_heartbeat_while_a_slow_host_prepares(agents, token):
    # The agents expect a heartbeat every 0.05 s (lost after 5 missed). One host
    # spawns 400 commands (~1.5 ms each), which takes longer than that, while the
    # other waits prepared: without pings meanwhile it would call us silent and drop
    # the connection (the run would survive only through a resume).
    lines = "".join(f'127.0.0.1:{agents[1].port}: "true"\n' for _ in range(400))
    plan = parse_config(f't:\n127.0.0.1:{agents[0].port}: "true"\n{lines}end\n', "test.cfg")
    watch = Phases()
    options = RunOptions(token=token.token, connect_timeout=5.0, heartbeat=0.05)
    test = await run_test(plan.tests[0], options, watch)
    assert test.status is TestStatus.PASSED, test.reason
    fast, busy = test.hosts
    assert watch.ready_for(busy) - watch.ready_for(fast) > 0.3  # the case in point
    assert fast.interruptions == []
    # The busy agent reaps its 400 commands after the release: on a loaded machine it
    # may answer later than 0.25 s then, which is its own silence, not the case here.
    assert all(i.resumed for i in busy.interruptions), busy.interruptions


class Phases:
    """When each host became READY (monotonic seconds), from the events."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, HostChanged) and event.host.state is HostState.READY:
            self.ready[event.host.target] = time.monotonic()

    def ready_for(self, host: HostResult) -> float:
        return self.ready[host.target]
