"""`--rerun-failed RUN`: the same plan again, on the hosts that did not succeed in RUN."""

from __future__ import annotations

import dataclasses

from netjobs_core.config import Plan
from netjobs_core.results import CommandStatus, HostState, RunResult
from netjobs_core.wire.address import Address

__all__ = ["failed_hosts", "on_hosts"]

_FAILED_STATES = (HostState.FAILED, HostState.TIMEOUT, HostState.KILLED)


def failed_hosts(run: RunResult) -> list[Address]:
    """The hosts that failed or timed out in any test of `run` (a command that did not
    exit 0, or the host itself failed: unreachable, lost, killed), first seen first."""
    failed = [
        host.address
        for test in run.tests
        for host in test.hosts
        if host.state in _FAILED_STATES
        or any(c.status.finished and c.status is not CommandStatus.OK for c in host.commands)
    ]
    return list(dict.fromkeys(failed))


def on_hosts(plan: Plan, hosts: list[Address]) -> Plan:
    """`plan` with each test's commands on `hosts` only; a test with none is left out,
    and -minhosts is at most the hosts left."""
    keep = set(hosts)
    tests = []
    for test in plan.tests:
        commands = tuple(c for c in test.commands if c.address in keep)
        if not commands:
            continue
        left = len(dict.fromkeys(c.address for c in commands))
        minhosts = None if test.minhosts is None else min(test.minhosts, left)
        tests.append(dataclasses.replace(test, commands=commands, minhosts=minhosts))
    return dataclasses.replace(plan, tests=tuple(tests))
