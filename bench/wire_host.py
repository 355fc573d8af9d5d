#!/usr/bin/env python3
"""The wire layer's share of a host's cost to the controller, without sockets.

One host's whole exchange of a one-command test, as `bench/scale.py`'s hosts have it,
between a controller `Connection` and an agent `Connection` in memory (sans-IO: no
event loop, no system calls): the hellos, the auth with the first ping and the prepare
queued behind it, the welcome, pong and prepared, a second ping, start, the agent's
started / output / exit / finished, bye. Only the controller's side is timed (its
connection made, its sends, `data_to_send`, `receive_data`), in this thread's CPU time;
the agent's side is done outside the clock. Prints the controller's wire CPU per host in µs, best of
`--repeats` rounds of `--hosts` hosts, and the same for the messages' parts alone.

    .venv/bin/python bench/wire_host.py                  # 2000 hosts x 9 rounds, ~10 s
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from netjobs_core.wire.clock import now_ns  # noqa: E402
from netjobs_core.wire.connection import Connection  # noqa: E402
from netjobs_core.wire.messages import (  # noqa: E402
    Bye,
    Exit,
    Finished,
    Output,
    Ping,
    Pong,
    Prepare,
    Prepared,
    Role,
    Start,
    Started,
)

STDOUT = b"1764897600123456789\n"  # what `date +%s%N` prints


def one_host(token: bytes) -> float:
    """The controller's CPU seconds for one host's exchange."""
    clock = time.thread_time
    spent = 0.0

    t = clock()
    controller = Connection(Role.CONTROLLER, token)
    hello = controller.data_to_send()
    spent += clock() - t
    agent = Connection(Role.AGENT, token)
    agent.receive_data(hello)
    reply = agent.data_to_send()

    def deliver(data: bytes | bytearray) -> None:
        nonlocal spent
        t = clock()
        controller.receive_data(data)
        spent += clock() - t

    def send(*messages: object) -> bytes | bytearray:
        nonlocal spent
        t = clock()
        for message in messages:
            controller.send(message)  # type: ignore[arg-type]
        data = controller.data_to_send()
        spent += clock() - t
        return data

    env = {
        "NETJOBS_TEST": "t",
        "NETJOBS_HOST": "127.0.0.1:16200",
        "NETJOBS_INDEX": "0",
        "NETJOBS_COUNT": "1000",
        "NETJOBS_COMMAND_INDEX": "0",
        "NETJOBS_RUN_ID": "r" * 16,
    }
    command = {"id": 0, "command": "date +%s%N", "timeout": None, "env": env, "collect": None}
    prepare = Prepare(label="t", commands=[command], grace=None, heartbeat=10.0, collect_max=None)
    deliver(reply)  # the agent's hello and proof; the auth is queued
    queued = send(Ping(seq=1), prepare)  # behind the auth, as the runner sends them
    for message in agent.receive_data(queued):
        if isinstance(message, Ping):
            agent.send(
                Pong(seq=message.seq, clock=now_ns(), wall=time.time_ns(), received=now_ns())
            )
    agent.send(
        Prepared(
            gated=True,
            commands=[{"id": 0, "ok": True, "error": None}],
            run_id="r",
            grace=60.0,
            hostname="host",
            version="3.2.0",
            platform="Linux",
        )
    )
    deliver(agent.data_to_send())  # welcome, pong, prepared
    agent.receive_data(send(Ping(seq=2)))
    agent.send(Pong(seq=2, clock=now_ns(), wall=time.time_ns(), received=now_ns()))
    deliver(agent.data_to_send())
    agent.receive_data(send(Start(at=now_ns() + 10**8, wake=None)))
    at = now_ns()
    agent.send(Started(released_at={"0": at}, late_ns=1000, exec_at={"0": at + 500}))
    deliver(agent.data_to_send())
    agent.send(Output(id=0, stream="stdout", body=STDOUT, at=0))
    agent.send(Exit(id=0, status="ok", exit_code=0, ended_at=now_ns(), message=""))
    agent.send(Finished())
    deliver(agent.data_to_send())
    agent.receive_data(send(Bye()))
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    token = secrets.token_bytes(32)
    one_host(token)  # the token's scrypt, once (cached), outside the rounds
    rounds = []
    for _ in range(args.repeats):
        rounds.append(sum(one_host(token) for _ in range(args.hosts)) / args.hosts)
    rounds.sort()
    print(
        f"controller's wire CPU per host: best {rounds[0] * 1e6:.1f} µs, "
        f"median {rounds[len(rounds) // 2] * 1e6:.1f} µs ({args.repeats} rounds of {args.hosts})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
