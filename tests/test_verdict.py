"""A test's verdict and reason text, from its results."""

from netjobs_core.results import CommandResult, CommandStatus, HostResult, HostState, TestStatus
from netjobs_core.verdict import quorum_lost_reason, verdict
from netjobs_core.wire.address import Address


def host(state: HostState, *statuses: CommandStatus, port: int = 16192) -> HostResult:
    result = HostResult(Address("10.0.0.1", port), state=state)
    result.commands = [CommandResult(command="true", status=s) for s in statuses]
    return result


OK, FAILED, TIMEOUT, ERROR = (
    CommandStatus.OK,
    CommandStatus.FAILED,
    CommandStatus.TIMEOUT,
    CommandStatus.ERROR,
)


def test_every_command_exits_zero_passes_with_no_reason():
    hosts = [host(HostState.DONE, OK, OK), host(HostState.DONE, OK)]
    assert verdict(hosts, None, 2) == (TestStatus.PASSED, "")


def test_one_failure_with_minhosts_all_fails_and_counts_the_commands():
    hosts = [host(HostState.DONE, OK, FAILED, FAILED), host(HostState.DONE, OK)]
    assert verdict(hosts, None, 2) == (
        TestStatus.FAILED,
        "1 of 2 hosts succeeded (-minhosts all); 2 commands failed",
    )


def test_enough_hosts_succeeding_passes_but_says_what_went_wrong():
    hosts = [
        host(HostState.DONE, OK),
        host(HostState.TIMEOUT, TIMEOUT),
        host(HostState.FAILED, ERROR),
        host(HostState.DONE, OK),
    ]
    assert verdict(hosts, 2, 2) == (
        TestStatus.PASSED,
        "2 of 4 hosts succeeded (-minhosts 2); 1 command timed out, 1 command could not run",
    )


def test_a_host_succeeds_only_when_done():
    """Every command OK, but the host was killed before it reported the end."""
    hosts = [host(HostState.KILLED, OK)]
    assert verdict(hosts, 1, 1)[0] is TestStatus.FAILED


def test_an_abort_is_the_verdict_whatever_the_commands_did():
    hosts = [host(HostState.DONE, OK)]
    assert verdict(hosts, None, 1, abort_reason="stopped by user") == (
        TestStatus.ABORTED,
        "stopped by user",
    )


def test_minhosts_zero_rule():
    """One rule (issue 8): -minhosts 0 passes whatever its hosts did, failed or
    unreachable alike; the reason says how many succeeded."""
    failed = [host(HostState.DONE, FAILED), host(HostState.FAILED, ERROR)]
    unreachable = [host(HostState.FAILED, ERROR), host(HostState.FAILED, ERROR)]
    for hosts in (failed, unreachable):
        status, reason = verdict(hosts, 0, 0)
        assert status is TestStatus.PASSED
        assert reason.startswith("0 of 2 hosts succeeded (-minhosts 0)")


def test_quorum_lost_reason_names_the_lost_hosts_and_why():
    lost = [host(HostState.FAILED, ERROR), host(HostState.TIMEOUT, ERROR)]
    lost[0].error = "authentication failed"
    assert quorum_lost_reason(1, 3, None, 3, lost) == (
        f"quorum lost because {lost[0].target}: authentication failed; "
        f"{lost[1].target}: a command timed out (1 of 3 hosts left, -minhosts all)"
    )


def test_the_reason_agrees_in_number():
    """`0 of 1 host succeeded`, `1 command lost with its host`; plurals stay plural."""
    lost = CommandStatus.LOST
    assert verdict([host(HostState.FAILED, lost)], 1, 1) == (
        TestStatus.FAILED,
        "0 of 1 host succeeded (-minhosts 1); 1 command lost with its host",
    )
    two = [host(HostState.FAILED, lost), host(HostState.FAILED, lost)]
    assert verdict(two, None, 2)[1] == (
        "0 of 2 hosts succeeded (-minhosts all); 2 commands lost with their hosts"
    )
    gone = [host(HostState.FAILED, ERROR)]
    gone[0].error = "connection refused"
    assert quorum_lost_reason(0, 1, None, 1, gone).endswith("(0 of 1 host left, -minhosts all)")
