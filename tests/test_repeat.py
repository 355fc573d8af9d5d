"""`--repeat N`: each test N times in a row, every repetition kept, a summary per test."""

import json
import os
import subprocess
import sys

import pytest

from netjobs_core.config import parse_config
from netjobs_core.repeats import repeat_stats, repetition_groups
from netjobs_core.report import format_repeats
from netjobs_core.results import ConcurrentWindow, TestResult, TestStatus
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def repetition(k, spread, window_s, exec_spread=None):
    window = None if window_s is None else ConcurrentWindow(0.0, window_s, window_s, window_s / 10)
    return TestResult(
        "t",
        None,
        status=TestStatus.PASSED,
        start_spread_ms=spread,
        exec_spread_ms=exec_spread,
        concurrent_window=window,
        repetition=k,
    )


def test_the_summary_has_the_median_and_max_spread_and_the_shortest_window():
    group = [repetition(1, 0.3, 9.0), repetition(2, 0.1, 9.5), repetition(3, 2.0, 8.0)]
    stats = repeat_stats(group)
    assert (stats.spread_median_ms, stats.spread_max_ms) == (0.3, 2.0)
    assert stats.window_min is group[2].concurrent_window
    assert format_repeats(group) == (
        "test 't' over 3 repetitions: released within median 0.300 ms, max 2.000 ms; "
        "when the commands began was not measured; "
        "concurrent window min 8.000 s (80.0 % of the longest command)"
    )
    group.append(repetition(4, None, None))  # never started everywhere
    assert format_repeats(group) == (
        "test 't' over 4 repetitions: released within median 0.300 ms, max 2.000 ms (of 3); "
        "when the commands began was not measured; in 1 of 4 the commands never all ran together"
    )
    assert format_repeats([TestResult("t", None)]) is None  # run once: nothing to add
    began = [repetition(1, 0.3, 9.0, 1.5), repetition(2, 0.1, 9.5, 1.2), repetition(3, 2.0, 8.0)]
    assert format_repeats(began) == (
        "test 't' over 3 repetitions: released within median 0.300 ms, max 2.000 ms; "
        "commands began within median 1.350 ms, max 1.500 ms (of 2); "
        "concurrent window min 8.000 s (80.0 % of the longest command)"
    )


def test_repetitions_are_grouped_by_test_in_run_order():
    tests = [repetition(1, 0.1, 1.0), repetition(2, 0.1, 1.0), TestResult("u", None)]
    tests += [repetition(1, 0.1, 1.0)]
    assert [len(g) for g in repetition_groups(tests)] == [2, 1, 1]


async def test_the_runner_repeats_each_test_in_a_row(agents, token):
    names = {f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}
    plan = parse_config(
        't:\n{a0}: "sleep 0.05"\n{a1}: "sleep 0.05"\nend\nu:\n{a2}: "exit 3"\nend\n'.format(
            **names
        ),
        "r.cfg",
    )
    options = RunOptions(token=token.token, connect_timeout=3.0, repeat=3)
    run = await Runner(plan, options).run()
    assert [(t.label, t.repetition) for t in run.tests] == [
        ("t", 1), ("t", 2), ("t", 3), ("u", 1), ("u", 2), ("u", 3)
    ]  # fmt: skip
    assert all(t.concurrent_window is not None for t in run.tests[:3])
    stopping = RunOptions(token=token.token, connect_timeout=3.0, repeat=3, stop_on_failure=True)
    run = await Runner(plan, stopping, None).run(["u"])
    assert [(t.label, t.repetition, t.status) for t in run.tests] == [
        ("u", 1, TestStatus.FAILED),
        ("u", 2, TestStatus.PENDING),  # not run, and said so
        ("u", 3, TestStatus.PENDING),
    ]
    assert format_repeats(run.tests).startswith("test 'u' over 1 repetition:")  # those that ran
    with pytest.raises(ValueError, match="repeat must be 1 or more"):
        Runner(plan, RunOptions(token=token.token, repeat=0))


def test_repeat_on_the_command_line(tmp_path, agents, token_file):
    cfg = tmp_path / "r.cfg"
    cfg.write_text(
        f't:\n127.0.0.1:{agents[0].port}: "echo x"\n127.0.0.1:{agents[1].port}: "echo x"\nend\n'
    )
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", "--repeat", "2", "--json", out,
         "--token-file", token_file, cfg],
        capture_output=True, text=True, timeout=60, env=os.environ, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test 't' (repetition 1): PASSED" in done.stdout
    assert "test 't' (repetition 2): PASSED" in done.stdout
    (summary,) = [line for line in done.stdout.splitlines() if "over 2 repetitions" in line]
    assert summary.startswith("test 't' over 2 repetitions: released within median ")
    assert "; commands began within median " in summary or "was not measured" in summary
    document = json.loads(out.read_text())
    assert [t["repetition"] for t in document["tests"]] == [1, 2]
    assert all(t["concurrent_window"] is None or t["concurrent_window"]["seconds"] > 0
               for t in document["tests"])  # fmt: skip
    bad = subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", "--repeat", "0", cfg],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "must be 1 or more" in bad.stderr
