"""The controller's event loop (netjobs_core/event_loop.py): uvloop when it is
installed, asyncio's own when not, and the kernel's arrival stamps through either."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from netjobs_core import event_loop
from netjobs_core.client import AgentLink
from netjobs_core.wire import rx_stamps
from netjobs_core.wire.address import Address

LATE_S = 0.05


def hold_the_event_loop(seconds: float) -> None:
    """Keep the calling event loop from reading anything for a while."""
    time.sleep(seconds)


async def _loop_name() -> str:
    return event_loop.loop_name(asyncio.get_running_loop())


def test_uvloop_runs_the_controller_when_it_is_installed():
    pytest.importorskip("uvloop")
    assert event_loop.run(_loop_name()) == "uvloop"


def test_without_uvloop_the_controller_runs_on_asyncio(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` fails
    assert event_loop.loop_factory() is None
    assert event_loop.run(_loop_name()) == "asyncio"


@pytest.mark.posix
@pytest.mark.skipif(rx_stamps.SO_TIMESTAMPNS is None, reason="no SO_TIMESTAMPNS here")
@pytest.mark.parametrize("loop", ["controller", "asyncio"])
def test_a_pong_read_late_keeps_its_kernel_stamp_on_either_loop(loop, agents, token, monkeypatch):
    """uvloop's transports read in C and drop the stamp: the channel reads its socket
    itself. A pong read 50 ms late still has its true round trip."""
    if loop == "asyncio":
        monkeypatch.setitem(sys.modules, "uvloop", None)

    async def ping_late() -> tuple[str, bool, int, float]:
        async with AgentLink(Address("127.0.0.1", agents[0].port), token.token.secret) as link:
            await link.connect(5)
            if not link.kernel_stamps:
                pytest.skip("this kernel (or sandbox) refuses SO_TIMESTAMPNS")
            for _ in range(20):  # Linux switches stamping on a while after it is asked
                await link.ping()
                if link.stamped:
                    break
                await asyncio.sleep(0.05)
            pinging = asyncio.create_task(link.ping())
            await asyncio.sleep(0)  # the ping is sent
            hold_the_event_loop(LATE_S)  # as other hosts' pongs would
            sample = await pinging
            return await _loop_name(), link.stamped, sample.rtt, sample.offset

    name, stamped, rtt, offset = event_loop.run(ping_late())
    if loop == "controller" and event_loop.loop_factory() is not None:
        assert name == "uvloop"
    assert stamped
    assert rtt < 5_000_000
    assert abs(offset) <= rtt / 2 + 50_000  # one machine, one clock: truly 0
