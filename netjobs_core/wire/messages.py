"""The protocol's messages: one frozen dataclass per message type, with its bounds.

A class's fields are the JSON keys of its frame header, in the order they are
sent; `Output` and `FileData` carry their bytes as the frame body. The field
annotations are the schema: the accepted types, a `Bounded` range for numbers
(`Annotated[int, Bounded(...)]`), and `| None` for an optional field (sent as
null unless marked `OMITTED`, then left out). `check_fields` holds a received
header to that schema before any message is built, and each class's `check`
adds the rules a type cannot say. Both directions go through the same checks.
"""

# No `from __future__ import annotations`: the field annotations are read at run time.
import dataclasses
import enum
import math
import re
import reprlib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    NamedTuple,
    NotRequired,
    TypedDict,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
)

from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.framing import Frame
from netjobs_core.wire.status import ENDS


class Role(enum.Enum):
    CONTROLLER = "controller"
    AGENT = "agent"

    # Members are compared by identity, so hashed by it: Enum's own __hash__ is a
    # Python call, and every frame looks its sender up by role (and states by phase).
    __hash__ = object.__hash__


@dataclass(frozen=True)
class Bounded:
    """A number field: its types and inclusive finite bounds (NaN and the infinities,
    which json.loads takes, fall outside any)."""

    types: tuple[type, ...]
    low: int | float
    high: int | float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("a Bounded's bounds are finite")


OMITTED = "omitted when None"  # field marker: an absent value is left out of the header


@dataclass(frozen=True)
class Text:
    """A text field's bound in characters. A longer text is cut to it with a visible
    mark (`cut`), on sending and on receiving, so what a peer legitimately says is
    never lost silently; an identifier (`refuse`), which a cut would make another
    one, is refused instead."""

    limit: int
    refuse: bool = False


MAX_NAME_CHARS = 256  # a host name, a version, a platform, a code, a run's name
MAX_MESSAGE_CHARS = 4096  # an error, an exit's message, a reason
Name = Annotated[str, Text(MAX_NAME_CHARS)]
Words = Annotated[str, Text(MAX_MESSAGE_CHARS)]
RunId = Annotated[str, Text(MAX_NAME_CHARS, refuse=True)]


def cut(value: str, limit: int) -> str:
    """VALUE in at most LIMIT characters: its head and how many were cut
    (`abc…(+261900 characters)`)."""
    if len(value) <= limit:
        return value
    kept = max(0, limit - len(f"…(+{len(value)} characters)"))
    return f"{value[:kept]}…(+{len(value) - kept} characters)"


MAX_CLOCK = 2**63 - 1  # clock readings in ns, as int64: arithmetic on them stays finite
MAX_TIMEOUT_S = 1e9  # ~31 years; in ns still within int64
MAX_GRACE_S = 7 * 86400.0  # a silently lost controller's run is kept at most a week
COMMAND_ID = Bounded((int,), 0, 2**31 - 1)
_CLOCK = Bounded((int,), 0, MAX_CLOCK)
_OFFSET = Bounded((int,), 0, 2**63 - 1)  # bytes of a stream or a file
_TIMEOUT = Bounded((int, float), 0, MAX_TIMEOUT_S)
MAX_WAKE_NS = 1_000_000_000  # the earliest a controller may have an agent wake for a start
_WAKE = Bounded((int,), 0, MAX_WAKE_NS)
_SIGNED_CLOCK = Bounded((int,), -MAX_CLOCK, MAX_CLOCK)
CommandId = Annotated[int, COMMAND_ID]
Clock = Annotated[int, _CLOCK]
SeqNo = Annotated[int, Bounded((int,), 0, 2**63 - 1)]
Offset = Annotated[int, _OFFSET]
# Windows exit codes are unsigned 32-bit; POSIX reports a signal as its negative.
ExitCode = Annotated[int, Bounded((int,), -(2**31), 2**32 - 1)]
Timeout = Annotated[float, _TIMEOUT]
Grace = Annotated[float, Bounded((int, float), 0, MAX_GRACE_S)]
Heartbeat = Annotated[float, Bounded((int, float), 0.01, 3600)]

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
PatternIndex = Annotated[int, Bounded((int,), 0, MAX_COLLECT_PATTERNS - 1)]
STREAMS = frozenset({"stdout", "stderr"})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# A host part as a target writes it (a name, IPv4, IPv6 without brackets); a DNS name's length.
HOST_NAME_RE = re.compile(r"[A-Za-z0-9._:-]{1,253}")

# Field name -> accepted types or Bounded; a trailing "?" means optional (None allowed).
Spec = tuple[type, ...] | Bounded
Schema = dict[str, Spec]


class FieldCheck(NamedTuple):
    """One field of a Schema as `check_fields` runs it: worked out once, not per frame."""

    name: str
    optional: bool
    types: tuple[type, ...]
    bool_ok: bool  # bool is an int subclass; keep the two apart
    bounded: bool  # a number within low..high
    low: int | float
    high: int | float


Checks = tuple[FieldCheck, ...]


def compile_schema(schema: Schema) -> Checks:
    """SCHEMA as the checks `check_fields` runs."""
    checks = []
    for key, spec in schema.items():
        name, optional = key.rstrip("?"), key.endswith("?")
        if isinstance(spec, Bounded):
            check = FieldCheck(
                name, optional, spec.types, bool in spec.types, True, spec.low, spec.high
            )
        else:
            check = FieldCheck(name, optional, spec, bool in spec, False, 0, 0)
        checks.append(check)
    return tuple(checks)


def check_fields(kind: str, fields: Mapping[str, Any], checks: Checks) -> None:
    """FIELDS (of a KIND message or item) hold to CHECKS; unknown keys are let through."""
    get = fields.get
    for name, optional, types_, bool_ok, bounded, low, high in checks:
        value = get(name)
        if value is None:
            if optional:
                continue
            raise ProtocolError(f"{kind!r} message lacks {name!r}")
        if not isinstance(value, types_) or (value.__class__ is bool and not bool_ok):
            raise ProtocolError(f"{kind!r} message has a bad {name!r}")
        # Exact for ints of any size; False for NaN and for an infinity (finite bounds).
        if bounded and not low <= value <= high:  # type: ignore[operator]
            raise ProtocolError(f"{kind!r} message has an out-of-range {name!r}")


# -- nested items (plain dicts on the wire) -------------------------------------------
class CommandItem(TypedDict):
    """One command of a `prepare`."""

    id: int
    command: str
    timeout: NotRequired[float | None]  # seconds from the release; None: no limit
    env: NotRequired[dict[str, str] | None]  # NETJOBS_* names only
    collect: NotRequired[list[str] | None]  # patterns of files to send after its end


class PreparedItem(TypedDict):
    """How one command of a `prepare` went."""

    id: int
    ok: bool
    error: str | None


class OffsetsItem(TypedDict):
    """How many bytes of each stream of a command a resuming controller holds."""

    id: int
    stdout: int
    stderr: int


_COMMAND_ITEM = compile_schema(
    {
        "id": COMMAND_ID,
        "command": (str,),
        "timeout?": _TIMEOUT,
        "env?": (dict,),
        "collect?": (list,),
    }
)
_PREPARED_ITEM = compile_schema({"id": COMMAND_ID, "ok": (bool,), "error?": (str,)})
_OFFSETS_ITEM = compile_schema({"id": COMMAND_ID, "stdout": _OFFSET, "stderr": _OFFSET})
# `started`: each command's clock reading, checked as a field of that name.
_CLOCK_OF = {name: compile_schema({name: _CLOCK}) for name in ("released_at", "exec_at")}


# -- the messages ---------------------------------------------------------------------
_M = TypeVar("_M", bound="Message")
# Per message class: its fields in order, and the defaults of those that have one.
_INIT: dict[type, tuple[tuple[str, ...], dict[str, Any]]] = {}


@dataclass_transform(frozen_default=True, kw_only_default=True)
def message_type(cls: type[_M]) -> type[_M]:
    """A message class: a dataclass with frozen, keyword-only fields (as type checkers
    see it), with Message's __init__, repr, == and hash and its frozenness.

    `@dataclass(frozen=True)` would compile __init__, __setattr__ and __delattr__ for
    each of the 26 classes at every import (~80 snippets, ~6 ms of each agent's start
    over SSH, 8 of them sharing a host's CPUs in a cold run): here the dataclass
    machinery only collects the fields (`dataclasses.fields` and `replace` work as
    before), and Message's methods, written once, do the rest."""
    cls = dataclass(init=False, kw_only=True, repr=False, eq=False)(cls)
    fields = dataclasses.fields(cls)
    if any(item.default_factory is not dataclasses.MISSING for item in fields):
        raise TypeError(f"{cls.__qualname__}: message fields take plain defaults only")
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    _INIT[cls] = tuple(item.name for item in fields), defaults
    return cls


@message_type
class Message:
    """A message type: TYPE is its "type" on the wire; the fields are its header's keys.

    __init__ takes the fields by keyword (a missing or unknown one: TypeError); repr,
    == and hash are the ones `@dataclass(frozen=True)` would write; assigning to or
    deleting an attribute raises `dataclasses.FrozenInstanceError`."""

    TYPE: ClassVar[str]

    def __init__(self, **values: Any) -> None:
        names, defaults = _INIT[type(self)]
        into = self.__dict__
        given = 0
        for name in names:
            if name in values:
                into[name] = values[name]
                given += 1
            elif name in defaults:
                into[name] = defaults[name]
            else:
                missing = [repr(n) for n in names if n not in values and n not in defaults]
                raise TypeError(
                    f"{type(self).__qualname__}.__init__() missing {len(missing)} required"
                    f" keyword-only argument(s): {', '.join(missing)}"
                )
        if given < len(values):
            unknown = next(name for name in values if name not in into)
            raise TypeError(
                f"{type(self).__qualname__}.__init__() got an unexpected keyword argument"
                f" {unknown!r}"
            )

    if not TYPE_CHECKING:  # type checkers know the fields as frozen already

        def __setattr__(self, name: str, value: Any) -> None:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _names(type(self)))
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _names(type(self)))

    def check(self) -> None:
        """The rules beyond the fields' types and bounds (ProtocolError if broken)."""

    def to_frame(self) -> Frame:
        fields = {}
        for name, omitted in _header_fields(type(self)):
            value = getattr(self, name)
            if value is not None or not omitted:
                fields[name] = value
        return Frame(self.TYPE, fields, getattr(self, "body", b""))


def _names(cls: type[Message]) -> tuple[str, ...]:
    """CLS's fields, in order (what its repr shows, == compares, hash hashes)."""
    return _INIT[cls][0]


# The handshake (and `error`, which either side may send at any time).
@message_type
class Hello(Message):
    """Each side's first message: its role, the protocol version, a fresh nonce."""

    TYPE = "hello"
    role: str
    version: int
    nonce: str
    proof: Annotated[str | None, OMITTED] = None  # the agent's; the controller's comes in auth
    # The agent's: the host its own credential is for; absent: it holds the shared token.
    host: Annotated[str | None, OMITTED] = None

    def check(self) -> None:
        if self.host is not None and HOST_NAME_RE.fullmatch(self.host) is None:
            raise ProtocolError("'hello' message has a bad 'host'")


@message_type
class Auth(Message):
    """The controller's proof that it holds the token, after the agent's hello."""

    TYPE = "auth"
    proof: str


@message_type
class Welcome(Message):
    """The agent accepted the controller's proof."""

    TYPE = "welcome"


@message_type
class Error(Message):
    """Either side, at any time: what went wrong, as a code and a message."""

    TYPE = "error"
    code: Name
    message: Words


# What a controller may send once authenticated.
@message_type
class Ping(Message):
    """The controller's: answered with a pong (clock samples, liveness)."""

    TYPE = "ping"
    seq: SeqNo


@message_type
class StatusQuery(Message):
    """The controller asks what the agent is doing."""

    TYPE = "status"


@message_type
class Prepare(Message):
    """grace: seconds the agent keeps the run for a silently lost controller (None:
    the agent's default); heartbeat: the controller pings this often during the run,
    so the agent can tell a silent controller; collect_max: the largest file a
    collect pattern may bring back (None: no file is too large)."""

    TYPE = "prepare"
    label: str
    commands: list[CommandItem]
    grace: Grace | None = None
    heartbeat: Heartbeat | None = None
    collect_max: Offset | None = None

    def check(self) -> None:
        ids = set()
        for item in self.commands:
            if not isinstance(item, dict):
                raise ProtocolError("'prepare' commands must be objects")
            check_fields("prepare", item, _COMMAND_ITEM)
            _check_env(item.get("env") or {})
            _check_patterns(item.get("collect") or [])
            if item["id"] in ids:
                raise ProtocolError(f"'prepare' repeats command id {item['id']}")
            ids.add(item["id"])


@message_type
class Resume(Message):
    """On a new connection after a silent loss: the run, and per command how many
    bytes of each stream the controller holds."""

    TYPE = "resume"
    run_id: RunId
    offsets: list[OffsetsItem]

    def check(self) -> None:
        ids = set()
        for item in self.offsets:
            if not isinstance(item, dict):
                raise ProtocolError("'resume' offsets must be objects")
            check_fields("resume", item, _OFFSETS_ITEM)
            if item["id"] in ids:
                raise ProtocolError("'resume' repeats command id {}".format(item["id"]))
            ids.add(item["id"])


@message_type
class Start(Message):
    """at: the release instant on the agent's clock (ns), None: now; wake: how long
    before it the agent should leave its coarse sleep (ns), learned by the controller
    from the agent's late releases (None: the agent's own margin; agents before it
    ignore it)."""

    TYPE = "start"
    at: Clock | None = None
    wake: Annotated[Annotated[int, _WAKE] | None, OMITTED] = None


@message_type
class Kill(Message):
    """The controller ends the test early; reason: why, for the agent's log."""

    TYPE = "kill"
    reason: Words


@message_type
class Bye(Message):
    """The controller ends the session."""

    TYPE = "bye"


# What an agent sends once the controller is authenticated.
@message_type
class Pong(Message):
    """wall: the agent's wall clock (epoch ns) read with `clock`, for the wall-clock
    offset users read (agents before it leave it out); received: when the ping
    arrived, the kernel's stamp, where there is one."""

    TYPE = "pong"
    seq: SeqNo
    clock: Clock
    wall: Clock | None = None
    received: Annotated[Clock | None, OMITTED] = None


@message_type
class Status(Message):
    """The agent's answer to a status query. realtime: whether it waits for its
    releases at real-time priority; controller: when busy, the address (as the agent
    sees it) of the controller whose test it runs; kept: when that controller went
    silent, how many more seconds the agent keeps its test for a resume (agents before
    them leave these out)."""

    TYPE = "status"
    busy: bool
    label: Name | None = None  # of the test it runs, when busy
    hostname: Name
    version: Name
    platform: Name
    realtime: Annotated[bool | None, OMITTED] = None
    controller: Annotated[Name | None, OMITTED] = None
    kept: Annotated[Grace | None, OMITTED] = None


@message_type
class Prepared(Message):
    """gated: spawned and waiting for the release, so the start costs no process
    spawn; run_id names the run in a later `resume`; grace: what the agent keeps it for.
    Then what its `status` would say of the agent (agents before them leave them out):
    a controller that sent the prepare along with its auth asks no status."""

    TYPE = "prepared"
    gated: bool
    commands: list[PreparedItem]
    run_id: RunId
    grace: Grace
    hostname: Annotated[Name | None, OMITTED] = None
    version: Annotated[Name | None, OMITTED] = None
    platform: Annotated[Name | None, OMITTED] = None

    def check(self) -> None:
        """Each item as PreparedItem says, its error cut to MAX_MESSAGE_CHARS (in place:
        the items are the frame's)."""
        for item in self.commands:
            if not isinstance(item, dict):
                raise ProtocolError("'prepared' commands must be objects")
            check_fields("prepared", item, _PREPARED_ITEM)
            error = item.get("error")
            if error is not None:
                item["error"] = cut(error, MAX_MESSAGE_CHARS)


@message_type
class Resumed(Message):
    """The run is attached to this connection; the agent replays the run's messages
    (started, output past the offsets, exits, finished) and goes on live."""

    TYPE = "resumed"
    run_id: RunId


@message_type
class Shutdown(Message):
    """The agent is stopping (SIGTERM, Ctrl-C): it kills the runs it holds."""

    TYPE = "shutdown"
    reason: Words


@message_type
class Started(Message):
    """released_at: agent clock (ns) right before each command was let go, by command
    id (a string: JSON keys); late_ns: how far past the requested instant the
    first release happened. Then what agents before them leave out: exec_at, by
    command id, the kernel's stamp (agent clock) of the command's first exec after
    its release (a command that never exec'd has none); exec_error: why the agent
    measures no exec instant at all; ahead_ns: how long before the requested instant
    the `start` reached the agent (negative: after it)."""

    TYPE = "started"
    released_at: dict[str, int]
    late_ns: Clock
    exec_at: Annotated[dict[str, int] | None, OMITTED] = None
    exec_error: Annotated[Words | None, OMITTED] = None
    ahead_ns: Annotated[Annotated[int, _SIGNED_CLOCK] | None, OMITTED] = None

    def check(self) -> None:
        for name, stamps in (("released_at", self.released_at), ("exec_at", self.exec_at)):
            for key, value in (stamps or {}).items():
                if not key.isdecimal() or len(key) > 10:
                    raise ProtocolError(f"'started' names a bad command id {key[:20]!r}")
                check_fields("started", {name: value}, _CLOCK_OF[name])


@message_type
class Output(Message):
    """at: the byte of the stream this body starts at, sent only when it is not where
    the previous body ended: the bytes in between are lost (the agent streamed them
    without its spool and a cut lost them, or its spool could not be read back).
    A controller from before it appends the body where it is."""

    TYPE = "output"
    id: CommandId
    stream: str
    body: bytes = b""
    at: Annotated[Offset | None, OMITTED] = None

    def check(self) -> None:
        if self.stream not in STREAMS:
            raise ProtocolError(f"'output' message has an unknown stream {self.stream[:50]!r}")


@message_type
class Exit(Message):
    """status: one of wire.status.ENDS; message: what only the agent knows in words (a
    kill reason, a signal), empty for a timeout, whose `timeout` is the limit in seconds
    (agents from before it sent a sentence instead); spool_error: an errno name, with
    ERROR and an empty message: the agent's disk failed under the command's output
    spool, so its output is not whole."""

    TYPE = "exit"
    id: CommandId
    status: str
    exit_code: ExitCode | None = None
    ended_at: Clock | None = None
    message: Words
    timeout: Annotated[Timeout | None, OMITTED] = None
    spool_error: Annotated[Name | None, OMITTED] = None

    def check(self) -> None:
        if self.status not in ENDS:
            raise ProtocolError(f"'exit' message has an unknown status {self.status[:50]!r}")


@message_type
class File(Message):
    """A collected file of command `id`, matched by its collect pattern number
    `pattern`: the header, the bytes in `file_data` bodies, then `file_end`."""

    TYPE = "file"
    id: CommandId
    pattern: PatternIndex
    name: str
    size: Offset

    def check(self) -> None:
        """A base name, never a path: the controller saves it in a folder of its own."""
        name = self.name
        if (
            not name
            or len(name) > MAX_FILE_NAME
            or name in (".", "..")
            or any(ch in name for ch in "/\\\0")
        ):
            raise ProtocolError(f"'file' message has a bad name {name[:50]!r}")


@message_type
class FileData(Message):
    """Bytes of a collected file, as the frame body."""

    TYPE = "file_data"
    id: CommandId
    body: bytes = b""


class FileError(enum.StrEnum):
    """Why a collected file was not sent whole: the code a `file_end` carries."""

    UNREADABLE = "unreadable"  # it could not be opened (os_error says why)
    NOT_REGULAR = "not-regular"  # no longer a regular file when opened
    TOO_LARGE = "too-large"  # `size` (of `file`) over `limit`
    READ_FAILED = "read-failed"  # a read failed after `bytes` (os_error says why)
    GREW = "grew"  # it grew past `limit` while being read
    # Written to while being read (its size or times moved, or the read found another
    # size): `size` of `file_end` is its size when the read ended. Controllers from
    # before the code show it as it is ("changed") and keep none of it, as any error.
    CHANGED = "changed"


@message_type
class FileEnd(Message):
    """bytes: how many were sent; error: why the copy stopped or never began, a
    FileError code (agents before the codes sent a sentence); limit, os_error (an
    errno name), size (with CHANGED: the file's size when the read ended): the facts
    that go with it. A file with an error is incomplete and not kept."""

    TYPE = "file_end"
    id: CommandId
    bytes: Offset
    sha256: str
    error: Annotated[Name | None, OMITTED] = None
    limit: Annotated[Offset | None, OMITTED] = None
    os_error: Annotated[Name | None, OMITTED] = None
    size: Annotated[Offset | None, OMITTED] = None

    def check(self) -> None:
        if _SHA256_RE.fullmatch(self.sha256) is None:
            raise ProtocolError("'file_end' message has a bad 'sha256'")


@message_type
class Collected(Message):
    """After a command's files: how many each of its patterns matched (empty:
    nothing was collected, the command never ran)."""

    TYPE = "collected"
    id: CommandId
    matched: list[int]

    def check(self) -> None:
        if len(self.matched) > MAX_COLLECT_PATTERNS:
            raise ProtocolError("'collected' message has too many counts")
        for value in self.matched:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
                raise ProtocolError("'collected' message has a bad count")


@message_type
class Finished(Message):
    """The agent's last message of a run: every command of it has ended."""

    TYPE = "finished"


def _by_type(*classes: type[Message]) -> dict[str, type[Message]]:
    return {cls.TYPE: cls for cls in classes}


HANDSHAKE_MESSAGES = _by_type(Hello, Auth, Welcome, Error)
# What each role may send once authenticated, by "type".
SENT_BY: dict[Role, dict[str, type[Message]]] = {
    Role.CONTROLLER: _by_type(Ping, StatusQuery, Prepare, Resume, Start, Kill, Bye, Error),
    Role.AGENT: _by_type(
        Pong,
        Status,
        Prepared,
        Resumed,
        Shutdown,
        Started,
        Output,
        Exit,
        File,
        FileData,
        FileEnd,
        Collected,
        Finished,
        Error,
    ),
}


# -- the schemas, read from the annotations -------------------------------------------
def _spec(hint: Any) -> tuple[Spec, bool, bool, Text | None]:
    """A field annotation's (spec, optional, omitted, text bound)."""
    optional = omitted = False
    bounded: Bounded | None = None
    text: Text | None = None
    while True:
        origin = get_origin(hint)
        if origin is Annotated:
            for extra in hint.__metadata__:
                if isinstance(extra, Bounded):
                    bounded = extra
                elif isinstance(extra, Text):
                    text = extra
                omitted = omitted or extra is OMITTED
            hint = hint.__origin__
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(hint) if arg is not type(None)]
            optional = True
            (hint,) = rest
        else:
            break
    if bounded is not None:
        return bounded, optional, omitted, text
    return (origin or hint,), optional, omitted, text


class _Shape(NamedTuple):
    """What a message class's frames hold, worked out once from its annotations."""

    checks: Checks
    header: tuple[tuple[str, bool], ...]  # (field, omitted when None), in order
    body: bool
    texts: tuple[tuple[str, Text], ...]  # the bounded text fields


def _derive(cls: type[Message]) -> _Shape:
    """CLS's field checks, its header fields (name, omitted when None), whether it has
    a body, its bounded text fields."""
    schema: Schema = {}
    header: list[tuple[str, bool]] = []
    texts: list[tuple[str, Text]] = []
    body = False
    for item in dataclasses.fields(cls):
        if item.name == "body":
            body = True
            continue
        spec, optional, omitted, text = _spec(item.type)
        schema[item.name + ("?" if optional else "")] = spec
        header.append((item.name, omitted))
        if text is not None:
            texts.append((item.name, text))
    return _Shape(compile_schema(schema), tuple(header), body, tuple(texts))


_SHAPES = {
    cls: _derive(cls) for table in (HANDSHAKE_MESSAGES, *SENT_BY.values()) for cls in table.values()
}


def _header_fields(cls: type[Message]) -> tuple[tuple[str, bool], ...]:
    return _SHAPES[cls].header


def check(message: Message, allowed: Mapping[str, type[Message]]) -> Frame:
    """MESSAGE as its frame, once it holds to every rule (ProtocolError if not)."""
    if allowed.get(message.TYPE) is not type(message):
        raise ProtocolError(f"unexpected message {message.TYPE!r}")
    frame = message.to_frame()
    shape = _SHAPES[type(message)]
    check_fields(frame.type, frame.fields, shape.checks)
    _bound_texts(frame.type, frame.fields, shape.texts)
    message.check()
    return frame


def _bound_texts(kind: str, fields: dict[str, Any], texts: tuple[tuple[str, Text], ...]) -> None:
    """Cut the (checked) text FIELDS of a KIND message to their bounds, in place; an
    identifier too long is a ProtocolError."""
    for name, bound in texts:
        value = fields.get(name)
        if value is not None and len(value) > bound.limit:
            if bound.refuse:
                raise ProtocolError(
                    f"{kind!r} message has a {name!r} over {bound.limit} characters"
                )
            fields[name] = cut(value, bound.limit)


def decode(frame: Frame, allowed: Mapping[str, type[Message]]) -> Message:
    """The message of a received FRAME, of one of the ALLOWED types, fully checked."""
    cls = allowed.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unexpected message {frame.type[:50]!r}")
    checks, header, body, texts = _SHAPES[cls]
    fields = frame.fields
    check_fields(frame.type, fields, checks)
    # Every field is given (an absent one as None): no need for __init__'s defaults.
    message = cls.__new__(cls)
    values = message.__dict__
    for name, _ in header:
        values[name] = fields.get(name)
    if body:
        values["body"] = frame.body
    if texts:
        _bound_texts(frame.type, values, texts)
    message.check()
    return message


# Env names that passed the check: every prepare names the same few (host_run.py), so a
# name's pattern match is made once, not per command; bounded against a peer that names
# ever new ones.
_ENV_NAMES_OK: set[str] = set()


def _check_env(env: dict[str, Any]) -> None:
    if len(env) > MAX_ENV_VARS:
        raise ProtocolError(f"'prepare' env has more than {MAX_ENV_VARS} variables")
    for name, value in env.items():
        if name not in _ENV_NAMES_OK:
            if ENV_NAME_RE.fullmatch(name) is None or name in RESERVED_ENV:
                raise ProtocolError(
                    f"'prepare' env may not set {name[:50]!r}: only NETJOBS_* names"
                )
            if len(_ENV_NAMES_OK) < 4 * MAX_ENV_VARS:
                _ENV_NAMES_OK.add(name)
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
