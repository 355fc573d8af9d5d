"""Every flag of a run, declared once: the command line's arguments and the desktop
controller's Run Options form are both built from `FLAGS`, and both turn their values
into a run's `RunOptions` and `Run` arguments with `option_values` / `run_values`.

Each flag says where the window sets it (`Where`): in its Run Options form, in its
Settings, elsewhere (a menu or a check box, named in `note`), or nowhere, with the
reason in `note`. tests/test_run_flags.py holds every flag of `netjobs` to that, so a
new flag cannot be forgotten by the window.
"""

from __future__ import annotations

import argparse
import enum
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from netjobs_core import text
from netjobs_core.outputs import SHOW_BYTES
from netjobs_core.results import StartMode
from netjobs_core.results_json import INLINE_LIMIT
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import DEFAULT_COLLECT_MAX
from netjobs_core.runner import MAX_LEAD_S
from netjobs_core.session import UsageError

__all__ = [
    "COMMON",
    "FLAGS",
    "RUN",
    "Flag",
    "Where",
    "add_flags",
    "flag",
    "make_run_folder",
    "option_values",
    "run_values",
]


# ---- what a value on the command line (or in a field of the window) may be
def _finite(value_text: str, unit: str, above: bool, rule: str) -> float:
    """VALUE_TEXT as a finite number of UNIT, > 0 when ABOVE, else >= 0 (RULE words it)."""
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {unit}: {value_text!r}") from None
    if not (math.isfinite(value) and (value > 0 if above else value >= 0)):
        raise argparse.ArgumentTypeError(f"must be {rule}, not {value_text}")
    return value


def positive_seconds(value_text: str) -> float:
    return _finite(value_text, "seconds", True, "a number of seconds > 0")


def milliseconds(value_text: str) -> float:
    return _finite(value_text, "milliseconds", False, "milliseconds >= 0")


def lead_milliseconds(value_text: str) -> float:
    """--lead: milliseconds from 0 up to the cap on how far ahead a common start may go."""
    value = milliseconds(value_text)
    if value > MAX_LEAD_S * 1000:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_LEAD_S * 1000:g} ms ({MAX_LEAD_S:g} s, how far ahead a "
            f"common start may be), not {value_text}"
        )
    return value


def positive_count(value_text: str) -> int:
    try:
        value = int(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value_text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value_text}")
    return value


def size(value_text: str) -> int:
    """`65536`, `64k`, `1M`, `2g` (binary units: text.parse_size)."""
    try:
        return text.parse_size(value_text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def existing_file(value_text: str) -> str:
    if not os.path.isfile(value_text):
        raise argparse.ArgumentTypeError(f"no such file: {value_text!r}")
    return value_text


class Where(enum.Enum):
    """Where the desktop controller sets a flag."""

    OPTIONS = "the Run Options form"  # a field built from the flag (netjobs_gui.run_options)
    SETTINGS = "Settings"  # `Flag.setting` names the netjobs_gui Settings property
    ELSEWHERE = "elsewhere"  # `note` names the menu item or check box
    CLI_ONLY = "command line only"  # `note` says why


@dataclass(frozen=True)
class Flag:
    dest: str  # the argparse dest, and the key of a value in the window's options
    names: tuple[str, ...]
    help: str
    gui: Where
    note: str = ""  # ELSEWHERE: where; CLI_ONLY: why
    label: str = ""  # OPTIONS: the field's label (with its Alt-letter)
    setting: str = ""  # SETTINGS: the Settings property
    kind: Literal["switch", "value", "choice", "folder"] = "switch"
    parse: Callable[[str], Any] | None = None  # a value's text to its value (argparse type)
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    option: str = ""  # the RunOptions field it sets ...
    run_arg: str = ""  # ... or the netjobs_core.run.Run argument
    convert: Callable[[Any], Any] | None = None  # its value to that field's or argument's

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        extra: dict[str, Any] = {}
        if self.kind == "switch":
            extra["action"] = "store_true"
        else:
            extra.update(metavar=self.metavar, default=self.default)
            if self.parse is not None:
                extra["type"] = self.parse
            if self.choices:
                extra["choices"] = list(self.choices)
                del extra["metavar"]
        parser.add_argument(*self.names, dest=self.dest, help=self.help, **extra)

    def shown(self, value: Any) -> str:
        """A value as a person writes it (a size: `1 MiB`)."""
        return text.size(value) if self.parse is size and isinstance(value, int) else str(value)

    def value_of(self, value_text: str) -> Any:
        """What `value_text` (a field of the window) means, as the command line reads
        it: ValueError with the command line's message when it is not valid. Empty: the
        default."""
        if self.kind == "switch":
            raise TypeError(f"{self.dest} is a switch")
        if not value_text.strip():
            return self.default
        if self.choices and value_text not in self.choices:
            raise ValueError(f"choose from {', '.join(self.choices)}")
        try:
            return self.parse(value_text.strip()) if self.parse is not None else value_text
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None


def _not(value: Any) -> bool:
    return not value


def _ns(value: float | None) -> float | None:
    """Milliseconds to nanoseconds, None kept (not set: learned)."""
    return None if value is None else value * 1e6


# The order of `netjobs --help`.
RUN: tuple[Flag, ...] = (
    Flag(
        "s",
        ("-s",),
        "simulate: check the config, print the plan and what a run would do; no network, "
        "no commands",
        Where.ELSEWHERE,
        note="Run ▸ Dry Run",
    ),
    Flag(
        "v",
        ("-v",),
        "verbose: show progress for each step (a live per-host display on a terminal)",
        Where.CLI_ONLY,
        note="the window always shows every host's progress",
    ),
    Flag(
        "l",
        ("-l",),
        "write a log file per test next to the config: <config>_<label>_<time>.log",
        Where.ELSEWHERE,
        note="File ▸ Save Log… (the same .log files, into a folder you choose)",
        run_arg="log",
    ),
    Flag(
        "json",
        ("--json",),
        "write all results to FILE as JSON; '-' writes them to standard output "
        "(for '| jq') and the reports to standard error",
        Where.ELSEWHERE,
        note="File ▸ Save Log… (the JSON document with the logs); every run also has its "
        "results.json in its folder",
        kind="value",
        metavar="FILE",
        run_arg="json_path",
    ),
    Flag(
        "csv",
        ("--csv",),
        "write one CSV row per command of every test and repetition to FILE at the "
        "end: run, test, repetition, host, status, timings and a column per metric; "
        "'-' writes it to standard output and the reports to standard error",
        Where.ELSEWHERE,
        note="every results table's context menu: Export as CSV…",
        kind="value",
        metavar="FILE",
        run_arg="csv_path",
    ),
    Flag(
        "results",
        ("--results",),
        "put the run's folder (results.json, every output whole, collected files) "
        "in DIR (default: runs/ in your NetJobs data directory)",
        Where.OPTIONS,
        label="&Results folder",
        kind="folder",
        metavar="DIR",
    ),
    Flag(
        "inline_limit",
        ("--inline-limit",),
        "outputs up to this size are written inside the JSON; larger ones are "
        f"referenced by their file in the run folder (default {INLINE_LIMIT // 1024**2}M)",
        Where.OPTIONS,
        label="&Inline limit",
        kind="value",
        parse=size,
        default=INLINE_LIMIT,
        metavar="BYTES",
        option="inline_limit",
    ),
    Flag(
        "show_bytes",
        ("--show-bytes",),
        "the report and the -l log show at most this much of each output, its head "
        f"and tail, and where the whole is (default {SHOW_BYTES // 1024}k)",
        Where.CLI_ONLY,
        note="the window shows each output in a view of its own, its beginning and end "
        "when large, with the whole file one click away",
        kind="value",
        parse=size,
        default=SHOW_BYTES,
        metavar="BYTES",
        run_arg="show",
    ),
    Flag(
        "start_mode",
        ("--start-mode",),
        "scheduled (default): all agents release at one instant of the "
        "controller's clock; sequential: each starts when told, like NetJobs 2.x",
        Where.OPTIONS,
        label="Start &mode",
        kind="choice",
        default=StartMode.SCHEDULED.value,
        choices=tuple(m.value for m in StartMode),
        option="start_mode",
        convert=StartMode,
    ),
    Flag(
        "lead",
        ("--lead",),
        f"set the scheduled common start this many ms ahead, at most {MAX_LEAD_S * 1000:g} "
        "(default: learned from the hosts' round trips and how late they released, at "
        f"most {MAX_LEAD_S:g} s; the report gives the lead used)",
        Where.OPTIONS,
        label="Start &lead (ms)",
        kind="value",
        parse=lead_milliseconds,
        metavar="MS",
        option="lead_ns",
        convert=_ns,
    ),
    Flag(
        "late_ms",
        ("--late-ms",),
        "name a host late in the report when it released a command more than MS "
        "after the common start (default 1)",
        Where.OPTIONS,
        label="&Late after (ms)",
        kind="value",
        parse=milliseconds,
        default=1.0,
        metavar="MS",
        option="late_ms",
    ),
    Flag(
        "collect_max",
        ("--collect-max",),
        "largest file -collect brings back, e.g. 200M or 4G (default "
        f"{text.size(DEFAULT_COLLECT_MAX)}); a larger one is a warning and is not copied",
        Where.OPTIONS,
        label="Largest &collected file",
        kind="value",
        parse=size,
        default=DEFAULT_COLLECT_MAX,
        metavar="SIZE",
        option="collect_max",
    ),
    Flag(
        "stop_on_failure",
        ("--stop-on-failure",),
        "run no further tests once one has not passed",
        Where.SETTINGS,
        setting="stop_on_failure",
        option="stop_on_failure",
    ),
    Flag(
        "repeat",
        ("--repeat",),
        "run each test N times in a row; the report adds the median and max of how far "
        "apart the commands were released and began, and the concurrent window's minimum "
        "over the repetitions",
        Where.OPTIONS,
        label="R&epeat each test",
        kind="value",
        parse=positive_count,
        default=1,
        metavar="N",
        option="repeat",
    ),
    Flag(
        "no_fold",
        ("--no-fold",),
        "report every host on its own (default: hosts with the same status and "
        "output once, under their folded names, as clush -b does; -v never folds)",
        Where.ELSEWHERE,
        note="the tables list every host; Group identical outputs folds them",
    ),
    Flag(
        "S",
        ("-S",),
        "exit with the largest exit status of any command, as pdsh -S does (a command "
        "killed by signal N counts as 128+N); when every command exited 0, as without -S",
        Where.CLI_ONLY,
        note="an exit status is for a shell script; the window shows every command's",
    ),
    Flag(
        "q",
        ("-q",),
        "summary only: each test's verdict line and its metrics, no hosts, no outputs",
        Where.CLI_ONLY,
        note="the window's test list is that summary, with the detail a click away",
    ),
    Flag(
        "rerun_failed",
        ("--rerun-failed",),
        "run the config again on the hosts that failed or timed out in RUN (a run id "
        "or the start of it, 'last', or a results folder); CONFIG defaults to that run's",
        Where.ELSEWHERE,
        note="Run ▸ Re-run Failed Hosts (of the last run)",
        kind="value",
        metavar="RUN",
    ),
    Flag(
        "no_history",
        ("--no-history",),
        "do not record this run in the run history ('netjobs history')",
        Where.OPTIONS,
        label="Do not record in the run &history",
        run_arg="in_history",
        convert=_not,
    ),
)

# Also `netjobs check`'s.
COMMON: tuple[Flag, ...] = (
    Flag(
        "token_file",
        ("--token-file",),
        "the controller's token, which agents hold a copy of or their own credentials "
        "issued from (default: $NETJOBS_TOKEN, "
        "then the token file in your NetJobs config directory)",
        Where.SETTINGS,
        setting="token_file",
        kind="value",
        metavar="FILE",
    ),
    Flag(
        "strict_permissions",
        ("--strict-permissions",),
        "refuse a token file that group or others may read (default: warn)",
        Where.CLI_ONLY,
        note="Settings refuses a token file that does not exist; the token's own checks "
        "are the command line's defaults",
    ),
    Flag(
        "allow_weak_token",
        ("--allow-weak-token",),
        "use a token that looks guessable (short, few kinds of characters, words)",
        Where.CLI_ONLY,
        note="an override of a safety check is a deliberate act: the window always "
        "refuses a guessable token",
    ),
    Flag(
        "groups",
        ("--groups",),
        "groups file for '@name' targets: one 'name: nodeset' a line (e.g. 'web: web[01-16]')",
        Where.SETTINGS,
        setting="groups_file",
        kind="value",
        metavar="FILE",
    ),
    Flag(
        "connect_timeout",
        ("--connect-timeout",),
        "how long to wait for each agent to connect and answer (default 5)",
        Where.SETTINGS,
        setting="connect_timeout",
        kind="value",
        parse=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        option="connect_timeout",
    ),
    Flag(
        "ssh",
        ("--ssh",),
        "reach every target over SSH and start the agent there for this run "
        "(a port in the config is then SSH's), as if each were written ssh://host",
        Where.CLI_ONLY,
        note="in the window a config says which targets are over SSH: write them ssh://host",
    ),
    Flag(
        "ssh_accept_new",
        ("--ssh-accept-new",),
        "add the host key of an SSH host that known_hosts does not list "
        "(as StrictHostKeyChecking=accept-new; a changed key is still refused)",
        Where.SETTINGS,
        setting="ssh_accept_new",
    ),
    Flag(
        "ssh_agent",
        ("--ssh-agent",),
        "the one-file agent to send to SSH hosts without python3 >= 3.11 (default: "
        "netjobs-agent beside a one-file netjobs, else dist/netjobs-agent of the checkout)",
        Where.CLI_ONLY,
        note="the window sends the one-file agent found where the command line looks by default",
        kind="value",
        parse=existing_file,
        metavar="FILE",
    ),
)

FLAGS: tuple[Flag, ...] = RUN + COMMON
_BY_DEST = {f.dest: f for f in FLAGS}


def flag(dest: str) -> Flag:
    return _BY_DEST[dest]


def add_flags(parser: argparse.ArgumentParser, flags: Iterable[Flag]) -> None:
    for each in flags:
        each.add_to(parser)


def _converted(each: Flag, value: Any) -> Any:
    return each.convert(value) if each.convert is not None else value


def option_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The RunOptions fields that `values` (by dest: argparse's namespace, the
    window's options) set."""
    return {f.option: _converted(f, values[f.dest]) for f in FLAGS if f.option and f.dest in values}


def run_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The netjobs_core.run.Run arguments that `values` set."""
    return {
        f.run_arg: _converted(f, values[f.dest]) for f in FLAGS if f.run_arg and f.dest in values
    }


def make_run_folder(parent: str | None) -> RunFolder:
    """The run's new folder in `parent` (--results; None or "": the data directory's),
    or UsageError saying where and why not."""
    try:
        return RunFolder.create(parent or None)
    except OSError as exc:
        where = exc.filename or parent or "the NetJobs data directory"
        raise UsageError(
            f"cannot make the run's folder in {where}: {exc.strerror or exc}"
        ) from None
