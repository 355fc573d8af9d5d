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
