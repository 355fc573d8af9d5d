"""Fleet-sized tests on real agents: node-set targets, the NETJOBS_* environment
of every command, files collected after the commands (also after a timeout or a kill)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from agent_harness import AgentClient, free_port, start_agent

from netjobs_core.config import parse_config
from netjobs_core.links import Links
from netjobs_core.report import format_test
from netjobs_core.results import CommandStatus, StartMode, TestStatus
from netjobs_core.results_json import load_json, write_json
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, _TestRun
from netjobs_core.wire.framing import Frame
from netjobs_core.wire.messages import File, FileData, FileEnd

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

HOSTS = 4
FIRST = 41  # the agents listen on 127.0.0.41-44, one port: a real range of addresses


@pytest.fixture(scope="module")
def fleet(token_file):
    """Four agents on 127.0.0.[41-44], all on one port."""
    port = free_port()
    started = []
    try:
        for i in range(HOSTS):
            started.append(start_agent(token_file, port=port, bind=f"127.0.0.{FIRST + i}"))
        yield port
    finally:
        for agent in started:
            agent.close()


def _env_lines(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)


async def _run(text: str, token, tmp_path: Path, **kwargs):
    plan = parse_config(text, "fleet.cfg")
    folder = RunFolder.create(tmp_path / "runs")
    runner = Runner(
        plan, RunOptions(token=token.token, connect_timeout=5.0, run_folder=folder, **kwargs)
    )
    run = await runner.run()
    return run, folder


async def test_every_host_of_a_range_knows_its_place(fleet, token, tmp_path):
    text = (
        "t:\n"
        f'127.0.0.[{FIRST}-{FIRST + HOSTS - 1}]:{fleet}: "env; echo second >&2"\n'
        "-timeout: 30s\n"
        f'127.0.0.{FIRST}:{fleet}: "env"\n'
        "end\n"
    )
    run, folder = await _run(text, token, tmp_path)
    [test] = run.tests
    assert test.status is TestStatus.PASSED, test.reason
    assert [h.target for h in test.hosts] == [f"127.0.0.{FIRST + i}:{fleet}" for i in range(HOSTS)]
    assert test.scheduled_start is not None
    for index, host in enumerate(test.hosts):
        for number, command in enumerate(host.commands):
            env = _env_lines(command.stdout.read_bytes())
            assert command.timeout == (30.0 if number == 0 else None)
            assert env["NETJOBS_TEST"] == "t"
            assert env["NETJOBS_HOST"] == host.target
            assert env["NETJOBS_INDEX"] == str(index)
            assert env["NETJOBS_COUNT"] == str(HOSTS)
            assert env["NETJOBS_COMMAND_INDEX"] == str(number)
            assert env["NETJOBS_RUN_ID"] == run.run_id == folder.run_id
            assert "NETJOBS_TOKEN" not in env  # the secret never reaches a command
            # Same machine, same wall clock: the agent's instant is the scheduled one.
            start = int(env["NETJOBS_START_EPOCH_NS"]) / 1e9
            assert start == pytest.approx(test.scheduled_start, abs=0.02)
            assert command.started_at is not None and command.started_at >= start - 0.02


async def test_sequential_start_gives_the_actual_release(fleet, token, tmp_path):
    text = f't:\n127.0.0.[{FIRST}-{FIRST + 1}]:{fleet}: "echo $NETJOBS_START_EPOCH_NS"\nend\n'
    run, _ = await _run(text, token, tmp_path, start_mode=StartMode.SEQUENTIAL)
    [test] = run.tests
    assert test.status is TestStatus.PASSED, test.reason
    for host in test.hosts:
        [command] = host.commands
        start = int(command.stdout.read_bytes()) / 1e9
        assert command.started_at == pytest.approx(start, abs=0.02)


MIB = 1024 * 1024


async def test_files_come_back_from_every_host(fleet, token, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    sizes = [3 * MIB + i * 4099 for i in range(HOSTS)]  # several MiB, not a chunk multiple
    lines = ["fleet:", f"-collect: {work}/bin-$NETJOBS_INDEX.dat", f"-collect: {work}/none-*.json"]
    for i, size in enumerate(sizes):
        lines += [
            f'127.0.0.{FIRST + i}:{fleet}: "head -c {size} /dev/urandom'
            f" > {work}/bin-$NETJOBS_INDEX.dat;"
            f' printf x > {work}/small-${{NETJOBS_HOST%%:*}}.txt"',
            f"-collect: {work}/small-127.0.0.{FIRST + i}.txt",
        ]
    lines.append("end")
    run, folder = await _run("\n".join(lines) + "\n", token, tmp_path)
    [test] = run.tests
    assert test.status is TestStatus.PASSED, (
        test.reason
    )  # a pattern that matched nothing is no failure
    for i, host in enumerate(test.hosts):
        [command] = host.commands
        assert command.warnings == [f"-collect '{work}/none-*.json': no file matched"]
        by_name = {Path(c.path).name: c for c in command.collected}
        assert set(by_name) == {f"bin-{i}.dat", f"small-127.0.0.{FIRST + i}.txt"}
        big = by_name[f"bin-{i}.dat"]
        original = (work / f"bin-{i}.dat").read_bytes()
        assert big.bytes == sizes[i] == len(original)
        assert big.sha256 == hashlib.sha256(original).hexdigest()
        assert big.pattern == f"{work}/bin-$NETJOBS_INDEX.dat"
        saved = folder.json_path.parent / big.path
        assert saved.parent == folder.host_dir("fleet", host.address)
        assert saved.read_bytes() == original
        assert (folder.path / by_name[f"small-127.0.0.{FIRST + i}.txt"].path).read_bytes() == b"x"
    report = format_test(test)
    assert f"warning: -collect '{work}/none-*.json': no file matched" in report
    assert f"collected {folder.path}/fleet/127.0.0.{FIRST}_{fleet}/bin-0.dat (3.0 MiB" in report
    # The JSON lists them per command, paths relative to it, and reads them back.
    write_json(run, folder.json_path)
    document = json.loads(folder.json_path.read_text())
    listed = document["tests"][0]["hosts"][0]["commands"][0]["collected"]
    assert f"fleet/127.0.0.{FIRST}_{fleet}/bin-0.dat" in [item["path"] for item in listed]
    again = load_json(folder.json_path)
    assert again.tests[0].hosts[2].commands[0].collected == test.hosts[2].commands[0].collected
    # A copy elsewhere (--json FILE) names the same files, relative to where it is.
    elsewhere = tmp_path / "elsewhere" / "copy.json"
    elsewhere.parent.mkdir()
    write_json(run, elsewhere)
    moved = load_json(elsewhere).tests[0].hosts[0].commands[0].collected
    assert [item.path.resolve() for item in moved] == [
        item.path.resolve() for item in test.hosts[0].commands[0].collected
    ]


async def test_a_timeout_or_a_kill_still_collects(fleet, token, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # Host 41 runs past its timeout; the quorum is lost, so host 42 is killed.
    text = (
        "t:\n"
        f"-collect: {work}/out-$NETJOBS_INDEX.txt\n"
        f'127.0.0.{FIRST}:{fleet}: "echo timed > {work}/out-$NETJOBS_INDEX.txt; exec sleep 60"\n'
        "-timeout: 1s\n"
        f'127.0.0.{FIRST + 1}:{fleet}: "echo killed > {work}/out-$NETJOBS_INDEX.txt;'
        ' exec sleep 60"\n'
        "end\n"
    )
    run, folder = await _run(text, token, tmp_path)
    [test] = run.tests
    assert test.status is TestStatus.ABORTED
    timed, killed = (host.commands[0] for host in test.hosts)
    assert timed.status is CommandStatus.TIMEOUT
    assert killed.status is CommandStatus.KILLED
    for command, content in ((timed, b"timed\n"), (killed, b"killed\n")):
        [collected] = command.collected
        assert (folder.path / collected.path).read_bytes() == content
        assert not command.warnings


async def test_a_file_over_the_limit_is_a_warning(fleet, token, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    text = (
        "t:\n"
        f'127.0.0.{FIRST}:{fleet}: "head -c 5000 /dev/zero > {work}/big; printf ok > {work}/ok"\n'
        f"-collect: {work}/big\n"
        f"-collect: {work}/ok\n"
        "end\n"
    )
    run, folder = await _run(text, token, tmp_path, collect_max=4096)
    [test] = run.tests
    assert test.status is TestStatus.PASSED
    [command] = test.hosts[0].commands
    assert [Path(c.path).name for c in command.collected] == ["ok"]
    [warning] = command.warnings
    assert warning.startswith("big: not collected:") and "limit" in warning
    host_dir = folder.host_dir("t", test.hosts[0].address)
    assert sorted(p.name for p in host_dir.iterdir() if not p.name.startswith("cmd")) == ["ok"]


async def test_files_of_one_name_do_not_overwrite_each_other(fleet, token, tmp_path):
    work = tmp_path / "work"
    for sub in ("a", "b"):
        (work / sub).mkdir(parents=True)
    text = (
        "t:\n"
        f'127.0.0.{FIRST}:{fleet}: "echo A > {work}/a/out; echo B > {work}/b/out;'
        f' echo S > {work}/a/cmd0.stdout"\n'
        f"-collect: {work}/*/out\n"
        f"-collect: {work}/a/cmd0.stdout\n"
        f'127.0.0.{FIRST}:{fleet}: "echo C > {work}/c-out"\n'
        f"-collect: {work}/c-out\n"
        "end\n"
    )
    run, folder = await _run(text, token, tmp_path)
    [test] = run.tests
    first, second = test.hosts[0].commands
    saved = {Path(c.path).name: (folder.path / c.path).read_bytes() for c in first.collected}
    # the second "out" gets the command's prefix; a spooled output's name is never taken
    assert saved == {"out": b"A\n", "cmd0.out": b"B\n", "cmd0.cmd0.stdout": b"S\n"}
    assert [Path(c.path).name for c in second.collected] == ["c-out"]


async def test_an_agent_refuses_any_other_environment(fleet, token):
    client = await AgentClient.connect(f"127.0.0.{FIRST}", fleet, token.token.secret)
    try:
        item = {"id": 1, "command": "true", "env": {"LD_PRELOAD": "/tmp/evil.so"}}
        client.conn.queue_unchecked(Frame("prepare", {"label": "t", "commands": [item]}))
        client.writer.write(client.conn.data_to_send())
        refused = await client.recv()
        assert (refused.TYPE, refused.code) == ("error", "protocol")
        assert "may not set 'LD_PRELOAD'" in refused.message
    finally:
        await client.close()


def test_the_controller_holds_its_own_limit_and_checks_the_digest(tmp_path, token):
    """An agent that ignores --collect-max or corrupts a file: the controller keeps nothing."""
    plan = parse_config('t:\nh1: "x"\n-collect: /a\nend\n', "t.cfg")
    folder = RunFolder.create(tmp_path / "runs")
    options = RunOptions(token=token.token, run_folder=folder, collect_max=10)
    run = _TestRun(plan.tests[0], options, None, links=Links())
    [host] = run.hosts

    def transfer(name: str, chunks: list[bytes], digest_of: bytes) -> None:
        size = sum(map(len, chunks))
        host.handle(File(id=0, pattern=0, name=name, size=4))
        for chunk in chunks:
            host.handle(FileData(id=0, body=chunk))
        sha = hashlib.sha256(digest_of).hexdigest()
        host.handle(FileEnd(id=0, bytes=size, sha256=sha))

    transfer("big", [b"12345678", b"12345678"], b"12345678" * 2)  # announced 4, sent 16
    transfer("bent", [b"abcd"], b"abce")
    transfer("good", [b"abcd"], b"abcd")
    [command] = host.result.commands
    assert [Path(c.path).name for c in command.collected] == ["good"]
    assert command.warnings == [
        "big: not collected: more than the 10 B limit",
        "bent: not collected: its SHA-256 does not match what was received",
    ]
    assert sorted(p.name for p in folder.host_dir("t", host.result.address).iterdir()) == ["good"]
