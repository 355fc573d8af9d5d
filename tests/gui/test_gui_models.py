"""The table models and the timeline data, without any widget."""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtCore import Qt

from netjobs_core.check import HostCheck
from netjobs_core.config import parse_config
from netjobs_core.metrics import summarize
from netjobs_core.outputs import Output
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import word
from netjobs_core.wire.address import Address
from netjobs_gui.columns import command_state
from netjobs_gui.models import (
    CommandsModel,
    HostsModel,
    ResultsModel,
    TestsModel,
)
from netjobs_gui.timeline import bar_note, layout, nice_step, summary, timeline_data, tooltip

T0 = 1_700_000_000.0


def table(model) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [
        [model.data(model.index(r, c)) for c in range(model.columnCount())]
        for r in range(model.rowCount())
    ]


def column(model, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    c = model.COLUMNS.index(name)
    return [model.data(model.index(r, c)) for r in range(model.rowCount())]


def finished_test() -> TestResult:
    """Two hosts: one ran two commands (ok, exit 3), the other timed out."""
    a = HostResult(Address("alpha"), state=HostState.DONE, clock_uncertainty_ms=0.02)
    a.commands = [
        CommandResult(
            "echo hi",
            status=CommandStatus.OK,
            exit_code=0,
            started_at=T0 + 0.0004,
            duration_s=1.5,
            stdout=Output.from_bytes(b"hi\n"),
        ),
        CommandResult(
            "false",
            status=CommandStatus.FAILED,
            exit_code=3,
            started_at=T0 + 0.0006,
            duration_s=0.25,
        ),
    ]
    b = HostResult(Address("beta", 17000), state=HostState.TIMEOUT, clock_uncertainty_ms=0.05)
    b.commands = [
        CommandResult(
            "sleep 9",
            status=CommandStatus.TIMEOUT,
            started_at=T0 - 0.0003,
            duration_s=2.0,
            message="ran past its timeout of 2 s",
        ),
    ]
    return TestResult(
        label="t1",
        minhosts=None,
        status=TestStatus.FAILED,
        reason="1 command failed",
        started_at=T0 - 1,
        scheduled_start=T0,
        duration_s=4.0,
        start_spread_ms=0.9,
        start_spread_uncertainty_ms=0.07,
        hosts=[a, b],
    )


def test_hosts_model_merges_config_and_manual_and_shows_checks(qapp) -> None:  # type: ignore[no-untyped-def]
    model = HostsModel()
    model.set_hosts(
        [Address("alpha"), Address("beta", 17000)], [Address("beta", 17000), Address("gamma")]
    )
    assert column(model, "Host") == ["alpha:16192", "beta:17000", "gamma:16192"]
    assert column(model, "Source") == ["config", "config + added", "added"]
    assert column(model, "Reachable") == ["—", "—", "—"]

    model.set_checking(model.addresses())
    assert column(model, "Reachable") == ["checking…"] * 3
    model.set_checks(
        [
            HostCheck(
                Address("alpha"),
                reachable=True,
                authenticated=True,
                agent_version="3.0.0",
                hostname="a1",
                platform="Linux",
                busy=False,
                rtt_ms=0.123,
                clock_offset_ms=-1.5,
                clock_uncertainty_ms=0.01,
                wall_clock_offset_ms=37002.5,
            ),
            HostCheck(
                Address("beta", 17000),
                reachable=True,
                authenticated=False,
                error="authentication failed: the agent holds a different token",
            ),
            HostCheck(Address("gamma"), error="connection refused"),
        ]
    )
    rows = table(model)
    assert rows[0][2:10] == [
        "✔ yes",
        "✔ yes",
        "3.0.0",
        "0.123 ms",
        "-1.500 ms ± 0.010 ms",
        "+37.002 s ± 0.010 ms",  # the agent's wall clock minus ours, as `netjobs check`
        "idle",
        "a1 · Linux",
    ]
    wall = model.COLUMNS.index("Wall clock")
    tip = model.data(model.index(0, wall), Qt.ItemDataRole.ToolTipRole)
    assert tip == "wall clock +37.002 s ± 0.010 ms"
    assert rows[1][2:4] == ["✔ yes", "✘ no"]
    assert rows[1][10].startswith("authentication failed")
    assert rows[2][2:4] == ["✘ no", "—"]
    assert rows[2][10] == "connection refused"
    assert model.summary() == "3 hosts: 1 ready, 2 with problems"
    reachable = model.COLUMNS.index("Reachable")
    assert model.data(model.index(2, reachable), Qt.ItemDataRole.ForegroundRole) is not None

    # Re-setting the hosts (the config changed) keeps the checks of the hosts still there.
    model.set_hosts([Address("alpha")], [])
    assert column(model, "Agent") == ["3.0.0"]


def test_commands_model_states_offsets_exit_codes(qapp) -> None:  # type: ignore[no-untyped-def]
    model = CommandsModel()
    test = finished_test()
    model.set_test(test)
    assert model.rowCount() == 3
    # A host always with its port, as str(Address) writes it.
    assert column(model, "Host") == ["alpha:16192", "alpha:16192", "beta:17000"]
    assert column(model, "State") == ["ok", "failed", "timed out"]
    assert column(model, "Exit") == ["0", "3", "—"]
    assert column(model, "Start offset") == ["+0.400 ms", "+0.600 ms", "-0.300 ms"]
    assert column(model, "Elapsed") == ["1.500 s", "0.250 s", "2.000 s"]
    assert column(model, "Message")[2] == "ran past its timeout of 2 s"
    host, index = model.item(2)
    assert host.target == "beta:17000" and index == 0
    assert model.row_of(test.hosts[0], 1) == 1
    # A refresh (each tick) says changed only the rows whose facts changed.
    changed: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last, *_: changed.append((first.row(), last.row())))
    test.hosts[0].commands[1].exit_code = -15
    model.refresh()
    assert changed == [(1, 1)]
    assert column(model, "Exit")[1] == "-15 (SIGTERM)"
    # When each began (its exec), and a release later than --late-ms marked.
    assert column(model, "Began") == ["—", "—", "—"]
    test.hosts[1].commands[0].exec_offset_ms = 1.25
    test.hosts[1].commands[0].release_late_ms = 85.9
    changed.clear()
    model.refresh()
    assert changed == [(2, 2)]
    model.refresh()
    assert changed == [(2, 2)]  # nothing changed since
    assert column(model, "Began")[2] == "+1.250 ms"
    assert column(model, "Start offset")[2] == "-0.300 ms"  # coloured: late
    assert column(model, "Message")[2] == ("ran past its timeout of 2 s; released 85.900 ms late")
    offset = model.COLUMNS.index("Start offset")
    assert model.data(model.index(2, offset), Qt.ItemDataRole.ForegroundRole) is not None
    assert model.data(model.index(0, offset), Qt.ItemDataRole.ForegroundRole) is None

    # Structure changes are picked up by refresh().
    test.hosts[1].commands.append(CommandResult("true"))
    model.refresh()
    assert model.rowCount() == 4


def test_a_tick_says_changed_only_what_changed(qapp) -> None:  # type: ignore[no-untyped-def]
    """At 1000 hosts a tick must not re-sort or re-filter every row: a running command
    changes only its Elapsed; the first release moves every Start offset, not the rest."""
    model = CommandsModel()
    test = finished_test()
    running = test.hosts[1].commands[0]
    running.status, running.duration_s = CommandStatus.RUNNING, None
    test.hosts[1].state = HostState.RUNNING
    model.set_test(test)
    spans: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(
        lambda first, last, *_: spans.append(
            (first.row(), first.column(), last.row(), last.column())
        )
    )
    elapsed = model.COLUMNS.index("Elapsed")
    model.refresh()
    assert spans == [(2, elapsed, 2, elapsed)]
    assert column(model, "Elapsed")[2] != "2.000 s"  # counting since T0 (a while ago)
    spans.clear()
    test.scheduled_start = T0 - 1  # the common start moves: every row's offset
    model.refresh()
    offset, message = model.COLUMNS.index("Start offset"), model.COLUMNS.index("Message")
    assert spans[:2] == [(0, offset, 2, offset), (0, message, 2, message)]
    assert column(model, "Start offset")[0] == "+1.000 s"


def test_metrics_are_columns_of_the_hosts_table_once_the_test_ends(qapp) -> None:  # type: ignore[no-untyped-def]
    model = CommandsModel()
    test = finished_test()
    model.set_test(test)
    assert model.COLUMNS[-1] == "Message"  # while it runs: no metric yet
    test.hosts[0].commands[0].metrics = {"read_bw": 512 * 2**20}
    test.hosts[1].commands[0].metrics = {"read_bw": 2 * 2**30, "sent_bps": 9.41e9}
    test.metrics = summarize(test.hosts)
    model.refresh()  # the test ended: its metrics are known
    assert model.COLUMNS[-2:] == ("read_bw", "sent_bps")
    assert model.columnCount() == len(model.COLUMNS)
    assert column(model, "read_bw") == ["512 MiB/s", "—", "2.00 GiB/s"]
    assert column(model, "sent_bps") == ["—", "—", "9.41 Gbit/s"]
    c = model.COLUMNS.index("read_bw")
    assert model.headerData(c, Qt.Orientation.Horizontal) == "read_bw"
    assert model.data(model.index(0, c), Qt.ItemDataRole.TextAlignmentRole) is not None
    keys = [model.sort_key(r, c) for r in range(3)]
    assert keys[0] < keys[2] < keys[1]  # by value, the host without one last


def test_command_state_while_running() -> None:
    host = HostResult(Address("h", 1))
    command = CommandResult("x")
    for state, expected in [
        (HostState.CONNECTING, "connecting"),
        (HostState.SYNCING, "syncing"),
        (HostState.PREPARING, "preparing"),
        (HostState.READY, "ready"),
        (HostState.FAILED, "error"),  # unreachable: not the word of a non-zero exit
    ]:
        host.state = state
        assert word(command_state(host, command)) == expected
    host.state = HostState.READY
    command.status = CommandStatus.RUNNING  # prepared, not released yet
    assert command_state(host, command) is HostState.READY
    host.state = HostState.RUNNING
    assert command_state(host, command) is CommandStatus.RUNNING
    command.status = CommandStatus.KILLED
    assert word(command_state(host, command)) == "killed"


def test_tests_model_follows_plan_and_results(qapp) -> None:  # type: ignore[no-untyped-def]
    plan = parse_config('t1:\nalpha: "echo hi"\nbeta:17000: "x"\nend\nt2:\nalpha: "y"\nend\n')
    model = TestsModel()
    model.set_plan(plan)
    assert column(model, "Test") == ["t1", "t2"]
    assert column(model, "Hosts") == ["2", "1"]
    assert column(model, "Status") == ["not run", "not run"]
    model.set_result(finished_test())
    assert column(model, "Status") == ["failed", "not run"]
    assert column(model, "Progress") == ["3/3", "—"]
    assert column(model, "Start spread")[0] == "0.900 ms ± 0.070 ms"
    status = model.COLUMNS.index("Status")
    assert model.data(model.index(0, status), Qt.ItemDataRole.ToolTipRole) == "1 command failed"


def test_results_model_lists_session_tests_once(qapp) -> None:  # type: ignore[no-untyped-def]
    run = RunResult("/tmp/plans/bench.cfg", tests=[finished_test()])
    model = ResultsModel()
    assert model.add_run(run, "run 12:00:00") == [0]
    assert model.add_run(run, "run 12:00:00") == []  # already listed
    run.tests.append(TestResult("t2", None, status=TestStatus.PASSED))
    assert model.add_run(run, "run 12:00:00") == [1]
    assert column(model, "Config") == ["bench.cfg", "bench.cfg"]
    assert column(model, "Status") == ["failed", "passed"]
    # alpha is done but its second command exited 3: not a host that succeeded, as the
    # verdict counts them ("0 of 2 hosts succeeded"); "1/2 done" read as a success.
    assert column(model, "Hosts")[0] == "0/2 succeeded"
    run.tests[0].hosts[0].commands[1].status = CommandStatus.OK
    model.refresh()
    assert column(model, "Hosts")[0] == "1/2 succeeded"


def test_timeline_data_rows_common_start_spread() -> None:
    data = timeline_data(finished_test(), now=T0 + 100)
    assert data.common_start == T0 and data.scheduled
    assert data.spread_ms == 0.9 and data.spread_uncertainty_ms == 0.07
    assert [(r.host, r.word) for r in data.rows] == [
        ("alpha:16192", "ok"),
        ("alpha:16192", "failed"),
        ("beta:17000", "timed out"),
    ]
    assert [round(r.start_ms, 3) for r in data.rows] == [0.4, 0.6, -0.3]
    assert [round(r.duration_ms, 3) for r in data.rows] == [1500.0, 250.0, 2000.0]
    assert round(data.first_start_ms, 3) == -0.3 and round(data.last_start_ms, 3) == 0.6
    assert round(data.end_ms, 1) == 2000 - 0.3
    assert [r.uncertainty_ms for r in data.rows] == [0.02, 0.02, 0.05]


def test_timeline_data_running_and_unknown_ends() -> None:
    test = finished_test()
    running = test.hosts[0].commands[0]
    running.status, running.duration_s = CommandStatus.RUNNING, None
    killed = test.hosts[1].commands[0]
    killed.status, killed.duration_s = CommandStatus.KILLED, None
    data = timeline_data(test, now=T0 + 3)
    assert data.rows[0].running and round(data.rows[0].end_ms) == 3000
    # No end reported: drawn to the end of the test, marked unknown.
    assert not data.rows[2].end_known and round(data.rows[2].end_ms) == 3000
    # Never started: no bar.
    test.hosts[0].commands[1].started_at = None
    test.scheduled_start = None  # sequential start: the first release is the reference
    data = timeline_data(test, now=T0 + 3)
    assert data.rows[1].start_ms is None and data.rows[1].end_ms is None
    assert data.common_start == pytest.approx(T0 - 0.0003)


def test_nice_step() -> None:
    assert nice_step(10, 5) == 2
    assert nice_step(1.0, 4) == 0.5
    assert nice_step(0.13, 4) == 0.05
    assert nice_step(0) == 1.0


def test_timeline_texts() -> None:
    data = timeline_data(finished_test(), now=T0 + 100)
    assert summary(data).startswith(
        "released within 0.900 ms ± 0.070 ms; when the commands began was not measured"
        "   ·   scheduled start "
    )
    assert bar_note(data.rows[0]) == "1.500 s  exit 0"
    assert bar_note(data.rows[2]) == "2.000 s  timed out"
    assert tooltip(data.rows[1]).split("\n") == [
        "alpha:16192",
        "command: false",
        "state: failed",
        "start offset: +0.600 ms ± 0.020 ms (clock)",
        "ran: 0.250 s",
        "exit code: 3",
    ]


def test_timeline_layout_rows_axes_label_room() -> None:
    data = timeline_data(finished_test(), now=T0 + 100)
    geometry = layout(data, 1000, widest_host=90.0)
    # Columns left to right, nothing overlapping, the notes' room kept at the right.
    assert geometry.left < geometry.left + geometry.label_width < geometry.start.left
    assert geometry.start.right < geometry.run.left < geometry.run.right <= 1000 - 10 - 170
    assert geometry.host_room == 90.0  # fits: the command gets the rest
    # A long host name takes at most 60%: enough of the command stays to tell rows apart.
    assert layout(data, 1000, widest_host=500.0).host_room == geometry.label_width * 0.6
    # One row per command below the header.
    assert geometry.bottom - geometry.top == 3 * geometry.row_height
    assert geometry.row_top(2) == geometry.top + 2 * geometry.row_height
    # The start axis holds every release with its whisker, and 0; the run axis every end.
    start = geometry.start
    assert start.low < -0.3 - 0.05 and start.high > 0.6 + 0.02 and start.low < 0 < start.high
    assert start.x(start.low) == start.left and start.x(start.high) == start.right
    assert geometry.run.low == pytest.approx(-0.3, abs=1e-3) and geometry.run.high > 2000 - 0.3
    ticks = geometry.run.ticks()
    assert ticks[0] >= geometry.run.low and ticks[-1] <= geometry.run.high
    assert all(b - a == pytest.approx(geometry.run.step) for a, b in itertools.pairwise(ticks))
    assert 0.0 in start.ticks()
