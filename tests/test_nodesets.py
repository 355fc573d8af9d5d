"""Node-set targets and groups through the config parser (ClusterShell does the expanding)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netjobs_core import nodesets
from netjobs_core.cli import main
from netjobs_core.config import ConfigError, parse_config
from netjobs_core.nodesets import MAX_HOSTS, GroupsError, NodeSetError, parse_groups
from netjobs_core.wire.address import Address


def hosts_of(target: str, groups: nodesets.Groups = nodesets.NO_GROUPS) -> list[str]:
    plan = parse_config(f't:\n{target}: "x"\nend\n', "t.cfg", groups=groups)
    return [c.target for c in plan.tests[0].commands]


def config_error(text: str, groups: nodesets.Groups = nodesets.NO_GROUPS) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.cfg", groups=groups)
    return info.value


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("10.0.0.[5-7]", ["10.0.0.5", "10.0.0.6", "10.0.0.7"]),
        ("web[1-3,7]", ["web1", "web2", "web3", "web7"]),
        ("node[1-2]:16200", ["node1:16200", "node2:16200"]),
        ("a,b", ["a", "b"]),
        ("n[1-4]!n3", ["n1", "n2", "n4"]),
        ("node[1-2]-ib", ["node1-ib", "node2-ib"]),
        # IPv6 literals are the 2.x form, never ranges
        ("[fd00::5]:16193", ["[fd00::5]:16193"]),
        ("[fd00::5]", ["[fd00::5]"]),
        ("[::1]:16192", ["[::1]"]),
        # a single host stays what it was
        ("localhost", ["localhost"]),
        ("10.0.0.5:16200", ["10.0.0.5:16200"]),
    ],
)
def test_targets_expand(target, expected):
    assert hosts_of(target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [("x[999999998-1000000000]", ["x999999998", "x999999999", "x1000000000"])],
)
def test_large_numbers_are_fine_when_the_range_is_small(target, expected):
    assert hosts_of(target) == expected


README_SSH_FLEET = 't:\nssh://bench@node[01-32]: "fio job.fio"\nend\n'


def test_the_readmes_ssh_node_set_names_32_hosts_over_ssh():
    """Issue 18, point 15: the README's own `ssh://bench@node[01-32]` was refused unless
    a port was given (the node set was split at the colon of `ssh:`)."""
    plan = parse_config(README_SSH_FLEET, "t.cfg")
    commands = plan.tests[0].commands
    assert [c.address for c in commands] == [
        Address(f"node{i:02d}", 0, "ssh", "bench") for i in range(1, 33)
    ]
    assert {c.node_set for c in commands} == {"ssh://bench@node[01-32]"}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("ssh://bench@node[01-02]", ["ssh://bench@node01", "ssh://bench@node02"]),
        ("ssh://node[1-2]", ["ssh://node1", "ssh://node2"]),
        ("ssh://bench@node[1-2]:2222", ["ssh://bench@node1:2222", "ssh://bench@node2:2222"]),
        ("SSH://u@n[1-3]!n2", ["ssh://u@n1", "ssh://u@n3"]),
        ("ssh://10.0.0.[5-6]", ["ssh://10.0.0.5", "ssh://10.0.0.6"]),
        ("ssh://bench@a,b", ["ssh://bench@a", "ssh://bench@b"]),
        # single hosts and IPv6 literals stay what they were
        ("ssh://bench@node01", ["ssh://bench@node01"]),
        ("ssh://[fd00::5]", ["ssh://[fd00::5]"]),
        ("ssh://u@[fd00::5]:22", ["ssh://u@[fd00::5]:22"]),
    ],
)
def test_ssh_node_sets_expand_with_their_prefix(target, expected):
    assert hosts_of(target) == expected
    plan = parse_config(f't:\n{target}: "x"\nend\n', "t.cfg")
    assert all(c.address.over_ssh for c in plan.tests[0].commands)


def test_ssh_groups_expand_with_their_prefix():
    groups = parse_groups("web: web[1-2]\n", "g.conf")
    assert hosts_of("ssh://bench@@web", groups) == ["ssh://bench@web1", "ssh://bench@web2"]
    assert hosts_of("ssh://@web:2222", groups) == ["ssh://web1:2222", "ssh://web2:2222"]


def test_a_range_lines_options_apply_to_every_host():
    plan = parse_config(
        't:\n-collect: /tmp/all\nnode[1-3]: "run"\n-timeout: 30s\n-collect: /tmp/mine\n'
        'other: "x"\nend\n',
        "t.cfg",
    )
    *range_commands, other = plan.tests[0].commands
    assert [c.address for c in range_commands] == [Address(f"node{i}") for i in (1, 2, 3)]
    for command in range_commands:
        assert (command.timeout, command.line, command.node_set) == (30.0, 3, "node[1-3]")
        assert command.collect == ("/tmp/all", "/tmp/mine")
        assert command.command == "run"
    assert (other.timeout, other.collect, other.node_set) == (None, ("/tmp/all",), "")
    assert plan.tests[0].required_hosts == 4


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('node[]: "x"', ("bad node set", "empty range")),
        ('node[1-3: "x"', ("bad node set", "missing bracket")),
        ('node[3-1]: "x"', ("bad node set",)),
        ('node[a-b]: "x"', ("bad node set",)),
        ('a,,b: "x"', ("bad node set",)),
        ('@: "x"', ("'@' without a group name",)),
        ('@web: "x"', ("unknown group '@web'", "--groups")),
        (f'n[1-{MAX_HOSTS + 1}]: "x"', (f"more than {MAX_HOSTS} hosts",)),
        ('x[1-9999999999999]: "x"', (f"more than {MAX_HOSTS} hosts",)),
        ('x[1-200]y[1-200]: "x"', ("40000 hosts", f"at most {MAX_HOSTS}")),
        ('10.0.0.[250-256]: "x"', ("host '10.0.0.256' of '10.0.0.[250-256]'", "bad IPv4")),
        ('n[1-2]:99999: "x"', ("bad port",)),
        ('n[1-2]:: "x"', ("missing port",)),
        ('n[1-2],h@st: "x"', ("host 'h@st'", "bad host")),
        ('a,[fd00::5]: "x"', ("an IPv6 address cannot be part of a node set",)),
        ('x[1-5/0]: "x"', ("bad node set",)),
        ('ssh://bad user@n[1-2]: "x"', ("host 'ssh://bad user@n1'", "bad user name")),
        ('ssh://bench@n[1-2]:0: "x"', ("bad port '0'",)),
        ('ssh://@web: "x"', ("unknown group '@web'",)),
        ('ssh://bench@n[1-2],ssh://x: "x"', ("'ssh://' inside the node set", "once")),
        ('n[1-2],ssh://bench@x: "x"', ("'ssh://' inside the node set",)),
        ('ssh://bench@n[1-2]:: "x"', ("missing port",)),
    ],
)
def test_bad_node_sets_say_file_and_line(line, words):
    err = config_error(f"t:\n# comment\n{line}\nend\n")
    assert (err.path, err.line) == ("t.cfg", 3)
    for word in words:
        assert word in err.message, err.message
    assert str(err).startswith("t.cfg:3: ")


def test_groups_expand_and_nest():
    groups = parse_groups("# racks\nweb: web[1-3]\n\ndb: db1,db2\nall: @web,@db\n", "g.conf")
    assert hosts_of("@web", groups) == ["web1", "web2", "web3"]
    assert hosts_of("@all!web2", groups) == ["db1", "db2", "web1", "web3"]
    assert hosts_of("@db:16200", groups) == ["db1:16200", "db2:16200"]
    err = config_error('t:\n@nope: "x"\nend\n', groups)
    assert str(err) == "t.cfg:2: unknown group '@nope' (not in g.conf)"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("web web[1-3]\n", 1, ("expected 'name: nodeset'",)),
        ("web:\n", 1, ("has no hosts",)),
        ("a: x\n\na: y\n", 3, ("given twice", "line 1")),
        ("a: x\nb: n[]\n", 2, ("group 'b'", "bad node set")),
        ("a: @b\nb: x\nc: @zz\n", 3, ("unknown group '@zz'",)),
        ("a: @b\nb: @a\n", 1, ("loop",)),
        (f"big: n[1-{MAX_HOSTS * 2}]\n", 1, (f"more than {MAX_HOSTS}",)),
    ],
)
def test_bad_groups_files_say_file_and_line(text, line, words):
    with pytest.raises(GroupsError) as info:
        parse_groups(text, "g.conf")
    assert (info.value.path, info.value.line) == ("g.conf", line)
    for word in words:
        assert word in info.value.message, info.value.message


# -- properties --------------------------------------------------------------------

prefixes = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z]", fullmatch=True)


@given(
    prefix=prefixes,
    spans=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 40)), min_size=1, max_size=4),
    width=st.integers(1, 4),
    port=st.none() | st.integers(1, 65535),
)
def test_a_range_expands_to_its_numbers_and_folds_back(prefix, spans, width, port):
    numbers = sorted({n for low, length in spans for n in range(low, low + length + 1)})
    parts = ",".join(f"{low:0{width}d}-{low + length:0{width}d}" for low, length in spans)
    suffix = "" if port is None else f":{port}"
    target = f"{prefix}[{parts}]{suffix}"
    expected = [f"{prefix}{n:0{width}d}" for n in numbers]
    got = hosts_of(target)
    assert sorted(got) == sorted(
        f"{name}{'' if port in (None, 16192) else suffix}" for name in expected
    )
    assert len(got) == len(set(got))
    # fold gives a node set that expands to the same hosts
    assert sorted(nodesets.expand(nodesets.fold(expected))) == sorted(expected)


@given(st.ip_addresses(v=6), st.integers(1, 65535))
def test_ipv6_literals_are_never_ranges(address, port):
    assert not nodesets.is_node_set(f"[{address}]:{port}")
    plan = parse_config(f't:\n[{address}]:{port}: "x"\nend\n', "t.cfg")
    assert [c.address for c in plan.tests[0].commands] == [Address(str(address), port)]


@given(st.text(alphabet="ab09[]-,:@!&^/. #", max_size=24) | st.text(max_size=24))
def test_any_target_text_is_a_config_error_or_hosts(target):
    try:
        hosts_of(target.replace('"', "").replace("\n", " ").replace("\r", " "))
    except ConfigError as err:
        assert err.line in (1, 2, 3)
    except NodeSetError:  # pragma: no cover - must never escape the parser
        raise AssertionError("a NodeSetError escaped the parser") from None


# -- the command line ----------------------------------------------------------------


def test_simulate_shows_the_folded_set_and_the_count(tmp_path, capsys):
    config = tmp_path / "fleet.cfg"
    config.write_text('t:\nnode[01-04,07]: "fio"\n@web: "x"\nend\n')
    groups = tmp_path / "groups"
    groups.write_text("web: web[1-3]\n")
    assert main(["-s", "--groups", str(groups), str(config)]) == 0
    out = capsys.readouterr().out
    assert "  node[01-04,07] (5 hosts): 'fio'" in out
    assert "  @web = web[1-3] (3 hosts): 'x'" in out
    assert "8 commands on 8 hosts" in out


def test_simulate_shows_an_ssh_node_set_folded(tmp_path, capsys):
    config = tmp_path / "fleet.cfg"
    config.write_text(README_SSH_FLEET.replace("end", 'ssh://root@n[1-2]:2222: "x"\nend'))
    assert main(["-s", str(config)]) == 0
    out = capsys.readouterr().out
    assert "  ssh://bench@node[01-32] (32 hosts): 'fio job.fio'" in out
    assert "  ssh://root@n[1-2]:2222 (2 hosts): 'x'" in out


def test_a_bad_groups_file_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "fleet.cfg"
    config.write_text('t:\n@web: "x"\nend\n')
    groups = tmp_path / "groups"
    groups.write_text("web: web[\n")
    assert main(["-s", "--groups", str(groups), str(config)]) == 2
    assert f"netjobs: {groups}:1: group 'web': bad node set" in capsys.readouterr().err
    assert main(["-s", str(config)]) == 2
    assert "fleet.cfg:2: unknown group '@web': no groups file given" in capsys.readouterr().err


def test_node_sets_of_a_whole_config_are_bounded():
    lines = "".join(f'grp{chr(97 + i)}x[1-9000]: "x"\n' for i in range(12))
    err = config_error(f"t:\n{lines}end\n")
    assert err.line == 13  # the 12th line passes 100 000
    assert "more than 100000 commands" in err.message


def test_a_folded_set_of_hosts_and_ports_reads_back_in_a_config():
    names = [f"127.0.2.{i}:{port}" for i in range(1, 21) for port in range(22001, 22006)]
    folded = nodesets.fold(names)
    assert folded == "127.0.2.[1-20]:[22001-22005]"
    plan = parse_config(f't:\n{folded}: "true"\nend\n', "f.cfg")
    assert sorted(str(c.address) for c in plan.tests[0].commands) == sorted(names)
