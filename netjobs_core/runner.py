"""Drive the tests of a plan across agents: connect, measure clocks, prepare,
start everyone at one instant, enforce the quorum, collect everything.

Per test:
1. connect and authenticate every host in parallel (a host's link from its
   last test in this run goes on instead: netjobs_core/links.py), measure each clock
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
import time
from collections.abc import Sequence

from netjobs_core import text
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
from netjobs_core.host_run import HostRun, Seat
from netjobs_core.lead import LeadPolicy, default_lead_ns
from netjobs_core.links import Links
from netjobs_core.metrics import measure_test
from netjobs_core.results import (
    HostState,
    LeadSetBy,
    RunResult,
    StartMode,
    TestResult,
    TestStatus,
)
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.spread import HostReleases, start_spread
from netjobs_core.verdict import (
    aborted_text,
    quorum_lost_reason,
    refused_everywhere_reason,
    verdict,
)
from netjobs_core.window import window_of
from netjobs_core.wire import rx_stamps
from netjobs_core.wire.address import Address
from netjobs_core.wire.clock import now_ns, wall_anchor_ns

HANDSHAKE_GRACE_S = 1.0  # an abort lets hosts in their handshake finish it, this long
MAX_LEAD_S = 5.0  # the common start is at most this far ahead: a slower host fails alone
SPREAD_EVERY_S = 0.05  # how often the live start spread is measured while releases come in


def _with_folder(options: RunOptions) -> tuple[RunOptions, RunFolder]:
    """`options` with its run folder, made under the data directory when none was given."""
    if options.run_folder is None:
        options = dataclasses.replace(options, run_folder=RunFolder.create())
    assert options.run_folder is not None
    return options, options.run_folder


class _TestRun:
    """One test across its hosts: the fleet's policy. Each host's own life is its
    `HostRun`'s; this keeps the phases, the quorum, the common start, the spread
    and the verdict, and is each host's `Fleet`."""

    def __init__(
        self,
        spec: TestSpec,
        options: RunOptions,
        observer: Observer | None,
        repetition: int | None = None,
        lead: LeadPolicy | None = None,
        *,
        links: Links,
    ) -> None:
        self.spec = spec
        self.options, self.folder = _with_folder(options)
        self._observer = observer
        self.lead = lead or LeadPolicy(options.lead_ns)
        self._links = links  # its owner's: it closes what its tests keep there
        self.result = TestResult(
            label=spec.label,
            minhosts=spec.minhosts,
            start_mode=options.start_mode,
            repetition=repetition,
            late_threshold_ms=options.late_ms,
        )
        by_address: dict[Address, list[CommandSpec]] = {}  # config order (a node set: many)
        for command in spec.commands:
            by_address.setdefault(command.address, []).append(command)
        self.hosts: list[HostRun] = []
        for position, (address, specs) in enumerate(by_address.items()):
            directory = self.folder.host_dir(spec.label, address, repetition)
            seat = Seat(spec.label, position, len(by_address), self.folder.run_id, directory)
            host = HostRun(address, specs, seat, self.options, self)
            self.result.hosts.append(host.result)
            self.hosts.append(host)
        self._abort_reason = ""
        self.aborted = asyncio.Event()
        self.changed = asyncio.Event()  # set by every host change
        self._anchor_ns = 0.0
        self._spread_timer: asyncio.TimerHandle | None = None  # the live spread's next update
        self._unmeasured = len(self.hosts)  # hosts whose clock measurement has not ended
        self.measured = asyncio.Event()  # ... none left
        # With kernel arrival stamps on every path, one host's spawning and `prepared`
        # cannot bias the clocks measured meanwhile (probe.ClockPolicy): hosts prepare
        # as they are measured. Pipes (SSH) have no stamps: every clock first there.
        # (An agent older than the stamps is only found out by its first pong: its
        # estimate may then move, within the bound it reports.)
        self.prepare_at_once = (
            self.options.clock.kernel_stamps
            and rx_stamps.SO_TIMESTAMPNS is not None
            and not any(host.result.address.over_ssh for host in self.hosts)
        )
        self.common_start_ns: float | None = None

    # -- what the hosts report (host_run.Fleet) ----------------------------------
    @property
    def abort_reason(self) -> str:
        return self._abort_reason

    @property
    def anchor_ns(self) -> float:
        return self._anchor_ns

    @property
    def links(self) -> Links:
        return self._links

    def emit(self, event: Event) -> None:
        if self._observer is not None:
            self._observer(event)

    def host_changed(self, host: HostRun) -> None:
        self.changed.set()
        self.emit(HostChanged(self.result, host.result))

    def command_changed(self, host: HostRun, index: int, final: bool = False) -> None:
        self.emit(CommandChanged(self.result, host.result, index, final))

    def command_output(self, host: HostRun, index: int, stream: str, data: bytes) -> None:
        self.emit(CommandOutput(self.result, host.result, index, stream, data))

    def released(self, host: HostRun) -> None:
        """Measure the live spread at most every SPREAD_EVERY_S however many releases
        arrived meanwhile: it costs O(hosts), and per release that was the largest cost
        of 1000 hosts; once per loop turn it was still 2 % of 100 hosts' controller CPU
        (the test's end measures it once more, whatever came last)."""
        if self._spread_timer is None:
            loop = asyncio.get_running_loop()
            self._spread_timer = loop.call_later(SPREAD_EVERY_S, self._spread_now)

    def failed(self, host: HostRun) -> None:
        self.check_quorum()

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
            self._abort_reason = reason or "aborted"
            self.aborted.set()

    # -- phase 1: connect, measure, prepare --------------------------------------
    async def _prepare_all(self) -> None:
        """Phase 1 on every host at once. A host's failure is recorded by its HostRun;
        anything else is a bug and propagates from the group."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._prepare(h)) for h in self.hosts]
            watcher = group.create_task(self._cancel_on_abort(tasks))
            if tasks:
                await asyncio.wait(tasks)
            watcher.cancel()

    async def _prepare(self, host: HostRun) -> None:
        try:
            measured = await host.measure(prepare=self.prepare_at_once)
        finally:
            self._unmeasured -= 1
            if not self._unmeasured:
                self.measured.set()
        if not measured:
            return
        if not self.prepare_at_once:
            # Every clock first: an agent's spawning and its `prepared` would bias
            # the pings of hosts still measured without stamps.
            await self.measured.wait()
        await host.prepare()

    async def _cancel_on_abort(self, tasks: list[asyncio.Task[None]]) -> None:
        """The quorum is lost while hosts still prepare: stop waiting for them."""
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

    # -- phase 2: start -----------------------------------------------------------
    def _within_reach(self, ready: list[HostRun]) -> list[HostRun]:
        """The hosts a common start at most MAX_LEAD_S ahead can reach; the others fail."""
        reach = []
        for host in ready:
            assert host.estimate is not None
            rtt_ns = host.estimate.rtt_ns
            if default_lead_ns(rtt_ns, len(ready)) <= MAX_LEAD_S * 1e9:
                reach.append(host)
                continue
            host.kill("its round trip is too slow for the common start")
            host.fail(text.too_far(rtt_ns / 1e6, MAX_LEAD_S), may_have_run=False)
        return reach

    def start(self, ready: list[HostRun]) -> None:
        if self.options.start_mode is not StartMode.SCHEDULED:
            for host in ready:
                host.start(None)
            return
        paths = [(h.result.address, h.estimate.rtt_ns) for h in ready if h.estimate]
        lead = self.lead.lead(paths, MAX_LEAD_S * 1e9)
        at = now_ns() + lead.ns
        self.common_start_ns = at
        self.result.lead_ms = lead.ns / 1e6
        if lead.host is not None:
            self.result.lead_set_by = LeadSetBy(
                lead.host.short, lead.figure, lead.figure_ns / 1e6, lead.others_ns / 1e6
            )
        self.result.scheduled_start = self._anchor_ns / 1e9 + at / 1e9
        for host in ready:
            assert host.estimate is not None
            host.start(host.estimate.to_agent(at), self.lead.wake_ns(host.result.address))

    # -- phase 3: collect -------------------------------------------------------
    async def _kill_on_abort(self, hosts: list[HostRun]) -> None:
        await self.aborted.wait()
        for host in hosts:
            host.kill(self._abort_reason)

    # -- the whole test ---------------------------------------------------------
    async def run(self) -> TestResult:
        result = self.result
        result.status = TestStatus.RUNNING
        result.started_at = time.time()
        self._anchor_ns = wall_anchor_ns()  # epoch ns at clock zero
        self.emit(TestStarted(result))
        began = now_ns()
        try:
            # Whatever happens (even cancellation), each host closes: nothing is
            # left open, pending or unfinished.
            async with contextlib.AsyncExitStack() as hosts:
                for host in self.hosts:
                    await hosts.enter_async_context(host)
                await self._run_phases()
        finally:
            if self._spread_timer is not None:
                self._spread_timer.cancel()
                self._spread_timer = None
            self._measure_spread()
            self._learn_lead()
            self._conclude()
            # Most commands were read as they ended (HostRun._measure): the rest now.
            measure_test(result, [h.specs for h in self.hosts], [h.measured for h in self.hosts])
            result.duration_s = (now_ns() - began) / 1e9
            self.emit(TestFinished(result))
        return result

    async def _run_phases(self) -> None:
        await self._prepare_all()
        ready = [h for h in self.hosts if h.result.state is HostState.READY]
        if self.options.start_mode is StartMode.SCHEDULED:
            ready = self._within_reach(ready)
        self.check_quorum()
        if self.aborted.is_set():
            # Prepared processes are still gated: have the agents drop them.
            for host in ready:
                host.kill(self._abort_reason)
                host.give_up(aborted_text(self._abort_reason))
            return
        if not ready:
            return  # the verdict says what that means
        self.start(ready)
        started = [h for h in ready if h.result.state is HostState.RUNNING]
        async with asyncio.TaskGroup() as group:
            killer = group.create_task(self._kill_on_abort(started))
            await asyncio.gather(*(group.create_task(h.collect()) for h in started))
            killer.cancel()

    def _spread_now(self) -> None:
        self._spread_timer = None
        self._measure_spread()

    def _measure_spread(self) -> None:
        released = [(h, h.estimate) for h in self.hosts if h.released and h.estimate]
        spread = start_spread(
            [HostReleases(list(h.released.values()), e.uncertainty_ns) for h, e in released],
            self.common_start_ns,
        )
        if spread is None:
            return
        # One release of several commands is no spread: nothing was apart from it yet.
        releases = sum(len(h.released) for h, _ in released)
        if releases > 1 or sum(len(h.specs) for h in self.hosts) == 1:
            self.result.start_spread_ms = spread.spread_ms
            self.result.start_spread_uncertainty_ms = spread.uncertainty_ms
        for (host, _), offset in zip(released, spread.start_offsets_ms, strict=True):
            if offset != host.result.start_offset_ms:
                host.result.start_offset_ms = offset
                self.host_changed(host)
        self._measure_exec_spread()

    def _measure_exec_spread(self) -> None:
        """The commands' exec instants, offset from the common start (sequential: the
        first release); their spread only once every released command has one."""
        released = [h for h in self.hosts if h.released and h.estimate]
        common = self.common_start_ns
        if common is None:
            common = min(at for h in released for at in h.released.values())
        for host in released:
            for index, at in host.exec_at.items():
                host.result.commands[index].exec_offset_ms = (at - common) / 1e6
        measured = all(set(h.released) <= set(h.exec_at) for h in released)
        spread = start_spread(
            [
                HostReleases(list(h.exec_at.values()), h.estimate.uncertainty_ns)
                for h in released
                if h.estimate
            ],
            common,
        )
        if spread is None or not measured:
            self.result.exec_spread_ms = self.result.exec_spread_uncertainty_ms = None
            return
        self.result.exec_spread_ms = spread.spread_ms
        self.result.exec_spread_uncertainty_ms = spread.uncertainty_ms

    def _learn_lead(self) -> None:
        """What this start showed of each host, for the next test's lead."""
        if self.result.lead_ms is None:
            return
        for host in self.hosts:
            lateness = [c.release_late_ms for c in host.result.commands]
            late = [v * 1e6 for v in lateness if v is not None]
            if host.start_at is not None and host.released:
                self.lead.observe(
                    host.result.address,
                    self.result.lead_ms * 1e6,
                    host.ahead_ns,
                    max(late, default=None),
                )

    @property
    def refused_everywhere(self) -> bool:
        """Every host refused our credentials: the next test would meet the same."""
        return bool(self.hosts) and all(host.refused for host in self.hosts)

    def _conclude(self) -> None:
        self.result.status, self.result.reason = verdict(
            self.result.hosts,
            self.spec.minhosts,
            self.spec.required_hosts,
            abort_reason=self._abort_reason,
        )
        if self.refused_everywhere:  # one sentence, not the first host's blame
            self.result.reason = refused_everywhere_reason(self.result.hosts)
        self.result.concurrent_window = window_of(self.result)


class Runner:
    """Runs a plan's tests in file order. `stop()` aborts cleanly from any callback."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        observer: Observer | None = None,
        links: Links | None = None,
    ) -> None:
        """LINKS: where the run keeps its hosts' links between tests, the caller's to
        close (run.Run: after its results are written); by default the runner's own,
        closed as `run()` ends."""
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
        self.lead = LeadPolicy(options.lead_ns)  # learned over the run's tests
        self.links = Links() if links is None else links  # the hosts' links between tests
        self._owns_links = links is None

    def stop(self, reason: str = "stopped by user") -> None:
        self._stop_reason = reason
        if self._current is not None:
            self._current.abort(reason)

    @property
    def stopped(self) -> bool:
        return bool(self._stop_reason)

    def _tests(self, labels: Sequence[str] | None) -> tuple[TestSpec, ...]:
        tests = self.plan.tests
        if labels is not None:
            unknown = set(labels) - {t.label for t in tests}
            if unknown:
                raise ValueError(f"no test named {', '.join(sorted(unknown))}")
            tests = tuple(t for t in tests if t.label in labels)
        return tests

    def first_addresses(self, labels: Sequence[str] | None = None) -> list[Address]:
        """The hosts of the first test `run(labels)` runs (none for unknown labels)."""
        try:
            tests = self._tests(labels)
        except ValueError:
            return []  # run() says so
        return list(dict.fromkeys(c.address for c in tests[0].commands)) if tests else []

    async def run(self, labels: Sequence[str] | None = None) -> RunResult:
        tests = self._tests(labels)
        self.result.started_at = time.time()
        repeat = self.options.repeat
        runs = [(spec, k) for spec in tests for k in range(1, repeat + 1)]
        last_test = {c.address: n for n, (spec, _) in enumerate(runs) for c in spec.commands}
        not_run = ""  # why the tests after the last one run were not
        try:
            for n, (spec, k) in enumerate(runs):
                if self._stop_reason:
                    not_run = self._stop_reason
                    break
                self._current = _TestRun(
                    spec,
                    self.options,
                    self.observer,
                    k if repeat > 1 else None,
                    self.lead,
                    links=self.links,
                )
                self.result.tests.append(self._current.result)
                test = self._current
                try:
                    outcome = await test.run()
                finally:
                    self._current = None
                if test.refused_everywhere:  # no credential changes between tests
                    not_run = text.not_run_after(outcome, refused=True)
                    break
                if outcome.status is not TestStatus.PASSED and self.options.stop_on_failure:
                    not_run = text.not_run_after(outcome, refused=False)
                    break
                if n + 1 < len(runs):  # the last test's links go with the rest, below
                    self.links.retire(
                        h.result.address for h in test.hosts if last_test[h.result.address] == n
                    )
            # Each test the run did not reach, as a test of its own that says why: not
            # silently absent from the report, the JSON and the history.
            for spec, k in runs[len(self.result.tests) :] if not_run else ():
                self.result.tests.append(
                    TestResult(
                        label=spec.label,
                        minhosts=spec.minhosts,
                        start_mode=self.options.start_mode,
                        reason=not_run,
                        repetition=k if repeat > 1 else None,
                        late_threshold_ms=self.options.late_ms,
                    )
                )
        finally:
            if self._owns_links:
                await self.links.close()
        return self.result


async def run_test(
    spec: TestSpec,
    options: RunOptions,
    observer: Observer | None = None,
    links: Links | None = None,
) -> TestResult:
    """One test as a run of its own; with LINKS (the caller's to close), on the links
    an earlier test kept there, keeping its own for the next."""
    kept = Links() if links is None else links
    try:
        return await _TestRun(spec, options, observer, links=kept).run()
    finally:
        if links is None:
            await kept.close()
