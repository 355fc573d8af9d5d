"""Run again only the hosts that did not do well (`--rerun-failed RUN`, the window's Re-run
Failed Hosts): a plan of the tests of a run that had such hosts, each with only their
commands."""

from __future__ import annotations

import dataclasses

from netjobs_core.config import Plan
from netjobs_core.results import CommandStatus, HostState, RunResult, TestResult
from netjobs_core.wire.address import Address

__all__ = ["failed_hosts", "failed_hosts_plan", "failed_in"]


def failed_hosts(test: TestResult) -> list[Address]:
    """The hosts that did not end `done` with every command OK, in the test's order."""
    return [
        host.address
        for host in test.hosts
        if host.state is not HostState.DONE
        or any(c.status is not CommandStatus.OK for c in host.commands)
    ]


def _last_ran(run: RunResult) -> dict[str, TestResult]:
    """Each test's last repetition that ran, by label. One not run has no hosts: after a
    failed repetition, --stop-on-failure leaves the next ones so, and the one that failed
    is what to run again."""
    return {test.label: test for test in run.tests if test.hosts}


def failed_in(run: RunResult) -> list[Address]:
    """The hosts that did not do well in the last repetition that ran of any test of
    `run`, first seen first."""
    last = _last_ran(run)
    return list(dict.fromkeys(a for test in last.values() for a in failed_hosts(test)))


def failed_hosts_plan(plan: Plan, run: RunResult) -> Plan | None:
    """`plan`'s tests that `run` ran with failed hosts (the last repetition of each that
    ran), each reduced to those hosts' commands; -minhosts N becomes at most their count.
    None when no host failed, or the plan no longer has them."""
    last = _last_ran(run)
    tests = []
    for spec in plan.tests:
        ran = last.get(spec.label)
        if ran is None:
            continue
        wanted = set(failed_hosts(ran))
        commands = tuple(c for c in spec.commands if c.address in wanted)
        if not commands:
            continue
        hosts = len({c.address for c in commands})
        minhosts = None if spec.minhosts is None else min(spec.minhosts, hosts)
        tests.append(dataclasses.replace(spec, commands=commands, minhosts=minhosts))
    return Plan(plan.path, tuple(tests)) if tests else None
