"""The one table of status words and colours."""

from __future__ import annotations

import re

import pytest

from netjobs_core.results import CommandStatus, HostState, TestStatus
from netjobs_core.vocabulary import COMMAND, HOST, TEST, color, command_word, exit_code_text, word


def test_every_status_has_a_word_and_a_colour() -> None:
    for enum, table in ((CommandStatus, COMMAND), (HostState, HOST), (TestStatus, TEST)):
        assert set(table) == set(enum)
        for status in enum:
            assert word(status) and re.fullmatch(r"#[0-9a-f]{6}", color(status))


def test_a_word_unlike_its_json_value_says_why() -> None:
    for enum, table in ((CommandStatus, COMMAND), (HostState, HOST), (TestStatus, TEST)):
        for status in enum:
            look = table[status]
            assert bool(look.unlike_json) == (look.word != status.value), status
    assert HostState.FAILED.value == "failed" and word(HostState.FAILED) == "error"
    assert "'failed'" in HOST[HostState.FAILED].unlike_json


def test_one_word_one_colour() -> None:
    """A word means one thing: wherever it appears, it has the same colour."""
    colours: dict[str, str] = {}
    for table in (COMMAND, HOST, TEST):
        for look in table.values():
            assert colours.setdefault(look.word, look.color) == look.color, look.word


def test_unreachable_host_and_nonzero_exit_differ() -> None:
    assert word(CommandStatus.FAILED) == word(TestStatus.FAILED) == "failed"
    assert word(HostState.FAILED) == word(CommandStatus.ERROR) == "error"
    # Same value, different enums: each keeps its own word.
    assert word(HostState.FAILED) != word(CommandStatus.FAILED)
    assert word(TestStatus.PENDING) == "not run" and word(CommandStatus.PENDING) == "pending"


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "0"), (4, "4"), (-15, "-15 (SIGTERM)"), (-9, "-9 (SIGKILL)"), (-200, "-200 (signal 200)")],
)
def test_exit_code_text_names_signals(code: int, text: str) -> None:
    assert exit_code_text(code) == text


def test_command_word_for_report_and_log() -> None:
    assert command_word(CommandStatus.OK, 0) == "OK (exit 0)"
    assert command_word(CommandStatus.FAILED, -15) == "FAILED (exit -15 (SIGTERM))"
    assert command_word(CommandStatus.TIMEOUT, None) == "TIMED OUT"
    assert command_word(CommandStatus.ERROR, None) == "ERROR"


def test_a_pass_with_problems_has_its_own_colour() -> None:
    from netjobs_core.vocabulary import verdict_color

    assert verdict_color(TestStatus.PASSED, False) == color(TestStatus.PASSED)
    assert verdict_color(TestStatus.PASSED, True) not in {color(s) for s in TestStatus}
    assert verdict_color(TestStatus.FAILED, True) == color(TestStatus.FAILED)
