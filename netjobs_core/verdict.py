"""A test's verdict and its reason text, from its results alone.

As the 2.x README says: -minhosts is how many hosts must succeed for the test
to succeed; a host succeeds when every one of its commands exits 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from netjobs_core.results import CommandStatus, HostResult, HostState, TestStatus

NO_HOST_PREPARED = "no host could be prepared"

# How the reason text words a command that did not exit 0.
_PROBLEM_WORDS = {
    CommandStatus.FAILED: "failed",
    CommandStatus.TIMEOUT: "timed out",
    CommandStatus.KILLED: "killed",
    CommandStatus.ERROR: "could not run",
    CommandStatus.LOST: "lost with their host",
}


def minhosts_text(minhosts: int | None, required: int) -> str:
    """`-minhosts` as the reason texts write it."""
    return "all" if minhosts is None else str(required)


def quorum_lost_reason(
    good: int, total: int, minhosts: int | None, required: int, lost: Sequence[str]
) -> str:
    return (
        f"quorum lost: {good} of {total} hosts left, -minhosts {minhosts_text(minhosts, required)} "
        f"(lost: {', '.join(lost)})"
    )


def verdict(
    hosts: Sequence[HostResult],
    minhosts: int | None,
    required: int,
    *,
    abort_reason: str = "",
    prepared: int,
) -> tuple[TestStatus, str]:
    """(status, reason) of a test that has ended.

    `abort_reason`: why the test was aborted (quorum lost, stopped), "" if it was
    not; `prepared`: how many hosts were prepared and could have been started.
    """
    if abort_reason:
        return TestStatus.ABORTED, abort_reason
    # With -minhosts 0 the quorum never fails: a test whose hosts all failed
    # passes, but one where none could even be prepared is aborted (issue 8).
    if not prepared:
        return TestStatus.ABORTED, NO_HOST_PREPARED
    problems: Counter[CommandStatus] = Counter()
    succeeded = 0
    for host in hosts:
        bad = [c.status for c in host.commands if c.status is not CommandStatus.OK]
        succeeded += not bad and host.state is HostState.DONE
        problems.update(bad)
    status = TestStatus.PASSED if succeeded >= required else TestStatus.FAILED
    if not problems:
        return status, ""
    words = ", ".join(
        f"{n} command{'s' if n > 1 else ''} {_PROBLEM_WORDS.get(s, s.value)}"
        for s, n in problems.items()
    )
    return status, (
        f"{succeeded} of {len(hosts)} hosts succeeded "
        f"(-minhosts {minhosts_text(minhosts, required)}); {words}"
    )
