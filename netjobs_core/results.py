"""What a run produced: per command, per host, per test. Plain dataclasses.

Times are seconds since the epoch on the controller's clock; durations and
offsets are in the unit their name says.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from netjobs_core.outputs import Output
from netjobs_core.wire.address import Address
from netjobs_core.wire.status import CommandStatus

__all__ = [
    "Collected",
    "CommandResult",
    "CommandStatus",
    "ConcurrentWindow",
    "HostResult",
    "HostState",
    "Interruption",
    "LeadSetBy",
    "MetricSummary",
    "OutputGap",
    "RunResult",
    "StartMode",
    "TestResult",
    "TestStatus",
]


class HostState(enum.StrEnum):
    CONNECTING = "connecting"
    SYNCING = "syncing"  # measuring the clock offset
    PREPARING = "preparing"
    READY = "ready"  # prepared, waiting for the start
    RUNNING = "running"
    DONE = "done"  # every command finished, the host did its part
    TIMEOUT = "timeout"  # a command ran past its timeout
    FAILED = "failed"  # unreachable, refused, authentication, connection lost...
    KILLED = "killed"  # aborted or stopped before it finished

    @property
    def finished(self) -> bool:
        return self in _HOST_ENDS  # a set: a tuple of members took four lookups a call


_HOST_ENDS = frozenset({HostState.DONE, HostState.TIMEOUT, HostState.FAILED, HostState.KILLED})


class TestStatus(enum.StrEnum):
    __test__: ClassVar[bool] = False
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"  # every command exited 0
    FAILED = "failed"  # ran to the end, but not every command exited 0
    ABORTED = "aborted"  # quorum lost, or stopped by the user
    # It would have passed, but an output or a collected file could not be saved on the
    # controller (a full disk): a result whose evidence was not kept is not a pass.
    UNSAVED = "unsaved"


class StartMode(enum.StrEnum):
    SCHEDULED = "scheduled"  # every agent releases at one instant of the controller's clock
    SEQUENTIAL = "sequential"  # each agent starts when told, one after another (NetJobs 2.x)


@dataclass
class Collected:
    """A file brought back from the agent after its command (-collect)."""

    pattern: str  # as the config writes it
    path: Path  # where it was saved (in the JSON: relative to the JSON file)
    bytes: int
    sha256: str


@dataclass
class OutputGap:
    """Bytes of a command's stream the agent could not deliver (its spool did not keep
    them across a cut, or its disk failed): the saved output lacks them."""

    stream: str  # stdout / stderr
    offset: int  # the first missing byte, counted in the command's whole stream
    bytes: int


@dataclass
class CommandResult:
    command: str
    line: int = 0  # config line of the target
    status: CommandStatus = CommandStatus.PENDING
    exit_code: int | None = None
    stdout: Output = field(default_factory=Output)  # spooled to the run folder (outputs.py)
    stderr: Output = field(default_factory=Output)
    started_at: float | None = None  # epoch, controller clock: its release
    # The agent's own measure of how late it released the command after the instant
    # it was told (its clock alone; None: sequential start, nothing asked).
    release_late_ms: float | None = None
    # When the command's first exec happened (the kernel's stamp on the agent,
    # controller clock), minus the common start; None: not measured (HostResult.exec_error,
    # or a command the shell ran without exec'ing anything).
    exec_offset_ms: float | None = None
    duration_s: float | None = None
    message: str = ""  # why ERROR / TIMEOUT / KILLED / LOST
    timeout: float | None = None  # the effective limit in seconds; None = no limit
    lost_at: float | None = None  # epoch: when its host was lost (LOST)
    collected: list[Collected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # a pattern that matched nothing...
    # Collected files (their names) the controller received but could not write.
    not_saved: list[str] = field(default_factory=list)
    gaps: list[OutputGap] = field(default_factory=list)  # output the agent could not deliver

    def lost_bytes(self, stream: str) -> int:
        """How many bytes of STREAM are missing from its saved output."""
        return sum(gap.bytes for gap in self.gaps if gap.stream == stream)

    # -metric values and fio / iperf3 figures (netjobs_core.metrics); a metric that
    # did not match is absent, never zero
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def output_identity(self) -> tuple[tuple[int, str], tuple[int, str]]:
        """What makes two commands' outputs the same byte for byte: sizes and sha256s
        (what folding compares, in the report and the GUI)."""
        return (len(self.stdout), self.stdout.sha256), (len(self.stderr), self.stderr.sha256)

    @property
    def unsaved(self) -> list[str]:
        """What of it the controller could not save: each output file's error, each
        collected file's name; empty when everything was kept."""
        errors = [output.error for output in (self.stdout, self.stderr) if output.error]
        return errors + self.not_saved


KEPT_INTERRUPTIONS = 5  # of a host's cuts in a test: its first this many, and its last


@dataclass
class Interruption:
    """The connection to a host was lost mid-run and the controller tried to resume."""

    at: float  # epoch: when the controller noticed the loss
    cause: str
    duration_s: float | None = None  # until resumed, or until given up
    resumed: bool = False


@dataclass
class HostResult:
    address: Address
    state: HostState = HostState.CONNECTING
    error: str = ""
    agent_version: str = ""
    hostname: str = ""  # what the agent calls itself
    credential: str = ""  # what it authenticated with (a wire.sealing.Credential); "" before
    rtt_ms: float | None = None
    # Agent clock minus controller clock: the monotonic clocks scheduling uses (on
    # real machines about the difference of their boot times, not for users).
    clock_offset_ms: float | None = None
    clock_uncertainty_ms: float | None = None  # of both offsets
    # Agent wall clock minus controller wall clock (what NTP/chrony users compare);
    # None from an agent that does not send its wall clock.
    wall_clock_offset_ms: float | None = None
    start_offset_ms: float | None = None  # this host's release minus the common start
    # Why no exec instant was measured on this host ("": one was, or no start): its
    # agent's reason, or that none of its commands exec'd a program.
    exec_error: str = ""
    gated: bool | None = None  # processes were spawned before the start instant
    commands: list[CommandResult] = field(default_factory=list)
    # Its first and last KEPT_INTERRUPTIONS; those between them are counted, each resumed
    # (only the last may not be): a test with no deadline has no bound on its cuts.
    interruptions: list[Interruption] = field(default_factory=list)
    interruptions_folded: int = 0

    def interrupted(self, record: Interruption) -> None:
        """RECORD, the latest cut: one between the first and the last kept is folded."""
        self.interruptions.append(record)
        if len(self.interruptions) > 2 * KEPT_INTERRUPTIONS:
            del self.interruptions[KEPT_INTERRUPTIONS]
            self.interruptions_folded += 1

    @property
    def target(self) -> str:
        """As the config writes it (the port only when not the default)."""
        return self.address.short


@dataclass(frozen=True)
class ConcurrentWindow:
    """The interval during which every command of a test was running (netjobs_core.window)."""

    start: float  # epoch, controller clock: the last command's release
    end: float  # epoch: the first command's end
    seconds: float
    fraction: float  # seconds / the longest command's duration
    at_least: bool = False  # it closes when a command was lost: that one may have run on


@dataclass(frozen=True)
class LeadSetBy:
    """The host whose figures alone set a test's lead at least twice what the other
    hosts needed (lead.SET_BY_FACTOR), and its figure."""

    host: str  # its target, as the config writes it
    figure: str  # "rtt": its round trip; "transit": the longest its start took to reach it
    figure_ms: float
    others_ms: float  # the lead the other hosts needed


@dataclass(frozen=True)
class MetricSummary:
    """A metric over a test's hosts: each host's value is the sum over its commands (the
    largest for a latency percentile, builtin_metrics.adds_up)."""

    sum: float
    min: float
    median: float
    max: float
    hosts: int  # how many hosts had a value (a host without one is left out)
    # Of those, how many had a command that did not end ok (failed, timed out, killed,
    # lost): its value counts in the figures, a partial run's perhaps, and is said.
    hosts_failed: int = 0


@dataclass
class TestResult:
    __test__: ClassVar[bool] = False
    label: str
    minhosts: int | None  # None = all
    start_mode: StartMode = StartMode.SCHEDULED
    status: TestStatus = TestStatus.PENDING
    reason: str = ""
    started_at: float | None = None  # epoch: when the controller began this test
    scheduled_start: float | None = None  # epoch: the common start instant
    duration_s: float | None = None
    start_spread_ms: float | None = None  # max - min release instant over all commands
    start_spread_uncertainty_ms: float | None = None
    # max - min of the commands' exec instants; None unless every released command's
    # was measured (CommandResult.exec_offset_ms).
    exec_spread_ms: float | None = None
    exec_spread_uncertainty_ms: float | None = None
    lead_ms: float | None = None  # how far ahead of its sending the common start was set
    lead_set_by: LeadSetBy | None = None  # one host's figures set it, far above the others'
    late_threshold_ms: float = 1.0  # a release later than this names its host late (--late-ms)
    concurrent_window: ConcurrentWindow | None = None  # None: never all running at once
    repetition: int | None = None  # 1.. when the test is repeated (--repeat), else None
    hosts: list[HostResult] = field(default_factory=list)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)  # by name, first seen first

    def host(self, target: str) -> HostResult:
        for host in self.hosts:
            if host.target == target:
                return host
        raise KeyError(target)

    def late_hosts(self) -> list[tuple[HostResult, float]]:
        """The hosts that released a command more than late_threshold_ms late, each with
        its latest release's lateness (ms), in config order."""
        late = []
        for host in self.hosts:
            worst = max((c.release_late_ms or 0.0 for c in host.commands), default=0.0)
            if worst > self.late_threshold_ms:
                late.append((host, worst))
        return late

    def common_start(self) -> float | None:
        """Epoch of what start offsets count from: the common start instant (scheduled
        start), else the first release (sequential start); None before any release."""
        if self.scheduled_start is not None:
            return self.scheduled_start
        starts = [c.started_at for h in self.hosts for c in h.commands if c.started_at is not None]
        return min(starts) if starts else None

    def problems(self) -> Counter[CommandStatus]:
        """The commands that ended but did not exit 0, by status (first seen first)."""
        return Counter(
            c.status
            for h in self.hosts
            for c in h.commands
            if c.status.finished and c.status is not CommandStatus.OK
        )


@dataclass
class RunResult:
    config_path: str
    run_id: str = ""  # run_folder.new_run_id()
    results_dir: str = ""  # the run's folder (run_folder.RunFolder.path)
    started_at: float | None = None  # epoch: when the run began
    tests: list[TestResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(test.status is TestStatus.PASSED for test in self.tests)

    def problems(self) -> Counter[CommandStatus]:
        """Every test's problems (TestResult.problems), first seen first."""
        return sum((test.problems() for test in self.tests), Counter[CommandStatus]())
