"""The GUI's settings file: its owner's only, written whole (issue 18, points 2 and 6)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from netjobs_gui.settings import Settings, use_settings_dir

pytestmark = pytest.mark.posix


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_settings_file_is_0600_in_a_0700_folder_whatever_the_umask(qapp, tmp_path):
    use_settings_dir(tmp_path / "settings")
    old = os.umask(0)
    try:
        settings = Settings()
        settings.ssh_user = "bench"
        settings.sync()
    finally:
        os.umask(old)
    path = Path(settings.store.fileName())
    assert settings.store.status() == QSettings.Status.NoError
    assert path.read_text().count("bench") == 1
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(tmp_path / "settings") == 0o700

    inode = path.stat().st_ino
    settings.ssh_user = "other"
    settings.sync()
    # Replaced whole (a new file renamed over the old one), and still 0600.
    assert path.stat().st_ino != inode and _mode(path) == 0o600
    assert Settings().ssh_user == "other"


def test_an_old_readable_settings_file_is_made_private(qapp, tmp_path):
    use_settings_dir(tmp_path)
    path = Path(Settings().store.fileName())
    path.chmod(0o644)
    path.parent.chmod(0o755)
    settings = Settings()
    settings.ssh_user = "bench"
    settings.sync()
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_a_full_disk_keeps_the_previous_settings(qapp, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs")
    try:
        use_settings_dir(disk)
        settings = Settings()
        settings.manual_hosts = ["node1:16200"]
        settings.sync()
        before = Path(settings.store.fileName()).read_bytes()
        with open(disk / "filler", "wb", buffering=0) as filler:
            with pytest.raises(OSError) as full:
                while True:
                    filler.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
        settings.manual_hosts = [f"node{i}:16200" for i in range(20_000)]
        settings.sync()
        assert settings.store.status() == QSettings.Status.AccessError
        assert Path(settings.store.fileName()).read_bytes() == before  # the old file, whole
        assert b"node1:16200" in before
    finally:
        use_settings_dir(tmp_path / "elsewhere")
        subprocess.run(["umount", "-l", str(disk)], check=True)
