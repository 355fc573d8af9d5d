"""What the run history (netjobs_core.history) keeps of a past run: facts only.

The words a person reads of a record (its outcome, its tests) are made from these
facts when shown, by netjobs_core.text, as for a run that just ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netjobs_core.results import CommandStatus, TestStatus

__all__ = ["RunRecord", "TestRecord"]


@dataclass(frozen=True)
class TestRecord:
    __test__ = False
    label: str
    repetition: int | None
    status: TestStatus
    reason: str
    start_spread_ms: float | None
    start_spread_uncertainty_ms: float | None
    window_s: float | None
    window_fraction: float | None
    # (name, sum over its hosts, how many hosts had it) of each metric, first seen first
    metrics: tuple[tuple[str, float, int], ...] = ()


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    started_at: float | None
    config_path: str
    config_text: str | None
    results_dir: str
    passed: bool
    tests: tuple[TestRecord, ...] = ()
    # The commands that ended but did not exit 0, by status, first seen first
    # (RunResult.problems when it ended).
    problems: tuple[tuple[CommandStatus, int], ...] = ()
    ended: bool = True  # False: recorded as it started, never as it ended (interrupted)
    note: str = ""  # a person's note on the run (History.set_note)

    @property
    def json_path(self) -> Path:
        return Path(self.results_dir) / "results.json"

    @property
    def results_kept(self) -> bool:
        """Its results.json is still there (a results folder may be deleted by hand)."""
        return bool(self.results_dir) and self.json_path.is_file()
