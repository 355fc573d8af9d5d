"""NetJobs wire protocol, sans-IO: one end of a connection, and the theory of operation.

Standard library only, like the modules it drives: framing (frames and the
byte stream), messages (one dataclass per message type, with its schema),
sealing (token key, proofs, session keys) and states (the handshake and run
tables). No sockets and no clocks here; callers feed received bytes to
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
mismatch instead of misreading a frame. Every message type is a dataclass
whose fields are its schema (field -> type, numbers with finite bounds); a
frame that breaks it is a ProtocolError. Before authentication a frame is tiny (header at most
`MAX_HANDSHAKE_HEADER`, no body), so a stranger makes nobody buffer much.

Integrity (flags bit 0: a 32-byte tag follows the body)
-------------------------------------------------------
Every frame after the handshake (from `welcome` on, one direction each) is
sealed (except on an SSH link, below):
``tag = HMAC-SHA256(direction key, seq:u64 | prefix | header | body)``.
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

Handshake (mutual challenge-response, no secret crosses the wire)
-----------------------------------------------------------------
::

    controller -> agent  hello   {role: "controller", version, nonce}
    agent -> controller  hello   {role: "agent", version, nonce, proof, [host]}
    controller -> agent  auth    {proof}
    agent -> controller  welcome {}                       (sealed: seq 0)

    T                = scrypt(token, KEY_SALT)            (once per process and token)
    K                = T                                  (shared token: no `host`)
                     | HKDF-Expand(T, "...credential v1" | host)   (host credential)
                     | HKDF(link secret, "...link key")   (an agent started over SSH)
    agent proof      = HMAC-SHA256(K, "netjobs-agent"      | SHA256(c_hello) | a_nonce)
    controller proof = HMAC-SHA256(K, "netjobs-controller" | SHA256(c_hello | a_hello))
    session keys     = HKDF-SHA256(K, SHA256(c_hello | a_hello)), one per direction

An agent started over SSH holds a third kind: the random 256-bit link secret its
controller made for it and gave it on the channel (`link <hex>`, wire/tokens.py),
whose key is a cheap HKDF: there is nothing to guess, so nothing to stretch. Both
ends are told it is one (Connection's `link`); a human-chosen token never is. On
such a link the handshake is the same, but no frame is sealed (the `welcome`
neither): the SSH transport already authenticates and encrypts every byte between
the controller and the host's sshd, and from there it is a pipe to the agent that
sshd started; a second MAC would cost both ends a SHA-256 pass over every output
byte for nothing.

Two kinds of installed agent secret (sealing.Credential). With a shared token every
agent holds T's input, the controller's token itself. With a host credential
(`netjobs token issue`) an agent holds only K for its own host name, derived
from the controller's token; its hello names that host. The controller,
holding the token, derives K for the named host with one HMAC (no scrypt
per host), checks the proof, then refuses a credential that is not the one
of the host part of the target it dialled ("B answered with the credential
of A": a forwarder, a moved address). A holder of one agent's K cannot
prove another host's, nor the controller's token to another agent; the
agent verifies the controller with the same K (symmetric keys: a holder of
K can also play the controller to that one agent, which it controls anyway).

`c_hello` and `a_hello` are the exact frames as sent and received (channel
binding): a proxy that rewrites a field of either hello (the `host` too)
breaks the proof the other side checks, and `welcome`, sealed with the
session key, confirms the agent's view of the transcript to the controller.
T is memory-hard to compute, so an agent's proof, or a host credential, is
no cheap offline-guessing oracle for the token; a host credential is random
already and an agent holding one computes no scrypt. Each side checks the
other's proof with a constant-time compare.

`HANDSHAKE[role][state]` names the one message each state waits for and the
state it leads to (the reply is queued on the way)::

    controller  START -(sends hello)-> SENT_HELLO -hello-> SENT_AUTH -welcome-> READY
    agent       START -hello-> SENT_HELLO -auth-> READY

Until the controller's proof is checked the agent accepts nothing but the
handshake. The controller may queue requests right behind its auth (sealed from seq
0 where frames are sealed): the agent reads them once the proof checks, and answers
after its welcome, so a status, the first clock ping and, where arrivals carry the
kernel's stamps, the `prepare` cost no round trip of their own (every agent of
protocol 2 reads them so; an agent that refuses the proof never reads them; a
controller that gives up before its `prepared` came says `bye`, and the agent drops
a run that was never started). A run's controller then asks no status: the
`prepared` says the agent's host name, version and platform (an agent from before
them is asked after it).
An `error` frame during the handshake raises PeerError; one sent
before its sender has the session keys is unsealed (it can only end a
connection, which anyone on the path can do anyway).

Run phase
---------
Once READY, `TRANSITIONS[sender][phase][message class] -> next phase` says
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

import hashlib
import hmac
import os
from collections.abc import Callable

from netjobs_core.wire import messages
from netjobs_core.wire.errors import (
    AuthenticationFailed,
    CredentialRefused,
    IntegrityError,
    PeerEchoed,
    PeerError,
    ProtocolError,
    VersionMismatch,
)
from netjobs_core.wire.framing import (
    FLAG_TAGGED,
    MAX_BODY,
    MAX_HANDSHAKE_HEADER,
    MAX_HEADER,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    RawFrame,
    frame_head,
)
from netjobs_core.wire.messages import (
    HANDSHAKE_MESSAGES,
    SENT_BY,
    Auth,
    Collected,
    Error,
    Exit,
    File,
    FileData,
    FileEnd,
    Finished,
    Hello,
    Message,
    Output,
    Prepare,
    Resume,
    Role,
    Welcome,
)
from netjobs_core.wire.sealing import (
    CREDENTIAL_BYTES,
    NONCE_BYTES,
    SEQ,
    Credential,
    Mac,
    host_credential,
    host_key,
    is_nonce,
    link_key,
    proof,
    session_keys,
    token_key,
)
from netjobs_core.wire.states import HANDSHAKE, TRANSITIONS, UNSTARTED, Phase, State
from netjobs_core.wire.status import CommandStatus

PEER = {Role.CONTROLLER: Role.AGENT, Role.AGENT: Role.CONTROLLER}
# The messages `_check_commands` has rules for (with a file open: every message).
_COMMAND_RULES = frozenset(
    {Prepare, Resume, Output, Exit, Finished, File, FileData, FileEnd, Collected}
)


class Connection:
    """One end of a NetJobs connection: handshake, run phase and message checks.

    `receive_data` returns the authenticated application messages, in order;
    handshake traffic is handled inside. Errors raise ProtocolError and close
    the connection; on the agent side an error frame for the peer is queued
    first, so the caller should still flush `data_to_send()`.
    """

    def __init__(
        self,
        role: Role,
        token: bytes,
        *,
        nonce: bytes | None = None,
        host: str | None = None,
        link: bool = False,
    ) -> None:
        """TOKEN: the controller's token (a controller), the shared token or the
        agent's own credential (an agent). HOST: an agent's, the host its credential
        is for (None: TOKEN is the shared token); a controller's, the host part of
        the target it dialled, the only one whose credential it accepts (None: only
        the shared token). LINK: TOKEN is the random secret of one SSH link at both
        ends (sealing.link_key), for an agent started over SSH; no host then."""
        if not token:
            raise ValueError("an empty token authenticates nobody")
        if link and host is not None:
            raise ValueError("a link secret is no host's credential")
        self.role = role
        self.peer_role = PEER[role]
        self.host = host
        self.link = link
        # What the agent holds: known at once on its side, once proved on the controller's.
        self.credential: Credential | None = None
        if link:
            self._key = link_key(token)  # random already: no scrypt at either end
            if role is Role.AGENT:
                self.credential = Credential.LINK
        elif role is Role.AGENT and host is not None:
            if len(token) != CREDENTIAL_BYTES:
                raise ValueError(f"a host credential is {CREDENTIAL_BYTES} bytes")
            self._key = token  # random already: nothing to stretch
            self.credential = Credential.HOST
        else:
            self._key = token_key(token)
            if role is Role.AGENT:
                self.credential = Credential.SHARED
        # os.urandom: what secrets.token_bytes is, without random's import at each agent's start
        self._nonce = (nonce or os.urandom(NONCE_BYTES)).hex()
        self._peer_nonce = ""
        self._decoder = FrameDecoder()
        self._decoder.max_header, self._decoder.max_body = MAX_HANDSHAKE_HEADER, 0
        self._out = bytearray()
        self._c_hello = b""  # the two hellos, exactly as on the wire: the transcript
        self._a_hello = b""
        self._seal: Mac | None = None  # seals what we send, once keyed
        self._unseal: Mac | None = None  # checks what the peer sends
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
        self.peer_hello: Hello | None = None  # the agent's, on the controller's side
        if role is Role.CONTROLLER:
            hello = Hello(role=Role.CONTROLLER.value, version=PROTOCOL_VERSION, nonce=self._nonce)
            self._c_hello = self._queue(hello.to_frame())
            self.state = State.SENT_HELLO

    # -- output ---------------------------------------------------------------
    @property
    def unsent(self) -> int:
        """Bytes queued and not yet handed over by `data_to_send`."""
        return len(self._out)

    def data_to_send(self) -> bytearray:
        # Handed over, not copied: output frames are up to MAX_BODY each.
        data, self._out = self._out, bytearray()
        return data

    def _queue(self, frame: Frame) -> bytes:
        """Put FRAME (sealed once keyed) onto the output. Returns an unsealed frame
        without a body (the hellos, which the handshake transcript covers), else b"".
        The body is queued in place either way: no framed copy of a large output."""
        if self._seal is None:  # before the keys, and on an SSH link
            head = frame_head(frame)
            self._out += head
            if not frame.body:
                return head
            self._out += frame.body
            return b""
        head = frame_head(frame, FLAG_TAGGED)
        mac = self._seal.copy()
        mac.update(SEQ.pack(self._sent) + head)  # one call: most frames have no body
        if frame.body:
            mac.update(frame.body)
        self._sent += 1
        self._out += head
        self._out += frame.body
        self._out += mac.digest()
        return b""

    def queue_unchecked(self, message: Message | Frame) -> None:
        """Queue MESSAGE (or any frame) sealed but past every check: only for tests
        that play a peer breaking the rules (the other end must refuse what this sends)."""
        self._queue(message.to_frame() if isinstance(message, Message) else message)

    def send(self, message: Message) -> None:
        """Queue an application message; only once authenticated, only in order."""
        if self.state is State.CLOSED:
            raise ProtocolError(f"cannot send {message.TYPE!r}: the connection is closed")
        if self.state is not State.READY and not self.pipelining:
            raise ProtocolError(f"cannot send {message.TYPE!r} before authentication")
        frame = messages.check(message, SENT_BY[self.role])
        self._advance(self.role, message)
        self._queue(frame)

    def send_error(self, code: str, message: str) -> None:
        """Queue an error frame as this side's last word, and close.

        Allowed in any state but closed (the handshake too); outside the
        table because it ends the connection whatever the phase. Before the
        peer is authenticated the message is cut to fit its handshake limit.
        """
        if self.state is not State.CLOSED:
            if self.state is not State.READY:
                message = message[:150]  # JSON escapes at most 6x: under MAX_HANDSHAKE_HEADER
            message = messages.cut(message, messages.MAX_MESSAGE_CHARS)
            self._queue(Error(code=code, message=message).to_frame())
            self.close()

    @property
    def pipelining(self) -> bool:
        """A controller whose auth is queued may queue requests right behind it."""
        return self.role is Role.CONTROLLER and self.state is State.SENT_AUTH

    def close(self) -> None:
        self.state = State.CLOSED
        self.phase = Phase.CLOSED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # -- the run phase --------------------------------------------------------
    def _advance(self, sender: Role, message: Message) -> None:
        """Check MESSAGE against the table and the run's commands; move on."""
        kind = type(message)
        after = TRANSITIONS[sender][self.phase].get(kind)
        if after is None:
            raise ProtocolError(
                f"{message.TYPE!r} out of order: the {sender.value} may not send it "
                f"while the connection is {self.phase.value}"
            )
        # The other types (pings, statuses, the start...) are the table's alone.
        if kind in _COMMAND_RULES or self._open_file is not None:
            self._check_commands(message)
        self.phase = after
        if after is Phase.CLOSED:
            self.state = State.CLOSED

    def _check_commands(self, message: Message) -> None:
        """The rules on a run's commands that the table cannot say."""
        if isinstance(message, Exit) and self.phase in UNSTARTED:
            if message.status != CommandStatus.KILLED or message.exit_code is not None:
                raise ProtocolError(
                    f"'exit' of command {message.id} before 'started' that is not "
                    "the report of a kill"
                )
        self._check_collect(message)
        if isinstance(message, Prepare):
            self._unfinished = {item["id"] for item in message.commands}
            self._collecting = {item["id"] for item in message.commands if item.get("collect")}
            self._exited = set()
        elif isinstance(message, Resume):
            self._unfinished = {item["id"] for item in message.offsets}
            self._collecting = None
            self._exited = set()
        elif isinstance(message, Output | Exit) and message.id not in self._unfinished:
            raise ProtocolError(
                f"{message.TYPE!r} for command {message.id}, which is not prepared or has exited"
            )
        elif isinstance(message, Finished) and self._unfinished:
            missing = ", ".join(str(i) for i in sorted(self._unfinished))
            raise ProtocolError(f"'finished' before the exit of command {missing}")
        if isinstance(message, Exit):
            self._unfinished.discard(message.id)
            self._exited.add(message.id)

    def _check_collect(self, message: Message) -> None:
        """Collected files: after their command's exit, one file at a time."""
        kind = message.TYPE
        if self._open_file is not None:
            if isinstance(message, FileData | FileEnd):
                if message.id != self._open_file:
                    raise ProtocolError(
                        f"{kind!r} for command {message.id} while a file of command "
                        f"{self._open_file} is open"
                    )
                if isinstance(message, FileEnd):
                    self._open_file = None
                return
            if isinstance(message, Output | Exit | File | Collected | Finished):
                raise ProtocolError(
                    f"{kind!r} while a file of command {self._open_file} is being sent"
                )
            return
        if isinstance(message, FileData | FileEnd):
            raise ProtocolError(f"{kind!r} without its 'file' header")
        if isinstance(message, File | Collected):
            ident = message.id
            if ident not in self._exited:
                raise ProtocolError(f"{kind!r} for command {ident} before its exit")
            if self._collecting is not None and ident not in self._collecting:
                raise ProtocolError(f"{kind!r} for command {ident}, which collects nothing now")
            if isinstance(message, File):
                self._open_file = ident
            elif self._collecting is not None:
                self._collecting.discard(ident)
        elif isinstance(message, Finished) and self._collecting:
            missing = ", ".join(str(i) for i in sorted(self._collecting))
            raise ProtocolError(f"'finished' before the collected files of command {missing}")

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if self.closed:
            raise ProtocolError("connection is closed")
        decoder = self._decoder
        try:
            decoder.add(data)
            delivered = []
            while (raw := decoder.next_frame()) is not None:
                frame = self._open(raw)
                if self.state is State.CLOSED:  # by the frame before: the peer's last word
                    raise ProtocolError(f"{frame.type[:50]!r} after the last word of the peer")
                message = self._handle(frame, raw)
                if message is not None:
                    delivered.append(message)
            return delivered
        except ProtocolError as exc:
            if self.role is Role.AGENT and not isinstance(exc, PeerError):
                self.send_error(_error_code(exc), str(exc))
            self.close()
            raise

    def _open(self, raw: RawFrame) -> Frame:
        """The frame's header, its tag checked first when one is due."""
        if self._unseal is None:
            if raw.flags & FLAG_TAGGED:
                raise ProtocolError("a sealed frame before the handshake gave any keys")
            return raw.parse()
        if not raw.flags & FLAG_TAGGED:
            # The agent refusing our auth has no keys yet: an unsealed error
            # can only end the connection, which anyone on the path can do.
            if self.state is State.SENT_AUTH and (frame := raw.parse()).type == Error.TYPE:
                return frame
            raise IntegrityError(self._integrity_failure("came without its tag"))
        mac = self._unseal.copy()
        mac.update(SEQ.pack(self._received) + raw.head)
        if raw.body:
            mac.update(raw.body)
        if not hmac.compare_digest(mac.digest(), raw.tag):
            raise IntegrityError(self._integrity_failure("does not verify"))
        self._received += 1
        return raw.parse()

    def _integrity_failure(self, what: str) -> str:
        return (
            "integrity check failed: the connection was tampered with "
            f"(frame {self._received} from the {self.peer_role.value} {what})"
        )

    def _handle(self, frame: Frame, raw: RawFrame) -> Message | None:
        if self.state is State.READY:
            message = messages.decode(frame, SENT_BY[self.peer_role])
            self._advance(self.peer_role, message)
            return message
        if frame.type == Error.TYPE:
            error = messages.decode(frame, HANDSHAKE_MESSAGES)
            assert isinstance(error, Error)
            raise PeerError(error.code, error.message)
        if self.role is Role.CONTROLLER:
            self._check_not_a_controller(frame)
        expected, after = HANDSHAKE[self.role][self.state]
        if frame.type != expected.TYPE:
            if self.state is State.SENT_HELLO and self.role is Role.AGENT:
                raise AuthenticationFailed(f"expected authentication, got {frame.type!r}")
            raise ProtocolError(f"expected {expected.TYPE!r}, got {frame.type!r}")
        _HANDSHAKE_STEPS[self.role, self.state](
            self, messages.decode(frame, HANDSHAKE_MESSAGES), raw.signed
        )
        self.state = after
        if after is State.READY:  # the peer is authenticated: full-size frames
            self._decoder.max_header, self._decoder.max_body = MAX_HEADER, MAX_BODY
        return None

    def _check_not_a_controller(self, frame: Frame) -> None:
        if frame.type == Hello.TYPE and frame.fields.get("role") == Role.CONTROLLER.value:
            if frame.fields.get("nonce") == self._nonce:
                raise PeerEchoed(
                    "it echoed the greeting back: this looks like an original NetJobs 2.x "
                    "agent (NetJobsAgent.py); run the NetJobs 3 agent there"
                )
            raise ProtocolError("peer claims to be a controller too")

    def _key_with(self, a_hello: bytes) -> None:
        """Both hellos are known: derive the session keys, one per direction. Not on
        an SSH link: SSH's own MAC covers the network, the rest is a pipe on the host."""
        if self.link:
            return
        keys = session_keys(self._key, self._c_hello + a_hello)
        self._seal, self._unseal = keys[self.role], keys[self.peer_role]

    # -- handshake steps: check the expected message, queue the reply ----------
    # RAW is the frame exactly as received: the transcript the proofs bind.
    def _agent_on_hello(self, hello: Message, raw: bytes) -> None:
        assert isinstance(hello, Hello)
        if hello.role != Role.CONTROLLER.value or not is_nonce(hello.nonce):
            raise ProtocolError("malformed hello")
        self._peer_nonce = hello.nonce
        self._c_hello = raw
        c_hello_hash = hashlib.sha256(raw).digest()
        reply = Hello(
            role=Role.AGENT.value,
            version=PROTOCOL_VERSION,
            nonce=self._nonce,
            proof=proof(self._key, b"netjobs-agent", c_hello_hash, bytes.fromhex(self._nonce)),
            host=self.host,
        )
        self._a_hello = self._queue(reply.to_frame())

    def _agent_on_auth(self, auth: Message, raw: bytes) -> None:
        assert isinstance(auth, Auth)
        transcript = hashlib.sha256(self._c_hello + self._a_hello).digest()
        expected = proof(self._key, b"netjobs-controller", transcript)
        if not hmac.compare_digest(expected.encode(), auth.proof.encode("ascii", "replace")):
            held = (
                "token" if self.host is None else f"token that issued the credential of {self.host}"
            )
            raise AuthenticationFailed(
                f"authentication failed: the controller does not hold the {held} "
                "(or the handshake was altered on the way)"
            )
        self._key_with(self._a_hello)
        self._queue(Welcome().to_frame())

    def _controller_on_hello(self, hello: Message, raw: bytes) -> None:
        assert isinstance(hello, Hello)
        if hello.proof is None:
            raise ProtocolError("'hello' message lacks 'proof'")
        if hello.role != Role.AGENT.value or not is_nonce(hello.nonce):
            raise ProtocolError("malformed hello from the agent")
        self._peer_nonce = hello.nonce
        key = self._key if hello.host is None else host_credential(self._key, hello.host)
        c_hello_hash = hashlib.sha256(self._c_hello).digest()
        expected = proof(key, b"netjobs-agent", c_hello_hash, bytes.fromhex(self._peer_nonce))
        if not hmac.compare_digest(expected.encode(), hello.proof.encode("ascii", "replace")):
            if hello.host is None:
                raise AuthenticationFailed("authentication failed: the agent's token differs")
            raise CredentialRefused(
                f"authentication failed: the credential of {hello.host} was not issued by "
                "this controller's token (issued before `netjobs token rotate`, or by another "
                f"controller): run `netjobs token issue {hello.host}` and give its agent the "
                f"new {hello.host}.token"
            )
        if hello.host is not None and (
            self.host is None or host_key(hello.host) != host_key(self.host)
        ):
            raise CredentialRefused(
                f"{self.host or 'an agent started over SSH'} answered with the credential "
                f"of {hello.host}"
            )
        self._key = key
        if self.link:
            self.credential = Credential.LINK
        else:
            self.credential = Credential.SHARED if hello.host is None else Credential.HOST
        self.peer_hello = hello
        transcript = hashlib.sha256(self._c_hello + raw).digest()
        self._queue(Auth(proof=proof(self._key, b"netjobs-controller", transcript)).to_frame())
        self._key_with(raw)  # after the auth: it goes out unsealed, the agent has no keys yet

    def _controller_on_welcome(self, welcome: Message, raw: bytes) -> None:
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
