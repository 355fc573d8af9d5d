"""Drive the tests of a plan across agents: connect, measure clocks, prepare,
start everyone at one instant, enforce the quorum, collect everything.

Per test:
1. connect and authenticate every host in parallel, measure each clock
   offset (hosts take turns: probe.ClockPolicy), and have each agent prepare
   (spawn) its commands behind a gate: as soon as its clock is measured, or,
   when some host has no kernel arrival stamps (SSH), once every clock is;
2. once every host is ready or failed, and the quorum still holds, send each
   ready host the same start instant expressed in its own clock;
3. collect output and exits; the moment the quorum can no longer be met,
   tell every host to kill its commands and report the test ABORTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from netjobs_core import text
from netjobs_core.client import (
    AgentError,
    AgentLink,
    AgentStopping,
    ConnectionLost,
    Dialer,
    Refused,
    Tampered,
)
from netjobs_core.config import CommandSpec, Plan, TestSpec
from netjobs_core.events import (
    CommandChanged,
    CommandOutput,
    Event,
    HostChanged,
    Observer,
    TestFinished,
    TestStarted,
)
from netjobs_core.outputs import KEEP_BYTES, Output
from netjobs_core.probe import DEFAULT_CLOCK, ClockPolicy, probe
from netjobs_core.results import (
    Collected,
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    Interruption,
    RunResult,
    StartMode,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import INLINE_LIMIT, write_json
from netjobs_core.run_folder import RunFolder, safe_name
from netjobs_core.spread import HostReleases, start_spread
from netjobs_core.verdict import aborted_text, quorum_lost_reason, verdict
from netjobs_core.window import window_of
from netjobs_core.wire import rx_stamps
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import OffsetEstimate, now_ns, wall_anchor_ns
from netjobs_core.wire.protocol import MAX_COLLECT_FILES, MAX_ENV_VALUE, Message
from netjobs_core.wire.silence import PeerSilent, receive_within
from netjobs_core.wire.tokens import Token

KILL_CONFIRM_S = 10.0  # how long agents get to report their kills
BACKSTOP_S = 30.0  # past the longest timeout, the agent itself must have reported
HANDSHAKE_GRACE_S = 1.0  # an abort lets hosts in their handshake finish it, this long
HEARTBEAT_MISSES = 5  # as the agent counts: this many heartbeats unanswered is a silent loss
RECONNECT_BACKOFF_S = (0.2, 5.0)  # first and longest wait between reconnection attempts
DEFAULT_COLLECT_MAX = 1024**3  # bytes: the largest file -collect brings back (--collect-max)
_SPOOLED_NAME_RE = re.compile(r"cmd[0-9]+\.(stdout|stderr)")  # the run folder's own files


class _Interrupted(Exception):
    """The connection broke or went silent; the agent may still hold the run."""


class _Gone(AgentError):
    """The agent answered a resume: it no longer holds the run."""


@dataclass
class RunOptions:
    token: Token
    start_mode: StartMode = StartMode.SCHEDULED
    connect_timeout: float = 5.0
    stop_on_failure: bool = False
    prepare_timeout: float = 30.0
    heartbeat: float = 2.0  # ping each agent this often during a run (silent-loss detection)
    reconnect_grace: float | None = None  # per run; None: each agent's own default
    run_folder: RunFolder | None = None  # where the run's files go; None: a new one (run_folder)
    repeat: int = 1  # each test this many times in a row (TestResult.repetition when > 1)
    output_keep: int = KEEP_BYTES  # bytes of each output's head and tail kept in memory
    inline_limit: int = INLINE_LIMIT  # larger outputs are referenced from results.json
    collect_max: int | None = DEFAULT_COLLECT_MAX  # per collected file; None: no limit
    dialer: Dialer | None = None  # for ssh:// targets (netjobs_core/ssh.py; session.run_plan)
    clock: ClockPolicy = DEFAULT_CLOCK  # how the hosts' clocks are measured


# Prepared, and the agent has not reported `finished`: its processes may be alive.
_LIVE = (HostState.READY, HostState.RUNNING)


@dataclass
class _Incoming:
    """A collected file on its way: written to disk chunk by chunk as it comes."""

    index: int  # the command
    pattern: str
    path: Path
    file: BinaryIO | None  # None once the copy failed: the rest is only counted
    digest: Any  # hashlib sha256
    received: int = 0  # bytes
    error: str = ""

    def fail(self, error: str) -> None:
        """Stop writing: the file is not kept (the first error is the one reported)."""
        self.error = self.error or error
        if self.file is not None:
            self.file.close()
            self.file = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.file is None:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.fail(f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self.digest.update(data)


class _Host:
    """One host's part in one test: its link, clock estimate and commands.

    `result.state` is the host's one state: CONNECTING -> SYNCING -> PREPARING ->
    READY -> RUNNING -> (the agent's `finished`) DONE / TIMEOUT / KILLED; FAILED,
    TIMEOUT or KILLED from any state when the host is lost, late or aborted.
    """

    def __init__(self, result: HostResult, specs: list[CommandSpec], position: int = 0) -> None:
        self.result = result
        self.specs = specs
        self.position = position  # among the test's hosts, in config order: NETJOBS_INDEX
        self.link: AgentLink | None = None
        self.estimate: OffsetEstimate | None = None
        self.released: dict[int, float] = {}  # command index -> controller clock ns
        self.ended: dict[int, float] = {}
        self.deadline: asyncio.Timeout | None = None  # of the collect loop
        self.run_id = ""  # the agent's name for the run, for a resume
        self.grace = 0.0  # how long the agent keeps the run for us after a silent loss
        self.incoming: _Incoming | None = None  # the collected file being received
        # (command, agent's name, how many of that name before) -> the name it is saved as;
        # the occurrences count again from 0 on a resume, whose replay resends every file.
        self.file_names: dict[tuple[int, str, int], str] = {}
        self.name_seen: Counter[tuple[int, str]] = Counter()

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


def _with_folder(options: RunOptions) -> tuple[RunOptions, RunFolder]:
    """`options` with its run folder, made under the data directory when none was given."""
    if options.run_folder is None:
        options = dataclasses.replace(options, run_folder=RunFolder.create())
    assert options.run_folder is not None
    return options, options.run_folder


class _TestRun:
    def __init__(
        self,
        spec: TestSpec,
        options: RunOptions,
        observer: Observer | None,
        repetition: int | None = None,
    ) -> None:
        self.spec = spec
        self.options, self.folder = _with_folder(options)
        options = self.options
        self._observer = observer
        self.result = TestResult(
            label=spec.label,
            minhosts=spec.minhosts,
            start_mode=options.start_mode,
            repetition=repetition,
        )
        self.hosts: list[_Host] = []
        by_address: dict[Address, list[CommandSpec]] = {}  # config order (a node set: many)
        for command in spec.commands:
            by_address.setdefault(command.address, []).append(command)
        for address, specs in by_address.items():
            host = HostResult(address)
            host.commands = [
                CommandResult(
                    c.command,
                    c.line,
                    timeout=c.timeout,
                    stdout=Output(keep=options.output_keep),
                    stderr=Output(keep=options.output_keep),
                )
                for c in specs
            ]
            self.result.hosts.append(host)
            self.hosts.append(_Host(host, specs, len(self.hosts)))
        self.abort_reason = ""
        self.aborted = asyncio.Event()
        self.changed = asyncio.Event()  # set by every host state change
        self.anchor = 0.0
        self.anchor_ns = 0.0
        self._spread_pending = False
        self._unmeasured = len(self.hosts)  # hosts whose clock measurement has not ended
        self.measured = asyncio.Event()  # ... none left
        # With kernel arrival stamps on every path, one host's spawning and `prepared`
        # cannot bias the clocks measured meanwhile (probe.ClockPolicy): hosts prepare
        # as they are measured. Pipes (SSH) have no stamps: every clock first there.
        # (An agent older than the stamps is only found out by its first pong: its
        # estimate may then move, within the bound it reports.)
        self.prepare_at_once = (
            options.clock.kernel_stamps
            and rx_stamps.SO_TIMESTAMPNS is not None
            and not any(host.result.address.over_ssh for host in self.hosts)
        )
        self.common_start_ns: float | None = None

    # -- events ---------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self._observer is not None:
            self._observer(event)

    def host_changed(self, host: _Host) -> None:
        self.emit(HostChanged(self.result, host.result))

    def set_state(self, host: _Host, state: HostState, error: str = "") -> None:
        host.result.state = state
        if error:
            host.result.error = error
        self.changed.set()
        self.host_changed(host)

    def finish_command(
        self,
        host: _Host,
        index: int,
        status: CommandStatus,
        message: str = "",
        exit_code: int | None = None,
    ) -> None:
        command = host.result.commands[index]
        if command.status.finished:
            return
        command.status = status
        command.message = message
        command.exit_code = exit_code
        command.stdout.close()  # the agent sends a command's output before its end
        command.stderr.close()
        self.emit(CommandChanged(self.result, host.result, index))

    # -- quorum ---------------------------------------------------------------
    def check_quorum(self) -> None:
        if self.aborted.is_set():
            return
        required = self.spec.required_hosts
        good = sum(1 for h in self.hosts if not h.bad)
        if good < required:
            lost = [h.result for h in self.hosts if h.bad]
            self.abort(
                quorum_lost_reason(good, len(self.hosts), self.spec.minhosts, required, lost)
            )

    def abort(self, reason: str) -> None:
        if not self.aborted.is_set():
            self.abort_reason = reason
            self.aborted.set()

    def fail_host(self, host: _Host, error: str) -> None:
        """The host is out: unreachable, refused, lost... Its unfinished commands
        could not run (ERROR) or, once started, are LOST: they ran, end unknown."""
        started = host.result.state is HostState.RUNNING
        lost_at = time.time()
        for index, command in enumerate(host.result.commands):
            if started and not command.status.finished:
                command.lost_at = lost_at
                message = f"lost at {text.time_of_day(lost_at)}: {error}"
                self.finish_command(host, index, CommandStatus.LOST, message)
            else:
                self.finish_command(host, index, CommandStatus.ERROR, error)
        self.set_state(host, HostState.FAILED, error)
        self.check_quorum()

    # -- phase 1: connect, measure, prepare --------------------------------------
    async def prepare(self, host: _Host) -> None:
        options = self.options
        link = AgentLink(host.result.address, options.token.secret, options.dialer)
        host.link = link
        try:
            try:
                found = await probe(
                    link,
                    options.connect_timeout,
                    on_connected=lambda: self.set_state(host, HostState.SYNCING),
                    policy=options.clock,
                )
            finally:
                self._unmeasured -= 1
                if not self._unmeasured:
                    self.measured.set()
            estimate = found.estimate
            host.estimate = estimate
            host.result.rtt_ms = estimate.rtt_ns / 1e6
            host.result.clock_offset_ms = estimate.offset_ns / 1e6
            host.result.clock_uncertainty_ms = estimate.uncertainty_ns / 1e6
            wall = estimate.wall_offset_ns(self.anchor_ns)
            host.result.wall_clock_offset_ms = None if wall is None else wall / 1e6
            host.result.agent_version = found.version
            host.result.hostname = found.hostname
            if not self.prepare_at_once:
                # Every clock first: an agent's spawning and its `prepared` would bias
                # the pings of hosts still measured without stamps.
                await self.measured.wait()
            self.set_state(host, HostState.PREPARING)
            commands = [
                {
                    "id": i,
                    "command": spec.command,
                    "timeout": spec.timeout,
                    "env": self.environment(host, i),
                    "collect": list(spec.collect) or None,
                }
                for i, spec in enumerate(host.specs)
            ]
            fields = {
                "label": self.spec.label,
                "commands": commands,
                "grace": options.reconnect_grace,
                "heartbeat": options.heartbeat,
                "collect_max": options.collect_max,
            }
            prepared = await link.request(
                Message("prepare", fields), "prepared", options.prepare_timeout
            )
            host.result.gated = prepared["gated"]
            host.run_id, host.grace = prepared["run_id"], prepared["grace"]
            for item in prepared["commands"]:
                if isinstance(item, dict) and not item.get("ok", False):
                    index = item.get("id")
                    if isinstance(index, int) and 0 <= index < len(host.result.commands):
                        self.finish_command(
                            host,
                            index,
                            CommandStatus.ERROR,
                            str(item.get("error") or "could not be started"),
                        )
            self.set_state(host, HostState.READY)
        except AgentError as exc:
            await link.close()
            self.fail_host(host, str(exc))
        except asyncio.CancelledError:
            await link.close()
            raise

    def environment(self, host: _Host, index: int) -> dict[str, str]:
        """Command INDEX's place in the fleet; the agent adds NETJOBS_START_EPOCH_NS."""
        env = {
            "NETJOBS_TEST": self.spec.label,
            "NETJOBS_HOST": host.specs[index].target,
            "NETJOBS_INDEX": str(host.position),
            "NETJOBS_COUNT": str(len(self.hosts)),
            "NETJOBS_COMMAND_INDEX": str(index),
            "NETJOBS_RUN_ID": self.folder.run_id,
        }
        return {name: value[:MAX_ENV_VALUE] for name, value in env.items()}

    # -- phase 2: start -----------------------------------------------------------
    def start(self, ready: list[_Host]) -> None:
        if self.options.start_mode is StartMode.SCHEDULED:
            worst_rtt = max(h.estimate.rtt_ns for h in ready if h.estimate)
            # Far enough ahead to reach every host (one-way ~ rtt/2, with room
            # for jitter and for writing to every host), and for an agent to
            # wake from its coarse sleep.
            lead = 15_000_000 + 3 * worst_rtt + 200_000 * len(ready)
            at = now_ns() + lead
            self.common_start_ns = at
            self.result.scheduled_start = self.anchor + at / 1e9
            for host in ready:
                assert host.estimate is not None and host.link is not None
                self._send_start(host, host.estimate.to_agent(at))
        else:
            for host in ready:
                self._send_start(host, None)

    def _send_start(self, host: _Host, at: int | None) -> None:
        assert host.link is not None
        try:
            host.link.send(Message("start", {"at": at}))
        except AgentError as exc:
            self.fail_host(host, str(exc))
            return
        for command in host.result.commands:
            if command.status is CommandStatus.PENDING:
                command.status = CommandStatus.RUNNING
        self.set_state(host, HostState.RUNNING)

    # -- phase 3: collect -------------------------------------------------------
    def backstop(self, host: _Host) -> float | None:
        """When the agent must have reported, whatever happened; None: no limit."""
        timeouts = [spec.timeout for spec in host.specs if spec.timeout is not None]
        if len(timeouts) < len(host.specs):
            return None
        return asyncio.get_running_loop().time() + max(timeouts, default=0.0) + BACKSTOP_S

    async def collect(self, host: _Host) -> None:
        assert host.link is not None
        pinger = asyncio.create_task(self._heartbeat(host), name=f"heartbeat {host.result.target}")
        try:
            async with asyncio.timeout_at(self.backstop(host)) as deadline:
                host.deadline = deadline
                if self.aborted.is_set():
                    deadline.reschedule(asyncio.get_running_loop().time() + KILL_CONFIRM_S)
                while not host.result.state.finished:
                    try:
                        message = await self._receive(host)
                    except _Interrupted as exc:
                        await self._resume(host, str(exc))
                        continue
                    try:
                        self.handle(host, message)
                    except ArithmeticError as exc:
                        # Numbers the schema let through that still break the sums:
                        # that host's protocol error, not a crash of the whole run.
                        raise ConnectionLost(
                            f"protocol error: unusable {message.type!r} from the agent ({exc})"
                        ) from None
        except TimeoutError:
            if self.aborted.is_set():
                self._give_up(host, "the agent did not confirm the kill", HostState.KILLED)
            else:
                for i in range(len(host.result.commands)):
                    self.finish_command(
                        host, i, CommandStatus.TIMEOUT, "the agent did not report the end in time"
                    )
                self.set_state(host, HostState.TIMEOUT, "the agent did not report in time")
                self.check_quorum()
                with contextlib.suppress(AgentError):
                    host.link.send(Message("kill", {"reason": "no report from the agent in time"}))
        except AgentError as exc:
            if self.aborted.is_set() and not isinstance(exc, AgentStopping):
                self._give_up(host, str(exc), HostState.KILLED)
            else:
                self.fail_host(host, str(exc))
        finally:
            pinger.cancel()
            host.deadline = None
            if host.incoming is not None:  # cut off mid-file: what came is not the file
                self._warn(host, host.incoming.index, f"{host.incoming.path.name}: incomplete")
                host.incoming.fail("incomplete")
                host.incoming = None
            await host.link.close()
            await asyncio.wait({pinger})

    async def _heartbeat(self, host: _Host) -> None:
        """Ping the agent during the run: both ends tell a silent peer by it."""
        while True:
            await asyncio.sleep(self.options.heartbeat)
            with contextlib.suppress(AgentError):
                assert host.link is not None
                host.link.send(Message("ping", {"seq": 0}))

    async def _receive(self, host: _Host) -> Message:
        """The host's next message; _Interrupted when the connection broke or went silent.

        Even a clean close may hide a live agent (its side of a cut ended first),
        so every loss but a shutdown or a tampered frame goes to `_resume`, which tells
        a gone agent."""
        assert host.link is not None
        silence = HEARTBEAT_MISSES * self.options.heartbeat
        try:  # a stall of our own loop is not the agent's silence (wire/silence.py)
            return await receive_within(host.link.recv, silence)
        except PeerSilent:
            raise _Interrupted(f"no answer from the agent for {silence:g} s") from None
        except TimeoutError as exc:  # ETIMEDOUT from the socket
            raise _Interrupted(f"connection lost: {exc.strerror}") from None
        except ConnectionLost as exc:
            if isinstance(exc, AgentStopping | Tampered):
                raise
            raise _Interrupted(str(exc)) from None

    async def _resume(self, host: _Host, cause: str) -> None:
        """Reconnect with backoff and resume the run within the agent's grace,
        or raise ConnectionLost: the agent kills the run at the same moment."""
        assert host.link is not None
        if not host.run_id or host.grace <= 0:
            raise ConnectionLost(cause)
        loop = asyncio.get_running_loop()
        # The interruption began with the last bytes heard, not when we noticed.
        silent_for = (
            max(0.0, (now_ns() - host.link.received_ns) / 1e9) if host.link.received_ns else 0
        )
        began = loop.time() - silent_for
        record = Interruption(at=time.time() - silent_for, cause=cause)
        host.result.interruptions.append(record)
        self.host_changed(host)
        host.link.abort()
        # The agent counts its grace from when it noticed (sooner than us: fewer
        # heartbeats): ending ours from the last bytes heard ends both together.
        give_up = began + host.grace
        backstop = host.deadline.when() if host.deadline is not None else None
        if host.deadline is not None and backstop is not None:
            host.deadline.reschedule(max(backstop, give_up + BACKSTOP_S))
        delay = RECONNECT_BACKOFF_S[0]
        while True:
            remaining = give_up - loop.time()
            if remaining <= 0:
                record.duration_s = loop.time() - began
                raise ConnectionLost(
                    f"lost for its {host.grace:g} s reconnect grace (after {cause})"
                )
            link = AgentLink(host.result.address, self.options.token.secret, self.options.dialer)
            try:
                await link.connect(min(self.options.connect_timeout, remaining))
                await self._request_resume(host, link, min(self.options.connect_timeout, remaining))
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
            host.link = link
            record.duration_s = loop.time() - began
            record.resumed = True
            host.name_seen.clear()
            if host.deadline is not None and backstop is not None:
                host.deadline.reschedule(backstop + record.duration_s)
            self.host_changed(host)
            if self.aborted.is_set():
                with contextlib.suppress(AgentError):
                    link.send(Message("kill", {"reason": self.abort_reason}))
            return

    async def _request_resume(self, host: _Host, link: AgentLink, timeout: float) -> None:
        offsets = [
            {"id": i, "stdout": len(c.stdout), "stderr": len(c.stderr)}
            for i, c in enumerate(host.result.commands)
        ]
        link.send(Message("resume", {"run_id": host.run_id, "offsets": offsets}))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    answer = await link.recv()
                    if answer.type == "resumed":
                        return
                    if answer.type == "error":
                        if answer["code"] == "no-run":
                            raise _Gone(f"the agent no longer holds the run: {answer['message']}")
                        raise AgentError(answer["message"])
        except TimeoutError:
            raise AgentError(f"no 'resumed' reply within {timeout:g} s") from None

    def _give_up(self, host: _Host, error: str, state: HostState) -> None:
        for i in range(len(host.result.commands)):
            self.finish_command(host, i, CommandStatus.KILLED, error)
        self.set_state(host, state, error)

    # -- the agent's messages, one method each --------------------------------
    def handle(self, host: _Host, message: Message) -> None:
        handler = self._HANDLERS.get(message.type)
        if handler is not None:
            handler(self, host, message)

    def _on_output(self, host: _Host, message: Message) -> None:
        commands = host.result.commands
        index = message["id"]
        if 0 <= index < len(commands):
            stream = message["stream"]
            target = commands[index].stdout if stream == "stdout" else commands[index].stderr
            if target.closed:
                return  # after its end: nothing the agent owes us
            target.append(message.body)
            self.emit(CommandOutput(self.result, host.result, index, stream, message.body))

    def _on_started(self, host: _Host, message: Message) -> None:
        assert host.estimate is not None
        commands = host.result.commands
        # The protocol checked the keys (command ids) and the bounded clock values.
        for key, agent_ns in message["released_at"].items():
            index = int(key)
            if 0 <= index < len(commands):
                at = host.estimate.to_controller(agent_ns)
                host.released[index] = at
                commands[index].started_at = self.anchor + at / 1e9
                self.emit(CommandChanged(self.result, host.result, index))
        self._spread_soon()  # live, as releases arrive

    def _on_exit(self, host: _Host, message: Message) -> None:
        assert host.estimate is not None
        commands = host.result.commands
        index = message["id"]
        if not 0 <= index < len(commands):
            return
        status = CommandStatus(message["status"])
        ended = message.get("ended_at")
        if ended is not None and index in host.released:
            host.ended[index] = host.estimate.to_controller(ended)
            commands[index].duration_s = max(0.0, (host.ended[index] - host.released[index]) / 1e9)
        # "exited with code 0" says nothing the status does not.
        text = "" if status is CommandStatus.OK else message["message"]
        self.finish_command(host, index, status, text, message.get("exit_code"))
        if status is CommandStatus.TIMEOUT:
            self.check_quorum()

    # -- collected files ------------------------------------------------------------
    def _warn(self, host: _Host, index: int, warning: str) -> None:
        warnings = host.result.commands[index].warnings
        if warning not in warnings:  # a replay after a resume says it again
            warnings.append(warning)
            self.emit(CommandChanged(self.result, host.result, index))

    def _file_name(self, host: _Host, index: int, name: str) -> str:
        """Where command INDEX's file NAME goes in the host's folder: its own name,
        unless another file (or a spooled output) has it."""
        key = (index, name, host.name_seen[index, name])
        host.name_seen[index, name] += 1
        saved = host.file_names.get(key)
        if saved is None:
            taken = set(host.file_names.values())
            saved = safe_name(name)
            serial = 1
            while saved in taken or _SPOOLED_NAME_RE.fullmatch(saved):
                saved = (
                    f"cmd{index}.{serial}.{safe_name(name)}"
                    if serial > 1
                    else f"cmd{index}.{safe_name(name)}"
                )
                serial += 1
            host.file_names[key] = saved
        return saved

    def _on_file(self, host: _Host, message: Message) -> None:
        index = message["id"]
        specs = host.specs
        if not 0 <= index < len(specs) or message["pattern"] >= len(specs[index].collect):
            raise ConnectionLost("protocol error: a collected file nobody asked for")
        if host.incoming is not None:  # a replay after a resume sends it again
            host.incoming.fail("resent")
        directory = self.folder.host_dir(
            self.spec.label, host.result.address, self.result.repetition
        )
        path = directory / self._file_name(host, index, message["name"])
        incoming = host.incoming = _Incoming(
            index, specs[index].collect[message["pattern"]], path, None, hashlib.sha256()
        )
        limit = self.options.collect_max
        if limit is not None and message["size"] > limit:
            incoming.fail(f"{text.size(message['size'])}: larger than the {text.size(limit)} limit")
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            incoming.file = path.open("wb")
        except OSError as exc:
            incoming.fail(f"cannot write {path}: {exc.strerror or exc}")

    def _on_file_data(self, host: _Host, message: Message) -> None:
        incoming = host.incoming
        assert incoming is not None  # the protocol: file_data only inside a file
        if host.deadline is not None:  # a transfer in progress is no silent agent
            when = host.deadline.when()
            if when is not None:
                host.deadline.reschedule(max(when, asyncio.get_running_loop().time() + BACKSTOP_S))
        incoming.write(message.body)
        limit = self.options.collect_max
        if limit is not None and incoming.received > limit:
            incoming.fail(f"more than the {text.size(limit)} limit")

    def _on_file_end(self, host: _Host, message: Message) -> None:
        incoming = host.incoming
        assert incoming is not None
        host.incoming = None
        error = message.get("error") or incoming.error
        digest = incoming.digest.hexdigest()
        if not error and (message["bytes"] != incoming.received or message["sha256"] != digest):
            error = "its SHA-256 does not match what was received"
        command = host.result.commands[incoming.index]
        # A replay after a resume may send a file again: the last copy is the one listed.
        command.collected = [c for c in command.collected if c.path != incoming.path]
        if error:
            incoming.fail(error)
            self._warn(host, incoming.index, f"{incoming.path.name}: not collected: {error}")
            return
        assert incoming.file is not None  # no error: it was written
        incoming.file.close()
        command.collected.append(
            Collected(incoming.pattern, incoming.path, incoming.received, message["sha256"])
        )
        self.emit(CommandChanged(self.result, host.result, incoming.index))

    def _on_collected(self, host: _Host, message: Message) -> None:
        index = message["id"]
        if not 0 <= index < len(host.specs):
            return
        for pattern, matched in zip(host.specs[index].collect, message["matched"], strict=False):
            if matched == 0:
                self._warn(host, index, f"-collect {pattern!r}: no file matched")
            elif matched > MAX_COLLECT_FILES:
                self._warn(
                    host,
                    index,
                    f"-collect {pattern!r}: {matched} files matched, "
                    f"only the first {MAX_COLLECT_FILES} were collected",
                )

    def _on_finished(self, host: _Host, message: Message) -> None:
        commands = host.result.commands
        for i in range(len(commands)):
            self.finish_command(host, i, CommandStatus.ERROR, "the agent reported no exit")
        if host.timed_out:
            self.set_state(host, HostState.TIMEOUT, "a command ran past its timeout")
        elif any(c.status is CommandStatus.KILLED for c in commands):
            self.set_state(host, HostState.KILLED)
        else:
            self.set_state(host, HostState.DONE)

    def _on_error(self, host: _Host, message: Message) -> None:
        raise AgentError(f"the agent reported: {message['message']}")

    def _on_shutdown(self, host: _Host, message: Message) -> None:
        raise AgentStopping(f"the agent shut down mid-test: {message['reason']}")

    _HANDLERS: ClassVar[dict[str, Callable[[_TestRun, _Host, Message], None]]] = {
        "output": _on_output,
        "started": _on_started,
        "exit": _on_exit,
        "file": _on_file,
        "file_data": _on_file_data,
        "file_end": _on_file_end,
        "collected": _on_collected,
        "finished": _on_finished,
        "error": _on_error,
        "shutdown": _on_shutdown,
    }

    async def kill_on_abort(self, hosts: list[_Host]) -> None:
        await self.aborted.wait()
        kill_by = asyncio.get_running_loop().time() + KILL_CONFIRM_S
        for host in hosts:
            if host.result.state.finished or host.link is None:
                continue
            with contextlib.suppress(AgentError):
                host.link.send(Message("kill", {"reason": self.abort_reason}))
            if host.deadline is not None:
                host.deadline.reschedule(kill_by)

    # -- the whole test ---------------------------------------------------------
    def _place_outputs(self) -> None:
        """Each stream's file in the run folder (known once the repetition is)."""
        for host in self.result.hosts:
            where = self.folder.host_dir(self.result.label, host.address, self.result.repetition)
            for k, command in enumerate(host.commands):
                command.stdout.path = where / f"cmd{k}.stdout"
                command.stderr.path = where / f"cmd{k}.stderr"

    async def run(self) -> TestResult:
        result = self.result
        self._place_outputs()
        result.status = TestStatus.RUNNING
        result.started_at = time.time()
        self.anchor_ns = wall_anchor_ns()
        self.anchor = self.anchor_ns / 1e9  # epoch seconds at clock zero
        self.emit(TestStarted(result))
        began = now_ns()
        try:
            await self._run_phases()
        finally:
            # Whatever happened (even cancellation), nothing is left open or pending.
            for host in self.hosts:
                if host.link is not None:
                    if host.result.state in _LIVE:
                        # Cancelled mid-run: tell the agent now rather than
                        # leave the jobs to its orphan timer.
                        with contextlib.suppress(AgentError):
                            host.link.send(
                                Message(
                                    "kill",
                                    {"reason": self.abort_reason or "the controller stopped"},
                                )
                            )
                    await host.link.close()
                for i, command in enumerate(host.result.commands):
                    if not command.status.finished:
                        self.finish_command(
                            host,
                            i,
                            CommandStatus.KILLED,
                            aborted_text(self.abort_reason)
                            if self.abort_reason
                            else "the run was interrupted",
                        )
                if not host.result.state.finished:
                    self.set_state(host, HostState.KILLED, aborted_text(self.abort_reason))
                for command in host.result.commands:  # no file left open, whatever happened
                    command.stdout.close()
                    command.stderr.close()
            self._measure_spread()
            self._conclude()
            result.duration_s = (now_ns() - began) / 1e9
            self.emit(TestFinished(result))
        return result

    async def _run_phases(self) -> None:
        await self._prepare_all()
        ready = [h for h in self.hosts if h.result.state is HostState.READY]
        self.check_quorum()
        if self.aborted.is_set():
            # Prepared processes are still gated: have the agents drop them.
            for host in ready:
                with contextlib.suppress(AgentError):
                    assert host.link is not None
                    host.link.send(Message("kill", {"reason": self.abort_reason}))
                self._give_up(host, aborted_text(self.abort_reason), HostState.KILLED)
            return
        if not ready:
            return  # the verdict says what that means
        self.start(ready)
        started = [h for h in ready if h.result.state is HostState.RUNNING]
        async with asyncio.TaskGroup() as group:
            killer = group.create_task(self.kill_on_abort(started))
            collectors = [group.create_task(self.collect(h)) for h in started]
            await asyncio.gather(*collectors)
            killer.cancel()

    async def _prepare_all(self) -> None:
        """Phase 1 on every host at once. A host's failure is an AgentError that
        `prepare` records; anything else is a bug and propagates from the group."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.prepare(h)) for h in self.hosts]
            watcher = group.create_task(self._cancel_on_abort(tasks))
            pinger = group.create_task(self._heartbeat_ready())
            if tasks:
                await asyncio.wait(tasks)
            watcher.cancel()
            pinger.cancel()

    async def _heartbeat_ready(self) -> None:
        """A prepared agent expects our heartbeat from its `prepared` on, and with many
        hosts the last ones' preparing can outlast its patience: ping the ready ones."""
        while True:
            await asyncio.sleep(self.options.heartbeat)
            for host in self.hosts:
                if host.result.state is HostState.READY and host.link is not None:
                    with contextlib.suppress(AgentError):
                        host.link.send(Message("ping", {"seq": 0}))

    async def _cancel_on_abort(self, tasks: list[asyncio.Task[None]]) -> None:
        """The quorum is lost while hosts still prepare: stop waiting for them
        (the group awaits the cancelled tasks, which close their links)."""
        await self.aborted.wait()
        # Hosts still in their handshake finish it first: with a wrong token on
        # several hosts, each says so, not only the first one to answer.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANDSHAKE_GRACE_S):
                while any(h.result.state is HostState.CONNECTING for h in self.hosts):
                    self.changed.clear()
                    await self.changed.wait()
        for task in tasks:
            task.cancel()

    def _spread_soon(self) -> None:
        """Measure the spread once per loop turn however many releases arrived in it:
        it costs O(hosts), and per release that was the largest cost of 1000 hosts."""
        if not self._spread_pending:
            self._spread_pending = True
            asyncio.get_running_loop().call_soon(self._spread_now)

    def _spread_now(self) -> None:
        self._spread_pending = False
        self._measure_spread()

    def _measure_spread(self) -> None:
        released = [(h, h.estimate) for h in self.hosts if h.released and h.estimate]
        spread = start_spread(
            [HostReleases(list(h.released.values()), e.uncertainty_ns) for h, e in released],
            self.common_start_ns,
        )
        if spread is None:
            return
        self.result.start_spread_ms = spread.spread_ms
        self.result.start_spread_uncertainty_ms = spread.uncertainty_ms
        for (host, _), offset in zip(released, spread.start_offsets_ms, strict=True):
            if offset != host.result.start_offset_ms:
                host.result.start_offset_ms = offset
                self.host_changed(host)

    def _conclude(self) -> None:
        self.result.status, self.result.reason = verdict(
            self.result.hosts,
            self.spec.minhosts,
            self.spec.required_hosts,
            abort_reason=self.abort_reason,
        )
        self.result.concurrent_window = window_of(self.result)


class Runner:
    """Runs a plan's tests in file order. `stop()` aborts cleanly from any callback."""

    def __init__(self, plan: Plan, options: RunOptions, observer: Observer | None = None) -> None:
        if options.repeat < 1:
            raise ValueError(f"repeat must be 1 or more, not {options.repeat}")
        self.plan = plan
        self.observer = observer
        self.options, self.folder = _with_folder(options)
        self.result = RunResult(
            config_path=plan.path, run_id=self.folder.run_id, results_dir=str(self.folder.path)
        )
        self._current: _TestRun | None = None
        self._stop_reason = ""
        self.save_error = ""  # why the run folder's results.json could not be written

    def save(self) -> None:
        """results.json in the run folder, rewritten as each test ends: nothing is lost."""
        try:
            write_json(self.result, self.folder.json_path, self.options.inline_limit)
            self.save_error = ""
        except OSError as exc:
            self.save_error = f"{self.folder.json_path}: {exc.strerror or exc}"

    def stop(self, reason: str = "stopped by user") -> None:
        self._stop_reason = reason
        if self._current is not None:
            self._current.abort(reason)

    @property
    def stopped(self) -> bool:
        return bool(self._stop_reason)

    async def run(self, labels: Sequence[str] | None = None) -> RunResult:
        tests = self.plan.tests
        if labels is not None:
            unknown = set(labels) - {t.label for t in tests}
            if unknown:
                raise ValueError(f"no test named {', '.join(sorted(unknown))}")
            tests = tuple(t for t in tests if t.label in labels)
        self.result.started_at = time.time()
        repeat = self.options.repeat
        runs = [(spec, k) for spec in tests for k in range(1, repeat + 1)]
        for spec, k in runs:
            if self._stop_reason:
                break
            self._current = _TestRun(spec, self.options, self.observer, k if repeat > 1 else None)
            self.result.tests.append(self._current.result)
            try:
                outcome = await self._current.run()
            finally:
                self._current = None
                self.save()
            if outcome.status is not TestStatus.PASSED and self.options.stop_on_failure:
                break
        if not self.result.tests:
            self.save()
        return self.result


async def run_test(
    spec: TestSpec, options: RunOptions, observer: Observer | None = None
) -> TestResult:
    return await _TestRun(spec, options, observer).run()
