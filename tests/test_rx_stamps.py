"""The kernel's receive stamps (netjobs_core/wire/rx_stamps.py), on real sockets, and
what they do for a clock ping to a real agent whose pong is read late, or which is
stopped while its ping arrives."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from agent_harness import start_agent

from netjobs_core.client import AgentLink, TcpChannel
from netjobs_core.probe import DEFAULT_CLOCK, measure_clock, probe
from netjobs_core.wire import rx_stamps
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.framing import FrameDecoder
from tests.loopback import serving

pytestmark = pytest.mark.skipif(
    rx_stamps.SO_TIMESTAMPNS is None, reason="no SO_TIMESTAMPNS on this platform"
)

LATE_S = 0.05


def hold_the_event_loop(seconds: float) -> None:
    """Keep the calling event loop from reading anything for a while."""
    time.sleep(seconds)


def _pair() -> tuple[socket.socket, socket.socket]:
    listener = rx_stamps.stream_socket(socket.AF_INET)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with listener:
        client = rx_stamps.stream_socket(socket.AF_INET)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return client, server


@pytest.fixture(scope="module", autouse=True)
def stamps_on() -> Iterator[None]:
    """Linux stamps arriving packets only while some socket asks for stamps, and turns
    stamping on a short while after the first one asks (a deferred switch): on a fresh
    machine the first reads come without a stamp (11 of 40 in one measurement). The
    product falls back to its own clock reading then; these tests are about the
    stamps, so they hold one stamped socket open and wait until its reads carry them."""
    client, server = _pair()
    with client, server:
        if not getattr(server, "stamping", False):
            pytest.skip("this kernel (or sandbox) refuses SO_TIMESTAMPNS")
        server.settimeout(5)
        deadline = time.monotonic() + 10
        while True:
            client.sendall(b"x")
            assert server.recv(1) == b"x"
            if rx_stamps.arrival_ns(server) is not None:
                break
            assert time.monotonic() < deadline, "no receive stamp from the kernel within 10 s"
            time.sleep(0.01)
        yield


def test_the_stamp_is_when_the_bytes_arrived_not_when_they_were_read():
    client, server = _pair()
    with client, server:
        assert isinstance(server, rx_stamps.StampedSocket)  # accept() keeps the class
        sent = now_ns()
        client.sendall(b"ping")
        time.sleep(LATE_S)
        read = now_ns()
        assert server.recv(100) == b"ping"
        arrived = rx_stamps.arrival_ns(server)
        assert arrived is not None
        assert sent <= arrived <= sent + 5_000_000  # on loopback: as it was sent
        assert read - arrived >= LATE_S * 0.9e9


async def test_asyncio_reads_through_it_and_the_wrapper_finds_the_stamp():
    # asyncio's transports read with sock.recv: the stamps depend on it (a Python
    # whose transports read otherwise fails here, not silently in the field).
    stamps: list[int | None] = []
    got = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        stamps.append(rx_stamps.arrival_ns(writer.get_extra_info("socket")))
        got.set()

    listener = rx_stamps.stream_socket(socket.AF_INET)
    listener.bind(("127.0.0.1", 0))
    async with serving(handle, sock=listener):
        sock = rx_stamps.stream_socket(socket.AF_INET)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, listener.getsockname())
        _, writer = await asyncio.open_connection(sock=sock)
        await asyncio.sleep(0.05)  # the server side is accepted and waiting
        sent = now_ns()
        writer.write(b"ping")
        hold_the_event_loop(LATE_S)  # the server's reads too: one loop
        await asyncio.wait_for(got.wait(), 5)
        writer.close()
        await writer.wait_closed()
    assert len(stamps) == 1 and stamps[0] is not None
    assert 0 <= stamps[0] - sent <= LATE_S * 0.5e9  # well before the loop could read it


def test_a_kernel_without_the_option_gives_plain_reads(monkeypatch):
    monkeypatch.setattr(rx_stamps, "SO_TIMESTAMPNS", 0x7FFF)  # no such option: ENOPROTOOPT
    client, server = _pair()
    with client, server:
        client.sendall(b"ping")
        assert server.recv(100) == b"ping"
        assert rx_stamps.arrival_ns(server) is None
        assert not getattr(server, "stamping", False)  # so its controller takes strict turns


def test_a_stamp_from_the_future_is_refused():
    assert rx_stamps._to_clock(time.clock_gettime_ns(time.CLOCK_REALTIME) + 10**9) is None


def test_sockets_of_other_kinds_have_no_stamp():
    plain = socket.socket()
    with plain:
        assert rx_stamps.arrival_ns(plain) is None
    assert rx_stamps.arrival_ns(None) is None


# -- a real agent ---------------------------------------------------------------------
@pytest.fixture
async def link(agents, token):
    link = AgentLink(Address("127.0.0.1", agents[0].port), token.token.secret)
    await link.connect(5)
    yield link
    await link.close()


@pytest.mark.posix
async def test_a_pong_read_late_keeps_its_true_round_trip(link):
    for _ in range(3):
        await link.ping()  # both CPUs awake
    for kernel_stamps in (True, False):
        pinging = asyncio.create_task(link.ping(kernel_stamps))
        await asyncio.sleep(0)  # the ping is sent
        hold_the_event_loop(LATE_S)  # as other hosts' pongs would
        sample = await pinging
        if kernel_stamps:
            assert link.stamped
            assert sample.rtt < 5_000_000
            assert abs(sample.offset) <= sample.rtt / 2 + 50_000  # one clock: truly 0
        else:  # NetJobs 3.1's reading: the delay on one side, half of it in the offset
            assert sample.rtt >= LATE_S * 0.9e9
            assert abs(sample.offset) >= LATE_S * 0.4e9


@pytest.mark.posix
async def test_an_agent_stopped_as_its_ping_arrives_only_holds_it(link, agents):
    for _ in range(3):
        await link.ping()
    pid = agents[0].process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        pinging = asyncio.create_task(link.ping())
        await asyncio.sleep(LATE_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    sample = await asyncio.wait_for(pinging, 5)
    assert sample.held >= LATE_S * 0.8e9  # the agent says so: arrived, then answered late
    assert sample.rtt < 5_000_000
    assert abs(sample.offset) <= sample.rtt / 2 + 50_000


# -- an agent that sends no arrival stamps (NetJobs 3.1) ------------------------------
NO_STAMPS = """\
from netjobs_core.wire import rx_stamps
rx_stamps.arrival_ns = lambda sock: None
"""


@pytest.fixture(scope="module")
def unstamped_agent(token, tmp_path_factory):
    hook = tmp_path_factory.mktemp("no-stamps")
    (hook / "sitecustomize.py").write_text(NO_STAMPS)
    with start_agent(token.path, env={"PYTHONPATH": str(hook)}) as agent:
        yield agent


@pytest.mark.posix
async def test_hosts_whose_agent_sends_no_stamps_take_strict_turns(unstamped_agent, agents, token):
    links = [
        AgentLink(Address("127.0.0.1", port), token.token.secret)
        for port in [unstamped_agent.port, unstamped_agent.port] + [a.port for a in agents[:2]]
    ]
    try:
        await asyncio.gather(*(link.connect(5) for link in links))
        measuring = (measure_clock(link, DEFAULT_CLOCK, 10) for link in links)
        estimates = await asyncio.gather(*measuring)
        assert [link.stamped for link in links] == [False, False, True, True]
        for estimate in estimates:  # one clock: 0 within the bound
            assert abs(estimate.offset_ns) <= estimate.uncertainty_ns
    finally:
        for link in links:
            await link.close()


# -- round trips per host ---------------------------------------------------------------
def _frames_per_write(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The message types of each of the controller's TCP writes, as they happen."""
    writes: list[list[str]] = []
    write = TcpChannel.write

    def counted(self: TcpChannel, data: bytes | bytearray, last: bool = False) -> None:
        decoder = FrameDecoder()
        decoder.add(bytes(data))
        writes.append([raw.parse().type for raw in iter(decoder.next_frame, None)])
        write(self, data, last)

    monkeypatch.setattr(TcpChannel, "write", counted)
    return writes


@pytest.mark.posix
async def test_a_stamped_host_is_probed_in_three_writes(agents, token, monkeypatch):
    """Connect, authenticate, measure the clock and ask the status: the status query
    and the first ping go with the auth, and two stamped pings measure a host whose
    bound is tight (here any bound is): hello, auth + status + ping, ping."""
    policy = dataclasses.replace(DEFAULT_CLOCK, tight_ns=10**9)
    address = Address("127.0.0.1", agents[1].port)
    for _ in range(20):  # this agent's stamps are on (Linux switches them on lazily)
        async with AgentLink(address, token.token.secret) as warm:
            await warm.connect(5)
            await warm.ping()
            if warm.stamped:
                break
        await asyncio.sleep(0.05)
    writes = _frames_per_write(monkeypatch)
    async with AgentLink(address, token.token.secret) as link:
        found = await probe(link, 5, policy=policy)
        assert link.stamped
    assert writes[:3] == [["hello"], ["auth", "status", "ping"], ["ping"]]
    assert writes[3:] == [["bye"]]  # the close
    assert found.estimate.samples == 2
    assert found.hostname and found.version  # the status came with the measurement
    assert abs(found.estimate.offset_ns) <= found.estimate.uncertainty_ns  # one clock: 0


@pytest.mark.posix
async def test_a_channel_without_stamps_sends_its_status_with_the_auth_and_pings_in_turn(
    agents, token, monkeypatch
):
    """A channel without the kernel's stamps (here a kernel without the option; an
    SSH channel's pipes) takes its first ping in the host's turn, not with the auth."""
    monkeypatch.setattr(rx_stamps, "SO_TIMESTAMPNS", 0x7FFF)  # no such option
    writes = _frames_per_write(monkeypatch)
    async with AgentLink(Address("127.0.0.1", agents[2].port), token.token.secret) as link:
        found = await probe(link, 5)
        assert not link.kernel_stamps
    assert writes[:2] == [["hello"], ["auth", "status"]]
    assert writes[2:-1] == [["ping"]] * found.estimate.samples  # one write per sample
    assert found.estimate.samples >= DEFAULT_CLOCK.min_pings
    assert found.hostname
