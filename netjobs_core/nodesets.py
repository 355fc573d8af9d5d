"""Host ranges and groups in a config's targets: ClusterShell node sets.

A target may name many hosts at once, in ClusterShell's node-set syntax
(`node[01-32]`, `10.0.0.[5-20]`, `web[1-3,7]`, `a,b`, `node[1-9]!node5`), with
an optional `:port` for all of them, and `@name` groups read from a groups file
(`name: nodeset` lines, see `load_groups`). ClusterShell does the parsing and
the expansion; this module only decides which targets are node sets at all
(an IPv6 literal such as `[fd00::5]:16193` never is), bounds their size
before anything is expanded, and words ClusterShell's errors for `file:line:`.

Expanded names come in the node set's order (ClusterShell sorts them), each
written as a config would write that one host.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupSource

from netjobs_core.errors import FileLineError
from netjobs_core.regular_file import read_regular_file
from netjobs_core.wire.address import split_ssh_prefix

__all__ = [
    "MAX_HOSTS",
    "Groups",
    "GroupsError",
    "NodeSetError",
    "expand",
    "fold",
    "is_node_set",
    "load_groups",
    "parse_groups",
]

# Hosts one target line (or one group) may expand to: far above the fleets NetJobs
# starts at once (8-500), far below what would make a typo (`node[1-1000000]`)
# freeze the GUI's live validation.
MAX_HOSTS = 10_000
MAX_GROUPS_BYTES = 4 * 2**20

# A group starts a node set or follows one of its operators: `h@st` is a (bad) host name.
_GROUP_REF_RE = re.compile(r"(?:^|[,!&^])\s*@([A-Za-z0-9_.+-]*)")
_GROUP_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+")
_BRACKET_RE = re.compile(r"\[([^\[\]]*)\]")
_SPAN_RE = re.compile(r"([0-9]+)-([0-9]+)")
_IPV6_IN_SET_RE = re.compile(r"\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]")


class NodeSetError(ValueError):
    """A malformed, empty or too large node set, or an unknown group."""


class GroupsError(FileLineError):
    """A groups file problem."""


@dataclass(frozen=True)
class Groups:
    """Named node sets from a groups file: name -> node set text, as written."""

    path: str = ""
    sets: Mapping[str, str] = field(default_factory=dict)

    def resolver(self) -> GroupResolver:
        return GroupResolver(GroupSource("netjobs", dict(self.sets)))


NO_GROUPS = Groups()


def is_node_set(target: str) -> bool:
    """True when TARGET names hosts by range, list or group rather than one host.

    A leading '[' is an IPv6 literal (`[fd00::5]`, `[fd00::5]:16193`): the 2.x
    form, never a range."""
    text = target.strip()
    if text.startswith("["):
        return False
    return any(ch in text for ch in "[,!&^") or _GROUP_REF_RE.search(text) is not None


def _split_port(target: str) -> tuple[str, str]:
    """(node set, ':port' or ''): the port is what follows the last ':' outside brackets."""
    depth = 0
    for i in range(len(target) - 1, -1, -1):
        ch = target[i]
        if ch == "]":
            depth += 1
        elif ch == "[":
            depth -= 1
        elif ch == ":" and depth == 0:
            return target[:i].strip(), ":" + target[i + 1 :].strip()
    return target.strip(), ""


def _check_size(text: str) -> None:
    """Refuse a bracket spanning more than MAX_HOSTS values before ClusterShell
    builds it (it holds every number of a range in memory)."""
    for bracket in _BRACKET_RE.finditer(text):
        for span in _SPAN_RE.finditer(bracket.group(1)):
            low, high = span.group(1), span.group(2)
            if len(high) > 18 or int(high) - int(low) >= MAX_HOSTS:
                raise NodeSetError(
                    f"the range [{span.group()}] has more than {MAX_HOSTS} hosts "
                    f"(at most {MAX_HOSTS} per target line)"
                )


def _node_set(text: str, groups: Groups) -> NodeSet:
    for ref in _GROUP_REF_RE.finditer(text):
        name = ref.group(1)
        if not name:
            raise NodeSetError("'@' without a group name")
        if name not in groups.sets:
            if not groups.path:
                raise NodeSetError(
                    f"unknown group '@{name}': no groups file given "
                    "(--groups FILE; in the GUI: Settings)"
                )
            raise NodeSetError(f"unknown group '@{name}' (not in {groups.path})")
    _check_size(text)
    try:
        nodes = NodeSet(text, resolver=groups.resolver())
        size = len(nodes)
    except (NodeSetException, RecursionError) as exc:
        if "recursion" in str(exc):
            raise NodeSetError(f"the groups in {text!r} refer to themselves in a loop") from None
        if _IPV6_IN_SET_RE.search(text):
            raise NodeSetError(
                f"an IPv6 address cannot be part of a node set ({text!r}): "
                "give it a target line of its own, e.g. '[fd00::5]: \"command\"'"
            ) from None
        raise NodeSetError(f"bad node set {text!r}: {exc}") from None
    if size == 0:
        raise NodeSetError(f"the node set {text!r} names no host")
    if size > MAX_HOSTS:
        raise NodeSetError(
            f"the node set {text!r} has {size} hosts: at most {MAX_HOSTS} per target line"
        )
    return nodes


def expand(target: str, groups: Groups = NO_GROUPS) -> list[str]:
    """The hosts of a node-set TARGET, each as written (`node07`, `node07:16200`).

    Raises NodeSetError saying what is wrong, for a `file:line:` prefix."""
    nodes_text, port = _split_port(target)
    if "[" in port:  # a range of ports (`node[1-4]:[16200-16203]`), as `fold` writes them
        return list(_node_set(target.strip(), groups))
    if port == ":":
        raise NodeSetError(f"missing port after ':' in {target!r}")
    if not nodes_text:
        raise NodeSetError(f"empty node set in {target!r}")
    return [f"{name}{port}" for name in _node_set(nodes_text, groups)]


_PLAIN = re.compile(r"[A-Za-z0-9._:+-]+")  # one node to NodeSet, nothing it would parse
# One part of a folded set (`node[01-04,07]` of `node[01-04,07],web1`): its brackets whole.
_PART_RE = re.compile(r"(?:[^,\[]|\[[^\]]*\])+")


def _fold_plain(names: list[str]) -> list[str]:
    """The parts of `names` folded (`node[01-04,07]`, `web[1-2]`), or the names as given
    when a folding does not read back as exactly them."""
    try:
        folded = str(NodeSet.fromlist(names))
        exact = sorted(NodeSet(folded)) == sorted(names)
    except NodeSetException:
        exact = False
    return _PART_RE.findall(folded) if exact else names


def fold(names: Iterable[str]) -> str:
    """Hosts as one folded node set (`node[01-04,07]`, `127.0.0.1:[16201-16232]`), for
    display, as `clush -b` and `dshbak -c` show them; each name once.

    SSH targets fold by their host part, each part with its prefix, as a config writes
    them (`ssh://bench@node[01-32]`). A name NodeSet cannot take as one node
    (`[::1]:16200`, anything with its operators `,!&^*@[]` or spaces) is listed as
    written after the folded parts, and a folding is trusted only when it reads back as
    exactly the names given."""
    return _fold(tuple(dict.fromkeys(names)))


# A report folds the same hosts a dozen times (its lines: spread, start, states, commands),
# ~0.25 ms each for 8 hosts, on the way from a test's last result to the run's end.
@functools.lru_cache(maxsize=256)
def _fold(names: tuple[str, ...]) -> str:
    """fold() of NAMES, each once, in order: remembered."""
    plain: dict[str, list[str]] = {}  # SSH prefix ("" for none) -> its host parts
    rest = []
    for name in names:
        ssh, host = split_ssh_prefix(name)
        if _PLAIN.fullmatch(host):
            plain.setdefault(ssh, []).append(host)
        else:
            rest.append(name)
    parts = [ssh + part for ssh, hosts in plain.items() for part in _fold_plain(hosts)]
    return ",".join(parts + rest)


# --------------------------------------------------------------------------- groups file


def parse_groups(text: str, path: str = "<groups>") -> Groups:
    """A groups file: `name: nodeset` a line, `#` comments, blank lines.

    A group may use another (`all: @web,@db`). Every group is expanded here
    once, so a bad one is reported with its line even if no config uses it."""
    sets: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or _GROUP_NAME_RE.fullmatch(name) is None:
            raise GroupsError(path, number, f"expected 'name: nodeset', got {line[:60]!r}")
        if name in sets:
            raise GroupsError(
                path, number, f"group {name!r} given twice (first on line {lines[name]})"
            )
        if not value:
            raise GroupsError(path, number, f"group {name!r} has no hosts")
        sets[name] = value
        lines[name] = number
    groups = Groups(path, sets)
    for name, value in sets.items():
        try:
            _node_set(value, groups)
        except NodeSetError as exc:
            raise GroupsError(path, lines[name], f"group {name!r}: {exc}") from None
    return groups


def load_groups(path: str | os.PathLike[str]) -> Groups:
    """Read a groups file (UTF-8); raises GroupsError."""
    name = os.fspath(path)
    data = read_regular_file(
        name,
        MAX_GROUPS_BYTES,
        GroupsError,
        lambda _: f"a groups file may be {MAX_GROUPS_BYTES >> 20} MiB at most",
        "the groups file",
    )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GroupsError(name, 1, "not UTF-8 text: save the file as UTF-8") from None
    return parse_groups(text, name)
