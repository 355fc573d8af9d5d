"""Folded host names (netjobs_core.nodesets), the one fold of a test's commands
(netjobs_core.fold) and the folded report (netjobs_core.report) that shows it."""

from ClusterShell.NodeSet import NodeSet
from hypothesis import given
from hypothesis import strategies as st

from netjobs_core.fold import fold, groups
from netjobs_core.nodesets import fold as fold_names
from netjobs_core.outputs import Output
from netjobs_core.report import format_test
from netjobs_core.results import CommandResult, CommandStatus, HostResult, HostState, TestResult
from netjobs_core.wire.address import Address


def test_names_fold_as_clush_shows_them():
    assert fold_names(["node01", "node02", "node03", "node04", "node07"]) == "node[01-04,07]"
    assert fold_names(["10.0.0.5", "10.0.0.6", "10.0.0.7"]) == "10.0.0.[5-7]"
    ports = [f"127.0.0.1:{p}" for p in (16201, 16202, 16203, 16207)]
    assert fold_names(ports) == "127.0.0.1:[16201-16203,16207]"
    assert fold_names(["web1", "web1"]) == "web1"


def test_what_nodeset_cannot_take_is_listed_as_written():
    # "[::1]:16200" is a NodeSet range syntax error; "h*" and "a@b" are operators to it.
    names = ["node1", "[::1]:16200", "node2", "h*", "a@b", "[::1]:16201"]
    assert fold_names(names) == "node[1-2],[::1]:16200,h*,a@b,[::1]:16201"


names = st.lists(
    st.builds(
        lambda prefix, number, port: f"{prefix}{number}" + (f":{port}" if port else ""),
        st.sampled_from(["node", "n0", "10.0.0.", "fd00::", "web-", "x_"]),
        st.integers(0, 120).map(str) | st.integers(0, 99).map(lambda n: f"{n:03d}"),
        st.sampled_from([None, 16192, 16201]),
    ),
    min_size=1,
    max_size=30,
)


@given(names)
def test_the_folded_set_names_exactly_the_hosts(hosts):
    folded = fold_names(hosts)
    assert sorted(NodeSet(folded)) == sorted(set(hosts))


def host(port: int, stdout: bytes, status=CommandStatus.OK, exit_code=0, duration=1.0):
    result = HostResult(
        Address("127.0.0.1", port), state=HostState.DONE, rtt_ms=0.1 + (port - 16200) / 100
    )
    result.start_offset_ms = 0.0
    result.commands = [
        CommandResult(
            "fio job.fio",
            status=status,
            exit_code=exit_code,
            stdout=Output.from_bytes(stdout),
            started_at=100.0,
            duration_s=duration,
        )
    ]
    return result


def a_test() -> TestResult:
    test = TestResult("fio", None, start_spread_ms=0.5, start_spread_uncertainty_ms=0.1)
    test.hosts = [host(16201 + i, b"READ: bw=1GiB/s\n", duration=58 + i) for i in range(4)]
    test.hosts.append(host(16205, b"error: no such file\n", CommandStatus.FAILED, 1))
    test.hosts.append(host(16206, b"READ: bw=1GiB/s\n", duration=60))
    return test


def test_the_folded_report_shows_each_outcome_once():
    report = format_test(a_test(), fold=True).splitlines()
    assert (
        "  127.0.0.1:[16201-16204,16206] (5 hosts): OK (exit 0), ran 58.000 s to 61.000 s: "
        "fio job.fio"
    ) in report
    assert "  127.0.0.1:16205 (1 host): FAILED (exit 1), ran 1.000 s: fio job.fio" in report
    assert report.count("      stdout: READ: bw=1GiB/s") == 1
    assert report.count("      stdout: error: no such file") == 1
    assert report[-1] == "      stdout: error: no such file"
    (hosts,) = [line for line in report if "done" in line]
    assert hosts.startswith(
        "  127.0.0.1:[16201-16206] (6 hosts)  done  rtt 0.110 ms to 0.160 ms, "
        "started +0.000 ms from"
    )


def test_output_that_differs_by_a_byte_is_not_folded():
    test = a_test()
    command = test.hosts[1].commands[0]
    command.stdout = Output.from_bytes(command.stdout.read_bytes() + b" ")
    report = format_test(test, fold=True)
    assert "127.0.0.1:[16201,16203-16204,16206] (4 hosts): OK" in report
    assert "127.0.0.1:16202 (1 host): OK" in report


def test_unfolded_every_host_in_full():
    report = format_test(a_test(), fold=False).splitlines()
    assert report.count("      stdout: READ: bw=1GiB/s") == 5
    assert sum(line.startswith("  127.0.0.1:") for line in report) == 6


def test_commands_fold_by_status_exit_code_and_output_whatever_their_command_lines():
    test = a_test()
    test.hosts[2].commands[0].command = "fio other.fio"  # same ending and output: folds
    test.hosts[3].commands[0].exit_code = 2  # OK with another code (never sent): its own
    test.hosts[4].commands[0].stdout = Output.from_bytes(b"READ: bw=1GiB/s\n")  # FAILED
    folded = fold(test)
    assert [group.targets for group in folded] == [
        ["127.0.0.1:16201", "127.0.0.1:16202", "127.0.0.1:16203", "127.0.0.1:16206"],
        ["127.0.0.1:16204"],
        ["127.0.0.1:16205"],
    ]
    assert folded[0].command_lines == ["fio job.fio", "fio other.fio"]
    assert folded[0].command is test.hosts[0].commands[0]
    assert folded[0].commands == [test.hosts[i].commands[0] for i in (0, 1, 2, 5)]
    # A host's second command, with its own output, is an outcome of its own, second
    # in order as it is met second, host by host.
    test.hosts[0].commands.append(
        CommandResult("true", status=CommandStatus.OK, exit_code=0, stdout=Output())
    )
    assert fold(test)[1].pairs == ((test.hosts[0], test.hosts[0].commands[1]),)
    assert len(fold(test)) == 4
    assert fold(TestResult("empty", None)) == []


def test_groups_keep_the_order_each_key_first_appears():
    assert groups([3, 1, 4, 1, 5, 9, 2, 6], lambda n: n % 3) == [[3, 9, 6], [1, 4, 1], [5, 2]]


def test_the_folded_report_names_every_command_line_and_message_once():
    test = a_test()
    for n, host in enumerate(test.hosts[:4]):
        command = host.commands[0]
        command.command = f"fio job{n % 2}.fio"
        command.status, command.exit_code = CommandStatus.TIMEOUT, None
        command.message = "ran past its 60 s timeout" if n < 3 else "ran past its 50 s timeout"
        command.warnings = ["'*.log' matched nothing"]
    report = format_test(test, fold=True).splitlines()
    assert (
        "  127.0.0.1:[16201-16204] (4 hosts): TIMED OUT, ran 58.000 s to 61.000 s, "
        "ran past its 60 s timeout, ran past its 50 s timeout: "
        "fio job0.fio (and 1 other command line)"
    ) in report
    assert report.count("      warning: '*.log' matched nothing") == 1
