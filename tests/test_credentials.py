"""Host credentials, pure: derivation properties, agent token files, `netjobs token`'s
core (netjobs_core/credentials.py). The handshake is in test_protocol.py; real agents
in test_host_agents.py."""

from __future__ import annotations

import hmac
import os
import secrets
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netjobs_core import credentials
from netjobs_core.nodesets import parse_groups
from netjobs_core.wire import sealing, tokens

HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:"
host_names = st.text(HOST_CHARS, min_size=1, max_size=253)


@settings(max_examples=500)
@given(key=st.binary(min_size=32, max_size=32), a=host_names, b=host_names)
def test_credentials_of_different_names_never_collide(key, a, b):
    same = sealing.host_key(a) == sealing.host_key(b)
    assert (sealing.host_credential(key, a) == sealing.host_credential(key, b)) is same


@settings(max_examples=500)
@given(key=st.binary(min_size=32, max_size=32), other=st.binary(min_size=32), host=host_names)
def test_a_credential_is_the_hmac_of_its_name_and_depends_on_the_key(key, other, host):
    derived = sealing.host_credential(key, host)
    info = sealing.HOST_INFO + host.lower().encode() + b"\x01"
    assert derived == hmac.digest(key, info, "sha256")  # HKDF-Expand, one block
    assert len(derived) == sealing.CREDENTIAL_BYTES
    if other != key:
        assert sealing.host_credential(other, host) != derived


# scrypt takes ~0.1 s a token: few examples, no deadline.
@settings(max_examples=8, deadline=None)
@given(secret=st.text(min_size=16, max_size=64), host=host_names)
def test_an_agent_file_reveals_neither_the_token_nor_its_key(secret, host):
    token = secret.encode()
    key = sealing.token_key(token)
    derived = sealing.host_credential(key, host)
    text = tokens.credential_file_text(host, derived).encode()
    for hidden in (token, key):
        for spelling in (hidden, hidden.hex().encode()):
            assert spelling not in text and spelling not in derived
    # The credential is not a shortcut to the token: one fast HMAC of the token itself
    # (no scrypt) does not give it.
    assert derived != sealing.host_credential(token.ljust(32, b"\0")[:32], host)


def test_an_agent_file_reads_back(tmp_path):
    derived = secrets.token_bytes(32)
    path = tmp_path / "node07.token"
    path.write_text(tokens.credential_file_text("node07", derived))
    path.chmod(0o600)
    token = tokens.load_token(path)
    assert (token.secret, token.host, token.kind) == (derived, "node07", sealing.Credential.HOST)
    assert tokens.load_token(path).warning is None
    tokens.refuse_weak(token)  # random by construction


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("netjobs agent credential 1\nhost node07\n", ":"),
        ("netjobs agent credential 1\nhost node07\ncredential abc\n", ":3:"),
        ("netjobs agent credential 1\nhost no de\ncredential " + "ab" * 32, ":2:"),
        ("netjobs agent credential 1\nname node07\ncredential " + "ab" * 32, ":2:"),
        ("netjobs agent credential 12\nhost node07\ncredential " + "ab" * 32, ":1:"),
    ],
)
def test_a_bad_agent_file_says_where(tmp_path, text, where):
    path = tmp_path / "bad.token"
    path.write_text(text)
    with pytest.raises(tokens.TokenError, match=f"{path}{where}"):
        tokens.load_token(path)


def test_target_hosts_take_node_sets_groups_ports_and_ssh():
    groups = parse_groups("web: web[1-2]\n")
    hosts = credentials.target_hosts(
        [
            "node[01-03]:17000",
            "10.0.0.[5-6]",
            "@web",
            "ssh://bob@db1:22",
            "[fd00::5]:16200",
            "node02",
        ],
        groups,
    )
    assert hosts == [
        "node01",
        "node02",
        "node03",
        "10.0.0.5",
        "10.0.0.6",
        "web1",
        "web2",
        "db1",
        "fd00::5",
    ]


@pytest.mark.parametrize("target", ["node[3-1]", "bad host", "@nogroup", "a:99999"])
def test_a_bad_target_is_named(target):
    with pytest.raises(credentials.CredentialError, match="target"):
        credentials.target_hosts([target])


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_issue_writes_private_files_each_its_own(tmp_path):
    controller = tmp_path / "controller"
    found = credentials.controller_token(controller)
    assert found.created and stat.S_IMODE(controller.stat().st_mode) == 0o600
    out = tmp_path / "agents" / "lab"
    written = credentials.issue(found.token, ["node01", "node02"], out)
    assert [p.name for p in written] == ["node01.token", "node02.token"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    read = [tokens.load_token(p) for p in written]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    assert [t.host for t in read] == ["node01", "node02"]
    assert read[0].secret != read[1].secret
    assert credentials.issued_hosts(out) == ["node01", "node02"]
    assert not credentials.controller_token(controller).created  # read, not replaced


def test_an_agent_file_is_no_controller_token(tmp_path):
    found = credentials.controller_token(tmp_path / "controller")
    [agent_file] = credentials.issue(found.token, ["node01"], tmp_path)
    with pytest.raises(credentials.CredentialError, match="credential of the agent on node01"):
        credentials.controller_token(agent_file)
    with pytest.raises(credentials.CredentialError, match="not the controller's token"):
        credentials.rotate(agent_file)


def test_rotate_replaces_the_token(tmp_path):
    path = tmp_path / "controller"
    old = credentials.controller_token(path).token
    assert credentials.rotate(path) == path
    new = credentials.controller_token(path).token
    assert new.secret != old.secret and tokens.weakness(new.secret) is None
