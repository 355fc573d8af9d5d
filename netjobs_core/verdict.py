"""A test's verdict and its reason text, from its results alone.

The one rule, as the 2.x README says: -minhosts is how many hosts must succeed
for the test to succeed; a host succeeds when every one of its commands exits
0. A test is ABORTED only when it was stopped (Ctrl-C, a signal) or its quorum
was lost while it ran; otherwise it PASSED when at least -minhosts hosts
succeeded, else FAILED. So `-minhosts 0` passes whatever its hosts did, whether
they failed, timed out or could not be reached: the reason says how many
succeeded. A test that would pass but whose outputs or collected files the
controller could not save (a full disk) is UNSAVED: evidence not kept is no pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from netjobs_core import nodesets, text
from netjobs_core.fold import said_once
from netjobs_core.results import CommandStatus, HostResult, HostState, TestStatus

# How the reason text words a command that did not exit 0 (one; several).
_PROBLEM_WORDS = {
    CommandStatus.FAILED: ("failed", "failed"),
    CommandStatus.TIMEOUT: ("timed out", "timed out"),
    CommandStatus.KILLED: ("killed", "killed"),
    CommandStatus.ERROR: ("could not run", "could not run"),
    CommandStatus.LOST: ("lost with its host", "lost with their hosts"),
}


def _problem_words(status: CommandStatus, n: int) -> str:
    """`1 command failed`, `1 command lost with its host`, `2 commands lost with their hosts`."""
    one, several = _PROBLEM_WORDS.get(status, (status.value, status.value))
    return f"{text.count(n, 'command')} {one if n == 1 else several}"


def minhosts_text(minhosts: int | None, required: int) -> str:
    """`-minhosts` as the reason texts write it."""
    return "all" if minhosts is None else str(required)


def quorum_lost_reason(
    good: int, total: int, minhosts: int | None, required: int, lost: Sequence[HostResult]
) -> str:
    """Why a test was aborted: which hosts it lost, and for what (one error of many
    hosts once, after their node set)."""
    why = "; ".join(
        f"{nodesets.fold(host.target for host in hosts)}: {error or 'a command timed out'}"
        for hosts, error in said_once((h, text.beside_host(h.error, h.address)) for h in lost)
    )
    return (
        f"quorum lost because {why} ({good} of {text.count(total, 'host')} left, "
        f"-minhosts {minhosts_text(minhosts, required)})"
    )


def refused_everywhere_reason(hosts: Sequence[HostResult]) -> str:
    """Why a run stops after a test whose every host refused our credentials: one
    sentence, each distinct refusal once after its node set."""
    why = "; ".join(
        f"{nodesets.fold(host.target for host in refused)}: {error}"
        for refused, error in said_once((host, host.error) for host in hosts)
    )
    return f"every host refused our credentials, so no further test is started ({why})"


ABORTED = "test aborted"  # what the folded report says in place of the test's abort reason


def aborted_text(reason: str) -> str:
    """What a host that was fine says when another's failure (or a stop) aborted its test."""
    return f"{ABORTED}: {reason}"


def verdict(
    hosts: Sequence[HostResult],
    minhosts: int | None,
    required: int,
    *,
    abort_reason: str = "",
) -> tuple[TestStatus, str]:
    """(status, reason) of a test that has ended.

    `abort_reason`: why the test was aborted (quorum lost, stopped), "" if it was not.
    """
    if abort_reason:
        return TestStatus.ABORTED, abort_reason
    problems: Counter[CommandStatus] = Counter()
    succeeded = 0
    for host in hosts:
        bad = [c.status for c in host.commands if c.status is not CommandStatus.OK]
        succeeded += not bad and host.state is HostState.DONE
        problems.update(bad)
    status = TestStatus.PASSED if succeeded >= required else TestStatus.FAILED
    reasons = []
    if problems:
        words = ", ".join(_problem_words(s, n) for s, n in problems.items())
        reasons.append(
            f"{succeeded} of {text.count(len(hosts), 'host')} succeeded "
            f"(-minhosts {minhosts_text(minhosts, required)}); {words}"
        )
    if status is TestStatus.PASSED:
        unsaved = [(host, c) for host in hosts for c in host.commands if c.unsaved]
        if unsaved:
            status = TestStatus.UNSAVED
            host, command = unsaved[0]
            reasons.append(text.not_saved(len(unsaved), host.target, command.unsaved[0]))
    return status, "; ".join(reasons)
