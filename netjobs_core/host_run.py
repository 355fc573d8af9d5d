"""One host's whole part in one test: its link, clock, commands, files and deadline.

A `HostRun` connects and authenticates, measures the agent's clock, has it
prepare (spawn behind a gate) its commands, sends it the start, then receives
its outputs, exits and files until the agent reports `finished`, pinging it
all along and resuming across cuts within the agent's grace. Everything that
can happen to the host ends in its one `HostResult`.

It reports to its test (`Fleet`) through a narrow interface: the host changed,
a command changed or printed, commands were released, the host now counts
against the quorum. The test keeps the fleet's policy (phases, quorum, the
common start, the spread, the verdict) and tells a host only to start, to
kill, or that it is over.

`result.state` is the host's one state: CONNECTING -> SYNCING -> PREPARING ->
READY -> RUNNING -> (the agent's `finished`) DONE / TIMEOUT / KILLED; FAILED,
TIMEOUT or KILLED from any state when the host is lost, late or aborted.

One deadline bounds the collection (`Deadline`): the longest command timeout plus
BACKSTOP_S (once the test is aborted: KILL_CONFIRM_S from the kill), moved later
by the time lost to resumed cuts (at most the reconnect grace in all), and kept at
least BACKSTOP_S past a cut's reconnect grace and past the latest file data, within
what the files' bytes earn. None when a command has no timeout and the test goes
on: then only the heartbeat tells a silent agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from netjobs_core import text
from netjobs_core.client import (
    AgentError,
    AgentLink,
    AgentStopping,
    AuthenticationRefused,
    ConnectionLost,
    Refused,
    Tampered,
)
from netjobs_core.clock_offset import OffsetEstimate
from netjobs_core.collected import FileReception
from netjobs_core.config import CommandSpec
from netjobs_core.interruptions import Hearing, LoopStalls
from netjobs_core.links import Links
from netjobs_core.metrics import measure_command, read_early
from netjobs_core.outputs import Output
from netjobs_core.probe import connect_measured, probe
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    Interruption,
    OutputGap,
)
from netjobs_core.run_options import RunOptions
from netjobs_core.verdict import aborted_text
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.messages import (
    MAX_ENV_VALUE,
    CommandItem,
    Error,
    Exit,
    File,
    FileData,
    FileEnd,
    Finished,
    Kill,
    Message,
    OffsetsItem,
    Ping,
    Prepare,
    Prepared,
    Resume,
    Resumed,
    Shutdown,
    Start,
    Started,
    Status,
    StatusQuery,
)
from netjobs_core.wire.messages import Collected as CollectedMessage
from netjobs_core.wire.messages import Output as OutputMessage
from netjobs_core.wire.silence import PeerSilent, Silence

KILL_CONFIRM_S = 10.0  # how long agents get to report their kills
BACKSTOP_S = 30.0  # past the longest timeout, the agent itself must have reported
HEARTBEAT_MISSES = 5  # as the agent counts: this many heartbeats unanswered is a silent loss
RECONNECT_BACKOFF_S = (0.2, 5.0)  # first and longest wait between reconnection attempts
# Collected files may hold the deadline BACKSTOP_S past the first one's start plus
# their bytes received at this rate (bytes/s): progress is bytes, so an agent trickling
# empty frames, or a byte a file, cannot stall us.
MIN_COLLECT_RATE = 1024**2
# The longest we wait for a lost agent when the run asked no grace of its own (the CLI
# and the GUI ask none): the agent's default. An agent may claim a week (MAX_GRACE_S).
MAX_RECONNECT_GRACE_S = 180.0

# Prepared, and the agent has not reported `finished`: its processes may be alive.
_LIVE = (HostState.READY, HostState.RUNNING)


class _Interrupted(Exception):
    """The connection broke or went silent; the agent may still hold the run."""


class _Gone(AgentError):
    """The agent answered a resume: it no longer holds the run."""


class _Reported(AgentError):
    """The agent itself reported an error: what it had not released never ran."""


class Fleet(Protocol):
    """What a host tells its test, and the two facts it reads from it."""

    @property
    def abort_reason(self) -> str:
        """Why the test was aborted; "" while it goes on."""
        ...

    @property
    def anchor_ns(self) -> float:
        """The wall clock (epoch ns) at the controller's clock zero."""
        ...

    @property
    def links(self) -> Links:
        """The run's links kept between tests: the host's may be there."""
        ...

    def host_changed(self, host: HostRun) -> None: ...

    def command_changed(self, host: HostRun, index: int, final: bool = False) -> None: ...

    def command_output(self, host: HostRun, index: int, stream: str, data: bytes) -> None: ...

    def released(self, host: HostRun) -> None:
        """Some of the host's commands were released (`host.released`)."""
        ...

    def failed(self, host: HostRun) -> None:
        """The host, or one of its commands, may now count against the quorum."""
        ...


@dataclass(frozen=True)
class Seat:
    """A host's place in its test: what its commands are told, where its files go."""

    label: str  # the test's
    position: int  # among the test's hosts, in config order: NETJOBS_INDEX
    count: int  # hosts in the test: NETJOBS_COUNT
    run_id: str
    directory: Path  # the host's folder in the run folder


@dataclass
class Deadline:
    """The one deadline of a host's collection, in loop time, from the facts that move it."""

    backstop: float | None = None  # the longest timeout + BACKSTOP_S; None: a command has none
    kill_by: float | None = None  # the test was aborted: the kill must be confirmed by then
    shift_s: float = 0.0  # lost to cuts resumed since the backstop or the kill
    max_shift_s: float = float("inf")  # the most cuts may move it in all: the reconnect grace
    reconnect_until: float | None = None  # during a cut: the end of the agent's grace
    data_at: float | None = None  # the latest bytes of the file in progress
    files_from: float | None = None  # when the host's first collected file began
    file_bytes: int = 0  # the files' bytes received since (what they earn: `transfer_cap`)

    def due(self) -> float | None:
        """When the agent must have reported; None: no limit."""
        base = self.kill_by if self.kill_by is not None else self.backstop
        if base is None:
            return None
        due = base + min(self.shift_s, self.max_shift_s)
        if self.reconnect_until is not None:  # the agent's grace first
            due = max(due, self.reconnect_until + BACKSTOP_S)
        if self.data_at is not None and self.files_from is not None:
            # A transfer in progress is no silent agent, within what its bytes earn.
            due = max(due, min(self.data_at + BACKSTOP_S, self.transfer_cap))
        return due

    @property
    def transfer_cap(self) -> float:
        """The latest the files may hold the deadline: BACKSTOP_S past the first one's
        start, and the time their bytes take at MIN_COLLECT_RATE. Once for all the
        host's files: one each, a file a byte held it a backstop a file."""
        assert self.files_from is not None
        return self.files_from + BACKSTOP_S + self.file_bytes / MIN_COLLECT_RATE

    def file_started(self, now: float) -> None:
        self.data_at = None
        if self.files_from is None:
            self.files_from = now

    def file_data(self, now: float, size: int, most: int | None) -> None:
        """SIZE bytes of a file came at NOW; MOST: the most bytes the host's files may
        earn (its bound on them all, None: none)."""
        self.data_at = now
        self.file_bytes += size
        if most is not None:
            self.file_bytes = min(self.file_bytes, most)

    def killed(self, now: float) -> None:
        self.kill_by = now + KILL_CONFIRM_S
        self.shift_s = 0.0

    def resumed(self, lost_s: float) -> None:
        self.shift_s += lost_s
        self.reconnect_until = None


class HostRun:
    def __init__(
        self,
        address: Address,
        specs: Sequence[CommandSpec],
        seat: Seat,
        options: RunOptions,
        fleet: Fleet,
    ) -> None:
        self.specs = specs
        self.seat = seat
        self.options = options
        # The fleet holds its hosts; held back weakly, a finished test's hosts are
        # freed at once, not left as a reference cycle for the garbage collector.
        self.fleet: Fleet = weakref.proxy(fleet)
        keep = options.output_keep
        self.result = HostResult(address)
        self.result.commands = [
            CommandResult(
                c.command,
                c.line,
                timeout=c.timeout,
                stdout=Output(keep=keep),
                stderr=Output(keep=keep),
            )
            for c in specs
        ]
        for k, command in enumerate(self.result.commands):
            command.stdout.path = seat.directory / f"cmd{k}.stdout"
            command.stderr.path = seat.directory / f"cmd{k}.stderr"
        self.files = FileReception(
            seat.directory,
            [spec.collect for spec in specs],
            self.result.commands,
            options.collect_max,
        )
        self.link: AgentLink | None = None
        self.estimate: OffsetEstimate | None = None
        self.released: dict[int, float] = {}  # command index -> controller clock ns
        self.exec_at: dict[int, float] = {}  # command index -> its first exec, controller ns
        self.start_at: int | None = None  # the release instant we sent, on the agent's clock
        self.start_sent = 0  # controller clock ns: when we sent it
        self.ahead_ns: int | None = None  # how long before it the start reached the agent
        self.prepared_from = 0  # controller clock ns: no command can be released before
        self.prepare_sent = False  # with the auth (`measure`)
        self.ended: dict[int, float] = {}
        self.measured: set[int] = set()  # commands whose metrics were read as they ended
        self.run_id = ""  # the agent's name for the run, for a resume
        self.grace = 0.0  # how long the agent keeps the run for us after a silent loss
        self._pinger: asyncio.TimerHandle | None = None  # the next heartbeat
        self.hearing = Hearing(gap_ns=2 * options.heartbeat * 1e9)
        self.stalls = LoopStalls()  # of our own loop, seen by the pinger
        self.silence = Silence()  # of the agent, while collecting
        self.deadline = Deadline()  # of the collection, enforced by _timer while it runs
        self._timer: asyncio.Timeout | None = None
        self.refused = False  # the agent and we do not hold the same credential

    @property
    def timed_out(self) -> bool:
        """The host, or one of its commands, ran past its time."""
        return self.result.state is HostState.TIMEOUT or any(
            c.status is CommandStatus.TIMEOUT for c in self.result.commands
        )

    @property
    def bad(self) -> bool:
        """Counts against the quorum: failed, or a command timed out."""
        return self.timed_out or self.result.state is HostState.FAILED

    async def __aenter__(self) -> HostRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- state and commands ---------------------------------------------------
    def _set_state(self, state: HostState, error: str = "") -> None:
        self.result.state = state
        if error:
            self.result.error = error
        self.fleet.host_changed(self)

    def _finish(
        self, index: int, status: CommandStatus, message: str = "", exit_code: int | None = None
    ) -> None:
        command = self.result.commands[index]
        if command.status.finished:
            return
        command.status = status
        command.message = message
        command.exit_code = exit_code
        command.stdout.close()  # the agent sends a command's output before its end
        command.stderr.close()
        final = not self.specs[index].collect  # else its files come after its end
        if final:
            self._measure(index)
        self.fleet.command_changed(self, index, final)

    def _measure(self, index: int) -> None:
        """Read command `index`'s metrics now that its output and files are complete,
        while the test's other commands may still run, so that the test's end does not
        wait for them (a large one is left to it: metrics.read_early)."""
        command = self.result.commands[index]
        if index in self.measured or not read_early(command):
            return
        self.measured.add(index)
        measure_command(command, self.specs[index], self.result.target)

    def fail(self, error: str, may_have_run: bool = True) -> None:
        """The host is out: unreachable, refused, lost... Its unfinished commands
        could not run (ERROR) or, once started, are LOST: they ran, end unknown.
        `may_have_run`: False when the agent said so, then only released ones ran."""
        if self.result.state is HostState.RUNNING:
            self._lose(error, may_have_run)
        for index in range(len(self.result.commands)):
            self._finish(index, CommandStatus.ERROR, error)  # the rest: a finished one stays
        self._set_state(HostState.FAILED, error)
        self.fleet.failed(self)

    def _lose(self, error: str, may_have_run: bool = True) -> None:
        """The host gone mid-run: its unfinished commands that ran (all, unless not
        `may_have_run`: then the released ones) are LOST, at when it was last heard."""
        lost_at = self._last_heard()
        for index, command in enumerate(self.result.commands):
            if (may_have_run or index in self.released) and not command.status.finished:
                command.lost_at = lost_at
                self._finish(index, CommandStatus.LOST, text.lost_message(lost_at, error))

    def _last_heard(self) -> float | None:
        """When the host was last heard (epoch), as far as its commands are known to have
        run: the last bytes before the silence that ended in the loss, or the close of its
        connection (a killed agent's); None if nothing was ever heard. Not when we gave up
        on it: that may be the whole reconnect grace later."""
        heard = self.hearing.silent_since(now_ns())
        if not heard and self.link is not None:
            heard = self.link.received_ns
        return self._epoch(heard) if heard else None

    def _epoch(self, at_ns: int) -> float:
        """An instant on our clock (`now_ns`) as the epoch, as the test's other times."""
        return (self.fleet.anchor_ns + at_ns) / 1e9

    def give_up(self, error: str) -> None:
        """Killed, or as good as: the test was aborted around the host."""
        self._abandon(error)
        self._set_state(HostState.KILLED, error)

    def _abandon(self, reason: str) -> None:
        """Ends the unfinished commands of an aborted host: KILLED once the start was
        sent; before it they never ran (ERROR, `not started`), prepared or not."""
        sent = self.result.state is HostState.RUNNING
        for i in range(len(self.result.commands)):
            if sent:
                self._finish(i, CommandStatus.KILLED, reason)
            else:
                self._finish(i, CommandStatus.ERROR, text.not_started(reason))

    # -- connect, measure, prepare ------------------------------------------------
    async def measure(self, prepare: bool = False) -> bool:
        """Connect, authenticate and measure the clock; False: the host failed.

        The link the host's last test in this run kept (links.py) goes on instead,
        with no connection or handshake of its own; one the agent closed meanwhile
        (lost before a word came back on it) gives way to a new connection.

        PREPARE: the `prepare` goes with the auth, behind the first ping (the agent
        spawns while we ping; `prepare()` then only waits for its answer): one write
        and one wait less per host. Only where every arrival is the kernel's stamp,
        which a spawning agent cannot delay (runner: `prepare_at_once`)."""
        kept = self.fleet.links.take(self.result.address)
        self.link = kept or self._new_link()
        self.prepare_sent = prepare
        while True:
            heard = self.link.reads
            try:
                estimate = await self._connect_measured(prepare)
                break
            except AgentError as exc:
                error = str(exc)
                if self.link is kept and self.link.reads == heard:
                    if isinstance(exc, ConnectionLost) and not isinstance(exc, Tampered):
                        self.link.abort()
                        self.link = self._new_link()
                        continue
                    error = f"no answer on the connection kept from its last test: {error}"
                await self._close_link()
                self.refused = isinstance(exc, AuthenticationRefused)
                self.fail(error)
                return False
        result = self.result
        self.estimate = estimate
        result.rtt_ms = estimate.rtt_ns / 1e6
        result.clock_offset_ms = estimate.offset_ns / 1e6
        result.clock_uncertainty_ms = estimate.uncertainty_ns / 1e6
        wall = estimate.wall_offset_ns(self.fleet.anchor_ns)
        result.wall_clock_offset_ms = None if wall is None else wall / 1e6
        result.credential = self.link.credential or ""
        return True

    def _new_link(self) -> AgentLink:
        options = self.options
        return AgentLink(self.result.address, options.token.secret, options.dialer)

    async def _connect_measured(self, prepare: bool) -> OffsetEstimate:
        assert self.link is not None
        options = self.options
        if prepare:  # what the agent is comes with its `prepared`: no status asked
            self.prepared_from = now_ns()
            return await connect_measured(
                self.link,
                options.connect_timeout,
                on_connected=lambda: self._set_state(HostState.SYNCING),
                policy=options.clock,
                then=[self._prepare_message()],
            )
        found = await probe(
            self.link,
            options.connect_timeout,
            on_connected=lambda: self._set_state(HostState.SYNCING),
            policy=options.clock,
        )
        self.result.agent_version, self.result.hostname = found.version, found.hostname
        return found.estimate

    def _prepare_message(self) -> Prepare:
        options = self.options
        commands: list[CommandItem] = [
            {
                "id": i,
                "command": spec.command,
                "timeout": spec.timeout,
                "env": self.environment(i),
                "collect": list(spec.collect) or None,
            }
            for i, spec in enumerate(self.specs)
        ]
        return Prepare(
            label=self.seat.label,
            commands=commands,
            grace=options.reconnect_grace,
            heartbeat=options.heartbeat,
            collect_max=options.collect_max,
        )

    async def prepare(self) -> None:
        """Have the agent spawn the commands behind its gate (sent already when
        `measure` sent it); a failure is the host's."""
        assert self.link is not None
        options = self.options
        self._set_state(HostState.PREPARING)
        try:
            if self.prepare_sent:  # with the auth
                prepared = await self.link.reply(Prepared, options.prepare_timeout)
                if prepared.version is not None and prepared.hostname is not None:
                    self.result.agent_version = prepared.version
                    self.result.hostname = prepared.hostname
                else:  # an agent from before `prepared` said them: asked
                    status = await self.link.request(StatusQuery(), Status, options.prepare_timeout)
                    self.result.agent_version = status.version
                    self.result.hostname = status.hostname
            else:
                self.prepared_from = now_ns()
                prepared = await self.link.request(
                    self._prepare_message(), Prepared, options.prepare_timeout
                )
        except AgentError as exc:
            await self._close_link()
            self.fail(str(exc))
            return
        self.result.gated = prepared.gated
        self.run_id = prepared.run_id
        # The controller's patience is its own: never longer than it asked for.
        asked = options.reconnect_grace
        self.grace = min(MAX_RECONNECT_GRACE_S if asked is None else asked, prepared.grace)
        # Cuts may move the deadline by the time they lost, a grace in all: an agent
        # that goes silent again after every resume would move it for ever.
        self.deadline.max_shift_s = self.grace
        for item in prepared.commands:
            if isinstance(item, dict) and not item.get("ok", False):
                index = item.get("id")
                if isinstance(index, int) and 0 <= index < len(self.result.commands):
                    error = str(item.get("error") or "could not be started")
                    self._finish(index, CommandStatus.ERROR, error)
        self._set_state(HostState.READY)
        # A prepared agent expects our heartbeat from its `prepared` on.
        self._next_heartbeat()

    def environment(self, index: int) -> dict[str, str]:
        """Command INDEX's place in the fleet; the agent adds NETJOBS_START_EPOCH_NS."""
        seat = self.seat
        env = {
            "NETJOBS_TEST": seat.label,
            "NETJOBS_HOST": self.specs[index].as_written,
            "NETJOBS_INDEX": str(seat.position),
            "NETJOBS_COUNT": str(seat.count),
            "NETJOBS_COMMAND_INDEX": str(index),
            "NETJOBS_RUN_ID": seat.run_id,
        }
        return {name: value[:MAX_ENV_VALUE] for name, value in env.items()}

    def _next_heartbeat(self) -> None:
        """Ping the agent while it holds the run: both ends tell a silent peer by it.
        A timer, not a task: a task per host cost its creation and its cancellation."""
        heartbeat = self.options.heartbeat
        self.stalls.expect(heartbeat)
        self._pinger = asyncio.get_running_loop().call_later(heartbeat, self._heartbeat)

    def _heartbeat(self) -> None:
        self.stalls.woke()
        if self.link is not None:
            with contextlib.suppress(AgentError):
                self.link.send(Ping(seq=0))
        self._next_heartbeat()

    # -- start, kill ------------------------------------------------------------
    def start(self, at: int | None, wake: int | None = None) -> None:
        """Release the commands at AT on the agent's clock (None: at once), the agent
        leaving its coarse sleep WAKE ns before (None: its own margin)."""
        assert self.link is not None
        self.start_at = at
        self.start_sent = now_ns()
        try:
            self.link.send(Start(at=at, wake=wake))
        except AgentError as exc:
            self.fail(str(exc))
            return
        for command in self.result.commands:
            if command.status is CommandStatus.PENDING:
                command.status = CommandStatus.RUNNING
        self._set_state(HostState.RUNNING)

    def kill(self, reason: str) -> None:
        """Have the agent kill the commands; it has KILL_CONFIRM_S to confirm."""
        if self.result.state.finished or self.link is None:
            return
        with contextlib.suppress(AgentError):
            self.link.send(Kill(reason=reason))
        self.deadline.killed(asyncio.get_running_loop().time())
        self._reschedule()

    # -- collect ----------------------------------------------------------------
    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.reschedule(self.deadline.due())

    async def collect(self) -> None:
        """Receive until the agent reports `finished`, resuming across cuts, within
        the deadline; whatever ends it ends in the host's state."""
        assert self.link is not None
        loop = asyncio.get_running_loop()
        timeouts = [spec.timeout for spec in self.specs if spec.timeout is not None]
        if len(timeouts) == len(self.specs):
            self.deadline.backstop = loop.time() + max(timeouts, default=0.0) + BACKSTOP_S
        try:
            async with asyncio.timeout_at(self.deadline.due()) as self._timer:
                while not self.result.state.finished:
                    try:
                        message = await self._receive()
                    except _Interrupted as exc:
                        await self._resume(str(exc))
                        continue
                    try:
                        self.handle(message)
                    except ArithmeticError as exc:
                        # Numbers the schema let through that still break the sums:
                        # that host's protocol error, not a crash of the whole run.
                        raise ConnectionLost(
                            f"protocol error: unusable {message.TYPE!r} from the agent ({exc})"
                        ) from None
        except TimeoutError:
            if self.fleet.abort_reason:
                self.give_up("the agent did not confirm the kill")
            else:
                for i in range(len(self.result.commands)):
                    self._finish(
                        i, CommandStatus.TIMEOUT, "the agent did not report the end in time"
                    )
                self._set_state(HostState.TIMEOUT, "the agent did not report in time")
                self.fleet.failed(self)
                if self.link is not None:
                    with contextlib.suppress(AgentError):
                        self.link.send(Kill(reason="no report from the agent in time"))
        except AgentError as exc:
            if self.fleet.abort_reason and not isinstance(exc, AgentStopping):
                self.give_up(str(exc))
            else:
                self.fail(str(exc), may_have_run=not isinstance(exc, _Reported))
        finally:
            self._timer = None
            self.silence.close()
            self.files.cut_off()
            self._files_changed()
            await self._close_link(keep=True)

    async def _receive(self) -> Message:
        """The host's next message; _Interrupted when the connection broke or went silent.

        Even a clean close may hide a live agent (its side of a cut ended first),
        so every loss but a shutdown or a tampered frame goes to `_resume`, which tells
        a gone agent."""
        assert self.link is not None
        silence = HEARTBEAT_MISSES * self.options.heartbeat
        try:  # a stall of our own loop is not the agent's silence (wire/silence.py)
            message = self.link.received()
            if message is None:
                message = await self.silence.receive(self.link.recv, silence)
            self.hearing.heard(self.link.received_ns)
            return message
        except PeerSilent:
            raise _Interrupted(f"no answer from the agent for {silence:g} s") from None
        except TimeoutError as exc:  # ETIMEDOUT from the socket
            raise _Interrupted(f"connection lost: {exc.strerror}") from None
        except ConnectionLost as exc:
            if not isinstance(exc, Tampered):  # a forged frame says nothing of the agent
                # Its close or its `shutdown` came then: heard, unless after a silence.
                self.hearing.heard(self.link.received_ns)
            if isinstance(exc, AgentStopping | Tampered):
                raise
            raise _Interrupted(str(exc)) from None

    async def _resume(self, cause: str) -> None:
        """Reconnect with backoff and resume the run within the agent's grace,
        or raise ConnectionLost: the agent kills the run at the same moment."""
        assert self.link is not None
        if not self.run_id or self.grace <= 0:
            raise ConnectionLost(cause)
        loop = asyncio.get_running_loop()
        record, silent_for = self._interruption(cause)
        cause = record.cause
        began = loop.time() - silent_for
        self.link.abort()
        # The agent counts its grace from when it noticed (sooner than us: fewer
        # heartbeats): ending ours from the last bytes heard ends both together.
        give_up = self.deadline.reconnect_until = began + self.grace
        self._reschedule()
        delay = RECONNECT_BACKOFF_S[0]
        timeout = self.options.connect_timeout
        while True:
            remaining = give_up - loop.time()
            if remaining <= 0:
                record.duration_s = loop.time() - began
                raise ConnectionLost(
                    f"lost for its {self.grace:g} s reconnect grace (after {cause})"
                )
            link = AgentLink(self.result.address, self.options.token.secret, self.options.dialer)
            try:
                await link.connect(min(timeout, remaining))
                await self._request_resume(link, min(timeout, remaining))
            except (_Gone, Refused) as exc:
                # Refused: the agent's process is gone (kill -9, a crash): lost now.
                link.abort()
                record.duration_s = loop.time() - began
                raise ConnectionLost(f"{cause} (reconnecting: {exc})") from None
            except AgentError:
                link.abort()
                await asyncio.sleep(min(delay, max(0.0, give_up - loop.time())))
                delay = min(2 * delay, RECONNECT_BACKOFF_S[1])
                continue
            self.link = link
            self.hearing.restart(now_ns())
            record.duration_s = loop.time() - began
            record.resumed = True
            self.files.resumed()
            self.deadline.resumed(record.duration_s)
            self._reschedule()
            self.fleet.host_changed(self)
            if self.fleet.abort_reason:
                with contextlib.suppress(AgentError):
                    link.send(Kill(reason=self.fleet.abort_reason))
            return

    def _interruption(self, cause: str) -> tuple[Interruption, float]:
        """The interruption now noticed, recorded, and how long it has lasted (s).

        It began with the last bytes heard before the silence, not when we noticed; a
        stall of our own loop meanwhile was ours (interruptions.py)."""
        assert self.link is not None
        now, received = now_ns(), self.link.received_ns
        heard = self.hearing.silent_since(now) or received
        silent_for = max(0.0, (now - heard) / 1e9) if heard else 0.0
        heartbeat = self.options.heartbeat
        stalled = self.stalls.within(HEARTBEAT_MISSES * heartbeat + silent_for)
        cause = text.interruption_cause(
            cause,
            silent_for if heard < self.hearing.last_ns else None,  # late bytes ended it
            stalled if stalled >= heartbeat else 0.0,  # shorter: no heartbeat was missed
        )
        silent_for = max(silent_for, stalled)  # a suspend stops the clock we heard on
        record = Interruption(at=self._epoch(now - int(silent_for * 1e9)), cause=cause)
        self.result.interrupted(record)
        self.fleet.host_changed(self)
        return record, silent_for

    async def _request_resume(self, link: AgentLink, timeout: float) -> None:
        offsets: list[OffsetsItem] = [
            {
                "id": i,
                "stdout": len(c.stdout) + c.lost_bytes("stdout"),
                "stderr": len(c.stderr) + c.lost_bytes("stderr"),
            }
            for i, c in enumerate(self.result.commands)
        ]
        link.send(Resume(run_id=self.run_id, offsets=offsets))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    answer = await link.recv()
                    if isinstance(answer, Resumed):
                        return
                    if isinstance(answer, Error):
                        if answer.code == "no-run":
                            raise _Gone(f"the agent no longer holds the run: {answer.message}")
                        raise AgentError(answer.message)
        except TimeoutError:
            raise AgentError(f"no 'resumed' reply within {timeout:g} s") from None

    # -- the end ----------------------------------------------------------------
    async def _close_link(self, keep: bool = False) -> None:
        """Close the link; KEEP: unless the run keeps it for the host's next test
        (at a boundary: links.py), then it is no longer this host's."""
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if self.link is None:
            return
        if keep and self.fleet.links.keep(self.link):
            self.link = None
            return
        await self.link.close()

    async def close(self) -> None:
        """The test is over, however it ended: nothing left open, pending or unfinished."""
        reason = self.fleet.abort_reason
        if self.link is not None and self.result.state in _LIVE:
            # Cancelled mid-run: tell the agent now rather than leave the jobs
            # to its orphan timer.
            with contextlib.suppress(AgentError):
                self.link.send(Kill(reason=reason or "the controller stopped"))
        if self.result.state is HostState.RUNNING:
            # We leave before its end (a second Ctrl-C, the window closed): the kill is
            # sent, not confirmed, and what the commands wrote from now on is not
            # collected. LOST, as commands whose host went away.
            self._lose(text.left_running(reason))
        await self._close_link()
        self._abandon(aborted_text(reason) if reason else "the run was interrupted")
        if not self.result.state.finished:
            self._set_state(HostState.KILLED, aborted_text(reason))
        for command in self.result.commands:  # no file left open, whatever happened
            command.stdout.close()
            command.stderr.close()

    # -- the agent's messages, one method each ----------------------------------
    def handle(self, message: Message) -> None:
        handler = self._HANDLERS.get(type(message))
        if handler is not None:
            handler(self, message)
        if self.files.changed:
            self._files_changed()

    def _files_changed(self) -> None:
        changed, self.files.changed = self.files.changed, []
        for index in changed:
            self.fleet.command_changed(self, index)

    def _on_output(self, message: OutputMessage) -> None:
        commands = self.result.commands
        index = message.id
        if 0 <= index < len(commands):
            stream = message.stream
            target = commands[index].stdout if stream == "stdout" else commands[index].stderr
            if target.closed:
                return  # after its end: nothing the agent owes us
            if message.at is not None:  # bytes before it were lost on the agent
                command = commands[index]
                expected = len(target) + command.lost_bytes(stream)
                if message.at < expected:
                    raise ConnectionLost(
                        f"protocol error: {stream} of command {index} sent again from byte "
                        f"{message.at} (it has {expected})"
                    )
                if message.at > expected:
                    command.gaps.append(OutputGap(stream, expected, message.at - expected))
                    self.fleet.command_changed(self, index)
            target.append(message.body)
            self.fleet.command_output(self, index, stream, message.body)

    def _on_started(self, message: Started) -> None:
        estimate = self.estimate
        assert estimate is not None
        commands = self.result.commands
        anchor = self.fleet.anchor_ns / 1e9
        # Released before we asked for the spawn, or after this report reached us:
        # impossible, whatever the clock estimate's error (it is within its bound).
        earliest = self.prepared_from - estimate.uncertainty_ns
        latest = now_ns() + estimate.uncertainty_ns
        ahead = message.ahead_ns
        if ahead is not None and self.start_at is not None:
            # The start reached it before we sent it, or after this report reached us:
            # a figure the next tests' lead would follow (lead.py), refused.
            arrived = estimate.to_controller(self.start_at - ahead)
            if not self.start_sent - estimate.uncertainty_ns <= arrived <= latest:
                raise ConnectionLost(text.impossible_arrival((arrived - self.start_sent) / 1e6))
        # The protocol checked the keys (command ids) and the bounded clock values.
        for key, agent_ns in message.released_at.items():
            index = int(key)
            if not 0 <= index < len(commands):
                continue
            at = estimate.to_controller(agent_ns)
            if not earliest <= at <= latest:
                raise ConnectionLost(
                    f"protocol error: command {index} released at an impossible instant "
                    f"({(at - self.prepared_from) / 1e9:+.6g} s from its prepare)"
                )
            self.released[index] = at
            commands[index].started_at = anchor + at / 1e9
            if self.start_at is not None:  # the agent's own clock alone: no estimate error
                commands[index].release_late_ms = (agent_ns - self.start_at) / 1e6
            self.fleet.command_changed(self, index)
        self.ahead_ns = ahead
        self._on_exec_instants(message, latest)
        self.fleet.released(self)

    def _on_exec_instants(self, message: Started, latest: float) -> None:
        """The commands' exec instants, none after LATEST (when the report reached us,
        plus the clock's bound): one far ahead made the test's exec spread centuries."""
        assert self.estimate is not None
        if message.exec_at is None:
            self.result.exec_error = message.exec_error or text.EXEC_NOT_SENT
            return
        for key, agent_ns in message.exec_at.items():
            index = int(key)
            released = message.released_at.get(key)
            if index not in self.released or released is None:
                continue
            if agent_ns < released:
                raise ConnectionLost(
                    f"protocol error: command {index} began before its release "
                    f"({(agent_ns - released) / 1e6:+.3f} ms)"
                )
            at = self.estimate.to_controller(agent_ns)
            if at > latest:
                raise ConnectionLost(text.impossible_exec((at - latest) / 1e6))
            self.exec_at[index] = at
        if self.released and not self.exec_at:
            # The agent watched and none of its commands exec'd a program before it
            # reported them started: they ran in the shell itself (`echo`, a loop).
            self.result.exec_error = text.EXEC_NOTHING

    def _on_exit(self, message: Exit) -> None:
        assert self.estimate is not None
        commands = self.result.commands
        index = message.id
        if not 0 <= index < len(commands):
            return
        status = CommandStatus(message.status)
        ended = message.ended_at
        if ended is not None and index in self.released:
            # No later than this report reached us (the clock's bound and a drift of
            # 0.1 % of the run time allowed): one far ahead made its run time centuries
            # and the test's concurrent window a vanishing fraction of it.
            now = now_ns()
            drift = (now - self.released[index]) / 1000
            latest = now + self.estimate.uncertainty_ns + drift
            self.ended[index] = min(self.estimate.to_controller(ended), latest)
            commands[index].duration_s = max(0.0, (self.ended[index] - self.released[index]) / 1e9)
        # "exited with code 0" says nothing the status does not.
        words = (
            ""
            if status is CommandStatus.OK
            else text.command_end(status, message.message, message.timeout, message.spool_error)
        )
        if status is CommandStatus.KILLED and index not in self.released:
            # Killed behind its gate: it never ran (the agent reports its releases first).
            status, words = CommandStatus.ERROR, text.not_started(words)
        self._finish(index, status, words, message.exit_code)
        if status is CommandStatus.TIMEOUT:
            self.fleet.failed(self)

    def _on_file(self, message: File) -> None:
        self.files.on_file(message)
        if self._timer is not None:
            self.deadline.file_started(asyncio.get_running_loop().time())

    def _on_file_data(self, message: FileData) -> None:
        if self._timer is not None and message.body:  # progress is bytes, not frames
            now = asyncio.get_running_loop().time()
            self.deadline.file_data(now, len(message.body), self.files.total_limit)
            self._reschedule()
        self.files.on_file_data(message)

    def _on_file_end(self, message: FileEnd) -> None:
        self.files.on_file_end(message)

    def _on_collected(self, message: CollectedMessage) -> None:
        self.files.on_collected(message)
        index = message.id
        if 0 <= index < len(self.result.commands) and self.result.commands[index].status.finished:
            self._measure(index)  # its files are in: the agent collects after the end
            self.fleet.command_changed(self, index, final=True)

    def _on_finished(self, message: Finished) -> None:
        commands = self.result.commands
        for i in range(len(commands)):
            self._finish(i, CommandStatus.ERROR, "the agent reported no exit")
        if self.timed_out:
            self._set_state(HostState.TIMEOUT, "a command ran past its timeout")
        elif any(c.status is CommandStatus.KILLED for c in commands) or (
            self.fleet.abort_reason and not self.released  # aborted before its start
        ):
            self._set_state(HostState.KILLED)
        else:
            self._set_state(HostState.DONE)

    def _on_error(self, message: Error) -> None:
        raise _Reported(f"the agent reported: {message.message}")

    def _on_shutdown(self, message: Shutdown) -> None:
        raise AgentStopping(f"the agent shut down mid-test: {message.reason}")

    # By the class of the agent's message; each takes only its own class.
    _HANDLERS: ClassVar[dict[type[Message], Callable[[HostRun, Any], None]]] = {
        OutputMessage: _on_output,
        Started: _on_started,
        Exit: _on_exit,
        File: _on_file,
        FileData: _on_file_data,
        FileEnd: _on_file_end,
        CollectedMessage: _on_collected,
        Finished: _on_finished,
        Error: _on_error,
        Shutdown: _on_shutdown,
    }
