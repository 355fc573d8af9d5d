"""One test run on the agent: spawn gated, release at an instant, stream, reap, kill.

A `Run` owns its `Job`s and every process they start: whatever ends a run
(exit, timeout, kill request, lost controller, agent shutdown) goes through
the same kill path, and a cancelled run still SIGKILLs what is left.

Each job's main process is reaped by a small thread blocked in wait(): that
tells "the command exited" apart from "its pipes closed" (a background child
may hold them), which asyncio's Process.wait() does not, and costs no CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import gc
import logging
import math
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from netjobs_core.wire.clock import now_ns
from netjobs_core.wire.messages import (
    Collected,
    CommandItem,
    Error,
    Exit,
    Finished,
    Message,
    PreparedItem,
    Started,
)
from netjobs_core.wire.status import CommandStatus

from . import collect, execwatch, oskit

if TYPE_CHECKING:
    from .echo import Echo  # imported only with --echo (never over SSH)

CHUNK = 256 * 1024  # one pipe read at most (as much as the event loop's pipe transport reads)
KILL_GRACE_S = 2.0  # SIGTERM -> SIGKILL
KILL_WAIT_S = 5.0  # after SIGKILL: longer means a process stuck in the kernel
PIPE_DRAIN_S = 2.0  # after the main process ended, for pipes held by leftovers
PREPARED_TIMEOUT_S = 600.0  # a prepared run nobody starts does not hold the agent forever
# Waiting for the release: asyncio sleep to oskit.coarse_wake_margin_ns() before
# the instant (loop timers are coarse), time.sleep to this much before, then spin.
FINE_MARGIN_NS = 200_000
# After the release the agent keeps out of its commands' way: its loop first sleeps
# this long, blocked (stand_aside: their execs and first acts come first), then reads
# their exec events every EXEC_POLL_S until each command exec'd or ended, at most
# EXEC_WAIT_S after the release; only then does it report `started` and send their
# output (the pipes hold 256 KiB meanwhile: oskit.widen_pipe).
EXEC_FIRST_LOOK_S = 0.005
EXEC_POLL_S = 0.005
EXEC_WAIT_S = 0.1
# A clock read after the release's write further than this from the one before it:
# the agent was stopped or throttled in between, and the release is not known to
# within this; the exec instant, where measured, bounds it (Job.reported_release).
RELEASE_UNSURE_NS = 200_000
# The earliest a controller's Start.wake may have us leave the coarse sleep: the fine
# sleep that follows blocks the loop (other sessions, pings) that long.
MAX_WAKE_MARGIN_NS = 50_000_000

log = logging.getLogger("netjobs.agent")


class Sink(Protocol):
    """Where a run's messages go (agent.spool.Outbox): kept, and sent to whichever
    connection its controller holds now."""

    @property
    def peer(self) -> str: ...

    def post(self, message: Message | collect.Matches) -> None: ...

    async def output(self, command_id: int, stream: str, data: bytes) -> None: ...


class JobCommand(NamedTuple):
    """One command of a run, as its `prepare` asked for it."""

    id: int
    command: str
    timeout: float | None  # seconds from the release; None: no limit
    env: Mapping[str, str] = MappingProxyType({})  # NETJOBS_* from the controller
    collect: tuple[str, ...] = ()  # patterns of files to send after the command ends

    @classmethod
    def from_fields(cls, item: CommandItem) -> JobCommand:
        """From a `prepare` entry the protocol has already checked."""
        timeout = item.get("timeout")
        if timeout is not None and not math.isfinite(timeout):
            timeout = None  # inf: no limit (NaN is refused by the protocol)
        return cls(
            int(item["id"]),
            str(item["command"]),
            timeout,
            dict(item.get("env") or {}),
            tuple(item.get("collect") or ()),
        )


def release_figure(released: int | None, written: int | None, exec_at: int | None) -> int | None:
    """The release instant to report: RELEASED, the clock read before the gate's
    write, unless the agent was held back (stopped, throttled) between that read and
    WRITTEN, the read after the write. The write then came somewhere in between, and
    before the command's exec (EXEC_AT, where measured): the earlier of the two is
    the figure, whether the hold came before the write (WRITTEN is then its instant)
    or after it (the exec follows the write by its usual fraction of a ms)."""
    if released is None or written is None or written - released <= RELEASE_UNSURE_NS:
        return released
    if exec_at is None:
        # Nothing bounds it from above: the instant it cannot precede. Also the likely
        # one: the write wakes the gate, which may take our CPU as the write returns
        # (a wake-up preemption, after the release), where a hold between the first read
        # and the write's entry into the kernel has a few µs to land in.
        return released
    return max(released, min(written, exec_at))


class _Waiting(threading.local):
    """Releases awaited on this thread: several agents in one process (the
    benchmarks' helpers) share its loop, and one must not block another's."""

    releases = 0


_waiting = _Waiting()


@contextlib.contextmanager
def _release_window() -> Iterator[None]:
    """From a run's start to its release, counted in `_waiting`."""
    _waiting.releases += 1
    try:
        yield
    finally:
        _waiting.releases -= 1


def stand_aside() -> None:
    """Right after a release, out of the commands' way: the loop's next turn (the
    `started` report, their pipes, their exits, a reaper thread's end) took the CPU
    from commands still in their exec on a busy host (4 agents on 2 CPUs: 80 µs of
    Python each before the last exec; docs/performance.md). Blocking on purpose, for
    the first look at the exec events; only when no other release waits on this
    thread (Run.main)."""
    time.sleep(EXEC_FIRST_LOOK_S)


class Job:
    def __init__(
        self,
        spec: JobCommand,
        label: str,
        sink: Sink,
        echo: Echo | None = None,
        collect_max: int | None = None,
    ) -> None:
        self.spec = spec
        self.label = label
        self.sink = sink
        self.echo = echo  # --echo: every line on the agent's standard output too
        self.collect_max = collect_max
        self.start_epoch_ns: int | None = None  # NETJOBS_START_EPOCH_NS, once released
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawn_error: str | None = None
        self.gate_fd: int | None = None
        self.released_at: int | None = None
        self.written_at: int | None = None  # the clock right after the release's write
        self._ended_at: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._kill_reason: str | None = None
        self._kill_requested = asyncio.Event()
        self._readers: dict[str, asyncio.StreamReader] = {}
        self._transports: list[asyncio.BaseTransport] = []

    @property
    def name(self) -> str:
        return f"test {self.label!r} command {self.spec.id}"

    # -- spawning ---------------------------------------------------------------
    def spawn(self, *, gated: bool) -> None:
        """Start the process (blocked at its gate when GATED); errors are kept."""
        read_fd: int | None = None
        try:
            if gated:
                read_fd, self.gate_fd = os.pipe()
            stdin = read_fd if read_fd is not None else subprocess.DEVNULL
            env = dict(self.spec.env)
            if self.start_epoch_ns is not None:  # spawned at the release: no gate to carry it
                env[oskit.START_VAR] = str(self.start_epoch_ns)
            self.proc = oskit.spawn(self.spec.command, gated=gated, stdin=stdin, env=env)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.spawn_error = f"cannot start the command: {exc}"
            self.close_gate()
            log.warning("%s: %s", self.name, self.spawn_error)
            return
        finally:
            if read_fd is not None:
                os.close(read_fd)  # the child has it; EOF must come when we close ours
        threading.Thread(
            target=self._reap, args=(self.proc,), name=f"reap-{self.proc.pid}", daemon=True
        ).start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        ended_at = now_ns()
        with contextlib.suppress(RuntimeError):  # the loop is closed: the agent is gone
            self._loop.call_soon_threadsafe(self._on_exit, returncode, ended_at)

    def _on_exit(self, returncode: int, ended_at: int) -> None:
        if not self._exited.done():
            self._ended_at = ended_at
            self._exited.set_result(returncode)

    async def connect_pipes(self) -> None:
        assert self.proc is not None
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            reader = asyncio.StreamReader(limit=CHUNK)
            factory = functools.partial(asyncio.StreamReaderProtocol, reader)
            transport, _ = await self._loop.connect_read_pipe(factory, pipe)
            self._readers[stream] = reader
            self._transports.append(transport)

    # -- release and kill -------------------------------------------------------
    def release(self, start_epoch_ns: int) -> None:
        """Let the gated process go: one raw write, no buffering on the way; the
        line is the start instant, which the gate exports to the command."""
        assert self.gate_fd is not None
        self.start_epoch_ns = start_epoch_ns
        # Stamped before the write: the command cannot start earlier, whereas
        # after the write it may already have run on the other CPU.
        self.released_at = now_ns()
        # The gate may already be gone (a syntax error in the command exits
        # before reading): its exit status tells the story.
        with contextlib.suppress(OSError):
            os.write(self.gate_fd, oskit.gate_release(start_epoch_ns))
        self.written_at = now_ns()

    def reported_release(self, exec_at: int | None) -> int | None:
        return release_figure(self.released_at, self.written_at, exec_at)

    def spawn_released(self, start_epoch_ns: int) -> None:
        """Where nothing can be gated (Windows): spawn at the release."""
        self.released_at = now_ns()
        self.start_epoch_ns = start_epoch_ns
        self.spawn(gated=False)

    @property
    def exited(self) -> bool:
        return self._exited.done()

    def close_gate(self) -> None:
        if self.gate_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.gate_fd)
            self.gate_fd = None

    def kill(self, reason: str) -> None:
        if self._kill_reason is None:
            self._kill_reason = reason
            self._kill_requested.set()

    def abort_now(self) -> None:
        """Synchronous last resort: nothing of this job may outlive the run."""
        self.close_gate()
        if self.proc is not None and not self._exited.done():
            oskit.kill_tree_now(self.proc.pid)
        for transport in self._transports:
            transport.close()

    # -- the life of a command --------------------------------------------------
    async def finish(self, started: bool) -> None:
        """The command's life, then its collected files (after a timeout or kill too)."""
        await self.supervise(started)
        if not self.spec.collect:
            return
        if not started or self.proc is None:
            # It never ran: nothing of it to collect.
            self.sink.post(Collected(id=self.spec.id, matched=[]))
            return
        env = {**self.spec.env, oskit.START_VAR: str(self.start_epoch_ns)}
        # Globbing touches the disk (maybe NFS): off the event loop.
        marker = await asyncio.to_thread(
            collect.match, self.spec.id, self.spec.collect, env, self.collect_max, self.label
        )
        self.sink.post(marker)

    async def supervise(self, started: bool) -> None:
        """Wait for the command to end, kill it if it must, then report its exit."""
        if self.proc is None:
            if started:
                self._send_exit(CommandStatus.ERROR, None, None, self.spawn_error or "not started")
            else:
                reason = self._kill_reason or "not started"
                self._send_exit(CommandStatus.KILLED, None, None, reason)
            return
        pumps = [
            asyncio.create_task(self._pump(stream, reader, forward=started))
            for stream, reader in self._readers.items()
        ]
        try:
            status, message = await self._await_end(started)
            returncode = self._exited.result() if self._exited.done() else None
            if returncode is not None:
                # Background children it left go with it (POSIX: its group).
                await oskit.kill_leftovers(self.proc.pid)
            await self._drain_pipes(pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            if pumps:  # owned here: ended before the exit report (cancelled, they end at once)
                await asyncio.wait(pumps, timeout=PIPE_DRAIN_S)
        for pump in pumps:
            if pump.done() and not pump.cancelled():
                pump.result()  # a pump's own error is this command's, not lost
        if status is None:
            assert returncode is not None
            status = CommandStatus.OK if returncode == 0 else CommandStatus.FAILED
            message = oskit.describe_returncode(returncode)
        if not started:
            self._send_exit(status, None, None, message)
            return
        ended_at = self._ended_at
        if ended_at is not None and self.released_at is not None:
            # A command can end before the release loop reads the clock after
            # its write (the loop was preempted): it cannot have ended earlier.
            ended_at = max(ended_at, self.released_at)
        self._send_exit(status, returncode, ended_at, message)

    async def _await_end(self, started: bool) -> tuple[CommandStatus | None, str]:
        """Wait for the main process; on timeout or kill request, kill its tree.

        Returns (status, message) when the agent ended it, (None, "") otherwise.
        """
        if not started:
            self.close_gate()  # EOF: the gate exits without running the command
            await self._terminate()
            return CommandStatus.KILLED, self._kill_reason or "killed before it started"
        timeout = self.spec.timeout
        assert self.released_at is not None
        remaining = None
        if timeout is not None:
            remaining = max(0.0, (self.released_at - now_ns()) / 1e9 + timeout)
        kill_wait = asyncio.ensure_future(self._kill_requested.wait())
        waited: set[asyncio.Future[Any]] = {self._exited, kill_wait}
        try:
            await asyncio.wait(waited, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            kill_wait.cancel()
        if self._exited.done():
            return None, ""
        if self._kill_reason is not None:  # logged with its exit (_send_exit)
            status, message = CommandStatus.KILLED, self._kill_reason
        else:
            assert timeout is not None
            # No words on the wire: the controller says it from the status and the limit.
            status, message = CommandStatus.TIMEOUT, ""
            log.info("%s: killed at its %g s timeout", self.name, timeout)
        await self._terminate()
        return status, message

    async def _terminate(self) -> None:
        """SIGTERM the tree; SIGKILL it after the grace if the command is still there."""
        assert self.proc is not None
        if self._exited.done():
            return
        await oskit.kill_tree(self.proc.pid, force=False)
        if await self._wait_exit(KILL_GRACE_S):
            return
        log.warning("%s: still alive %g s after SIGTERM: SIGKILL", self.name, KILL_GRACE_S)
        await oskit.kill_tree(self.proc.pid, force=True)
        if not await self._wait_exit(KILL_WAIT_S):
            log.error(
                "%s: process %d does not die (stuck in the kernel?)", self.name, self.proc.pid
            )

    async def _wait_exit(self, seconds: float) -> bool:
        await asyncio.wait({self._exited}, timeout=seconds)  # never cancels the future
        return self._exited.done()

    async def _drain_pipes(self, pumps: list[asyncio.Task[None]]) -> None:
        """Forward what is left in the pipes; a process outside the group that
        holds them open must not hold the exit report hostage."""
        if not pumps:
            return
        _, pending = await asyncio.wait(pumps, timeout=PIPE_DRAIN_S)
        if pending:
            log.warning(
                "%s: output pipes still open %g s after it ended: closing them",
                self.name,
                PIPE_DRAIN_S,
            )
            for transport in self._transports:
                transport.close()  # the readers see EOF; buffered output still goes out
            _, pending = await asyncio.wait(pending, timeout=PIPE_DRAIN_S)
            if pending:  # only a full spool (a controller that reads nothing) holds them
                log.warning(
                    "%s: output still unsent %g s after closing its pipes: dropped",
                    self.name,
                    PIPE_DRAIN_S,
                )

    async def _pump(self, stream: str, reader: asyncio.StreamReader, *, forward: bool) -> None:
        """Spool a pipe's bytes as they come; only a full spool throttles the command."""
        while True:
            try:
                chunk = await reader.read(CHUNK)
            except OSError:
                return
            if not chunk:
                if forward and self.echo is not None:
                    self.echo.end(self.label, self.spec.id, stream)
                return
            if forward:
                if self.echo is not None:
                    self.echo.feed(self.label, self.spec.id, stream, chunk)
                await self.sink.output(self.spec.id, stream, chunk)

    def _send_exit(
        self, status: CommandStatus, exit_code: int | None, ended_at: int | None, message: str
    ) -> None:
        duration = ""
        if ended_at is not None and self.released_at is not None:
            duration = f" after {(ended_at - self.released_at) / 1e9:.3f} s"
        log.info("%s: %s%s%s", self.name, status, f", {message}" if message else "", duration)
        timed_out = status is CommandStatus.TIMEOUT
        self.sink.post(
            Exit(
                id=self.spec.id,
                status=status,
                exit_code=exit_code,
                ended_at=ended_at,
                message=message,
                timeout=self.spec.timeout if timed_out else None,
            )
        )


class Stage(enum.Enum):
    """A run's own life; the order of its messages is the protocol table's business."""

    PREPARED = "prepared"  # spawned and gated: waiting for start (or kill)
    RELEASED = "released"  # let go: its commands run
    DONE = "done"  # every exit and finished reported (or the run was cancelled)


class Run:
    """A prepared test: its jobs, the release, and the messages about them."""

    def __init__(
        self,
        label: str,
        specs: list[JobCommand],
        sink: Sink,
        on_done: Callable[[Run], None],
        echo: Echo | None = None,
        collect_max: int | None = None,
        realtime: bool = False,
    ) -> None:
        self.label = label
        self.sink = sink
        self.realtime = realtime  # release at real-time priority (oskit.realtime_priority)
        self.gated = oskit.gating_supported()
        self.jobs = [Job(spec, label, sink, echo, collect_max) for spec in specs]
        self.stage = Stage.PREPARED
        self._at: int | None = None
        self._wake_ns = 0  # the controller's wake margin (Start.wake), if larger than ours
        self._ahead_ns: int | None = None  # how long before the instant the start came
        self._go = asyncio.Event()
        self._killed = asyncio.Event()
        self._on_done = on_done

    async def prepare(self) -> list[PreparedItem]:
        """Spawn every command, gated; on failure everything spawned is killed."""
        try:
            if self.gated:
                for job in self.jobs:
                    job.spawn(gated=True)
                    if job.proc is not None:
                        await job.connect_pipes()
                    await asyncio.sleep(0)  # spawning blocks: let other connections through
        except BaseException:
            self.abort_now()
            raise
        return [
            {"id": job.spec.id, "ok": job.spawn_error is None, "error": job.spawn_error}
            for job in self.jobs
        ]

    @property
    def kill_requested(self) -> bool:
        return self._killed.is_set()

    def start(self, at: int | None, wake: int | None = None) -> None:
        """Release at AT, leaving the coarse sleep WAKE ns before it (None: our own
        margin); once, as the protocol table allows only one start."""
        if self.kill_requested:
            # It crossed the exits of the kill on the wire: nothing to release.
            log.info("test %r: start ignored, the test is being killed", self.label)
            return
        self._at = at
        self._wake_ns = min(wake or 0, MAX_WAKE_MARGIN_NS)
        self._ahead_ns = None if at is None else at - now_ns()
        self._go.set()

    def kill(self, reason: str) -> None:
        if not self.kill_requested:
            log.info("killing test %r: %s", self.label, reason)
        self._killed.set()
        self._go.set()
        for job in self.jobs:
            job.kill(reason)

    def abort_now(self) -> None:
        for job in self.jobs:
            job.abort_now()

    async def main(self) -> None:
        """Wait for start (or kill), release, supervise, report; always cleans up."""
        try:
            try:
                async with asyncio.timeout(PREPARED_TIMEOUT_S):
                    await self._go.wait()
            except TimeoutError:
                self.kill(f"not started within {PREPARED_TIMEOUT_S:g} s of its prepare")
            watch: execwatch.ExecWatch | None = None
            why = ""
            try:
                if not self.kill_requested:
                    # From the start to the gates' writes at real-time priority where
                    # permitted (Agent.realtime): with more agents or other work than CPUs,
                    # each wakes and runs at its instants instead of in its turn (4 agents
                    # on 2 CPUs: releases within 0.06 ms instead of 0.8, the commands'
                    # stamps 0.6-0.9 ms apart instead of 0.8-1.2; docs/performance.md). The
                    # loop is idle meanwhile: this run is the agent's one. Given back at
                    # once: the commands' shells, ordinary, run next.
                    with _release_window(), oskit.realtime_priority(self.realtime):
                        await self._sleep_until_near(self._at)
                        if not self.kill_requested:
                            watch, why = execwatch.open_watch() if self.gated else (None, "")
                            self._release(self._at)
                if self.stage is Stage.RELEASED:
                    if not _waiting.releases:
                        stand_aside()
                    await self._report_started(watch, why)
            finally:
                if watch is not None:
                    watch.close()
            if self.stage is Stage.RELEASED and not self.gated:
                for job in self.jobs:
                    if job.proc is not None:
                        await job.connect_pipes()
            async with asyncio.TaskGroup() as group:
                for job in self.jobs:
                    group.create_task(job.finish(self.stage is Stage.RELEASED))
            self.sink.post(Finished())
            log.info("test %r finished", self.label)
        except Exception as exc:
            # A bug here must not leave the controller waiting for its backstop.
            self.sink.post(Error(code="internal", message=f"internal agent error: {exc!r}"))
            raise  # logged as an internal error by the task's owner
        finally:
            self.abort_now()  # no-op unless cancelled half-way
            self.stage = Stage.DONE
            self._on_done(self)

    async def _sleep_until_near(self, at: int | None) -> None:
        if at is None:
            return
        margin = max(oskit.coarse_wake_margin_ns(), self._wake_ns)
        delay = (at - now_ns() - margin) / 1e9
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._killed.wait()  # a kill ends the wait early

    def _release(self, at: int | None) -> None:
        """Blocking on purpose: the last few ms are slept and spun, not awaited."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection here would land between the releases
        try:
            # NETJOBS_START_EPOCH_NS: the instant on this machine's wall clock
            # (sequential: the actual release), read before the spin.
            wall_minus_clock = time.time_ns() - now_ns()
            if at is not None:
                start_epoch_ns = at + wall_minus_clock
                fine = (at - now_ns() - FINE_MARGIN_NS) / 1e9
                if fine > 0:
                    time.sleep(fine)
                while now_ns() < at:
                    pass
            else:
                start_epoch_ns = now_ns() + wall_minus_clock
            for job in self.jobs:
                if not self.gated:
                    job.spawn_released(start_epoch_ns)
                elif job.proc is not None:
                    job.release(start_epoch_ns)
        finally:
            if gc_was_enabled:
                gc.enable()
        self.stage = Stage.RELEASED

    async def _report_started(self, watch: execwatch.ExecWatch | None, why: str) -> None:
        """Report the release, once out of the commands' way: with their exec instants
        where the kernel tells them (`watch`), else why not (`why`)."""
        released = {
            job.spec.id: job.released_at
            for job in self.jobs
            if job.released_at is not None and job.proc is not None
        }
        exec_at: dict[int, int] | None = None
        if watch is not None:
            roots = {job.proc.pid: job.spec.id for job in self.jobs if job.proc is not None}
            watch.track(roots, released)
            await self._await_execs(watch, released)
            exec_at = watch.exec_at
        for job in self.jobs:
            job.close_gate()
            if job.spec.id in released:
                reported = job.reported_release((exec_at or {}).get(job.spec.id))
                if reported is not None:
                    released[job.spec.id] = reported
        first = min(released.values(), default=None)
        at = self._at
        late_ns = max(0, first - at) if first is not None and at is not None else 0
        self.sink.post(
            Started(
                released_at={str(key): value for key, value in released.items()},
                late_ns=late_ns,
                exec_at=None if exec_at is None else {str(k): v for k, v in exec_at.items()},
                exec_error=why or None,
                ahead_ns=self._ahead_ns,
            )
        )
        log.info(
            "test %r started: %d of %d commands released, %.3f ms after the requested instant",
            self.label,
            len(released),
            len(self.jobs),
            late_ns / 1e6,
        )

    async def _await_execs(self, watch: execwatch.ExecWatch, released: dict[int, int]) -> None:
        """Until each released command exec'd or ended, within EXEC_WAIT_S: polled, as
        waking for every process event of a busy machine would cost its commands more."""
        if not released:
            return
        first = min(released.values())
        deadline = first + int(EXEC_WAIT_S * 1e9)
        await asyncio.sleep(max(0.0, (first + int(EXEC_FIRST_LOOK_S * 1e9) - now_ns()) / 1e9))
        while True:
            watch.drain()
            waiting = [
                job
                for job in self.jobs
                if job.spec.id in released and job.spec.id not in watch.exec_at and not job.exited
            ]
            remaining = (deadline - now_ns()) / 1e9
            if not waiting or remaining <= 0 or self.kill_requested:
                return
            await asyncio.sleep(min(EXEC_POLL_S, remaining))
