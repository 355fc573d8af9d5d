"""How a plan is run: what the front ends set, what the runner and each host read."""

from __future__ import annotations

from dataclasses import dataclass

from netjobs_core.client import Dialer
from netjobs_core.outputs import KEEP_BYTES
from netjobs_core.probe import DEFAULT_CLOCK, ClockPolicy
from netjobs_core.results import StartMode
from netjobs_core.results_json import INLINE_LIMIT
from netjobs_core.run_folder import RunFolder
from netjobs_core.wire.tokens import Token

DEFAULT_COLLECT_MAX = 1024**3  # bytes: the largest file -collect brings back (--collect-max)


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
    dialer: Dialer | None = None  # for ssh:// targets (netjobs_core/ssh.py; run.Run)
    clock: ClockPolicy = DEFAULT_CLOCK  # how the hosts' clocks are measured
    lead_ns: float | None = None  # the common start this far ahead (--lead); None: learned
    late_ms: float = 1.0  # a release later than this names its host late (--late-ms)
