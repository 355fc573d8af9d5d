"""Point 1 of issue 18: every test and every host of a run gets a folder of its own
(run_folder.RunFolder): names the old naming made one (`[fd00::a:1]:P` and `[fd00:a::1]:P`,
`node1:16200` and a host `node1_16200`, labels that share their first 120 characters) each
keep their own bytes; a collected file is listed only when its path holds what was summed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from agent_harness import start_agent

from netjobs_core.collected import FileReception
from netjobs_core.config import parse_config
from netjobs_core.results import CommandResult, TestStatus
from netjobs_core.results_json import load_json, write_json
from netjobs_core.run_folder import RunFolder
from netjobs_core.run_options import RunOptions
from netjobs_core.runner import Runner
from netjobs_core.wire.address import Address
from netjobs_core.wire.messages import File, FileData, FileEnd

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def test_names_that_would_be_one_get_folders_of_their_own(tmp_path):
    folder = RunFolder.create(tmp_path)
    pairs = [
        (Address("fd00::a:1", 9000), Address("fd00:a::1", 9000)),
        (Address("node1", 16200), Address("node1_16200")),
        (Address("Node2"), Address("node2")),  # one folder on a case-blind disk
    ]
    for first, second in pairs:
        one, other = folder.host_dir("t", first), folder.host_dir("t", second)
        assert one.name.casefold() != other.name.casefold()
        # The first keeps its readable name; the second has it too, with a short hash.
        assert other.name.casefold().startswith(one.name.casefold() + "~")
        assert len(other.name) == len(one.name) + 9
        # Stable within the run: the same host has the same name in every test.
        assert folder.host_dir("u", second).name == other.name
        assert folder.host_dir("t", first) == one
    assert folder.host_dir("t", Address("fd00::a:1", 9000)).name == "fd00_a_1_9000"

    long_a, long_b = "x" * 120 + "A", "x" * 120 + "B"
    dirs = [folder.test_dir(long_a), folder.test_dir(long_b), folder.test_dir(long_a, 2)]
    assert len({d.name for d in dirs}) == 3
    assert all(len(d.name) <= 120 for d in dirs)
    assert folder.test_dir(long_b) == dirs[1]
    # A test's folder is never the run's own results.json.
    assert folder.test_dir("results.json") != folder.json_path


async def test_labels_sharing_their_first_120_characters_keep_their_own_files(
    token, token_file, tmp_path
):
    """Two tests whose labels differ past their 120th character shared one folder: the
    second's 2 MB output and its collected file replaced the first's."""
    labels = ["x" * 120 + "A", "x" * 120 + "B"]
    work = tmp_path / "work"
    data = work / "$NETJOBS_TEST" / "data.bin"
    command = f"mkdir -p {data.parent} && head -c 2000000 /dev/urandom > {data} && cat {data}"
    with start_agent(token_file) as agent:
        text = "".join(
            f'{label}:\n127.0.0.1:{agent.port}: "{command}"\n-collect: {data}\nend\n'
            for label in labels
        )
        plan = parse_config(text, "labels.cfg")
        folder = RunFolder.create(tmp_path / "runs")
        options = RunOptions(token=token.token, connect_timeout=5.0, run_folder=folder)
        run = await Runner(plan, options).run()
    write_json(run, folder.json_path)
    assert [t.status for t in run.tests] == [TestStatus.PASSED] * 2
    loaded = load_json(folder.json_path)
    places = set()
    for t, label in enumerate(labels):
        expected = (work / label / "data.bin").read_bytes()
        assert len(expected) == 2000000
        [command] = run.tests[t].hosts[0].commands
        places.add(command.stdout.path.parent)
        assert command.stdout.path.read_bytes() == expected
        assert loaded.tests[t].hosts[0].commands[0].stdout.read_bytes() == expected
        [collected] = command.collected
        assert collected.path.parent == command.stdout.path.parent
        assert collected.path.read_bytes() == expected
        assert collected.sha256 == hashlib.sha256(expected).hexdigest()
    assert len(places) == 2


# -- a collected file is listed only when its path holds what was summed ----------
def _reception(directory: Path) -> FileReception:
    return FileReception(directory, [["p"]], [CommandResult("true", 1)], None)


def _send(files: FileReception, name: str, data: bytes, between=lambda: None) -> None:
    files.on_file(File(id=0, pattern=0, name=name, size=len(data)))
    files.on_file_data(FileData(id=0, body=data[: len(data) // 2]))
    between()
    files.on_file_data(FileData(id=0, body=data[len(data) // 2 :]))
    files.on_file_end(FileEnd(id=0, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))


def _listed_as_on_disk(files: FileReception) -> list[Path]:
    """Every file listed holds the bytes its recorded sha256 says."""
    listed = files.commands[0].collected
    for item in listed:
        assert hashlib.sha256(item.path.read_bytes()).hexdigest() == item.sha256, item.path
    return [item.path for item in listed]


def test_a_second_writer_of_one_path_never_replaces_a_collected_file(tmp_path):
    """Two hosts that shared a folder: the second's file replaced the first's, and
    both were listed with their own sha256."""
    first, second = _reception(tmp_path), _reception(tmp_path)
    data_a, data_b = os.urandom(300_000), os.urandom(300_000)
    _send(first, "data.bin", data_a)
    _send(second, "data.bin", data_b)
    assert _listed_as_on_disk(first) == [tmp_path / "data.bin"]
    assert (tmp_path / "data.bin").read_bytes() == data_a
    assert _listed_as_on_disk(second) == []
    [warning] = second.commands[0].warnings
    assert warning.startswith("data.bin: not collected: cannot write") and "exists" in warning


def test_a_file_replaced_while_it_is_written_is_not_listed(tmp_path):
    """It is written as `.data.bin.part` and named data.bin only whole: a file put in
    the place of either is never listed, never replaced, never removed."""
    other = b"somebody else's bytes"

    def replace(name: str):
        def put() -> None:
            (tmp_path / "other").write_bytes(other)
            os.replace(tmp_path / "other", tmp_path / name)

        return put

    files = _reception(tmp_path)
    _send(files, "data.bin", os.urandom(200_000), replace(".data.bin.part"))
    assert _listed_as_on_disk(files) == []
    [warning] = files.commands[0].warnings
    assert "was replaced by another file while it was written" in warning
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.bin.part"]
    assert (tmp_path / ".data.bin.part").read_bytes() == other  # not ours to remove
    (tmp_path / ".data.bin.part").unlink()

    files = _reception(tmp_path)
    _send(files, "data.bin", os.urandom(200_000), replace("data.bin"))
    assert _listed_as_on_disk(files) == []
    [warning] = files.commands[0].warnings
    assert warning.startswith("data.bin: not collected: cannot write") and "exists" in warning
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]  # our part is gone
    assert (tmp_path / "data.bin").read_bytes() == other


def test_a_file_resent_after_a_resume_is_kept_once(tmp_path):
    files = _reception(tmp_path)
    data = os.urandom(100_000)
    _send(files, "data.bin", data)
    files.resumed()
    _send(files, "data.bin", data)
    assert _listed_as_on_disk(files) == [tmp_path / "data.bin"]
    assert files.commands[0].warnings == []
