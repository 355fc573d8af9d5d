"""The one address type: parsing as configs and users write targets, and showing them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netjobs_core.wire.address import DEFAULT_PORT, Address, AddressError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", Address("host", DEFAULT_PORT)),
        ("host:17000", Address("host", 17000)),
        ("storage-01.lab", Address("storage-01.lab", DEFAULT_PORT)),
        ("[::1]", Address("::1", DEFAULT_PORT)),
        ("[fd00::5]:9", Address("fd00::5", 9)),
        ("10.0.0.5", Address("10.0.0.5", DEFAULT_PORT)),
        ("  10.0.0.5:16200 ", Address("10.0.0.5", 16200)),
    ],
)
def test_parse(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected


def test_parse_uses_the_given_default_port() -> None:
    assert Address.parse("host", default_port=17001) == Address("host", 17001)
    assert Address.parse("[::1]", default_port=17001) == Address("::1", 17001)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "missing target"),
        ("::1", "IPv6 address must be in brackets"),
        ("host:0", "bad port '0'"),
        ("host:x", "bad port 'x'"),
        ("host:99999", "bad port"),
        ("[::1", "missing ']'"),
        ("[zz::1]", "bad IPv6 address"),
        ("[::1]x", "unexpected 'x' after ']'"),
        ("a b", "bad host 'a b'"),
        ("300.1.1.1", "bad IPv4 address"),
        (":5", "missing host"),
    ],
)
def test_parse_rejects_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(AddressError, match=words.replace("[", r"\[").replace("]", r"\]")):
        Address.parse(text)


def test_str_always_has_the_port_and_brackets_ipv6() -> None:
    assert str(Address("fd00::5")) == "[fd00::5]:16192"
    assert str(Address("10.0.0.5", 17000)) == "10.0.0.5:17000"
    assert str(Address("alpha")) == "alpha:16192"


def test_short_drops_only_the_default_port() -> None:
    assert Address("fd00::5").short == "[fd00::5]"
    assert Address("fd00::5", 9).short == "[fd00::5]:9"
    assert Address("alpha").short == "alpha"
    assert Address("alpha", 9).short == "alpha:9"


def test_from_sockaddr() -> None:
    assert Address.from_sockaddr(("::1", 5, 0, 0)) == Address("::1", 5)
    assert Address.from_sockaddr(("127.0.0.1", 80)) == Address("127.0.0.1", 80)
    assert Address.from_sockaddr("/run/sock") is None


hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(hosts, st.integers(1, 65535))
def test_str_and_short_parse_back(host: str, port: int) -> None:
    address = Address(host, port)
    assert Address.parse(str(address)) == address
    assert Address.parse(address.short) == address


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("ssh://node01", Address("node01", 0, "ssh"), "ssh://node01"),
        ("ssh://bench@node01", Address("node01", 0, "ssh", "bench"), "ssh://bench@node01"),
        ("SSH://bench@10.0.0.5:2222", Address("10.0.0.5", 2222, "ssh", "bench"), None),
        ("ssh://[fd00::5]", Address("fd00::5", 0, "ssh"), "ssh://[fd00::5]"),
        ("ssh://u@[fd00::5]:22", Address("fd00::5", 22, "ssh", "u"), "ssh://u@[fd00::5]:22"),
    ],
)
def test_ssh_targets_parse_and_show_as_written(
    text: str, expected: Address, shown: str | None
) -> None:
    address = Address.parse(text)
    assert address == expected and address.over_ssh
    assert str(address) == address.short == (shown or "ssh://bench@10.0.0.5:2222")
    assert Address.parse(str(address)) == address


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ssh://", "missing target"),
        ("ssh://bad user@host", "bad user name"),
        ("ssh://ssh://host", "'ssh://' twice"),
        ("ssh://host:0", "bad port"),
        ("ssh://::1", "IPv6 address must be in brackets"),
        ("ssh://@host", "bad host '@host'"),
        ("ssh://a@b@c", "bad host 'b@c'"),
    ],
)
def test_bad_ssh_targets_say_why(text: str, words: str) -> None:
    with pytest.raises(AddressError, match=words):
        Address.parse(text)


def test_as_ssh_keeps_a_written_port_as_sshs() -> None:
    assert Address.parse("node").as_ssh() == Address("node", 0, "ssh")
    assert Address.parse("node:2222").as_ssh() == Address("node", 2222, "ssh")
    assert Address.parse("ssh://u@node").as_ssh() == Address("node", 0, "ssh", "u")


def test_split_ssh_prefix_leaves_the_host_part_for_node_sets() -> None:
    from netjobs_core.wire.address import split_ssh_prefix

    assert split_ssh_prefix("ssh://bench@node[01-32]") == ("ssh://bench@", "node[01-32]")
    assert split_ssh_prefix("ssh://node[1-4]:2222") == ("ssh://", "node[1-4]:2222")
    assert split_ssh_prefix("node[1-4]") == ("", "node[1-4]")
    # a user name holds no '@': the first one ends it; one right after ssh:// is a group
    assert split_ssh_prefix("ssh://bench@@storage") == ("ssh://bench@", "@storage")
    assert split_ssh_prefix("ssh://@storage:2222") == ("ssh://", "@storage:2222")
    assert split_ssh_prefix("SSH://[fd00::5]") == ("ssh://", "[fd00::5]")
