"""A collected file written to while it is read is no file at all: the agent stats it
before and after (CHANGED), the controller holds the size the agent announced, and
nothing of it is kept. A collected file is written under a hidden `.NAME.part` and
given its name only whole: a controller killed mid-file leaves no part of it under
its own name. Real agents, a real `netjobs` killed with SIGKILL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_collect_stream import GatedPeer

from agent import collect
from netjobs_core import text
from netjobs_core.collected import FileReception
from netjobs_core.config import parse_config
from netjobs_core.links import Links
from netjobs_core.report import format_test
from netjobs_core.results import TestStatus
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner, _TestRun
from netjobs_core.wire.messages import File, FileData, FileEnd, FileError

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

MIB = 1024 * 1024
CHUNK = collect.FILE_CHUNK


# -- the agent: a file changed between its open and the end of its read ---------------
def _truncate(path: Path) -> None:
    os.truncate(path, CHUNK + 100)


def _rewrite(path: Path) -> None:
    with open(path, "r+b") as file:  # the same size, other bytes: only its times move
        file.write(b"\xff" * path.stat().st_size)


def _append(path: Path) -> None:
    with open(path, "ab") as file:
        file.write(b"more")


@pytest.mark.parametrize("change", [_truncate, _rewrite, _append])
async def test_the_agent_says_a_file_changed_while_it_read_it(tmp_path, change):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\0" * (4 * CHUNK))
    before = path.stat().st_size
    await asyncio.sleep(0.02)  # past the file system's clock tick: the write moves the times
    peer = GatedPeer()
    peer.gate.clear()  # held at the first chunk's drain: the rest is still on disk
    sending = asyncio.create_task(
        collect.send_files(peer, collect.Matches(0, [(0, str(path))], [1], None))
    )
    async with asyncio.timeout(10):
        await peer.blocked.wait()
    change(path)
    peer.gate.set()
    async with asyncio.timeout(10):
        await sending
    [header] = [m for m in peer.sent if isinstance(m, File)]
    [end] = [m for m in peer.sent if isinstance(m, FileEnd)]
    assert header.size == before
    assert end.error == FileError.CHANGED and end.size == path.stat().st_size
    assert end.to_frame().fields["error"] == "changed"
    words = text.file_not_collected(
        end.error, sent=end.bytes, announced=header.size, size_then=end.size
    )
    assert words.startswith("it changed while it was being read")


def test_an_unchanged_file_or_a_proc_file_is_whole():
    stamp = collect._Stamp(10, 1, 1)
    assert not collect.changed(stamp, stamp, 10)
    assert collect.changed(stamp, stamp._replace(mtime_ns=2), 10)  # rewritten in place
    assert collect.changed(stamp, stamp._replace(size=4), 4)  # truncated
    assert collect.changed(stamp, stamp, 4)  # the read found another size than the open
    empty = collect._Stamp(0, 1, 1)  # /proc: size 0, made as it is read
    assert not collect.changed(empty, empty, 1500)
    assert collect.changed(empty, empty._replace(size=1500), 1500)  # an empty file grew


def test_the_words_of_a_change():
    assert text.file_changed(100 * MIB, 10 * MIB, 15 * MIB) == (
        "it changed while it was being read: 100.0 MiB when opened, 10.0 MiB at the end"
        " (15.0 MiB sent)"
    )
    assert text.file_changed(MIB, MIB, MIB) == (
        "it changed while it was being read: written to in place (1.0 MiB)"
    )
    assert text.file_changed(MIB, None, 2 * MIB) == (
        "it changed while it was being read: 1.0 MiB when opened (2.0 MiB sent)"
    )


# -- the controller: what an agent from before the code sends --------------------------
def test_the_controller_keeps_no_file_of_another_size_than_announced(tmp_path, token):
    plan = parse_config('t:\nh1: "x"\n-collect: /a\nend\n', "t.cfg")
    folder = RunFolder.create(tmp_path / "runs")
    options = RunOptions(token=token.token, run_folder=folder)
    run = _TestRun(plan.tests[0], options, None, links=Links())
    [host] = run.hosts

    def transfer(name: str, announced: int, data: bytes, **end: object) -> None:
        host.handle(File(id=0, pattern=0, name=name, size=announced))
        host.handle(FileData(id=0, body=data))
        sha = hashlib.sha256(data).hexdigest()
        host.handle(FileEnd(id=0, bytes=len(data), sha256=sha, **end))

    transfer("cut", 10, b"abcd")  # an older agent: no code, fewer bytes than announced
    transfer("grown", 2, b"abcd")
    transfer("told", 4, b"abcd", error="changed", size=5)  # a newer one says so
    transfer("proc", 0, b"MemTotal: 1 kB\n")  # size 0: made as it is read
    transfer("good", 4, b"abcd")
    [command] = host.result.commands
    assert sorted(Path(c.path).name for c in command.collected) == ["good", "proc"]
    assert command.warnings == [
        "cut: not collected: it changed while it was being read: 10 B when opened (4 B sent)",
        "grown: not collected: it changed while it was being read: 2 B when opened (4 B sent)",
        "told: not collected: it changed while it was being read: 4 B when opened,"
        " 5 B at the end (4 B sent)",
    ]
    host_dir = folder.host_dir("t", host.result.address)
    assert sorted(p.name for p in host_dir.iterdir()) == ["good", "proc"]  # no .part left
    assert not command.not_saved  # the agent's doing, not the controller's disk


# -- real agents: files truncated, rewritten, grown while they are read ----------------
async def test_files_changed_mid_read_are_warnings_and_not_kept(
    start_agents, token, tmp_path, monkeypatch
):
    (agent,) = start_agents(1)
    work = tmp_path / "work"
    work.mkdir()
    size = 48 * MIB  # far more than the sockets hold: the agent is mid-read at our first chunk
    for name in ("shrink.dat", "rewrite.dat", "grow.dat", "still.dat"):
        (work / name).write_bytes(b"\0" * size)
    changes = {"shrink.dat": _truncate, "rewrite.dat": _rewrite, "grow.dat": _append}
    await asyncio.sleep(0.02)  # past the file system's clock tick: each write moves the times
    on_file_data = FileReception.on_file_data

    def slowly(self: FileReception, message: FileData) -> None:
        incoming = self.incoming
        assert incoming is not None
        if incoming.received == 0 and incoming.path.name in changes:
            changes[incoming.path.name](work / incoming.path.name)  # at its first chunk
        on_file_data(self, message)
        time.sleep(0.001)  # the controller's pace holds the agent back

    monkeypatch.setattr(FileReception, "on_file_data", slowly)
    config = f't:\n-collect: {work}/*.dat\n127.0.0.1:{agent.port}: "true"\nend\n'
    folder = RunFolder.create(tmp_path / "runs")
    runner = Runner(
        parse_config(config, "t.cfg"),
        RunOptions(token=token.token, connect_timeout=5.0, run_folder=folder),
    )
    run = await runner.run()
    [test] = run.tests
    assert test.status is TestStatus.PASSED, test.reason  # warnings, as an unreadable file
    [command] = test.hosts[0].commands
    assert [Path(c.path).name for c in command.collected] == ["still.dat"]
    warnings = {w.split(":", 1)[0]: w for w in command.warnings}
    assert set(warnings) == set(changes)
    changed = "not collected: it changed while it was being read"
    assert warnings["shrink.dat"].startswith(
        f"shrink.dat: {changed}: 48.0 MiB when opened, 256.1 KiB at the end ("
    )
    assert warnings["rewrite.dat"] == f"rewrite.dat: {changed}: written to in place (48.0 MiB)"
    assert warnings["grow.dat"].startswith(
        f"grow.dat: {changed}: 48.0 MiB when opened, 48.0 MiB at the end ("
    )
    host_dir = folder.host_dir("t", test.hosts[0].address)
    assert sorted(p.name for p in host_dir.iterdir() if not p.name.startswith("cmd")) == [
        "still.dat"
    ]
    assert (host_dir / "still.dat").stat().st_size == size
    report = format_test(test)
    for warning in warnings.values():
        assert f"warning: {warning}" in report
    log = agent.log_text()
    assert "shrink.dat: not collected: changed" in log


# -- a controller killed mid-file ------------------------------------------------------
def test_a_controller_killed_mid_file_leaves_only_a_part(tmp_path, agent, token_file):
    source = tmp_path / "big.dat"
    with open(source, "wb") as file:
        file.truncate(200_000_000)  # sparse: read at memory's pace, written at the disk's
    cfg = tmp_path / "kill.cfg"
    cfg.write_text(f't:\n-collect: {source}\n127.0.0.1:{agent.port}: "true"\nend\n')
    results = tmp_path / "results"
    controller = subprocess.Popen(
        [
            *(sys.executable, "-m", "netjobs_core.cli", "--token-file", str(token_file)),
            *("--results", str(results), "--no-history", str(cfg)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    stopped = False
    try:
        deadline = time.monotonic() + 30
        while not (parts := list(results.glob("*/t/*/.big.dat.part"))):
            assert time.monotonic() < deadline, "the file never began to come"
            assert controller.poll() is None, "the controller ended"
            time.sleep(0.002)
        agent.process.send_signal(signal.SIGSTOP)  # the transfer halts mid-file
        stopped = True
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        if stopped:
            agent.process.send_signal(signal.SIGCONT)
        controller.kill()
        controller.wait()
    [part] = parts
    assert not (part.parent / "big.dat").exists()  # no part of it under its own name
    assert part.stat().st_size < 200_000_000
    assert part.stat().st_mode & 0o777 == 0o600
    assert not [p for p in results.rglob("big.dat")]
