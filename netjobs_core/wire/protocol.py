"""NetJobs wire protocol, sans-IO: framing, handshake and the run phase as state tables.

Standard library only: the agent imports this module and nothing else from
netjobs_core. No sockets and no clocks here; callers feed received bytes to
`Connection.receive_data` and write out what `Connection.data_to_send` returns.
Both ends drive the same `Connection`, so both check the same rules.

Theory of operation
===================

Framing
-------
Frame layout (big-endian)::

    b"NJ"  version:u8  reserved:u8  header_len:u32  body_len:u32  header  body

`header` is a UTF-8 JSON object with a "type" key; `body` carries raw bytes
(command output), so output is binary-safe and never re-encoded. The first
four bytes never change between versions, so either side can name a version
mismatch instead of misreading a frame. Every message type has a schema
(field -> type); a frame that breaks it is a ProtocolError.

Handshake (mutual challenge-response, the token never crosses the wire)
------------------------------------------------------------------------
::

    controller -> agent  hello   {role: "controller", version, nonce}
    agent -> controller  hello   {role: "agent", version, nonce, proof, ...}
    controller -> agent  auth    {proof}
    agent -> controller  welcome {}

    agent proof      = HMAC-SHA256(token, "netjobs-agent"      | c_nonce | a_nonce)
    controller proof = HMAC-SHA256(token, "netjobs-controller" | a_nonce | c_nonce)

`HANDSHAKE[role][state]` names the one message each state waits for and the
state it leads to (the reply is queued on the way)::

    controller  START -(sends hello)-> SENT_HELLO -hello-> SENT_AUTH -welcome-> READY
    agent       START -hello-> SENT_HELLO -auth-> READY

Each side checks the other's proof with a constant-time compare; until the
controller's proof is checked the agent accepts nothing but the handshake.
An `error` frame during the handshake raises PeerError.

Run phase
---------
Once READY, `TRANSITIONS[sender][phase][message type] -> next phase` says
what each role may send in each `Phase` of the connection; a Connection
checks its own sends with its role's rows and what it receives with the
peer's, so an out-of-order message is a ProtocolError at either end. Both
ends walk the same phases::

    IDLE -prepare-> PREPARING -prepared-> PREPARED -start-> STARTING -started-> RUNNING
    RUNNING: output*, exit* (one exit per prepared command) -finished-> IDLE

A run survives a silent loss of its connection: a controller that lost it
opens a new connection and sends `resume` (IDLE -> RESUMING); the agent
answers `resumed` (-> STARTING) and replays the run from the start of its
messages, output from the byte offsets the controller holds (docs/faults.md).
The agent says `shutdown` in any phase before it kills its runs on a stop.

A connection may run several tests one after the other. Requests that do
not touch the run (controller ping/status, agent pong/status) are allowed in
every phase: the controller measures the clock before prepare, and a status
probe is answered on any connection. Messages cross on the wire, so the
table also holds what a crossing makes legal:

- `kill` is allowed in every phase and changes none: the agent answers it
  with the run's exits and finished, or with nothing when no test is active
  (any connection may kill, so it may stop another connection's run).
- A run killed before its release (kill, prepare timeout, agent stopping)
  leaves PREPARED/STARTING with `exit` messages and no `started` ->
  CANCELLED, then `finished`. Such an exit must say status killed with no
  exit code: any other exit before `started` is a ProtocolError. A `start`
  crossing those exits is allowed (the agent ignores it). A `start` that crosses the `finished`
  itself reaches an IDLE agent and is a ProtocolError.
- An agent `error` answering a prepare (busy) returns PREPARING to IDLE;
  anywhere else an error frame is the sender's last word and closes the
  connection, as the controller's `bye` does.

Beyond the table, a Connection tracks the command ids of the current run:
`output` and `exit` only for prepared commands that have not exited yet, and
`finished` only once every command has exited.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netjobs_core.wire.status import ENDS, CommandStatus

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
    # grace: seconds the agent keeps the run for a silently lost controller
    # (None: the agent's default); heartbeat: the controller pings this often
    # during the run, so the agent can tell a silent controller.
    "prepare": {"label": _STR, "commands": _LIST, "grace?": _NUM, "heartbeat?": _NUM},
    # On a new connection after a silent loss: the run, and per command how
    # many bytes of each stream the controller holds.
    # offsets: [{"id": int, "stdout": int, "stderr": int}]
    "resume": {"run_id": _STR, "offsets": _LIST},
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
    # run_id: names the run in a later `resume`; grace: what the agent keeps it for.
    "prepared": {"gated": _BOOL, "commands": _LIST, "run_id": _STR, "grace": _NUM},
    # The run is attached to this connection; it replays the run's messages
    # (started, output past the offsets, exits, finished) and goes on live.
    "resumed": {"run_id": _STR},
    # The agent is stopping (SIGTERM, Ctrl-C): it kills the runs it holds.
    "shutdown": {"reason": _STR},
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
    if message.type == "resume":
        _check_offsets(message["offsets"])
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


def _check_offsets(offsets: list[Any]) -> None:
    ids = set()
    for item in offsets:
        if not isinstance(item, dict):
            raise ProtocolError("'resume' offsets must be objects")
        check_fields(Message("resume", item), {"id": _INT, "stdout": _INT, "stderr": _INT})
        if item["id"] in ids or item["stdout"] < 0 or item["stderr"] < 0:
            raise ProtocolError("'resume' has a repeated id or a negative offset")
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
    """The connection: the handshake, then READY until either side closes."""

    START = "start"  # nothing exchanged yet
    SENT_HELLO = "sent hello"  # our hello is out, waiting for the peer's next step
    SENT_AUTH = "sent auth"  # controller: our proof is out, waiting for welcome
    READY = "ready"  # authenticated both ways: the run phase
    CLOSED = "closed"


class Phase(enum.Enum):
    """Where the run stands on a READY connection (see the module docstring)."""

    IDLE = "idle"  # nothing prepared on this connection
    PREPARING = "preparing"  # prepare sent, no answer yet
    PREPARED = "prepared"  # the agent holds the commands, gated
    STARTING = "starting"  # start sent, started not yet seen
    RUNNING = "running"  # released: output and exits flow
    CANCELLED = "cancelled"  # ended before its release: exits (killed), then finished
    RESUMING = "resuming"  # resume sent: the agent reattaches a run, then replays it
    CLOSED = "closed"  # bye or an error frame: nothing more either way


# The message each handshake state waits for, and the state it leads to.
HANDSHAKE: dict[Role, dict[State, tuple[str, State]]] = {
    Role.CONTROLLER: {
        State.SENT_HELLO: ("hello", State.SENT_AUTH),
        State.SENT_AUTH: ("welcome", State.READY),
    },
    Role.AGENT: {
        State.START: ("hello", State.SENT_HELLO),
        State.SENT_HELLO: ("auth", State.READY),
    },
}


def _row(phase: Phase, requests: tuple[str, ...], **moves: Phase) -> dict[str, Phase]:
    """A table row: REQUESTS keep the phase; MOVES lead elsewhere."""
    return {**dict.fromkeys(requests, phase), **moves}


_C_ALWAYS = ("ping", "status", "kill")
_A_ALWAYS = ("pong", "status", "shutdown")
_P = Phase

# TRANSITIONS[sender][phase][message type] -> the phase after it. A type missing
# from a row is out of order there.
TRANSITIONS: dict[Role, dict[Phase, dict[str, Phase]]] = {
    Role.CONTROLLER: {
        _P.IDLE: _row(
            _P.IDLE,
            _C_ALWAYS,
            prepare=_P.PREPARING,
            resume=_P.RESUMING,
            bye=_P.CLOSED,
            error=_P.CLOSED,
        ),
        _P.RESUMING: _row(_P.RESUMING, _C_ALWAYS, bye=_P.CLOSED, error=_P.CLOSED),
        _P.PREPARING: _row(_P.PREPARING, _C_ALWAYS, bye=_P.CLOSED, error=_P.CLOSED),
        _P.PREPARED: _row(
            _P.PREPARED, _C_ALWAYS, start=_P.STARTING, bye=_P.CLOSED, error=_P.CLOSED
        ),
        _P.STARTING: _row(_P.STARTING, _C_ALWAYS, bye=_P.CLOSED, error=_P.CLOSED),
        _P.RUNNING: _row(_P.RUNNING, _C_ALWAYS, bye=_P.CLOSED, error=_P.CLOSED),
        # start: it crossed the exits of a run killed before its release.
        _P.CANCELLED: _row(
            _P.CANCELLED, _C_ALWAYS, start=_P.CANCELLED, bye=_P.CLOSED, error=_P.CLOSED
        ),
        _P.CLOSED: {},
    },
    Role.AGENT: {
        _P.IDLE: _row(_P.IDLE, _A_ALWAYS, error=_P.CLOSED),
        # error: the prepare is refused (busy); the connection goes on.
        _P.PREPARING: _row(_P.PREPARING, _A_ALWAYS, prepared=_P.PREPARED, error=_P.IDLE),
        # exit/finished without started: killed before the release.
        # resumed: the replay starts as a run does (started, or killed exits).
        _P.RESUMING: _row(_P.RESUMING, _A_ALWAYS, resumed=_P.STARTING, error=_P.CLOSED),
        _P.PREPARED: _row(
            _P.PREPARED,
            _A_ALWAYS,
            started=_P.RUNNING,
            exit=_P.CANCELLED,
            finished=_P.IDLE,
            error=_P.CLOSED,
        ),
        _P.STARTING: _row(
            _P.STARTING,
            _A_ALWAYS,
            started=_P.RUNNING,
            exit=_P.CANCELLED,
            finished=_P.IDLE,
            error=_P.CLOSED,
        ),
        _P.RUNNING: _row(
            _P.RUNNING,
            _A_ALWAYS,
            output=_P.RUNNING,
            exit=_P.RUNNING,
            finished=_P.IDLE,
            error=_P.CLOSED,
        ),
        _P.CANCELLED: _row(
            _P.CANCELLED, _A_ALWAYS, exit=_P.CANCELLED, finished=_P.IDLE, error=_P.CLOSED
        ),
        _P.CLOSED: {},
    },
}

# An exit in these phases reports a command killed before its release.
_UNSTARTED = frozenset({Phase.PREPARED, Phase.STARTING, Phase.CANCELLED})
_SCHEMAS = {Role.CONTROLLER: CONTROLLER_SCHEMAS, Role.AGENT: AGENT_SCHEMAS}
_PEER = {Role.CONTROLLER: Role.AGENT, Role.AGENT: Role.CONTROLLER}


class Connection:
    """One end of a NetJobs connection: handshake, run phase and message checks.

    `receive_data` returns the authenticated application messages, in order;
    handshake traffic is handled inside. Errors raise ProtocolError and close
    the connection; on the agent side an error frame for the peer is queued
    first, so the caller should still flush `data_to_send()`.
    """

    def __init__(self, role: Role, token: bytes, *, nonce: bytes | None = None) -> None:
        if not token:
            raise ValueError("an empty token authenticates nobody")
        self.role = role
        self.peer_role = _PEER[role]
        self._token = token
        self._nonce = (nonce or secrets.token_bytes(NONCE_BYTES)).hex()
        self._peer_nonce = ""
        self._decoder = FrameDecoder()
        self._out = bytearray()
        self.state = State.START
        self.phase = Phase.IDLE
        self._unfinished: set[int] = set()  # commands of the current run without an exit
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
            self.state = State.SENT_HELLO

    # -- output ---------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _queue(self, message: Message) -> None:
        self._out += encode_frame(message)

    def send(self, message: Message) -> None:
        """Queue an application message; only once authenticated, only in order."""
        if self.state is State.CLOSED:
            raise ProtocolError(f"cannot send {message.type!r}: the connection is closed")
        if self.state is not State.READY:
            raise ProtocolError(f"cannot send {message.type!r} before authentication")
        if message.type == "error":
            check_fields(message, HANDSHAKE_SCHEMAS["error"])
        else:
            validate(message, _SCHEMAS[self.role])
        self._advance(self.role, message)
        self._queue(message)

    def send_error(self, code: str, message: str) -> None:
        """Queue an error frame as this side's last word, and close.

        Allowed in any state but closed (the handshake too); outside the
        table because it ends the connection whatever the phase.
        """
        if self.state is not State.CLOSED:
            self._queue(Message("error", {"code": code, "message": message}))
            self.close()

    def close(self) -> None:
        self.state = State.CLOSED
        self.phase = Phase.CLOSED

    # -- the run phase --------------------------------------------------------
    def _advance(self, sender: Role, message: Message) -> None:
        """Check MESSAGE against the table and the run's commands; move on."""
        kind = message.type
        after = TRANSITIONS[sender][self.phase].get(kind)
        if after is None:
            raise ProtocolError(
                f"{kind!r} out of order: the {sender.value} may not send it "
                f"while the connection is {self.phase.value}"
            )
        if kind == "exit" and self.phase in _UNSTARTED:
            if message["status"] != CommandStatus.KILLED or message.get("exit_code") is not None:
                raise ProtocolError(
                    f"'exit' of command {message['id']} before 'started' that is not "
                    "the report of a kill"
                )
        if kind == "prepare":
            self._unfinished = {item["id"] for item in message["commands"]}
        elif kind == "resume":
            self._unfinished = {item["id"] for item in message["offsets"]}
        elif kind in ("output", "exit") and message["id"] not in self._unfinished:
            raise ProtocolError(
                f"{kind!r} for command {message['id']}, which is not prepared or has exited"
            )
        elif kind == "finished" and self._unfinished:
            missing = ", ".join(str(i) for i in sorted(self._unfinished))
            raise ProtocolError(f"'finished' before the exit of command {missing}")
        if kind == "exit":
            self._unfinished.discard(message["id"])
        self.phase = after
        if after is Phase.CLOSED:
            self.state = State.CLOSED

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Message]:
        if self.state is State.CLOSED:
            raise ProtocolError("connection is closed")
        try:
            frames = self._decoder.feed(data)
            delivered = []
            for frame in frames:
                if self.state is State.CLOSED:
                    raise ProtocolError(f"{frame.type!r} after the last word of the peer")
                message = self._handle(frame)
                if message is not None:
                    delivered.append(message)
            return delivered
        except ProtocolError as exc:
            if self.role is Role.AGENT and not isinstance(exc, PeerError):
                self.send_error(_error_code(exc), str(exc))
            self.close()
            raise

    def _handle(self, frame: Message) -> Message | None:
        if self.state is State.READY:
            if frame.type == "error":
                check_fields(frame, HANDSHAKE_SCHEMAS["error"])
            else:
                validate(frame, _SCHEMAS[self.peer_role])
            self._advance(self.peer_role, frame)
            return frame
        if frame.type == "error":
            check_fields(frame, HANDSHAKE_SCHEMAS["error"])
            raise PeerError(frame["code"], frame["message"])
        if self.role is Role.CONTROLLER:
            self._check_not_a_controller(frame)
        expected, after = HANDSHAKE[self.role][self.state]
        if frame.type != expected:
            if self.state is State.SENT_HELLO and self.role is Role.AGENT:
                raise AuthenticationFailed(f"expected authentication, got {frame.type!r}")
            raise ProtocolError(f"expected {expected!r}, got {frame.type!r}")
        _HANDSHAKE_STEPS[self.role, self.state](self, frame)
        self.state = after
        return None

    def _check_not_a_controller(self, frame: Message) -> None:
        if frame.type == "hello" and frame.get("role") == Role.CONTROLLER.value:
            if frame.get("nonce") == self._nonce:
                raise PeerEchoed(
                    "it echoed the greeting back: this looks like an original NetJobs 2.x "
                    "agent (NetJobsAgent.py); run the NetJobs 3 agent there"
                )
            raise ProtocolError("peer claims to be a controller too")

    # -- handshake steps: check the expected frame, queue the reply ------------
    def _agent_on_hello(self, frame: Message) -> None:
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
                    "proof": proof(self._token, b"netjobs-agent", self._peer_nonce, self._nonce),
                },
            )
        )

    def _agent_on_auth(self, frame: Message) -> None:
        check_fields(frame, HANDSHAKE_SCHEMAS["auth"])
        expected = proof(self._token, b"netjobs-controller", self._nonce, self._peer_nonce)
        if not hmac.compare_digest(expected.encode(), frame["proof"].encode("ascii", "replace")):
            raise AuthenticationFailed("authentication failed: the controller's token differs")
        self._queue(Message("welcome"))

    def _controller_on_hello(self, frame: Message) -> None:
        check_fields(frame, {**HANDSHAKE_SCHEMAS["hello"], "proof": _STR})
        if frame["role"] != Role.AGENT.value or not _is_nonce(frame["nonce"]):
            raise ProtocolError("malformed hello from the agent")
        self._peer_nonce = frame["nonce"]
        expected = proof(self._token, b"netjobs-agent", self._nonce, self._peer_nonce)
        if not hmac.compare_digest(expected.encode(), frame["proof"].encode("ascii", "replace")):
            raise AuthenticationFailed("authentication failed: the agent's token differs")
        self.peer_hello = dict(frame.fields)
        self._queue(
            Message(
                "auth",
                {"proof": proof(self._token, b"netjobs-controller", self._peer_nonce, self._nonce)},
            )
        )

    def _controller_on_welcome(self, frame: Message) -> None:
        pass  # nothing to check: it only says the proof was good


_HANDSHAKE_STEPS: dict[tuple[Role, State], Callable[[Connection, Message], None]] = {
    (Role.AGENT, State.START): Connection._agent_on_hello,
    (Role.AGENT, State.SENT_HELLO): Connection._agent_on_auth,
    (Role.CONTROLLER, State.SENT_HELLO): Connection._controller_on_hello,
    (Role.CONTROLLER, State.SENT_AUTH): Connection._controller_on_welcome,
}


def _error_code(exc: ProtocolError) -> str:
    if isinstance(exc, AuthenticationFailed):
        return "auth"
    if isinstance(exc, VersionMismatch):
        return "version"
    return "protocol"
