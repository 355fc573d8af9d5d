"""One fold over a test's results, for the terminal report (netjobs_core.report) and the
GUI's folded outputs (netjobs_gui.columns): what ClusterShell's MsgTree is to `clush -b`.

Commands fold together when they ended alike with the same output: the same status,
exit code and output byte for byte (CommandResult.output_identity: the sizes and
sha256s of stdout and stderr), whatever their command lines.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from netjobs_core import nodesets
from netjobs_core.results import CommandResult, HostResult, TestResult

__all__ = ["Folded", "fold", "groups", "said_once"]

T = TypeVar("T")


def groups(items: Iterable[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """`items` with equal keys together, in the order each key first appears."""
    found: dict[Hashable, list[T]] = {}
    for item in items:
        found.setdefault(key(item), []).append(item)
    return list(found.values())


def _unnamed(host: HostResult, message: str) -> str:
    """`message` without its host's own name, as errors write it (`str(address)`)."""
    return message.replace(str(host.address), "\0")


def said_once(pairs: Iterable[tuple[HostResult, str]]) -> list[tuple[list[HostResult], str]]:
    """Hosts' messages (errors, why commands ended) each once, with the hosts that said
    it, first seen first. A message that names its own host (`connection refused by
    node01:16200`) is the same as another's but for that name: the two fold, and the
    message names their node set instead (`node[01-02]:16200`)."""
    said = []
    for group in groups(pairs, lambda pair: _unnamed(*pair)):
        hosts = list({id(host): host for host, _ in group}.values())  # each host once
        first, message = group[0]
        if len(hosts) > 1:
            names = nodesets.fold(str(host.address) for host in hosts)
            message = message.replace(str(first.address), names)
        said.append((hosts, message))
    return said


@dataclass(frozen=True)
class Folded:
    """Commands of a test that ended alike with the same output, each with its host."""

    pairs: tuple[tuple[HostResult, CommandResult], ...]

    @property
    def command(self) -> CommandResult:
        """The first of them: its status, exit code and output are every one's."""
        return self.pairs[0][1]

    @property
    def commands(self) -> list[CommandResult]:
        return [command for _, command in self.pairs]

    @property
    def targets(self) -> list[str]:
        return [host.target for host, _ in self.pairs]

    @property
    def command_lines(self) -> list[str]:
        """Their distinct command lines, first seen first."""
        return list(dict.fromkeys(command.command for command in self.commands))


def _key(pair: tuple[HostResult, CommandResult]) -> Hashable:
    command = pair[1]
    return command.status, command.exit_code, command.output_identity


def fold(test: TestResult) -> list[Folded]:
    """The test's commands folded, in the order each outcome first appears."""
    pairs = [(host, command) for host in test.hosts for command in host.commands]
    return [Folded(tuple(group)) for group in groups(pairs, _key)]
