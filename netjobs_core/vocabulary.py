"""How each status is shown: one word and one colour per value, for every display.

The terminal report, the text logs and the GUI all take their words from here
(the report and the logs in capitals), so a host that could not be reached and
a command that exited non-zero never share a word. The JSON keeps the enum
values; this table is only for people. Where a word is not its value (a host's
`failed` reads `error`), its `Look` says why, in `unlike_json`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from netjobs_core.results import CommandStatus, HostState, TestStatus

Status = CommandStatus | HostState | TestStatus

GREY = "#6b7280"
BLUE = "#2563eb"
DARK_BLUE = "#1d4ed8"
GREEN = "#15803d"
ORANGE = "#c2410c"
AMBER = "#b45309"
RED = "#b91c1c"
ROSE = "#9f1239"
PURPLE = "#7e22ce"


@dataclass(frozen=True)
class Look:
    word: str
    color: str
    unlike_json: str = ""  # why `word` is not the value the JSON keeps; "" when it is
    plural: str = ""  # after a count above one, when the word is a noun (`2 errors`)


_PHRASE = "a status in a sentence ('2 timed out'); the JSON keeps the one-word value"


# Separate tables per enum: StrEnum members of different enums with one value
# ("failed") are equal as dict keys.
COMMAND: dict[CommandStatus, Look] = {
    CommandStatus.PENDING: Look("pending", GREY),
    CommandStatus.RUNNING: Look("running", DARK_BLUE),
    CommandStatus.OK: Look("ok", GREEN),
    CommandStatus.FAILED: Look("failed", RED),  # ran, exited non-zero or died of a signal
    CommandStatus.TIMEOUT: Look("timed out", ORANGE, _PHRASE),
    CommandStatus.KILLED: Look("killed", PURPLE),
    # could not run, or its end was not reported
    CommandStatus.ERROR: Look("error", ROSE, plural="errors"),
    CommandStatus.LOST: Look("lost", ORANGE),  # ran, but its host was lost: end unknown
}

HOST: dict[HostState, Look] = {
    HostState.CONNECTING: Look("connecting", GREY),
    HostState.SYNCING: Look("syncing", GREY),
    HostState.PREPARING: Look("preparing", GREY),
    HostState.READY: Look("ready", BLUE),
    HostState.RUNNING: Look("running", DARK_BLUE),
    HostState.DONE: Look("done", GREEN),
    HostState.TIMEOUT: Look("timed out", ORANGE, _PHRASE),
    HostState.FAILED: Look(
        "error",
        ROSE,
        "unreachable, refused, lost: on screen not the 'failed' of a command that exited "
        "non-zero; the JSON keeps 'failed', as every results.json written so far",
        plural="errors",
    ),
    HostState.KILLED: Look("killed", PURPLE),
}

TEST: dict[TestStatus, Look] = {
    TestStatus.PENDING: Look(
        "not run", GREY, "what a pending test is once its run ended; the JSON keeps 'pending'"
    ),
    TestStatus.RUNNING: Look("running", DARK_BLUE),
    TestStatus.PASSED: Look("passed", GREEN),
    TestStatus.FAILED: Look("failed", RED),
    TestStatus.ABORTED: Look("aborted", PURPLE),
    TestStatus.UNSAVED: Look(
        "passed, output not saved",
        ROSE,
        "a pass whose output or files the controller could not save is no pass; "
        "the JSON keeps 'unsaved'",
    ),
}

_TABLES: dict[type, dict] = {CommandStatus: COMMAND, HostState: HOST, TestStatus: TEST}


def look(status: Status) -> Look:
    return _TABLES[type(status)][status]


def word(status: Status) -> str:
    return look(status).word


def counted(status: Status, n: int) -> str:
    """`1 error`, `2 errors`, `2 timed out`: a count of a status."""
    found = look(status)
    return f"{n} {found.plural if n != 1 and found.plural else found.word}"


def color(status: Status) -> str:
    return look(status).color


def verdict_color(status: TestStatus, has_problems: bool) -> str:
    """A test's colour; a pass that `-minhosts` allowed over failed commands is amber."""
    return AMBER if status is TestStatus.PASSED and has_problems else color(status)


def exit_code_text(code: int) -> str:
    """`0`, `4`, or `-15 (SIGTERM)`: a negative code is the signal that ended the process."""
    if code >= 0:
        return str(code)
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"{code} (signal {-code})"
    return f"{code} ({name})"


def _exit_part(exit_code: int | None) -> str:
    return "" if exit_code is None else f" (exit {exit_code_text(exit_code)})"


def command_word(status: CommandStatus, exit_code: int | None) -> str:
    """The report's and the log's status of a command: `FAILED (exit -9 (SIGKILL))`."""
    return word(status).upper() + _exit_part(exit_code)


def command_said(status: CommandStatus, exit_code: int | None) -> str:
    """A command's status as the GUI's views say it, in their words (`killed`, not the
    report's capitals): `killed (exit -15 (SIGTERM))`."""
    return word(status) + _exit_part(exit_code)
