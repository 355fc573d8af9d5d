"""Two results of a test side by side (netjobs_core.compare) and a plan of only the
failed hosts (netjobs_core.rerun): issue 23's feature list."""

from __future__ import annotations

from netjobs_core import text
from netjobs_core.compare import compare
from netjobs_core.config import parse_config
from netjobs_core.rerun import failed_hosts, failed_hosts_plan
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.wire.address import Address

CONFIG = """\
fio:
-minhosts: 3
node[1-4]: "fio job"
node2: "second"
end

quiet:
node1: "true"
end
"""


def ran(label: str, outcomes: dict[str, CommandStatus], spread: float) -> TestResult:
    test = TestResult(label, None, status=TestStatus.FAILED, start_spread_ms=spread)
    for target, status in outcomes.items():
        host = HostResult(Address(target), state=HostState.DONE, start_offset_ms=0.5)
        code = {CommandStatus.OK: 0, CommandStatus.FAILED: 1}.get(status)
        host.commands.append(CommandResult("fio job", status=status, exit_code=code))
        test.hosts.append(host)
    return test


def test_two_results_side_by_side() -> None:
    ok, bad = CommandStatus.OK, CommandStatus.FAILED
    a = ran("fio", {"node1": ok, "node2": bad, "node3": ok}, 0.25)
    b = ran("fio", {"node1": ok, "node2": ok, "node4": ok}, 1.5)
    b.hosts[0].start_offset_ms = 1.25
    found = compare(a, b)
    assert [p.target for p in found.hosts] == ["node1", "node2", "node3", "node4"]
    assert [p.target for p in found.differing] == ["node2", "node3", "node4"]
    assert found.hosts[0].offset_change_ms == 0.75
    assert text.comparison_lines(found, "run A", "run B") == [
        "test 'fio': failed in run A, failed in run B",
        "  start spread 0.250 ms in run A, 1.500 ms in run B",
        "  run A: the 3 hosts never all ran together",
        "  run B: the 3 hosts never all ran together",
        "  3 hosts of 4 ended differently:",
        "    node2: failed (exit 1) in run A, ok (exit 0) in run B",
        "    node3: ok (exit 0) in run A, not in the test in run B",
        "    node4: not in the test in run A, ok (exit 0) in run B",
    ]


def test_a_plan_of_only_the_failed_hosts() -> None:
    plan = parse_config(CONFIG, "fleet.cfg")
    run = RunResult("fleet.cfg")
    fio = ran("fio", {f"node{k}": CommandStatus.OK for k in range(1, 5)}, 0.1)
    fio.hosts[1].commands[0].status = CommandStatus.TIMEOUT  # node2
    fio.hosts[3].state = HostState.FAILED  # node4 unreachable
    run.tests = [ran("fio", {"node1": CommandStatus.FAILED}, 0.1), fio]  # a repetition: the last
    run.tests.append(ran("quiet", {"node1": CommandStatus.OK}, 0.1))
    assert failed_hosts(fio) == [Address("node2"), Address("node4")]
    again = failed_hosts_plan(plan, run)
    assert again is not None and [t.label for t in again.tests] == ["fio"]
    (test,) = again.tests
    assert [(c.address.host, c.command) for c in test.commands] == [
        ("node2", "fio job"),
        ("node4", "fio job"),
        ("node2", "second"),
    ]
    assert test.minhosts == 2  # -minhosts 3 of 4 hosts; 2 hosts run again
    run.tests = run.tests[2:]
    assert failed_hosts_plan(plan, run) is None
