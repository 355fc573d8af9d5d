"""The controller's end of one agent connection: asyncio I/O around wire.connection.Connection."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from netjobs_core.clock_offset import Sample
from netjobs_core.wire import rx_stamps
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import (
    AuthenticationFailed,
    CredentialRefused,
    IntegrityError,
    PeerError,
    ProtocolError,
)
from netjobs_core.wire.messages import Bye, Error, Message, Ping, Pong, Role, Status
from netjobs_core.wire.sealing import Credential
from netjobs_core.wire.states import Phase, State

READ_SIZE = 1024 * 1024  # a whole output frame (framing.MAX_BODY) in one read
FIRST_READ_SIZE = 4 * 1024  # a TCP channel's buffer grows to READ_SIZE while it streams
CLOSE_TIMEOUT_S = 1.0  # after our bye: the agent's side of the close
KEEPALIVE = (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))


M = TypeVar("M", bound=Message)

_HANDSHAKE_CLOSED = (
    "the peer closed the connection during the handshake (not a NetJobs 3 agent, or it rejected us)"
)


class AgentError(Exception):
    """A host-level failure, worded for the user (the runner adds the host name)."""


class ConnectionLost(AgentError):
    pass


class AuthenticationRefused(AgentError):
    """The agent and we do not hold the same credential: no retry can mend that."""


class Refused(AgentError):
    """Nothing listens there: the agent's process is not running."""


class AgentStopping(ConnectionLost):
    """The agent said it is shutting down and killing our commands."""


class Tampered(ConnectionLost):
    """A frame did not verify: something on the path altered it. Not resumed: the
    host fails, so an attack is reported as one rather than retried until it passes."""


# asyncio words every connect failure "Connect call failed (...)": say what happened.
_CONNECT_ERRNOS = {
    errno.ECONNREFUSED: "connection refused by {} (is the agent running and listening there?)",
    errno.EHOSTUNREACH: "no route to host {}",
    errno.ENETUNREACH: "network unreachable for {}",
    errno.ETIMEDOUT: "connection to {} timed out",
    errno.EADDRNOTAVAIL: "cannot connect to {}: address not available",
}


def _describe_os_error(exc: OSError, address: Address) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {address.host!r}"
    # A name with several addresses (localhost: ::1 and 127.0.0.1) that all
    # failed: asyncio joins their texts, each with its errno.
    numbers = (
        {exc.errno} if exc.errno else {int(n) for n in re.findall(r"\[Errno (\d+)\]", str(exc))}
    )
    if len(numbers) == 1 and (words := _CONNECT_ERRNOS.get(numbers.pop())):
        return words.format(address)
    if numbers:
        reason = ", ".join(sorted(os.strerror(n) for n in numbers))
    else:
        reason = str(exc) or type(exc).__name__
    return f"cannot connect to {address}: {reason}"


class Channel(Protocol):
    """The bytes between the controller and one agent: a TCP connection, or the
    stdin/stdout of an agent started over SSH (netjobs_core/ssh.py)."""

    async def read(self, n: int) -> bytes | memoryview:
        """Up to n bytes (a view is valid until the next read); b"" at the end;
        OSError when lost."""
        ...

    def write(self, data: bytes | bytearray) -> None: ...

    kernel_stamps: bool  # arrival_ns can say (wire/rx_stamps.py)

    def arrival_ns(self) -> int | None:
        """When the latest read's bytes arrived (the kernel's stamp, `now_ns` clock),
        if this kind of channel knows; the caller's own reading of the clock if not."""
        ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None:
        """Drop it at once, nothing more sent."""
        ...

    async def close(self, timeout: float) -> None:
        """Close after what is queued, waiting at most `timeout`."""
        ...


class Dialer(Protocol):
    """Opens channels to the agents of one kind of target (SSH)."""

    async def open(self, address: Address, timeout: float) -> tuple[Channel, bytes]:
        """A channel to an agent and its link secret (sealing.link_key); raises AgentError."""
        ...


# Linux: held back until the next write or the close, which sends it with its FIN.
_LAST_WRITE = getattr(socket, "MSG_MORE", 0)


class TcpChannel:
    """A TCP connection to an agent, read and written on its socket by this class, with
    the event loop only telling when the socket is ready (`add_reader`, `add_writer`).

    Its reads are the socket's own `recv_into`, so a stamped socket keeps the kernel's
    arrival stamp of each (wire/rx_stamps.py) whatever the loop: uvloop's transports
    read the file descriptor in C and would drop it. A message costs one system call
    each way, with no transport pausing and resuming around it.

    The kernel writes what arrives straight into one receive buffer, which `read` hands
    over as it is (a view, valid until the next read): a large output is copied once on
    its way to the frame decoder. Reading pauses while that buffer is full and unread, so
    an agent whose output we cannot keep up with waits on TCP. The buffer starts small
    (1000 quiet hosts: 4 MB) and grows while reads fill it, up to READ_SIZE. Writes go
    out at once; what the socket does not take waits here for it (the controller's
    messages are small)."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self.kernel_stamps = isinstance(sock, rx_stamps.StampedSocket) and sock.stamping
        self._buffer = memoryview(bytearray(FIRST_READ_SIZE))
        self._start = self._end = 0  # what of _buffer is not handed out yet
        self._reading = False
        self._eof = False
        self._error: OSError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._unsent = bytearray()  # what the socket did not take yet
        self._closing = False
        self._flushed: asyncio.Future[None] | None = None  # a close waits for _unsent
        self._resume()

    # -- the loop's callbacks -----------------------------------------------------
    def _resume(self) -> None:
        if not (self._reading or self._eof or self._closing):
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        try:
            count = self._socket.recv_into(self._buffer[self._end :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not count:
            self._eof = True
            self._pause()
        else:
            self._end += count
            if self._end == len(self._buffer):  # full: wait until it is read
                self._pause()
        self._wake()

    def _on_writable(self) -> None:
        try:
            sent = self._socket.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        del self._unsent[:sent]
        if not self._unsent:
            self._loop.remove_writer(self._fd)
            if self._flushed is not None and not self._flushed.done():
                self._flushed.set_result(None)

    def _lost(self, exc: OSError) -> None:
        self._error = exc
        self.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- Channel ------------------------------------------------------------------
    async def read(self, n: int) -> bytes | memoryview:
        if self._start == self._end:  # the caller is done with what it was handed
            if self._end == len(self._buffer) < READ_SIZE:  # it came full: a stream
                self._buffer = memoryview(bytearray(min(READ_SIZE, 4 * len(self._buffer))))
            self._start = self._end = 0
            self._resume()
        while self._start == self._end:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        begin = self._start
        self._start = min(self._end, begin + n)
        return self._buffer[begin : self._start]

    def write(self, data: bytes | bytearray, last: bool = False) -> None:
        """LAST: only the close follows (at once): the bytes may wait for it and go out
        with its FIN in one segment, one delivery to the agent instead of two."""
        if self._closing:
            return
        if not self._unsent:
            try:
                sent = self._socket.send(data, _LAST_WRITE if last else 0)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lost(exc)
                return
            if sent == len(data):
                return
            data = data[sent:]
            self._loop.add_writer(self._fd, self._on_writable)
        self._unsent += data

    def arrival_ns(self) -> int | None:
        return rx_stamps.arrival_ns(self._socket)

    def is_closing(self) -> bool:
        return self._closing

    def abort(self) -> None:
        if self._socket.fileno() < 0:
            return
        self._pause()
        if self._unsent:
            self._loop.remove_writer(self._fd)
            self._unsent.clear()
        self._closing = self._eof = True
        self._socket.close()
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)
        self._wake()

    async def close(self, timeout: float) -> None:
        if self._unsent and not self._closing:
            self._closing = True
            self._pause()
            self._flushed = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._flushed
        self.abort()


async def open_tcp(address: Address, timeout: float) -> TcpChannel:
    """A TCP connection to an agent's port, or AgentError (Refused: nothing listens)."""
    try:
        async with asyncio.timeout(timeout):
            return await _open_tcp(address)
    except TimeoutError:
        raise _connect_timed_out(address, timeout) from None


def _connect_timed_out(address: Address, timeout: float) -> AgentError:
    return AgentError(
        f"connection to {address} timed out: no answer within {timeout:g} s "
        "(host down or port filtered?)"
    )


async def _open_tcp(address: Address) -> TcpChannel:
    """`open_tcp` within a deadline of the caller's (AgentLink.connect: one for the
    connection and the handshake)."""
    try:
        sock = await _connect(address)
    except ConnectionRefusedError as exc:
        raise Refused(_describe_os_error(exc, address)) from None
    except OSError as exc:
        raise AgentError(_describe_os_error(exc, address)) from None
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A host that drops off the network sends no FIN: probe an idle
        # link so that the quorum learns of it in ~11 s, not hours.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE:
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return TcpChannel(sock)


async def _connect(address: Address) -> socket.socket:
    """A connected socket (one that keeps the kernel's receive stamps: wire/rx_stamps.py)
    to the first of the address's resolved addresses that answers; raises OSError as
    asyncio.open_connection would (several failures with one errno: the first)."""
    loop = asyncio.get_running_loop()
    try:  # an address needs no resolver, nor its thread; as bytes, no IDNA codec either
        infos = socket.getaddrinfo(
            address.host.encode("ascii"),
            address.port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_NUMERICHOST,
        )
    except (socket.gaierror, UnicodeEncodeError):
        infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        sock = rx_stamps.stream_socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await _sock_connect(loop, sock, sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if not errors:
        raise OSError(f"cannot resolve the host name {address.host!r}")
    if len({exc.errno for exc in errors}) == 1:
        raise errors[0]
    raise OSError("Multiple exceptions: " + ", ".join(map(str, errors)))


# What a non-blocking connect() says while the connection is still being made.
_CONNECTING = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR})


async def _sock_connect(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, sockaddr: tuple[Any, ...]
) -> None:
    """`loop.sock_connect` without its second look at the address (uvloop resolves it
    again, encoding the name with Python's IDNA codec): connect, wait until writable,
    read the outcome. A loopback connection's CPU here: 129 -> 61 µs."""
    code = sock.connect_ex(sockaddr)
    if code in _CONNECTING:
        fd = sock.fileno()
        writable = loop.create_future()
        loop.add_writer(fd, _settle, writable)
        try:
            await writable
        finally:
            loop.remove_writer(fd)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


MAX_HELD = 16  # messages kept for a later reader while waiting for another


def _hold(held: list[Message], message: Message) -> None:
    """Keep MESSAGE for a later reader; an agent sending more than anyone asked for
    (a flood of unrequested statuses, say) loses the connection instead of memory."""
    if len(held) >= MAX_HELD:
        raise ConnectionLost(
            f"protocol error: the agent sent {len(held) + 1} messages nobody asked for"
        )
    held.append(message)


class AgentLink:
    """An authenticated connection to one agent.

    One task reads at a time (`recv`); any task may `send`. Writes are small
    and not awaited, so a kill can go out while another task is reading.
    An SSH target's channel comes from `dialer` (netjobs_core/ssh.py), with
    the token the agent it started was given; the protocol is the same.
    As an async context manager it is closed on the way out
    (`async with AgentLink(...) as link: await link.connect(timeout)`).
    """

    def __init__(self, address: Address, token: bytes, dialer: Dialer | None = None) -> None:
        self.address = address
        self._token = token
        self._dialer = dialer
        self._conn: Connection | None = None
        self._channel: Channel | None = None
        self._pending: deque[Message] = deque()
        self.received_ns = 0  # when the latest read's bytes arrived, on our clock
        self.read_ns = 0  # when we read them
        self._kernel_received = False  # received_ns is the kernel's stamp
        self.stamped = False  # the latest ping's two arrivals were both the kernels' stamps
        self._sent_ns = 0  # when our latest write left
        self.tcp_connected = False  # reached, whether or not it speaks NetJobs
        self._seq = 0
        self._along: list[Message] = []  # to send right behind our auth
        self._early_ping: int | None = None  # when the ping sent with the auth left
        self.status: Status | None = None  # the agent's latest answer to a status query
        self.reads = 0  # reads that brought bytes

    @property
    def credential(self) -> Credential | None:
        """What the agent proved it holds, once authenticated."""
        return None if self._conn is None else self._conn.credential

    async def __aenter__(self) -> AgentLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(
        self,
        timeout: float,
        along: Sequence[Message] = (),
        ping: bool = False,
        then: Sequence[Message] = (),
    ) -> None:
        """Connect and authenticate both ways, or raise AgentError.

        ALONG: requests sent right behind our auth, which the agent answers after its
        welcome: no round trip of their own (a status reply lands in `status`). PING:
        the first clock ping too, where the channel has kernel arrival stamps (a pong
        read late then only lengthens its round trip; without them a host is pinged
        in its turn): the next `ping()` returns its sample. THEN: requests behind
        that ping, where it goes (else behind ALONG); their replies wait for `reply`.

        A link authenticated already (kept from the run's last test: links.py) only
        sends ALONG, the ping and THEN, in one write."""
        if self.authenticated:
            self._go_on(along, ping, then)
            return
        self._along = list(along)
        token = self._token
        channel: Channel | None = None
        if self.address.over_ssh:
            if self._dialer is None:
                raise AgentError("an ssh:// target, but this run has no SSH connections")
            channel, token = await self._dialer.open(self.address, timeout)
            self._channel = channel
        try:
            # A TCP connection and the handshake within one deadline (one timer a host).
            async with asyncio.timeout(timeout):
                if channel is None:
                    channel = self._channel = await _open_tcp(self.address)
                self.tcp_connected = True
                if ping and channel.kernel_stamps:
                    self._seq += 1
                    self._along.append(Ping(seq=self._seq))
                self._along.extend(then)
                if self.address.over_ssh:  # the agent got a link secret of ours on its channel
                    self._conn = Connection(Role.CONTROLLER, token, link=True)
                else:
                    self._conn = Connection(Role.CONTROLLER, token, host=self.address.host)
                self._flush()
                while self._conn.state is not State.READY:
                    await self._read_some(during_handshake=True)
        except TimeoutError:
            await self.close()
            if not self.tcp_connected:
                raise _connect_timed_out(self.address, timeout) from None
            if self.address.over_ssh:  # our own agent, started and ready: a slow host
                raise AgentError(
                    f"the agent started over SSH did not complete the handshake within "
                    f"{timeout:g} s"
                ) from None
            raise AgentError(
                f"no answer to the NetJobs greeting within {timeout:g} s "
                "(not a NetJobs 3 agent? an original 2.x agent waits silently)"
            ) from None
        except PeerError as exc:
            await self.close()
            if exc.code == "auth":
                raise AuthenticationRefused(
                    "authentication failed: the agent holds a different token"
                ) from None
            raise AgentError(f"the agent refused: {exc.message}") from None
        except CredentialRefused as exc:
            await self.close()
            raise AuthenticationRefused(str(exc)) from None
        except AuthenticationFailed:
            await self.close()
            raise AuthenticationRefused(
                "authentication failed: the agent does not hold our token (an agent reads "
                "its token file when it starts: restart it after copying a token there)"
            ) from None
        except ProtocolError as exc:
            await self.close()
            raise AgentError(str(exc)) from None
        except AgentError:
            await self.close()
            raise

    @property
    def authenticated(self) -> bool:
        """Authenticated, and open as far as we know."""
        return (
            self._conn is not None
            and self._conn.state is State.READY
            and self._channel is not None
            and not self._channel.is_closing()
        )

    @property
    def at_boundary(self) -> bool:
        """Between two tests: authenticated, nothing prepared, nothing unread."""
        conn = self._conn
        return (
            self.authenticated
            and conn is not None
            and conn.phase is Phase.IDLE
            and not self._pending
        )

    def _go_on(self, along: Sequence[Message], ping: bool, then: Sequence[Message]) -> None:
        """`connect` on a link authenticated already: its requests in one write."""
        assert self._conn is not None and self._channel is not None
        self.status = None  # the last test's
        requests = list(along)
        ping = ping and self._channel.kernel_stamps
        if ping:
            self._seq += 1
            requests.append(Ping(seq=self._seq))
        requests.extend(then)
        try:
            for message in requests:
                self._conn.send(message)
        except ProtocolError as exc:
            raise ConnectionLost(f"protocol error: {exc}") from None
        self._flush()
        if ping:
            self._early_ping = self._sent_ns

    def _flush(self) -> None:
        assert self._conn is not None and self._channel is not None
        data = self._conn.data_to_send()
        if data and not self._channel.is_closing():
            self._sent_ns = now_ns()
            self._channel.write(data)

    async def _read_some(self, during_handshake: bool = False) -> None:
        assert self._channel is not None and self._conn is not None
        try:
            data = await self._channel.read(READ_SIZE)
        except OSError as exc:
            if during_handshake:
                raise AgentError(_HANDSHAKE_CLOSED) from None
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from None
        self.read_ns = now_ns()
        arrived = self._channel.arrival_ns()
        # The kernel's stamp, unless it is stale (bytes read before ours).
        self._kernel_received = arrived is not None and arrived >= self._sent_ns
        self.received_ns = arrived if self._kernel_received and arrived else self.read_ns
        if not data:
            self.received_ns = self.read_ns  # a close has no stamp of its own
            if during_handshake:
                raise AgentError(_HANDSHAKE_CLOSED)
            raise ConnectionLost("connection lost: the agent closed it")
        self.reads += 1
        self._pending.extend(self._conn.receive_data(data))
        if self._along and self._conn.pipelining:  # our auth is queued: right behind it
            along, self._along = self._along, []
            for message in along:
                self._conn.send(message)
            self._flush()
            if any(isinstance(message, Ping) for message in along):
                self._early_ping = self._sent_ns
            return
        self._flush()

    def send(self, message: Message) -> None:
        assert self._conn is not None
        if self._channel is None or self._channel.is_closing():
            raise ConnectionLost("connection lost")
        try:
            self._conn.send(message)
        except ProtocolError as exc:  # out of order, or closed after a protocol error
            raise ConnectionLost(f"protocol error: {exc}") from None
        self._flush()

    def received(self) -> Message | None:
        """The next message if it has come already (no wait, no timer), else None."""
        return self._pending.popleft() if self._pending else None

    async def recv(self) -> Message:
        """The next message; raises ConnectionLost, or PeerError-derived AgentError."""
        while not self._pending:
            try:
                await self._read_some()
            except IntegrityError as exc:  # already worded for the user
                raise Tampered(str(exc)) from None
            except ProtocolError as exc:
                raise ConnectionLost(f"protocol error: {exc}") from None
        return self._pending.popleft()

    async def request(self, message: Message, reply: type[M], timeout: float) -> M:
        """Send and wait for the reply of class REPLY; an error reply raises AgentError."""
        self.send(message)
        return await self.reply(reply, timeout)

    async def reply(self, reply: type[M], timeout: float) -> M:
        """The next reply of class REPLY (to a request sent already); an error reply
        raises AgentError. Other messages stay queued, in order, for their readers
        (the `prepared` of a prepare sent with the auth, say)."""
        held: list[Message] = []
        # Often here already (a prepare sent with the auth is answered while we ping):
        # then no timer is made for it.
        while self._pending:
            if (found := self._sort(self._pending.popleft(), reply, held)) is not None:
                return found
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if (found := self._sort(await self.recv(), reply, held)) is not None:
                        return found
        except TimeoutError:
            raise AgentError(f"no {reply.TYPE!r} reply within {timeout:g} s") from None

    def _sort(self, answer: Message, reply: type[M], held: list[Message]) -> M | None:
        """ANSWER if it is the REPLY awaited (the HELD ones then go back in front), else
        None, ANSWER held; an error reply raises AgentError."""
        if isinstance(answer, Error):
            raise AgentError(answer.message)
        if isinstance(answer, reply):
            self._pending.extendleft(reversed(held))
            return answer
        _hold(held, answer)
        return None

    @property
    def kernel_stamps(self) -> bool:
        """Our arrivals are the kernel's stamps (the agent's may be too: `stamped`)."""
        return self._channel is not None and self._channel.kernel_stamps

    async def ping(self, kernel_stamps: bool = True) -> Sample:
        """One clock sample; with `kernel_stamps`, both arrivals are the kernel's
        where the channel and the agent give them (`stamped` then says so)."""
        if self._early_ping is None:
            self._seq += 1
            self.send(Ping(seq=self._seq))
            sent = self._sent_ns  # as the write left, after encoding and sealing
        else:  # sent with our auth
            sent, self._early_ping = self._early_ping, None
        seq = self._seq
        held: list[Message] = []  # replies to requests sent along (`reply` reads them)
        while True:
            answer = await self.recv()
            if isinstance(answer, Status):
                self.status = answer
            elif isinstance(answer, Pong) and answer.seq == seq:
                self._pending.extendleft(reversed(held))
                if not kernel_stamps:
                    self.stamped = False
                    return Sample(sent, answer.clock, self.read_ns, answer.wall)
                agent_received = answer.received
                self.stamped = self._kernel_received and agent_received is not None
                return Sample(sent, answer.clock, self.received_ns, answer.wall, agent_received)
            elif isinstance(answer, Error):
                raise AgentError(answer.message)
            elif not isinstance(answer, Pong):
                _hold(held, answer)

    def abort(self) -> None:
        """Drop the connection without a word: after a silent loss a `bye`
        delivered late would tell the agent we are gone for good."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            channel.abort()

    async def close(self) -> None:
        if self._channel is None:
            return
        channel, self._channel = self._channel, None
        # A channel already broken, or a connection its protocol error closed: the
        # close is then only ours.
        with contextlib.suppress(OSError, ProtocolError):
            # Pipelining: a prepare may be queued behind our auth already.
            if self._conn is not None and (
                self._conn.state is State.READY or self._conn.pipelining
            ):
                self._conn.send(Bye())
                if isinstance(channel, TcpChannel):
                    channel.write(self._conn.data_to_send(), last=True)
                else:
                    channel.write(self._conn.data_to_send())
            await channel.close(CLOSE_TIMEOUT_S)
