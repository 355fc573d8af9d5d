"""Numbers, units, plurals and summaries: every string the report, the logs and the GUI share."""

from __future__ import annotations

import pytest

from netjobs_core import text
from netjobs_core.config import parse_config
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


def test_count_plurals() -> None:
    assert text.count(1, "test") == "1 test"
    assert text.count(0, "test") == "0 tests"
    assert text.count(2, "host") == "2 hosts"
    assert text.count(2, "child", "children") == "2 children"


def test_milliseconds_always_with_their_unit() -> None:
    assert text.ms(None) == "n/a"
    assert text.ms(None, none="—") == "—"
    assert text.ms(1.23456) == "1.235 ms"
    assert text.ms(-0.5, signed=True) == "-0.500 ms"
    assert text.ms(0.5, signed=True) == "+0.500 ms"
    assert text.ms(2500.0) == "2.500 s"
    assert text.ms(-1500.0, signed=True) == "-1.500 s"


def test_values_with_bounds_name_both_units() -> None:
    assert text.ms_pm(0.591, 0.162) == "0.591 ms ± 0.162 ms"
    assert text.ms_pm(-1.5, 0.01, signed=True) == "-1.500 ms ± 0.010 ms"
    assert text.ms_pm(0.9, None) == "0.900 ms"
    assert text.ms_pm(None, 0.1, none="—") == "—"
    test = TestResult("t", None, start_spread_ms=0.9, start_spread_uncertainty_ms=0.07)
    assert text.spread(test) == "0.900 ms ± 0.070 ms"
    assert text.spread(TestResult("t", None)) == "n/a"


def test_seconds_and_durations() -> None:
    assert text.seconds(12.3456) == "12.346 s"
    assert text.duration(5.7e-5) == "0.057 ms"  # a reconnect refused at once: 'gave up after'
    assert text.duration(1.5) == "1.500 s"
    assert text.seconds(None) == "n/a"
    assert text.duration(1.5) == "1.500 s"
    assert text.duration(12.34) == "12.3 s"
    assert text.duration(75) == "1m 15.0s"
    assert text.duration(2 * 3600 + 3 * 60 + 4) == "2h 03m 04s"
    assert text.duration(None, none="—") == "—"
    assert text.timeout(300) == "300s" and text.timeout(0.5) == "0.5s"
    assert text.timeout(None) == "none"


def test_sizes() -> None:
    assert text.size(0) == "0 B"
    assert text.size(1023) == "1023 B"
    assert text.size(1536) == "1.5 KiB"
    assert text.size(3 * 1024**2) == "3.0 MiB"
    assert text.size(5 * 1024**3) == "5.0 GiB"


def test_time_of_day() -> None:
    assert text.time_of_day(1_700_000_000.25).endswith(".250")


def test_output_lines() -> None:
    assert text.output_lines(b"") == []
    assert text.output_lines(bytearray(b"a\nb\n")) == ["a", "b"]
    assert text.output_lines(b"\xffx") == ["\\xffx"]


def _test(status: TestStatus) -> TestResult:
    return TestResult("t", None, status=status)


@pytest.mark.parametrize(
    ("statuses", "summary"),
    [
        ([], "no test ran"),
        ([TestStatus.PASSED], "1 test passed"),
        ([TestStatus.PASSED] * 3, "3 tests passed"),
        ([TestStatus.FAILED, TestStatus.PASSED], "1 failed, 1 passed"),
        ([TestStatus.ABORTED, TestStatus.FAILED, TestStatus.ABORTED], "2 aborted, 1 failed"),
    ],
)
def test_run_summary(statuses: list[TestStatus], summary: str) -> None:
    run = RunResult("x.cfg", tests=[_test(s) for s in statuses])
    assert text.run_summary(run) == summary


def test_tally_uses_the_display_words() -> None:
    states = [HostState.RUNNING, HostState.FAILED, HostState.RUNNING, HostState.DONE]
    assert text.tally(states) == "2 running, 1 error, 1 done"


def test_two_errors_are_errors() -> None:
    """'passed with 2 error' was shown: a noun after a count above one is plural."""
    errored = [CommandResult("x", 2, status=CommandStatus.ERROR) for _ in range(2)]
    test = TestResult("t", 0, status=TestStatus.PASSED)
    test.hosts = [HostResult(Address("h", 1), commands=errored)]
    assert text.status_text(test) == "passed with 2 errors"
    assert text.tally([CommandStatus.TIMEOUT] * 2) == "2 timed out"


def test_test_summary_parts_for_one_host() -> None:
    """The one-host test that once read `start spread 0.900 ms ms`; a document from
    before exec instants says they were not measured, and guesses no reason."""
    host = HostResult(Address("h"), state=HostState.DONE)
    host.commands = [CommandResult("x", status=CommandStatus.OK, exit_code=0, started_at=1.8e9)]
    test = TestResult(
        "t",
        None,
        status=TestStatus.PASSED,
        hosts=[host],
        start_spread_ms=0.9,
        start_spread_uncertainty_ms=0.05,
        duration_s=1.25,
    )
    assert text.summary_parts(test) == [
        "1/1 command ran",
        "1 host",
        "released within 0.900 ms ± 0.050 ms; when the commands began was not measured",
        "took 1.250 s",
    ]
    assert text.progress(test) == (1, 1)


def test_a_running_test_counts_ended_commands_an_ended_one_those_that_ran() -> None:
    """An aborted test's commands have all finished, the two its hosts never released
    too: `2/3 commands finished` said nothing of them, `1/3 commands ran` does."""
    ran = CommandResult("a", status=CommandStatus.RUNNING, started_at=1.8e9)
    never = [CommandResult(c, status=CommandStatus.PENDING) for c in "bc"]
    test = TestResult("t", 0, status=TestStatus.RUNNING, duration_s=2.0)
    test.hosts = [
        HostResult(Address("h1"), commands=[ran]),
        HostResult(Address("h2"), commands=never),
    ]
    assert text.summary_parts(test)[0] == "0/3 commands finished"
    ran.status = CommandStatus.KILLED
    for command in never:
        command.status = CommandStatus.KILLED
    assert text.summary_parts(test)[0] == "3/3 commands finished"  # still running
    test.status = TestStatus.ABORTED
    assert text.summary_parts(test)[0] == "1/3 commands ran"
    assert text.test_ends(test) == "test 't': aborted, 1 of 3 commands ran in 0:02"
    # Lost with its host after the start, its release never reported: it may have run.
    never[0].status = CommandStatus.LOST
    assert text.summary_parts(test)[0] == "2/3 commands ran"
    assert text.progress_fraction(test) == "2/3"  # the test list's Progress column


def test_the_progress_column_counts_as_the_summary_line() -> None:
    """The audit saw "38/38" in the Progress column beside "0/38 commands ran" (aborted
    before the start: every command an error), and "39/39" beside "38/39 commands ran"."""
    test = TestResult("t", 0, status=TestStatus.ABORTED)
    test.hosts = [
        HostResult(Address(f"h{k}"), commands=[CommandResult("x", status=CommandStatus.ERROR)])
        for k in range(3)
    ]
    assert text.commands_line(test) == "0/3 commands ran"
    assert text.progress_fraction(test) == "0/3"
    test.hosts[0].commands[0] = CommandResult("x", status=CommandStatus.OK, started_at=1.8e9)
    assert (text.commands_line(test), text.progress_fraction(test)) == ("1/3 commands ran", "1/3")
    test.status = TestStatus.RUNNING  # while it runs: ended ones, errors included
    assert (text.commands_line(test), text.progress_fraction(test)) == (
        "3/3 commands finished",
        "3/3",
    )


def test_hosts_succeeded_counts_as_the_verdict() -> None:
    ok = CommandResult("x", status=CommandStatus.OK)
    failed = CommandResult("x", status=CommandStatus.FAILED, exit_code=3)
    test = TestResult("t", 0, status=TestStatus.FAILED)
    test.hosts = [
        HostResult(Address("a"), state=HostState.DONE, commands=[ok]),
        HostResult(Address("b"), state=HostState.DONE, commands=[ok, failed]),
        HostResult(Address("c"), state=HostState.FAILED, commands=[]),
    ]
    assert text.hosts_succeeded(test) == "1/3 succeeded"


def test_host_numbers_and_command_details() -> None:
    host = HostResult(
        Address("h"),
        rtt_ms=0.123,
        clock_offset_ms=1796153547091.754,  # monotonic: the boot times' difference, not shown
        clock_uncertainty_ms=0.1,
        wall_clock_offset_ms=37002.0,
    )
    assert text.host_line_numbers(host) == "rtt 0.123 ms, wall clock +37.002 s ± 0.100 ms"
    host.wall_clock_offset_ms = -0.01
    assert text.wall_clock(host) == "wall clock -0.010 ms ± 0.100 ms"
    host.wall_clock_offset_ms = None  # an agent that does not send its wall clock
    assert text.wall_clock(host) == "wall clock not reported by the agent"
    assert text.host_line_numbers(HostResult(Address("h"))) == ""
    command = CommandResult("x", duration_s=1.5, message="killed by signal 15")
    assert text.command_details(command) == ["ran 1.500 s", "killed by signal 15"]
    assert text.command_details(CommandResult("x")) == []


def test_plan_summary() -> None:
    plan = parse_config(
        't1:\n-generaltimeout: 5m\n-minhosts: 1\nhost-a: "fio x"\n-timeout: 2h\nb: "y"\nend\n',
        "p.cfg",
    )
    lines = text.plan_summary(plan)
    assert lines[0] == "p.cfg: 1 test"
    assert lines[1].startswith("test 't1' (line 1): 2 commands on 2 hosts, -minhosts 1")
    assert lines[1].endswith("-generaltimeout 300s")
    assert lines[2] == "  host-a: 'fio x'  timeout 7200s  (line 4)"
    assert lines[-1].startswith("  would connect to 2 hosts")


def test_printable_escapes_terminal_controls_but_tab_and_newline() -> None:
    shown = text.printable("a\x1b[2J\x07\x9b\x7f\r\tb\nc é")
    assert shown == "a\\x1b[2J\\x07\\x9b\\x7f\\x0d\tb\nc é"


def test_timestamps_carry_their_utc_offset() -> None:
    stamp = text.timestamp(1_700_000_000.25)
    assert stamp[-6] in "+-" and stamp[-3] == ":"  # ISO 8601: ...T22:13:20.250000+00:00
    assert text.timestamp(1_700_000_000.25, "milliseconds")[19:23] == ".250"


def _mixed_test(status: TestStatus) -> TestResult:
    """Three hosts: one ok, one exited 1, one timed out (as -minhosts 1 lets pass)."""
    hosts = []
    for name, command_status in (
        ("a", CommandStatus.OK),
        ("b", CommandStatus.FAILED),
        ("c", CommandStatus.TIMEOUT),
    ):
        host = HostResult(Address(name), state=HostState.DONE)
        host.commands = [CommandResult("x", status=command_status)]
        hosts.append(host)
    return TestResult("t", 1, status=status, hosts=hosts)


def test_a_pass_over_failed_commands_says_so() -> None:
    """`Run finished: all 2 passed.` once hid a failed and a timed-out command."""
    passed = _mixed_test(TestStatus.PASSED)
    assert text.status_text(passed) == "passed with 1 failed, 1 timed out"
    assert text.run_summary(RunResult("x.cfg", tests=[passed])) == (
        "1 test passed (commands: 1 failed, 1 timed out)"
    )
    assert text.status_text(_mixed_test(TestStatus.FAILED)) == "failed"
    assert text.status_text(_test(TestStatus.PASSED)) == "passed"
    assert text.run_summary(RunResult("x.cfg", tests=[_test(TestStatus.PASSED)])) == (
        "1 test passed"
    )


@pytest.mark.parametrize(
    ("value", "step", "label"),
    [
        (0.0, 0.2, "0"),
        (0.001, 0.001, "0.001 ms"),  # once `0.0010s`
        (250.0, 250.0, "250 ms"),
        (1500.0, 500.0, "1.5 s"),
        (1250.0, 250.0, "1.25 s"),
        (2000.0, 1000.0, "2 s"),
        (4500.0, 1500.0, "4.5 s"),
        (150_000.0, 30_000.0, "150 s"),
        (150_000.0, 60_000.0, "2m 30s"),
        (120_000.0, 60_000.0, "2m"),
    ],
)
def test_axis_ticks_carry_their_unit_and_only_the_decimals_the_step_needs(
    value: float, step: float, label: str
) -> None:
    assert text.tick(value, step) == label


def test_start_axis_ticks_are_signed_without_unit() -> None:
    assert text.tick(-0.1, 0.05, signed=True, unit=False) == "-0.10"
    assert text.tick(0.05, 0.05, signed=True, unit=False) == "+0.05"


def test_an_interruption_says_where_it_stands() -> None:
    from netjobs_core.results import Interruption

    record = Interruption(at=1_700_000_000.25, cause="no answer from the agent for 10 s")
    lost = f"connection lost at {text.time_of_day(record.at)} (no answer from the agent for 10 s)"
    assert text.interruption(record) == f"{lost}; reconnecting…"
    record.duration_s, record.resumed = 2.5, True
    assert text.interruption(record) == f"{lost}; resumed after 2.500 s"
    record.resumed = False
    assert text.interruption(record) == f"{lost}; gave up after 2.500 s"


def test_began_and_late_lines() -> None:
    """The release spread, the exec spread (units always), and the late hosts named."""
    quick = HostResult(Address("quick"), state=HostState.DONE)
    slow = HostResult(Address("slow"), state=HostState.DONE)
    quick.commands = [CommandResult("x", started_at=1.0, release_late_ms=0.01, exec_offset_ms=0.9)]
    slow.commands = [CommandResult("x", started_at=1.0, release_late_ms=85.9, exec_offset_ms=87.1)]
    test = TestResult(
        "t",
        None,
        hosts=[quick, slow],
        start_spread_ms=85.89,
        start_spread_uncertainty_ms=0.08,
        exec_spread_ms=86.2,
        exec_spread_uncertainty_ms=0.08,
        lead_ms=17.2,
    )
    assert text.began(test) == (
        "released within 85.890 ms ± 0.080 ms; commands began within 86.200 ms ± 0.080 ms"
    )
    # One host's clock known far less well than the others' (far away, over SSH, or
    # slowing its pongs) makes most of the ±: it is named.
    quick.clock_uncertainty_ms, slow.clock_uncertainty_ms = 0.04, 5.0
    test.start_spread_uncertainty_ms = test.exec_spread_uncertainty_ms = 5.04
    assert text.began(test) == (
        "released within 85.890 ms ± 5.040 ms (the ± mostly slow's clock, known to "
        "± 5.000 ms); commands began within 86.200 ms ± 5.040 ms"
    )
    quick.clock_uncertainty_ms = 2.6  # no one host's: not named
    assert "mostly" not in text.began(test)
    quick.clock_uncertainty_ms = slow.clock_uncertainty_ms = None
    test.start_spread_uncertainty_ms = test.exec_spread_uncertainty_ms = 0.08
    assert text.late_line(test) == "late releases (more than 1.000 ms, --late-ms): slow +85.900 ms"
    quick.commands[0].release_late_ms = 2.0
    # Many late hosts (a loaded machine): a summary line names the latest few.
    assert text.late_line(test, most=1) == (
        "late releases (more than 1.000 ms, --late-ms): 2 hosts; the latest: "
        "slow +85.900 ms; and 1 more"
    )
    assert text.late_line(test, most=2) == text.late_line(test)
    quick.commands[0].release_late_ms = 0.01
    assert text.start_facts(test) == "scheduled start, lead 17.200 ms, 2 commands on 2 hosts"
    test.late_threshold_ms = 100.0
    assert text.late_line(test) is None
    # Not measured: why, per host, instead of a ± that does not cover it.
    test.exec_spread_ms = test.exec_spread_uncertainty_ms = None
    slow.commands[0].exec_offset_ms = None
    slow.exec_error = "exec instants need the agent to run as root (kernel process events)"
    assert text.began(test) == (
        "released within 85.890 ms ± 0.080 ms; when the commands began was not measured "
        "(slow: exec instants need the agent to run as root (kernel process events))"
    )


def test_an_error_beside_its_hosts_name_does_not_name_it_again() -> None:
    """Each connect error as client.py words it, and as it reads on a line that already
    names the host; another host's address, and one that only begins so, stay."""
    from netjobs_core.client import _CONNECT_ERRNOS

    address = Address("10.0.0.9", 7)
    beside = [
        text.beside_host(words.format(address), address) for words in _CONNECT_ERRNOS.values()
    ]
    assert beside == [
        "connection refused (is the agent running and listening there?)",
        "no route to host",
        "network unreachable",
        "connection timed out",
        "cannot connect: address not available",
    ]
    other = "connection refused by 10.0.0.9:70 (is the agent running and listening there?)"
    assert text.beside_host(other, address) == other
    assert text.beside_host("cannot connect to 10.0.0.9:7: EIO", address) == "cannot connect: EIO"
    ssh = Address("node01", 22, "ssh", "bench")
    stopped = f"SSH connection refused by {ssh} (no SSH server on that port?)"
    assert text.beside_host(stopped, ssh) == "SSH connection refused (no SSH server on that port?)"


def test_a_test_the_run_did_not_reach_has_no_counts_only_its_reason():
    not_run = TestResult("b", None, reason="stopped by user")
    assert text.summary_parts(not_run) == []  # not "0/0 commands finished, 0 hosts"


def test_a_busy_agent_says_whose_test_and_how_long_a_silent_ones_is_kept():
    assert text.busy_with("long", "", None) == "busy with test 'long'"  # an older agent
    assert text.busy_with("long", "10.0.0.7:50412", None) == (
        "busy with test 'long' for 10.0.0.7:50412"
    )
    assert text.busy_with("l\x1b[2J", "10.0.0.7:1\n", 173.6) == (
        "busy with test 'l\\x1b[2J' for 10.0.0.7:1\\x0a, silent: kept 174 s more for its resume"
    )


def test_a_duration_under_a_millisecond_is_not_said_as_nothing() -> None:
    """A 0.4 ms overlap of commands that each ran 3 ms read "ran together for 0.000 s
    (12.3 % of the longest command)"."""
    assert text.seconds(0.000369) == "0.369 ms"
    assert text.seconds(0.0) == "0.000 s"
    assert text.seconds(0.0005) == "0.001 s"
    assert text.seconds(12.3456) == "12.346 s"
    assert text.duration(5.7e-5) == "0.057 ms"  # a reconnect refused at once: 'gave up after'
    assert text.duration(1.5) == "1.500 s"
    assert text.duration(0.000331) == "0.331 ms"  # a command's Elapsed in the GUI
    assert text.duration(0.0) == "0.000 s"
