"""The wire protocol, pure: framing, messages, handshake, state tables. No sockets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct

import pytest

from netjobs_core.wire import framing, messages, sealing
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.errors import (
    AuthenticationFailed,
    CredentialRefused,
    FrameTooLarge,
    NotNetJobsPeer,
    PeerEchoed,
    PeerError,
    ProtocolError,
    VersionMismatch,
)
from netjobs_core.wire.framing import (
    MAX_BODY,
    MAX_HEADER,
    PREFIX_SIZE,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    encode_frame,
)
from netjobs_core.wire.messages import (
    HANDSHAKE_MESSAGES,
    SENT_BY,
    Exit,
    FileEnd,
    Message,
    Output,
    Ping,
    Pong,
    Prepare,
    Role,
    Start,
    Status,
    StatusQuery,
    decode,
)
from netjobs_core.wire.states import HANDSHAKE, TRANSITIONS, Phase, State

TOKEN = b"correct-horse-battery-staple-0123456789"
OTHER = b"another-token-entirely-9876543210"


def frame(kind: str, body: bytes = b"", **fields) -> bytes:
    """Any frame, well formed or not: the framing layer's view."""
    return encode_frame(Frame(kind, fields, body))


# The typed message of each type name ("status": the agent's when it has fields).
_CLASSES = {**SENT_BY[Role.AGENT], **SENT_BY[Role.CONTROLLER], **HANDSHAKE_MESSAGES}


def make(kind: str, fields: dict[str, object] | None = None, body: bytes = b"") -> Message:
    """The message of type KIND, for the tables below that are written by type name."""
    values = dict(fields or {})
    if body:
        values["body"] = body
    return (Status if kind == "status" and values else _CLASSES[kind])(**values)


def raw_frame(header: bytes, body: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    return struct.pack(">2sBBII", b"NJ", version, 0, len(header), len(body)) + header + body


def pump(source: Connection, target: Connection) -> list[Message]:
    return target.receive_data(source.data_to_send())


def handshake(
    controller_token: bytes = TOKEN, agent_token: bytes = TOKEN
) -> tuple[Connection, Connection]:
    controller = Connection(Role.CONTROLLER, controller_token)
    agent = Connection(Role.AGENT, agent_token)
    assert pump(controller, agent) == []  # hello
    assert pump(agent, controller) == []  # hello + proof
    assert pump(controller, agent) == []  # auth
    assert pump(agent, controller) == []  # welcome
    return controller, agent


def sealed(sender: Connection, message: Message) -> bytes:
    """MESSAGE sealed by SENDER past its own checks: a peer that breaks the rules."""
    sender.queue_unchecked(message)
    return sender.data_to_send()


def decode_all(data: bytes) -> list[Message]:
    """What a peer sends during the handshake or as its last word, typed."""
    allowed = {**SENT_BY[Role.AGENT], **HANDSHAKE_MESSAGES}
    return [decode(frame, allowed) for frame in FrameDecoder().feed(data)]


def frames(data: bytes) -> list[Frame]:
    return FrameDecoder().feed(data)


# -- framing ----------------------------------------------------------------------
SAMPLES = [
    Frame("ping", {"seq": 1}),
    Frame("output", {"id": 7, "stream": "stdout"}, bytes(range(256)) * 3),
    Frame("exit", {"id": 7, "status": "ok", "exit_code": 0, "ended_at": 5, "message": "é ✓"}),
    Frame("finished"),
    Frame("output", {"id": 1, "stream": "stderr"}, b""),
]


def test_round_trip_preserves_fields_and_binary_body():
    data = b"".join(encode_frame(m) for m in SAMPLES)
    assert frames(data) == SAMPLES


def test_frame_layout():
    data = frame("ping", b"xyz", seq=3)
    magic, version, reserved, header_len, body_len = struct.unpack_from(">2sBBII", data)
    assert (magic, version, reserved) == (b"NJ", PROTOCOL_VERSION, 0)
    assert len(data) == PREFIX_SIZE + header_len + body_len and body_len == 3
    header = json.loads(data[PREFIX_SIZE : PREFIX_SIZE + header_len])
    assert header == {"type": "ping", "seq": 3}
    assert data.endswith(b"xyz")


def test_header_is_ascii_even_for_unicode_fields():
    data = frame("error", code="x", message="héllo ✓ 日本")
    header_len = struct.unpack_from(">2sBBII", data)[3]
    data[PREFIX_SIZE : PREFIX_SIZE + header_len].decode("ascii")
    assert frames(data)[0].fields["message"] == "héllo ✓ 日本"


def test_split_at_every_byte_boundary():
    data = b"".join(encode_frame(m) for m in SAMPLES[:4])
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == SAMPLES[:4], cut


def test_split_at_every_pair_of_boundaries_of_one_frame():
    data = frame("output", b"\x00\xff\r\n", id=1, stream="stdout")
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            decoder = FrameDecoder()
            got = decoder.feed(data[:first]) + decoder.feed(data[first:second])
            got += decoder.feed(data[second:])
            assert got == [Frame("output", {"id": 1, "stream": "stdout"}, b"\x00\xff\r\n")]


def test_byte_by_byte():
    data = b"".join(encode_frame(m) for m in SAMPLES)
    decoder = FrameDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == SAMPLES


def test_partial_frame_waits():
    data = frame("ping", seq=1)
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(data[-1:]) == [Frame("ping", {"seq": 1})]


def test_body_at_the_limit_is_fine_and_beyond_it_is_refused():
    body = b"\xab" * MAX_BODY
    assert frames(frame("output", body, id=1, stream="stdout"))[0].body == body
    with pytest.raises(FrameTooLarge):
        frame("output", body + b"x", id=1, stream="stdout")


def test_header_too_large_to_send():
    with pytest.raises(FrameTooLarge):
        frame("error", code="x", message="m" * MAX_HEADER)


def test_announced_oversize_is_refused_before_the_bytes_arrive():
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">2sBBII", b"NJ", PROTOCOL_VERSION, 0, MAX_HEADER + 1, 0))
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(struct.pack(">2sBBII", b"NJ", PROTOCOL_VERSION, 0, 10, MAX_BODY + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello
        b"label:\n",  # NetJobs 2.x text protocol
        b"X",
        b"N\x00",
        b"\x00" * 40,
    ],
)
def test_non_netjobs_input_is_named(data):
    with pytest.raises(NotNetJobsPeer) as info:
        FrameDecoder().feed(data)
    assert "not a NetJobs" in str(info.value)


def test_http_excerpt_is_printable():
    with pytest.raises(NotNetJobsPeer, match=r"GET / HTTP/1\.1"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")


def test_single_magic_byte_waits_for_more():
    decoder = FrameDecoder()
    assert decoder.feed(b"N") == []
    with pytest.raises(NotNetJobsPeer):
        decoder.feed(b"X")


def test_version_mismatch_names_both_versions():
    with pytest.raises(VersionMismatch) as info:
        FrameDecoder().feed(raw_frame(b'{"type":"hello"}', version=PROTOCOL_VERSION + 1))
    assert str(PROTOCOL_VERSION + 1) in str(info.value) and str(PROTOCOL_VERSION) in str(info.value)
    assert not isinstance(info.value, NotNetJobsPeer)


def test_version_mismatch_is_detected_from_the_prefix_alone():
    prefix = struct.pack(">2sBBII", b"NJ", 9, 0, 10, 0)
    with pytest.raises(VersionMismatch):
        FrameDecoder().feed(prefix)


@pytest.mark.parametrize(
    "header",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        b"{}",
        b'{"type": 5}',
        b'{"type": null}',
        b"\xff\xfe{}",
        b"[" * 100_000,  # nesting deep enough to blow the recursion limit
    ],
)
def test_malformed_headers(header):
    with pytest.raises(ProtocolError) as info:
        FrameDecoder().feed(raw_frame(header))
    assert not isinstance(info.value, NotNetJobsPeer)


# -- handshake --------------------------------------------------------------------
def test_full_handshake_both_ready():
    controller, agent = handshake()
    assert controller.state is State.READY and agent.state is State.READY
    assert controller.peer_hello.role == "agent"
    assert controller.peer_hello.version == PROTOCOL_VERSION


def test_requests_queued_behind_the_auth_reach_the_agent_with_it():
    """A status and the first ping cost no round trip: the controller queues them
    behind its auth, the agent delivers them as soon as the auth checks."""
    controller = Connection(Role.CONTROLLER, TOKEN)
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(ProtocolError, match="before authentication"):
        controller.send(Ping(seq=1))  # nothing can be sealed before the agent's hello
    pump(controller, agent)
    pump(agent, controller)
    assert controller.state is State.SENT_AUTH
    controller.send(StatusQuery())
    controller.send(Ping(seq=1))
    assert [type(m) for m in pump(controller, agent)] == [StatusQuery, Ping]  # one write
    assert agent.state is State.READY
    assert pump(agent, controller) == []  # the welcome
    assert controller.state is State.READY


def test_handshake_messages_and_the_token_never_on_the_wire():
    controller = Connection(Role.CONTROLLER, TOKEN)
    agent = Connection(Role.AGENT, TOKEN)
    wire = []
    for source, target in [(controller, agent), (agent, controller)] * 2:
        data = source.data_to_send()
        wire.append(data)
        target.receive_data(data)
    kinds = [m.TYPE for chunk in wire for m in decode_all(chunk)]
    assert kinds == ["hello", "hello", "auth", "welcome"]
    assert all(TOKEN not in chunk for chunk in wire)
    assert all(TOKEN.hex().encode() not in chunk for chunk in wire)


def test_nonces_differ_per_connection():
    a = decode_all(Connection(Role.CONTROLLER, TOKEN).data_to_send())[0]
    b = decode_all(Connection(Role.CONTROLLER, TOKEN).data_to_send())[0]
    assert a.nonce != b.nonce and len(a.nonce) == 64


def test_proofs_bind_the_key_the_label_and_the_transcript():
    key, other = sealing.token_key(TOKEN), sealing.token_key(OTHER)
    transcript = b"c-hello" + b"a-hello"
    agent_proof = sealing.proof(key, b"netjobs-agent", transcript)
    assert agent_proof != sealing.proof(key, b"netjobs-controller", transcript)
    assert agent_proof != sealing.proof(key, b"netjobs-agent", b"c-hellx" + b"a-hello")
    assert agent_proof != sealing.proof(other, b"netjobs-agent", transcript)


def test_the_token_key_is_scrypt_of_the_token_and_cached():
    import hashlib

    expected = hashlib.scrypt(
        TOKEN, salt=sealing.KEY_SALT, n=2**15, r=8, p=1, maxmem=64 * 2**20, dklen=32
    )
    assert sealing.token_key(TOKEN) == expected
    assert sealing.token_key(TOKEN) is sealing.token_key(TOKEN)  # once per process


def test_empty_token_refused():
    with pytest.raises(ValueError):
        Connection(Role.AGENT, b"")


def test_controller_detects_an_agent_with_another_token():
    controller = Connection(Role.CONTROLLER, TOKEN)
    agent = Connection(Role.AGENT, OTHER)
    pump(controller, agent)
    with pytest.raises(AuthenticationFailed, match="agent's token differs"):
        pump(agent, controller)
    assert controller.state is State.CLOSED
    assert controller.data_to_send() == b""  # the controller sends no auth, no error


# -- host credentials (issue 22) -----------------------------------------------------
def credential(host: str, token: bytes = TOKEN) -> bytes:
    return sealing.host_credential(sealing.token_key(token), host)


def host_agent(host: str, token: bytes = TOKEN) -> Connection:
    """An agent holding HOST's credential, issued from TOKEN."""
    return Connection(Role.AGENT, credential(host, token), host=host)


def test_host_credential_handshake_both_ready_and_named():
    controller = Connection(Role.CONTROLLER, TOKEN, host="node07")
    agent = host_agent("node07")
    wire = []
    for source, target in [(controller, agent), (agent, controller)] * 2:
        data = source.data_to_send()
        wire.append(data)
        assert target.receive_data(data) == []
    assert controller.state is agent.state is State.READY
    assert controller.credential is agent.credential is sealing.Credential.HOST
    assert controller.peer_hello.host == "node07"
    secrets_ = [TOKEN, sealing.token_key(TOKEN), credential("node07")]
    for secret in secrets_:  # no secret crosses the wire, in any spelling
        assert all(secret not in chunk and secret.hex().encode() not in chunk for chunk in wire)
    controller.send(Ping(seq=3))
    assert pump(controller, agent) == [Ping(seq=3)]  # sealed with the credential's keys


def test_host_names_compare_without_case():
    controller = Connection(Role.CONTROLLER, TOKEN, host="Node07")
    agent = host_agent("node07")
    for source, target in [(controller, agent), (agent, controller)] * 2:
        pump(source, target)
    assert controller.state is State.READY


def test_a_shared_agents_hello_is_as_before():
    """A 3.2 agent's hello: no `host` key, so the new controller takes it as it did."""
    agent, hello = agent_after_hello()
    assert hello.host is None and agent.credential is sealing.Credential.SHARED
    controller = Connection(Role.CONTROLLER, TOKEN, host="node07")
    agent = Connection(Role.AGENT, TOKEN)
    pump(controller, agent)
    [a_hello] = frames(agent.data_to_send())
    assert set(a_hello.fields) == {"role", "version", "nonce", "proof"}
    controller.receive_data(encode_frame(a_hello))
    assert pump(controller, agent) == [] and pump(agent, controller) == []
    assert controller.state is State.READY
    assert controller.credential is sealing.Credential.SHARED


def test_the_controller_refuses_another_hosts_credential():
    """A forwarder, a moved address: target B, and the agent behind it is A."""
    controller = Connection(Role.CONTROLLER, TOKEN, host="node08")
    agent = host_agent("node07")
    pump(controller, agent)
    with pytest.raises(CredentialRefused, match=r"^node08 answered with the credential of node07$"):
        pump(agent, controller)
    assert controller.state is State.CLOSED
    assert controller.data_to_send() == b""  # no auth: the agent learns nothing


def test_over_ssh_the_controller_takes_no_host_credential():
    controller = Connection(Role.CONTROLLER, TOKEN)
    agent = host_agent("node07")
    pump(controller, agent)
    with pytest.raises(CredentialRefused, match="answered with the credential of node07"):
        pump(agent, controller)


def test_a_credential_of_an_old_token_says_how_to_reissue():
    controller = Connection(Role.CONTROLLER, TOKEN, host="node07")
    agent = host_agent("node07", token=OTHER)  # issued before a rotation
    pump(controller, agent)
    with pytest.raises(CredentialRefused, match="`netjobs token issue node07`"):
        pump(agent, controller)
    assert controller.data_to_send() == b""


def test_a_rewritten_host_in_the_agents_hello_fails_the_proof():
    controller = Connection(Role.CONTROLLER, TOKEN, host="node08")
    agent = host_agent("node07")
    pump(controller, agent)
    [a_hello] = frames(agent.data_to_send())
    forged = Frame("hello", {**a_hello.fields, "host": "node08"})
    with pytest.raises(CredentialRefused, match="not issued by this controller's token"):
        controller.receive_data(encode_frame(forged))


def test_an_agent_refuses_a_controller_that_holds_only_another_agents_credential():
    """The holder of node07's file plays the controller to node08: every key it can
    make from what it holds fails."""
    stolen = credential("node07")
    for key in (stolen, sealing.host_credential(sealing.token_key(stolen), "node08")):
        agent = host_agent("node08")
        agent.receive_data(C_HELLO)
        [a_hello] = frames(agent.data_to_send())
        transcript = hashlib.sha256(C_HELLO + encode_frame(a_hello)).digest()
        auth = frame("auth", proof=sealing.proof(key, b"netjobs-controller", transcript))
        with pytest.raises(AuthenticationFailed, match="issued the credential of node08"):
            agent.receive_data(auth + frame("prepare", label="x", commands=[]))
        [error] = decode_all(agent.data_to_send())
        assert (error.code, agent.state) == ("auth", State.CLOSED)


@pytest.mark.parametrize("host", ["", "a b", "x" * 254, "../etc", "node\n07", 7])
def test_a_bad_host_in_the_agents_hello_is_refused(host):
    controller = Connection(Role.CONTROLLER, TOKEN, host="node07")
    hello = frame("hello", role="agent", version=PROTOCOL_VERSION, nonce="cd" * 32)
    fields = {**frames(hello)[0].fields, "proof": "00" * 32, "host": host}
    with pytest.raises(ProtocolError, match="'host'"):
        controller.receive_data(encode_frame(Frame("hello", fields)))


def test_a_host_credential_has_its_size():
    with pytest.raises(ValueError):
        Connection(Role.AGENT, b"short", host="node07")


C_HELLO = frame("hello", role="controller", version=PROTOCOL_VERSION, nonce="ab" * 32)


def agent_after_hello(token: bytes = TOKEN) -> tuple[Connection, Message]:
    """An agent that has answered C_HELLO; returns it and its hello."""
    agent = Connection(Role.AGENT, token)
    agent.receive_data(C_HELLO)
    return agent, decode_all(agent.data_to_send())[0]


def controller_proof(token: bytes, agent_hello: Message) -> str:
    """What a controller that sent C_HELLO answers AGENT_HELLO with."""
    transcript = hashlib.sha256(C_HELLO + encode_frame(agent_hello.to_frame())).digest()
    return sealing.proof(sealing.token_key(token), b"netjobs-controller", transcript)


def test_agent_refuses_a_wrong_controller_proof_and_delivers_nothing():
    agent, hello = agent_after_hello()
    data = frame("auth", proof=controller_proof(OTHER, hello)) + frame(
        "prepare", label="x", commands=[]
    )
    with pytest.raises(AuthenticationFailed):
        agent.receive_data(data)
    assert agent.state is State.CLOSED
    [error] = decode_all(agent.data_to_send())
    assert (error.TYPE, error.code) == ("error", "auth")
    with pytest.raises(ProtocolError):
        agent.receive_data(frame("ping", seq=1))  # closed for good


def test_agent_refuses_a_replayed_agent_proof():
    agent, hello = agent_after_hello()
    with pytest.raises(AuthenticationFailed):
        agent.receive_data(frame("auth", proof=hello.proof))


def test_agent_accepts_the_right_proof_and_pipelined_requests():
    agent, hello = agent_after_hello()
    # The first sealed frame from the controller: seq 0 under its direction's key.
    keys = sealing.session_keys(sealing.token_key(TOKEN), C_HELLO + encode_frame(hello.to_frame()))
    ping = encode_frame(Ping(seq=9).to_frame(), framing.FLAG_TAGGED)
    mac = keys[Role.CONTROLLER].copy()
    mac.update(bytes(8) + ping)
    got = agent.receive_data(
        frame("auth", proof=controller_proof(TOKEN, hello)) + ping + mac.digest()
    )
    assert agent.state is State.READY
    assert got == [make("ping", {"seq": 9})]
    assert [m.TYPE for m in decode_all(agent.data_to_send())] == ["welcome"]


@pytest.mark.parametrize(
    "first",
    [
        frame("ping", seq=1),
        frame("prepare", label="x", commands=[{"id": 1, "command": "touch /tmp/x"}]),
        frame("auth", proof="00" * 32),
        frame("welcome"),
    ],
)
def test_agent_accepts_nothing_before_a_hello(first):
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(ProtocolError):
        agent.receive_data(first)
    assert agent.state is State.CLOSED
    [error] = decode_all(agent.data_to_send())
    assert error.TYPE == "error"


@pytest.mark.parametrize(
    "second",
    [
        frame("ping", seq=1),
        frame("prepare", label="x", commands=[]),
        frame("start", at=None),
        frame("hello", role="controller", version=PROTOCOL_VERSION, nonce="cd" * 32),
    ],
)
def test_agent_accepts_nothing_but_auth_after_its_hello(second):
    agent, _ = agent_after_hello()
    with pytest.raises(AuthenticationFailed):
        agent.receive_data(second)
    [error] = decode_all(agent.data_to_send())
    assert error.code == "auth"


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "agent", "version": PROTOCOL_VERSION, "nonce": "ab" * 32},
        {"role": "controller", "version": PROTOCOL_VERSION, "nonce": "short"},
        {"role": "controller", "version": PROTOCOL_VERSION, "nonce": "zz" * 32},
        {"role": "controller", "version": "1", "nonce": "ab" * 32},
        {"role": "controller", "nonce": "ab" * 32},
    ],
)
def test_agent_refuses_malformed_hellos(fields):
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(ProtocolError):
        agent.receive_data(frame("hello", **fields))
    assert decode_all(agent.data_to_send())[0].code == "protocol"


def test_agent_answers_garbage_and_other_versions_with_an_error_code():
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(NotNetJobsPeer):
        agent.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert decode_all(agent.data_to_send())[0].code == "protocol"
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(VersionMismatch):
        agent.receive_data(raw_frame(b'{"type":"hello"}', version=PROTOCOL_VERSION + 1))
    assert decode_all(agent.data_to_send())[0].code == "version"


def test_echoed_greeting_is_named():
    controller = Connection(Role.CONTROLLER, TOKEN)
    hello = controller.data_to_send()
    with pytest.raises(PeerEchoed, match="NetJobs 2"):
        controller.receive_data(hello)
    assert isinstance(PeerEchoed("x"), NotNetJobsPeer)


def test_another_controller_is_not_an_echo():
    controller = Connection(Role.CONTROLLER, TOKEN)
    other = Connection(Role.CONTROLLER, TOKEN).data_to_send()
    with pytest.raises(ProtocolError, match="controller too") as info:
        controller.receive_data(other)
    assert not isinstance(info.value, PeerEchoed)


def test_controller_wants_the_agents_hello_first():
    controller = Connection(Role.CONTROLLER, TOKEN)
    with pytest.raises(ProtocolError):
        controller.receive_data(frame("welcome"))
    controller = Connection(Role.CONTROLLER, TOKEN)
    with pytest.raises(ProtocolError):
        controller.receive_data(frame("pong", seq=1, clock=2))


def test_controller_refuses_a_hello_without_proof():
    controller = Connection(Role.CONTROLLER, TOKEN)
    with pytest.raises(ProtocolError):
        controller.receive_data(frame("hello", role="agent", version=1, nonce="ab" * 32))


def test_agent_error_during_handshake_reaches_the_controller():
    controller = Connection(Role.CONTROLLER, TOKEN)
    with pytest.raises(PeerError) as info:
        controller.receive_data(frame("error", code="auth", message="nope"))
    assert (info.value.code, info.value.message) == ("auth", "nope")
    assert controller.state is State.CLOSED


def test_agent_does_not_answer_a_peer_error_with_an_error():
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(PeerError):
        agent.receive_data(frame("error", code="x", message="y"))
    assert agent.data_to_send() == b""


def test_send_before_ready_raises():
    controller = Connection(Role.CONTROLLER, TOKEN)
    with pytest.raises(ProtocolError, match="before authentication"):
        controller.send(make("ping", {"seq": 1}))
    agent, _ = agent_after_hello()
    with pytest.raises(ProtocolError, match="before authentication"):
        agent.send(make("pong", {"seq": 1, "clock": 1}))


def test_send_error_allowed_before_ready_but_not_after_close():
    agent = Connection(Role.AGENT, TOKEN)
    agent.send_error("busy", "x")
    assert decode_all(agent.data_to_send())[0].code == "busy"
    agent.close()
    agent.send_error("busy", "x")
    assert agent.data_to_send() == b""


# -- messages after authentication ----------------------------------------------------
CONTROLLER_VALID = [
    make("ping", {"seq": 0}),
    make("status"),
    make(
        "prepare",
        {
            "label": "t",
            "commands": [
                {"id": 1, "command": "fio x", "timeout": 2.5},
                {"id": 2, "command": "echo", "timeout": None},
                {"id": 3, "command": "true", "timeout": 0},
                {"id": 4, "command": "true"},
            ],
        },
    ),
    make("prepare", {"label": "", "commands": []}),
    make("start", {"at": 123456789}),
    make("start", {"at": None}),
    make("start"),
    make("kill", {"reason": "user"}),
    make("bye"),
]

AGENT_VALID = [
    make("pong", {"seq": 1, "clock": 10**15}),
    make(
        "status",
        {"busy": True, "label": "t", "hostname": "h", "version": "3", "platform": "Linux"},
    ),
    make(
        "status",
        {"busy": False, "label": None, "hostname": "h", "version": "3", "platform": "Linux"},
    ),
    make(
        "prepared",
        {
            "gated": True,
            "commands": [{"id": 1, "ok": True, "error": None}],
            "run_id": "ab12",
            "grace": 180,
        },
    ),
    make("resumed", {"run_id": "ab12"}),
    make("shutdown", {"reason": "the agent is stopping (SIGTERM)"}),
    make("started", {"released_at": {"1": 5}, "late_ns": 0}),
    make("output", {"id": 1, "stream": "stdout"}, b"\x00\xff"),
    make("output", {"id": 1, "stream": "stderr"}, b""),
    make("exit", {"id": 1, "status": "failed", "exit_code": -9, "ended_at": 9, "message": "sig"}),
    make("exit", {"id": 1, "status": "error", "exit_code": None, "message": "no"}),
    make("finished"),
    make("error", {"code": "busy", "message": "busy with test 't'"}),
]


def run_messages(ids: list[int], collecting: int | None = None) -> dict[str, Message]:
    """A valid message of each run-phase type, for a run of commands IDS
    (command COLLECTING with a collect pattern)."""
    commands: list[dict[str, object]] = [{"id": i, "command": "true"} for i in ids]
    for item in commands:
        if item["id"] == collecting:
            item["collect"] = ["*.out"]
    return {
        "prepare": make("prepare", {"label": "t", "commands": commands}),
        "prepared": make(
            "prepared",
            {
                "gated": True,
                "commands": [{"id": i, "ok": True, "error": None} for i in ids],
                "run_id": "ab12",
                "grace": 180.0,
            },
        ),
        "resume": make(
            "resume",
            {"run_id": "ab12", "offsets": [{"id": i, "stdout": 0, "stderr": 0} for i in ids]},
        ),
        "resumed": make("resumed", {"run_id": "ab12"}),
        "start": make("start", {"at": None}),
        "started": make("started", {"released_at": {str(i): 5 for i in ids}, "late_ns": 0}),
    }


# How to reach each phase: (sender, message type) from READY + IDLE.
PATHS: dict[Phase, list[tuple[Role, str]]] = {
    Phase.IDLE: [],
    Phase.PREPARING: [(Role.CONTROLLER, "prepare")],
    Phase.PREPARED: [(Role.CONTROLLER, "prepare"), (Role.AGENT, "prepared")],
    Phase.STARTING: [
        (Role.CONTROLLER, "prepare"),
        (Role.AGENT, "prepared"),
        (Role.CONTROLLER, "start"),
    ],
    Phase.RUNNING: [
        (Role.CONTROLLER, "prepare"),
        (Role.AGENT, "prepared"),
        (Role.CONTROLLER, "start"),
        (Role.AGENT, "started"),
    ],
    # killed before the release: command 1 reported, no started
    Phase.CANCELLED: [
        (Role.CONTROLLER, "prepare"),
        (Role.AGENT, "prepared"),
        (Role.AGENT, "exit"),
    ],
    Phase.RESUMING: [(Role.CONTROLLER, "resume")],
    Phase.CLOSED: [(Role.CONTROLLER, "bye")],
}


def reach(
    phase: Phase, ids: list[int] | None = None, collecting: int | None = None
) -> tuple[Connection, Connection]:
    """A controller and an agent, both in PHASE, reached by real messages."""
    ids = [1, 2] if ids is None else ids
    controller, agent = handshake()
    ends = {Role.CONTROLLER: (controller, agent), Role.AGENT: (agent, controller)}
    messages = run_messages(ids, collecting) | {"exit": exit_message(1), "bye": make("bye")}
    for sender, kind in PATHS[phase]:
        source, target = ends[sender]
        source.send(messages[kind])
        assert pump(source, target) == [messages[kind]]
    assert controller.phase is agent.phase is phase
    return controller, agent


def exit_message(command_id: int) -> Message:
    return make(
        "exit",
        {"id": command_id, "status": "killed", "exit_code": None, "message": "killed"},
    )


def example(sender: Role, kind: str, ids: list[int]) -> Message:
    """A message of KIND that fits its schema (and, where allowed, the run's ids)."""
    common = {
        "ping": make("ping", {"seq": 1}),
        "pong": make("pong", {"seq": 1, "clock": 5}),
        "kill": make("kill", {"reason": "user"}),
        "bye": make("bye"),
        "error": make("error", {"code": "busy", "message": "busy"}),
        "output": make("output", {"id": ids[-1] if ids else 1, "stream": "stdout"}, b"x"),
        "exit": exit_message(ids[-1] if ids else 1),
        "finished": make("finished"),
        "shutdown": make("shutdown", {"reason": "stopping"}),
    }
    if kind == "status":
        if sender is Role.CONTROLLER:
            return make("status")
        fields = {"busy": False, "label": None, "hostname": "h", "version": "3", "platform": "p"}
        return make("status", fields)
    return common.get(kind) or FILE_MESSAGES.get(kind) or run_messages(ids)[kind]


# Collected files of command 2 (the one with a collect pattern in the cells below).
FILE_MESSAGES = {
    "file": make("file", {"id": 2, "pattern": 0, "name": "a.out", "size": 3}),
    "file_data": make("file_data", {"id": 2}, b"\x00\xffz"),
    "file_end": make(
        "file_end", {"id": 2, "bytes": 3, "sha256": hashlib.sha256(b"\x00\xffz").hexdigest()}
    ),
    "collected": make("collected", {"id": 2, "matched": [1]}),
}


def collect_prelude(phase: Phase, kind: str) -> list[Message]:
    """What an allowed file message needs first: its command's exit, its header."""
    if kind not in FILE_MESSAGES or TRANSITIONS[Role.AGENT][phase].get(_CLASSES[kind]) is None:
        return []
    return [exit_message(2)] + ([FILE_MESSAGES["file"]] if kind.startswith("file_") else [])


def cell_ids(phase: Phase, kind: str) -> list[int]:
    """The run's commands for a cell: `finished` needs every exit in, others one open."""
    if kind == "finished":
        return [1] if phase is Phase.CANCELLED else []
    return [1, 2]


SENDABLE = {
    Role.CONTROLLER: [*SENT_BY[Role.CONTROLLER]],
    Role.AGENT: [*SENT_BY[Role.AGENT]],
}
CELLS = [(sender, phase, kind) for sender in Role for phase in Phase for kind in SENDABLE[sender]]


def test_the_table_has_a_row_for_every_phase_and_only_known_types():
    for sender in Role:
        assert set(TRANSITIONS[sender]) == set(Phase)
        for row in TRANSITIONS[sender].values():
            assert set(row) <= set(SENT_BY[sender].values())
    assert TRANSITIONS[Role.CONTROLLER][Phase.CLOSED] == TRANSITIONS[Role.AGENT][Phase.CLOSED] == {}


@pytest.mark.parametrize(("sender", "phase", "kind"), CELLS, ids=lambda v: getattr(v, "value", v))
def test_every_cell_of_the_table(sender, phase, kind):
    ids = cell_ids(phase, kind)
    controller, agent = reach(phase, ids, collecting=2 if kind in FILE_MESSAGES else None)
    source, target = (controller, agent) if sender is Role.CONTROLLER else (agent, controller)
    for needed in collect_prelude(phase, kind) if sender is Role.AGENT else []:
        source.send(needed)
        assert pump(source, target) == [needed]
    message = example(sender, kind, ids)
    after = TRANSITIONS[sender][phase].get(SENT_BY[sender][kind])
    if after is not None:
        source.send(message)
        assert pump(source, target) == [message]
        assert source.phase is target.phase is after
        closed = after is Phase.CLOSED
        assert (source.state is State.CLOSED) is closed and (target.state is State.CLOSED) is closed
        return
    with pytest.raises(ProtocolError, match=r"out of order|closed"):
        source.send(message)
    assert source.phase is phase  # a refused send changes nothing
    with pytest.raises(ProtocolError, match=r"out of order|closed"):
        target.receive_data(sealed(source, message))
    assert target.state is State.CLOSED
    if target.role is Role.AGENT and phase is not Phase.CLOSED:
        [error] = decode_all(target.data_to_send())
        assert (error.TYPE, error.code) == ("error", "protocol")
        assert "out of order" in error.message


def test_out_of_order_names_the_sender_and_the_phase():
    controller, agent = reach(Phase.PREPARED)
    output = make("output", {"id": 1, "stream": "stdout"}, b"x")
    with pytest.raises(ProtocolError) as info:
        controller.receive_data(sealed(agent, output))
    assert str(info.value) == (
        "'output' out of order: the agent may not send it while the connection is prepared"
    )


@pytest.mark.parametrize("phase", [Phase.PREPARED, Phase.STARTING, Phase.CANCELLED])
@pytest.mark.parametrize(
    "fields",
    [
        {"status": "ok", "exit_code": 0, "message": "exit 0"},
        {"status": "failed", "exit_code": 1, "message": "exit 1"},
        {"status": "killed", "exit_code": -15, "message": "killed"},
        {"status": "error", "message": "cannot start the command"},
    ],
)
def test_before_started_an_exit_can_only_report_a_kill(phase, fields):
    """Today's agent sends exits before `started` only for a run killed before its release."""
    controller, agent = reach(phase)
    message = make("exit", {"id": 2, **fields})
    with pytest.raises(ProtocolError, match="before 'started' that is not the report of a kill"):
        agent.send(message)
    with pytest.raises(ProtocolError, match="before 'started' that is not the report of a kill"):
        controller.receive_data(sealed(agent, message))


def test_the_real_agents_orders():
    """What the agent sends for a run, a killed run, an empty run; twice on one connection."""
    controller, agent = handshake()
    runs = [
        ["prepare", "prepared", "start", "started", "output", "exit", "output", "exit"],
        ["prepare", "prepared", "kill", "exit", "exit"],  # killed before the release
        ["prepare", "prepared", "start", "started", "kill", "exit", "exit"],
    ]
    for kinds in runs:
        pending = [1, 2]
        for kind in kinds:
            sender = Role.CONTROLLER if kind in SENT_BY[Role.CONTROLLER] else Role.AGENT
            if kind == "exit" and controller.phase is Phase.RUNNING:
                fields = {"id": pending.pop(0), "status": "ok", "exit_code": 0, "message": "0"}
                message = make("exit", {**fields, "ended_at": 7})
            elif kind == "exit":
                message = exit_message(pending.pop(0))
            elif kind == "output":
                message = make("output", {"id": pending[0], "stream": "stderr"}, b"x")
            else:
                message = example(sender, kind, [1, 2])
            source, target = (
                (controller, agent) if sender is Role.CONTROLLER else (agent, controller)
            )
            source.send(message)
            assert pump(source, target) == [message]
        agent.send(make("finished"))
        pump(agent, controller)
        assert controller.phase is agent.phase is Phase.IDLE
    for _ in range(2):  # an empty test, and one killed before its release
        controller.send(example(Role.CONTROLLER, "prepare", []))
        pump(controller, agent)
        agent.send(example(Role.AGENT, "prepared", []))
        pump(agent, controller)
        agent.send(make("finished"))
        pump(agent, controller)
        assert controller.phase is agent.phase is Phase.IDLE


def test_exit_and_output_only_for_open_commands():
    controller, agent = reach(Phase.RUNNING)
    agent.send(exit_message(1))
    pump(agent, controller)
    for message in (
        exit_message(1),  # twice
        make("output", {"id": 1, "stream": "stdout"}, b"late"),  # after its exit
        exit_message(3),  # never prepared
        make("output", {"id": 3, "stream": "stdout"}),
    ):
        with pytest.raises(ProtocolError, match="not prepared or has exited"):
            agent.send(message)
        fresh, fresh_agent = reach(Phase.RUNNING, [1, 2])
        fresh.receive_data(sealed(fresh_agent, exit_message(1)))
        with pytest.raises(ProtocolError, match="not prepared or has exited"):
            fresh.receive_data(sealed(fresh_agent, message))


def test_finished_waits_for_every_exit():
    controller, agent = reach(Phase.RUNNING, [1, 2, 3])
    agent.send(exit_message(2))
    pump(agent, controller)
    with pytest.raises(ProtocolError, match="before the exit of command 1, 3"):
        agent.send(make("finished"))
    with pytest.raises(ProtocolError, match="before the exit of command 1, 3"):
        controller.receive_data(sealed(agent, make("finished")))


def test_kill_crossing_finished_is_fine():
    controller, agent = reach(Phase.RUNNING, [1])
    controller.send(make("kill", {"reason": "user"}))
    agent.send(exit_message(1))
    agent.send(make("finished"))
    pump(controller, agent)  # the agent is idle when the kill arrives
    pump(agent, controller)
    assert controller.phase is agent.phase is Phase.IDLE


def test_start_crossing_the_exits_of_a_killed_run_is_fine():
    controller, agent = reach(Phase.PREPARED, [1])
    controller.send(make("start", {"at": None}))
    agent.send(exit_message(1))  # killed before the release (by another connection, say)
    assert pump(controller, agent)[0].TYPE == "start"
    assert pump(agent, controller)[0].TYPE == "exit"
    assert controller.phase is agent.phase is Phase.CANCELLED
    agent.send(make("finished"))
    pump(agent, controller)
    assert controller.phase is agent.phase is Phase.IDLE


def test_start_crossing_finished_is_refused_by_the_agent():
    controller, agent = reach(Phase.PREPARED, [])
    controller.send(make("start", {"at": None}))
    agent.send(make("finished"))
    with pytest.raises(ProtocolError, match="'start' out of order"):
        pump(controller, agent)


def test_pings_pipelined_with_a_prepare():
    controller, agent = handshake()
    controller.send(make("ping", {"seq": 1}))
    controller.send(example(Role.CONTROLLER, "prepare", [1]))
    assert [m.TYPE for m in pump(controller, agent)] == ["ping", "prepare"]
    agent.send(make("pong", {"seq": 1, "clock": 2}))  # in PREPARING on both ends
    agent.send(example(Role.AGENT, "prepared", [1]))
    assert [m.TYPE for m in pump(agent, controller)] == ["pong", "prepared"]
    assert controller.phase is agent.phase is Phase.PREPARED


def test_a_refused_prepare_leaves_the_connection_idle():
    controller, agent = reach(Phase.PREPARING)
    agent.send(make("error", {"code": "busy", "message": "busy with test 'x'"}))
    [error] = pump(agent, controller)
    assert error.code == "busy"
    assert controller.phase is agent.phase is Phase.IDLE
    assert controller.state is agent.state is State.READY
    controller.send(example(Role.CONTROLLER, "prepare", [1]))  # and may try again
    pump(controller, agent)
    assert agent.phase is Phase.PREPARING


def test_an_error_frame_elsewhere_is_the_last_word():
    controller, agent = reach(Phase.RUNNING)
    agent.send(make("error", {"code": "protocol", "message": "bad"}))
    agent.send_error("ignored", "nothing after the last word")
    [got] = pump(agent, controller)
    assert (got.TYPE, got.code) == ("error", "protocol")
    assert controller.state is State.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        controller.send(make("kill", {"reason": "x"}))


def test_frames_after_the_peers_last_word_are_refused():
    controller, agent = handshake()
    data = sealed(agent, make("error", {"code": "protocol", "message": "bad"})) + sealed(
        agent, make("pong", {"seq": 1, "clock": 1})
    )
    with pytest.raises(ProtocolError, match="after the last word"):
        controller.receive_data(data)


def test_send_error_closes_after_queueing():
    controller, agent = reach(Phase.RUNNING)
    controller.send_error("oops", "controller side")
    assert controller.state is State.CLOSED
    [got] = pump(controller, agent)
    assert got.message == "controller side"
    assert agent.state is State.CLOSED


# -- the handshake states -------------------------------------------------------------
def test_handshake_states_step_by_step():
    controller = Connection(Role.CONTROLLER, TOKEN)
    agent = Connection(Role.AGENT, TOKEN)
    assert (controller.state, agent.state) == (State.SENT_HELLO, State.START)
    pump(controller, agent)
    assert agent.state is State.SENT_HELLO
    pump(agent, controller)
    assert controller.state is State.SENT_AUTH
    pump(controller, agent)
    assert agent.state is State.READY
    pump(agent, controller)
    assert controller.state is State.READY
    assert controller.phase is agent.phase is Phase.IDLE


ALL_TYPES = sorted({*SENT_BY[Role.CONTROLLER], *SENT_BY[Role.AGENT], "hello", "auth"})
HANDSHAKE_CELLS = [
    (role, state, kind)
    for role, steps in HANDSHAKE.items()
    for state, (expected, _) in steps.items()
    for kind in ALL_TYPES
    if kind not in (expected.TYPE, "error")
]


def in_handshake_state(role: Role, state: State, host: str | None = None) -> Connection:
    """ROLE's end in STATE of a handshake with the shared token, or with HOST's credential."""
    controller = Connection(Role.CONTROLLER, TOKEN, host=host)
    agent = host_agent(host) if host else Connection(Role.AGENT, TOKEN)
    for source, target in [(controller, agent), (agent, controller)] * 2:
        conn = controller if role is Role.CONTROLLER else agent
        if conn.state is state:
            return conn
        pump(source, target)
    raise AssertionError(f"{role} never reached {state}")


@pytest.mark.parametrize("host", [None, "node07"], ids=["shared", "host-credential"])
@pytest.mark.parametrize(
    ("role", "state", "kind"), HANDSHAKE_CELLS, ids=lambda v: getattr(v, "value", v)
)
def test_each_handshake_state_takes_only_its_message(role, state, kind, host):
    conn = in_handshake_state(role, state, host)
    with pytest.raises(ProtocolError):
        conn.receive_data(frame(kind))
    assert conn.state is State.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        conn.send(make("ping", {"seq": 1}))


@pytest.mark.parametrize("host", [None, "node07"], ids=["shared", "host-credential"])
@pytest.mark.parametrize(
    ("role", "state"),
    [(role, state) for role, steps in HANDSHAKE.items() for state in steps],
    ids=lambda v: getattr(v, "value", v),
)
def test_each_handshake_state_raises_a_peer_error(role, state, host):
    conn = in_handshake_state(role, state, host)
    conn.data_to_send()  # its own handshake step
    with pytest.raises(PeerError):
        conn.receive_data(frame("error", code="auth", message="no"))
    assert conn.data_to_send() == b""


def test_roles_cannot_send_each_others_messages():
    controller, agent = handshake()
    with pytest.raises(ProtocolError):
        agent.send(make("ping", {"seq": 1}))
    with pytest.raises(ProtocolError):
        controller.send(make("pong", {"seq": 1, "clock": 1}))
    with pytest.raises(ProtocolError):
        controller.send(make("finished"))


BAD_FOR_AGENT = [
    ("ping", {}),
    ("ping", {"seq": "1"}),
    ("ping", {"seq": True}),
    ("ping", {"seq": 1.5}),
    ("ping", {"seq": None}),
    ("start", {"at": 1.5}),
    ("start", {"at": False}),
    ("start", {"at": "now"}),
    ("kill", {}),
    ("kill", {"reason": 3}),
    ("prepare", {"label": "t"}),
    ("prepare", {"label": 1, "commands": []}),
    ("prepare", {"label": "t", "commands": {"id": 1}}),
    ("prepare", {"label": "t", "commands": ["echo"]}),
    ("prepare", {"label": "t", "commands": [{"command": "x"}]}),
    ("prepare", {"label": "t", "commands": [{"id": "1", "command": "x"}]}),
    ("prepare", {"label": "t", "commands": [{"id": True, "command": "x"}]}),
    ("prepare", {"label": "t", "commands": [{"id": 1}]}),
    ("prepare", {"label": "t", "commands": [{"id": 1, "command": ["ls"]}]}),
    ("prepare", {"label": "t", "commands": [{"id": 1, "command": "x", "timeout": "5"}]}),
    ("prepare", {"label": "t", "commands": [{"id": 1, "command": "x", "timeout": True}]}),
    ("prepare", {"label": "t", "commands": [{"id": 1, "command": "x", "timeout": -1}]}),
    (
        "prepare",
        {"label": "t", "commands": [{"id": 1, "command": "a"}, {"id": 1, "command": "b"}]},
    ),
    ("pong", {"seq": 1, "clock": 1}),
    ("welcome", {}),
    ("hello", {"role": "controller", "version": 1, "nonce": "ab" * 32}),
    ("launch_missiles", {}),
]


@pytest.mark.parametrize(("kind", "fields"), BAD_FOR_AGENT)
def test_agent_rejects_schema_violations(kind, fields):
    controller, agent = handshake()
    with pytest.raises(ProtocolError):
        agent.receive_data(sealed(controller, Frame(kind, fields)))
    assert agent.state is State.CLOSED
    [error] = decode_all(agent.data_to_send())
    assert (error.TYPE, error.code) == ("error", "protocol")


def test_agent_rejects_a_nan_timeout():
    controller, agent = handshake()
    prepare = make(
        "prepare", {"label": "t", "commands": [{"id": 1, "command": "x", "timeout": float("nan")}]}
    )
    data = sealed(controller, prepare)
    assert b"NaN" in data
    with pytest.raises(ProtocolError):
        agent.receive_data(data)


def test_a_bad_message_after_good_ones_closes_the_connection():
    controller, agent = handshake()
    with pytest.raises(ProtocolError):
        agent.receive_data(
            sealed(controller, make("ping", {"seq": 1}))
            + sealed(controller, Frame("ping", {"seq": "x"}))
        )
    assert agent.state is State.CLOSED


BAD_FOR_CONTROLLER = [
    ("pong", {"seq": 1}),
    ("pong", {"seq": 1, "clock": 1.0}),
    ("status", {"busy": 1, "hostname": "h", "version": "3", "platform": "p"}),
    ("status", {"busy": True, "label": 5, "hostname": "h", "version": "3", "platform": "p"}),
    ("prepared", {"gated": "yes", "commands": []}),
    ("started", {"released_at": [], "late_ns": 0}),
    ("started", {"released_at": {}, "late_ns": 0.5}),
    ("output", {"id": 1, "stream": "stdin"}),
    ("output", {"id": 1}),
    ("output", {"id": "1", "stream": "stdout"}),
    ("exit", {"id": 1, "status": "crashed", "message": ""}),
    ("exit", {"id": 1, "status": "ok"}),
    ("exit", {"id": 1, "status": "ok", "exit_code": "0", "message": ""}),
    ("exit", {"id": 1, "status": "ok", "exit_code": True, "message": ""}),
    ("error", {"code": "busy"}),
    ("ping", {"seq": 1}),
    ("welcome", {}),
]


@pytest.mark.parametrize(("kind", "fields"), BAD_FOR_CONTROLLER)
def test_controller_rejects_schema_violations(kind, fields):
    controller, agent = handshake()
    with pytest.raises(ProtocolError):
        controller.receive_data(sealed(agent, Frame(kind, fields)))
    assert controller.state is State.CLOSED
    assert controller.data_to_send() == b""  # the controller just closes


def test_unknown_extra_fields_are_tolerated():
    controller, agent = handshake()
    got = agent.receive_data(sealed(controller, Frame("ping", {"seq": 1, "future_field": "x"})))
    assert got == [make("ping", {"seq": 1})]  # the field it does not know is left out


def test_messages_are_frozen_and_sent_with_every_field_but_the_omitted_ones():
    message = Exit(id=1, status="ok", message="")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.id = 2  # type: ignore[misc]
    assert message.to_frame() == Frame(
        "exit", {"id": 1, "status": "ok", "exit_code": None, "ended_at": None, "message": ""}
    )
    assert Pong(seq=1, clock=2).to_frame().fields == {"seq": 1, "clock": 2, "wall": None}
    assert FileEnd(id=1, bytes=0, sha256="0" * 64).to_frame().fields == {
        "id": 1,
        "bytes": 0,
        "sha256": "0" * 64,
    }


# What 3.2 agents and controllers send and read: the typed messages must not change a byte.
WIRE_3_2 = [
    (Ping(seq=3), b'{"type":"ping","seq":3}'),
    (Start(at=None), b'{"type":"start","at":null}'),
    (
        Status(busy=False, label=None, hostname="h", version="3", platform="p"),
        b'{"type":"status","busy":false,"label":null,"hostname":"h","version":"3","platform":"p"}',
    ),
    (
        Prepare(label="t", commands=[{"id": 0, "command": "x"}], grace=None, collect_max=5),
        b'{"type":"prepare","label":"t","commands":[{"id":0,"command":"x"}],"grace":null,'
        b'"heartbeat":null,"collect_max":5}',
    ),
    (
        Pong(seq=1, clock=2, wall=3, received=1),
        b'{"type":"pong","seq":1,"clock":2,"wall":3,"received":1}',
    ),
    (
        Exit(id=0, status="ok", exit_code=0, ended_at=9, message="exited with code 0"),
        b'{"type":"exit","id":0,"status":"ok","exit_code":0,"ended_at":9,'
        b'"message":"exited with code 0"}',
    ),
    (Output(id=0, stream="stdout", body=b"x"), b'{"type":"output","id":0,"stream":"stdout"}'),
]


@pytest.mark.parametrize(("message", "header"), WIRE_3_2, ids=lambda v: getattr(v, "TYPE", ""))
def test_the_wire_format_is_that_of_3_2(message, header):
    data = encode_frame(message.to_frame())
    assert data[PREFIX_SIZE : PREFIX_SIZE + len(header)] == header
    assert len(data) == PREFIX_SIZE + len(header) + len(getattr(message, "body", b""))


# -- per-command environment and collected files ---------------------------------


def _prepare_with(item: dict[str, object]) -> Message:
    return make("prepare", {"label": "t", "commands": [{"id": 1, "command": "true", **item}]})


@pytest.mark.parametrize(
    "item",
    [
        {"env": {"LD_PRELOAD": "/tmp/evil.so"}},
        {"env": {"PATH": "/tmp"}},
        {"env": {"NETJOBS_TOKEN": "x"}},
        {"env": {"NETJOBS_JOB": "x"}},
        {"env": {"NETJOBS_START_EPOCH_NS": "1"}},
        {"env": {"netjobs_index": "1"}},
        {"env": {"NETJOBS_INDEX": 1}},
        {"env": {"NETJOBS_INDEX": "x" * 1025}},
        {"env": {"NETJOBS_INDEX": "a\0b"}},
        {"env": {f"NETJOBS_V{i}": "1" for i in range(17)}},
        {"collect": [""]},
        {"collect": ["x" * 1025]},
        {"collect": ["a\0b"]},
        {"collect": [3]},
        {"collect": ["*"] * 17},
    ],
)
def test_a_prepare_cannot_set_any_environment_nor_unbounded_patterns(item):
    controller, agent = handshake()
    message = _prepare_with(item)
    with pytest.raises(ProtocolError, match="'prepare'"):
        controller.send(message)
    with pytest.raises(ProtocolError, match="'prepare'"):
        agent.receive_data(sealed(controller, message))


def test_netjobs_environment_and_patterns_pass():
    controller, agent = handshake()
    message = _prepare_with(
        {"env": {"NETJOBS_INDEX": "3", "NETJOBS_HOST": "node04"}, "collect": ["/tmp/*.json"]}
    )
    controller.send(message)
    assert pump(controller, agent) == [message]


def test_names_checked_once_are_still_refused_when_bad_after_many_good_ones():
    """The env names that passed are remembered (a bounded set): whatever it holds, a
    forbidden name or a bad value of a known name is refused at both ends."""
    for batch in range(10):
        controller, agent = handshake()
        env = {f"NETJOBS_V{batch}_{i}": "1" for i in range(16)}
        message = _prepare_with({"env": env})
        controller.send(message)
        assert pump(controller, agent) == [message]
    for env in ({"NETJOBS_TOKEN": "x"}, {"PATH": "/tmp"}, {"NETJOBS_V0_0": "a\0b"}):
        controller, agent = handshake()
        with pytest.raises(ProtocolError, match="'prepare' env"):
            controller.send(_prepare_with({"env": env}))
        with pytest.raises(ProtocolError, match="'prepare' env"):
            agent.receive_data(sealed(controller, _prepare_with({"env": env})))


def _running_with_collect() -> tuple[Connection, Connection]:
    return reach(Phase.RUNNING, [1, 2], collecting=2)


def _refused(agent: Connection, controller: Connection, message: Message, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        agent.send(message)
    with pytest.raises(ProtocolError, match=match):
        controller.receive_data(sealed(agent, message))


def test_a_file_only_after_its_commands_exit():
    controller, agent = _running_with_collect()
    _refused(agent, controller, FILE_MESSAGES["file"], "before its exit")


def test_file_data_needs_its_header():
    controller, agent = _running_with_collect()
    agent.send(exit_message(2))
    pump(agent, controller)
    _refused(agent, controller, FILE_MESSAGES["file_data"], "without its 'file' header")


def test_nothing_else_of_the_run_while_a_file_is_open():
    controller, agent = _running_with_collect()
    for message in (exit_message(2), FILE_MESSAGES["file"]):
        agent.send(message)
        pump(agent, controller)
    # pings are answered whatever the phase
    pong = make("pong", {"seq": 1, "clock": 5})
    agent.send(pong)
    assert pump(agent, controller) == [pong]
    _refused(agent, controller, exit_message(1), "while a file of command 2 is being sent")


def test_a_whole_transfer_then_finished():
    controller, agent = _running_with_collect()
    sequence = [
        exit_message(2),
        *(FILE_MESSAGES[k] for k in ("file", "file_data", "file_data", "file_end")),
        FILE_MESSAGES["collected"],
        exit_message(1),
        make("finished"),
    ]
    for message in sequence:
        agent.send(message)
        assert pump(agent, controller) == [message]
    assert agent.phase is controller.phase is Phase.IDLE


def test_finished_waits_for_the_collected_report():
    controller, agent = _running_with_collect()
    for message in (exit_message(1), exit_message(2)):
        agent.send(message)
        pump(agent, controller)
    _refused(agent, controller, make("finished"), "before the collected files of command 2")


def test_a_command_without_patterns_collects_nothing():
    controller, agent = _running_with_collect()
    agent.send(exit_message(1))
    pump(agent, controller)
    bad = make("file", {"id": 1, "pattern": 0, "name": "a", "size": 1})
    _refused(agent, controller, bad, "collects nothing")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "a\0b", "x" * 256])
def test_a_file_name_is_a_base_name(name):
    controller, agent = _running_with_collect()
    agent.send(exit_message(2))
    pump(agent, controller)
    bad = make("file", {"id": 2, "pattern": 0, "name": name, "size": 1})
    _refused(agent, controller, bad, "bad name")


def test_file_end_needs_a_sha256():
    controller, agent = _running_with_collect()
    for message in (exit_message(2), FILE_MESSAGES["file"]):
        agent.send(message)
        pump(agent, controller)
    bad = make("file_end", {"id": 2, "bytes": 3, "sha256": "nothex"})
    _refused(agent, controller, bad, "bad 'sha256'")


# -- link secrets: agents started over SSH (issue 20) --------------------------------
def test_a_link_secrets_key_is_hkdf_and_its_handshake_computes_no_scrypt(monkeypatch):
    """A random 256-bit secret has nothing to stretch: no scrypt at either end."""
    import hmac

    def no_scrypt(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("scrypt for a link secret")

    monkeypatch.setattr(hashlib, "scrypt", no_scrypt)
    secret = bytes(range(32))
    prk = hmac.digest(sealing.LINK_SALT, secret, "sha256")
    assert sealing.link_key(secret) == hmac.digest(prk, b"netjobs link key v1\x01", "sha256")
    controller = Connection(Role.CONTROLLER, secret, link=True)
    agent = Connection(Role.AGENT, secret, link=True)
    for source, target in ((controller, agent), (agent, controller)) * 2:
        assert pump(source, target) == []
    assert controller.state is agent.state is State.READY
    assert controller.credential is agent.credential is sealing.Credential.LINK


def test_on_an_ssh_link_frames_carry_no_tag_of_ours():
    """SSH authenticates and encrypts the link: no second MAC over every output byte."""
    secret = bytes(range(32))
    controller = Connection(Role.CONTROLLER, secret, link=True)
    agent = Connection(Role.AGENT, secret, link=True)
    for source, target in ((controller, agent), (agent, controller)) * 2:
        pump(source, target)
    agent.send(Pong(seq=1, clock=2, wall=3))
    data = agent.data_to_send()
    decoder = FrameDecoder()
    decoder.add(data)
    raw = decoder.next_frame()
    assert raw is not None and not raw.flags & framing.FLAG_TAGGED
    assert len(data) == len(raw.head) + len(raw.body)  # no 32-byte tag after it
    assert controller.receive_data(data) == [Pong(seq=1, clock=2, wall=3)]


def test_only_a_256_bit_secret_is_a_link_secret():
    for short in (b"correct horse battery staple", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="32 random bytes"):
            Connection(Role.CONTROLLER, short, link=True)
        with pytest.raises(ValueError, match="32 random bytes"):
            Connection(Role.AGENT, short, link=True)


def test_a_link_secret_and_the_same_bytes_as_a_token_do_not_meet():
    """The kind is part of the key: an agent holding the bytes as a (stretched) token
    and a controller holding them as a link secret do not authenticate each other."""
    secret = bytes(range(32))
    controller = Connection(Role.CONTROLLER, secret, link=True)
    agent = Connection(Role.AGENT, secret)
    pump(controller, agent)
    with pytest.raises(AuthenticationFailed):
        pump(agent, controller)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (b'"bad \\udc80"', False),
        (b'"\\uD800 alone"', False),
        (b'["nested", {"k": "\\udfff"}]', False),
        (b'"a pair \\ud83d\\ude00"', True),
        (b'"an escaped backslash \\\\udc80"', True),
    ],
)
def test_half_a_surrogate_pair_in_a_header_is_malformed(text, ok):
    header = b'{"type":"pong","x":' + text + b"}"
    raw = framing.RawFrame(
        0,
        framing.PREFIX.pack(framing.MAGIC, PROTOCOL_VERSION, 0, len(header), 0) + header,
        b"",
        b"",
    )
    if ok:
        assert raw.parse().type == "pong"
    else:
        with pytest.raises(ProtocolError, match="half a surrogate pair"):
            raw.parse()


@pytest.mark.parametrize("realtime", [True, False])
def test_a_status_says_how_the_agent_waits_for_its_releases(realtime):
    status = Status(busy=False, hostname="h", version="3", platform="p", realtime=realtime)
    frame = status.to_frame()
    assert frame.fields["realtime"] is realtime
    assert decode(frame, SENT_BY[Role.AGENT]) == status
    # An older agent leaves it out (WIRE_3_2); anything but a boolean is refused.
    with pytest.raises(ProtocolError, match="realtime"):
        decode(Frame(frame.type, {**frame.fields, "realtime": 1}, frame.body), SENT_BY[Role.AGENT])


# -- text bounds -------------------------------------------------------------------------
LONG = "x" * 100_000


@pytest.mark.parametrize(
    "message",
    [
        messages.Error(code=LONG, message=LONG),
        Status(busy=True, label=LONG, hostname=LONG, version=LONG, platform=LONG),
        messages.Prepared(
            gated=True,
            commands=[{"id": 0, "ok": False, "error": LONG}],
            run_id="r",
            grace=1,
            hostname=LONG,
            version=LONG,
            platform=LONG,
        ),
        messages.Shutdown(reason=LONG),
        messages.Started(released_at={}, late_ns=0, exec_error=LONG),
        Exit(id=0, status="error", message=LONG, spool_error=LONG),
        FileEnd(id=0, bytes=0, sha256="0" * 64, error=LONG, os_error=LONG),
        messages.Kill(reason=LONG),
    ],
    ids=lambda message: message.TYPE,
)
def test_every_text_a_peer_sends_is_cut_to_its_bound_with_a_mark(message):
    """Received (from a peer that sends them whole) and sent (our own), each text is
    within its bound and says how much was cut; nothing else of the message changes."""
    allowed = _CLASSES | {"status": Status}
    received = decode(message.to_frame(), allowed)
    sent = decode(messages.check(message, allowed), allowed)
    for got in (received, sent):
        texts = [v for v in dataclasses.asdict(got).values() if isinstance(v, str) and "x" in v]
        texts += [item["error"] for item in getattr(got, "commands", [])]
        assert texts
        for said in texts:
            assert len(said) <= messages.MAX_MESSAGE_CHARS
            assert said.endswith(f"…(+{len(LONG) - said.index('…')} characters)")
    names = ("hostname", "version", "platform", "label", "code", "spool_error", "os_error")
    for name in names:
        said = getattr(received, name, None)
        assert said is None or len(said) <= messages.MAX_NAME_CHARS
    assert messages.cut("short", 10) == "short"


def test_every_text_field_an_agent_sends_has_a_bound():
    """A str field of an agent's message is a bounded Text, or checked otherwise."""
    checked = {
        ("output", "stream"),  # in STREAMS
        ("exit", "status"),  # in ENDS
        ("file", "name"),  # at most MAX_FILE_NAME
        ("file_end", "sha256"),  # 64 hex digits
        ("started", "released_at"),  # command ids: at most 10 digits
        ("started", "exec_at"),
    }
    for cls in SENT_BY[Role.AGENT].values():
        bounded = {name for name, _ in messages._SHAPES[cls].texts}
        for item in dataclasses.fields(cls):
            if "str" in str(item.type) and item.name not in bounded:
                assert (cls.TYPE, item.name) in checked, (cls.TYPE, item.name)


def test_a_run_id_too_long_is_refused_not_cut():
    """A cut run id would name another run on the resume: refused, both ways."""
    prepared = messages.Prepared(gated=True, commands=[], run_id=LONG, grace=1)
    with pytest.raises(ProtocolError, match="'run_id' over 256 characters"):
        decode(prepared.to_frame(), SENT_BY[Role.AGENT])
    with pytest.raises(ProtocolError, match="'run_id' over 256 characters"):
        messages.check(prepared, SENT_BY[Role.AGENT])


@pytest.mark.parametrize(
    "frame_",
    [
        Frame(LONG),
        Frame("output", {"id": 0, "stream": LONG}),
        Frame("exit", {"id": 0, "status": LONG, "message": ""}),
    ],
    ids=["type", "stream", "status"],
)
def test_a_refused_peer_text_is_quoted_short(frame_):
    """The error that refuses a peer's message (the host's error in the report and
    results.json) quotes at most 50 characters of what it refused, not 100 000."""
    with pytest.raises(ProtocolError) as refused:
        decode(frame_, SENT_BY[Role.AGENT])
    assert len(str(refused.value)) < 120
