"""NetJobs wire protocol, sans-IO: pure framing, authentication and message checks.

Standard library only: the agent imports this module and nothing else from
netjobs_core. No sockets and no clocks here; callers feed received bytes to
`Connection.receive_data` and write out what `Connection.data_to_send` returns.

Frame layout (big-endian)::

    b"NJ"  version:u8  reserved:u8  header_len:u32  body_len:u32  header  body

`header` is a UTF-8 JSON object with a "type" key; `body` carries raw bytes
(command output), so output is binary-safe and never re-encoded. The first
four bytes never change between versions, so either side can name a version
mismatch instead of misreading a frame.

Handshake (mutual challenge-response, the token never crosses the wire)::

    controller -> agent  hello   {role: "controller", version, nonce}
    agent -> controller  hello   {role: "agent", version, nonce, proof, ...}
    controller -> agent  auth    {proof}
    agent -> controller  welcome {}

    agent proof      = HMAC-SHA256(token, "netjobs-agent"      | c_nonce | a_nonce)
    controller proof = HMAC-SHA256(token, "netjobs-controller" | a_nonce | c_nonce)

Each side checks the other's proof with a constant-time compare; until the
controller's proof is checked the agent accepts nothing but the handshake.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from netjobs_core.wire.status import ENDS

PROTOCOL_VERSION = 1
MAGIC = b"NJ"
_PREFIX = struct.Struct(">2sBBII")
PREFIX_SIZE = _PREFIX.size
MAX_HEADER = 256 * 1024
MAX_BODY = 1024 * 1024
NONCE_BYTES = 32


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot go on."""


class NotNetJobsPeer(ProtocolError):
    """The peer does not speak NetJobs at all (a web server, an echo service...)."""


class PeerEchoed(NotNetJobsPeer):
    """The peer sent back our own greeting, as an original NetJobs 2.x agent does."""


class VersionMismatch(ProtocolError):
    """The peer speaks another version of the NetJobs protocol."""


class AuthenticationFailed(ProtocolError):
    """The peer does not hold the same token."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more than the protocol allows."""


class PeerError(ProtocolError):
    """The peer reported an error and will close (busy, auth, bad request...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Role(enum.Enum):
    CONTROLLER = "controller"
    AGENT = "agent"


@dataclass(frozen=True)
class Message:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


# Field name -> accepted type(s); a trailing "?" means optional (None allowed).
_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_NUM = (int, float)
_LIST = (list,)
_DICT = (dict,)

HANDSHAKE_SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"role": _STR, "version": _INT, "nonce": _STR},
    "auth": {"proof": _STR},
    "welcome": {},
    "error": {"code": _STR, "message": _STR},
}

# Requests a controller may send once authenticated.
CONTROLLER_SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "ping": {"seq": _INT},
    "status": {},
    # commands: [{"id": int, "command": str, "timeout": float | None}]
    "prepare": {"label": _STR, "commands": _LIST},
    # at: the release instant on the agent's clock (ns), or None for "now"
    "start": {"at?": _INT},
    "kill": {"reason": _STR},
    "bye": {},
}

# What an agent sends once the controller is authenticated.
AGENT_SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "pong": {"seq": _INT, "clock": _INT},
    "status": {
        "busy": _BOOL,
        "label?": _STR,
        "hostname": _STR,
        "version": _STR,
        "platform": _STR,
    },
    # commands: [{"id": int, "ok": bool, "error": str | None}]; gated: spawned
    # and waiting for the release, so the start costs no process spawn.
    "prepared": {"gated": _BOOL, "commands": _LIST},
    # released_at: agent clock (ns) right after each command was let go;
    # late_ns: how far past the requested instant the release happened.
    "started": {"released_at": _DICT, "late_ns": _INT},
    "output": {"id": _INT, "stream": _STR},
    # status: one of wire.status.ENDS
    "exit": {
        "id": _INT,
        "status": _STR,
        "exit_code?": _INT,
        "ended_at?": _INT,
        "message": _STR,
    },
    "finished": {},
    "error": {"code": _STR, "message": _STR},
}

STREAMS = frozenset({"stdout", "stderr"})


def encode_frame(message: Message) -> bytes:
    header = json.dumps(
        {"type": message.type, **message.fields}, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")
    if len(header) > MAX_HEADER or len(message.body) > MAX_BODY:
        raise FrameTooLarge(f"frame too large to send: {message.type}")
    return _PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, len(header), len(message.body)) + (
        header + message.body
    )


def _printable(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    text = "".join(ch if 32 <= ord(ch) < 127 else "." for ch in text)
    return text.strip(".") or data[:16].hex()


class FrameDecoder:
    """Splits a byte stream into Messages; raises ProtocolError on bad input."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while True:
            message = self._next()
            if message is None:
                return messages
            messages.append(message)

    def _next(self) -> Message | None:
        buf = self._buffer
        if (len(buf) >= 2 and bytes(buf[:2]) != MAGIC) or (len(buf) == 1 and buf[:1] != MAGIC[:1]):
            raise NotNetJobsPeer(f"not a NetJobs agent or controller (it sent {_printable(buf)!r})")
        if len(buf) < PREFIX_SIZE:
            return None
        _, version, _, header_len, body_len = _PREFIX.unpack_from(buf)
        if version != PROTOCOL_VERSION:
            raise VersionMismatch(
                f"peer speaks NetJobs protocol {version}, this side speaks {PROTOCOL_VERSION}"
            )
        if header_len > MAX_HEADER or body_len > MAX_BODY:
            raise FrameTooLarge(f"frame of {header_len}+{body_len} bytes exceeds the limit")
        end = PREFIX_SIZE + header_len + body_len
        if len(buf) < end:
            return None
        raw_header = bytes(buf[PREFIX_SIZE : PREFIX_SIZE + header_len])
        body = bytes(buf[PREFIX_SIZE + header_len : end])
        del buf[:end]
        try:
            header = json.loads(raw_header)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: deeply nested JSON ("[[[[...") from a hostile peer.
            raise ProtocolError(f"malformed frame header: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("malformed frame header: no message type")
        kind = header.pop("type")
        return Message(kind, header, body)


def check_fields(message: Message, schema: dict[str, tuple[type, ...]]) -> None:
    for key, types in schema.items():
        optional = key.endswith("?")
        name = key.rstrip("?")
        value = message.fields.get(name)
        if value is None:
            if optional:
                continue
            raise ProtocolError(f"{message.type!r} message lacks {name!r}")
        # bool is an int subclass; keep the two apart.
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ProtocolError(f"{message.type!r} message has a bad {name!r}")


def validate(message: Message, schemas: dict[str, dict[str, tuple[type, ...]]]) -> Message:
    schema = schemas.get(message.type)
    if schema is None:
        raise ProtocolError(f"unexpected message {message.type!r}")
    check_fields(message, schema)
    if message.type == "exit" and message["status"] not in ENDS:
        raise ProtocolError(f"'exit' message has an unknown status {message['status']!r}")
    if message.type == "output" and message["stream"] not in STREAMS:
        raise ProtocolError(f"'output' message has an unknown stream {message['stream']!r}")
    if message.type == "prepare":
        _check_commands(message["commands"])
    return message


def _check_commands(commands: list[Any]) -> None:
    ids = set()
    for item in commands:
        if not isinstance(item, dict):
            raise ProtocolError("'prepare' commands must be objects")
        check_fields(Message("prepare", item), {"id": _INT, "command": _STR, "timeout?": _NUM})
        if item["id"] in ids:
            raise ProtocolError(f"'prepare' repeats command id {item['id']}")
        timeout = item.get("timeout")
        if timeout is not None and timeout < 0:
            raise ProtocolError("'prepare' has a negative timeout")
        if timeout is not None and timeout != timeout:  # NaN: json.loads accepts it
            raise ProtocolError("'prepare' has a timeout that is not a number")
        ids.add(item["id"])


def proof(token: bytes, label: bytes, first_nonce: str, second_nonce: str) -> str:
    mac = hmac.new(token, label, hashlib.sha256)
    mac.update(bytes.fromhex(first_nonce))
    mac.update(bytes.fromhex(second_nonce))
    return mac.hexdigest()


def _is_nonce(value: str) -> bool:
    if len(value) != 2 * NONCE_BYTES:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


class State(enum.Enum):
    START = "start"  # nothing exchanged yet
    GREETED = "greeted"  # our hello is out, waiting for the peer's next step
    READY = "ready"  # authenticated both ways
    CLOSED = "closed"


class Connection:
    """One end of a NetJobs connection: handshake state and message checks.

    `receive_data` returns the authenticated application messages, in order;
    handshake traffic is handled inside. Errors raise ProtocolError and close
    the connection; on the agent side an error frame for the peer is queued
    first, so the caller should still flush `data_to_send()`.
    """

    def __init__(self, role: Role, token: bytes, *, nonce: bytes | None = None) -> None:
        if not token:
            raise ValueError("an empty token authenticates nobody")
        self.role = role
        self._token = token
        self._nonce = (nonce or secrets.token_bytes(NONCE_BYTES)).hex()
        self._peer_nonce = ""
        self._decoder = FrameDecoder()
        self._out = bytearray()
        self.state = State.START
        self.peer_hello: dict[str, Any] = {}
        if role is Role.CONTROLLER:
            self._queue(
                Message(
                    "hello",
                    {
                        "role": Role.CONTROLLER.value,
                        "version": PROTOCOL_VERSION,
                        "nonce": self._nonce,
                    },
                )
            )
            self.state = State.GREETED

    # -- output ---------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _queue(self, message: Message) -> None:
        self._out += encode_frame(message)

    def send(self, message: Message) -> None:
        """Queue an application message; only once authenticated."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot send {message.type!r} before authentication")
        schemas = AGENT_SCHEMAS if self.role is Role.AGENT else CONTROLLER_SCHEMAS
        self._queue(validate(message, schemas))

    def send_error(self, code: str, message: str) -> None:
        """Queue an error frame for the peer; allowed in any state but closed."""
        if self.state is not State.CLOSED:
            self._queue(Message("error", {"code": code, "message": message}))

    def close(self) -> None:
        self.state = State.CLOSED

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Message]:
        if self.state is State.CLOSED:
            raise ProtocolError("connection is closed")
        try:
            frames = self._decoder.feed(data)
            delivered = []
            for frame in frames:
                message = self._handle(frame)
                if message is not None:
                    delivered.append(message)
            return delivered
        except ProtocolError as exc:
            if self.role is Role.AGENT and not isinstance(exc, PeerError):
                self.send_error(_error_code(exc), str(exc))
            self.state = State.CLOSED
            raise

    def _handle(self, frame: Message) -> Message | None:
        if self.state is State.READY:
            if frame.type == "error":
                check_fields(frame, HANDSHAKE_SCHEMAS["error"])
                return frame
            schemas = CONTROLLER_SCHEMAS if self.role is Role.AGENT else AGENT_SCHEMAS
            return validate(frame, schemas)
        if frame.type == "error":
            check_fields(frame, HANDSHAKE_SCHEMAS["error"])
            raise PeerError(frame["code"], frame["message"])
        if self.role is Role.AGENT:
            self._agent_handshake(frame)
        else:
            self._controller_handshake(frame)
        return None

    def _agent_handshake(self, frame: Message) -> None:
        if self.state is State.START:
            if frame.type != "hello":
                raise ProtocolError(f"expected a hello, got {frame.type!r}")
            check_fields(frame, HANDSHAKE_SCHEMAS["hello"])
            if frame["role"] != Role.CONTROLLER.value or not _is_nonce(frame["nonce"]):
                raise ProtocolError("malformed hello")
            self._peer_nonce = frame["nonce"]
            self._queue(
                Message(
                    "hello",
                    {
                        "role": Role.AGENT.value,
                        "version": PROTOCOL_VERSION,
                        "nonce": self._nonce,
                        "proof": proof(
                            self._token, b"netjobs-agent", self._peer_nonce, self._nonce
                        ),
                    },
                )
            )
            self.state = State.GREETED
            return
        if frame.type != "auth":
            raise AuthenticationFailed(f"expected authentication, got {frame.type!r}")
        check_fields(frame, HANDSHAKE_SCHEMAS["auth"])
        expected = proof(self._token, b"netjobs-controller", self._nonce, self._peer_nonce)
        if not hmac.compare_digest(expected.encode(), frame["proof"].encode("ascii", "replace")):
            raise AuthenticationFailed("authentication failed: the controller's token differs")
        self._queue(Message("welcome"))
        self.state = State.READY

    def _controller_handshake(self, frame: Message) -> None:
        if frame.type == "hello" and frame.get("role") == Role.CONTROLLER.value:
            if frame.get("nonce") == self._nonce:
                raise PeerEchoed(
                    "it echoed the greeting back: this looks like an original NetJobs 2.x "
                    "agent (NetJobsAgent.py); run the NetJobs 3 agent there"
                )
            raise ProtocolError("peer claims to be a controller too")
        if self._peer_nonce == "":
            if frame.type != "hello":
                raise ProtocolError(f"expected the agent's hello, got {frame.type!r}")
            check_fields(frame, {**HANDSHAKE_SCHEMAS["hello"], "proof": _STR})
            if frame["role"] != Role.AGENT.value or not _is_nonce(frame["nonce"]):
                raise ProtocolError("malformed hello from the agent")
            self._peer_nonce = frame["nonce"]
            expected = proof(self._token, b"netjobs-agent", self._nonce, self._peer_nonce)
            if not hmac.compare_digest(
                expected.encode(), frame["proof"].encode("ascii", "replace")
            ):
                raise AuthenticationFailed("authentication failed: the agent's token differs")
            self.peer_hello = dict(frame.fields)
            self._queue(
                Message(
                    "auth",
                    {
                        "proof": proof(
                            self._token, b"netjobs-controller", self._peer_nonce, self._nonce
                        )
                    },
                )
            )
            return
        if frame.type != "welcome":
            raise ProtocolError(f"expected welcome, got {frame.type!r}")
        self.state = State.READY


def _error_code(exc: ProtocolError) -> str:
    if isinstance(exc, AuthenticationFailed):
        return "auth"
    if isinstance(exc, VersionMismatch):
        return "version"
    return "protocol"
