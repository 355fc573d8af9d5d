"""Per-host credentials with real agents, each on a loopback address of its own
(127.0.0.2, 127.0.0.3 ... are all loopback on Linux) with its own file, driven by
the real `netjobs` command line: the runs, the forwarder, the cross-agent attack,
rotation, and shared tokens beside them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

import pytest
from agent_harness import start_agent
from test_cli import netjobs

from bench.attack_proxy import AttackProxy
from netjobs_core.wire import sealing, tokens
from netjobs_core.wire.framing import PROTOCOL_VERSION, FrameDecoder, encode_frame
from netjobs_core.wire.messages import Auth, Hello, Prepare, Role

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.posix,
    pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.0/8 is all loopback on Linux"),
]

A, B, C, SHARED = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


@pytest.fixture
def lab(tmp_path):
    """The controller's token and the agent files of A, B and C, as a user makes them."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    controller = tmp_path / "controller.token"
    done = netjobs(
        "token",
        "issue",
        "127.0.0.[2-4]",
        "--out",
        tmp_path / "agents",
        "--token-file",
        controller,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"created the controller's token: token file {controller}" in done.stdout
    return tmp_path, controller, env


def agent_file(tmp_path, host):
    return tmp_path / "agents" / f"{host}.token"


def config(tmp_path, targets, command="echo hi from {host}"):
    lines = ["t:"] + [f'{t}: "{command.format(host=t.split(":")[0])}"' for t in targets] + ["end"]
    path = tmp_path / "run.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(tmp_path, controller, env, targets, command="echo hi from {host}", *extra):
    path = config(tmp_path, targets, command)
    return netjobs(
        path,
        "--token-file",
        controller,
        "--results",
        tmp_path / "runs",
        "--no-history",
        *extra,
        env=env,
    )


async def test_agents_with_their_own_files_and_a_shared_one_run_and_say_which(lab):
    tmp_path, controller, env = lab
    agents = [start_agent(agent_file(tmp_path, A), bind=A)]
    port = agents[0].port  # one port on every address: the report folds them
    agents += [start_agent(agent_file(tmp_path, h), bind=h, port=port) for h in (B, C)]
    agents.append(start_agent(controller, bind=SHARED, port=port))  # a shared token beside
    try:
        for agent, host in zip(agents, (A, B, C), strict=False):
            assert f"(the credential of host {host})" in agent.stdout_text()
        targets = [f"{a.host}:{a.port}" for a in agents]
        done = run(
            tmp_path,
            controller,
            env,
            targets,
            "echo hi from {host}",
            "--no-fold",
            "--json",
            tmp_path / "out.json",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            f"credentials: host credential on 127.0.0.[2-4]:{port} (3 hosts), "
            f"shared token on {SHARED}:{port} (1 host)"
        ) in done.stdout
        # The shared copy voids the others' isolation: the report says so, with the remedy.
        assert (
            f"  warning: {SHARED}:{port} (1 host) holds a copy of the controller's token: a "
            "command there can drive every agent, those with host credentials too; give it "
            f"a file of its own (netjobs token issue {SHARED})\n"
        ) in done.stdout
        document = json.loads((tmp_path / "out.json").read_text())
        kinds = {h["host"]: h["credential"] for h in document["tests"][0]["hosts"]}
        assert kinds == {A: "host", B: "host", C: "host", SHARED: "shared"}
        checked = netjobs("check", tmp_path / "run.cfg", "--token-file", controller, env=env)
        assert checked.returncode == 0, checked.stdout
        lines = checked.stdout.splitlines()
        assert [", host credential, " in line for line in lines[:4]] == [True] * 3 + [False]
        assert ", shared token, " in lines[3]
        # What the warning means: the shared copy derives B's credential, and B obeys.
        shared_copy = tokens.load_token(controller)
        stolen = sealing.host_credential(sealing.token_key(shared_copy.secret), B)
        assert (await handshake_with(port, stolen))["type"] == "welcome"
    finally:
        for agent in agents:
            agent.close()


async def test_a_forwarded_agent_is_refused_and_runs_nothing(lab):
    """B's address leads to A (a forwarder, a moved address, a DNS change)."""
    tmp_path, controller, env = lab
    marker = tmp_path / "ran"
    with start_agent(agent_file(tmp_path, A), bind=A) as agent:
        async with AttackProxy(agent.address, "forward", "") as proxy:
            port = await proxy.start(B)
            done = await asyncio.to_thread(
                run, tmp_path, controller, env, [f"{B}:{port}"], f"touch {marker}"
            )
        assert proxy.connections >= 1  # the forwarder was used
    assert done.returncode == 1
    assert f"{B} answered with the credential of {A}" in done.stdout
    assert not marker.exists()


async def test_an_agent_file_cannot_drive_another_agent(lab):
    """The holder of A's file (a command on A can read it) against B."""
    tmp_path, _, env = lab
    marker = tmp_path / "ran"
    stolen = tokens.load_token(agent_file(tmp_path, A))
    with start_agent(agent_file(tmp_path, B), bind=B) as agent:
        # As a controller's token on the command line: refused before anything is sent.
        done = run(tmp_path, agent_file(tmp_path, A), env, [f"{B}:{agent.port}"], f"touch {marker}")
        assert done.returncode == 2
        assert f"is the credential of the agent on {A}, not the controller's token" in done.stderr
        # Spoken by hand: every key the holder can make from it is refused by B.
        derived = sealing.host_credential(sealing.token_key(stolen.secret), B)
        for key in (stolen.secret, derived):
            reply = await handshake_with(agent.port, key)
            assert reply["type"] == "error" and reply["code"] == "auth", reply
        await agent.await_log("authentication failed")
    assert not marker.exists()


async def handshake_with(port: int, key: bytes) -> dict[str, object]:
    """Play the controller to the agent at B:PORT with KEY; send a prepare right after
    the auth. Returns the agent's answer to the auth (its header)."""
    reader, writer = await asyncio.open_connection(B, port)
    try:
        c_hello = encode_frame(
            Hello(role=Role.CONTROLLER.value, version=PROTOCOL_VERSION, nonce="ab" * 32).to_frame()
        )
        writer.write(c_hello)
        decoder = FrameDecoder()
        async with asyncio.timeout(10):
            while not (raw := decoder.feed(await reader.read(4096))):
                pass
            a_hello = encode_frame(raw[0])
            transcript = hashlib.sha256(c_hello + a_hello).digest()
            proof = sealing.proof(key, b"netjobs-controller", transcript)
            writer.write(encode_frame(Auth(proof=proof).to_frame()))
            writer.write(encode_frame(Prepare(label="x", commands=[]).to_frame()))
            while not (answer := decoder.feed(await reader.read(4096))):
                pass
        return {"type": answer[0].type, **answer[0].fields}
    finally:
        writer.close()


def test_after_rotate_an_old_credential_is_refused_with_how_to_reissue(lab):
    tmp_path, controller, env = lab
    old = agent_file(tmp_path, A).read_text()
    with start_agent(agent_file(tmp_path, A), bind=A) as agent:
        target = [f"{A}:{agent.port}"]
        rotated = netjobs(
            "token", "rotate", "--out", tmp_path / "agents", "--token-file", controller, env=env
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "every agent file issued before is refused" in rotated.stdout
        assert f"wrote {agent_file(tmp_path, C)}" in rotated.stdout  # re-issued: all of them
        assert agent_file(tmp_path, A).read_text() != old
        done = netjobs("check", config(tmp_path, target), "--token-file", controller, env=env)
        assert done.returncode == 1
        assert f"run `netjobs token issue {A}` and give its agent the new {A}.token" in done.stdout
    with start_agent(agent_file(tmp_path, A), bind=A) as agent:  # the new file
        done = netjobs(
            "check", config(tmp_path, [f"{A}:{agent.port}"]), "--token-file", controller, env=env
        )
        assert done.returncode == 0, done.stdout


def test_token_issue_says_what_is_wrong(lab):
    tmp_path, controller, env = lab
    done = netjobs("token", "issue", "node[3-1]", "--token-file", controller, env=env)
    assert done.returncode == 2 and "netjobs: target 'node[3-1]'" in done.stderr
    done = netjobs("token", "issue", "--token-file", controller, env=env)
    assert done.returncode == 2 and "name the TARGETs" in done.stderr
    done = netjobs("token", "issue", A, "--token-file", agent_file(tmp_path, B), env=env)
    assert done.returncode == 2 and f"credential of the agent on {B}" in done.stderr
