"""Folded host names (netjobs_core.nodesets), the one fold of a test's commands
(netjobs_core.fold) and the folded report (netjobs_core.report) that shows it."""

import re

from ClusterShell.NodeSet import NodeSet
from hypothesis import given
from hypothesis import strategies as st

from netjobs_core import text
from netjobs_core.config import parse_config
from netjobs_core.fold import fold, groups
from netjobs_core.nodesets import fold as fold_names
from netjobs_core.outputs import Output
from netjobs_core.report import format_test
from netjobs_core.results import CommandResult, CommandStatus, HostResult, HostState, TestResult
from netjobs_core.wire.address import Address, split_ssh_prefix


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


# -- SSH targets (issue 18, point 15: they printed as `ssh://a,ssh://b`) -------------


def test_ssh_targets_fold_by_their_host_part_with_their_prefix():
    bench = [f"ssh://bench@node{i:02d}" for i in (1, 2, 3, 4, 7)]
    assert fold_names(bench) == "ssh://bench@node[01-04,07]"
    assert fold_names(["ssh://node1:2222", "ssh://node2:2222"]) == "ssh://node[1-2]:2222"
    # each prefix its own part; agents over TCP and what NodeSet cannot take as before
    names = ["node1", "ssh://bench@a1", "ssh://root@a3", "ssh://bench@a2", "node2"]
    names += ["ssh://bench@web", "ssh://[fd00::5]", "[::1]:16200"]
    assert fold_names(names) == (
        "node[1-2],ssh://bench@a[1-2],ssh://bench@web,ssh://root@a3,ssh://[fd00::5],[::1]:16200"
    )


def test_the_folded_host_line_of_ssh_hosts_is_a_node_set():
    assert text.members([f"ssh://bench@node{i:02d}" for i in range(1, 33)]) == (
        "ssh://bench@node[01-32] (32 hosts)"
    )
    test = TestResult("fio", None)
    test.hosts = [host(16201 + i, b"READ\n") for i in range(2)]
    for i, result in enumerate(test.hosts, start=1):
        result.address = Address(f"node{i:02d}", 0, "ssh", "bench")
    report = format_test(test, fold=True).splitlines()
    assert any(line.startswith("  ssh://bench@node[01-02] (2 hosts)  done") for line in report)
    assert "  ssh://bench@node[01-02] (2 hosts): OK (exit 0), ran 1.000 s: fio job.fio" in report


_PART = re.compile(r"(?:[^,\[]|\[[^\]]*\])+")  # a part of a folded line, brackets whole
ssh_names = st.lists(
    st.builds(
        lambda scheme, name, port: f"{scheme}{name}" + (f":{port}" if port else ""),
        st.sampled_from(["", "ssh://", "ssh://bench@", "ssh://root@"]),
        st.builds(
            lambda prefix, number: f"{prefix}{number}",
            st.sampled_from(["node", "n0", "web-"]),
            st.integers(0, 120).map(str) | st.integers(0, 99).map(lambda n: f"{n:03d}"),
        )
        | st.integers(0, 255).map(lambda n: f"10.0.0.{n}"),
        st.sampled_from([None, 22, 16192, 16201]),
    ),
    min_size=1,
    max_size=30,
)


@given(ssh_names)
def test_each_folded_part_names_its_hosts_with_its_prefix(hosts):
    """Every part of a folded line, its prefix on each host its node set names, gives the
    hosts back; one without a port range (`:[22,2222]`, display only) is a target the
    config reads back as the same addresses."""
    parts = _PART.findall(fold_names(hosts))
    assert len(parts) <= len(set(hosts))
    named = []
    for part in parts:
        ssh, nodes = split_ssh_prefix(part)
        expanded = [ssh + node for node in NodeSet(nodes)]
        named += expanded
        if ":[" not in part:
            config = parse_config(f't:\n{part}: "x"\nend\n', "t.cfg")
            assert [c.address for c in config.tests[0].commands] == [
                Address.parse(name) for name in expanded
            ]
    assert sorted(named) == sorted(set(hosts))
