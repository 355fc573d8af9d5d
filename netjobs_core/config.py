"""The NetJobs test-plan file: parsing and validation. Standard library only.

The format is the one of NetJobs 2.3, with its parser bugs fixed::

    # a comment line
    label:
    -generaltimeout: 5m
    -minhosts: all
    storage-01: "./bench.sh --size 4k"
    -timeout: 30s
    10.0.0.5:16200: "sh -c \\"echo hi\\""   # a comment may follow the command
    [fd00::5]: "date +%s.%N"
    end

Additions of NetJobs 3 (the 2.x format stays valid unchanged):

    fleet:
    # before the targets: for every command of the test
    -collect: /tmp/fio-$NETJOBS_INDEX.json
    node[01-32]: "fio job.fio --output=/tmp/fio-$NETJOBS_INDEX.json"
    # after a target line: for every host of its node set
    -timeout: 10m
    -collect: /var/log/bench-*.log
    # a number from each command's stdout: the last match of the one group
    -metric: rate = ([0-9.]+ ?[KMG]?i?B/s)
    # a group of the --groups file
    @storage:16200: "./bench.sh"
    end

A target may be a ClusterShell node set (`netjobs_core.nodesets`): one target
line then stands for one command on each of its hosts, with its options.

A command is everything between the first and the last double quote of its
line, as written. Other comments go on their own line. Every problem is
reported as a `ConfigError` naming the file, the line and what was expected
there. Line breaks are LF, CRLF or a lone CR; a leading UTF-8 byte order mark
is ignored.
"""

from __future__ import annotations

import decimal
import os
import re
from dataclasses import dataclass, field
from typing import ClassVar

from netjobs_core import nodesets
from netjobs_core.errors import FileLineError
from netjobs_core.metric_spec import MetricSpec, parse_metric
from netjobs_core.nodesets import NO_GROUPS, Groups, NodeSetError
from netjobs_core.regular_file import read_regular_file
from netjobs_core.wire.address import (
    DEFAULT_PORT,
    IPV6_HINT,
    SSH_PREFIX,
    TARGET_FORMAT,
    Address,
    AddressError,
    is_unbracketed_ipv6,
    split_ssh_prefix,
)
from netjobs_core.wire.messages import MAX_COLLECT_PATTERNS, MAX_PATTERN_CHARS, MAX_TIMEOUT_S

__all__ = [
    "DEFAULT_PORT",
    "CommandSpec",
    "ConfigError",
    "Groups",
    "Plan",
    "TestSpec",
    "config_problems",
    "load_config",
    "parse_config",
    "parse_duration",
    "write_duration",
]

# Far above any real config (1.16 million tests fit in 50 MB), far below what
# would exhaust a controller's memory while parsing.
MAX_CONFIG_BYTES = 64 * 2**20
# Commands node sets may add up to in one config: a typo repeated on many lines must
# not exhaust the memory of a controller (or the GUI validating as one types).
MAX_EXPANDED = 100_000


class ConfigError(FileLineError):
    """A config file problem."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command to start on one agent."""

    address: Address
    command: str  # without its enclosing quotes, no escape processing
    timeout: float | None  # effective seconds; None = no limit
    line: int  # 1-based line of the target line
    collect: tuple[str, ...] = ()  # -collect patterns: the test's, then the target's
    node_set: str = ""  # the target line's node set, as written; "" for a single host
    metrics: tuple[MetricSpec, ...] = ()  # -metric lines: the test's, then the target's
    written: str = ""  # the target as the config wrote it, when --ssh changed `address`

    @property
    def target(self) -> str:
        """How the run names it: ``host``, ``host:port``, ``[::1]``, ``ssh://host``."""
        return self.address.short

    @property
    def as_written(self) -> str:
        """The target as the config writes it (`NETJOBS_HOST`): ``node07`` under --ssh
        too, where the run names it ``ssh://node07``."""
        return self.written or self.target


@dataclass(frozen=True, slots=True)
class TestSpec:
    """One ``label: ... end`` block."""

    __test__: ClassVar[bool] = False  # keep pytest from collecting it

    label: str
    line: int  # line of the label
    general_timeout: float | None
    minhosts: int | None  # None means "all"
    commands: tuple[CommandSpec, ...]

    @property
    def addresses(self) -> list[Address]:
        """Distinct addresses, in order of first appearance."""
        return list(dict.fromkeys(command.address for command in self.commands))

    @property
    def required_hosts(self) -> int:
        """How many hosts must not time out for the test to succeed."""
        return len(self.addresses) if self.minhosts is None else self.minhosts


@dataclass(frozen=True, slots=True)
class Plan:
    path: str
    tests: tuple[TestSpec, ...]


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhSMH]?)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_EXPECTED = (
    "expected a non-negative number with an optional unit s, m or h "
    "(e.g. 30s, 5m, 1.5h, 45) or 'none'"
)


def parse_duration(text: str) -> float | None:
    """Seconds in ``text``: ``30s``, ``5m``, ``2h``, ``1.5s``, ``45`` (seconds); ``none`` -> None.

    At most the protocol's MAX_TIMEOUT_S (a command's timeout travels as is). Raises
    ValueError saying what was expected.
    """
    value = text.strip()
    if value.lower() == "none":
        return None
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        if value.startswith("-"):
            raise ValueError(f"bad duration {value!r}: a duration cannot be negative")
        if not value:
            raise ValueError(f"missing duration: {_DURATION_EXPECTED}")
        raise ValueError(f"bad duration {value!r}: {_DURATION_EXPECTED}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not seconds <= MAX_TIMEOUT_S:  # the protocol's bound on a command's timeout
        raise ValueError(
            f"duration {value!r} is too large: the longest timeout is {_LONGEST} "
            f"(about {MAX_TIMEOUT_S // (365.25 * 86400):.0f} years); 'none' means no limit"
        )
    return seconds


def write_duration(seconds: float) -> str:
    """`seconds` as `parse_duration` reads it back exactly: `300s`, `0.5s`, `0.00001s`.

    The shortest decimal that is the same float (`repr`), written without an exponent
    (`1e-05` and `2e+09` are not durations)."""
    digits = decimal.Decimal(repr(float(seconds) + 0.0)).normalize()  # + 0.0: no "-0"
    return f"{digits:f}s"


_LONGEST = write_duration(MAX_TIMEOUT_S)


# --------------------------------------------------------------------------- parsing

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_LABEL_RE = re.compile(r"([A-Za-z0-9_.][A-Za-z0-9_.-]*)\s*:\s*")
_OPTION_NAME_RE = re.compile(r"-([A-Za-z][A-Za-z0-9_-]*)")
_DIGITS_RE = re.compile(r"[0-9]+")
# A target whose command has no quotes: host / [v6] / either with a port, then text.
_UNQUOTED_TARGET_RE = re.compile(
    r"(\[[^\]]*\]|[A-Za-z0-9._-]+)(\s*:\s*[0-9]+)?\s*:\s*(\S.*)?", re.DOTALL
)
_BAD_COMMAND_CHAR_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")

_OPTIONS = ("generaltimeout", "minhosts", "timeout", "collect", "metric")
_OPTION_EXAMPLES = {
    "generaltimeout": "5m",
    "minhosts": "all",
    "timeout": "30s",
    "collect": "/tmp/out-$NETJOBS_INDEX.json",
    "metric": "rate = ([0-9.]+ ?[KMG]?i?B/s)",
}
_OPTION_LIST = "-generaltimeout, -minhosts, -timeout, -collect or -metric"


@dataclass
class _Target:
    addresses: list[Address]
    node_set: str
    command: str
    line: int
    timeout_line: int | None = None
    timeout: float | None = None
    collect: list[str] = field(default_factory=list)
    metrics: list[MetricSpec] = field(default_factory=list)


@dataclass
class _Test:
    label: str
    line: int
    general_timeout: float | None = None
    general_timeout_line: int | None = None
    minhosts: int | None = None
    minhosts_text: str = ""
    minhosts_line: int | None = None
    collect: list[str] = field(default_factory=list)
    metrics: list[MetricSpec] = field(default_factory=list)
    targets: list[_Target] = field(default_factory=list)
    broken: bool = False  # a line of it had a problem (only when collecting them all)


class _Parser:
    def __init__(self, path: str, default_port: int, groups: Groups) -> None:
        self.path = path
        self.default_port = default_port
        self.groups = groups
        self.expanded = 0  # commands from node sets so far
        self._addresses: dict[str, Address] = {}  # the same hosts recur in every test
        self.tests: list[TestSpec] = []
        self.labels: dict[str, TestSpec] = {}  # casefolded label -> test
        self.current: _Test | None = None
        self.problems: list[ConfigError] | None = None  # a list: collect them all, else raise

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(self.path, line, message)

    def report(self, error: ConfigError) -> None:
        """A problem the parser can go on after: raised, or kept when collecting."""
        if self.problems is None:
            raise error
        self.problems.append(error)

    # ---- whole file

    def parse(self, text: str) -> Plan:
        text = text.removeprefix("\ufeff")
        # One line at a time: a list of every line would double the peak memory.
        start = 0
        number = 0
        for number, match in enumerate(_LINE_BREAK_RE.finditer(text), start=1):
            self.checked_line(number, text[start : match.start()].strip())
            start = match.end()
        self.checked_line(number + 1, text[start:].strip())
        if self.current is not None:
            self.report(self.error(self.current.line, f"test {self.current.label!r} has no 'end'"))
        if not self.tests and not self.problems:
            self.report(self.error(1, "no tests in the file"))
        return Plan(self.path, tuple(self.tests))

    def checked_line(self, number: int, line: str) -> None:
        """One line; when collecting, its problem is kept and the line skipped (a test
        with a bad line is not also blamed for what that line would have given it)."""
        try:
            self.line(number, line)
        except ConfigError as error:
            if self.problems is None:
                raise
            self.problems.append(error)
            if self.current is not None:
                self.current.broken = True

    def line(self, number: int, line: str) -> None:
        if not line or line.startswith("#"):
            return
        if line.lower() == "end":
            self.end(number)
        elif line.startswith("-"):
            self.option(number, line)
        elif '"' in line:
            self.target(number, line)
        elif (label := _LABEL_RE.fullmatch(line)) is not None:
            self.label(number, label.group(1))
        else:
            self.garbage(number, line)

    # ---- block structure

    def label(self, number: int, label: str) -> None:
        if self.current is not None:
            self.report(
                self.error(
                    number,
                    f"expected 'end' to close test {self.current.label!r} (line "
                    f"{self.current.line}) before the new test {label!r}",
                )
            )
        previous = self.labels.get(label.casefold())
        if previous is not None:
            self.report(
                self.error(
                    number,
                    f"duplicate test label {label!r} (test {previous.label!r} is on line "
                    f"{previous.line})",
                )
            )
        self.current = _Test(label, number)  # collecting: the new test's lines are checked

    def end(self, number: int) -> None:
        test = self.current
        if test is None:
            raise self.error(number, "'end' outside a test block (expected a label 'name:' first)")
        if test.broken:  # collecting: its problems are told; it is no test
            self.current = None
            return
        if not test.targets:
            self.current = None
            self.report(self.error(test.line, f"test {test.label!r} has no targets"))
            return
        commands = tuple(
            CommandSpec(
                address=address,
                command=target.command,
                timeout=target.timeout if target.timeout_line is not None else test.general_timeout,
                line=target.line,
                collect=(*test.collect, *target.collect),
                node_set=target.node_set,
                metrics=(*test.metrics, *target.metrics),
            )
            for target in test.targets
            for address in target.addresses
        )
        spec = TestSpec(test.label, test.line, test.general_timeout, test.minhosts, commands)
        if test.minhosts is not None and test.minhosts > len(spec.addresses):
            assert test.minhosts_line is not None
            hosts = len(spec.addresses)
            self.current = None
            self.report(
                self.error(
                    test.minhosts_line,
                    f"-minhosts {test.minhosts_text} exceeds the {hosts} "
                    f"host{'' if hosts == 1 else 's'} of test {test.label!r}",
                )
            )
            return
        self.tests.append(spec)
        self.labels[test.label.casefold()] = spec
        self.current = None

    def garbage(self, number: int, line: str) -> None:
        before_comment = line.partition("#")[0].strip()
        if "#" in line and (
            before_comment.lower() == "end" or _LABEL_RE.fullmatch(before_comment) is not None
        ):
            raise self.error(number, "a comment must be on its own line")
        if self.current is None:
            raise self.error(number, f"unexpected {_shorten(line)}: expected a test label 'name:'")
        if is_unbracketed_ipv6(line.split()[0].removesuffix(":")):
            raise self.error(number, IPV6_HINT)
        unquoted = _UNQUOTED_TARGET_RE.fullmatch(line)
        if unquoted is not None:
            if unquoted.group(3) is None:
                raise self.error(number, f"missing command: expected {TARGET_FORMAT}")
            raise self.error(number, "the command must be in double quotes: 'host: \"command\"'")
        raise self.error(
            number,
            f"unexpected {_shorten(line)}: expected a target {TARGET_FORMAT}, an option or 'end'",
        )

    # ---- options

    def option(self, number: int, line: str) -> None:
        match = _OPTION_NAME_RE.match(line)
        if match is None:
            raise self.error(number, f"expected an option: {_OPTION_LIST}")
        name = match.group(1).lower()
        if name not in _OPTIONS:
            raise self.error(
                number,
                f"unknown option '-{match.group(1)}': expected {_OPTION_LIST}",
            )
        test = self.current
        if test is None:
            raise self.error(
                number, f"-{name} outside a test block (expected a label 'name:' first)"
            )
        rest = line[match.end() :].lstrip()
        if not rest.startswith(":"):
            raise self.error(
                number, f"expected ':' after -{name}, e.g. '-{name}: {_OPTION_EXAMPLES[name]}'"
            )
        value = rest[1:].strip()
        if name == "timeout":
            self.timeout_option(number, test, value)
            return
        if name == "collect":
            self.collect_option(number, test, value)
            return
        if name == "metric":
            self.metric_option(number, test, value)
            return
        if test.targets:
            raise self.error(number, f"-{name} must come before the first target")
        first = test.general_timeout_line if name == "generaltimeout" else test.minhosts_line
        if first is not None:
            raise self.error(
                number, f"-{name} given twice in test {test.label!r} (first on line {first})"
            )
        if name == "generaltimeout":
            test.general_timeout = self.duration(number, name, value)
            test.general_timeout_line = number
        else:
            test.minhosts = self.minhosts(number, value)
            test.minhosts_text = value
            test.minhosts_line = number

    def timeout_option(self, number: int, test: _Test, value: str) -> None:
        if not test.targets:
            raise self.error(number, "-timeout must follow a target line")
        target = test.targets[-1]
        if target.timeout_line is not None:
            raise self.error(
                number,
                f"-timeout given twice for the target on line {target.line} "
                f"(first on line {target.timeout_line})",
            )
        target.timeout = self.duration(number, "timeout", value)
        target.timeout_line = number

    def collect_option(self, number: int, test: _Test, value: str) -> None:
        """A pattern for the last target's commands, or before any target, for all."""
        if not value:
            raise self.error(number, "missing pattern: expected e.g. '-collect: /tmp/out.json'")
        if "#" in value:
            raise self.error(number, "a comment must be on its own line")
        if len(value) > MAX_PATTERN_CHARS:
            raise self.error(number, f"-collect pattern longer than {MAX_PATTERN_CHARS} characters")
        bad = _BAD_COMMAND_CHAR_RE.search(value)
        if bad is not None:
            raise self.error(
                number, f"the pattern contains a control character (U+{ord(bad.group()):04X})"
            )
        patterns = test.targets[-1].collect if test.targets else test.collect
        total = len(test.collect) + (len(patterns) if test.targets else 0)
        if total >= MAX_COLLECT_PATTERNS:
            raise self.error(
                number, f"more than {MAX_COLLECT_PATTERNS} -collect patterns for one command"
            )
        patterns.append(value)

    def metric_option(self, number: int, test: _Test, value: str) -> None:
        """A metric of the last target's commands, or before any target, of all."""
        try:
            metric = parse_metric(value, number)
        except ValueError as err:
            raise self.error(number, f"-metric: {err}") from None
        metrics = test.targets[-1].metrics if test.targets else test.metrics
        for earlier in (*test.metrics, *metrics) if test.targets else metrics:
            if earlier.name == metric.name:
                raise self.error(
                    number,
                    f"metric {metric.name!r} given twice for the same commands "
                    f"(first on line {earlier.line})",
                )
        metrics.append(metric)

    def duration(self, number: int, name: str, value: str) -> float | None:
        if "#" in value:
            raise self.error(number, "a comment must be on its own line")
        try:
            return parse_duration(value)
        except ValueError as err:
            raise self.error(number, f"-{name}: {err}") from None

    def minhosts(self, number: int, value: str) -> int | None:
        if "#" in value:
            raise self.error(number, "a comment must be on its own line")
        if value.lower() == "all":
            return None
        if _DIGITS_RE.fullmatch(value) is None:
            shown = f"bad -minhosts {value!r}" if value else "missing -minhosts value"
            raise self.error(number, f"{shown}: expected 'all' or a non-negative integer")
        digits = value.lstrip("0") or "0"
        # Far beyond any host count; avoids int()'s limit on very long digit strings.
        return int(digits) if len(digits) <= 18 else 10**18

    # ---- targets

    def target(self, number: int, line: str) -> None:
        first = line.index('"')
        last = line.rindex('"')
        prefix = line[:first].rstrip()
        if self.current is None:
            shown = prefix.removesuffix(":").strip()
            what = f"target {shown!r}" if shown else "command"
            raise self.error(
                number, f"{what} outside a test block (expected a label 'name:' first)"
            )
        node_set, addresses = self.addresses(number, prefix)
        if first == last:
            raise self.error(number, "the command has no closing '\"'")
        command = line[first + 1 : last]
        after = line[last + 1 :].strip()
        if after and not after.startswith("#"):
            raise self.error(
                number,
                f"unexpected {after!r} after the closing '\"': only a '# comment' may follow",
            )
        if not command.strip():
            raise self.error(number, "empty command")
        bad = _BAD_COMMAND_CHAR_RE.search(command)
        if bad is not None:
            raise self.error(
                number, f"the command contains a control character (U+{ord(bad.group()):04X})"
            )
        self.current.targets.append(_Target(addresses, node_set, command, number))

    def addresses(self, number: int, prefix: str) -> tuple[str, list[Address]]:
        """The node set as written ("" for a single host), and its hosts."""
        if not prefix:
            raise self.error(number, f"missing target before the command: expected {TARGET_FORMAT}")
        if not prefix.endswith(":"):
            raise self.error(
                number, f"expected ':' between the target and the command: {TARGET_FORMAT}"
            )
        target = prefix[:-1].strip()
        if not target:
            raise self.error(number, f"missing target before ':': expected {TARGET_FORMAT}")
        # `ssh://bench@node[01-32]`: the node set is the host part, every host keeps
        # the prefix (the colon of `ssh:` is no port).
        ssh, hosts = split_ssh_prefix(target)
        if not nodesets.is_node_set(hosts):
            return "", [self.address(number, target)]
        if SSH_PREFIX in hosts.lower():
            raise self.error(
                number,
                f"'ssh://' inside the node set {target!r}: it goes once, before the whole "
                "set, for all its hosts (e.g. 'ssh://bench@node[01-32]')",
            )
        try:
            names = nodesets.expand(hosts, self.groups)
        except NodeSetError as err:
            raise self.error(number, str(err)) from None
        self.expanded += len(names)
        if self.expanded > MAX_EXPANDED:
            raise self.error(
                number, f"the node sets of this config name more than {MAX_EXPANDED} commands"
            )
        return target, [self.address(number, ssh + name, target) for name in names]

    def address(self, number: int, target: str, node_set: str = "") -> Address:
        address = self._addresses.get(target)
        if address is None:
            try:
                address = self._addresses[target] = Address.parse(target, self.default_port)
            except AddressError as err:
                where = f"host {target!r} of {node_set!r}: " if node_set else ""
                raise self.error(number, where + str(err)) from None
        return address


def _shorten(line: str, limit: int = 40) -> str:
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def parse_config(
    text: str,
    path: str = "<config>",
    default_port: int = DEFAULT_PORT,
    groups: Groups = NO_GROUPS,
) -> Plan:
    """Parse the text of a config file; raises ConfigError on the first problem.

    `default_port` is the agent port of targets written without one; `groups`
    the `@name` groups a target may use (nodesets.load_groups)."""
    return _Parser(path, default_port, groups).parse(text)


def config_problems(
    text: str,
    path: str = "<config>",
    default_port: int = DEFAULT_PORT,
    groups: Groups = NO_GROUPS,
) -> tuple[Plan | None, list[ConfigError]]:
    """Every problem of the text, in line order, worded as parse_config raises them
    (the same parser, going on after each), and the plan when there is none: what
    an editor lists."""
    parser = _Parser(path, default_port, groups)
    parser.problems = problems = []
    try:
        plan = parser.parse(text)
    except ConfigError as error:  # not collecting here: a bug, but still worded
        problems.append(error)
    problems.sort(key=lambda error: error.line)
    return (None if problems else plan), problems


def _too_big(size: int) -> str:
    limit = MAX_CONFIG_BYTES >> 20
    return f"the file is {size / 2**20:.1f} MiB: a config may be {limit} MiB at most"


def load_config(
    path: str | os.PathLike[str], default_port: int = DEFAULT_PORT, groups: Groups = NO_GROUPS
) -> Plan:
    """Read and parse a config file (UTF-8, optional BOM); raises ConfigError."""
    name = os.fspath(path)
    data = read_regular_file(name, MAX_CONFIG_BYTES, ConfigError, _too_big)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start].decode("utf-8")
        line = len(_LINE_BREAK_RE.findall(before)) + 1
        raise ConfigError(
            name,
            line,
            f"not UTF-8 text (byte 0x{data[err.start]:02x}): save the file as UTF-8",
        ) from None
    del data  # the text is a copy: only one of them need stay alive while parsing
    return parse_config(text, name, default_port, groups)
