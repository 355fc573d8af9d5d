"""How numbers and summaries read, for the terminal, the logs and the GUI alike.

Qt-free and rich-free: every unit is written here, once. A missing value reads
`n/a` unless the caller (a GUI table cell) passes its own placeholder.
"""

from __future__ import annotations

import bisect
import datetime as dt
import errno
import functools
import itertools
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from netjobs_core import nodesets
from netjobs_core.builtin_metrics import adds_up
from netjobs_core.config import Plan, write_duration
from netjobs_core.metrics import fleet_figure
from netjobs_core.outputs import SHOW_BYTES, Output
from netjobs_core.results import (
    KEPT_INTERRUPTIONS,
    Collected,
    CommandResult,
    CommandStatus,
    ConcurrentWindow,
    HostResult,
    HostState,
    Interruption,
    LeadSetBy,
    MetricSummary,
    OutputGap,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.vocabulary import Status, counted, word
from netjobs_core.window import concurrent_window
from netjobs_core.wire.messages import FileError
from netjobs_core.wire.sealing import Credential

if TYPE_CHECKING:  # the history's and comparison's: imported where they are used
    from netjobs_core.compare import TestComparison
    from netjobs_core.records import RunRecord, TestRecord
    from netjobs_core.repeats import RepeatStats

NA = "n/a"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 test`, `2 tests`."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def ms(value: float | None, signed: bool = False, none: str = NA) -> str:
    """Milliseconds, 3 decimals (`+0.400 ms`); from 1000 ms on, seconds (`2.500 s`)."""
    if value is None:
        return none
    sign = "+" if signed else ""
    if abs(value) >= 1000:
        return f"{value / 1000:{sign}.3f} s"
    return f"{value:{sign}.3f} ms"


def ms_pm(
    value: float | None, uncertainty: float | None, signed: bool = False, none: str = NA
) -> str:
    """A value with its bound, both with their unit: `0.591 ms ± 0.162 ms`."""
    if value is None:
        return none
    text = ms(value, signed)
    if uncertainty is not None:
        text += f" ± {ms(uncertainty)}"
    return text


def spread(test: TestResult, none: str = NA) -> str:
    """A test's start spread with its uncertainty bound."""
    return ms_pm(test.start_spread_ms, test.start_spread_uncertainty_ms, none=none)


EXEC_NOT_SENT = "its agent does not report exec instants (an older version)"
# The agent watches a command's exec until it exec'd, ended, or agent.jobs.EXEC_WAIT_S.
EXEC_NOTHING = (
    "a command exec'd no program within 0.1 s of its release "
    "(shell builtins only, or a program it started later)"
)


def began(test: TestResult) -> str:
    """`released within 0.002 ms ± 0.081 ms; commands began within 1.430 ms ± 0.090 ms`:
    the releases, and the commands' exec instants or why they were not measured (the
    release's ± does not cover what happens after it)."""
    line = f"released within {spread(test)}{widest_clock(test)}"
    if test.exec_spread_ms is not None:
        within = ms_pm(test.exec_spread_ms, test.exec_spread_uncertainty_ms)
        return f"{line}; commands began within {within}"
    return f"{line}; {exec_unmeasured(test)}"


# A host's clock bound that is this many times the next one's makes the test's ± (the sum
# of the two widest: spread.py) mostly its own, and is named, from this many ms on.
WIDEST_CLOCK_FACTOR = 2.0
WIDEST_CLOCK_MS = 0.1


def widest_clock(test: TestResult) -> str:
    """` (the ± mostly node3's clock, known to ± 5.000 ms)`: the host whose clock estimate
    makes most of the spread's bound (a host far away, over SSH, or one slowing its
    pongs); "" when no one host does."""
    bounds = sorted(
        (
            (host.clock_uncertainty_ms, host.target)
            for host in test.hosts
            if host.clock_uncertainty_ms is not None
            and any(c.started_at is not None for c in host.commands)
        ),
        reverse=True,
    )
    if len(bounds) < 2 or test.start_spread_uncertainty_ms is None:
        return ""
    (widest, host), (second, _) = bounds[0], bounds[1]
    if widest < WIDEST_CLOCK_MS or widest < WIDEST_CLOCK_FACTOR * second:
        return ""
    return f" (the ± mostly {host}'s clock, known to ± {ms(widest)})"


def exec_unmeasured(test: TestResult) -> str:
    """Why a test has no exec spread: `when the commands began was not measured
    (node1: exec instants need the agent to run as root ...)`."""
    reasons: dict[str, list[str]] = {}
    # Others measured, so this agent could: its command ran no program (a document
    # from before exec instants has none measured, and says no more).
    measured = any(c.exec_offset_ms is not None for h in test.hosts for c in h.commands)
    for host in test.hosts:
        if host.exec_error:
            reasons.setdefault(host.exec_error, []).append(host.target)
        elif measured and any(
            c.started_at is not None and c.exec_offset_ms is None for c in host.commands
        ):
            reasons.setdefault(EXEC_NOTHING, []).append(host.target)
    why = "; ".join(f"{nodesets.fold(hosts)}: {field(r)}" for r, hosts in reasons.items())
    return "when the commands began was not measured" + (f" ({why})" if why else "")


def late_line(test: TestResult, most: int | None = None) -> str | None:
    """`late releases (more than 1.000 ms, --late-ms): node2 +85.900 ms, node3 +120.300 ms`;
    None when no host was late. With more than `most` late hosts, only the `most`
    latest are named: `...: 100 hosts; the latest: node7 +316.339 ms, ...; and 97 more`."""
    late = test.late_hosts()
    if not late:
        return None
    shown = late
    if most is not None and len(late) > most:
        shown = sorted(late, key=lambda pair: -pair[1])[:most]
    named = ", ".join(f"{host.target} {ms(late_ms, True)}" for host, late_ms in shown)
    if len(shown) < len(late):
        more = len(late) - len(shown)
        named = f"{count(len(late), 'host')}; the latest: {named}; and {more} more"
    return f"{late_heading(test.late_threshold_ms)} {named}"


def impossible_arrival(after_sent_ms: float) -> str:
    """A host's `started` says its start reached it before it was sent, or after the
    report of it reached the controller."""
    return (
        "protocol error: the start reached the agent at an impossible instant "
        f"({ms(after_sent_ms, True)} from its sending)"
    )


def impossible_exec(after_ms: float) -> str:
    """A host's `started` says a command began after the report of it reached us."""
    return (
        f"protocol error: a command began {ms(after_ms)} after the report of it "
        "reached the controller"
    )


def released_late(late_ms: float) -> str:
    """`released 85.900 ms late`: a command's release past --late-ms."""
    return f"released {ms(late_ms)} late"


def late_heading(threshold_ms: float) -> str:
    """`late releases (more than 1.000 ms, --late-ms):`, before the late hosts."""
    return f"late releases (more than {ms(threshold_ms)}, --late-ms):"


def start_facts(test: TestResult, commands: str | None = None) -> str:
    """`scheduled start, lead 17.200 ms, 2 commands on 2 hosts` (COMMANDS: in their place)."""
    parts = [f"{test.start_mode.value} start"]
    if test.lead_ms is not None:
        parts.append(lead(test.lead_ms, test.lead_set_by))
    parts.append(
        commands
        or f"{count(sum(len(h.commands) for h in test.hosts), 'command')} on "
        f"{count(len(test.hosts), 'host')}"
    )
    return ", ".join(parts)


def lead(lead_ms: float, set_by: LeadSetBy | None) -> str:
    """`lead 17.200 ms`; with the host whose figures set it: `lead 812.000 ms (set by
    node07: its start took 395.000 ms to reach it; the others needed 15.400 ms)`."""
    if set_by is None:
        return f"lead {ms(lead_ms)}"
    figure = (
        f"its round trip {ms(set_by.figure_ms)}"
        if set_by.figure == "rtt"
        else f"its start took {ms(set_by.figure_ms)} to reach it"
    )
    return (
        f"lead {ms(lead_ms)} (set by {set_by.host}: {figure}; "
        f"the others needed {ms(set_by.others_ms)})"
    )


NOTHING_RELEASED = "no command was released"


def start_lines(test: TestResult, most: int | None = None) -> list[str]:
    """How a test's commands started, as the report and the -l log both say it: the
    releases and when the commands began (`spread_line`), the late hosts (`late_line`,
    the `most` latest named), how long all ran together when several ran; none before a
    release."""
    spread = spread_line(test)
    if spread is None:
        return []
    lines = [spread]
    if (late := late_line(test, most)) is not None:
        lines.append(late)
    if sum(len(h.commands) for h in test.hosts) > 1:
        lines.append(window_line(test))
    return lines


def spread_line(test: TestResult) -> str | None:
    """`released within 0.591 ms ± 0.162 ms; commands began within ... (scheduled start,
    lead 15.896 ms, 32 commands on 32 hosts)`, with how many were released when not all
    were; a single release of several commands is no spread (`start spread not measured:
    1 of 3 commands released, ...`). None before any release."""
    commands = [c for h in test.hosts for c in h.commands]
    released = sum(c.started_at is not None for c in commands)
    if not released:
        return None
    if released == len(commands):
        return f"{began(test)} ({start_facts(test)})"
    hosts = sum(any(c.started_at is not None for c in h.commands) for h in test.hosts)
    of = (
        f"{released} of {count(len(commands), 'command')} released, "
        f"on {hosts} of {count(len(test.hosts), 'host')}"
    )
    if released < 2:
        return f"start spread not measured: {of} ({test.start_mode.value} start)"
    return f"{began(test)} ({start_facts(test, of)})"


def started_from(test: TestResult) -> str:
    """What a host's start offset counts from: `from the common start`, or in a start
    with none (sequential: no scheduled instant) `from the first release`."""
    return "from the first release" if test.scheduled_start is None else "from the common start"


def too_far(rtt_ms: float, max_lead_s: float) -> str:
    """Why a host whose round trip would push the common start too far ahead failed."""
    return f"round trip {ms(rtt_ms)}: too slow for a common start at most {max_lead_s:g} s ahead"


def seconds(value: float | None, none: str = NA) -> str:
    """A measured duration to the millisecond: `12.345 s`; under one, in ms to the µs
    (`0.369 ms`), not `0.000 s` for what was measured and was not nothing."""
    if value is None:
        return none
    if 0 < value < 0.0005:
        return ms(value * 1000)
    return f"{value:.3f} s"


def duration(value: float | None, none: str = NA) -> str:
    """A duration at a glance: `1.500 s`, `12.3 s`, `1m 15.0s`, `2h 03m 04s`; under half a
    ms in ms (`0.331 ms`, as `seconds`), not `0.000 s` for a command that ran."""
    if value is None:
        return none
    if value < 60:
        return seconds(value) if value < 10 else f"{value:.1f} s"  # under half a ms: ms
    minutes, secs = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)}m {secs:04.1f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h {int(minutes):02d}m {int(secs):02d}s"


def span(values: Iterable[float | None], form: Callable[[float], str]) -> str:
    """The range of `values` in one format: `0.101 ms to 0.322 ms`, or one value; n/a."""
    known = [v for v in values if v is not None]
    if not known:
        return NA
    low, high = form(min(known)), form(max(known))
    return low if low == high else f"{low} to {high}"


def percent(fraction: float) -> str:
    """`97.9 %`."""
    return f"{fraction * 100:.1f} %"


def window(found: ConcurrentWindow) -> str:
    """`58.731 s (97.9 % of the longest command)`; `at least 5.500 s (...)` when it
    closes as a command was lost (that one may have run on)."""
    length = f"at least {seconds(found.seconds)}" if found.at_least else seconds(found.seconds)
    return f"{length} ({percent(found.fraction)} of the longest command)"


def who_ran(test: TestResult) -> str:
    """`32 hosts`, or `40 commands on 32 hosts` when some host runs several."""
    commands = sum(len(h.commands) for h in test.hosts)
    hosts = count(len(test.hosts), "host")
    return hosts if commands == len(test.hosts) else f"{count(commands, 'command')} on {hosts}"


def members(targets: Sequence[str]) -> str:
    """Hosts as one folded node set with their count: `node[01-04,07] (5 hosts)`."""
    names = list(dict.fromkeys(targets))
    return f"{nodesets.fold(names)} ({count(len(names), 'host')})"


def command_lines(lines: Sequence[str]) -> str:
    """The command lines of folded commands: `echo hi 0 (and 2 other command lines)`."""
    others = len(lines) - 1
    return lines[0] + (f" (and {count(others, 'other command line')})" if others else "")


def window_line(test: TestResult) -> str:
    """`all 32 hosts ran together for 58.731 s (97.9 % of the longest command)`."""
    if test.concurrent_window is None:
        never = f"the {who_ran(test)} never all ran together"
        # Some never ran (a host unreachable, a command refused): how the rest overlapped.
        commands = [c for h in test.hosts for c in h.commands]
        released = [c for c in commands if c.started_at is not None]
        if len(released) < 2 or len(released) == len(commands):
            return never
        overlap = concurrent_window(released)
        if overlap is None:
            return never
        some = f"the {len(released)} of {len(commands)} commands released"
        return f"{never}; {some} did for {window(overlap)}"
    return f"all {who_ran(test)} ran together for {window(test.concurrent_window)}"


def repeat_summary(stats: RepeatStats) -> str:
    """`test 'x' over 5 repetitions: released within median 0.120 ms, max 0.410 ms;
    commands began within median 1.300 ms, max 1.900 ms; ...`: the start lines' figures
    (`began`) over the repetitions that measured them."""

    def over(median: float | None, most: float | None, measured: int) -> str:
        of = f" (of {measured})" if measured < stats.repetitions else ""
        return f"median {ms(median)}, max {ms(most)}{of}"

    parts = []
    if stats.spread_median_ms is not None:
        parts.append(
            f"released within {over(stats.spread_median_ms, stats.spread_max_ms, stats.spreads)}"
        )
        if stats.exec_median_ms is not None:
            within = over(stats.exec_median_ms, stats.exec_max_ms, stats.execs)
            parts.append(f"commands began within {within}")
        else:
            parts.append("when the commands began was not measured")
    if stats.window_min is not None:
        parts.append(f"concurrent window min {window(stats.window_min)}")
    elif stats.without_window:
        parts.append(
            f"in {stats.without_window} of {stats.repetitions} the commands never all ran together"
        )
    return f"test {stats.label!r} over {count(stats.repetitions, 'repetition')}: " + "; ".join(
        parts or ["nothing measured"]
    )


def history_line(record: RunRecord) -> str:
    """One past run: `20261201-224719-3f2a  2026-12-01 22:47:19  2 tests passed  my.cfg`."""
    when = NA if record.started_at is None else timestamp(record.started_at, "seconds")
    config = record.config_path or "untitled"
    line = f"{record.run_id}  {when}  {record_summary(record)}  {config}"
    if not record.results_kept:
        line += f"  (results deleted: {record.results_dir})"
    if record.note:
        line += f"  note: {printable(record.note)}"
    return line


def test_record_line(record: TestRecord) -> str:
    """A test as the run history remembers it: `test 'x' (repetition 2): passed, start
    spread 0.120 ms ± 0.040 ms, together 58.731 s (97.9 % of the longest command)`."""
    head = f"test {record.label!r}"
    if record.repetition is not None:
        head += f" (repetition {record.repetition})"
    parts = [word(record.status) + (f" ({record.reason})" if record.reason else "")]
    if record.start_spread_ms is not None:
        parts.append(
            f"start spread {ms_pm(record.start_spread_ms, record.start_spread_uncertainty_ms)}"
        )
    if record.window_s is not None and record.window_fraction is not None:
        parts.append(
            f"together {seconds(record.window_s)} ({percent(record.window_fraction)} "
            "of the longest command)"
        )
    parts.extend(metric_sum(name, total, hosts) for name, total, hosts in record.metrics)
    return f"{head}: {', '.join(parts)}"


def timeout(value: float | None) -> str:
    """A configured timeout, as the config reads it back: `300s`, `0.5s`, `none`."""
    return "none" if value is None else write_duration(value)


def _decimals(step: float) -> int:
    """The fewest decimals that write every multiple of `step` exactly."""
    for decimals in range(7):
        if abs(round(step, decimals) - step) <= abs(step) * 1e-6:
            return decimals
    return 6


def tick(value_ms: float, step_ms: float, signed: bool = False, unit: bool = True) -> str:
    """An axis label for `value_ms` on an axis ticked every `step_ms`: `0`, `250 ms`,
    `1.5 s`, `2m 30s`; as many decimals as the step needs, never more."""
    if abs(value_ms) < abs(step_ms) * 1e-6:
        return "0"
    sign = "+" if signed else ""
    if step_ms >= 60_000 and abs(value_ms) >= 60_000:
        minutes, secs = divmod(round(abs(value_ms) / 1000), 60)
        prefix = "-" if value_ms < 0 else sign
        return f"{prefix}{minutes}m {secs:02d}s" if secs else f"{prefix}{minutes}m"
    if step_ms >= 1000 or (step_ms >= 100 and abs(value_ms) >= 1000):
        value, step, name = value_ms / 1000, step_ms / 1000, " s"
    else:
        value, step, name = value_ms, step_ms, " ms"
    return f"{value:{sign}.{_decimals(step)}f}" + (name if unit else "")


def size(n: int) -> str:
    """`512 B`, `1.5 KiB`, `3.2 MiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _three(value: float) -> str:
    """Three significant digits, no exponent: `1.93`, `48.0`, `480`."""
    magnitude = abs(value)
    if magnitude >= 100 or magnitude == 0:
        return f"{value:.0f}"
    return f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def _scaler(step: float, units: Sequence[str]) -> Callable[[float], str]:
    """A value in the largest of `units` (each `step` times the one before) under which
    it is at least 1, three significant digits: `1.93 GiB/s`. Made once per kind of
    figure, its bounds worked out: a 1000-host log writes thousands of these."""
    bounds = [float(step) ** k for k in range(1, len(units))]
    divisors = [float(step) ** k for k in range(len(units))]

    def scaled(value: float) -> str:
        index = bisect.bisect_right(bounds, abs(value)) if value == value else 0  # NaN: as is
        value /= divisors[index]
        magnitude = abs(value)
        # _three, inline
        if magnitude >= 100 or magnitude == 0:
            return f"{value:.0f} {units[index]}"
        if magnitude >= 10:
            return f"{value:.1f} {units[index]}"
        return f"{value:.2f} {units[index]}"

    return scaled


_byte_rate = _scaler(1024, ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"))
_bit_rate = _scaler(1000, ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"))
_bytes_figure = _scaler(1024, ("B", "KiB", "MiB", "GiB", "TiB"))
_nanoseconds = _scaler(1000, ("ns", "µs", "ms", "s"))
_thousands = _scaler(1000, ("k", "M", "G", "T"))


def byte_rate(value: float) -> str:
    """Bytes per second: `512 B/s`, `480 MiB/s`, `1.93 GiB/s`."""
    return _byte_rate(value)


def bit_rate(value: float) -> str:
    """Bits per second, SI units as network tools say them: `9.41 Gbit/s`."""
    return _bit_rate(value)


def bytes_figure(value: float) -> str:
    """A byte count as a measured figure: `512 B`, `1.50 GiB`."""
    return _bytes_figure(value)


def nanoseconds(value: float) -> str:
    """A latency given in nanoseconds: `850 ns`, `127 µs`, `1.20 ms`, `2.00 s`."""
    return _nanoseconds(value)


def quantity(value: float) -> str:
    """A number without a unit: `0.123`, `42.0`, `18.7 k`, `2.10 M`."""
    if abs(value) < 1000:
        if float(value).is_integer():
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 1 else _three(value)
    return _thousands(value / 1000)


# What a metric's value is, by the end of its name (the built-in ones, and any
# -metric named alike): docs/results.md lists them.
_METRIC_UNITS: tuple[tuple[str, Callable[[float], str]], ...] = (
    ("_bw", _byte_rate),
    ("_Bps", _byte_rate),
    ("_bps", _bit_rate),
    ("_ns", _nanoseconds),
    ("_bytes", _bytes_figure),
)


def metric_axis_unit(name: str, largest: float) -> float:
    """What an axis of metric `name` up to `largest` is ticked in, so that its ticks
    read as round figures (`512 MiB/s`, `1.00 GiB/s`): a power of 1024 for bytes, of
    1000 otherwise, the largest not above `largest`."""
    base = 1024.0 if name.endswith(("_bw", "_Bps", "_bytes")) else 1000.0
    unit = 1.0
    while abs(largest) >= unit * base:
        unit *= base
    return unit


@functools.lru_cache(maxsize=1024)
def _metric_form(name: str) -> Callable[[float], str]:
    """How metric `name`'s values are written, looked up once per name: a 1000-host
    log writes thousands of them."""
    for ending, form in _METRIC_UNITS:
        if name.endswith(ending):
            return form
    return quantity


def metric_value(name: str, value: float) -> str:
    """A metric's value in the unit its name says (`read_bw`: bytes/s); else a number."""
    return _metric_form(name)(value)


def metric_hosts(hosts: int, failed: int) -> str:
    """`4 hosts`, or with those whose command did not end ok (their values count: a
    partial run's, perhaps) `4 hosts, 1 of them not ok`."""
    return count(hosts, "host") + (f", {failed} of them not ok" if failed else "")


def metric_line(name: str, summary: MetricSummary) -> str:
    """`read_bw: 1.93 GiB/s in all over 4 hosts (min 480 MiB/s, median 494 MiB/s, max
    512 MiB/s)`: a test's metric over the hosts that had it; a latency percentile's is
    its largest, `read_clat_p99_ns: up to 130 µs over 4 hosts (min 120 µs, median 127 µs)`;
    hosts whose command did not end ok count and are said: `over 4 hosts, 1 of them not
    ok (...)`."""

    def value(v: float) -> str:
        return metric_value(name, v)

    hosts = metric_hosts(summary.hosts, summary.hosts_failed)
    if not adds_up(name):
        return (
            f"{name}: up to {value(summary.max)} over {hosts} "
            f"(min {value(summary.min)}, median {value(summary.median)})"
        )
    return (
        f"{name}: {value(summary.sum)} in all over {hosts} "
        f"(min {value(summary.min)}, median {value(summary.median)}, max {value(summary.max)})"
    )


def metric_sum(name: str, figure: float, hosts: int, failed: int = 0) -> str:
    """`read_bw 1.93 GiB/s in all over 4 hosts`, `read_clat_p99_ns up to 130 µs over 4
    hosts`: a test's figure of a metric (metrics.fleet_figure), in a summary; with the
    hosts whose command did not end ok, as metric_line says them (`over 2 hosts, 1 of
    them not ok`)."""
    over = metric_hosts(hosts, failed)
    if not adds_up(name):
        return f"{name} up to {metric_value(name, figure)} over {over}"
    return f"{name} {metric_value(name, figure)} in all over {over}"


def metric_repeats_line(name: str, figures: Sequence[float], repetitions: int) -> str:
    """`read_bw over 3 repetitions: median 1.93 GiB/s in all, from 1.90 GiB/s to 1.95
    GiB/s`: the figures (metrics.fleet_figure) of the repetitions that had the metric;
    for a latency percentile, `median up to 130 µs`."""
    known = f" (in {len(figures)})" if len(figures) < repetitions else ""
    words = "in all" if adds_up(name) else "at the worst host"
    return (
        f"{name} over {count(repetitions, 'repetition')}{known}: median "
        f"{metric_value(name, statistics.median(figures))} {words}, "
        f"from {metric_value(name, min(figures))} to {metric_value(name, max(figures))}"
    )


def csv_number(value: float | None) -> str:
    """A number in a CSV cell, exactly (whole numbers without `.0`); empty when none."""
    if value is None:
        return ""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(value)


def not_started(reason: str) -> str:
    """Why a command never ran: the test was aborted before its release."""
    return f"not started: {reason}"


def command_end(
    status: CommandStatus, message: str, timeout: float | None, spool_error: str | None = None
) -> str:
    """An agent's `exit` in words: a timeout's are said here from its limit (agents
    from before sent a sentence, shown as it is), a failed spool from its errno."""
    if status is CommandStatus.TIMEOUT and not message and timeout is not None:
        return f"killed at its {timeout:g} s timeout"
    if spool_error is not None and not message:
        return (
            f"the agent's disk failed under its output spool ({os_error_text(spool_error)}): "
            "its output is not whole"
        )
    return message


def output_gap(gap: OutputGap) -> str:
    """Output the agent could not deliver, as the report and the log say it."""
    last = gap.offset + gap.bytes - 1
    return (
        f"{gap.stream} bytes {gap.offset}-{last} ({size(gap.bytes)}) are missing: "
        "the agent could not keep them for the resume after a cut (its spool was full "
        "or unreadable)"
    )


def file_not_collected(
    error: str,
    *,
    sent: int,
    limit: int | None = None,
    os_error: str | None = None,
    announced: int | None = None,
    size_then: int | None = None,
) -> str:
    """Why an agent did not send a collected file whole, from the facts of its
    `file` (ANNOUNCED: its size at the open) and `file_end` (SIZE_THEN: with CHANGED,
    its size when the read ended); an agent from before the codes sent a sentence,
    shown as it is."""
    cause = os_error_text(os_error)
    the_limit = "the size limit" if limit is None else f"the {size(limit)} limit"
    match error:
        case FileError.UNREADABLE:
            return f"cannot read it: {cause}"
        case FileError.NOT_REGULAR:
            return "not a regular file"
        case FileError.TOO_LARGE:
            return f"larger than {the_limit}"
        case FileError.READ_FAILED:
            return f"read failed after {size(sent)}: {cause}"
        case FileError.GREW:
            return f"it grew past {the_limit} while being read"
        case FileError.CHANGED:
            return file_changed(announced, size_then, sent)
    return error


def file_changed(announced: int | None, size_then: int | None, sent: int) -> str:
    """A collected file written to while the agent read it: its size when opened
    (ANNOUNCED) and when read whole (SIZE_THEN; None: unknown, an agent from before
    the CHANGED code), and the bytes SENT, a copy of no version of it."""
    said = "it changed while it was being read"
    if announced is None:
        return f"{said} ({size(sent)} sent)"
    if size_then == announced:
        return f"{said}: written to in place ({size(announced)})"
    then = "" if size_then is None else f", {size(size_then)} at the end"
    return f"{said}: {size(announced)} when opened{then} ({size(sent)} sent)"


def os_error_text(name: str | None) -> str:
    """An errno's name from another machine (EACCES) in words, as this one says it."""
    number = getattr(errno, name, None) if name else None
    if isinstance(number, int):
        return os.strerror(number)
    return name or "unknown error"


_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: str) -> int:
    """Bytes in `512`, `64K`, `200M`, `4G`, `1.5GiB` (binary units); ValueError otherwise."""
    match = _SIZE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"bad size {value!r}: expected e.g. 512, 64K, 200M or 4G")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def timestamp(epoch: float | None, timespec: str = "microseconds") -> str:
    """ISO 8601 local time with its UTC offset, for the logs and progress lines:
    `2025-03-01T14:02:11.123456+01:00`."""
    if epoch is None:
        return NA
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec=timespec)


def date_time(epoch: float) -> str:
    """`2025-03-01 14:02:11` (local time): when something happened, for a list."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def time_of_day(epoch: float) -> str:
    """`14:02:11.123` (local time)."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f"{epoch % 1:.3f}"[1:]


# What a terminal acts on: the C0 controls but tab and newline, DEL and the C1 controls;
# and what reorders or breaks the text around it wherever it is shown (a terminal, the
# GUI, an editor): the bidirectional controls (U+061C arabic letter mark, U+200E/U+200F
# marks, U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates; an override
# shows `evil\u202etxt.exe` as `evilexe.txt`) and the line and paragraph separators.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_SHOWN = re.compile(f"[{_CONTROLS}]")
_ONE_LINE = re.compile(f"[{_CONTROLS}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def beside_host(message: str, address: object) -> str:
    """A host's error (or its command's message) where the line already names the host:
    without the address the error gives for standing alone. `connection refused by
    node01:16200 (is the agent running ...?)` reads `connection refused (is the agent
    running ...?)`; `no route to host node01:16200`, `no route to host`; `connection to
    node01:16200 timed out`, `connection timed out`; `cannot connect to node01:16200: ...`,
    `cannot connect: ...`. The JSON's `error` keeps the whole."""
    named = re.escape(str(address))
    return re.sub(rf"(?:(?<=host)| (?:by|to|for)) {named}(?![\w.\]]|:\w)", "", message)


def printable(line: str) -> str:
    """`line` safe to show a person: each control character but tab and newline, and
    each bidirectional control, as its escape (`\\x1b`, `\\u202e`), so that a peer's
    text cannot move the cursor, clear the screen, set the title or reorder what
    follows it. The one escape for display: the terminal (session.say), the live table
    and the GUI all show text through it. Only for what is shown: the files keep the
    exact bytes."""
    return _SHOWN.sub(_escape, line)


def field(value: str) -> str:
    """A peer's string (a host name, an agent version, an exit message) as one field of
    one line: `printable`, and tab and newline escaped too, so that it cannot forge a
    line or a column of a log."""
    return _ONE_LINE.sub(_escape, value)


def not_saved(commands: int, first_host: str, first_error: str) -> str:
    """Why a test that would have passed is `passed, output not saved`:
    `the output of 2 commands could not be saved (first: h1:9: cannot write ...: No space
    left on device)`."""
    return (
        f"the output of {count(commands, 'command')} could not be saved "
        f"(first: {first_host}: {first_error})"
    )


def tally(statuses: Iterable[Status]) -> str:
    """`2 running, 1 done`: how many of each, in the order they first appear."""
    return ", ".join(counted(status, n) for status, n in Counter(statuses).items())


def progress(test: TestResult) -> tuple[int, int]:
    """(finished commands, all commands) of one test."""
    commands = [c for h in test.hosts for c in h.commands]
    return sum(c.status.finished for c in commands), len(commands)


def commands_count(test: TestResult) -> tuple[int, int]:
    """What commands_line counts: while a test runs, (ended commands, all); once it has
    ended, (commands that ran, all) (commands_ran): one never started is not one done."""
    if test.status in (TestStatus.PENDING, TestStatus.RUNNING):
        return progress(test)
    return commands_ran(test)


def progress_fraction(test: TestResult) -> str:
    """`3/5`: the count commands_line says (`3/5 commands finished`, `0/5 commands ran`)."""
    return "{}/{}".format(*commands_count(test))


def clock(seconds: float) -> str:
    """A duration as a clock shows it: `0:12`, `12:05`, from an hour on `1:02:03`."""
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def test_title(test: TestResult) -> str:
    """`test 'fio'`, `test 'fio' (repetition 2)`."""
    head = f"test {test.label!r}"
    return head if test.repetition is None else f"{head} (repetition {test.repetition})"


def not_run_after(test: TestResult, refused: bool) -> str:
    """Why the tests after TEST were not run: `test 'a' aborted, --stop-on-failure`;
    `every host refused our credentials in test 'a'`."""
    if refused:
        return f"every host refused our credentials in {test_title(test)}"
    return f"{test_title(test)} {word(test.status)}, --stop-on-failure"


def live_progress(test: TestResult, now: float) -> str:
    """A running test in one line: `test 'fio': 6 running, 0 finished of 6, 0:12 elapsed,
    timeout in 0:48` (the next of its running commands' timeouts, when they have one);
    while hosts connect, how many: `0 running, 5 finished of 44, 5 hosts connecting, 0:03
    elapsed` (an unreachable one takes the connect timeout, and the others wait for it)."""
    commands = [c for h in test.hosts for c in h.commands]
    running = [c for c in commands if c.status is CommandStatus.RUNNING]
    parts = [
        f"{len(running)} running",
        f"{sum(c.status.finished for c in commands)} finished of {len(commands)}",
    ]
    connecting = sum(h.state is HostState.CONNECTING for h in test.hosts)
    if connecting:
        parts.append(f"{count(connecting, 'host')} connecting")
    if test.started_at is not None:
        parts.append(f"{clock(now - test.started_at)} elapsed")
    deadlines = [
        c.started_at + c.timeout
        for c in running
        if c.started_at is not None and c.timeout is not None
    ]
    if deadlines:
        parts.append(f"timeout in {clock(math.ceil(min(deadlines) - now))}")
    return f"{test_title(test)}: {', '.join(parts)}"


def test_begins(test: TestResult) -> str:
    """Without a terminal: `test 'fio': starting 6 commands on 3 hosts`."""
    commands = sum(len(h.commands) for h in test.hosts)
    hosts = count(len(test.hosts), "host")
    return f"{test_title(test)}: starting {count(commands, 'command')} on {hosts}"


def test_ends(test: TestResult) -> str:
    """Without a terminal: `test 'fio': passed, 6 of 6 commands ran in 1:02`."""
    ran, commands = commands_ran(test)
    took = f" in {clock(test.duration_s)}" if test.duration_s is not None else ""
    return (
        f"{test_title(test)}: {word(test.status)}, {ran} of {count(commands, 'command')} ran{took}"
    )


def commands_ran(test: TestResult) -> tuple[int, int]:
    """(commands that ran, all commands) of one test: released, or LOST (their host was
    lost after the start, whether or not its report of the release came). Once a test
    has ended every command has finished, also those a host refused or an abort came
    before: none of those ran."""
    commands = [c for h in test.hosts for c in h.commands]
    ran = sum(c.started_at is not None or c.status is CommandStatus.LOST for c in commands)
    return ran, len(commands)


def host_elapsed(host: HostResult, now: float) -> str:
    """How long a host's commands have run (until the last ended): `0:12`; "" before."""
    starts = [c.started_at for c in host.commands if c.started_at is not None]
    if not starts:
        return ""
    if all(c.status.finished for c in host.commands):
        ends = [
            c.started_at + c.duration_s
            for c in host.commands
            if c.started_at is not None and c.duration_s is not None
        ]
        now = max(ends, default=now)
    return clock(now - min(starts))


def hosts_succeeded(test: TestResult) -> str:
    """`2/3 succeeded`: hosts done whose every command succeeded, of all, as the verdict
    counts them (`2 of 3 hosts succeeded`); a host done with a failed command is not one."""
    good = sum(
        h.state is HostState.DONE and all(c.status is CommandStatus.OK for c in h.commands)
        for h in test.hosts
    )
    return f"{good}/{len(test.hosts)} succeeded"


def status_text(test: TestResult) -> str:
    """A test's status as people read it: `passed with 1 failed, 1 timed out` when
    `-minhosts` let a test pass over commands that did not succeed, else the status word."""
    status = word(test.status)
    found = test.problems()
    if test.status is TestStatus.PASSED and found:
        return f"{status} with {tally(found.elements())}"
    return status


def fraction(done: int, total: int, noun: str) -> str:
    """`3/5 commands`."""
    return f"{done}/{total} {noun if total == 1 else noun + 's'}"


def shown_of(shown: int, total: int) -> str:
    """What a filtered list says of itself: `3 of 36 shown`."""
    return f"{shown} of {total} shown"


def commands_line(test: TestResult) -> str:
    """While a test runs, how many of its commands have ended: `3/5 commands finished`;
    once it has ended, how many ran at all: `0/2 commands ran` (commands_ran)."""
    said = "finished" if test.status in (TestStatus.PENDING, TestStatus.RUNNING) else "ran"
    return f"{fraction(*commands_count(test), 'command')} {said}"


LATE_NAMED = 5  # late hosts a summary line names (on a loaded machine, all may be late)


def summary_parts(test: TestResult) -> list[str]:
    """The parts of a test's summary line after its label and status (none for a test
    the run did not reach: its reason says why)."""
    if not test.hosts:
        return []
    parts = [commands_line(test), count(len(test.hosts), "host")]
    if test.start_spread_ms is not None:
        parts.append(began(test))
        late = late_line(test, most=LATE_NAMED)
        if late is not None:
            parts.append(late)
    if test.lead_ms is not None:
        parts.append(lead(test.lead_ms, test.lead_set_by))
    if test.duration_s is not None:
        parts.append(f"took {duration(test.duration_s)}")
    parts.extend(
        metric_sum(name, fleet_figure(name, s), s.hosts, s.hosts_failed)
        for name, s in test.metrics.items()
    )
    return parts


def outcome(
    tests: Sequence[tuple[int | None, TestStatus]], problems: Counter[CommandStatus]
) -> str:
    """A run's outcome from its tests' (repetition, status) and its commands' problems
    (by status): `1 test passed`, `3 tests passed (commands: 1 failed)`, `1 failed,
    1 passed`, `no test ran`; a test run N times (--repeat) is one test of N
    repetitions: `1 test passed (3 repetitions)`, `1 test, 3 repetitions: 1 failed,
    2 passed`."""
    if not tests:
        return "no test ran"
    statuses = [status for _, status in tests]
    repetitions = sum(repetition is not None for repetition, _ in tests)
    if not repetitions:
        if all(status is TestStatus.PASSED for status in statuses):
            with_problems = f" (commands: {tally(problems.elements())})" if problems else ""
            return f"{count(len(statuses), 'test')} passed{with_problems}"
        return tally(statuses)
    # Repetition 1 of each repeated test: a test counted once however often it ran.
    tests_run = count(sum(repetition in (None, 1) for repetition, _ in tests), "test")
    repeated = count(repetitions, "repetition")
    if all(status is TestStatus.PASSED for status in statuses):
        with_problems = f"; commands: {tally(problems.elements())}" if problems else ""
        return f"{tests_run} passed ({repeated}{with_problems})"
    return f"{tests_run}, {repeated}: {tally(statuses)}"


def run_summary(run: RunResult) -> str:
    """A run's outcome as it ends (`outcome`)."""
    return outcome([(test.repetition, test.status) for test in run.tests], run.problems())


def record_summary(record: RunRecord) -> str:
    """A past run's outcome (`outcome`), from what the run history kept of it; `interrupted`
    for a run recorded as it started and never as it ended (killed; or still running)."""
    if not record.ended:
        return "interrupted"
    return outcome(
        [(test.repetition, test.status) for test in record.tests], Counter(dict(record.problems))
    )


def unsaved_states(record: RunRecord) -> str:
    """What `netjobs show` says first of a run that ended but whose results.json is not
    what the history recorded at its end (the last write failed: a full disk)."""
    return (
        f"run {record.run_id}: its results.json was not written at its end (the history "
        f"recorded: {record_summary(record)}); the states below are as they stood when it "
        "was last written, not how the run ended"
    )


KEPT_NAMED = 20  # output files named one by one under an interrupted run's report


def kept_outputs(folder: str, files: Sequence[tuple[str, int]]) -> list[str]:
    """What `netjobs show` adds for a run interrupted mid-test: the outputs its folder
    holds (path, bytes), written as they came up to the controller's loss, which its
    results.json, written as the test started, does not count."""
    if not files:
        return []
    total = sum(n for _, n in files)
    lines = [
        f"output on disk in {folder}, as it came until the controller was lost (it may "
        f"end short of what the commands wrote): {count(len(files), 'file')}, {size(total)}"
    ]
    lines += [f"  {path}  {size(n)}" for path, n in files[:KEPT_NAMED]]
    if len(files) > KEPT_NAMED:
        lines.append(f"  and {len(files) - KEPT_NAMED} more")
    return lines


def stale_states(record: RunRecord) -> str:
    """What `netjobs show` says first of a run the history says was interrupted (its
    controller killed or lost): its results.json is written only as the run and each
    test start and as each test ends, so what it shows is neither current nor how
    things ended."""
    return (
        f"run {record.run_id}: interrupted before its end, its controller lost: the "
        "states below are as they stood when its results were last written (as a test "
        "started or ended), not current; what reads running, connecting or pending may "
        "have ended since"
    )


class ClockFigures(Protocol):
    """What a host's clock measurement left (a HostResult, a HostCheck)."""

    rtt_ms: float | None
    clock_uncertainty_ms: float | None
    wall_clock_offset_ms: float | None


def wall_clock(host: ClockFigures) -> str:
    """`wall clock +37.002 s ± 0.100 ms`: the agent's wall clock minus ours, as NTP/chrony
    users compare clocks (the monotonic offset that scheduling uses is not for reading)."""
    if host.wall_clock_offset_ms is None:
        return "wall clock not reported by the agent"
    return f"wall clock {ms_pm(host.wall_clock_offset_ms, host.clock_uncertainty_ms, signed=True)}"


def host_line_numbers(host: ClockFigures) -> str:
    """`rtt 0.123 ms, wall clock +0.010 ms ± 0.050 ms` (empty before the clock is measured)."""
    if host.rtt_ms is None:
        return ""
    return f"rtt {ms(host.rtt_ms)}, {wall_clock(host)}"


def interruption_cause(cause: str, silent_s: float | None, stalled_s: float) -> str:
    """Why a host's connection was interrupted: `cause` as noticed, unless the controller's
    own loop was stalled (`stalled_s`: stopped, suspended) meanwhile; with `silent_s` when
    late bytes hid the silence before it."""
    if stalled_s:
        # Seen by a task that wakes every heartbeat: it may have begun up to one sooner.
        return f"the controller was suspended for at least {duration(stalled_s)}"
    if silent_s is not None:
        return f"{cause}, after {duration(silent_s)} without a word from it"
    return cause


def lost_message(last_heard: float | None, error: str) -> str:
    """A command LOST with its host: `lost at 14:02:11.123: <why>`, the instant its host
    was last heard (the command ran at least until then)."""
    return f"lost at {time_of_day(last_heard)}: {error}" if last_heard else f"lost: {error}"


def left_running(reason: str) -> str:
    """A command the controller stopped waiting for mid-run (cancelled): its end unknown."""
    why = f" ({reason})" if reason else ""
    return f"the controller left before its end{why}: its output from then on was not collected"


def interruptions(host: HostResult) -> list[str]:
    """Each kept cut of the host's connection (`interruption`), and where cuts between
    the first and the last were folded: `… 37 more connection losses, each resumed`."""
    lines = [interruption(record) for record in host.interruptions]
    if host.interruptions_folded:
        more = count(host.interruptions_folded, "more connection loss", "more connection losses")
        lines.insert(KEPT_INTERRUPTIONS, f"… {more}, each resumed")
    return lines


def interruption(record: Interruption) -> str:
    """A lost connection to a host mid-run, as it stands: `connection lost at
    14:02:11.123 (no answer from the agent for 10 s); reconnecting…`."""
    lost = f"connection lost at {time_of_day(record.at)} ({record.cause})"
    if record.duration_s is None:
        return f"{lost}; reconnecting…"
    if record.resumed:
        return f"{lost}; resumed after {duration(record.duration_s)}"
    return f"{lost}; gave up after {duration(record.duration_s)}"


def command_details(command: CommandResult, host: object = None) -> list[str]:
    """What the report and the log say after a command's status: its run time, its
    message (`beside_host` its `host`'s address, on a line that names the host)."""
    parts = []
    if command.duration_s is not None:
        parts.append(f"ran {seconds(command.duration_s)}")
    if command.message:
        message = command.message if host is None else beside_host(command.message, host)
        parts.append(field(message))  # the agent's words: one line of a log
    form = _metric_form  # one lookup of each name's unit for all of its values
    parts.extend(f"{name} {form(name)(value)}" for name, value in command.metrics.items())
    return parts


def file_lines(command: CommandResult) -> list[str]:
    """A command's collected files and its warnings, a line each (report and log)."""
    lines = [
        f"collected {field(str(item.path))} ({size(item.bytes)}, sha256 {item.sha256[:12]})"
        for item in command.collected
    ]
    return lines + [f"warning: {field(warning)}" for warning in command_warnings(command)]


def command_warnings(command: CommandResult) -> list[str]:
    """What a person is warned of about a command: its files' warnings, its output's gaps."""
    return [*command.warnings, *(output_gap(gap) for gap in command.gaps)]


def collected_summary(files: Sequence[Collected]) -> str:
    """`collected 32 files, 1.2 GiB in all (their paths: results.json)`."""
    total = sum(item.bytes for item in files)
    return (
        f"collected {count(len(files), 'file')}, {size(total)} in all (their paths: results.json)"
    )


def output_lines(data: bytes | bytearray) -> list[str]:
    """A command's output as lines to show (no trailing empty one), the same in the
    terminal report, the `-l` log and the GUI: what is not UTF-8 escaped (`\\xff`), and
    each line through `printable` (a NUL, ESC or CR as `\\x00`, `\\x1b`, `\\x0d`; tab kept).
    The exact bytes are in the output files and results.json."""
    if not data:
        return []
    decoded = bytes(data).decode("utf-8", "backslashreplace").removesuffix("\n")
    return printable(decoded).split("\n")  # newline is not escaped: the lines' ends


def output_excerpt(output: Output, show: int = SHOW_BYTES) -> list[str]:
    """What the report and the log show of an output: all of it up to `show` bytes,
    else its head and tail around a line saying what was left out and where it is."""
    head, left_out, tail = output.excerpt(show)
    if not left_out:
        return output_lines(head + tail)
    if output.error:
        where = output.error
    else:
        where = f"the whole output is in {output.path}" if output.path else "it was not kept"
    return [
        *output_lines(head),
        f"... {left_out} bytes ({size(left_out)}) left out, {where}",
        *output_lines(tail),
    ]


def plan_summary(plan: Plan) -> list[str]:
    """What a run of this plan would do, for the dry run (-s, the GUI's Dry Run)."""
    lines = [f"{plan.path}: {count(len(plan.tests), 'test')}"]
    for spec in plan.tests:
        hosts = count(len(spec.addresses), "host")
        need = "all" if spec.minhosts is None else str(spec.minhosts)
        lines.append(
            f"test {spec.label!r} (line {spec.line}): {count(len(spec.commands), 'command')} "
            f"on {hosts}, -minhosts {need} ({spec.required_hosts} must stay up), "
            f"-generaltimeout {timeout(spec.general_timeout)}"
        )
        # A node set's commands share their line: shown once, folded, with the count.
        for _, group in itertools.groupby(spec.commands, key=lambda c: (c.line, c.node_set)):
            commands = list(group)
            command = commands[0]
            target = command.target
            if command.node_set:
                folded = nodesets.fold(c.target for c in commands)
                same = folded == command.node_set
                target = f"{command.node_set}{'' if same else ' = ' + folded}"
                target += f" ({count(len(commands), 'host')})"
            collect = "".join(f"  collect {pattern!r}" for pattern in command.collect)
            lines.append(
                f"  {target}: {command.command!r}  timeout {timeout(command.timeout)}"
                f"{collect}  (line {command.line})"
            )
        lines.append(
            f"  would connect to {hosts}, measure their clocks, prepare every command, "
            "start all at one scheduled instant"
        )
    return lines


CREDENTIAL_NAMES = {
    Credential.HOST: "host credential",
    Credential.SHARED: "shared token",
    Credential.LINK: "SSH link secret",
}


def release_priority(realtime: bool | None) -> str:
    """How an agent waits for its releases, as `netjobs check` says it: empty for an
    agent that does not say (an older one)."""
    if realtime is None:
        return ""
    if realtime:
        return "releases at real-time priority"
    return "releases at ordinary priority (real-time needs root, CAP_SYS_NICE or LimitRTPRIO)"


def busy_with(label: str, controller: str, kept_s: float | None) -> str:
    """What a busy agent runs, for whom, and how long it keeps a silent controller's
    test for its resume: `busy with test 'long' for 10.0.0.7:50412`, `busy with test
    'long' for 10.0.0.7:50412, silent: kept 174 s more for its resume` (the agent's own
    words, from a peer: escaped)."""
    words = f"busy with test {field(repr(label))}"
    if controller:
        words += f" for {field(controller)}"
    if kept_s is not None:
        words += f", silent: kept {kept_s:.0f} s more for its resume"
    return words


def credential(kind: str) -> str:
    """What an agent authenticated with: `host credential`, `shared token`, `SSH link
    secret` (an agent started over SSH, with a random secret of its link)."""
    return CREDENTIAL_NAMES.get(Credential(kind), kind) if kind else "not authenticated"


def credentials_line(hosts: Sequence[HostResult]) -> str | None:
    """`credentials: host credential on 127.0.0.[2-3] (2 hosts), shared token on
    127.0.0.4 (1 host)`: what each authenticated host used; None when none did."""
    by_kind: dict[str, list[str]] = {}
    for host in hosts:
        if host.credential:
            by_kind.setdefault(host.credential, []).append(host.target)
    if not by_kind:
        return None
    parts = [f"{credential(kind)} on {members(targets)}" for kind, targets in by_kind.items()]
    return "credentials: " + ", ".join(parts)


def shared_beside_host_credentials(hosts: Sequence[HostResult]) -> str | None:
    """A warning when hosts holding a copy of the controller's token ran beside hosts
    with credentials of their own: a command on any of the former can derive every
    host's credential, so the others' isolation is void until they get files too."""
    kinds = {host.credential for host in hosts}
    if not {Credential.SHARED.value, Credential.HOST.value} <= kinds:
        return None
    shared = [host for host in hosts if host.credential == Credential.SHARED.value]
    names = " ".join(dict.fromkeys(host.address.host for host in shared))
    return (
        f"warning: {members([host.target for host in shared])} holds a copy of the "
        "controller's token: a command there can drive every agent, those with host "
        f"credentials too; give it a file of its own (netjobs token issue {names})"
    )


def comparison_lines(found: TestComparison, name_a: str, name_b: str) -> list[str]:
    """What differs between two results of a test, first the figures, then the hosts."""
    a, b = found.a, found.b
    lines = [
        f"test {a.label!r}: {status_text(a)} in {name_a}, {status_text(b)} in {name_b}",
        f"  start spread {spread(a)} in {name_a}, {spread(b)} in {name_b}",
        f"  {name_a}: {window_line(a)}",
        f"  {name_b}: {window_line(b)}",
    ]
    differing = found.differing
    lines.append(
        f"  {count(len(differing), 'host')} of {len(found.hosts)} ended differently"
        + (":" if differing else "")
    )
    for pair in differing:
        lines.append(
            f"    {pair.target}: {pair.outcome_a or 'not in the test'} in {name_a}, "
            f"{pair.outcome_b or 'not in the test'} in {name_b}"
        )
    return lines


def same_output_file(first: str, second: str, path: object) -> str:
    """Two result files of a run named as one file: refused before the run."""
    return (
        f"{first} and {second} are the same file ({path}): {second} would replace "
        f"{first} at the end of the run; give each its own FILE"
    )


def output_over_input(what: str, path: object) -> str:
    """A result file named as the config it runs: refused before the run."""
    return f"{what} {path} is the config file: the results would replace it; give another FILE"
