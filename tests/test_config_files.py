"""A config path that is not a sane file gets a clear `path:1:` error, fast."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from netjobs_core.config import MAX_CONFIG_BYTES, ConfigError, load_config

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX special files")


def load_in_child(path: str) -> subprocess.CompletedProcess[str]:
    """load_config in a child process, so a FIFO that blocks cannot hang the test run."""
    code = (
        "import sys\nfrom netjobs_core.config import ConfigError, load_config\n"
        "try:\n    load_config(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, timeout=10
    )


@posix_only
def test_dev_zero_is_refused():
    with pytest.raises(ConfigError) as caught:
        load_config("/dev/zero")
    assert str(caught.value) == "/dev/zero:1: cannot read the file: not a regular file"


@posix_only
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config"
    os.mkfifo(fifo)
    result = load_in_child(str(fifo))
    assert result.stdout.strip() == f"{fifo}:1: cannot read the file: not a regular file"


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}:1: cannot read the file: ")


def test_a_file_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as file:
        file.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing written
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:1: the file is 64.0 MiB: a config may be 64 MiB at most"


def test_a_file_at_the_limit_is_read(tmp_path):
    # Padded with one long comment line: read and parsed in about a second. The parse
    # time of 64 MiB of other shapes (67 million empty lines...) is bench/config_parse.py's.
    path = tmp_path / "padded.txt"
    body = b't:\nhost: "true"\nend\n'
    path.write_bytes(body + b"#" * (MAX_CONFIG_BYTES - len(body) - 1) + b"\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert [test.label for test in load_config(path).tests] == ["t"]


def netjobs_in_child(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process of at most 1 GiB of address space: a FIFO that blocks
    or a device read whole fails this test rather than hang it or fill the memory."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        stdin=subprocess.DEVNULL,
    )


@posix_only
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_groups_file_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    """`--groups` of a FIFO waited for ever for a writer (a config's is refused)."""
    groups = tmp_path / "groups"
    if kind == "fifo":
        os.mkfifo(groups)
    else:
        groups = "/dev/zero"
    config = tmp_path / "run.cfg"
    config.write_text('t:\n@storage: "true"\nend\n')
    result = netjobs_in_child("-s", "--groups", str(groups), str(config))
    assert result.returncode == 2
    assert (
        result.stderr == f"netjobs: {groups}:1: cannot read the groups file: not a regular file\n"
    )


@posix_only
@pytest.mark.parametrize(
    ("kind", "words"),
    [("fifo", "holds fewer than 16 characters"), ("/dev/zero", "holds more than 64 KiB")],
)
def test_a_token_file_no_one_writes_or_without_end_is_refused_at_once(tmp_path, kind, words):
    """`--token-file` of a FIFO with no writer waited for ever; of /dev/zero it read until
    the memory ran out. A pipe with a writer (`<(pass show netjobs)`) still works: a
    token's pipes are legitimate, so it is read bounded, not refused."""
    token = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(token)
    else:
        token = "/dev/zero"
    config = tmp_path / "run.cfg"
    config.write_text('t:\n127.0.0.1:9: "true"\nend\n')
    result = netjobs_in_child("check", "--token-file", str(token), str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"netjobs: token file {token} {words}" + (
        ": not a token\n" if kind == "/dev/zero" else "\n"
    )


@posix_only
def test_a_token_from_a_pipe_is_read(tmp_path):
    from netjobs_core.wire.tokens import load_token

    read, write = os.pipe()
    os.write(write, b"a-token-from-a-pipe-0123456789\n")
    os.close(write)
    try:
        assert load_token(f"/dev/fd/{read}").secret == b"a-token-from-a-pipe-0123456789"
    finally:
        os.close(read)
