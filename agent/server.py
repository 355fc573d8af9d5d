"""The agent's network side: listening sockets, controller sessions, one run at a time.

Every connection gets its own `Session`; any number may be open (a status
probe is answered while a run is active), but only one run exists at a time
and its outbox (agent/spool.py) is attached to the session that prepared or
resumed it. How that session ends decides the run's fate (docs/faults.md):
a clean close (EOF, reset: the controller's process is gone) kills an active
run after the short orphan grace; a silent loss (no heartbeat, a keepalive
or retransmission timeout, no route) keeps the run, spooling, for the
reconnect grace, during which an authenticated `resume` naming its run id
reattaches it to the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TextIO

from netjobs_core import __version__
from netjobs_core.wire import fd_limits, rx_stamps
from netjobs_core.wire.clock import now_ns, wall_ns
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import AuthenticationFailed, PeerError, ProtocolError
from netjobs_core.wire.messages import (
    MAX_GRACE_S,
    Bye,
    Error,
    Kill,
    Message,
    OffsetsItem,
    Ping,
    Pong,
    Prepare,
    Prepared,
    Resume,
    Resumed,
    Role,
    Shutdown,
    Start,
    Status,
    StatusQuery,
)
from netjobs_core.wire.sealing import Credential, token_key
from netjobs_core.wire.silence import PeerSilent, Silence
from netjobs_core.wire.states import State
from netjobs_core.wire.tokens import STDIO_READY, Token, parse_stdio_greeting

from . import limits, oskit, procs
from .jobs import PREPARED_TIMEOUT_S, JobCommand, Run, Stage
from .limits import shown
from .spool import DEFAULT_LIMIT, Outbox, parse_offsets

if TYPE_CHECKING:
    from .echo import Echo  # imported only with --echo (never over SSH)

AUTH_TIMEOUT_S = 10.0  # to complete the handshake after connecting
IDLE_TIMEOUT_S = 600.0  # a connection without a run and without requests is closed
DRAIN_TIMEOUT_S = 60.0  # a controller that reads nothing for this long is dropped
CLOSE_TIMEOUT_S = 5.0
# A run's reports (started, output, exits) wait this long for the next one to share
# their write, unless this much is waiting already: a quick command's whole story then
# reaches its controller in one segment, one read there instead of up to four.
LINGER_S = 0.010
LINGER_BYTES = 64 * 1024
SHUTDOWN_TIMEOUT_S = 15.0  # kill grace + SIGKILL wait + pipe drain, with room
# A prepare finding a run that is being killed waits this long for it to end (its
# commands' SIGTERM grace, with room) before it answers busy.
KILLED_RUN_WAIT_S = 3.0
READ_CHUNK = 64 * 1024
MAX_START_AHEAD_NS = int(PREPARED_TIMEOUT_S * 1e9)  # a prepared run waits no longer
DEFAULT_RECONNECT_GRACE_S = 180.0
# A controller silent for this many of its heartbeats is lost: fewer than the
# controller's 5, so the agent has noticed a cut before the controller's reset
# of the old connection can reach it and pass for a clean close.
HEARTBEAT_MISSES = 3
MIN_HEARTBEAT_S = 0.05
# Ends of a connection that say nothing about the controller's process: the
# network (or the controller's machine) went silent. EOF and RST are clean.
SILENT_ERRNOS = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, getattr(errno, "EHOSTDOWN", -1)}
)
COMMAND_LOG_LIMIT = 2000  # characters of a command in the log (a controller's, authenticated)

log = logging.getLogger("netjobs.agent")


class ListenError(Exception):
    """The agent cannot listen where it was asked to (port in use, bad address)."""


def format_address(sockaddr: Any) -> str:
    """'127.0.0.1:16192' or '[::1]:16192'."""
    # Here: an agent started over SSH has no address (wire.address, ~1 ms of its start).
    from netjobs_core.wire.address import Address

    address = Address.from_sockaddr(sockaddr)
    return str(address) if address is not None else str(sockaddr)


def platform_description() -> str:
    if hasattr(os, "uname"):  # what `platform` reads on POSIX, without its ~1.4 ms import
        name = os.uname()
        parts = (name.sysname, name.release, name.machine)
    else:
        import platform

        parts = (platform.system(), platform.release(), platform.machine())
    return " ".join(parts).strip()


class Session:
    """One controller connection; also the `Sink` of the run it prepares."""

    def __init__(
        self,
        agent: Agent,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        peername = writer.get_extra_info("peername")
        # A stdio session's pipes have no peer: the agent names its controller.
        self.peer = format_address(peername) if peername is not None else agent.channel_name
        self.source = str(peername[0]) if isinstance(peername, tuple) else self.peer
        token = agent.token
        self.conn = Connection(Role.AGENT, token.secret, host=token.host, link=token.link)
        self.closed = False
        self.run: Run | None = None  # the latest run this connection prepared or resumed
        self.outbox: Outbox | None = None  # that run's messages
        self.heartbeat: float | None = None  # the controller pings this often during a run
        self.silent = False  # the connection ended without a clean close
        self._socket = writer.get_extra_info("socket")  # None for a stdio session's pipes
        self._silence = Silence()  # of the controller
        self._linger: asyncio.TimerHandle | None = None  # the flush of queued reports
        self.pinging = False  # the requests being answered came with a ping

    # -- Sink -------------------------------------------------------------------
    def send(self, message: Message, linger: bool = False) -> None:
        """Queue MESSAGE and write it, with whatever waits before it; LINGER: a report
        that may wait up to LINGER_S for company (the next write takes it along)."""
        if self.closed or self.conn.state is not State.READY or self.writer.transport.is_closing():
            self.closed = True
            return  # the run goes on (or is being killed); its output is dropped
        self.conn.send(message)
        if linger and self.conn.unsent < LINGER_BYTES:
            if self._linger is None:
                self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._flush)
            return
        self._flush()

    async def drain(self) -> None:
        if self.closed:
            return
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S) as stalled:
                await self.writer.drain()
        except TimeoutError:
            if not stalled.expired():
                self.abort()  # ETIMEDOUT from the socket: the connection is lost
                return
            log.warning(
                "%s read nothing for %g s: dropping the connection", self.peer, DRAIN_TIMEOUT_S
            )
            self.silent = True  # suspended or cut off: it may come back
            self.abort()
        except ConnectionError:
            self.abort()

    def abort(self) -> None:
        self.closed = True
        self._stop_linger()  # what it would write is dropped with the rest
        self.writer.transport.abort()

    def hang_up(self) -> None:
        """Close after sending what is queued; the read loop then sees EOF."""
        self._flush()
        self.closed = True
        self.writer.close()

    def _stop_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _flush(self) -> None:
        self._stop_linger()
        data = self.conn.data_to_send()
        if data and not self.writer.transport.is_closing():
            self.writer.write(data)

    def send_error(self, code: str, message: str) -> None:
        self.send(Error(code=code, message=message))

    # -- connection -------------------------------------------------------------
    async def serve(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:  # not for a stdio session's pipes
            oskit.enable_keepalive(sock)
        try:
            requests = await self._handshake()
            if requests is not None:
                self.agent.gate.promote(self)
                log.info("%s authenticated", self.peer)
                await self._serve_requests(requests)
        except (ConnectionError, OSError) as exc:
            self.silent = self.silent or exc.errno in SILENT_ERRNOS
            log.info("%s: connection lost (%s)", self.peer, exc.strerror or exc)
        finally:
            self.closed = True
            self._silence.close()
            self.conn.close()
            self.agent.session_ended(self)
            await self._close()

    async def _close(self) -> None:
        self._flush()
        self.writer.close()  # sends what is queued (an error frame, say) first
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            self.writer.transport.abort()

    async def _handshake(self) -> list[Message] | None:
        """Authenticate within AUTH_TIMEOUT_S; returns requests sent along with it."""
        say = self.agent.preauth_log.log
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S) as deadline:
                while True:
                    data = await self._read_handshake()
                    if not data:
                        self._log_early_hangup()
                        return None
                    messages = self._receive(data, hold=True)
                    if self.conn.state is State.READY:
                        return messages
        except TimeoutError:
            if not deadline.expired():
                raise
            say(
                self.source,
                logging.WARNING,
                "%s did not authenticate within %g s: closing",
                self.peer,
                AUTH_TIMEOUT_S,
            )
        except AuthenticationFailed as exc:
            say(
                self.source,
                logging.WARNING,
                "authentication failed from %s: %s",
                self.peer,
                limits.clip(str(exc).removeprefix("authentication failed: ")),
            )
        except PeerError as exc:
            say(
                self.source,
                logging.WARNING,
                "%s gave up the handshake: %s (%s)",
                self.peer,
                shown(exc.message),
                shown(exc.code),
            )
        except ProtocolError as exc:
            say(self.source, logging.WARNING, "%s: %s: closing", self.peer, limits.clip(str(exc)))
        return None

    async def _read_handshake(self) -> bytes:
        try:
            return await self.reader.read(READ_CHUNK)
        except OSError:
            return b""  # a reset or ETIMEDOUT: same story as a close here

    def _log_early_hangup(self) -> None:
        if self.closed:
            return  # the agent is stopping
        say = self.agent.preauth_log.log
        if self.conn.state is State.SENT_HELLO:
            # A controller hangs up here when the agent's proof did not match.
            say(
                self.source,
                logging.WARNING,
                "authentication failed from %s: it hung up after the agent's hello "
                "(does it hold another token?)",
                self.peer,
            )
        else:
            say(self.source, logging.INFO, "%s closed the connection before its hello", self.peer)

    def _receive(self, data: bytes, hold: bool = False) -> list[Message]:
        """The requests in DATA, our replies so far written; HOLD: unless the first
        request behind an auth is a ping or status query, whose answer then carries
        our proof in its write (one segment, one read for the controller)."""
        try:
            messages = self.conn.receive_data(data)
        except BaseException:
            self._flush()  # the error frame of a ProtocolError
            raise
        if not (hold and messages and isinstance(messages[0], Ping | StatusQuery)):
            self._flush()
        return messages

    async def _serve_requests(self, messages: list[Message]) -> None:
        while True:
            # A controller that pings with its prepare pings again on our pong: the
            # `prepared` may wait for that answer's write (Agent.prepare).
            self.pinging = any(isinstance(message, Ping) for message in messages)
            for message in messages:
                if not await self._handle(message):
                    return
            silence = self._silence_limit()
            data = await self._read_within(silence or IDLE_TIMEOUT_S)
            if data is None:
                if silence is not None:
                    log.warning("%s sent no heartbeat for %g s: lost", self.peer, silence)
                    self.silent = True
                    return
                if self.agent.owns_active_run(self) or self.agent.stdio:
                    # A long test: TCP keepalive watches the peer meanwhile. Over stdio
                    # the run's SSH channel does, between its tests too.
                    continue
                log.info("%s idle for %g s: closing", self.peer, IDLE_TIMEOUT_S)
                return
            if not data:
                log.info("%s %s", self.peer, "closed" if self.closed else "disconnected")
                return
            try:
                messages = self._receive(data)
            except ProtocolError as exc:
                log.warning("%s: %s: closing", self.peer, limits.clip(str(exc)))
                return

    async def _read_within(self, window: float) -> bytes | None:
        """The next bytes from the peer; None after WINDOW seconds without any, not
        counting a stall of this agent's own loop (wire/silence.py)."""
        try:
            return await self._silence.receive(lambda: self.reader.read(READ_CHUNK), window)
        except PeerSilent:
            return None

    def _silence_limit(self) -> float | None:
        """How long the controller of this connection's run may be silent."""
        if self.heartbeat is None or not self.agent.owns_active_run(self):
            return None
        return HEARTBEAT_MISSES * self.heartbeat

    async def _handle(self, message: Message) -> bool:
        """Answer one request; False ends the connection.

        The protocol table has checked the order already: `start` only comes
        after this connection's `prepared`, `bye` and `error` are last words.
        """
        return await _HANDLERS[type(message)](self, message)

    async def _on_ping(self, message: Ping) -> bool:
        # When the ping landed (the kernel's stamp) and when we answer: whatever kept
        # us from reading it sooner then lengthens the round trip, not the offset.
        arrived = rx_stamps.arrival_ns(self._socket)
        clock, wall = now_ns(), wall_ns()
        received = arrived if arrived is not None and arrived <= clock else None
        self.send(Pong(seq=message.seq, clock=clock, wall=wall, received=received))
        return True

    async def _on_status(self, message: StatusQuery) -> bool:
        self.send(self.agent.status())
        return True

    async def _on_prepare(self, message: Prepare) -> bool:
        self.run = await self.agent.prepare(self, message)
        return True

    async def _on_resume(self, message: Resume) -> bool:
        return self.agent.resume(self, message.run_id, message.offsets)

    async def _on_start(self, message: Start) -> bool:
        assert self.run is not None  # the table: start follows this connection's prepared
        at = message.at
        if at is not None and at - now_ns() > MAX_START_AHEAD_NS:
            # The run could never start before its prepared timeout: refuse it now
            # rather than hold the agent busy until then.
            self.run.kill("refused: its start instant is too far ahead")
            self.send_error(
                "bad-request",
                f"the start instant is {(at - now_ns()) / 1e9:.0f} s ahead of the agent's "
                f"clock (at most {MAX_START_AHEAD_NS / 1e9:g} s)",
            )
            return False
        self.run.start(at, message.wake)
        return True

    async def _on_kill(self, message: Kill) -> bool:
        self.agent.kill(self, message.reason)
        return True

    async def _on_bye(self, message: Bye) -> bool:
        log.info("%s said bye", self.peer)
        return False

    async def _on_error(self, message: Error) -> bool:
        log.warning(
            "%s reports an error and closes: %s (%s)",
            self.peer,
            shown(message.message),
            shown(message.code),
        )
        return False


# By the class of the controller's message; each takes only its own class.
_HANDLERS: dict[type[Message], Callable[[Session, Any], Awaitable[bool]]] = {
    Ping: Session._on_ping,
    StatusQuery: Session._on_status,
    Prepare: Session._on_prepare,
    Resume: Session._on_resume,
    Start: Session._on_start,
    Kill: Session._on_kill,
    Bye: Session._on_bye,
    Error: Session._on_error,
}


class Agent:
    def __init__(
        self,
        token: Token,
        *,
        orphan_grace: float = 2.0,
        reconnect_grace: float = DEFAULT_RECONNECT_GRACE_S,
        spool_limit: int = DEFAULT_LIMIT,
        spool_dir: str | None = None,
        caps: limits.Caps | None = None,
        echo: Echo | None = None,
        realtime: bool = True,
    ) -> None:
        self.token = token
        self.echo = echo
        # Releases at real-time priority where permitted; else why not (logged at start).
        self.realtime_refused = oskit.realtime_refused() if realtime else "--no-realtime"
        self.realtime = self.realtime_refused is None
        if token.kind is Credential.SHARED:  # a credential or link secret is random already
            token_key(token.secret)  # the costly part of a handshake, paid once at start
        self.gate = limits.Gate(caps or limits.Caps.for_fd_limit(fd_limits.fd_limit()))
        # What unauthenticated peers make the agent log: bounded per source and in all.
        self.preauth_log = limits.LogLimiter(log, "pre-authentication failures")
        self.accept_log = limits.LogLimiter(log, "accept failures", per_key=1, total=1)
        self.orphan_grace = orphan_grace
        self.reconnect_grace = reconnect_grace
        self.spool_limit = spool_limit
        self.spool_dir = spool_dir
        self.max_grace = MAX_GRACE_S  # 0 in stdio mode: the agent ends with its channel
        self.stdio = False  # serving one channel, test after test (serve_stdio)
        self.channel_name = "stdio"
        self.run: Run | None = None
        self.outboxes: dict[str, Outbox] = {}  # by run id: every run a controller may still read
        # By run id: the fate of a run whose controller left (_grace_timer, _orphan_timer),
        # called off by its resume.
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._run_task: asyncio.Task[None] | None = None
        self.hostname = socket.gethostname()
        self.platform = platform_description()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: dict[asyncio.Task[Any], Session] = {}

    # -- bookkeeping --------------------------------------------------------------
    def _spawn_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error in %s", task.get_name(), exc_info=task.exception())

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one controller session: a connection, or the stdio channel."""
        task = asyncio.current_task()
        assert task is not None
        session = Session(self, reader, writer)
        admitted, evicted = self.gate.admit(session, session.source)
        if evicted is not None:
            assert isinstance(evicted, Session)
            evicted.abort()
            self.preauth_log.log(
                evicted.source,
                logging.WARNING,
                "%s: closing it unauthenticated to make room for new connections",
                evicted.peer,
            )
        if not admitted:
            self.preauth_log.log(
                session.source,
                logging.WARNING,
                "%s: refused, %d authenticated connections already",
                session.peer,
                self.gate.authenticated,
            )
            session.abort()
            return
        self._sessions[task] = session
        try:
            await session.serve()
        except asyncio.CancelledError:
            # Only shutdown cancels sessions. Ending normally keeps Python
            # 3.11's start_server callback from logging the cancellation.
            pass
        except Exception:
            log.exception("internal error on a connection")
        finally:
            self.gate.left(session)
            del self._sessions[task]

    def log_release_priority(self) -> None:
        if self.realtime:
            log.info(
                "waits for its releases at real-time priority (SCHED_FIFO %d)",
                oskit.REALTIME_PRIORITY,
            )
        else:
            log.info("waits for its releases at ordinary priority: %s", self.realtime_refused)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio reports accept() failures (EMFILE...) here, once per attempt: log
        them once per interval with a count, not as a traceback each."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            self.accept_log.log(
                "accept",
                logging.WARNING,
                "cannot accept connections: %s (%d connections open; retrying)",
                exc.strerror or exc,
                self.gate.pending + self.gate.authenticated,
            )
            return
        loop.default_exception_handler(context)

    async def tick_logs(self) -> None:
        """Close the log limiters' intervals, so a flood's summary line is not held back."""
        while True:
            await asyncio.sleep(self.preauth_log.interval)
            self.preauth_log.tick()
            self.accept_log.tick()

    def owns_active_run(self, session: Session) -> bool:
        """SESSION holds a run that is active or whose end it has not been sent."""
        outbox = session.outbox
        return (
            outbox is not None
            and outbox.session is session
            and (not outbox.delivered or (self.run is not None and self.run.sink is outbox))
        )

    # -- requests ---------------------------------------------------------------
    def status(self) -> Status:
        run = self.run
        outbox = run.sink if run is not None else None
        kept = None
        if isinstance(outbox, Outbox) and outbox.kept_until is not None:
            kept = max(0.0, outbox.kept_until - asyncio.get_running_loop().time())
        return Status(
            busy=run is not None,
            label=run.label if run is not None else None,
            hostname=self.hostname,
            version=__version__,
            platform=self.platform,
            realtime=self.realtime,
            controller=self._holder(outbox) if isinstance(outbox, Outbox) else None,
            kept=kept,
        )

    @staticmethod
    def _holder(outbox: Outbox) -> str:
        """The address of the controller whose run it is (its last, if it is gone)."""
        return outbox.session.peer if outbox.session is not None else outbox.last_peer

    def _busy(self, run: Run) -> str:
        """Why a prepare is refused: whose test runs, and until when where that is known."""
        outbox = run.sink
        assert isinstance(outbox, Outbox)
        words = f"busy with test {run.label!r} for {self._holder(outbox)}"
        if outbox.session is not None:
            return words
        now = asyncio.get_running_loop().time()
        if run.kill_requested:
            return f"{words}, which is being killed"
        if outbox.kept_until is not None:
            return (
                f"{words}, which went silent: the test is kept for its resume "
                f"{max(0.0, outbox.kept_until - now):.0f} s more"
            )
        if outbox.left_until is not None:
            return (
                f"{words}, which left: the test is killed in "
                f"{max(0.0, outbox.left_until - now):.1f} s unless it ends"
            )
        return words

    async def prepare(self, session: Session, message: Prepare) -> Run | None:
        """The prepared run, or None when busy (the session is told why)."""
        label, commands = message.label, message.commands
        if self.run is not None and self.run.kill_requested and self._run_task is not None:
            # A run killed a moment ago (its controller aborted and left) is ending:
            # the next test waits for that rather than fail on a busy agent.
            await asyncio.wait({self._run_task}, timeout=KILLED_RUN_WAIT_S)
        if self.run is not None:
            why = self._busy(self.run)
            log.info("%s: test %s refused: %s", session.peer, shown(label), why)
            session.send_error("busy", why)
            return None
        if session.outbox is not None:
            self._drop(session.outbox)  # its run ended and was delivered here
        specs = [JobCommand.from_fields(item) for item in commands]
        # The protocol bounds what a controller asks for; the agent's own
        # --reconnect-grace is held to the same bound.
        grace = min(
            self.reconnect_grace if message.grace is None else float(message.grace), self.max_grace
        )
        outbox = Outbox(
            os.urandom(8).hex(),  # what secrets.token_hex is, without random's import
            [spec.id for spec in specs],
            limit=self.spool_limit,
            directory=self.spool_dir,
            grace=grace,
        )
        run = Run(
            label,
            specs,
            outbox,
            self._run_done,
            self.echo,
            message.collect_max,
            realtime=self.realtime,
        )
        self.run = run  # before the first await: a concurrent prepare sees busy
        try:
            results = await run.prepare()
        except BaseException:
            self.run = None
            outbox.close()
            raise
        self.outboxes[outbox.run_id] = outbox
        outbox.run = run

        def sender_failed(exc: BaseException) -> None:
            # Nothing more of the run can reach its controller, which would otherwise
            # wait for it as long as its commands may run: it hears why, the run ends.
            log.error("internal error sending test %r", label, exc_info=exc)
            reason = f"internal agent error sending the test's results: {exc!r}"
            run.kill(reason)
            peer = outbox.session
            if peer is not None and not peer.closed:
                peer.send(Error(code="internal", message=reason))

        outbox.on_sender_error = sender_failed
        session.outbox = outbox
        if message.heartbeat is not None:  # bounded by the protocol
            session.heartbeat = max(message.heartbeat, MIN_HEARTBEAT_S)
        session.send(
            Prepared(
                gated=run.gated,
                commands=results,
                run_id=outbox.run_id,
                grace=grace,
                hostname=self.hostname,
                version=__version__,
                platform=self.platform,
            ),
            linger=session.pinging,
        )
        outbox.attach(session)
        failed = sum(1 for item in results if not item["ok"])
        log.info(
            "test %s (run %s) prepared for %s: %d command%s%s%s",
            shown(label),
            outbox.run_id,
            session.peer,
            len(specs),
            "" if len(specs) == 1 else "s",
            " (gated)" if run.gated else "",
            f", {failed} could not be started" if failed else "",
        )
        for spec in specs:
            limit = "no timeout" if spec.timeout is None else f"timeout {spec.timeout:g} s"
            log.info(
                "test %s command %d (%s): %s",
                shown(label),
                spec.id,
                limit,
                shown(spec.command, COMMAND_LOG_LIMIT),
            )
            if spec.collect:  # the files the controller will get: worth an operator's eye
                patterns = ", ".join(shown(p, COMMAND_LOG_LIMIT) for p in spec.collect)
                log.info("test %s command %d collects %s", shown(label), spec.id, patterns)
        self._run_task = self._spawn_task(run.main(), name=f"test {label!r}")
        return run

    def kill(self, session: Session, reason: str) -> None:
        # Any authenticated connection may kill: an operator can stop a
        # test whose controller is stuck.
        if self.run is None:
            log.info("%s asked to kill (%s), but no test is active", session.peer, shown(reason))
            return
        log.info("%s asked to kill test %s: %s", session.peer, shown(self.run.label), shown(reason))
        self.run.kill(reason)

    def resume(self, session: Session, run_id: str, items: list[OffsetsItem]) -> bool:
        """Attach the run RUN_ID to SESSION and replay it; False: no such run."""
        outbox = self.outboxes.get(run_id)
        offsets = parse_offsets(items)
        if outbox is None or {key[0] for key in offsets} != {key[0] for key in outbox.streams}:
            log.warning("%s asked to resume run %s, which is not here", session.peer, run_id)
            session.send_error(
                "no-run",
                f"no run {run_id!r} here: it ended and its grace expired, or the agent restarted",
            )
            return False
        old = outbox.session
        if old is not None:
            # The old connection is dead but we have not noticed yet.
            outbox.detach()
            old.abort()
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        run: Run = outbox.run
        session.run, session.outbox = run, outbox
        session.heartbeat = old.heartbeat if old is not None else outbox.heartbeat
        log.info(
            "%s resumed test %s (run %s) from byte %d of %d",
            session.peer,
            shown(run.label),
            run_id,
            sum(min(n, outbox.streams[k].size) for k, n in offsets.items()),
            outbox.written,
        )
        lost = outbox.lost(offsets)
        if lost:
            log.warning(
                "test %s: %d bytes of output cannot be replayed: they were streamed without "
                "the spool and lost in the cut (the controller is told where)",
                shown(run.label),
                lost,
            )
        session.send(Resumed(run_id=run_id))
        if run.stage is Stage.PREPARED:
            # The controller sent its start on the lost connection.
            run.kill("its start was lost with the controller's connection")
        outbox.attach(session, offsets)
        return True

    # -- lifecycle --------------------------------------------------------------
    def session_ended(self, session: Session) -> None:
        outbox = session.outbox
        if outbox is None or outbox.session is not session:
            return  # nothing attached here (or it moved to a resumed connection)
        outbox.detach()
        outbox.heartbeat = session.heartbeat
        run: Run = outbox.run
        active = self.run is run and run.stage is not Stage.DONE
        if active and run.stage is Stage.PREPARED:
            # Never released, it never can be: a start comes only on the connection
            # that prepared it (a resume kills a run still gated). Dropped now, not
            # after the orphan grace: the agent is free for the next test at once.
            log.info(
                "%s left test %s before its start: dropping it", session.peer, shown(run.label)
            )
            run.kill("its controller left before the start")
            if not (session.silent and outbox.grace > 0):  # else kept for a resume's replay
                self._drop(outbox)
                return
        # Kept even when `finished` went out: it may have died in the cut.
        if session.silent and outbox.grace > 0:
            log.warning(
                "controller %s went silent during test %r: keeping it %g s for a resume",
                session.peer,
                run.label,
                outbox.grace,
            )
            outbox.kept_until = asyncio.get_running_loop().time() + outbox.grace
            self._timers[outbox.run_id] = self._spawn_task(
                self._grace_timer(outbox), name=f"reconnect grace {run.label!r}"
            )
            return
        if not active or run.kill_requested:
            self._drop(outbox)  # a run being killed ends by itself: no timer to say it
            return
        log.warning(
            "controller %s is gone while test %s is active: killing it in %g s unless it ends",
            session.peer,
            shown(run.label),
            self.orphan_grace,
        )
        outbox.left_until = asyncio.get_running_loop().time() + self.orphan_grace
        self._timers[outbox.run_id] = self._spawn_task(
            self._orphan_timer(outbox), name=f"orphan timer {run.label!r}"
        )

    async def _grace_timer(self, outbox: Outbox) -> None:
        await asyncio.sleep(outbox.grace)
        self._timers.pop(outbox.run_id, None)
        run: Run = outbox.run
        if self.run is run and run.stage is not Stage.DONE:
            run.kill(f"controller lost for its {outbox.grace:g} s reconnect grace")
        else:
            log.warning("test %r: no resume within %g s: dropping it", run.label, outbox.grace)
        self._drop(outbox)

    async def _orphan_timer(self, outbox: Outbox) -> None:
        await asyncio.sleep(self.orphan_grace)
        self._timers.pop(outbox.run_id, None)
        run: Run = outbox.run
        if self.run is run and run.stage is not Stage.DONE:
            run.kill("controller connection lost")
        # Nobody reads it now: its spool files and messages go (at the run's end),
        # or every orphaned test kept two open files a command until the agent's end.
        self._drop(outbox)

    def _drop(self, outbox: Outbox) -> None:
        """Forget a run's outbox; a run still active keeps spooling into nothing."""
        if self.run is not None and self.run.sink is outbox:
            outbox.drop_when_done = True
            outbox.detach()
            return
        self.outboxes.pop(outbox.run_id, None)
        outbox.close()

    def _run_done(self, run: Run) -> None:
        if self.run is run:
            self.run = None
        outbox = run.sink
        if isinstance(outbox, Outbox) and outbox.drop_when_done:
            self._drop(outbox)

    async def shutdown(self, why: str = "") -> None:
        """Kill the active run (telling its controller first, and WHY: the signal),
        then close everything."""
        if self.run is not None:
            reason = f"the agent is stopping ({why})" if why else "the agent is stopping"
            outbox = self.run.sink
            if isinstance(outbox, Outbox) and outbox.session is not None:
                outbox.session.send(Shutdown(reason=reason))
            self.run.kill(reason)
        task = self._run_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=SHUTDOWN_TIMEOUT_S)
            if not task.done():
                task.cancel()  # its cleanup SIGKILLs whatever is left
                await asyncio.wait({task})
        for task in self._tasks:
            task.cancel()  # orphan timers
        # Hang up politely: what is queued (the run's last exits) still goes out.
        for session in self._sessions.values():
            session.hang_up()
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=CLOSE_TIMEOUT_S)
        for task in self._sessions:
            task.cancel()
        leftovers = set(self._sessions) | self._tasks
        if leftovers:
            await asyncio.wait(leftovers, timeout=CLOSE_TIMEOUT_S)


class StopRequest:
    """Called by a stop signal's handler with its name (oskit.install_stop_handlers):
    the agent stops, and its log and its controller say which signal stopped it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal = ""

    def __call__(self, name: str) -> None:
        self.signal = self.signal or name
        self.event.set()


class Listeners:
    """The agent's listening sockets (one per address), each served by asyncio."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self.servers = servers

    @property
    def sockets(self) -> list[Any]:
        return [sock for server in self.servers for sock in server.sockets]

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            await server.wait_closed()


def _bound_sockets(hosts: list[str] | None, port: int) -> list[socket.socket]:
    """What asyncio.start_server(host=hosts, port=port) binds, but of sockets that
    keep the kernel's receive stamps (wire/rx_stamps.py): a ping's true arrival."""
    names: list[str | None] = list(hosts) if hosts else [None]  # None: every address
    infos = {
        info
        for host in names
        for info in socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    }
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in sorted(infos, key=lambda i: (i[0], i[4])):
            sock = rx_stamps.stream_socket(family, kind, proto)
            bound.append(sock)
            if oskit.REUSE_ADDRESS:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: :: and 0.0.0.0 side by side
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


async def _start_server(agent: Agent, hosts: list[str] | None, port: int) -> Listeners:
    try:
        bound = _bound_sockets(hosts, port)
    except OSError as exc:
        where = ", ".join(hosts or ["all addresses"])
        reason = exc.strerror or exc
        raise ListenError(f"cannot listen on {where} port {port}: {reason}") from None
    servers = []
    for sock in bound:
        servers.append(await asyncio.start_server(agent.handle_connection, sock=sock))
    return Listeners(servers)


async def _listen(agent: Agent, hosts: list[str] | None, port: int) -> Listeners:
    server = await _start_server(agent, hosts, port)
    ports = [sock.getsockname()[1] for sock in server.sockets]
    if port == 0 and len(set(ports)) > 1:
        # Port 0 gives each address its own free port; one port for all is
        # what a controller expects, so try again with the first one.
        server.close()
        await server.wait_closed()
        try:
            return await _start_server(agent, hosts, ports[0])
        except ListenError:
            return await _start_server(agent, hosts, 0)
    return server


async def serve(
    token: Token,
    *,
    hosts: list[str] | None,
    port: int,
    orphan_grace: float,
    reconnect_grace: float = DEFAULT_RECONNECT_GRACE_S,
    spool_limit: int = DEFAULT_LIMIT,
    out: TextIO = sys.stdout,
    echo: bool = False,
    realtime: bool = True,
) -> int:
    """Listen until Ctrl-C / SIGTERM; returns the exit status (ListenError: cannot).
    `echo`: every output line also goes to `out` (agent.echo); `realtime`: releases at
    real-time priority where permitted (agent/oskit.py realtime_priority)."""
    loop = asyncio.get_running_loop()
    echoer = None
    if echo:  # never over SSH (stdio carries the protocol): imported only for it
        from .echo import Echo

        echoer = Echo(out.buffer)
    try:
        return await _serve(
            Agent(
                token,
                orphan_grace=orphan_grace,
                reconnect_grace=reconnect_grace,
                spool_limit=spool_limit,
                echo=echoer,
                realtime=realtime,
            ),
            loop,
            hosts,
            port,
            token,
            out,
        )
    finally:
        if echoer is not None:
            out.flush()
            echoer.close()


async def _serve(
    agent: Agent,
    loop: asyncio.AbstractEventLoop,
    hosts: list[str] | None,
    port: int,
    token: Token,
    out: TextIO,
) -> int:
    stop = StopRequest()
    remove_handlers = oskit.install_stop_handlers(loop, stop)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(agent.loop_exception)
    ticker = asyncio.create_task(agent.tick_logs(), name="log limiter")
    try:
        server = await _listen(agent, hosts, port)
        try:
            # After the bind: holding the port proves no other agent uses its cgroups.
            procs.CONTAINMENT.start(server.sockets[0].getsockname()[1])
            for sock in server.sockets:
                address = format_address(sock.getsockname())
                print(f"netjobs-agent {__version__} listening on {address}", file=out, flush=True)
            held = "" if token.host is None else f" (the credential of host {token.host})"
            print(f"token: {token.source}{held}", file=out, flush=True)
            caps = agent.gate.caps
            log.info(
                "at most %d connections, %d unauthenticated (%d per address)",
                caps.total,
                caps.unauthenticated,
                caps.per_source,
            )
            agent.log_release_priority()
            await stop.event.wait()
            log.info("stopping (%s)", stop.signal)
            server.close()
            await agent.shutdown(stop.signal)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await server.wait_closed()
        finally:
            server.close()
            procs.CONTAINMENT.stop()
    finally:
        ticker.cancel()
        loop.set_exception_handler(previous_handler)
        remove_handlers()
    log.info("stopped")
    return 0


async def _stdio_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The channel (fds 0 and 1) as streams; fds 0 and 1 themselves then become
    /dev/null and stderr, so no print and no child can write into the protocol."""
    for fd in (0, 1):
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise ListenError("--stdio needs pipes or sockets on stdin and stdout (an SSH channel)")
    loop = asyncio.get_running_loop()
    channel_in, channel_out = os.dup(0), os.dup(1)  # not inheritable: commands do not get them
    # Output leaves in larger writes, which sshd reads in larger SSH packets: fewer
    # wake-ups here, in sshd and in the controller's per-packet work.
    oskit.widen_pipe(channel_out)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    reader = asyncio.StreamReader(limit=READ_CHUNK)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(channel_in, "rb", buffering=0)
    )
    # StreamReaderProtocol as the write side's protocol: it has the close waiter
    # StreamWriter.wait_closed needs (FlowControlMixin alone does not).
    transport, write_protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
        os.fdopen(channel_out, "wb", buffering=0),
    )
    return reader, asyncio.StreamWriter(transport, write_protocol, None, loop)


async def _read_stdio_token(reader: asyncio.StreamReader) -> Token:
    """The first line on the channel: this link's secret from the controller, as
    `link <hex>` (never in argv or the environment, where `ps` would show it)."""
    async with asyncio.timeout(AUTH_TIMEOUT_S):
        line = await reader.readline()
    secret = parse_stdio_greeting(line)
    if secret is None:
        raise ListenError(
            "expected the controller's link secret ('link <64 hex digits>') as the first "
            "line on standard input"
        )
    return Token(secret, "the controller's first line", link=True)


async def serve_stdio(
    *, orphan_grace: float, spool_limit: int = DEFAULT_LIMIT, realtime: bool = True
) -> int:
    """One controller on stdin/stdout: an agent started over SSH for a whole run.

    SSH authenticated both ends: the secret is the controller's random one for this
    link (sealing.link_key), then the protocol is the usual one, one session for the
    run's tests on this host (the controller keeps its link between them, as it
    keeps an installed agent's connection), quiet between tests for as long as the
    run lasts. The end of the session, or of the channel (`bye`, EOF, the SSH
    connection dropped), is the controller gone: the orphan rules kill a run still
    active, and the agent exits: nothing listens, nothing stays. No reconnect
    grace: a new channel would reach a new agent, not this one.
    """
    loop = asyncio.get_running_loop()
    reader, writer = await _stdio_streams()
    try:
        token = await _read_stdio_token(reader)
    except TimeoutError:
        raise ListenError(f"no token from the controller within {AUTH_TIMEOUT_S:g} s") from None
    agent = Agent(
        token,
        orphan_grace=orphan_grace,
        reconnect_grace=0.0,
        spool_limit=spool_limit,
        realtime=realtime,
    )
    agent.max_grace = 0.0
    agent.stdio = True
    client = os.environ.get("SSH_CLIENT", "").split()
    agent.channel_name = f"ssh {client[0]}" if client else "stdio"
    stop = StopRequest()  # SIGHUP among them: the SSH session hung up
    remove_handlers = oskit.install_stop_handlers(loop, stop)
    procs.CONTAINMENT.start(None)
    writer.write(STDIO_READY + f"{__version__}\n".encode())  # the controller's "started"
    try:
        stopping = asyncio.create_task(stop.event.wait(), name="stop")
        session = asyncio.create_task(agent.handle_connection(reader, writer), name="session")
        await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
        run = agent._run_task
        if session.done() and run is not None and not run.done():
            # The orphan timer kills the run after its grace; it ends soon after.
            await asyncio.wait(
                {run, stopping},
                timeout=orphan_grace + SHUTDOWN_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        stopping.cancel()
        await agent.shutdown(stop.signal)
        if not session.done():
            session.cancel()
            await asyncio.wait({session}, timeout=CLOSE_TIMEOUT_S)
    finally:
        remove_handlers()
        procs.CONTAINMENT.stop()
    log.info("stopped")
    return 0
