"""Metrics from output: `-metric` regexes, fio and iperf3 documents, the test's summary."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netjobs_core import text
from netjobs_core.builtin_metrics import DocumentError, read_document
from netjobs_core.config import ConfigError, parse_config
from netjobs_core.metric_spec import read_number
from netjobs_core.metrics import OVERLAP, WINDOW, last_match, measure_test, summarize
from netjobs_core.outputs import Output
from netjobs_core.results import (
    Collected,
    CommandResult,
    HostResult,
    MetricSummary,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import run_from_json, run_to_json
from netjobs_core.wire.address import DEFAULT_PORT, Address

DATA = Path(__file__).parent / "data" / "metrics"


def document(name: str) -> bytes:
    return (DATA / name).read_bytes()


# -- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("480", 480.0),
        ("1.5GiB/s", 1.5 * 2**30),
        ("1.5 GiB/s", 1.5 * 2**30),
        ("940 Mbits/sec", 940e6),
        ("3 kB", 3e3),
        ("3K", 3e3),
        ("2Ki", 2048.0),
        ("7 Ti", 7 * 2.0**40),
        ("12 ms", 12.0),  # m is no suffix: the unit word is ignored
        ("9 Tasks", 9.0),  # a suffix is one only before B, b or no letter
        ("-2.5e3 ops", -2500.0),
        (" .5 ", 0.5),
    ],
)
def test_a_number_is_read_with_its_suffix_and_without_its_unit(written, value):
    assert read_number(written) == pytest.approx(value)


@pytest.mark.parametrize(
    "written", ["", "n/a", "fast", "1 2", "inf", "0x10", "1e999", "9" * 400, "1e308 Ti"]
)
def test_what_is_no_number_reads_none(written):
    assert read_number(written) is None


# -- the config ------------------------------------------------------------------------


def test_metrics_of_the_test_and_of_a_target():
    plan = parse_config(
        "t:\n"
        "-metric: rate = ([0-9.]+ [KMG]iB/s)\n"
        'a: "one"\n'
        "-metric: lat_ns = lat=([0-9]+) # a '#' belongs to the regex\n"
        'b[1-2]: "two"\n'
        "end\n",
        "m.cfg",
    )
    first, second, third = plan.tests[0].commands
    assert [m.name for m in first.metrics] == ["rate", "lat_ns"]
    assert first.metrics[1].pattern.pattern == "lat=([0-9]+) # a '#' belongs to the regex"
    assert first.metrics[1].line == 4
    assert [m.name for m in second.metrics] == [m.name for m in third.metrics] == ["rate"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-metric: rate", "expected 'NAME = REGEX'"),
        ("-metric: = (x)", "expected 'NAME = REGEX'"),
        ("-metric: bad-name = (x)", "bad metric name 'bad-name'"),
        ("-metric: r =", "metric 'r' has no regular expression"),
        ("-metric: r = ([0-9]+", "metric 'r': bad regular expression: missing )"),
        ("-metric: r = [0-9]+", "exactly one capture group '(...)', not 0"),
        ("-metric: r = (a)(b)", "exactly one capture group '(...)', not 2"),
        # The CSV has a column of these names already: a second would shadow it.
        ("-metric: elapsed_s = ([0-9.]+)", "metric name 'elapsed_s' is a column of the CSV"),
        ("-metric: Status = (x)", "metric name 'Status' is a column of the CSV already (run,"),
    ],
)
def test_a_bad_metric_is_an_error_at_its_line(line, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(f't:\na: "x"\n{line}\nend\n', "m.cfg")
    assert str(caught.value).startswith("m.cfg:3: -metric: ")
    assert message in str(caught.value)


def test_a_metric_named_twice_for_the_same_commands_is_an_error():
    with pytest.raises(ConfigError, match=r"m.cfg:4: metric 'r' given twice .* line 2"):
        parse_config('t:\n-metric: r = (x)\na: "x"\n-metric: r = (y)\nend\n', "m.cfg")
    # Two targets may each have their own.
    plan = parse_config('t:\na: "x"\n-metric: r = (x)\nb: "y"\n-metric: r = (y)\nend\n')
    assert [c.metrics[0].pattern.pattern for c in plan.tests[0].commands] == ["(x)", "(y)"]


def test_the_cli_refuses_a_bad_regex_with_exit_2(tmp_path, capsys):
    from netjobs_core.cli import main

    config = tmp_path / "bad.cfg"
    config.write_text('t:\n127.0.0.1: "x"\n-metric: r = ((\nend\n')
    assert main(["-s", str(config)]) == 2
    assert f"{config}:3: -metric: metric 'r': bad regular expression" in capsys.readouterr().err


# -- regexes over outputs of any size ----------------------------------------------------


def spooled(tmp_path: Path, data: bytes, keep: int = 1024) -> Output:
    output = Output(tmp_path / "cmd0.stdout", keep=keep)
    for start in range(0, len(data), 100_000):
        output.append(data[start : start + 100_000])
    output.close()
    return output


def test_the_last_match_of_an_output_larger_than_memory_holds(tmp_path, monkeypatch):
    lines = b"".join(b"step %d rate %d MiB/s\n" % (i, i) for i in range(200_000))
    assert len(lines) > 3 * WINDOW
    output = spooled(tmp_path, lines)
    assert not output.whole_in_memory

    def whole(self: Output) -> bytes:
        raise AssertionError("the output was loaded whole")

    monkeypatch.setattr(Output, "read_bytes", whole)
    assert last_match(output, re.compile(r"rate (\d+ MiB/s)")) == "199999 MiB/s"
    assert last_match(output, re.compile(r"step (7\d{4}) ")) == "79999"
    assert last_match(output, re.compile(r"never (\d+)")) is None


def test_a_match_across_a_window_boundary_is_found_whole(tmp_path):
    filler = b"x" * (WINDOW - 10) + b"\n"
    data = filler + b"total: 123456789 B\n" + b"y" * 100 + b"\n"
    output = spooled(tmp_path, data)
    assert last_match(output, re.compile(r"total: (\d+)")) == "123456789"
    # A multi-byte character cut by the window boundary is decoded whole.
    data = b"z" * (WINDOW - 1) + "é rate=5\n".encode()
    assert last_match(spooled(tmp_path, data), re.compile(r"(é) rate")) == "é"
    assert OVERLAP < WINDOW


# -- fio and iperf3 ------------------------------------------------------------------------


def test_fio_json_sums_its_jobs_and_takes_the_largest_p99():
    assert read_document(document("fio-randrw.json")) == {
        "read_bw": 76434102 + 76233499,
        "read_iops": pytest.approx(18660.669665 + 18611.694153),
        "read_clat_p99_ns": 129536,
        "write_bw": 76419774 + 76671552,
        "write_iops": pytest.approx(18657.171414 + 18718.64068),
        "write_clat_p99_ns": 8256,
    }


def test_fio_json_plus_and_a_direction_without_io_or_percentiles():
    assert read_document(document("fio-read-jsonplus.json")) == {
        "read_bw": 2006344375,
        "read_iops": 30614.385614,
        "read_clat_p99_ns": 1269760,
    }
    # --clat_percentiles=0: no p99, rather than a zero.
    assert read_document(document("fio-write-nopercentiles.json")) == {
        "write_bw": 2612405066,
        "write_iops": 19931.068931,
    }
    # --percentile_list=50:95: percentiles, but no 99th; the other figures stand.
    assert read_document(document("fio-randread-percentile-list.json")) == {
        "read_bw": 127100121,
        "read_iops": 31030.30303,
    }


def test_text_around_a_fio_document_is_skipped():
    data = b"note: a warning first\n" + document("fio-randrw.json") + b"\nRun status group 0\n"
    metrics = read_document(data)
    assert metrics is not None and metrics["read_clat_p99_ns"] == 129536


def test_iperf3_json_of_tcp_and_udp():
    assert read_document(document("iperf3-client.json")) == {
        "sent_bps": 21444063861.131184,
        "received_bps": 21404735969.699238,
    }
    assert read_document(document("iperf3-udp-client.json")) == {
        "sent_bps": 10222695.957363838,
        "received_bps": 10222082.68759686,
    }
    with pytest.raises(DocumentError, match="iperf3 reported an error: unable to connect"):
        read_document(document("iperf3-refused.json"))


def test_other_outputs_are_no_document():
    assert read_document(b"") is None
    assert read_document(b'{"jobs": []}') is None
    assert read_document(b"fio-3.33\nread: IOPS=18.7k, BW=72.9MiB/s\n") is None


def test_a_truncated_or_foreign_fio_document_is_a_document_error():
    whole = document("fio-randrw.json")
    with pytest.raises(DocumentError, match="a fio JSON document cut off or damaged"):
        read_document(whole[: len(whole) // 2])
    foreign = json.loads(whole)
    del foreign["jobs"][0]["read"]["bw_bytes"]  # as fio 2.x spelled it: "bw" in KiB/s
    foreign["fio version"] = "fio-2.2.10"
    with pytest.raises(DocumentError, match=r"of fio-2\.2\.10 this NetJobs cannot read"):
        read_document(json.dumps(foreign).encode())
    huge = json.loads(whole)
    huge["jobs"][0]["read"]["io_bytes"] = 10**400  # no float holds it: no crash, a warning
    with pytest.raises(DocumentError, match="out of a float's range"):
        read_document(json.dumps(huge).encode())


# -- a test's metrics ------------------------------------------------------------------------


def command(stdout: bytes, **kwargs) -> CommandResult:
    return CommandResult("run", stdout=Output.from_bytes(stdout), **kwargs)


def fleet(*outputs: bytes) -> TestResult:
    test = TestResult("t", None)
    for i, stdout in enumerate(outputs):
        address = Address(f"10.0.0.{i + 1}", DEFAULT_PORT)
        test.hosts.append(HostResult(address, commands=[command(stdout)]))
    return test


def specs_of(test: TestResult, config: str) -> list[list]:
    (spec,) = parse_config(config).tests
    return [[spec.commands[0]] * len(h.commands) for h in test.hosts]


def test_a_host_without_a_match_is_left_out_never_zero():
    test = fleet(b"rate 512 MiB/s\n", b"rate 480MiB/s\n", b"crashed\n", b"rate 494 MiB/s\n")
    measure_test(test, specs_of(test, 't:\n-metric: read_bw = rate (\\S+ ?MiB/s)\na: "x"\nend\n'))
    assert [h.commands[0].metrics for h in test.hosts] == [
        {"read_bw": 512 * 2**20},
        {"read_bw": 480 * 2**20},
        {},
        {"read_bw": 494 * 2**20},
    ]
    (summary,) = test.metrics.values()
    assert summary == MetricSummary(1486 * 2**20, 480 * 2**20, 494 * 2**20, 512 * 2**20, 3)
    assert text.metric_line("read_bw", summary) == (
        "read_bw: 1.45 GiB/s in all over 3 hosts (min 480 MiB/s, median 494 MiB/s, max 512 MiB/s)"
    )


def test_a_match_that_is_no_number_is_a_warning_naming_the_host():
    test = fleet(b"rate fast\n")
    measure_test(test, specs_of(test, 't:\n-metric: r = rate (\\S+)\na: "x"\nend\n'))
    assert test.hosts[0].commands[0].metrics == {} and test.metrics == {}
    assert test.hosts[0].commands[0].warnings == [
        "10.0.0.1: metric 'r': 'fast' is not a number: left out"
    ]


def test_fio_stdout_and_a_collected_document_and_a_truncated_one(tmp_path):
    collected = tmp_path / "iperf3.json"
    collected.write_bytes(document("iperf3-client.json"))
    whole = document("fio-randrw.json")
    test = fleet(whole, whole[:5000])
    test.hosts[0].commands[0].collected.append(
        Collected("/tmp/*.json", collected, collected.stat().st_size, "0" * 64)
    )
    measure_test(test, specs_of(test, 't:\na: "x"\nend\n'))
    first, cut = (h.commands[0] for h in test.hosts)
    assert set(first.metrics) == {
        "read_bw", "read_iops", "read_clat_p99_ns", "write_bw", "write_iops",
        "write_clat_p99_ns", "sent_bps", "received_bps",
    }  # fmt: skip
    assert cut.metrics == {}
    (warning,) = cut.warnings
    assert warning.startswith("10.0.0.2: stdout is a fio JSON document cut off or damaged")
    assert test.metrics["read_bw"].hosts == 1


def test_a_config_metric_wins_over_a_built_in_one_of_its_name():
    test = fleet(b"note read_bw=7\n" + document("fio-randrw.json"))
    measure_test(test, specs_of(test, 't:\n-metric: read_bw = read_bw=(\\d+)\na: "x"\nend\n'))
    assert test.hosts[0].commands[0].metrics["read_bw"] == 7
    assert test.hosts[0].commands[0].metrics["write_iops"] > 0


def test_a_hosts_commands_add_up_before_the_summary():
    test = fleet(b"n=1\n", b"n=5\n")
    test.hosts[0].commands.append(command(b"n=2\n"))
    (spec,) = parse_config('t:\n-metric: n = n=(\\d)\na: "x"\nend\n').tests
    measure_test(test, [[spec.commands[0]] * 2, [spec.commands[0]]])
    assert summarize(test.hosts) == {"n": MetricSummary(8, 3, 4, 5, 2)}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(  # hosts: each a list of commands, each a dict of metrics
        st.lists(
            st.dictionaries(
                st.sampled_from(["read_bw", "read_clat_p99_ns", "n", "ops"]),
                st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e9, 1e9)),
                max_size=4,
            ),
            min_size=1,
            max_size=3,
        ),
        max_size=8,
    )
)
def test_the_summary_is_each_hosts_figure_over_the_hosts_that_have_it(hosts):
    """Against the summary written out plainly: a host's commands add up (a percentile:
    the largest), hosts without a metric are left out, names in the order first seen."""
    test = TestResult("t", None)
    for i, metrics in enumerate(hosts):
        commands = [command(b"", metrics=dict(m)) for m in metrics]
        test.hosts.append(HostResult(Address(f"10.0.0.{i + 1}", DEFAULT_PORT), commands=commands))
    per_host: dict[str, list[float]] = {}
    for metrics in hosts:
        figures: dict[str, float] = {}
        for found in metrics:
            for name, value in found.items():
                if name not in figures:
                    figures[name] = value
                elif name.endswith("_p99_ns"):
                    figures[name] = max(figures[name], value)
                else:
                    figures[name] += value
        for name, value in figures.items():
            per_host.setdefault(name, []).append(value)
    summary = summarize(test.hosts)
    assert list(summary) == list(per_host)
    for name, values in per_host.items():
        assert summary[name] == MetricSummary(
            sum=pytest.approx(sum(values)),
            min=min(values),
            median=pytest.approx(statistics.median(values)),
            max=max(values),
            hosts=len(values),
        )
        assert all(isinstance(v, float) for v in (summary[name].sum, summary[name].min))


def test_metrics_round_trip_through_the_results_document():
    test = fleet(b"n=1\n")
    measure_test(test, specs_of(test, 't:\n-metric: n = n=(\\d)\na: "x"\nend\n'))
    run = RunResult("c.cfg", tests=[test])
    document_ = run_to_json(run)
    assert document_["tests"][0]["metrics"] == {
        "n": {"sum": 1, "min": 1, "median": 1, "max": 1, "hosts": 1, "hosts_failed": 0}
    }
    assert document_["tests"][0]["hosts"][0]["commands"][0]["metrics"] == {"n": 1}
    again = run_from_json(json.loads(json.dumps(document_)))
    assert again.tests[0].metrics == test.metrics
    assert again.tests[0].hosts[0].commands[0].metrics == {"n": 1}


def test_units_follow_the_name():
    assert text.metric_value("read_bw", 1.5 * 2**30) == "1.50 GiB/s"
    assert text.metric_value("sent_bps", 9.41e9) == "9.41 Gbit/s"
    assert text.metric_value("read_clat_p99_ns", 127488) == "127 µs"
    assert text.metric_value("size_bytes", 512) == "512 B"
    assert text.metric_value("read_iops", 18660.6) == "18.7 k"
    assert text.metric_value("score", 42) == "42"
    assert text.metric_repeats_line("read_bw", [2**30, 3 * 2**30], 3) == (
        "read_bw over 3 repetitions (in 2): median 2.00 GiB/s in all, from 1.00 GiB/s to 3.00 GiB/s"
    )


# -- a latency percentile does not add up ----------------------------------------------


def test_a_percentile_is_the_largest_never_a_sum(tmp_path):
    """Two hosts' p99 latencies (one host with two commands): the hosts' figure is the
    worst p99, in the report, the summary, the repetitions' line and the history."""
    from netjobs_core.history import History, record_run
    from netjobs_core.metrics import fleet_figure, summarize
    from netjobs_core.report import format_repeats
    from netjobs_core.results import RunResult

    test = fleet(b"", b"")
    test.hosts[0].commands[0].metrics = {"read_clat_p99_ns": 120_000.0, "read_bw": 1e8}
    second = command(b"")
    second.metrics = {"read_clat_p99_ns": 250_000.0, "read_bw": 2e8}
    test.hosts[0].commands.append(second)  # this host's p99: the larger of its two
    test.hosts[1].commands[0].metrics = {"read_clat_p99_ns": 130_000.0, "read_bw": 3e8}
    test.metrics = summarize(test.hosts)
    p99 = test.metrics["read_clat_p99_ns"]
    assert (p99.min, p99.max, p99.hosts) == (130_000.0, 250_000.0, 2)
    assert fleet_figure("read_clat_p99_ns", p99) == 250_000.0
    assert fleet_figure("read_bw", test.metrics["read_bw"]) == 6e8
    assert text.metric_line("read_clat_p99_ns", p99) == (
        "read_clat_p99_ns: up to 250 µs over 2 hosts (min 130 µs, median 190 µs)"
    )
    assert text.metric_line("read_bw", test.metrics["read_bw"]).startswith(
        "read_bw: 572 MiB/s in all over 2 hosts"
    )
    summary = ", ".join(text.summary_parts(test))
    assert "read_clat_p99_ns up to 250 µs over 2 hosts" in summary
    assert "read_bw 572 MiB/s in all over 2 hosts" in summary
    again = fleet(b"")
    again.hosts[0].commands[0].metrics = {"read_clat_p99_ns": 100_000.0}
    again.metrics = summarize(again.hosts)
    test.repetition, again.repetition = 1, 2
    test.status = again.status = TestStatus.PASSED  # run: a repetition not run is not counted
    assert "read_clat_p99_ns over 2 repetitions: median 175 µs at the worst host, from 100 µs" in (
        format_repeats([test, again]) or ""
    )
    run = RunResult("fio.cfg", "20261205-050000-abcd", tests=[test])
    path = tmp_path / "history.sqlite3"
    assert record_run(run, None, path) is None
    with History(path) as history:
        (kept,) = history.find(run.run_id).tests
    assert ("read_clat_p99_ns", 250_000.0, 2) in kept.metrics
    assert "read_clat_p99_ns up to 250 µs over 2 hosts" in text.test_record_line(kept)
