"""What the CLI, the demo and the GUI share (netjobs_core.session)."""

import subprocess
import sys

import pytest

from netjobs_core.config import parse_config
from netjobs_core.results import RunResult, TestResult, TestStatus
from netjobs_core.results_json import load_json
from netjobs_core.session import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    exit_code,
    plan_addresses,
    read_plan,
    read_token,
    save_results,
)
from netjobs_core.wire.address import Address


def test_plan_addresses_once_each_in_config_order():
    plan = parse_config(
        't:\nb: "x"\na:16200: "x"\nb: "y"\nend\nu:\n[::1]: "x"\na:16200: "x"\nc: "x"\nend\n',
        "p.cfg",
    )
    assert plan_addresses(plan) == [
        Address("b"),
        Address("a", 16200),
        Address("::1"),
        Address("c"),
    ]


def test_unreadable_config_and_missing_token_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot read the file"):
        read_plan(tmp_path / "missing.cfg")
    with pytest.raises(UsageError):
        read_token(tmp_path / "no-token")


def test_exit_code_needs_tests_that_all_passed():
    run = RunResult("p.cfg")
    assert exit_code(run) == EXIT_FAILED  # stopped before the first test
    run.tests.append(TestResult("t", None, status=TestStatus.PASSED))
    assert exit_code(run) == EXIT_OK
    run.tests.append(TestResult("u", None, status=TestStatus.ABORTED))
    assert exit_code(run) == EXIT_FAILED


def test_save_results_of_an_untitled_config_puts_the_logs_beside_the_json(tmp_path):
    run = RunResult("")
    run.tests.append(TestResult("t", None, status=TestStatus.PASSED, started_at=1.0e9))
    written = save_results(run, tmp_path / "out.json")
    assert written[-1] == tmp_path / "out.json"
    assert [p.parent for p in written] == [tmp_path, tmp_path]
    assert load_json(tmp_path / "out.json").tests[0].label == "t"


def test_save_results_writes_the_logs_into_the_chosen_folder(tmp_path):
    """Not beside the config: where the user asked (the log still names its config)."""
    config = tmp_path / "plans" / "bench.cfg"
    run = RunResult(str(config))
    run.tests.append(TestResult("t", None, status=TestStatus.PASSED, started_at=1.0e9))
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    log, document = save_results(run, chosen / "out.json")
    assert log.parent == chosen and log.name.startswith("bench.cfg_t_")
    assert f"from {config}" in log.read_text()
    assert document == chosen / "out.json"


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("netjobs_core.demo", "netjobs_core.cli"),  # no cli <-> demo circle
        ("netjobs_core.session", "rich"),  # the GUI uses session, never rich
        ("netjobs_core.session", "PySide6"),
    ],
)
def test_imports_stay_one_way(module, absent):
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
