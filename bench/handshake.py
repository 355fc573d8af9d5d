#!/usr/bin/env python3
"""The controller's CPU for the handshakes of a fleet: shared token vs host credentials.

Sans-IO (netjobs_core/wire/connection.py), in one process, no sockets: for each of
`--hosts` agents (shared: one token; host: each its own credential, host names
node0001...) it runs a whole handshake and counts, with the thread's CPU clock, only
what the controller's side does (its hello, checking the agent's hello and proof,
deriving the host's credential, its auth, the session keys, checking the welcome).
The once-per-process scrypt of the controller's token is measured on its own, cold.
Rounds alternate the two kinds; the report gives each kind's median round.

    .venv/bin/python bench/handshake.py                 # 1000 hosts, 7 rounds
    .venv/bin/python bench/handshake.py --hosts 200 --rounds 3
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netjobs_core.wire import sealing
from netjobs_core.wire.connection import Connection
from netjobs_core.wire.messages import Role
from netjobs_core.wire.states import State

KINDS = ("shared", "host")


def agents(kind: str, token: bytes, hosts: int) -> list[tuple[str, Connection]]:
    """(target host, the agent's end) for every host; made outside the timing."""
    names = [f"node{i:04d}" for i in range(1, hosts + 1)]
    if kind == "shared":
        return [(name, Connection(Role.AGENT, token)) for name in names]
    key = sealing.token_key(token)
    return [
        (name, Connection(Role.AGENT, sealing.host_credential(key, name), host=name))
        for name in names
    ]


def controller_cpu(kind: str, token: bytes, hosts: int) -> float:
    """Seconds of this thread's CPU the controller's ends took, all hosts together."""
    spent = 0
    for name, agent in agents(kind, token, hosts):
        start = time.thread_time_ns()
        controller = Connection(Role.CONTROLLER, token, host=name)
        c_hello = controller.data_to_send()
        spent += time.thread_time_ns() - start
        agent.receive_data(c_hello)
        a_hello = agent.data_to_send()
        start = time.thread_time_ns()
        controller.receive_data(a_hello)
        auth = controller.data_to_send()
        spent += time.thread_time_ns() - start
        agent.receive_data(auth)
        welcome = agent.data_to_send()
        start = time.thread_time_ns()
        controller.receive_data(welcome)
        spent += time.thread_time_ns() - start
        assert controller.state is State.READY and controller.credential == kind
    return spent / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    token = secrets.token_urlsafe(32).encode()
    start = time.thread_time_ns()
    sealing.token_key(token)  # cold: the one scrypt of this process and token
    scrypt_s = (time.thread_time_ns() - start) / 1e9
    rounds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for i in range(args.rounds):
        for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
            rounds[kind].append(controller_cpu(kind, token, args.hosts))
    print(f"controller CPU for the handshakes of {args.hosts} hosts, median of {args.rounds}")
    print("(thread CPU time; the token's scrypt is paid once per process, before)\n")
    print("| credential | all hosts | per handshake | min..max round |")
    print("|---|---|---|---|")
    medians = {}
    for kind, values in rounds.items():
        medians[kind] = median = statistics.median(values)
        print(
            f"| {kind} | {median * 1e3:.1f} ms | {median / args.hosts * 1e6:.1f} µs "
            f"| {min(values) * 1e3:.1f}..{max(values) * 1e3:.1f} ms |"
        )
    added = medians["host"] - medians["shared"]
    print(f"\nhost credentials add {added * 1e3:.1f} ms for {args.hosts} hosts")
    print(f"the token's scrypt, once per process: {scrypt_s * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
