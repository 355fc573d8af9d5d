"""Command outputs spooled to the run folder, exact through the JSON, bounded in memory:
outputs.Output on its own, then through real agents, the CLI, --echo and the spool."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from agent_harness import REPO, AgentClient, agent_command, agent_env, commands, start_agent

from netjobs_core import outputs
from netjobs_core.config import parse_config
from netjobs_core.events import CommandOutput
from netjobs_core.outputs import Output, OutputFileError
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import load_json, write_json
from netjobs_core.run import Run
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.text import output_excerpt
from netjobs_core.wire.address import Address
from netjobs_core.wire.messages import Start

pytestmark = [pytest.mark.timeout(120), pytest.mark.posix]


def _plan(body: str, agents) -> object:
    text = body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)})
    return parse_config(text, "test.cfg")


# -- outputs.Output ----------------------------------------------------------------
def test_a_small_output_stays_in_memory_and_is_written_at_its_end(tmp_path):
    output = Output(tmp_path / "h" / "cmd0.stdout", keep=16)
    output.append(b"abc\n")
    output.append(b"def\n")
    assert not output.path.exists()  # no file held open for a small output
    output.close()
    assert output.path.read_bytes() == output.read_bytes() == b"abc\ndef\n"
    assert output.sha256 == hashlib.sha256(b"abc\ndef\n").hexdigest() and len(output) == 8
    assert output_excerpt(output) == ["abc", "def"]


def test_the_writer_thread_holds_at_most_its_bound_and_appends_wait_beyond_it():
    writer, release = outputs._Writer(), threading.Event()
    try:
        writer.submit(outputs.IN_FLIGHT - 10, release.wait)  # a disk that does not keep up
        writer.submit(10, lambda: None)  # still within the bound
        waited = threading.Event()
        late = threading.Thread(target=lambda: (writer.submit(1, lambda: None), waited.set()))
        late.start()
        assert not waited.wait(0.2)  # over the bound: the caller waits for the disk
        release.set()
        assert waited.wait(5)
        late.join(5)
    finally:
        release.set()


def test_a_failure_in_the_writer_thread_is_not_swallowed(tmp_path):
    output = Output(tmp_path / "cmd0.stdout", keep=4)

    def broken(data: bytes, room: int) -> None:
        raise RuntimeError("a bug in the spool")

    output._spill = broken  # type: ignore[method-assign]
    output.append(b"more than four bytes")
    with pytest.raises(RuntimeError, match="a bug in the spool"):
        output.close()


def test_a_large_output_keeps_its_head_and_tail_and_the_whole_in_its_file(tmp_path):
    data = b"".join(b"line %d\n" % n for n in range(10_000))
    output = Output(tmp_path / "cmd0.stdout", keep=1024)
    for start in range(0, len(data), 777):  # chunks that cross every boundary
        output.append(data[start : start + 777])
    assert output.since(len(data) - 10) == data[-10:]
    output.close()
    assert output.path.read_bytes() == output.read_bytes() == data
    lines = output_excerpt(output, show=200)
    assert lines[0] == "line 0" and lines[-1] == "line 9999"
    (cut,) = [line for line in lines if "left out" in line]
    assert f"the whole output is in {output.path}" in cut
    shown = sum(len(line) + 1 for line in lines if line is not cut)
    assert cut.startswith(f"... {len(data) - shown} bytes ") and shown <= 200
    output.path.write_bytes(data[:-1] + b"X")  # changed behind our back: said, not trusted
    with pytest.raises(OutputFileError, match="not the output on record"):
        output.read_bytes()


def test_a_referenced_output_whose_file_is_gone_loads_and_says_so(tmp_path):
    data = bytes(range(256)) * 1000
    output = Output(tmp_path / "run" / "cmd0.stdout", keep=1024)
    output.append(data)
    output.close()
    run = RunResult("x.cfg", tests=[TestResult("t", None)])
    run.tests[0].hosts.append(HostResult(Address("h", 16192)))
    run.tests[0].hosts[0].commands.append(CommandResult("c", stdout=output))
    write_json(run, tmp_path / "r.json", inline_limit=1000)
    output.path.unlink()  # the run folder was cleaned up
    (loaded,) = load_json(tmp_path / "r.json").tests[0].hosts[0].commands
    assert (len(loaded.stdout), loaded.stdout.sha256) == (len(data), output.sha256)
    assert "cannot read" in loaded.stdout.error
    assert output_excerpt(loaded.stdout) == [
        f"... {len(data)} bytes (250.0 KiB) left out, {loaded.stdout.error}"
    ]
    with pytest.raises(OutputFileError):
        loaded.stdout.read_bytes()


# -- through real agents -------------------------------------------------------------
async def test_megabytes_of_binary_output_arrive_byte_for_byte_through_spool_and_json(
    tmp_path, start_agents, token
):
    (agent,) = start_agents(1)
    source = tmp_path / "written.bin"
    plan = _plan(
        f't:\n{{a0}}: "head -c 6000000 /dev/urandom | tee {source}; printf small >&2"\nend\n',
        [agent],
    )
    folder = RunFolder.create(tmp_path / "runs")
    options = RunOptions(token=token.token, run_folder=folder, inline_limit=1000)
    async with Run(plan, options, in_history=False) as owner:  # it writes results.json
        run = await owner.run()
    (command,) = run.tests[0].hosts[0].commands
    assert command.status is CommandStatus.OK
    written = source.read_bytes()
    spooled = folder.host_dir("t", run.tests[0].hosts[0].address) / "cmd0.stdout"
    assert command.stdout.path == spooled and spooled.read_bytes() == written
    assert command.stdout.read_bytes() == written

    # The run folder's results.json references the big output and inlines the small one.
    document = json.loads(folder.json_path.read_text())
    assert document["format"] == "netjobs-results/2"
    item = document["tests"][0]["hosts"][0]["commands"][0]
    assert item["stdout_file"] == f"t/127.0.0.1_{agent.port}/cmd0.stdout"
    assert "stdout" not in item and item["stdout_bytes"] == len(written)
    assert item["stdout_sha256"] == hashlib.sha256(written).hexdigest()
    assert item["stderr"] == "small" and item["stderr_bytes"] == 5 and "stderr_file" not in item

    # Written elsewhere, the reference is relative to that file; it reloads exactly.
    elsewhere = tmp_path / "copy" / "r.json"
    elsewhere.parent.mkdir()
    write_json(run, elsewhere, inline_limit=1000)
    moved = json.loads(elsewhere.read_text())["tests"][0]["hosts"][0]["commands"][0]
    assert (elsewhere.parent / moved["stdout_file"]).resolve() == spooled.resolve()
    for path in (folder.json_path, elsewhere):
        (loaded,) = load_json(path).tests[0].hosts[0].commands
        assert loaded.stdout.read_bytes() == written and loaded.stderr.read_bytes() == b"small"
        assert loaded == command


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env=agent_env(),
    )


def test_a_large_output_is_cut_in_the_report_and_log_but_whole_in_its_file(
    tmp_path, start_agents, token_file
):
    (agent,) = start_agents(1)
    config = tmp_path / "big.cfg"
    config.write_text(
        f'big:\n127.0.0.1:{agent.port}: "seq 1 300000"\n127.0.0.1:{agent.port}: "echo tiny"\nend\n'
    )
    result = _cli(
        str(config),
        "-l",
        "--token-file",
        str(token_file),
        "--results",
        str(tmp_path / "runs"),
        "--json",
        str(tmp_path / "out.json"),
        "--show-bytes",
        "4k",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = "".join(f"{n}\n" for n in range(1, 300001)).encode()
    (folder,) = (tmp_path / "runs").iterdir()
    assert f"results folder: {folder}" in result.stderr
    whole = folder / "big" / f"127.0.0.1_{agent.port}" / "cmd0.stdout"
    assert whole.read_bytes() == expected
    (log,) = tmp_path.glob("big.cfg_big_*.log")
    for text, prefix in ((result.stdout, "      stdout: "), (log.read_text(), "  | ")):
        assert f"{prefix}1\n" in text and f"{prefix}300000\n" in text
        assert f"{prefix}150000\n" not in text  # the middle is left out
        assert f"left out, the whole output is in {whole}" in text
        assert len(text) < 20_000
    document = json.loads((tmp_path / "out.json").read_text())
    big, tiny = document["tests"][0]["hosts"][0]["commands"]
    assert big["stdout_file"] == os.path.relpath(whole, tmp_path) and "stdout" not in big
    assert big["stdout_bytes"] == len(expected)
    assert tiny["stdout"] == "tiny\n" and "stdout_file" not in tiny  # inline below the limit
    assert load_json(folder / "results.json").tests[0].hosts[0].commands[0].stdout.read_bytes() == (
        expected
    )


def _open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


async def test_an_aborted_run_leaves_no_output_file_open(tmp_path, start_agents, token):
    (agent,) = start_agents(1)
    plan = _plan('t:\n{a0}: "head -c 3000000 /dev/zero; echo begun; sleep 30"\nend\n', [agent])
    folder = RunFolder.create(tmp_path / "runs")
    runner = Runner(plan, RunOptions(token=token.token, run_folder=folder))

    def observe(event: object) -> None:
        if not isinstance(event, CommandOutput):
            return
        output = event.host.commands[0].stdout
        if output.since(len(output) - 6) == b"begun\n" and not runner.stopped:
            assert _open_files_under(folder.path)  # the big output's file is open now
            runner.stop("stopped by the test")

    runner.observer = observe
    run = await runner.run()
    assert run.tests[0].status is TestStatus.ABORTED
    assert _open_files_under(folder.path) == []
    (command,) = run.tests[0].hosts[0].commands
    assert command.status is CommandStatus.KILLED
    assert command.stdout.path.read_bytes() == b"\0" * 3000000 + b"begun\n"


# -- the agent's side ------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_controller_that_does_not_read_throttles_the_pipe_not_the_agents_memory(
    tmp_path, token
):
    progress = tmp_path / "progress"
    writer = (
        "import os\nb = bytes(65536)\nfor n in range(1, 1025):\n"
        f"    os.write(1, b)\n    open({str(progress)!r}, 'w').write(str(n))\n"
    )
    script = tmp_path / "write.py"
    script.write_text(writer)
    with start_agent(token.path, "--spool-limit", str(1024**2)) as agent:
        rss_before = _rss_kib(agent.pid)
        async with await AgentClient.connect(*agent.address, token.token.secret) as client:
            await client.prepare("t", commands(f"{sys.executable} {script}"))
            await client.send(Start(at=None))
            # Not reading: once socket buffers and the 1 MiB spool are full, the command's
            # writes block. Wait for its progress to stand still, then look.
            last, still = -1, 0
            async with asyncio.timeout(30):
                while still < 5:
                    await asyncio.sleep(0.1)
                    now = int(progress.read_text() or 0) if progress.exists() else 0
                    still = still + 1 if now == last else 0
                    last = now
            assert 0 < last * 65536 < 24 * 1024**2, last  # throttled long before its 64 MiB
            assert _rss_kib(agent.pid) - rss_before < 16 * 1024
            outcome = await client.collect(timeout=60)
        assert outcome.stdout(1) == bytes(64 * 1024**2) and int(progress.read_text()) == 1024


def test_echo_prints_every_line_and_drops_rather_than_block(tmp_path, token):
    """The agent's standard output is a pipe nobody reads during the run: the flood
    of lines cannot all be echoed, yet the command runs to its end at full speed."""
    argv = agent_command(token.path, "--echo", port=0, bind="127.0.0.1")
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=agent_env(), cwd=REPO
    )
    try:
        assert process.stdout is not None
        port = None
        while port is None:
            line = process.stdout.readline().decode()
            assert line, "the agent exited"
            if " listening on " in line:
                port = int(line.rsplit(":", 1)[1])
        plan = parse_config(
            f't:\n127.0.0.1:{port}: "echo first; seq 1 2000000; echo last"\nend\n', "e.cfg"
        )
        folder = RunFolder.create(tmp_path / "runs")
        run = asyncio.run(
            asyncio.wait_for(
                Runner(plan, RunOptions(token=token.token, run_folder=folder)).run(), 60
            )
        )
        (command,) = run.tests[0].hosts[0].commands
        assert command.status is CommandStatus.OK
        lines = command.stdout.read_bytes().split(b"\n")
        assert lines[0] == b"first" and lines[-2] == b"last" and len(lines) == 2000003
        # Now read what was echoed: prefixed lines, and the count of those dropped.
        echoed = bytearray()
        done = threading.Event()

        def read() -> None:
            while b"lines dropped" not in echoed or not echoed.endswith(b"\n"):
                chunk = process.stdout.read1(65536)
                if not chunk:
                    break
                echoed.extend(chunk)
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(30), bytes(echoed[-300:])
        text = echoed.decode()
        assert "[t 0 stdout] first\n" in text
        dropped = sum(
            int(line.split()[1]) for line in text.splitlines() if line.startswith("[echo] ")
        )
        shown = sum(1 for line in text.splitlines() if line.startswith("[t 0 stdout] "))
        assert dropped > 0 and shown + dropped <= 2000002
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_a_memory_only_output_past_its_keep_says_its_middle_was_not_kept():
    """An output with nowhere to go keeps its first and last bytes only: asked for
    every byte (results.json inlines a small output) it says so, never asserts."""
    output = Output(keep=4)
    output.append(b"0123456789")
    with pytest.raises(OutputFileError, match="only the first and last 4 bytes of 10"):
        output.read_bytes()
