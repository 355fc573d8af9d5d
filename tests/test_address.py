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
