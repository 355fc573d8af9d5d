"""Reach and authenticate agents, measure them, run nothing (`netjobs check`, Check hosts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netjobs_core.client import AgentError, AgentLink, Dialer
from netjobs_core.probe import DEFAULT_CLOCK, ClockPolicy, probe
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import wall_anchor_ns
from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.tokens import Token


@dataclass
class HostCheck:
    address: Address
    reachable: bool = False
    authenticated: bool = False
    agent_version: str = ""
    hostname: str = ""
    platform: str = ""
    credential: str = ""  # what it authenticated with (a wire.sealing.Credential)
    busy: bool | None = None
    busy_with: str = ""  # the label of the test it runs
    busy_for: str = ""  # the address of that test's controller, as the agent sees it
    kept_s: float | None = None  # that controller went silent: its test kept this long
    realtime: bool | None = None  # it releases at real-time priority (None: not said)
    rtt_ms: float | None = None
    clock_offset_ms: float | None = None
    clock_uncertainty_ms: float | None = None  # of both offsets
    wall_clock_offset_ms: float | None = None  # agent wall clock minus ours
    error: str = ""

    @property
    def ok(self) -> bool:
        """Ready for a test: authenticated, measured, and not running another test."""
        return self.authenticated and not self.error and not self.busy


async def check_host(
    address: Address,
    token: Token,
    timeout: float = 5.0,
    dialer: Dialer | None = None,
    policy: ClockPolicy = DEFAULT_CLOCK,
) -> HostCheck:
    check = HostCheck(address)

    def authenticated() -> None:
        check.authenticated = True
        check.credential = link.credential or ""

    async with AgentLink(address, token.secret, dialer) as link:
        try:
            found = await probe(link, timeout, on_connected=authenticated, policy=policy)
        except AgentError as exc:
            check.error = str(exc)
        except (OSError, ProtocolError) as exc:  # one host's surprise must not lose the others
            check.error = f"unexpected failure: {exc}"
        else:
            estimate = found.estimate
            check.rtt_ms = estimate.rtt_ns / 1e6
            check.clock_offset_ms = estimate.offset_ns / 1e6
            check.clock_uncertainty_ms = estimate.uncertainty_ns / 1e6
            wall = estimate.wall_offset_ns(wall_anchor_ns())
            check.wall_clock_offset_ms = None if wall is None else wall / 1e6
            check.agent_version = found.version
            check.hostname = found.hostname
            check.platform = found.platform
            check.busy = found.busy
            check.busy_with = found.label
            check.busy_for = found.controller
            check.kept_s = found.kept
            check.realtime = found.realtime
        finally:
            check.reachable = link.tcp_connected
    return check


async def check_hosts(
    addresses: Sequence[Address],
    token: Token,
    timeout: float = 5.0,
    dialer: Dialer | None = None,
    on_result: Callable[[HostCheck], object] | None = None,
) -> list[HostCheck]:
    """Every host checked at once; `on_result` hears each as it is answered."""

    async def one(address: Address) -> HostCheck:
        check = await check_host(address, token, timeout, dialer)
        if on_result is not None:
            on_result(check)
        return check

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(address)) for address in addresses]
    return [task.result() for task in tasks]
