"""The shared library searches made while importing asyncssh, remembered between runs."""

from __future__ import annotations

import ctypes.util
import os

from netjobs_core import library_search


def test_a_search_is_made_once_and_again_when_the_library_paths_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    searched: list[str] = []

    def search(name: str) -> str | None:
        searched.append(name)
        return "libnettle.so.8" if name == "nettle" else None

    monkeypatch.setattr(ctypes.util, "find_library", search)

    def asyncssh_import() -> list[str | None]:
        with library_search.remembered():
            return [ctypes.util.find_library(name) for name in ("oqs", "nettle")]

    assert asyncssh_import() == [None, "libnettle.so.8"] and searched == ["oqs", "nettle"]
    assert ctypes.util.find_library is search  # only during the import
    assert asyncssh_import() == [None, "libnettle.so.8"] and len(searched) == 2  # remembered
    folder = tmp_path / "libs"
    folder.mkdir()
    monkeypatch.setenv("LD_LIBRARY_PATH", str(folder))
    assert asyncssh_import() == [None, "libnettle.so.8"] and len(searched) == 4
    (folder / "liboqs.so.7").write_bytes(b"")  # a library put there: searched again
    os.utime(folder, ns=(0, 0))  # whatever the clock's resolution, another time
    assert asyncssh_import() == [None, "libnettle.so.8"] and len(searched) == 6
