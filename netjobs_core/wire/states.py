"""The connection's states and the tables that say which message may come when
(see the theory of operation in netjobs_core/wire/connection.py)."""

from __future__ import annotations

import enum

from netjobs_core.wire.messages import (
    Auth,
    Bye,
    Collected,
    Error,
    Exit,
    File,
    FileData,
    FileEnd,
    Finished,
    Hello,
    Kill,
    Message,
    Output,
    Ping,
    Pong,
    Prepare,
    Prepared,
    Resume,
    Resumed,
    Role,
    Shutdown,
    Start,
    Started,
    Status,
    StatusQuery,
    Welcome,
)


class State(enum.Enum):
    """The connection: the handshake, then READY until either side closes."""

    START = "start"  # nothing exchanged yet
    SENT_HELLO = "sent hello"  # our hello is out, waiting for the peer's next step
    SENT_AUTH = "sent auth"  # controller: our proof is out, waiting for welcome
    READY = "ready"  # authenticated both ways: the run phase
    CLOSED = "closed"

    __hash__ = object.__hash__  # as Role's: by identity, in C


class Phase(enum.Enum):
    """Where the run stands on a READY connection (see the theory of operation)."""

    IDLE = "idle"  # nothing prepared on this connection
    PREPARING = "preparing"  # prepare sent, no answer yet
    PREPARED = "prepared"  # the agent holds the commands, gated
    STARTING = "starting"  # start sent, started not yet seen
    RUNNING = "running"  # released: output and exits flow
    CANCELLED = "cancelled"  # ended before its release: exits (killed), then finished
    RESUMING = "resuming"  # resume sent: the agent reattaches a run, then replays it
    CLOSED = "closed"  # bye or an error frame: nothing more either way

    __hash__ = object.__hash__  # as Role's: by identity, in C


# The message each handshake state waits for, and the state it leads to.
HANDSHAKE: dict[Role, dict[State, tuple[type[Message], State]]] = {
    Role.CONTROLLER: {
        State.SENT_HELLO: (Hello, State.SENT_AUTH),
        State.SENT_AUTH: (Welcome, State.READY),
    },
    Role.AGENT: {
        State.START: (Hello, State.SENT_HELLO),
        State.SENT_HELLO: (Auth, State.READY),
    },
}

Row = dict[type[Message], "Phase"]


def _row(phase: Phase, requests: tuple[type[Message], ...], moves: Row) -> Row:
    """A table row: REQUESTS keep the phase; MOVES lead elsewhere."""
    return {**dict.fromkeys(requests, phase), **moves}


_C_ALWAYS = (Ping, StatusQuery, Kill)
_A_ALWAYS = (Pong, Status, Shutdown)
_P = Phase

# TRANSITIONS[sender][phase][message class] -> the phase after it. A class missing
# from a row is out of order there.
TRANSITIONS: dict[Role, dict[Phase, Row]] = {
    Role.CONTROLLER: {
        _P.IDLE: _row(
            _P.IDLE,
            _C_ALWAYS,
            {Prepare: _P.PREPARING, Resume: _P.RESUMING, Bye: _P.CLOSED, Error: _P.CLOSED},
        ),
        _P.RESUMING: _row(_P.RESUMING, _C_ALWAYS, {Bye: _P.CLOSED, Error: _P.CLOSED}),
        _P.PREPARING: _row(_P.PREPARING, _C_ALWAYS, {Bye: _P.CLOSED, Error: _P.CLOSED}),
        _P.PREPARED: _row(
            _P.PREPARED, _C_ALWAYS, {Start: _P.STARTING, Bye: _P.CLOSED, Error: _P.CLOSED}
        ),
        _P.STARTING: _row(_P.STARTING, _C_ALWAYS, {Bye: _P.CLOSED, Error: _P.CLOSED}),
        _P.RUNNING: _row(_P.RUNNING, _C_ALWAYS, {Bye: _P.CLOSED, Error: _P.CLOSED}),
        # start: it crossed the exits of a run killed before its release.
        _P.CANCELLED: _row(
            _P.CANCELLED, _C_ALWAYS, {Start: _P.CANCELLED, Bye: _P.CLOSED, Error: _P.CLOSED}
        ),
        _P.CLOSED: {},
    },
    Role.AGENT: {
        _P.IDLE: _row(_P.IDLE, _A_ALWAYS, {Error: _P.CLOSED}),
        # error: the prepare is refused (busy); the connection goes on.
        _P.PREPARING: _row(_P.PREPARING, _A_ALWAYS, {Prepared: _P.PREPARED, Error: _P.IDLE}),
        # exit/finished without started: killed before the release.
        # resumed: the replay starts as a run does (started, or killed exits).
        _P.RESUMING: _row(_P.RESUMING, _A_ALWAYS, {Resumed: _P.STARTING, Error: _P.CLOSED}),
        _P.PREPARED: _row(
            _P.PREPARED,
            _A_ALWAYS,
            {Started: _P.RUNNING, Exit: _P.CANCELLED, Finished: _P.IDLE, Error: _P.CLOSED},
        ),
        _P.STARTING: _row(
            _P.STARTING,
            _A_ALWAYS,
            {Started: _P.RUNNING, Exit: _P.CANCELLED, Finished: _P.IDLE, Error: _P.CLOSED},
        ),
        _P.RUNNING: _row(
            _P.RUNNING,
            _A_ALWAYS,
            {
                Output: _P.RUNNING,
                Exit: _P.RUNNING,
                File: _P.RUNNING,
                FileData: _P.RUNNING,
                FileEnd: _P.RUNNING,
                Collected: _P.RUNNING,
                Finished: _P.IDLE,
                Error: _P.CLOSED,
            },
        ),
        # collected: of a command that never ran (nothing matched, nothing sent).
        _P.CANCELLED: _row(
            _P.CANCELLED,
            _A_ALWAYS,
            {Exit: _P.CANCELLED, Collected: _P.CANCELLED, Finished: _P.IDLE, Error: _P.CLOSED},
        ),
        _P.CLOSED: {},
    },
}

# An exit in these phases reports a command killed before its release.
UNSTARTED = frozenset({Phase.PREPARED, Phase.STARTING, Phase.CANCELLED})
