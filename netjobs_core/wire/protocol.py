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

    b"NJ"  version:u8  flags:u8  header_len:u32  body_len:u32  header  body  [tag:32]

`header` is a UTF-8 JSON object with a "type" key; `body` carries raw bytes
(command output), so output is binary-safe and never re-encoded. The first
four bytes never change between versions, so either side can name a version
mismatch instead of misreading a frame. Every message type has a schema
(field -> type, numbers with finite bounds); a frame that breaks it is a
ProtocolError. Before authentication a frame is tiny (header at most
`MAX_HANDSHAKE_HEADER`, no body), so a stranger makes nobody buffer much.

Integrity (flags bit 0: a 32-byte tag follows the body)
-------------------------------------------------------
Every frame after the handshake (from `welcome` on, one direction each) is
sealed: ``tag = HMAC-SHA256(direction key, seq:u64 | prefix | header | body)``.
The keys are derived from the token key and the transcript of both hellos
(so from both nonces), one per direction, so a frame cannot be reflected
back to its sender. `seq` counts the frames of one direction from 0; it is
implicit (never sent): TCP already delivers in order, so the receiver's own
count is what the sender's must be, and a dropped, replayed or reordered
frame fails its tag exactly as a rewritten one does. Sending it would only
cost 8 bytes a frame for a more detailed error message. A frame that fails is
an IntegrityError and nothing in it is decoded: the tag is checked before the
JSON is parsed. Frames are authenticated, not encrypted: anyone on the path
can read commands and output (see docs/security.md).

Handshake (mutual challenge-response, the token never crosses the wire)
------------------------------------------------------------------------
::

    controller -> agent  hello   {role: "controller", version, nonce}
    agent -> controller  hello   {role: "agent", version, nonce, proof, ...}
    controller -> agent  auth    {proof}
    agent -> controller  welcome {}                       (sealed: seq 0)

    K                = scrypt(token, KEY_SALT)            (once per process and token)
    agent proof      = HMAC-SHA256(K, "netjobs-agent"      | SHA256(c_hello) | a_nonce)
    controller proof = HMAC-SHA256(K, "netjobs-controller" | SHA256(c_hello | a_hello))
    session keys     = HKDF-SHA256(K, SHA256(c_hello | a_hello)), one per direction

`c_hello` and `a_hello` are the exact frames as sent and received (channel
binding): a proxy that rewrites a field of either hello breaks the proof the
other side checks, and `welcome`, sealed with the session key, confirms the
agent's view of the transcript to the controller. K is memory-hard to
compute, so an agent's proof is no cheap offline-guessing oracle for the
token. Each side checks the other's proof with a constant-time compare.

`HANDSHAKE[role][state]` names the one message each state waits for and the
state it leads to (the reply is queued on the way)::

    controller  START -(sends hello)-> SENT_HELLO -hello-> SENT_AUTH -welcome-> READY
    agent       START -hello-> SENT_HELLO -auth-> READY

Until the controller's proof is checked the agent accepts nothing but the
handshake. An `error` frame during the handshake raises PeerError; one sent
before its sender has the session keys is unsealed (it can only end a
connection, which anyone on the path can do anyway).

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

Collected files (a prepare command's `collect` patterns): after a command's
exit the agent sends, for each file its patterns matched, `file` (the header:
which pattern, the file's base name, its size), `file_data` frames (the bytes
as the body, in order, each at most MAX_BODY) and `file_end` (the bytes sent,
their SHA-256, or the error that stopped the copy), then one `collected` per
command (how many files each pattern matched) before `finished`. One file is
open at a time per connection: between its `file` and `file_end` only its
`file_data` (and the requests allowed everywhere) may come. A command killed
before its release collects nothing: its `collected` has an empty `matched`.

Per-command environment (`env`): only NETJOBS_* names, bounded in number and
size, never the ones the agent sets itself (RESERVED_ENV): a controller names
a command's place in the fleet, it cannot set LD_PRELOAD or PATH.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netjobs_core.wire.status import ENDS, CommandStatus

PROTOCOL_VERSION = 2
MAGIC = b"NJ"
_PREFIX = struct.Struct(">2sBBII")
PREFIX_SIZE = _PREFIX.size
FLAG_TAGGED = 0x01  # a TAG_SIZE-byte HMAC follows the body
TAG_SIZE = 32
MAX_HEADER = 256 * 1024
MAX_BODY = 1024 * 1024
MAX_HANDSHAKE_HEADER = 1024  # hello, auth, welcome, error: a few hundred bytes, no body
NONCE_BYTES = 32
_SEQ = struct.Struct(">Q")

# The token key: scrypt with 32 MiB of memory, ~100 ms once per process and
# token. The salt is a fixed protocol label: a per-agent salt would have to be
# sent before authentication and buys nothing here, since every proof mixes in
# fresh nonces (no precomputed table of proofs is possible) and the token, not
# a password reused elsewhere, is what the label keeps apart from other uses.
KEY_SALT = b"netjobs protocol 2 token key"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


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


class IntegrityError(ProtocolError):
    """A frame failed its tag: altered, dropped, replayed or reordered on the way."""


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


@dataclass(frozen=True)
class Bounded:
    """A number field: its types and inclusive finite bounds."""

    types: tuple[type, ...]
    low: int | float
    high: int | float

    def accepts(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False  # json.loads takes NaN and Infinity
        return self.low <= value <= self.high  # exact for ints of any size


# Field name -> accepted type(s) or Bounded; a trailing "?" means optional (None allowed).
_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_NUM = (int, float)
_LIST = (list,)
_DICT = (dict,)
MAX_CLOCK = 2**63 - 1  # clock readings in ns, as int64: arithmetic on them stays finite
_CLOCK = Bounded(_INT, 0, MAX_CLOCK)
_SEQ_NO = Bounded(_INT, 0, 2**63 - 1)
COMMAND_ID = Bounded(_INT, 0, 2**31 - 1)
# Windows exit codes are unsigned 32-bit; POSIX reports a signal as its negative.
_EXIT_CODE = Bounded(_INT, -(2**31), 2**32 - 1)
MAX_TIMEOUT_S = 1e9  # ~31 years; in ns still within int64
_TIMEOUT = Bounded(_NUM, 0, MAX_TIMEOUT_S)
MAX_GRACE_S = 7 * 86400.0  # a silently lost controller's run is kept at most a week
_GRACE = Bounded(_NUM, 0, MAX_GRACE_S)
_HEARTBEAT = Bounded(_NUM, 0.01, 3600)
_OFFSET = Bounded(_INT, 0, 2**63 - 1)  # bytes of a stream
# Per-command environment and collected files (netjobs_core.config checks the
# pattern bounds with a file:line).
ENV_NAME_RE = re.compile(r"NETJOBS_[A-Z0-9_]{1,40}")
# The agent's own: the token (never passed on), the containment cookie, the release instant.
RESERVED_ENV = frozenset({"NETJOBS_TOKEN", "NETJOBS_JOB", "NETJOBS_START_EPOCH_NS"})
MAX_ENV_VARS = 16
MAX_ENV_VALUE = 1024
MAX_COLLECT_PATTERNS = 16
MAX_PATTERN_CHARS = 1024
MAX_COLLECT_FILES = 256  # per pattern: the agent sends the first ones in name order
MAX_FILE_NAME = 255
_PATTERN_INDEX = Bounded(_INT, 0, MAX_COLLECT_PATTERNS - 1)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

Schema = dict[str, tuple[type, ...] | Bounded]

HANDSHAKE_SCHEMAS: dict[str, Schema] = {
    "hello": {"role": _STR, "version": _INT, "nonce": _STR},
    "auth": {"proof": _STR},
    "welcome": {},
    "error": {"code": _STR, "message": _STR},
}

# Requests a controller may send once authenticated.
CONTROLLER_SCHEMAS: dict[str, Schema] = {
    "ping": {"seq": _SEQ_NO},
    "status": {},
    # commands: [{"id": int, "command": str, "timeout": float | None,
    #             "env": {NETJOBS_*: str} | None, "collect": [pattern] | None}]
    # grace: seconds the agent keeps the run for a silently lost controller
    # (None: the agent's default); heartbeat: the controller pings this often
    # during the run, so the agent can tell a silent controller; collect_max:
    # the largest file a collect pattern may bring back (None: no file is too large).
    "prepare": {
        "label": _STR,
        "commands": _LIST,
        "grace?": _GRACE,
        "heartbeat?": _HEARTBEAT,
        "collect_max?": _OFFSET,
    },
    # On a new connection after a silent loss: the run, and per command how
    # many bytes of each stream the controller holds.
    # offsets: [{"id": int, "stdout": int, "stderr": int}]
    "resume": {"run_id": _STR, "offsets": _LIST},
    # at: the release instant on the agent's clock (ns), or None for "now"
    "start": {"at?": _CLOCK},
    "kill": {"reason": _STR},
    "bye": {},
}

# What an agent sends once the controller is authenticated.
AGENT_SCHEMAS: dict[str, Schema] = {
    # wall: the agent's wall clock (epoch ns) read with `clock`, for the wall-clock
    # offset users read (agents before it leave it out).
    "pong": {"seq": _SEQ_NO, "clock": _CLOCK, "wall?": _CLOCK, "received?": _CLOCK},
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
    "prepared": {"gated": _BOOL, "commands": _LIST, "run_id": _STR, "grace": _GRACE},
    # The run is attached to this connection; it replays the run's messages
    # (started, output past the offsets, exits, finished) and goes on live.
    "resumed": {"run_id": _STR},
    # The agent is stopping (SIGTERM, Ctrl-C): it kills the runs it holds.
    "shutdown": {"reason": _STR},
    # released_at: agent clock (ns) right after each command was let go, by
    # command id (a string: JSON keys); late_ns: how far past the requested
    # instant the release happened.
    "started": {"released_at": _DICT, "late_ns": _CLOCK},
    "output": {"id": COMMAND_ID, "stream": _STR},
    # status: one of wire.status.ENDS
    "exit": {
        "id": COMMAND_ID,
        "status": _STR,
        "exit_code?": _EXIT_CODE,
        "ended_at?": _CLOCK,
        "message": _STR,
    },
    # A collected file of command `id`, matched by its collect pattern number
    # `pattern`: the header, the bytes in `file_data` bodies, then `file_end`.
    "file": {"id": COMMAND_ID, "pattern": _PATTERN_INDEX, "name": _STR, "size": _OFFSET},
    "file_data": {"id": COMMAND_ID},
    # bytes: how many were sent; error: why the copy stopped or never began
    # (too large, unreadable): the file is then incomplete and not kept.
    "file_end": {"id": COMMAND_ID, "bytes": _OFFSET, "sha256": _STR, "error?": _STR},
    # After a command's files: how many each of its patterns matched (empty:
    # nothing was collected, the command never ran).
    "collected": {"id": COMMAND_ID, "matched": _LIST},
    "finished": {},
    "error": {"code": _STR, "message": _STR},
}

STREAMS = frozenset({"stdout", "stderr"})


def frame_head(message: Message, flags: int = 0) -> bytes:
    """The frame's prefix and header: what goes before the body."""
    header = json.dumps(
        {"type": message.type, **message.fields}, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")
    if len(header) > MAX_HEADER or len(message.body) > MAX_BODY:
        raise FrameTooLarge(f"frame too large to send: {message.type}")
    return _PREFIX.pack(MAGIC, PROTOCOL_VERSION, flags, len(header), len(message.body)) + header


def encode_frame(message: Message, flags: int = 0) -> bytes:
    """The frame without its tag (a sealed frame's tag is the Connection's business)."""
    return frame_head(message, flags) + message.body


def _printable(data: bytes | bytearray, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    text = "".join(ch if 32 <= ord(ch) < 127 else "." for ch in text)
    return text.strip(".") or data[:16].hex()


@dataclass(frozen=True)
class RawFrame:
    """One frame as it came: `head` (prefix and header) then `body` is what its tag
    covers. Kept apart so that a large body is never copied to be checked or parsed."""

    flags: int
    head: bytes
    body: bytes
    tag: bytes

    @property
    def header_len(self) -> int:
        return len(self.head) - PREFIX_SIZE

    @property
    def signed(self) -> bytes:
        """The frame as its tag covers it (the handshake's transcript, tools)."""
        return self.head + self.body

    def message(self) -> Message:
        """Parse the header: call only once the tag (if any is due) verified."""
        raw_header = self.head[PREFIX_SIZE:]
        try:
            header = json.loads(raw_header)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: deeply nested JSON ("[[[[...") from a hostile peer.
            raise ProtocolError(f"malformed frame header: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("malformed frame header: no message type")
        kind = header.pop("type")
        return Message(kind, header, self.body)


class FrameDecoder:
    """Splits a byte stream into frames; raises ProtocolError on bad input.

    The size limits are attributes: a Connection keeps them tiny until the
    peer is authenticated. `feed` parses without checking any tag (for tools
    and tests); a Connection pulls `next_frame` and verifies first.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.max_header = MAX_HEADER
        self.max_body = MAX_BODY

    def feed(self, data: bytes) -> list[Message]:
        self.add(data)
        return [frame.message() for frame in iter(self.next_frame, None)]

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_frame(self) -> RawFrame | None:
        buf = self._buffer
        if (len(buf) >= 2 and bytes(buf[:2]) != MAGIC) or (len(buf) == 1 and buf[:1] != MAGIC[:1]):
            raise NotNetJobsPeer(f"not a NetJobs agent or controller (it sent {_printable(buf)!r})")
        if len(buf) < PREFIX_SIZE:
            return None
        _, version, flags, header_len, body_len = _PREFIX.unpack_from(buf)
        if version != PROTOCOL_VERSION:
            raise VersionMismatch(
                f"peer speaks NetJobs protocol {version}, this side speaks {PROTOCOL_VERSION}"
            )
        if flags & ~FLAG_TAGGED:
            raise ProtocolError(f"frame with unknown flags {flags:#04x}")
        if header_len > self.max_header or body_len > self.max_body:
            raise FrameTooLarge(f"frame of {header_len}+{body_len} bytes exceeds the limit")
        end = PREFIX_SIZE + header_len + body_len
        tag_end = end + (TAG_SIZE if flags & FLAG_TAGGED else 0)
        if len(buf) < tag_end:
            return None
        head_end = PREFIX_SIZE + header_len
        with memoryview(buf) as view:  # one copy of a large body, not two
            frame = RawFrame(
                flags, bytes(view[:head_end]), bytes(view[head_end:end]), bytes(view[end:tag_end])
            )
        del buf[:tag_end]
        return frame


def check_fields(message: Message, schema: Schema) -> None:
    for key, spec in schema.items():
        optional = key.endswith("?")
        name = key.rstrip("?")
        value = message.fields.get(name)
        if value is None:
            if optional:
                continue
            raise ProtocolError(f"{message.type!r} message lacks {name!r}")
        types = spec.types if isinstance(spec, Bounded) else spec
        # bool is an int subclass; keep the two apart.
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ProtocolError(f"{message.type!r} message has a bad {name!r}")
        if isinstance(spec, Bounded) and not spec.accepts(value):
            raise ProtocolError(f"{message.type!r} message has an out-of-range {name!r}")


def validate(message: Message, schemas: dict[str, Schema]) -> Message:
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
    if message.type == "started":
        _check_releases(message["released_at"])
    if message.type == "resume":
        _check_offsets(message["offsets"])
    if message.type == "file":
        _check_file_name(message["name"])
    if message.type == "file_end" and _SHA256_RE.fullmatch(message["sha256"]) is None:
        raise ProtocolError("'file_end' message has a bad 'sha256'")
    if message.type == "collected":
        _check_matched(message["matched"])
    return message


def _check_commands(commands: list[Any]) -> None:
    ids = set()
    for item in commands:
        if not isinstance(item, dict):
            raise ProtocolError("'prepare' commands must be objects")
        check_fields(
            Message("prepare", item),
            {
                "id": COMMAND_ID,
                "command": _STR,
                "timeout?": _TIMEOUT,
                "env?": _DICT,
                "collect?": _LIST,
            },
        )
        _check_env(item.get("env") or {})
        _check_patterns(item.get("collect") or [])
        if item["id"] in ids:
            raise ProtocolError(f"'prepare' repeats command id {item['id']}")
        ids.add(item["id"])


def _check_env(env: dict[str, Any]) -> None:
    if len(env) > MAX_ENV_VARS:
        raise ProtocolError(f"'prepare' env has more than {MAX_ENV_VARS} variables")
    for name, value in env.items():
        if ENV_NAME_RE.fullmatch(name) is None or name in RESERVED_ENV:
            raise ProtocolError(f"'prepare' env may not set {name[:50]!r}: only NETJOBS_* names")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\0" in value:
            raise ProtocolError(f"'prepare' env has a bad value for {name}")


def _check_patterns(patterns: list[Any]) -> None:
    if len(patterns) > MAX_COLLECT_PATTERNS:
        raise ProtocolError(f"'prepare' has more than {MAX_COLLECT_PATTERNS} collect patterns")
    for pattern in patterns:
        if (
            not isinstance(pattern, str)
            or not pattern
            or len(pattern) > MAX_PATTERN_CHARS
            or "\0" in pattern
        ):
            raise ProtocolError("'prepare' has a bad collect pattern")


def _check_file_name(name: str) -> None:
    """A base name, never a path: the controller saves it in a folder of its own."""
    if (
        not name
        or len(name) > MAX_FILE_NAME
        or name in (".", "..")
        or any(ch in name for ch in "/\\\0")
    ):
        raise ProtocolError(f"'file' message has a bad name {name[:50]!r}")


def _check_matched(matched: list[Any]) -> None:
    if len(matched) > MAX_COLLECT_PATTERNS:
        raise ProtocolError("'collected' message has too many counts")
    for value in matched:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            raise ProtocolError("'collected' message has a bad count")


def _check_releases(released_at: dict[str, Any]) -> None:
    for key, value in released_at.items():
        if not key.isdecimal() or len(key) > 10:
            raise ProtocolError(f"'started' names a bad command id {key[:20]!r}")
        check_fields(Message("started", {"released_at": value}), {"released_at": _CLOCK})


def _check_offsets(offsets: list[Any]) -> None:
    ids = set()
    for item in offsets:
        if not isinstance(item, dict):
            raise ProtocolError("'resume' offsets must be objects")
        check_fields(
            Message("resume", item), {"id": COMMAND_ID, "stdout": _OFFSET, "stderr": _OFFSET}
        )
        if item["id"] in ids:
            raise ProtocolError("'resume' repeats command id {}".format(item["id"]))
        ids.add(item["id"])


@functools.lru_cache(maxsize=8)
def token_key(token: bytes) -> bytes:
    """The key every proof and session key comes from: memory-hard, so that a
    captured proof costs an offline guesser one scrypt per guess."""
    return hashlib.scrypt(
        token, salt=KEY_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20, dklen=32
    )


def proof(key: bytes, label: bytes, *parts: bytes) -> str:
    mac = hmac.new(key, label, hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest()


def session_keys(key: bytes, transcript: bytes) -> dict[Role, hmac.HMAC]:
    """HKDF-SHA256 (extract, then one expand block per direction): the MAC each
    sender seals its frames with, by sender."""
    prk = hmac.digest(hashlib.sha256(transcript).digest(), key, "sha256")
    return {
        sender: hmac.new(
            hmac.digest(
                prk, b"netjobs frames from the " + sender.value.encode() + b"\x01", "sha256"
            ),
            digestmod=hashlib.sha256,
        )
        for sender in Role
    }


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
            file=_P.RUNNING,
            file_data=_P.RUNNING,
            file_end=_P.RUNNING,
            collected=_P.RUNNING,
            finished=_P.IDLE,
            error=_P.CLOSED,
        ),
        # collected: of a command that never ran (nothing matched, nothing sent).
        _P.CANCELLED: _row(
            _P.CANCELLED,
            _A_ALWAYS,
            exit=_P.CANCELLED,
            collected=_P.CANCELLED,
            finished=_P.IDLE,
            error=_P.CLOSED,
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
        self._key = token_key(token)
        self._nonce = (nonce or secrets.token_bytes(NONCE_BYTES)).hex()
        self._peer_nonce = ""
        self._decoder = FrameDecoder()
        self._decoder.max_header, self._decoder.max_body = MAX_HANDSHAKE_HEADER, 0
        self._out = bytearray()
        self._c_hello = b""  # the two hellos, exactly as on the wire: the transcript
        self._a_hello = b""
        self._seal: hmac.HMAC | None = None  # seals what we send, once keyed
        self._unseal: hmac.HMAC | None = None  # checks what the peer sends
        self._sent = 0  # sealed frames sent: the next one's implicit sequence number
        self._received = 0
        self.state = State.START
        self.phase = Phase.IDLE
        self._unfinished: set[int] = set()  # commands of the current run without an exit
        self._exited: set[int] = set()  # commands whose exit came on this connection
        # Commands with collect patterns and no `collected` yet; None after a
        # resume (the patterns were in the prepare of another connection).
        self._collecting: set[int] | None = set()
        self._open_file: int | None = None  # the command whose file is being sent
        self.peer_hello: dict[str, Any] = {}
        if role is Role.CONTROLLER:
            self._c_hello = self._queue(
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
    def data_to_send(self) -> bytearray:
        # Handed over, not copied: output frames are up to MAX_BODY each.
        data, self._out = self._out, bytearray()
        return data

    def _queue(self, message: Message) -> bytes:
        """Frame MESSAGE (sealed once keyed) onto the output. Returns an unsealed
        frame (the hellos, which the handshake transcript covers), else b""."""
        if self._seal is None:
            frame = encode_frame(message)
            self._out += frame
            return frame
        # The body is hashed and queued in place: no framed copy of a large output.
        head = frame_head(message, FLAG_TAGGED)
        mac = self._seal.copy()
        mac.update(_SEQ.pack(self._sent))
        mac.update(head)
        mac.update(message.body)
        self._sent += 1
        self._out += head
        self._out += message.body
        self._out += mac.digest()
        return b""

    def queue_unchecked(self, message: Message) -> None:
        """Queue MESSAGE sealed but past every check: only for tests that play a
        peer breaking the rules (the other end must refuse what this sends)."""
        self._queue(message)

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
        table because it ends the connection whatever the phase. Before the
        peer is authenticated the message is cut to fit its handshake limit.
        """
        if self.state is not State.CLOSED:
            if self.state is not State.READY:
                message = message[:150]  # JSON escapes at most 6x: under MAX_HANDSHAKE_HEADER
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
        self._check_collect(kind, message)
        if kind == "prepare":
            self._unfinished = {item["id"] for item in message["commands"]}
            self._collecting = {item["id"] for item in message["commands"] if item.get("collect")}
            self._exited = set()
        elif kind == "resume":
            self._unfinished = {item["id"] for item in message["offsets"]}
            self._collecting = None
            self._exited = set()
        elif kind in ("output", "exit") and message["id"] not in self._unfinished:
            raise ProtocolError(
                f"{kind!r} for command {message['id']}, which is not prepared or has exited"
            )
        elif kind == "finished" and self._unfinished:
            missing = ", ".join(str(i) for i in sorted(self._unfinished))
            raise ProtocolError(f"'finished' before the exit of command {missing}")
        if kind == "exit":
            self._unfinished.discard(message["id"])
            self._exited.add(message["id"])
        self.phase = after
        if after is Phase.CLOSED:
            self.state = State.CLOSED

    def _check_collect(self, kind: str, message: Message) -> None:
        """Collected files: after their command's exit, one file at a time."""
        if self._open_file is not None:
            if kind in ("file_data", "file_end"):
                if message["id"] != self._open_file:
                    raise ProtocolError(
                        f"{kind!r} for command {message['id']} while a file of command "
                        f"{self._open_file} is open"
                    )
                if kind == "file_end":
                    self._open_file = None
                return
            if kind in ("output", "exit", "file", "collected", "finished"):
                raise ProtocolError(
                    f"{kind!r} while a file of command {self._open_file} is being sent"
                )
            return
        if kind in ("file_data", "file_end"):
            raise ProtocolError(f"{kind!r} without its 'file' header")
        if kind in ("file", "collected"):
            ident = message["id"]
            if ident not in self._exited:
                raise ProtocolError(f"{kind!r} for command {ident} before its exit")
            if self._collecting is not None and ident not in self._collecting:
                raise ProtocolError(f"{kind!r} for command {ident}, which collects nothing now")
            if kind == "file":
                self._open_file = ident
            elif self._collecting is not None:
                self._collecting.discard(ident)
        elif kind == "finished" and self._collecting:
            missing = ", ".join(str(i) for i in sorted(self._collecting))
            raise ProtocolError(f"'finished' before the collected files of command {missing}")

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if self.state is State.CLOSED:
            raise ProtocolError("connection is closed")
        try:
            self._decoder.add(data)
            delivered = []
            while (raw := self._decoder.next_frame()) is not None:
                frame = self._open(raw)
                if self.state is State.CLOSED:
                    raise ProtocolError(f"{frame.type!r} after the last word of the peer")
                message = self._handle(frame, raw)
                if message is not None:
                    delivered.append(message)
            return delivered
        except ProtocolError as exc:
            if self.role is Role.AGENT and not isinstance(exc, PeerError):
                self.send_error(_error_code(exc), str(exc))
            self.close()
            raise

    def _open(self, raw: RawFrame) -> Message:
        """The frame's message, its tag checked first when one is due."""
        if self._unseal is None:
            if raw.flags & FLAG_TAGGED:
                raise ProtocolError("a sealed frame before the handshake gave any keys")
            return raw.message()
        if not raw.flags & FLAG_TAGGED:
            # The agent refusing our auth has no keys yet: an unsealed error
            # can only end the connection, which anyone on the path can do.
            if self.state is State.SENT_AUTH and (message := raw.message()).type == "error":
                return message
            raise IntegrityError(self._integrity_failure("came without its tag"))
        mac = self._unseal.copy()
        mac.update(_SEQ.pack(self._received))
        mac.update(raw.head)
        mac.update(raw.body)
        if not hmac.compare_digest(mac.digest(), raw.tag):
            raise IntegrityError(self._integrity_failure("does not verify"))
        self._received += 1
        return raw.message()

    def _integrity_failure(self, what: str) -> str:
        return (
            "integrity check failed: the connection was tampered with "
            f"(frame {self._received} from the {self.peer_role.value} {what})"
        )

    def _handle(self, frame: Message, raw: RawFrame) -> Message | None:
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
        _HANDSHAKE_STEPS[self.role, self.state](self, frame, raw.signed)
        self.state = after
        if after is State.READY:  # the peer is authenticated: full-size frames
            self._decoder.max_header, self._decoder.max_body = MAX_HEADER, MAX_BODY
        return None

    def _check_not_a_controller(self, frame: Message) -> None:
        if frame.type == "hello" and frame.get("role") == Role.CONTROLLER.value:
            if frame.get("nonce") == self._nonce:
                raise PeerEchoed(
                    "it echoed the greeting back: this looks like an original NetJobs 2.x "
                    "agent (NetJobsAgent.py); run the NetJobs 3 agent there"
                )
            raise ProtocolError("peer claims to be a controller too")

    def _key_with(self, a_hello: bytes) -> None:
        """Both hellos are known: derive the session keys, one per direction."""
        keys = session_keys(self._key, self._c_hello + a_hello)
        self._seal, self._unseal = keys[self.role], keys[self.peer_role]

    # -- handshake steps: check the expected frame, queue the reply ------------
    # RAW is the frame exactly as received: the transcript the proofs bind.
    def _agent_on_hello(self, frame: Message, raw: bytes) -> None:
        check_fields(frame, HANDSHAKE_SCHEMAS["hello"])
        if frame["role"] != Role.CONTROLLER.value or not _is_nonce(frame["nonce"]):
            raise ProtocolError("malformed hello")
        self._peer_nonce = frame["nonce"]
        self._c_hello = raw
        c_hello_hash = hashlib.sha256(raw).digest()
        self._a_hello = self._queue(
            Message(
                "hello",
                {
                    "role": Role.AGENT.value,
                    "version": PROTOCOL_VERSION,
                    "nonce": self._nonce,
                    "proof": proof(
                        self._key, b"netjobs-agent", c_hello_hash, bytes.fromhex(self._nonce)
                    ),
                },
            )
        )

    def _agent_on_auth(self, frame: Message, raw: bytes) -> None:
        check_fields(frame, HANDSHAKE_SCHEMAS["auth"])
        transcript = hashlib.sha256(self._c_hello + self._a_hello).digest()
        expected = proof(self._key, b"netjobs-controller", transcript)
        if not hmac.compare_digest(expected.encode(), frame["proof"].encode("ascii", "replace")):
            raise AuthenticationFailed(
                "authentication failed: the controller's token differs "
                "(or the handshake was altered on the way)"
            )
        self._key_with(self._a_hello)
        self._queue(Message("welcome"))

    def _controller_on_hello(self, frame: Message, raw: bytes) -> None:
        check_fields(frame, {**HANDSHAKE_SCHEMAS["hello"], "proof": _STR})
        if frame["role"] != Role.AGENT.value or not _is_nonce(frame["nonce"]):
            raise ProtocolError("malformed hello from the agent")
        self._peer_nonce = frame["nonce"]
        c_hello_hash = hashlib.sha256(self._c_hello).digest()
        expected = proof(self._key, b"netjobs-agent", c_hello_hash, bytes.fromhex(self._peer_nonce))
        if not hmac.compare_digest(expected.encode(), frame["proof"].encode("ascii", "replace")):
            raise AuthenticationFailed("authentication failed: the agent's token differs")
        self.peer_hello = dict(frame.fields)
        transcript = hashlib.sha256(self._c_hello + raw).digest()
        self._queue(Message("auth", {"proof": proof(self._key, b"netjobs-controller", transcript)}))
        self._key_with(raw)  # after the auth: it goes out unsealed, the agent has no keys yet

    def _controller_on_welcome(self, frame: Message, raw: bytes) -> None:
        pass  # sealed: its tag verified, so the agent derived the same keys


_HANDSHAKE_STEPS: dict[tuple[Role, State], Callable[[Connection, Message, bytes], None]] = {
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
    if isinstance(exc, IntegrityError):
        return "integrity"
    return "protocol"
