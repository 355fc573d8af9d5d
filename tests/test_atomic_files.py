"""What the controller writes survives a full disk and kill -9, and is its owner's only
(netjobs_core/atomic.py and every writer that uses it)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netjobs_core import atomic
from netjobs_core.config import parse_config
from netjobs_core.history import History
from netjobs_core.logs import write_test_log
from netjobs_core.outputs import Output
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    HostResult,
    HostState,
    RunResult,
    StartMode,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import load_json, write_json
from netjobs_core.run import Run
from netjobs_core.run_folder import RunFolder, data_dir
from netjobs_core.run_options import RunOptions
from netjobs_core.wire.address import Address
from tests.agent_harness import REPO

pytestmark = [pytest.mark.timeout(120), pytest.mark.posix]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _test(label: str, output: bytes) -> TestResult:
    test = TestResult(
        label=label,
        minhosts=1,
        start_mode=StartMode.SEQUENTIAL,
        status=TestStatus.PASSED,
        started_at=1_800_000_000.0,
    )
    host = HostResult(Address("127.0.0.1", 16200), state=HostState.DONE)
    host.commands = [
        CommandResult(
            "true", status=CommandStatus.OK, exit_code=0, stdout=Output.from_bytes(output)
        )
    ]
    test.hosts = [host]
    return test


def _run(*tests: TestResult) -> RunResult:
    run = RunResult(config_path="bench.cfg", run_id="r1")
    run.tests = list(tests)
    return run


# -- a full disk ---------------------------------------------------------------------
@contextlib.contextmanager
def _small_disk(size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted under a temporary folder (root only)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with tempfile.TemporaryDirectory() as parent:
        point = Path(parent) / "disk"
        point.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode:
            pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        try:
            yield point
        finally:
            subprocess.run(["umount", "-l", str(point)], check=True)


def _fill(folder: Path) -> None:
    """Write a file until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as file:
        chunk = b"\0" * 4096
        try:
            while True:
                file.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_disk_during_test_2_keeps_test_1s_results_json(tmp_path):
    """Was: results.json truncated, then ENOSPC half way: an invalid file, test 1 gone."""
    first = _run(_test("t1", b"a" * 20_000))
    both = _run(_test("t1", b"a" * 20_000), _test("t2", b"b" * 60_000))
    with _small_disk("256k") as disk:
        path = disk / "results.json"
        write_json(first, path)
        before = path.read_bytes()
        _fill(disk)
        with pytest.raises(OSError) as raised:
            write_json(both, path)
        assert raised.value.errno == errno.ENOSPC
        assert path.read_bytes() == before  # the old document, whole
        assert [t.label for t in load_json(path).tests] == ["t1"]
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "results.json"]

        (disk / "filler").unlink()  # room again: the next rewrite goes through
        write_json(both, path)
        assert [t.label for t in load_json(path).tests] == ["t1", "t2"]


def test_a_full_disk_keeps_an_old_log_whole_and_says_so(tmp_path):
    test = _test("t1", b"x" * 100_000)
    with _small_disk("256k") as disk:
        config = disk / "bench.cfg"
        small = _test("t1", b"y" * 10)
        path = write_test_log(config, small)
        before = path.read_bytes()
        _fill(disk)
        with pytest.raises(OSError):
            write_test_log(config, test)  # same label and start: same name
        assert path.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == sorted(["filler", path.name])


# -- kill -9 -------------------------------------------------------------------------
_REWRITER = textwrap.dedent(
    """
    import itertools, sys
    sys.path.insert(0, sys.argv[2])
    sys.path.insert(0, sys.argv[3])
    from pathlib import Path
    from test_atomic_files import _run, _test
    from netjobs_core import results_json

    path = Path(sys.argv[1])
    runs = [_run(_test("t1", b"a" * 900_000)),
            _run(_test("t1", b"a" * 900_000), _test("t2", b"b" * 900_000))]
    # Encoded once: the loop is all writing, the moments a crash can hurt.
    texts = {id(run): results_json.json_text(run, path.parent) for run in runs}
    results_json.json_text = lambda run, *args, **kwargs: texts[id(run)]
    results_json.write_json(runs[0], path)
    print("ready", flush=True)
    for i in itertools.count():
        results_json.write_json(runs[i % 2], path)
    """
)


def test_kill_9_while_results_json_is_rewritten_never_leaves_it_unreadable(tmp_path):
    """Was: open(..., 'w') truncates first; a controller killed before the write ended
    left an empty or partial results.json (1 of 11 runs on a real fleet; here nearly
    every kill). Now every kill leaves the old document or the new one."""
    script = tmp_path / "rewriter.py"
    script.write_text(_REWRITER)
    path = tmp_path / "results.json"
    rng = random.Random(18)
    deadline = time.monotonic() + 40
    kills = 0
    while kills < 12 and time.monotonic() < deadline:
        with subprocess.Popen(
            [sys.executable, str(script), str(path), str(REPO), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                assert process.stdout is not None
                assert process.stdout.readline() == "ready\n"
                time.sleep(rng.uniform(0.005, 0.06))
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        kills += 1
        run = load_json(path)  # raises ResultsFileError on a truncated document
        assert [t.label for t in run.tests] in (["t1"], ["t1", "t2"])
    assert kills >= 4


# -- modes ---------------------------------------------------------------------------
def test_the_data_dir_and_default_run_folders_are_0700_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with _umask(0):
        folder = RunFolder.create()
    for path in (tmp_path / "xdg", data_dir(), data_dir() / "runs", folder.path):
        assert _mode(path) == 0o700, path


def test_an_old_open_data_dir_is_made_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    (tmp_path / "netjobs" / "runs").mkdir(parents=True, mode=0o755)
    (tmp_path / "netjobs").chmod(0o755)
    (tmp_path / "netjobs" / "runs").chmod(0o755)
    RunFolder.create()
    assert _mode(tmp_path / "netjobs") == 0o700
    assert _mode(tmp_path / "netjobs" / "runs") == 0o700


def test_the_run_history_alone_makes_the_data_dir_0700(tmp_path, monkeypatch):
    """`--results DIR` runs make no run folder there: the history's folder is private too."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with History():
        pass
    assert _mode(tmp_path / "xdg" / "netjobs") == 0o700


def test_an_explicit_results_folder_is_made_0700_and_an_existing_one_left_alone(tmp_path):
    with _umask(0o022):
        new = RunFolder.create(tmp_path / "a" / "b")
    for path in (tmp_path / "a", tmp_path / "a" / "b", new.path):
        assert _mode(path) == 0o700, path
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    folder = RunFolder.create(shared)
    assert _mode(shared) == 0o755 and _mode(folder.path) == 0o700


@pytest.mark.parametrize("mask", [0o022, 0], ids=["umask022", "umask000"])
def test_results_json_logs_and_outputs_are_0600(tmp_path, mask):
    with _umask(mask):
        folder = RunFolder.create(tmp_path / "runs")
        small = Output(folder.host_dir("t1", Address("127.0.0.1", 16200)) / "cmd0.stdout")
        small.append(b"hello")
        small.close()
        large = Output(folder.host_dir("t1", Address("::1", 16201)) / "cmd0.stdout", keep=4)
        large.append(b"0123456789" * 10)
        large.close()
        run = _run(_test("t1", b"ok"))
        write_json(run, folder.json_path)
        log = write_test_log(tmp_path / "bench.cfg", run.tests[0], folder=folder.path)
    for path in (small.path, large.path, folder.json_path, log):
        assert path is not None and path.read_bytes() and _mode(path) == 0o600, path
    for path in (folder.test_dir("t1"), small.path.parent, large.path.parent):
        assert _mode(path) == 0o700, path
    assert not small.error and not large.error


def test_a_rewritten_file_becomes_0600_and_a_symlink_is_written_through(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_json(_run(_test("t1", b"1")), path)
    assert _mode(path) == 0o600
    link = tmp_path / "latest.json"
    link.symlink_to(path.name)
    write_json(_run(_test("t1", b"1"), _test("t2", b"2")), link)
    assert link.is_symlink() and len(load_json(path).tests) == 2
    output = Output(tmp_path / "old.stdout", keep=1)
    output.path.write_bytes(b"old")  # type: ignore[union-attr]
    output.path.chmod(0o644)  # type: ignore[union-attr]
    output.append(b"new bytes")
    output.close()
    assert _mode(tmp_path / "old.stdout") == 0o600
    assert (tmp_path / "old.stdout").read_bytes() == b"new bytes"


def test_write_atomic_takes_a_mode_and_leaves_no_temporary_file_on_failure(tmp_path):
    path = tmp_path / "f"
    atomic.write_atomic(path, b"one", mode=0o640)
    assert path.read_bytes() == b"one" and _mode(path) == 0o640
    with pytest.raises(TypeError):
        atomic.write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"one" and os.listdir(tmp_path) == ["f"]
    with pytest.raises(FileNotFoundError):
        atomic.write_atomic(tmp_path / "missing" / "f", b"x")


async def test_a_real_run_folder_is_private_through_and_through(tmp_path, start_agents, token):
    """Outputs, collected files, results.json and the test and host folders: 0700
    folders, 0600 files."""
    (agent,) = start_agents(1)
    source = tmp_path / "secret.txt"
    source.write_text("for root only\n")
    source.chmod(0o600)
    text = (
        f"t:\n-collect: {source}\n127.0.0.1:{agent.port}: "
        '"head -c 300000 /dev/zero; echo small >&2"\nend\n'
    )
    folder = RunFolder.create(tmp_path / "runs")
    owner = Run(
        parse_config(text, "test.cfg"),
        RunOptions(token=token.token, run_folder=folder),
        in_history=False,
    )
    async with owner:
        run = await owner.run()
    (command,) = run.tests[0].hosts[0].commands
    assert command.status is CommandStatus.OK and len(command.collected) == 1
    collected = command.collected[0].path
    files = {p for p in folder.path.rglob("*") if p.is_file()}
    folders = {p for p in folder.path.rglob("*") if p.is_dir()} | {folder.path}
    assert {command.stdout.path, command.stderr.path, folder.json_path, collected} <= files
    assert {p: _mode(p) for p in folders} == {p: 0o700 for p in folders}
    assert {p: _mode(p) for p in files} == {p: 0o600 for p in files}
    assert collected.read_text() == "for root only\n"
    assert json.loads(folder.json_path.read_text())["passed"]


def test_a_pipe_or_device_is_written_to_never_replaced(tmp_path):
    """`--json /dev/stdout` or a named pipe: a rename over it would replace the device
    (as root, even /dev/null)."""
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_json(_run(_test("t1", b"ok")), fifo)
        document = b""
        while chunk := os.read(reader, 65536):
            document += chunk
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and os.listdir(tmp_path) == [fifo.name]
    assert json.loads(document)["tests"][0]["label"] == "t1"


def test_publish_names_a_whole_file_never_over_another(tmp_path, monkeypatch):
    """A collected file's `.NAME.part` gets its name in one step, and never one that
    is taken; also where the file system has no hard links."""
    part = atomic.part_name(tmp_path / "data.bin")
    assert part == tmp_path / ".data.bin.part"
    part.write_bytes(b"whole")
    (tmp_path / "taken").write_bytes(b"another's")
    with pytest.raises(FileExistsError):
        atomic.publish(part, tmp_path / "taken")
    assert part.read_bytes() == b"whole" and (tmp_path / "taken").read_bytes() == b"another's"
    atomic.publish(part, tmp_path / "data.bin")
    assert sorted(os.listdir(tmp_path)) == ["data.bin", "taken"]

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    part.write_bytes(b"again")
    with pytest.raises(FileExistsError):
        atomic.publish(part, tmp_path / "taken")
    atomic.publish(part, tmp_path / "other.bin")
    assert (tmp_path / "other.bin").read_bytes() == b"again" and not part.exists()
